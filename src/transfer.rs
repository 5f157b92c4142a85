//! Transfer learning, as the lecture lays it out (`strata finetune`): start from a model
//! trained on other data, replace its classification head for the new classes, and train
//! either the head alone (the backbone and its BatchNorm statistics frozen), every layer
//! (optionally the backbone at a smaller learning rate), or first the one and then the
//! other ([`Mode::HeadThenFull`], as fastai's `fine_tune`: the head for a few epochs,
//! then everything at half the rate).
//!
//! Each stage is an ordinary training run ([`crate::train::run`]) whose configuration has
//! a `[finetune]` section ([`crate::train::pretrained`]): the run folder, its history,
//! checkpoints, exact resume, `eval`, `predict` and `diagnose` work as for any run.
//!
//! [`advise`] prints the lecture's 2×2 advice (similar or different data × little or much
//! data) for the data at hand.

use crate::error::{Error, Result};
use crate::train::pretrained::{self, Finetune, FinetuneMode};
use crate::train::{self, Observer, RunPaths, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// From this many training images per class on, a fine-tune counts as "much data".
///
/// The lecture gives no number. The transfer experiment in docs/transfer.md (Fashion-MNIST
/// classes 0–4 → 5–9, 3 seeds) is the evidence for this one: at 10 images per class the
/// head alone is as good as every layer (88.8 ± 2.1% against 89.4 ± 2.1%, at a third of
/// the time), from 50 on fine-tuning every layer is ahead by more than the spread
/// (94.1 ± 0.4% against 93.0 ± 0.3%; at 500 95.5% against 94.3%).
pub const MUCH_DATA_PER_CLASS: usize = 50;

/// How a fine-tune trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The new head only.
    Head,
    /// Every layer.
    Full,
    /// The head first (`head_epochs`), then every layer at half the rate.
    HeadThenFull,
    /// Chosen from the data's size ([`advise`]): the head with little data, every
    /// layer with much.
    Auto,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "head" => Ok(Mode::Head),
            "full" => Ok(Mode::Full),
            "head-then-full" => Ok(Mode::HeadThenFull),
            "auto" => Ok(Mode::Auto),
            _ => Err(Error::config(
                "finetune",
                "mode",
                format!("`{s}`: use head, full, head-then-full or auto"),
            )),
        }
    }
}

/// A fine-tune to run.
#[derive(Clone, Debug)]
pub struct FinetuneOptions {
    /// The new data and how to train on it (its `finetune` section is set here).
    pub train: TrainConfig,
    /// A run folder or a weights file.
    pub from: String,
    /// The model of a bare state dict (torchvision's spelling accepted).
    pub model: Option<String>,
    /// The inputs' normalization (see [`Finetune::normalize`]).
    pub normalize: Option<String>,
    /// How it trains.
    pub mode: Mode,
    /// The backbone's rate relative to the head's, when every layer trains.
    pub backbone_lr_mult: f32,
    /// Epochs of the head stage of [`Mode::HeadThenFull`]; `train.epochs` follow.
    pub head_epochs: u64,
    /// The run folder (head-then-full: the full stage; the head stage in `head/` inside).
    pub out: PathBuf,
}

/// The lecture's 2×2 advice for the data at hand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// Training images per class of the new data (the smallest class).
    pub images_per_class: usize,
    /// Whether that counts as much data ([`MUCH_DATA_PER_CLASS`]).
    pub much_data: bool,
    /// The source's dataset and the new one, when known (similarity is for a person to
    /// judge: the same dataset's other classes are similar, photos vs digits are not).
    pub source_data: Option<String>,
    /// The new dataset.
    pub new_data: String,
    /// The mode [`Mode::Auto`] picks.
    pub mode: Mode,
    /// The advice, as text.
    pub text: String,
}

/// One stage of a fine-tune: one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// `head` or `full`.
    pub mode: FinetuneMode,
    /// Its run folder.
    pub dir: PathBuf,
    /// Epochs trained.
    pub epochs: u64,
    /// Peak learning rate.
    pub lr: f32,
    /// Best validation accuracy (when there was validation).
    pub best_val: Option<f64>,
    /// Test accuracy of the final model (when the data has a test split).
    pub test_acc: Option<f64>,
    /// Wall seconds.
    pub time_s: f64,
}

/// What a fine-tune did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneReport {
    /// The model.
    pub model: String,
    /// The advice for this data.
    pub advice: Advice,
    /// The mode that ran.
    pub mode: Mode,
    /// The runs, in order; the last holds the final model.
    pub stages: Vec<Stage>,
}

impl FinetuneReport {
    /// Test accuracy of the final model.
    pub fn test_acc(&self) -> Option<f64> {
        self.stages.last().and_then(|s| s.test_acc)
    }
}

