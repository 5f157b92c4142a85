//! `strata check`: the lecture's sanity checks, run on the user's own model and data
//! before any long training.
//!
//! 1. **Initial loss.** A freshly initialized classifier is unsure, so its loss on a
//!    batch should be near ln C (2.303 for 10 classes). Far above: the logits are too
//!    large (initialization scale, unnormalized inputs); logits that are never negative
//!    mean the network ends in a ReLU.
//! 2. **Data.** Class balance of the training split; per-channel mean and standard
//!    deviation of the inputs after normalization (≈ 0 and 1); every class present; a
//!    preview PNG of one augmented batch.
//! 3. **Inside the network at initialization.** One forward and one backward on a batch
//!    (training mode): per layer the output's statistics ([`crate::train::stats`]) and each
//!    weight's relative gradient ‖∂L/∂W‖/‖W‖, each with a verdict ([`LayerVerdict`]).
//! 4. **Overfit a small sample.** From the same initialization, no augmentation and no
//!    weight decay, at the run's learning rate held constant: steps until every image of
//!    a 20-image sample is classified right. Failing means a bug in the model or data, a
//!    rate too small, or weights that cannot move. Succeeding while validation stays at
//!    chance means memorizing without learning: labels that do not match their images.
//!
//! The thresholds are [`Thresholds`]'s.

use super::{write_json, Status, Thresholds};
use crate::checkpoint;
use crate::data::{preview, Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::nn::{self, Layer, Mode};
use crate::optim::{LrSchedule, Optimizer, OptimizerConfig, Schedule};
use crate::train::stats::{self, ActStats, ParamStats, Unit};
use crate::train::{Observer, Setup, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What `check` does besides checking.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// The thresholds.
    pub thresholds: Thresholds,
    /// A folder for `check.json` and `preview.png` (none: nothing is written).
    pub out: Option<PathBuf>,
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckItem {
    /// Which check.
    pub name: String,
    /// Its outcome.
    pub status: Status,
    /// One line.
    pub summary: String,
    /// The numbers behind it, likely causes, what to do.
    pub details: Vec<String>,
}

/// What a layer looks like at initialization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerVerdict {
    /// Nothing out of range.
    Healthy,
    /// Output or gradient too small (see [`Thresholds::vanishing_std`],
    /// [`Thresholds::vanishing_grad`]).
    Vanishing,
    /// Output or gradient too large.
    Exploding,
    /// Most ReLU channels never fire.
    Dead,
    /// Most sigmoid/tanh outputs sit on an asymptote.
    Saturated,
}

/// One layer's row of the inside view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    /// The output's statistics.
    pub act: ActStats,
    /// The layer's weight, when it has one: its norms.
    pub weight: Option<ParamStats>,
    /// ‖∂L/∂W‖/‖W‖.
    pub grad_ratio: Option<f64>,
    /// The verdict.
    pub verdict: LayerVerdict,
    /// Why, when not healthy.
    pub reason: Option<String>,
}

/// Overfitting the small sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overfit {
    /// Images in the sample.
    pub images: usize,
    /// Steps taken.
    pub steps: u64,
    /// Whether every image ended classified right.
    pub reached: bool,
    /// Training loss and accuracy of the last step.
    pub loss: f64,
    /// Accuracy of the last step.
    pub acc: f64,
    /// Loss of the first step.
    pub first_loss: f64,
    /// Accuracy on validation images afterwards (when there are some).
    pub val_acc: Option<f64>,
}

/// Everything `check` found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckReport {
    /// Model name.
    pub model: String,
    /// Dataset.
    pub data: String,
    /// Class names.
    pub classes: Vec<String>,
    /// The checks, in order.
    pub items: Vec<CheckItem>,
    /// The inside view, one row per layer in forward order (the last row: the logits).
    pub layers: Vec<LayerRow>,
    /// The small-sample overfit.
    pub overfit: Overfit,
    /// Where the preview was written.
    pub preview: Option<PathBuf>,
    /// Class of each preview row, in order.
    pub preview_labels: Vec<String>,
    /// The worst status of the items.
    pub status: Status,
}

