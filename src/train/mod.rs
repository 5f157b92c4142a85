//! Training: the loop, validation, history, checkpoints, resume, guards.
//!
//! A run lives in a folder: `config.toml` (the resolved configuration), `history.jsonl`
//! (see [`history`]), `optim-EPOCH.safetensors` + `last.safetensors` (optimizer state,
//! then the weights naming it: one commit after every epoch, see `commit.rs`), `best.safetensors` (the best epoch by the
//! monitored validation number) and `metrics.json` (test accuracy, per class, confusion
//! matrix). Weights files are plain torchvision-named state dicts (they load into
//! PyTorch); the optimizer state lives beside them so that they stay so.
//!
//! Exact resume: everything random is a function of `(seed, epoch)` — the split, the
//! shuffle and augmentation of each epoch (see `data::loader`), the dropout masks
//! (reseeded per epoch) — and the checkpoint holds weights, BatchNorm statistics,
//! optimizer state and the step count (the learning rate is a function of the step).
//! Resuming from the checkpoint of epoch `e` therefore replays epochs `e+1..` exactly as
//! an uninterrupted run with the same thread count would.

mod commit;
pub mod config;
pub mod history;
pub mod metrics;
pub mod plans;
pub mod pretrained;
mod run_log;
pub mod setup;
pub mod stats;
pub mod trainer;
pub mod tta;
pub mod watch;

pub use config::{ConvTuning, Monitor, TrainConfig};
pub use history::{History, Record};
pub use metrics::Confusion;
pub use setup::{model_config, Setup};
pub use trainer::{
    epoch_seed, evaluate, evaluate_tta, Control, EpochStats, ForwardView, Hook, StepInfo,
    StepResult, Trainer,
};

use crate::checkpoint;
use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::models::Model;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The files of a run folder.
#[derive(Clone, Debug)]
pub struct RunPaths {
    /// The folder.
    pub dir: PathBuf,
}

impl RunPaths {
    /// The run in `dir`.
    pub fn new(dir: &Path) -> Self {
        RunPaths {
            dir: dir.to_path_buf(),
        }
    }
    /// `config.toml`
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    /// `history.jsonl`
    pub fn history(&self) -> PathBuf {
        self.dir.join("history.jsonl")
    }
    /// `last.safetensors`
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }
    /// `last.optim.safetensors`: the optimizer state of runs written before the state
    /// file was named in `last`'s header ([`RunPaths::optim`]); read when resuming them.
    pub fn last_optim(&self) -> PathBuf {
        self.dir.join("last.optim.safetensors")
    }
    /// `optim-EPOCH.safetensors`: the optimizer state after `epoch` epochs. `last`'s
    /// header names the one it belongs to, with its SHA-256.
    pub fn optim(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("optim-{epoch:05}.safetensors"))
    }
    /// `.lock`: held (an advisory lock) by the process writing the run.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join(".lock")
    }
    /// `best.safetensors`
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }
    /// `watch.jsonl` (`--watch`)
    pub fn watch(&self) -> PathBuf {
        self.dir.join("watch.jsonl")
    }
    /// `metrics.json`
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.json")
    }
    /// `plans.json`: the timed kernel choices the run used ([`plans`]).
    pub fn plans(&self) -> PathBuf {
        self.dir.join("plans.json")
    }
}

/// Progress of one iteration, for a progress bar.
#[derive(Clone, Debug)]
pub struct IterProgress {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Epochs in the run.
    pub epochs: u64,
    /// Iteration in the epoch, from 1.
    pub iteration: u64,
    /// Iterations per epoch.
    pub iterations: u64,
    /// Mean loss of the epoch so far.
    pub loss: f64,
    /// Accuracy of the epoch so far.
    pub acc: f64,
    /// Images per second in the epoch so far.
    pub images_per_s: f64,
    /// Learning rate.
    pub lr: f32,
}

