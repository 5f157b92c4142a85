//! Everything a training run is made of, with the defaults of `strata train`.
//!
//! The default recipe trains `fmnist-cnn` on Fashion-MNIST as PyTorch's reference run
//! does: SGD with Nesterov momentum 0.9, weight decay 5e-4, a one-cycle schedule peaking
//! at 0.1, batch 128, horizontal flips and 2-pixel padded crops, 15 epochs. A TOML file
//! (`--config`) sets any field; flags override it; the run folder keeps the result.

use super::tta::Tta;
use crate::error::{Error, Result};
use crate::kernels::bf16::Precision;
use crate::optim::{OptimizerConfig, Schedule};
use serde::{Deserialize, Serialize};

/// Which validation number decides "best" and early stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Lower validation loss is better.
    ValLoss,
    /// Higher validation accuracy is better.
    ValAcc,
}

/// How the convolutions pick their kernels in a run (`--conv-tuning`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvTuning {
    /// Static rules in f32 (the same numbers on every CPU), timed under bf16 (a layer
    /// where bf16 does not pay on this CPU runs f32, so bf16 is not slower than f32).
    #[default]
    Auto,
    /// The static rules (`kernels::conv::Path::of`).
    Static,
    /// Every kernel that applies timed once per geometry, the fastest kept
    /// (`kernels::conv::autotune_forward`), recorded in the run folder and a cache file.
    Timed,
}

impl ConvTuning {
    /// What a run at precision `p` does.
    pub fn resolve(self, p: Precision) -> crate::kernels::conv::Tuning {
        use crate::kernels::conv::Tuning;
        match self {
            ConvTuning::Auto if p == Precision::Bf16 => Tuning::Timed,
            ConvTuning::Auto | ConvTuning::Static => Tuning::Static,
            ConvTuning::Timed => Tuning::Timed,
        }
    }
}

impl std::str::FromStr for ConvTuning {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(ConvTuning::Auto),
            "static" => Ok(ConvTuning::Static),
            "timed" => Ok(ConvTuning::Timed),
            other => Err(Error::config(
                "train",
                "conv_tuning",
                format!("`{other}`: use auto, static or timed"),
            )),
        }
    }
}

fn is_auto(t: &ConvTuning) -> bool {
    *t == ConvTuning::Auto
}