/// Runs every check on the run `cfg` describes (data and model built as `strata train`
/// builds them).
pub fn check(
    cfg: &TrainConfig,
    opts: &CheckOptions,
    obs: &mut dyn Observer,
) -> Result<CheckReport> {
    let mut cfg = cfg.clone();
    cfg.augment = cfg.resolved_augment();
    let mut setup = Setup::new(&cfg, false, obs)?;
    check_setup(&mut setup, &cfg, opts, obs)
}

/// [`check`] on a setup already built (tests break it on purpose first).
pub fn check_setup(
    setup: &mut Setup,
    cfg: &TrainConfig,
    opts: &CheckOptions,
    obs: &mut dyn Observer,
) -> Result<CheckReport> {
    let t = &opts.thresholds;
    if let Some(dir) = &opts.out {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let initial = checkpoint::state_dict(&mut setup.trainer.model.net);
    let classes = setup.class_names.clone();
    let c = setup.trainer.classes();

    // 2 first: the input statistics explain a bad initial loss.
    obs.note("check: data");
    let (data_item, input_off) = data_check(setup, t);
    let (preview, preview_labels) = match &opts.out {
        Some(dir) => write_preview(setup, &dir.join("preview.png"))?,
        None => (None, vec![]),
    };

    // 1 and 3: one forward (traced) and one backward at initialization.
    obs.note("check: initial loss and the network at initialization");
    let batch = setup.train_loader.batch(0, 0);
    // The same weights (same seed) built unfused, so each layer reports its own output.
    let trained = &setup.trainer.model;
    let mut unfused =
        crate::models::build_with(&trained.name, Some(trained.config.clone()), false)?;
    checkpoint::load_state_dict(&mut unfused.net, &initial, true)?;
    let units = stats::units(&mut unfused.net);
    let model = &mut unfused;
    nn::set_precision(model, setup.trainer.precision);
    nn::zero_grad(model);
    let mut acts = vec![];
    let logits = nn::forward_traced(&mut model.net, &batch.x, Mode::Train, "", &mut |n, y| {
        acts.push((n.to_string(), y.clone()))
    })?;
    let out = setup.trainer.loss.forward(&logits, &batch.y)?;
    model.net.backward_params(&out.dlogits)?;
    let params = stats::param_stats(&mut model.net);
    let mut act_stats = stats::all_act_stats(&acts, &units);
    if let Some(last) = act_stats.last_mut() {
        last.name = format!("{} (logits)", last.name);
    }
    let loss_item = initial_loss_item(out.loss, c, &logits, input_off, t);
    let layers = layer_rows(act_stats, &params, t);
    let inside = inside_item(&layers);

    // 4: overfit a small sample from the same initialization.
    obs.note("check: overfitting a small sample");
    checkpoint::load_state_dict(&mut setup.trainer.model.net, &initial, true)?;
    let overfit = overfit(setup, cfg, t, obs)?;
    let overfit_item = overfit_item(
        &overfit,
        c,
        t,
        nn::has_trainable(&mut setup.trainer.model.net),
    );
    checkpoint::load_state_dict(&mut setup.trainer.model.net, &initial, true)?;

    let items = vec![loss_item, data_item, inside, overfit_item];
    let status = items.iter().map(|i| i.status).max().unwrap_or(Status::Pass);
    let report = CheckReport {
        model: cfg.model.clone(),
        data: cfg.data.clone(),
        classes,
        items,
        layers,
        overfit,
        preview,
        preview_labels,
        status,
    };
    if let Some(dir) = &opts.out {
        write_json(&dir.join("check.json"), &report)?;
    }
    Ok(report)
}

fn item(name: &str, status: Status, summary: String, details: Vec<String>) -> CheckItem {
    CheckItem {
        name: name.into(),
        status,
        summary,
        details,
    }
}

/// Per-channel mean and std of the first batches; class balance; classes present.
/// Returns the item and whether the inputs look unnormalized.
fn data_check(setup: &Setup, t: &Thresholds) -> (CheckItem, bool) {
    let set = &setup.train_set;
    let counts = set.class_counts();
    let (min, max) = (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().copied().max().unwrap_or(0),
    );
    let mut status = Status::Pass;
    let mut details = vec![format!(
        "{} training images, {} classes, {} to {} images per class",
        set.len(),
        counts.len(),
        min,
        max
    )];
    let empty: Vec<&str> = counts
        .iter()
        .zip(set.class_names())
        .filter(|(&n, _)| n == 0)
        .map(|(_, name)| name.as_str())
        .collect();
    if !empty.is_empty() {
        status = Status::Fail;
        details.push(format!(
            "classes with no training image: {} — the model can never predict them",
            empty.join(", ")
        ));
    } else if max as f64 > t.class_imbalance * min as f64 {
        status = status.max(Status::Warn);
        details.push(format!(
            "imbalanced: the largest class has {:.1}× the images of the smallest (> {}); \
             accuracy will favour the large classes — consider per-class accuracy or resampling",
            max as f64 / min.max(1) as f64,
            t.class_imbalance
        ));
    }
    // Input statistics over up to 4 augmented batches.
    let ch = setup.train_loader.output_shape()[0];
    let (mut sum, mut sq, mut n) = (vec![0f64; ch], vec![0f64; ch], 0usize);
    for b in 0..setup.train_loader.len().min(4) {
        let x = setup.train_loader.batch(0, b).x;
        let per = x.len() / (x.shape()[0] * ch).max(1);
        for (i, chunk) in x.data().chunks(per.max(1)).enumerate() {
            let k = i % ch;
            sum[k] += chunk.iter().map(|&v| f64::from(v)).sum::<f64>();
            sq[k] += chunk.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
        }
        n += per * x.shape()[0];
    }
    let mut off = false;
    for k in 0..ch {
        let mean = sum[k] / n.max(1) as f64;
        let std = (sq[k] / n.max(1) as f64 - mean * mean).max(0.0).sqrt();
        details.push(format!("input channel {k}: mean {mean:+.3}, std {std:.3}"));
        if mean.abs() > t.input_mean || std > t.input_std || std < 1.0 / t.input_std {
            off = true;
        }
    }
    if off {
        status = status.max(Status::Warn);
        details.push(format!(
            "inputs are not normalized (want mean within ±{} and std within [{:.2}, {}]): \
             normalize with the training split's per-channel mean and std",
            t.input_mean,
            1.0 / t.input_std,
            t.input_std
        ));
    }
    let summary = match status {
        Status::Pass => "balanced classes, inputs normalized".into(),
        _ => "see below".into(),
    };
    (item("data", status, summary, details), off)
}

/// A preview of the first images of the first batch, four augmented versions each.
fn write_preview(setup: &Setup, path: &Path) -> Result<(Option<PathBuf>, Vec<String>)> {
    let order = setup.train_loader.order(0);
    let idx: Vec<usize> = order.into_iter().take(8).collect();
    let opts = preview::PreviewOptions {
        variants: 4,
        seed: setup.train_loader.config().seed,
        scale: 3,
    };
    let img = preview::grid(&setup.train_set, &setup.augment, &idx, &opts)?;
    preview::write_png(&img, path)?;
    let names = setup.train_set.class_names();
    let labels = idx
        .iter()
        .map(|&i| names[setup.train_set.label(i) as usize].clone())
        .collect();
    Ok((Some(path.to_path_buf()), labels))
}

fn initial_loss_item(
    loss: f64,
    classes: usize,
    logits: &crate::tensor::Tensor,
    input_off: bool,
    t: &Thresholds,
) -> CheckItem {
    let expected = (classes as f64).ln();
    let rel = (loss - expected).abs() / expected.max(1e-12);
    let d = logits.data();
    let n = d.len().max(1) as f64;
    let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let std = (d
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let mut details = vec![
        format!(
            "loss {loss:.4} on the first batch, ln({classes}) = {expected:.4} (off by {:.0}%)",
            rel * 100.0
        ),
        format!("logits: mean {mean:+.3}, std {std:.3}"),
    ];
    let status = if rel > t.initial_loss_fail {
        Status::Fail
    } else if rel > t.initial_loss_warn {
        Status::Warn
    } else {
        Status::Pass
    };
    if status != Status::Pass {
        details.push("likely causes:".into());
        let nonneg =
            d.iter().all(|&v| v >= 0.0) && d.iter().filter(|&&v| v == 0.0).count() as f64 > 0.2 * n;
        if nonneg {
            details.push("  the logits are never negative and often exactly 0: the network ends in a ReLU; the last layer should be linear".into());
        }
        if std > 2.0 {
            details.push(format!("  the logits are large (std {std:.1}): the initialization is too large (Kaiming for ReLU nets keeps them near 1), or the last layer's weights are"));
        }
        if input_off {
            details.push("  the inputs are not normalized (see the data check)".into());
        }
        if loss < expected {
            details.push("  the loss is below chance before any training: do the labels follow something trivial (one class, the order of the files)?".into());
        }
        details.push("  labels outside 0..classes, or a class count that differs from the data's, also move it".into());
    }
    item(
        "initial loss",
        status,
        format!("{loss:.3} against ln({classes}) = {expected:.3}"),
        details,
    )
}

/// The rows of the inside view, with verdicts.
fn layer_rows(acts: Vec<ActStats>, params: &[ParamStats], t: &Thresholds) -> Vec<LayerRow> {
    let ratio = |p: &ParamStats| p.grad_norm / p.weight_norm;
    let top = params
        .iter()
        .filter(|p| p.weight_norm > 1e-12)
        .map(ratio)
        .fold(0.0f64, f64::max);
    let n = acts.len();
    acts.into_iter()
        .enumerate()
        .map(|(i, act)| {
            let base = act.name.trim_end_matches(" (logits)").to_string();
            let weight = params
                .iter()
                .find(|p| p.name == format!("{base}.weight"))
                .cloned();
            // A weight of zero (a zero-initialized head) has no relative gradient.
            let grad_ratio = weight.as_ref().filter(|w| w.weight_norm > 1e-12).map(ratio);
            // Output spread is judged where it means something: after an activation
            // function and at the logits (a convolution before a normalization may be
            // of any scale).
            let judged = act.unit != Unit::Other || i + 1 == n;
            let (verdict, reason) = if act.unit == Unit::Relu && act.dead > t.dead {
                (
                    LayerVerdict::Dead,
                    format!("{:.0}% of channels dead", act.dead * 100.0),
                )
            } else if matches!(act.unit, Unit::Sigmoid | Unit::Tanh) && act.saturated > t.saturated
            {
                (
                    LayerVerdict::Saturated,
                    format!("{:.0}% of outputs saturated", act.saturated * 100.0),
                )
            } else if judged && act.std < t.vanishing_std {
                (
                    LayerVerdict::Vanishing,
                    format!("output std {:.2e} < {}", act.std, t.vanishing_std),
                )
            } else if judged && act.std > t.exploding_std {
                (
                    LayerVerdict::Exploding,
                    format!("output std {:.3} > {}", act.std, t.exploding_std),
                )
            } else if let Some(r) = grad_ratio.filter(|&r| r > t.exploding_grad) {
                (
                    LayerVerdict::Exploding,
                    format!("‖∂L/∂W‖/‖W‖ = {r:.2e} > {}", t.exploding_grad),
                )
            } else if let Some(r) = grad_ratio.filter(|&r| r < t.vanishing_grad_abs) {
                (
                    LayerVerdict::Vanishing,
                    format!("‖∂L/∂W‖/‖W‖ = {r:.2e} < {:e}", t.vanishing_grad_abs),
                )
            } else if let Some(r) = grad_ratio.filter(|&r| top > 0.0 && r < t.vanishing_grad * top)
            {
                (
                    LayerVerdict::Vanishing,
                    format!(
                        "‖∂L/∂W‖/‖W‖ = {r:.2e}, {:.1e} of the largest layer's",
                        r / top
                    ),
                )
            } else {
                (LayerVerdict::Healthy, String::new())
            };
            LayerRow {
                act,
                weight,
                grad_ratio,
                verdict,
                reason: (verdict != LayerVerdict::Healthy).then_some(reason),
            }
        })
        .collect()
}

fn inside_item(rows: &[LayerRow]) -> CheckItem {
    let count = |v: LayerVerdict| rows.iter().filter(|r| r.verdict == v).count();
    let (van, exp, dead, sat) = (
        count(LayerVerdict::Vanishing),
        count(LayerVerdict::Exploding),
        count(LayerVerdict::Dead),
        count(LayerVerdict::Saturated),
    );
    let status = if van + exp > 0 {
        Status::Fail
    } else if dead + sat > 0 {
        Status::Warn
    } else {
        Status::Pass
    };
    let mut details: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.reason.as_ref().map(|why| {
                format!(
                    "{}: {} ({why})",
                    r.act.name,
                    format!("{:?}", r.verdict).to_lowercase()
                )
            })
        })
        .take(12)
        .collect();
    if van > 0 {
        details.push("vanishing: the signal or the gradient dies out with depth — use Kaiming initialization for ReLU nets, add normalization (BatchNorm) or residual connections".into());
    }
    if exp > 0 {
        details.push("exploding: values grow with depth — the initialization is too large; use Kaiming (std √(2/fan_in)) or add normalization".into());
    }
    if dead > 0 {
        details.push("dead ReLUs pass no gradient: a large negative bias or a too-high learning rate; try LeakyReLU or a smaller initialization of the biases".into());
    }
    if sat > 0 {
        details.push("saturated sigmoid/tanh units have a near-zero derivative: the pre-activations are too large; use a smaller initialization (Xavier) or ReLU".into());
    }
    item(
        "network at initialization",
        status,
        format!(
            "{} layers: {} healthy, {van} vanishing, {exp} exploding, {dead} dead, {sat} saturated",
            rows.len(),
            count(LayerVerdict::Healthy)
        ),
        details,
    )
}