/// Receives progress; the CLI draws a bar or prints lines.
pub trait Observer {
    /// After every iteration.
    fn iteration(&mut self, _p: &IterProgress) {}
    /// After every epoch's validation.
    fn epoch(&mut self, _r: &Record) {}
    /// A message for the person (data source, resume, early stop).
    fn note(&mut self, _msg: &str) {}
    /// Asked after every step: whether to stop now (Ctrl-C). The run then ends at that
    /// step boundary without a checkpoint of the unfinished epoch: the last commit stays
    /// the state to resume from ([`Outcome::interrupted`]).
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Epochs completed (including before a resume).
    pub epochs: u64,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Best monitored validation number, if there was validation.
    pub best: Option<f64>,
    /// Test loss and confusion matrix of the final model, if a test split exists.
    pub test: Option<(f64, Confusion)>,
    /// The same test with the views of [`TrainConfig::tta`] averaged, when asked for.
    pub test_tta: Option<(f64, Confusion)>,
    /// Class names.
    pub class_names: Vec<String>,
    /// Wall time of the whole run in seconds (over resumes).
    pub time_s: f64,
    /// Whether the run was stopped on request ([`Observer::should_stop`]) during epoch
    /// `epochs + 1`; then nothing of that epoch was saved and there is no test.
    pub interrupted: bool,
}

/// The configuration fields a resumed run may change: the length of the run, and the
/// loader's threads (the batches do not depend on them).
pub const RESUME_MAY_CHANGE: &[&str] = &["epochs", "workers", "watch", "tta"];

/// Header key: completed epochs.
pub const META_EPOCH: &str = "strata.epoch";
/// Header key: optimizer steps.
pub const META_STEP: &str = "strata.step";
/// Header key: dataset name or folder.
pub const META_DATA: &str = "strata.data";
/// Header key: class names (JSON list).
pub const META_CLASSES: &str = "strata.classes";

fn meta_num(meta: &BTreeMap<String, String>, key: &str, path: &Path) -> Result<f64> {
    meta.get(key)
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| Error::Format {
            path: path.to_path_buf(),
            reason: format!("no `{key}` in the header: this checkpoint cannot resume a run"),
        })
}

/// Runs (or resumes) the training described by `cfg` in `paths`.
pub fn run(
    cfg: &TrainConfig,
    paths: &RunPaths,
    resume: bool,
    obs: &mut dyn Observer,
) -> Result<Outcome> {
    // The run records what it does: `auto` augmentation resolved for the dataset, and a
    // data folder by its absolute path (so `eval` works from any directory).
    let mut cfg = cfg.clone();
    cfg.augment = cfg.resolved_augment();
    let data = Path::new(&cfg.data);
    if data.is_dir() && data.is_relative() {
        if let Ok(abs) = std::fs::canonicalize(data) {
            cfg.data = abs.display().to_string();
        }
    }
    // A fine-tune trains the source's model; its weights are named by absolute path.
    if let Some(ft) = &mut cfg.finetune {
        if let Ok(abs) = std::fs::canonicalize(&ft.from) {
            ft.from = abs.display().to_string();
        }
        cfg.model = pretrained::model_name(ft)?;
    }
    run_in(&cfg, paths, resume, obs)
}

use run_log::RunLog;

