//! `strata recipe`: the lecture's hyperparameter procedure, end to end, within one time
//! budget — and a record of each step: what was run, what it showed, which decision it
//! led to.
//!
//! 1. Check the initial loss (≈ ln C at initialization) — [`crate::method::check`].
//! 2. Overfit a small sample (20 images memorized) — the same check. A failure stops here.
//! 3. Find a learning rate that makes the loss fall — [`crate::method::lr_find`].
//! 4. Coarse search: random rates around the finder's range and weight decays, a few
//!    short trials on a subset — [`crate::tune`].
//! 5. Fine search: the ranges narrowed around the best coarse trials, longer trials.
//! 6. Train the best configuration longer, with what is left of the budget.
//! 7. Read its curves — [`crate::method::diagnose`].
//!
//! The budget is shared out before the work: the checks and the sweep take what they
//! take (seconds), then the coarse search 25%, the fine search 20%, the final run the rest;
//! each search's trials are sized from the measured training speed
//! ([`crate::study::runs::calibrate`]) so that they fit their share.

use crate::error::{Error, Result};
use crate::method::check::{self, CheckOptions};
use crate::method::diagnose;
use crate::method::lr_find::{self, LrFindOptions};
use crate::method::{Status, Thresholds};
use crate::study::runs::calibrate;
use crate::train::{self, Observer, RunPaths, TrainConfig};
use crate::tune::{self, results, SearchSpace};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the recipe runs.
#[derive(Clone, Debug)]
pub struct RecipeOptions {
    /// The model, data and fixed training settings (its `lr` and `weight_decay` are
    /// what the recipe searches).
    pub train: TrainConfig,
    /// The whole budget, minutes.
    pub minutes: f64,
    /// Folder for every step's outputs, recipe.json and the report.
    pub out: PathBuf,
    /// The `strata` binary, which runs the search trials.
    pub binary: PathBuf,
    /// Trials of the coarse search (at most; fewer if the budget is short) [6].
    pub coarse_trials: usize,
    /// Trials of the fine search [4].
    pub fine_trials: usize,
}

/// One step, as the report tells it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `1. check the initial loss`.
    pub name: String,
    /// What was run (the equivalent command).
    pub ran: String,
    /// What it showed.
    pub showed: String,
    /// The decision it led to.
    pub decision: String,
    /// Pass, warn or fail.
    pub status: Status,
    /// Wall seconds.
    pub seconds: f64,
    /// Its folder, relative to the recipe's (its own report.html inside).
    pub dir: Option<String>,
}

/// What the recipe did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipeReport {
    /// Model.
    pub model: String,
    /// Dataset.
    pub data: String,
    /// The budget, minutes.
    pub minutes: f64,
    /// The steps done, in order.
    pub steps: Vec<Step>,
    /// Why it stopped before the end, when it did.
    pub stopped: Option<String>,
    /// The configuration trained last.
    pub best: Option<TrainConfig>,
    /// Test accuracy of the final run.
    pub test_acc: Option<f64>,
    /// Training speed measured before the searches (images/s), from which the searches
    /// and the final run were sized.
    #[serde(default)]
    pub images_per_s: Option<f64>,
    /// Wall seconds of the whole recipe.
    pub seconds: f64,
}

struct Clock {
    start: Instant,
    budget: f64,
}

impl Clock {
    fn left(&self) -> f64 {
        (self.budget - self.start.elapsed().as_secs_f64()).max(0.0)
    }
}

fn step(
    name: &str,
    ran: String,
    showed: String,
    decision: String,
    status: Status,
    t: Instant,
    dir: Option<&str>,
) -> Step {
    Step {
        name: name.into(),
        ran,
        showed,
        decision,
        status,
        seconds: t.elapsed().as_secs_f64(),
        dir: dir.map(String::from),
    }
}

/// Images per class the recipe may use (the smallest class, or `per_class`), and the
/// number of classes.
fn train_images(cfg: &TrainConfig) -> Result<(usize, usize)> {
    let (smallest, classes) = crate::study::runs::class_sizes(cfg)?;
    Ok((cfg.per_class.map_or(smallest, |k| k.min(smallest)), classes))
}

