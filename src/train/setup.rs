//! [`Setup`]: what a [`TrainConfig`] turns into before the first step — the data (split,
//! normalization, loaders), the model and the [`Trainer`] with its optimizer, schedule
//! and loss. `strata train` and the method commands (`check`, `lr-find`) start from it,
//! so they train exactly what `train` would.

use super::config::TrainConfig;
use super::pretrained::{self, Finetune, FinetuneMode, Source};
use super::trainer::Trainer;
use super::Observer;
use crate::data::{self, Augment, ImageDataset, Loader, LoaderConfig, Normalize, Split};
use crate::error::{Error, Result};
use crate::kernels::conv::{PlanBook, Tuning};
use crate::loss::CrossEntropy;
use crate::models::{self, ModelConfig};
use crate::nn;
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
    let full = only_classes(cfg, data::load(&cfg.data, Split::Train)?)?;
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

/// The images of the run's classes (`cfg.classes`), or all.
fn only_classes(cfg: &TrainConfig, set: ImageDataset) -> Result<ImageDataset> {
    match &cfg.classes {
        Some(c) => set.classes_subset(c),
        None => Ok(set),
    }
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
        Ok(t) => Ok(Some(only_classes(cfg, t)?)),
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
    /// The book of timed kernel choices, when the run times its convolutions
    /// ([`super::plans`]; `conv_tuning`).
    pub plans: Option<Arc<PlanBook>>,
}

impl Setup {
    /// Validates `cfg`, reads the data (and the test split when `with_test`), builds the
    /// model, the loaders and the trainer. Everything that can be checked before the
    /// first step fails here.
    pub fn new(cfg: &TrainConfig, with_test: bool, obs: &mut dyn Observer) -> Result<Setup> {
        cfg.validate()?;
        let augment = Augment::parse(&cfg.augment)?;
        let mut d = prepare_data(cfg, obs)?;
        let classes = d.train.num_classes();
        let class_names = d.train.class_names().to_vec();
        let shape = augment.output_shape(d.train.shape());
        let model = match &cfg.finetune {
            None => models::build(&cfg.model, Some(model_config(cfg, classes, shape)?))?,
            Some(ft) => {
                let (model, normalize) = pretrained_model(cfg, ft, &d, classes, shape, obs)?;
                d.normalize = normalize;
                model
            }
        };
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
        let tuning = cfg.conv_tuning.resolve(cfg.precision);
        let plans = (tuning == Tuning::Timed)
            .then(|| Arc::new(super::plans::new_book(&mut |m| obs.note(m))));
        nn::set_tuning(&mut trainer.model, tuning);
        nn::set_plan_book(&mut trainer.model, plans.clone());
        Ok(Setup {
            plans,
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

/// The model of a fine-tune: the source's architecture built for this data, its weights
/// fitted ([`pretrained::fit`]), what trains set ([`pretrained::freeze`]); and the
/// normalization of the inputs.
fn pretrained_model(
    cfg: &TrainConfig,
    ft: &Finetune,
    d: &RunData,
    classes: usize,
    shape: [usize; 3],
    obs: &mut dyn Observer,
) -> Result<(models::Model, Normalize)> {
    let src = Source::open(std::path::Path::new(&ft.from), ft.model.as_deref())?;
    if src.config.in_channels != shape[0] {
        return Err(Error::config(
            "finetune",
            "data",
            format!(
                "{} takes {}-channel images and {} has {}-channel images: fine-tune on images \
                 with the source's channels",
                src.path.display(),
                src.config.in_channels,
                cfg.data,
                shape[0]
            ),
        ));
    }
    let mut m = src.config.clone();
    m.classes = classes;
    m.input_size = [shape[1], shape[2]];
    m.seed = cfg.seed;
    if let Some(p) = cfg.dropout {
        m.dropout = p;
    }
    m.validate()?;
    let mut model = models::build(&src.model, Some(m))?;
    let fitted = pretrained::fit(&mut model, &src, ft.keep_head)?;
    pretrained::freeze(&mut model, &fitted.head, ft.mode, ft.backbone_lr_mult);
    if src.config.input_size != model.config.input_size {
        obs.note(&format!(
            "note: the new images are {}×{}, {} was trained on {}×{}; its backbone takes both",
            shape[1], shape[2], src.model, src.config.input_size[0], src.config.input_size[1]
        ));
    }
    obs.note(&format!(
        "finetune: {} from {} — {} tensors loaded, head {} ({}), {}",
        src.model,
        src.path.display(),
        fitted.loaded,
        fitted.head.join(", "),
        if fitted.new_head { "new" } else { "kept" },
        match ft.mode {
            FinetuneMode::Head =>
                "only the head trains (backbone and BatchNorm statistics frozen)".to_string(),
            FinetuneMode::Full if ft.backbone_lr_mult != 1.0 => format!(
                "every layer trains, the backbone at {}× the rate",
                ft.backbone_lr_mult
            ),
            FinetuneMode::Full => "every layer trains".to_string(),
        }
    ));
    let normalize = match ft.normalize.as_deref() {
        Some("data") => d.normalize.clone(),
        Some("source") => src.normalize.clone().ok_or_else(|| {
            Error::config(
                "finetune",
                "normalize",
                format!(
                    "{} records no normalization: name one (imagenet, data, or MEAN,.../STD,...)",
                    src.path.display()
                ),
            )
        })?,
        Some(other) => pretrained::parse_normalize(other)?,
        None => match (&src.normalize, shape[0]) {
            (Some(n), _) => n.clone(),
            (None, 3) => {
                obs.note("warning: the weights record no normalization; using ImageNet's (torchvision's models expect it) — say --normalize data or MEAN,.../STD,... if they were trained otherwise");
                pretrained::imagenet()
            }
            (None, _) => {
                obs.note("warning: the weights record no normalization; using the new training images' — say --normalize MEAN/STD if the source was trained otherwise");
                d.normalize.clone()
            }
        },
    };
    if normalize.channels() != shape[0] {
        return Err(Error::config(
            "finetune",
            "normalize",
            format!(
                "{} channels of normalization for {}-channel images",
                normalize.channels(),
                shape[0]
            ),
        ));
    }
    Ok((model, normalize))
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