fn run_in(
    cfg: &TrainConfig,
    paths: &RunPaths,
    resume: bool,
    obs: &mut dyn Observer,
) -> Result<Outcome> {
    let Setup {
        mut trainer,
        train_loader,
        val_loader,
        test_loader,
        class_names,
        normalize,
        plans: book,
        ..
    } = Setup::new(cfg, true, obs)?;
    let per_epoch = train_loader.len() as u64;
    let history = History::new(&paths.history());

    // Where we start: fresh, or after the last checkpointed epoch.
    let (mut epoch0, mut best, mut bad_epochs, mut time0) = (0u64, None::<f64>, 0u64, 0.0f64);
    if !resume {
        std::fs::create_dir_all(&paths.dir).map_err(|source| Error::Io {
            path: paths.dir.clone(),
            source,
        })?;
    }
    // Held until the run returns: a second writer of this folder is refused.
    let _lock = commit::lock(paths)?;
    if resume {
        // The run goes on as its config.toml says, but for the fields that may change.
        let saved = TrainConfig::from_toml(&paths.config())?;
        let conflicts = saved.differences(cfg, RESUME_MAY_CHANGE);
        if !conflicts.is_empty() {
            return Err(Error::config(
                "resume",
                "config",
                format!(
                    "{} is resumed with a configuration that differs from its config.toml: {} \
                     (only {} may change); start a new run for the rest",
                    paths.dir.display(),
                    conflicts.join(", "),
                    RESUME_MAY_CHANGE.join(", ")
                ),
            ));
        }
        let last = paths.last();
        let (_, meta) = checkpoint::load(&mut trainer.model, &last, true)?;
        let state = commit::read_optimizer(paths, &meta)?;
        trainer.optimizer.load_state(&state)?;
        let kept = meta.get(commit::META_OPTIM_FILE).map(|n| paths.dir.join(n));
        commit::clean(paths, kept.as_deref())?;
        // The configuration the run goes on with (a changed epoch count).
        checkpoint::write_atomic(&paths.config(), cfg.to_toml()?.as_bytes())?;
        epoch0 = meta_num(&meta, META_EPOCH, &last)? as u64;
        trainer.step = meta_num(&meta, META_STEP, &last)? as u64;
        best = meta.get("strata.best").and_then(|v| v.parse().ok());
        bad_epochs = meta
            .get("strata.bad_epochs")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        time0 = meta
            .get("strata.time_s")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        // The kernels the run timed before, over any cached choice.
        if let (Some(book), Some(rec)) = (&book, plans::load_run(&paths.plans())?) {
            if rec.cpu != plans::cpu_model() {
                obs.note(&format!(
                    "the run's kernel choices were timed on {}; applying them on {}",
                    rec.cpu,
                    plans::cpu_model()
                ));
            }
            book.pin(rec.choices);
        }
        history.truncate_after(epoch0)?;
        watch::Watch::truncate(&paths.watch(), trainer.step)?;
        obs.note(&format!(
            "resuming {} after epoch {epoch0} (step {})",
            paths.dir.display(),
            trainer.step
        ));
    } else {
        checkpoint::write_atomic(&paths.config(), cfg.to_toml()?.as_bytes())?;
        checkpoint::write_atomic(&paths.history(), b"")?;
    }

    let mut meta = trainer.model.metadata()?;
    meta.insert(META_DATA.into(), cfg.data.clone());
    meta.insert(
        META_CLASSES.into(),
        serde_json::to_string(&class_names).unwrap_or_default(),
    );
    meta.extend(normalize.to_metadata());
    meta.insert(
        "strata.train".into(),
        serde_json::to_string(cfg).unwrap_or_default(),
    );

    let start = Instant::now();
    let mut stopped_early = false;
    let mut interrupted = false;
    let mut epochs_done = epoch0;
    let mut watch = cfg
        .watch
        .map(|n| watch::Watch::new(&mut trainer.model, n, &paths.watch()));
    for epoch in epoch0..cfg.epochs {
        let mut log = RunLog::new(obs, &history, cfg, per_epoch, time0, start);
        let stats = match &mut watch {
            Some(w) => trainer.epoch(&train_loader, epoch, &mut [&mut log, w])?,
            None => trainer.epoch(&train_loader, epoch, &mut [&mut log])?,
        };
        if let Some(e) = log.error.take() {
            return Err(e);
        }
        if let Some(e) = watch.as_mut().and_then(|w| w.error.take()) {
            return Err(e);
        }
        if log.interrupted {
            interrupted = true;
            break;
        }
        let val = match &val_loader {
            Some(l) => Some(trainer.evaluate(l)?),
            None => None,
        };
        let record = Record {
            kind: "epoch".into(),
            epoch: epoch + 1,
            step: trainer.step,
            lr: stats.lr,
            train_loss: stats.loss,
            train_acc: stats.acc,
            val_loss: val.as_ref().map(|v| v.0),
            val_acc: val.as_ref().map(|v| v.1.accuracy()),
            time_s: time0 + start.elapsed().as_secs_f64(),
            images_per_s: stats.images as f64 / stats.seconds.max(1e-9),
        };
        if let Some(book) = &book {
            plans::record(&paths.plans(), book, &mut |m| obs.note(m))?;
        }
        history.append(&record)?;
        obs.epoch(&record);
        epochs_done = epoch + 1;

        // Best and early stopping on the monitored validation number.
        let score = match (cfg.monitor, &val) {
            (Monitor::ValLoss, Some(v)) => Some(-v.0),
            (Monitor::ValAcc, Some(v)) => Some(v.1.accuracy()),
            _ => None,
        };
        let improved = match (score, best) {
            (Some(s), Some(b)) => s > b,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            best = score;
            bad_epochs = 0;
        } else {
            bad_epochs += 1;
        }
        meta.insert(META_EPOCH.into(), epochs_done.to_string());
        meta.insert(META_STEP.into(), trainer.step.to_string());
        meta.insert(
            "strata.best".into(),
            best.map_or(String::new(), |b| b.to_string()),
        );
        meta.insert("strata.bad_epochs".into(), bad_epochs.to_string());
        meta.insert(
            "strata.time_s".into(),
            (time0 + start.elapsed().as_secs_f64()).to_string(),
        );
        // One commit per epoch (see `commit`): best, then the optimizer state under a new
        // name, then `last` naming it — the rename of `last` is the commit point.
        if improved || score.is_none() {
            checkpoint::save(&mut trainer.model, &paths.best(), &meta)?;
        }
        commit::commit_epoch(paths, &mut trainer, epochs_done, &mut meta)?;
        if let Some(patience) = cfg.early_stop {
            if score.is_some() && bad_epochs >= patience {
                obs.note(&format!(
                    "early stop: no improvement of {:?} for {patience} epochs",
                    cfg.monitor
                ));
                stopped_early = true;
                break;
            }
        }
    }

    if let Some(w) = &mut watch {
        w.finish();
    }
    // Final test of the last model, when the dataset has a test split.
    let test = match &test_loader {
        Some(tl) if !interrupted => Some(trainer.evaluate(tl)?),
        _ => None,
    };
    let test_tta = match &test_loader {
        Some(tl) if !interrupted && !cfg.tta.is_none() => Some(trainer.evaluate_tta(tl, cfg.tta)?),
        _ => None,
    };
    let outcome = Outcome {
        epochs: epochs_done,
        stopped_early,
        best: best.map(|b| {
            if cfg.monitor == Monitor::ValLoss {
                -b
            } else {
                b
            }
        }),
        test,
        test_tta,
        class_names,
        time_s: time0 + start.elapsed().as_secs_f64(),
        interrupted,
    };
    if !interrupted {
        write_metrics(paths, &outcome, cfg.tta)?;
    }
    Ok(outcome)
}