/// The run's optimizer without weight decay.
fn without_decay(o: &OptimizerConfig) -> OptimizerConfig {
    let mut o = o.clone();
    match &mut o {
        OptimizerConfig::Sgd { weight_decay, .. } | OptimizerConfig::AdamW { weight_decay, .. } => {
            *weight_decay = 0.0
        }
    }
    o
}

fn overfit(
    setup: &mut Setup,
    cfg: &TrainConfig,
    t: &Thresholds,
    obs: &mut dyn Observer,
) -> Result<Overfit> {
    let c = setup.trainer.classes().max(1);
    let per = t.overfit_images.div_ceil(c).max(1);
    let sample = setup
        .train_set
        .per_class(per.min(min_class(&setup.train_set)), cfg.seed)?;
    let images = sample.len();
    let loader = Loader::new(
        Arc::new(sample),
        LoaderConfig {
            batch_size: images.min(128),
            shuffle: false,
            drop_last: false,
            seed: cfg.seed,
            workers: 1,
            prefetch: 2,
            augment: setup.augment.for_eval(setup.train_set.shape()),
            normalize: setup.normalize.clone(),
        },
    )?;
    // The run's trainer with a constant rate and no weight decay, restored afterwards.
    let trainer = &mut setup.trainer;
    let schedule = LrSchedule::new(cfg.lr, 1, 0, Schedule::Constant)?;
    let optimizer = Optimizer::new(without_decay(&cfg.optimizer))?;
    let saved = (
        std::mem::replace(&mut trainer.optimizer, optimizer),
        std::mem::replace(&mut trainer.schedule, schedule),
        std::mem::replace(&mut trainer.step, 0),
    );
    let (mut steps, mut first_loss, mut loss, mut acc) = (0u64, f64::NAN, f64::NAN, 0.0);
    let mut reached = false;
    let mut epoch = 0;
    while steps < t.overfit_steps && !reached {
        let s = trainer.epoch(&loader, epoch, &mut [])?;
        steps += s.steps;
        if epoch == 0 {
            first_loss = s.loss;
        }
        (loss, acc) = (s.loss, s.acc);
        reached = s.acc >= 1.0;
        epoch += 1;
        if obs.should_stop() {
            break;
        }
    }
    let val_acc = match (&setup.val_set, &setup.val_loader) {
        (Some(v), Some(l)) => {
            let n = v.len().min(1000);
            let sub = v.subset(&(0..n).collect::<Vec<_>>())?;
            let vl = Loader::new(Arc::new(sub), l.config().clone())?;
            Some(trainer.evaluate(&vl)?.1.accuracy())
        }
        _ => None,
    };
    (trainer.optimizer, trainer.schedule, trainer.step) = saved;
    Ok(Overfit {
        images,
        steps,
        reached,
        loss,
        acc,
        first_loss,
        val_acc,
    })
}