/// Runs the recipe; writes `recipe.json` into `opts.out`.
pub fn recipe(opts: &RecipeOptions, obs: &mut dyn Observer) -> Result<RecipeReport> {
    if !(opts.minutes.is_finite() && opts.minutes > 0.0) {
        return Err(Error::config(
            "recipe",
            "minutes",
            format!("must be a positive number, got {}", opts.minutes),
        ));
    }
    let mut cfg = opts.train.clone();
    cfg.augment = cfg.resolved_augment();
    cfg.validate()?;
    std::fs::create_dir_all(&opts.out).map_err(|source| Error::Io {
        path: opts.out.clone(),
        source,
    })?;
    let clock = Clock {
        start: Instant::now(),
        budget: opts.minutes * 60.0,
    };
    let mut r = RecipeReport {
        model: cfg.model.clone(),
        data: cfg.data.clone(),
        minutes: opts.minutes,
        steps: vec![],
        stopped: None,
        best: None,
        test_acc: None,
        images_per_s: None,
        seconds: 0.0,
    };
    let result = run_steps(opts, &mut cfg, &clock, &mut r, obs);
    r.seconds = clock.start.elapsed().as_secs_f64();
    if let Err(e) = result {
        r.stopped = Some(format!("an error: {e}"));
    }
    crate::method::write_json(&opts.out.join("recipe.json"), &r)?;
    Ok(r)
}

