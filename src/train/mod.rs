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
mod run_log;
pub mod trainer;

pub use config::{Monitor, TrainConfig};
pub use history::{History, Record};
pub use metrics::Confusion;
pub use trainer::{
    epoch_seed, evaluate, Control, EpochStats, ForwardView, Hook, StepInfo, StepResult, Trainer,
};

use crate::checkpoint;
use crate::data::{self, Augment, ImageDataset, Loader, LoaderConfig, Normalize, Split};
use crate::error::{Error, Result};
use crate::loss::CrossEntropy;
use crate::models::{self, Model, ModelConfig};
use crate::optim::{LrSchedule, Optimizer};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// `metrics.json`
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.json")
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
    /// Class names.
    pub class_names: Vec<String>,
    /// Wall time of the whole run in seconds (over resumes).
    pub time_s: f64,
    /// Whether the run was stopped on request ([`Observer::should_stop`]) during epoch
    /// `epochs + 1`; then nothing of that epoch was saved and there is no test.
    pub interrupted: bool,
}

/// The model configuration of a run: the model's defaults, the run's overrides, and the
/// data's classes and image shape.
pub fn model_config(cfg: &TrainConfig, classes: usize, shape: [usize; 3]) -> Result<ModelConfig> {
    let mut m = models::default_config(&cfg.model)?;
    m.classes = classes;
    m.in_channels = shape[0];
    m.input_size = [shape[1], shape[2]];
    m.seed = cfg.seed;
    if let Some(w) = cfg.width {
        m.width = w;
    }
    if let Some(s) = &cfg.norm {
        m.norm = s.parse()?;
    }
    if let Some(s) = &cfg.activation {
        m.activation = s.parse()?;
    }
    if let Some(d) = cfg.dropout {
        m.dropout = d;
    }
    if let Some(s) = &cfg.init {
        m.init = s.parse()?;
    }
    m.validate()?;
    Ok(m)
}

/// The configuration fields a resumed run may change: the length of the run, and the
/// loader's threads (the batches do not depend on them).
pub const RESUME_MAY_CHANGE: &[&str] = &["epochs", "workers"];

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

/// The data of a run: train and validation splits, and the normalization.
struct RunData {
    train: ImageDataset,
    val: Option<ImageDataset>,
    normalize: Normalize,
}

fn prepare_data(cfg: &TrainConfig, obs: &mut dyn Observer) -> Result<RunData> {
    let full = data::load(&cfg.data, Split::Train)?;
    let full = match cfg.per_class {
        Some(k) => full.per_class(k, cfg.seed)?,
        None => full,
    };
    let (train, val) = if cfg.val_fraction > 0.0 {
        let (t, v) = full.stratified_split(cfg.val_fraction, cfg.seed)?;
        if v.is_empty() {
            obs.note(&format!(
                "note: no validation images: {} of each class's images rounds to none; \
                 training without validation (raise --val-fraction or --per-class for it)",
                cfg.val_fraction
            ));
            (t, None)
        } else {
            (t, Some(v))
        }
    } else {
        (full, None)
    };
    obs.note(&format!(
        "data: {} — {} training images{}, {} classes, {:?}",
        cfg.data,
        train.len(),
        val.as_ref()
            .map_or(String::new(), |v| format!(", {} validation", v.len())),
        train.num_classes(),
        train.shape()
    ));
    let normalize = Normalize::from_dataset(&train);
    Ok(RunData {
        train,
        val,
        normalize,
    })
}

/// Whether `e` says a split is not there (rather than there and unreadable).
fn split_absent(e: &Error) -> bool {
    match e {
        Error::NotFound { .. } => true,
        Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::Format { reason, .. } => reason.contains("only a training split"),
        _ => false,
    }
}