fn min_class(set: &crate::data::ImageDataset) -> usize {
    set.class_counts()
        .into_iter()
        .filter(|&n| n > 0)
        .min()
        .unwrap_or(1)
}

fn overfit_item(o: &Overfit, classes: usize, t: &Thresholds, trainable: bool) -> CheckItem {
    let mut details = vec![format!(
        "{} images, {} steps: loss {:.4} → {:.4}, training accuracy {:.1}%",
        o.images,
        o.steps,
        o.first_loss,
        o.loss,
        o.acc * 100.0
    )];
    let chance = 1.0 / classes.max(1) as f64;
    let status = if !o.reached {
        if !trainable {
            details.push("the model has no trainable parameter: every weight is frozen".into());
        } else if (o.first_loss - o.loss).abs() < 0.01 * o.first_loss {
            details.push("the loss did not move: the weights cannot change (frozen, a zero learning rate) or no gradient reaches them".into());
        }
        details.push(format!(
            "a network that cannot memorize {} images has a bug in the model or the data (labels, preprocessing), \
             or a learning rate too small for it (try `strata lr-find`)",
            o.images
        ));
        Status::Fail
    } else {
        match o.val_acc {
            Some(v) if v < t.overfit_val_chance * chance => {
                details.push(format!(
                    "validation accuracy afterwards {:.1}%, chance is {:.1}%: the sample was memorized but nothing carries to new images — \
                     do the labels match the images (shuffled labels, a wrong label file)?",
                    v * 100.0,
                    chance * 100.0
                ));
                Status::Warn
            }
            Some(v) => {
                details.push(format!(
                    "validation accuracy afterwards {:.1}% (chance {:.1}%)",
                    v * 100.0,
                    chance * 100.0
                ));
                Status::Pass
            }
            None => Status::Pass,
        }
    };
    let summary = if o.reached {
        format!(
            "100% training accuracy on {} images in {} steps",
            o.images, o.steps
        )
    } else {
        format!(
            "could not reach 100% on {} images in {} steps ({:.1}%)",
            o.images,
            o.steps,
            o.acc * 100.0
        )
    };
    item("overfit a small sample", status, summary, details)
}