fn run_steps(
    opts: &RecipeOptions,
    cfg: &mut TrainConfig,
    clock: &Clock,
    r: &mut RecipeReport,
    obs: &mut dyn Observer,
) -> Result<()> {
    let out = &opts.out;
    // 1–2: the checks.
    let t = Instant::now();
    obs.note("recipe step 1–2: the initial loss, and overfitting a small sample");
    let c = check::check(
        cfg,
        &CheckOptions {
            thresholds: Thresholds::default(),
            out: Some(out.join("check")),
        },
        obs,
    )?;
    let item = |n: &str| c.items.iter().find(|i| i.name == n);
    let ran = format!("strata check --model {} --data {}", cfg.model, cfg.data);
    if let Some(i) = item("initial loss") {
        let fail = i.status == Status::Fail;
        r.steps.push(step(
            "1. check the initial loss",
            ran.clone(),
            i.summary.clone(),
            if fail {
                "stop: the network does not start where it should; fix the initialization or the loss before tuning anything".into()
            } else {
                "the network starts as it should: go on".into()
            },
            i.status,
            t,
            Some("check"),
        ));
        if fail {
            r.stopped = Some(format!("the initial loss is wrong: {}", i.summary));
            return Ok(());
        }
    }
    let o = &c.overfit;
    let showed = format!(
        "{} images, {} steps: loss {:.3} → {:.4}, accuracy {:.0}%{}",
        o.images,
        o.steps,
        o.first_loss,
        o.loss,
        100.0 * o.acc,
        if o.reached {
            " (memorized)"
        } else {
            " (not memorized)"
        }
    );
    r.steps.push(step(
        "2. overfit a small sample",
        ran,
        showed.clone(),
        if o.reached {
            "the model and the training loop can learn: go on".into()
        } else {
            "stop: a network that cannot memorize 20 images has a bug (data, labels, loss, or a rate far off); see check/report".into()
        },
        if o.reached { Status::Pass } else { Status::Fail },
        t,
        Some("check"),
    ));
    if !o.reached {
        r.stopped = Some(format!("cannot overfit a small sample: {showed}"));
        return Ok(());
    }

    // 3: the learning rate.
    let t = Instant::now();
    obs.note("recipe step 3: a learning rate that makes the loss fall");
    let lf = lr_find::lr_find(
        cfg,
        &LrFindOptions {
            iterations: 100,
            out: Some(out.join("lr-find")),
            ..LrFindOptions::default()
        },
        obs,
    )?;
    let (lo, hi) = (lf.suggestion / 3.0, lf.min_lr);
    r.steps.push(step(
        "3. find a learning rate that makes the loss fall",
        format!("strata lr-find --model {} --data {} --iterations 100", cfg.model, cfg.data),
        format!(
            "the smoothed loss is lowest at lr {:.2e} and falls fastest at {:.2e}; suggestion {:.2e}",
            lf.min_lr, lf.steepest_lr, lf.suggestion
        ),
        format!("search the rate in [{lo:.2e}, {hi:.2e}] (log-uniform): from a third of the suggestion to the minimum"),
        Status::Pass,
        t,
        Some("lr-find"),
    ));

    // 4–5: the searches, sized from the measured speed.
    let ips = calibrate(cfg, 3)?;
    r.images_per_s = Some(ips);
    let (per_class_all, classes) = train_images(cfg)?;
    let mut space = search_space(cfg, lo, hi)?;
    let coarse_budget = 0.25 * clock.left();
    let fine_budget = 0.2 * clock.left();
    let (coarse_trials, coarse_per_class, coarse_epochs) = size_search(
        coarse_budget,
        ips,
        opts.coarse_trials,
        2,
        per_class_all,
        classes,
        cfg.val_fraction,
    );
    set_fixed(
        &mut space,
        coarse_per_class,
        coarse_epochs,
        coarse_trials,
        cfg.seed,
    );
    let t = Instant::now();
    obs.note(&format!(
        "recipe step 4: coarse search, {coarse_trials} trials of {coarse_epochs} epochs on {coarse_per_class} images per class"
    ));
    let coarse = search(opts, &space, &out.join("coarse"), obs)?;
    let best_coarse = coarse
        .best()
        .ok_or_else(|| Error::state("recipe", "no coarse trial finished"))?
        .clone();
    r.steps.push(step(
        "4. coarse search",
        format!("strata tune coarse/space.toml ({coarse_trials} random trials, {coarse_epochs} epochs, {coarse_per_class} images per class)"),
        format!(
            "best: {} with validation accuracy {:.2}%; importance {}",
            results::show_values(&best_coarse.values),
            100.0 * best_coarse.val_acc.unwrap_or(0.0),
            coarse
                .importance
                .iter()
                .map(|(k, v)| format!("{k} {:.0}%", 100.0 * v))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "narrow every range around the best quarter of the trials and search again, longer".into(),
        Status::Pass,
        t,
        Some("coarse"),
    ));
    let t = Instant::now();
    let mut fine_space = results::refine(&space, &coarse)?;
    let (fine_trials, fine_per_class, fine_epochs) = size_search(
        fine_budget,
        ips,
        opts.fine_trials,
        2 * coarse_epochs,
        per_class_all,
        classes,
        cfg.val_fraction,
    );
    set_fixed(
        &mut fine_space,
        fine_per_class,
        fine_epochs,
        fine_trials,
        cfg.seed + 1,
    );
    obs.note(&format!(
        "recipe step 5: fine search, {fine_trials} trials of {fine_epochs} epochs on {fine_per_class} images per class"
    ));
    let fine = search(opts, &fine_space, &out.join("fine"), obs)?;
    // The longer fine trials are the better judges; a coarse trial wins only if the fine
    // search found nothing as good.
    let best = fine
        .best()
        .filter(|b| b.val_acc >= best_coarse.val_acc)
        .unwrap_or(&best_coarse)
        .clone();
    // Both spaces share every fixed field but the subset and the epochs, set below.
    let mut best_cfg = space.config(&best.values)?;
    r.steps.push(step(
        "5. fine search",
        format!("strata tune --refine coarse ({fine_trials} trials, {fine_epochs} epochs, {fine_per_class} images per class)"),
        format!(
            "best of both searches: {} with validation accuracy {:.2}%",
            results::show_values(&best.values),
            100.0 * best.val_acc.unwrap_or(0.0)
        ),
        "train this configuration longer".into(),
        Status::Pass,
        t,
        Some("fine"),
    ));

    // 6: the final run, with what is left.
    let t = Instant::now();
    let seconds = 0.85 * clock.left();
    let per_epoch_full = per_class_all as f64 * classes as f64 * (1.0 - cfg.val_fraction);
    let images = seconds * ips;
    let (per_class, epochs) = if images >= 3.0 * per_epoch_full {
        (None, (images / per_epoch_full).floor() as u64)
    } else {
        let k = ((images / 3.0) / (classes as f64 * (1.0 - cfg.val_fraction))) as usize;
        (Some(k.clamp(2, per_class_all.max(2))), 3)
    };
    best_cfg.per_class = per_class.or(cfg.per_class);
    best_cfg.epochs = epochs.max(1);
    best_cfg.seed = cfg.seed;
    let final_dir = out.join("final");
    obs.note(&format!(
        "recipe step 6: the best configuration for {} epochs",
        best_cfg.epochs
    ));
    let o = train::run(&best_cfg, &RunPaths::new(&final_dir), false, obs)?;
    r.test_acc = o.test.as_ref().map(|(_, c)| c.accuracy());
    r.steps.push(step(
        "6. train the best configuration longer",
        format!(
            "strata train --config fine/best.toml --epochs {}{}",
            best_cfg.epochs,
            best_cfg
                .per_class
                .map_or(String::new(), |k| format!(" --per-class {k}"))
        ),
        format!(
            "{} epochs; best validation {}; test accuracy {}",
            o.epochs,
            o.best.map_or("-".into(), |b| format!("{b:.4}")),
            r.test_acc
                .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a))
        ),
        "read its curves".into(),
        Status::Pass,
        t,
        Some("final"),
    ));
    r.best = Some(best_cfg);

    // 7: the curves.
    let t = Instant::now();
    let d = diagnose::diagnose(&final_dir, &Thresholds::default())?;
    let verdict = d.verdict.map_or_else(
        || d.no_verdict.clone().unwrap_or_else(|| "no verdict".into()),
        |v| format!("{v:?}"),
    );
    let remedies: Vec<String> = d
        .findings
        .iter()
        .flat_map(|f| f.remedies.iter().take(1).cloned())
        .collect();
    r.steps.push(step(
        "7. read the curves",
        "strata diagnose final".into(),
        format!(
            "verdict: {verdict}; {}",
            d.findings
                .iter()
                .flat_map(|f| f.evidence.first().cloned())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        if d.verdict == Some(diagnose::Case::Healthy) || remedies.is_empty() {
            "done: keep final/best.safetensors".into()
        } else {
            format!("next: {}", remedies.join("; "))
        },
        if d.verdict == Some(diagnose::Case::Healthy) {
            Status::Pass
        } else {
            Status::Warn
        },
        t,
        Some("final"),
    ));
    Ok(())
}