/// The test split of the run's data: `None` (with a note) when the dataset has none, an
/// error when it has one that cannot be read.
fn load_test_split(cfg: &TrainConfig, obs: &mut dyn Observer) -> Result<Option<ImageDataset>> {
    match data::load(&cfg.data, Split::Test) {
        Ok(t) => Ok(Some(t)),
        Err(e) if split_absent(&e) => {
            obs.note(&format!("no test split will be evaluated: {e}"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
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
    run_in(&cfg, paths, resume, obs)
}

use run_log::RunLog;

fn run_in(
    cfg: &TrainConfig,
    paths: &RunPaths,
    resume: bool,
    obs: &mut dyn Observer,
) -> Result<Outcome> {
    cfg.validate()?;
    let augment = Augment::parse(&cfg.augment)?;
    let d = prepare_data(cfg, obs)?;
    let classes = d.train.num_classes();
    let class_names = d.train.class_names().to_vec();
    let shape = augment.output_shape(d.train.shape());
    let mconf = model_config(cfg, classes, shape)?;
    let model = models::build(&cfg.model, Some(mconf))?;

    let loader_cfg = |augment: Augment, shuffle: bool| LoaderConfig {
        batch_size: cfg.batch_size,
        shuffle,
        drop_last: false,
        seed: cfg.seed,
        workers: cfg.workers,
        prefetch: 4,
        augment,
        normalize: d.normalize.clone(),
    };
    // Validation and test images reach the network at the size it was built for.
    let eval_augment = augment.for_eval(d.train.shape());
    let train_loader = Loader::new(Arc::new(d.train), loader_cfg(augment, true))?;
    let val_loader = match d.val {
        Some(v) => Some(Loader::new(
            Arc::new(v),
            loader_cfg(eval_augment.clone(), false),
        )?),
        None => None,
    };
    // The test split is read now: a corrupt one fails before any training, an absent one
    // is a note.
    let test_loader = match load_test_split(cfg, obs)? {
        Some(t) => Some(Loader::new(Arc::new(t), loader_cfg(eval_augment, false))?),
        None => None,
    };
    let per_epoch = train_loader.len() as u64;
    let total = cfg.epochs * per_epoch;
    let warmup = (cfg.warmup_epochs as f64 * per_epoch as f64).round() as u64;
    let sched = LrSchedule::new(cfg.lr, total, warmup, cfg.schedule.clone())?;
    let opt = Optimizer::new(cfg.optimizer.clone())?;
    let mut trainer = Trainer::new(model, opt, sched);
    trainer.loss = CrossEntropy::with_label_smoothing(cfg.label_smoothing)?;
    trainer.clip_grad = cfg.clip_grad;
    trainer.precision = cfg.precision;
    trainer.seed = cfg.seed;
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
                    RESUME_MAY_CHANGE.join(" and ")
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
        history.truncate_after(epoch0)?;
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
    meta.extend(d.normalize.to_metadata());
    meta.insert(
        "strata.train".into(),
        serde_json::to_string(cfg).unwrap_or_default(),
    );

    let start = Instant::now();
    let mut stopped_early = false;
    let mut interrupted = false;
    let mut epochs_done = epoch0;
    for epoch in epoch0..cfg.epochs {
        let mut log = RunLog::new(obs, &history, cfg, per_epoch, time0, start);
        let stats = trainer.epoch(&train_loader, epoch, &mut [&mut log])?;
        if let Some(e) = log.error.take() {
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

    // Final test of the last model, when the dataset has a test split.
    let test = match &test_loader {
        Some(tl) if !interrupted => Some(trainer.evaluate(tl)?),
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
        class_names,
        time_s: time0 + start.elapsed().as_secs_f64(),
        interrupted,
    };
    if !interrupted {
        write_metrics(paths, &outcome)?;
    }
    Ok(outcome)
}

fn write_metrics(paths: &RunPaths, o: &Outcome) -> Result<()> {
    let test = o.test.as_ref().map(|(loss, conf)| {
        serde_json::json!({
            "loss": loss,
            "accuracy": conf.accuracy(),
            "per_class": conf.per_class(),
            "confusion": conf.counts,
        })
    });
    let json = serde_json::json!({
        "epochs": o.epochs,
        "stopped_early": o.stopped_early,
        "best_val": o.best,
        "time_s": o.time_s,
        "classes": o.class_names,
        "test": test,
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
}

/// Loads `path` — a checkpoint file, or a run folder (its `best.safetensors`).
pub fn load_trained(path: &Path) -> Result<Trained> {
    let file = if path.is_dir() {
        RunPaths::new(path).best()
    } else {
        path.to_path_buf()
    };
    let (model, meta) = Model::from_checkpoint(&file)?;
    let hm: HashMap<String, String> = meta.clone().into_iter().collect();
    let normalize = Normalize::from_metadata(&hm)?
        .unwrap_or_else(|| Normalize::identity(model.config.in_channels));
    let class_names = meta
        .get(META_CLASSES)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| data::dataset::numbered_classes(model.config.classes));
    Ok(Trained {
        model,
        normalize,
        class_names,
        data: meta.get(META_DATA).cloned(),
    })
}