/// The environment of this process — CPU model, threads, strata version, whether bf16
/// products run — recorded in `metrics.json` and shown by reports.
pub fn environment() -> Vec<(String, String)> {
    vec![
        ("cpu".into(), plans::cpu_model()),
        ("threads".into(), rayon::current_num_threads().to_string()),
        ("strata".into(), env!("CARGO_PKG_VERSION").into()),
        (
            "bf16 products".into(),
            crate::kernels::bf16::available().to_string(),
        ),
    ]
}

fn write_metrics(paths: &RunPaths, o: &Outcome, tta: tta::Tta) -> Result<()> {
    let summary = |(loss, conf): &(f64, Confusion)| {
        serde_json::json!({
            "loss": loss,
            "accuracy": conf.accuracy(),
            "per_class": conf.per_class(),
            "confusion": conf.counts,
        })
    };
    let test = o.test.as_ref().map(summary);
    let test_tta = o.test_tta.as_ref().map(|t| {
        let mut v = summary(t);
        v["views"] = serde_json::json!(tta.name());
        v
    });
    let json = serde_json::json!({
        "epochs": o.epochs,
        "stopped_early": o.stopped_early,
        "best_val": o.best,
        "time_s": o.time_s,
        "classes": o.class_names,
        "test": test,
        "test_tta": test_tta,
        "environment": environment().into_iter().collect::<BTreeMap<String, String>>(),
    });
    let text =
        serde_json::to_string_pretty(&json).map_err(|e| Error::state("metrics", e.to_string()))?;
    checkpoint::write_atomic(&paths.metrics(), text.as_bytes())
}