/// The search space of the recipe: the rate in `[lo, hi]`, the weight decay in
/// `[1e-5, 1e-2]`, everything else as `cfg`.
fn search_space(cfg: &TrainConfig, lo: f64, hi: f64) -> Result<SearchSpace> {
    let fixed = toml::Table::try_from(cfg)
        .map_err(|e| Error::state("recipe", format!("cannot write the configuration: {e}")))?;
    let space = SearchSpace {
        settings: tune::space::SearchSettings {
            strategy: tune::Strategy::Random,
            ..Default::default()
        },
        fixed,
        params: [
            (
                "lr".to_string(),
                tune::Dist::parse("lr", &format!("log_uniform({lo:e}, {hi:e})"))?,
            ),
            (
                "weight_decay".to_string(),
                tune::Dist::parse("weight_decay", "log_uniform(1e-5, 1e-2)")?,
            ),
        ]
        .into(),
    };
    space.validate()?;
    Ok(space)
}

fn set_fixed(space: &mut SearchSpace, per_class: usize, epochs: u64, trials: usize, seed: u64) {
    space
        .fixed
        .insert("per_class".into(), toml::Value::Integer(per_class as i64));
    space
        .fixed
        .insert("epochs".into(), toml::Value::Integer(epochs as i64));
    space.settings.trials = trials;
    space.settings.seed = seed;
}

/// Trials, images per class and epochs of a search that fits `seconds` at `ips`.
fn size_search(
    seconds: f64,
    ips: f64,
    max_trials: usize,
    epochs: u64,
    per_class_all: usize,
    classes: usize,
    val_fraction: f64,
) -> (usize, usize, u64) {
    // Each trial also starts a process, reads the data and evaluates: 80% trains.
    let trials = max_trials.max(2);
    let per_trial = 0.8 * seconds / trials as f64;
    let images = per_trial * ips / epochs as f64;
    let k = (images / (classes as f64 * (1.0 - val_fraction))) as usize;
    (trials, k.clamp(10, per_class_all.max(10)), epochs)
}

fn search(
    opts: &RecipeOptions,
    space: &SearchSpace,
    dir: &Path,
    obs: &mut dyn Observer,
) -> Result<results::TuneReport> {
    let text = results::to_toml(space)?;
    let mut ex = tune::Local::new(&opts.binary, 1, rayon::current_num_threads());
    tune::run(space, &text, dir, &mut ex, obs)
}