/// A training run's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Model name (`strata models`).
    pub model: String,
    /// Dataset name (`fashion-mnist`, `mnist`, `cifar10`) or a folder.
    pub data: String,
    /// Epochs.
    pub epochs: u64,
    /// Images per batch.
    pub batch_size: usize,
    /// Base (peak, for one-cycle) learning rate.
    pub lr: f32,
    /// Optimizer and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Linear warm-up, in epochs (fractions allowed).
    pub warmup_epochs: f32,
    /// Label smoothing of the loss.
    pub label_smoothing: f32,
    /// Clip the global gradient norm to this value.
    pub clip_grad: Option<f32>,
    /// Products of the convolutions: f32, or bf16 (mixed precision: bf16 products, f32
    /// sums, master weights and everything else in f32; AVX-512 BF16 CPUs).
    pub precision: Precision,
    /// How the convolutions pick their kernels: `auto` (static in f32, timed under
    /// bf16), `static` or `timed`.
    #[serde(skip_serializing_if = "is_auto")]
    pub conv_tuning: ConvTuning,
    /// Test-time augmentation of the final test evaluation (`none` or `flip`: the
    /// softmax of each test image and of its mirror image averaged); reported beside
    /// the plain test accuracy, changes nothing in training.
    #[serde(skip_serializing_if = "Tta::is_none")]
    pub tta: Tta,
    /// Augmentation pipeline (`strata data --help` for the syntax); empty for none;
    /// `auto` (the default) for the dataset's: `flip,crop:2`, without the flip on
    /// handwritten digits (`mnist`: a mirrored 2 is not a 2).
    pub augment: String,
    /// Fraction of the training split held out for validation (stratified).
    pub val_fraction: f64,
    /// Use only this many training images per class (quick runs, small-sample studies).
    pub per_class: Option<usize>,
    /// Seed of initialization, split, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Loader worker threads.
    pub workers: usize,
    /// Iterations between history lines.
    pub log_every: u64,
    /// Stop after this many epochs without improvement of `monitor`.
    pub early_stop: Option<u64>,
    /// What "better" means for `best.safetensors` and early stopping.
    pub monitor: Monitor,
    /// Model overrides (see `strata summary --help`).
    pub width: Option<f32>,
    /// Normalization override: batch, group:G, layer, instance, none.
    pub norm: Option<String>,
    /// Activation override.
    pub activation: Option<String>,
    /// Dropout before the classifier.
    pub dropout: Option<f32>,
    /// Weight-initialization override: kaiming, xavier, pytorch, normal:STD.
    pub init: Option<String>,
    /// Record per-layer statistics every this many steps (`watch.jsonl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<u64>,
    /// Use only these classes of the dataset, relabelled `0..n` in the order given (in
    /// the training and the test split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u32>>,
    /// Start from pretrained weights (transfer learning; `strata finetune`): the model
    /// is the source's, with a new head for this data's classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finetune: Option<super::pretrained::Finetune>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "fmnist-cnn".into(),
            data: "fashion-mnist".into(),
            epochs: 15,
            batch_size: 128,
            lr: 0.1,
            optimizer: OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 5e-4,
            },
            schedule: Schedule::OneCycle {
                pct_start: 0.3,
                div: 25.0,
                final_div: 1e4,
            },
            warmup_epochs: 0.0,
            label_smoothing: 0.0,
            clip_grad: None,
            precision: Precision::F32,
            conv_tuning: ConvTuning::Auto,
            tta: Tta::None,
            augment: "auto".into(),
            val_fraction: 0.1,
            per_class: None,
            seed: 0,
            workers: 2,
            log_every: 50,
            early_stop: None,
            monitor: Monitor::ValAcc,
            width: None,
            norm: None,
            activation: None,
            dropout: None,
            init: None,
            watch: None,
            classes: None,
            finetune: None,
        }
    }
}

/// A configuration value for a person: strings bare, f32 fields at f32 precision.
fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && (f as f32) as f64 == f => format!("{}", f as f32),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

impl TrainConfig {
    /// The augmentation pipeline, `auto` resolved for the dataset.
    pub fn resolved_augment(&self) -> String {
        if self.augment != "auto" {
            return self.augment.clone();
        }
        let name = std::path::Path::new(&self.data)
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let digits = name == "mnist" || name.starts_with("mnist-") || name.starts_with("mnist_");
        if digits { "crop:2" } else { "flip,crop:2" }.to_string()
    }