/// A trained model with what is needed to feed it: loaded from a checkpoint.
pub struct Trained {
    /// The network.
    pub model: Model,
    /// Normalization of its inputs.
    pub normalize: Normalize,
    /// Class names.
    pub class_names: Vec<String>,
    /// The dataset it was trained on.
    pub data: Option<String>,
    /// The dataset's classes it was trained on (`classes` of its run), when a subset.
    pub classes: Option<Vec<u32>>,
    /// What a person should know about how it was loaded (a guessed normalization).
    pub warnings: Vec<String>,
}

/// How to read weights: for a bare state dict (no strata header) the model it is, and
/// for any the normalization to use instead of the recorded one.
#[derive(Clone, Debug, Default)]
pub struct LoadAs {
    /// The model of a bare state dict (torchvision's spelling accepted).
    pub model: Option<String>,
    /// `imagenet`, or `MEAN,.../STD,...` on a 0–1 scale.
    pub normalize: Option<String>,
}

/// Loads `path` — a checkpoint file, or a run folder (its `best.safetensors`).
pub fn load_trained(path: &Path) -> Result<Trained> {
    load_trained_as(path, &LoadAs::default())
}

/// [`load_trained`], also of a bare state dict such as torchvision's: its model named by
/// `how.model`, its configuration the model's defaults (classes from the head), its
/// normalization `how.normalize` or else ImageNet's for RGB (with a warning).
pub fn load_trained_as(path: &Path, how: &LoadAs) -> Result<Trained> {
    let file = pretrained::weights_file(path);
    let meta = checkpoint::read_metadata(&file)?;
    let mut warnings = vec![];
    let (model, recorded) = if meta.contains_key(crate::models::META_MODEL) && how.model.is_none() {
        let (model, _) = Model::from_checkpoint(&file)?;
        let hm: HashMap<String, String> = meta.clone().into_iter().collect();
        (model, Normalize::from_metadata(&hm)?)
    } else {
        let src = pretrained::Source::open(&file, how.model.as_deref())?;
        let mut model = crate::models::build(&src.model, Some(src.config.clone()))?;
        pretrained::fit(&mut model, &src, true)?;
        (model, src.normalize)
    };
    let channels = model.config.in_channels;
    let normalize = match (&how.normalize, recorded) {
        (Some(s), _) => pretrained::parse_normalize(s)?,
        (None, Some(n)) => n,
        (None, None) if channels == 3 => {
            warnings.push("the weights record no normalization; using ImageNet's (torchvision's models expect it; --normalize to say otherwise)".into());
            pretrained::imagenet()
        }
        (None, None) => {
            warnings.push("the weights record no normalization; feeding pixels in [0, 1] (--normalize MEAN/STD to say otherwise)".into());
            Normalize::identity(channels)
        }
    };
    if normalize.channels() != channels {
        return Err(Error::config(
            "load",
            "normalize",
            format!(
                "{} channels of normalization for a {channels}-channel model",
                normalize.channels()
            ),
        ));
    }
    let class_names = meta
        .get(META_CLASSES)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| crate::data::dataset::numbered_classes(model.config.classes));
    let classes = meta
        .get("strata.train")
        .and_then(|s| serde_json::from_str::<TrainConfig>(s).ok())
        .and_then(|c| c.classes);
    Ok(Trained {
        model,
        normalize,
        class_names,
        data: meta.get(META_DATA).cloned(),
        classes,
        warnings,
    })
}
