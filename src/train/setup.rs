//! [`Setup`]: what a [`TrainConfig`] turns into before the first step — the data (split,
//! normalization, loaders), the model and the [`Trainer`] with its optimizer, schedule
//! and loss. `strata train` and the method commands (`check`, `lr-find`) start from it,
//! so they train exactly what `train` would.

use super::config::TrainConfig;
use super::trainer::Trainer;
use super::Observer;
use crate::data::{self, Augment, ImageDataset, Loader, LoaderConfig, Normalize, Split};
use crate::error::{Error, Result};
use crate::loss::CrossEntropy;
use crate::models::{self, ModelConfig};
use crate::optim::{LrSchedule, Optimizer};
use std::sync::Arc;

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

/// A run's data, model and trainer, ready for the first step.
pub struct Setup {
    /// The model (built from the config, initialized with its seed), the optimizer, the
    /// schedule over the whole run, the loss.
    pub trainer: Trainer,
    /// Training images: shuffled, augmented.
    pub train_loader: Loader,
    /// Validation images (none when `val_fraction` is 0 or rounds to none).
    pub val_loader: Option<Loader>,
    /// The test split, when the dataset has one and it was asked for.
    pub test_loader: Option<Loader>,
    /// Class names.
    pub class_names: Vec<String>,
    /// The normalization computed on the training images.
    pub normalize: Normalize,
    /// The augmentation of the training images.
    pub augment: Augment,
    /// The training images themselves.
    pub train_set: Arc<ImageDataset>,
    /// The validation images.
    pub val_set: Option<Arc<ImageDataset>>,
}

impl Setup {
    /// Validates `cfg`, reads the data (and the test split when `with_test`), builds the
    /// model, the loaders and the trainer. Everything that can be checked before the
    /// first step fails here.
    pub fn new(cfg: &TrainConfig, with_test: bool, obs: &mut dyn Observer) -> Result<Setup> {
        cfg.validate()?;
        let augment = Augment::parse(&cfg.augment)?;
        let d = prepare_data(cfg, obs)?;
        let classes = d.train.num_classes();
        let class_names = d.train.class_names().to_vec();
        let shape = augment.output_shape(d.train.shape());
        let mconf = model_config(cfg, classes, shape)?;
        let model = models::build(&cfg.model, Some(mconf))?;
        // Validation and test images reach the network at the size it was built for.
        let eval_augment = augment.for_eval(d.train.shape());
        let train_set = Arc::new(d.train);
        let val_set = d.val.map(Arc::new);
        let loader = |set: &Arc<ImageDataset>, augment: Augment, shuffle: bool| {
            Loader::new(
                set.clone(),
                loader_config(cfg, &d.normalize, augment, shuffle),
            )
        };
        let train_loader = loader(&train_set, augment.clone(), true)?;
        let val_loader = match &val_set {
            Some(v) => Some(loader(v, eval_augment.clone(), false)?),
            None => None,
        };
        // The test split is read now: a corrupt one fails before any training, an absent
        // one is a note.
        let test_loader = match with_test {
            true => match load_test_split(cfg, obs)? {
                Some(t) => Some(loader(&Arc::new(t), eval_augment, false)?),
                None => None,
            },
            false => None,
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
        Ok(Setup {
            trainer,
            train_loader,
            val_loader,
            test_loader,
            class_names,
            normalize: d.normalize,
            augment,
            train_set,
            val_set,
        })
    }
}

/// The loader settings of a run for `augment` (batch size, seed, workers from `cfg`).
pub fn loader_config(
    cfg: &TrainConfig,
    normalize: &Normalize,
    augment: Augment,
    shuffle: bool,
) -> LoaderConfig {
    LoaderConfig {
        batch_size: cfg.batch_size,
        shuffle,
        drop_last: false,
        seed: cfg.seed,
        workers: cfg.workers,
        prefetch: 4,
        augment,
        normalize: normalize.clone(),
    }
}