/// The 2×2 advice for fine-tuning on `cfg`'s data from weights trained on `source_data`.
pub fn advise(cfg: &TrainConfig, source_data: Option<String>) -> Result<Advice> {
    let (smallest, _) = crate::study::runs::class_sizes(cfg)?;
    let mut n = cfg.per_class.map_or(smallest, |k| k.min(smallest));
    n = ((n as f64) * (1.0 - cfg.val_fraction)).floor() as usize;
    let much = n >= MUCH_DATA_PER_CLASS;
    let mode = if much { Mode::Full } else { Mode::Head };
    let mark = |row_much: bool| if row_much == much { "→" } else { " " };
    let row = |m: &str, label: &str, similar: &str, different: &str| {
        format!("{m} {label:<12} {similar:<40} {different}\n")
    };
    let text = format!(
        "transfer learning, the lecture's advice ({n} training images per class: {} data; \
         \"much\" from {MUCH_DATA_PER_CLASS}):\n{}{}{}source data: {}; new data: {} — \
         similar or different is for you to judge.",
        if much { "much" } else { "little" },
        row(" ", "", "similar data", "different data"),
        row(
            mark(false),
            "little data",
            "retrain the head (--mode head)",
            "retrain the head; collect more data"
        ),
        row(
            mark(true),
            "much data",
            "fine-tune every layer (--mode full)",
            "fine-tune every layer, or from scratch"
        ),
        source_data.as_deref().unwrap_or("unknown"),
        cfg.data
    );
    Ok(Advice {
        images_per_class: n,
        much_data: much,
        source_data,
        new_data: cfg.data.clone(),
        mode,
        text,
    })
}

/// Runs a fine-tune: the advice, then one run (head or full) or two (head, then full).
pub fn finetune(opts: &FinetuneOptions, obs: &mut dyn Observer) -> Result<FinetuneReport> {
    let ft = |mode: FinetuneMode| Finetune {
        from: opts.from.clone(),
        mode,
        backbone_lr_mult: opts.backbone_lr_mult,
        keep_head: false,
        model: opts.model.clone(),
        normalize: opts.normalize.clone(),
    };
    // Everything that can be checked before the data is read and the advice printed.
    let mut probe = opts.train.clone();
    probe.finetune = Some(ft(FinetuneMode::Full));
    probe.validate()?;
    if opts.mode == Mode::HeadThenFull && opts.head_epochs == 0 {
        return Err(Error::config(
            "finetune",
            "head_epochs",
            "head-then-full needs at least one epoch of the head stage",
        ));
    }
    let model = pretrained::model_name(&ft(FinetuneMode::Full))?;
    let src_meta =
        crate::checkpoint::read_metadata(&pretrained::weights_file(Path::new(&opts.from)))?;
    let advice = advise(&opts.train, src_meta.get(train::META_DATA).cloned())?;
    obs.note(&advice.text);
    let mode = match opts.mode {
        Mode::Auto => advice.mode,
        m => m,
    };
    let run = |cfg: &TrainConfig, dir: &Path, obs: &mut dyn Observer| -> Result<Stage> {
        let fm = cfg.finetune.as_ref().map_or(FinetuneMode::Full, |f| f.mode);
        let o = train::run(cfg, &RunPaths::new(dir), false, obs)?;
        Ok(Stage {
            mode: fm,
            dir: dir.to_path_buf(),
            epochs: o.epochs,
            lr: cfg.lr,
            best_val: o.best,
            test_acc: o.test.map(|(_, c)| c.accuracy()),
            time_s: o.time_s,
        })
    };
    let mut stages = vec![];
    match mode {
        Mode::Head | Mode::Full | Mode::Auto => {
            let mut cfg = opts.train.clone();
            cfg.finetune = Some(ft(if mode == Mode::Head {
                FinetuneMode::Head
            } else {
                FinetuneMode::Full
            }));
            stages.push(run(&cfg, &opts.out, obs)?);
        }
        Mode::HeadThenFull => {
            let head_dir = opts.out.join("head");
            let mut cfg = opts.train.clone();
            cfg.epochs = opts.head_epochs;
            cfg.warmup_epochs = cfg.warmup_epochs.min(cfg.epochs as f32);
            cfg.finetune = Some(ft(FinetuneMode::Head));
            obs.note(&format!(
                "stage 1 of 2: the head alone, {} epochs → {}",
                cfg.epochs,
                head_dir.display()
            ));
            stages.push(run(&cfg, &head_dir, obs)?);
            let mut cfg = opts.train.clone();
            cfg.lr /= 2.0;
            cfg.finetune = Some(Finetune {
                from: head_dir.display().to_string(),
                keep_head: true,
                // The head stage recorded the normalization it used.
                normalize: None,
                model: None,
                ..ft(FinetuneMode::Full)
            });
            obs.note(&format!(
                "stage 2 of 2: every layer at half the rate ({}), {} epochs → {}",
                cfg.lr,
                cfg.epochs,
                opts.out.display()
            ));
            stages.push(run(&cfg, &opts.out, obs)?);
        }
    }
    Ok(FinetuneReport {
        model,
        advice,
        mode,
        stages,
    })
}