    /// The fields (other than `allowed`) whose values differ between `self` and `other`,
    /// as `name old → new` with the flag spelling of the name.
    pub fn differences(&self, other: &TrainConfig, allowed: &[&str]) -> Vec<String> {
        let (Ok(a), Ok(b)) = (serde_json::to_value(self), serde_json::to_value(other)) else {
            return vec![];
        };
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec![];
        };
        a.iter()
            .filter(|(k, _)| !allowed.contains(&k.as_str()))
            .filter_map(|(k, x)| {
                let y = b.get(k).unwrap_or(&serde_json::Value::Null);
                (x != y).then(|| format!("{} {} → {}", k.replace('_', "-"), show(x), show(y)))
            })
            .collect()
    }

    /// Reads a TOML file; unknown keys are errors that name them.
    pub fn from_toml(path: &std::path::Path) -> Result<Self> {
        read_toml(path)
    }

    /// The configuration as TOML (what the run folder keeps).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::state("TrainConfig", e.to_string()))
    }

    /// Checks the ranges, so a bad run fails before any work.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, r: String| Err(Error::config("train", f, r));
        if self.epochs == 0 {
            return bad("epochs", "must be ≥ 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be ≥ 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "val_fraction",
                format!("must be in [0, 1), got {}", self.val_fraction),
            );
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "label_smoothing",
                format!("must be in [0, 1), got {}", self.label_smoothing),
            );
        }
        if self.warmup_epochs.is_nan() || self.warmup_epochs < 0.0 {
            return bad(
                "warmup_epochs",
                format!("must be ≥ 0, got {}", self.warmup_epochs),
            );
        }
        if f64::from(self.warmup_epochs) > self.epochs as f64 {
            return bad(
                "warmup_epochs",
                format!(
                    "{} is longer than the run ({} epochs): the rate would never reach its peak; \
                     warm up for a fraction of the run",
                    self.warmup_epochs, self.epochs
                ),
            );
        }
        if let Some(c) = self.clip_grad {
            if c.is_nan() || c <= 0.0 {
                return bad("clip_grad", format!("must be > 0, got {c}"));
            }
        }
        if self.per_class == Some(0) {
            return bad("per_class", "must be ≥ 1".into());
        }
        if self.watch == Some(0) {
            return bad("watch", "must be ≥ 1 (steps between records)".into());
        }
        if self.log_every == 0 {
            return bad("log_every", "must be ≥ 1".into());
        }
        if let Some(c) = &self.classes {
            let mut sorted = c.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if c.is_empty() || sorted.len() != c.len() {
                return bad("classes", "name each class once, at least one".into());
            }
        }
        if let Some(f) = &self.finetune {
            f.validate()?;
            let overrides = [
                ("width", self.width.is_some()),
                ("norm", self.norm.is_some()),
                ("activation", self.activation.is_some()),
                ("init", self.init.is_some()),
            ];
            if let Some((field, _)) = overrides.iter().find(|o| o.1) {
                return bad(
                    field,
                    "a fine-tune keeps the pretrained model's architecture and weights; \
                     drop this override"
                        .into(),
                );
            }
        }
        // Names and strings that would otherwise fail only after the data is loaded.
        crate::models::default_config(&self.model)?;
        crate::data::Augment::parse(&self.resolved_augment())?;
        if let Some(s) = &self.norm {
            s.parse::<crate::models::NormKind>()?;
        }
        if let Some(s) = &self.activation {
            s.parse::<crate::models::ActKind>()?;
        }
        if let Some(s) = &self.init {
            s.parse::<crate::models::InitScheme>()?;
        }
        // The schedule's shape and the model's numbers (width, dropout), with the model's
        // default classes and input: the data only changes those two.
        crate::optim::LrSchedule::new(self.lr, 1, 0, self.schedule.clone())?;
        let d = crate::models::default_config(&self.model)?;
        crate::train::model_config(
            self,
            d.classes,
            [d.in_channels, d.input_size[0], d.input_size[1]],
        )?;
        self.optimizer.validate()
    }
}

/// Reads a TOML file into a `T`; parse errors name the file (and unknown keys, where `T`
/// denies them).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trips_and_unknown_keys_are_named() {
        let c = TrainConfig::default();
        let text = c.to_toml().unwrap();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let partial: TrainConfig =
            toml::from_str("epochs = 3\n[optimizer]\nkind = \"adamw\"\n").unwrap();
        assert_eq!(partial.epochs, 3);
        assert!(matches!(partial.optimizer, OptimizerConfig::AdamW { .. }));
        let err = toml::from_str::<TrainConfig>("epoch = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("epoch"), "{err}");
        assert!(TrainConfig { lr: 0.0, ..c }.validate().is_err());
    }

    /// The recipes the docs give as files stay valid configurations and search spaces.
    #[test]
    fn the_documented_recipe_files_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/recipes");
        let c = TrainConfig::from_toml(&dir.join("fmnist-90s.toml")).unwrap();
        c.validate().unwrap();
        assert_eq!((c.epochs, c.width, c.val_fraction), (6, Some(0.5), 0.0));
        let space = crate::tune::SearchSpace::from_toml(&dir.join("fmnist-90s-space.toml"));
        assert!(space.is_ok(), "{:?}", space.err());
    }
}
