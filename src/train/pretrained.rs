//! Pretrained weights as the start of a run: the `[finetune]` section of a
//! [`super::TrainConfig`], the weights it names ([`Source`]: a strata run or checkpoint,
//! or a bare state dict such as torchvision's), and how they go into a new model
//! ([`fit`]: everything but the classification head, non-strictly only there; [`freeze`]:
//! the backbone's parameters and BatchNorm statistics held fixed, or its learning rate
//! scaled).
//!
//! The head is the model's last linear layer (`fc` of a ResNet, `classifier.6` of an
//! ImageNet VGG, `classifier` of `fmnist-cnn`): the layer whose outputs are the classes.
//! Every other tensor must match in name and shape — a backbone that does not is an
//! error that names the tensors, not a silent partial load.

use crate::checkpoint;
use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::models::{self, Model, ModelConfig, META_CONFIG, META_MODEL};
use crate::nn::{self, BatchNorm2d, Layer, Linear};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What trains in a fine-tune.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneMode {
    /// Only the new head: the backbone's parameters and its BatchNorm statistics are
    /// frozen (a linear classifier on the pretrained features).
    Head,
    /// Every layer, the backbone at `lr × backbone_lr_mult`.
    #[default]
    Full,
}

impl std::str::FromStr for FinetuneMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "head" => Ok(FinetuneMode::Head),
            "full" => Ok(FinetuneMode::Full),
            _ => Err(Error::config(
                "finetune",
                "mode",
                format!("`{s}`: use head or full"),
            )),
        }
    }
}

fn one() -> f32 {
    1.0
}

/// The `[finetune]` section of a run's configuration: start from pretrained weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finetune {
    /// A run folder (its `best.safetensors`) or a weights file (safetensors).
    pub from: String,
    /// What trains: `head` or `full` [full].
    #[serde(default)]
    pub mode: FinetuneMode,
    /// The backbone's learning rate relative to the head's, in `full` mode [1].
    #[serde(default = "one")]
    pub backbone_lr_mult: f32,
    /// Keep the source's head instead of a new one (the same classes: the second stage
    /// of head-then-full, or more training of the same task) [false].
    #[serde(default)]
    pub keep_head: bool,
    /// The model, for a bare state dict (no strata header); torchvision's spelling is
    /// accepted (`vgg11_bn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The inputs' normalization: `source` (the checkpoint's), `data` (the new training
    /// images'), `imagenet`, or `M,M,M/S,S,S` (per channel, on a 0–1 scale). Default:
    /// the source's; for a bare state dict ImageNet's on RGB (with a warning), else the data's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<String>,
}

impl Finetune {
    /// A fine-tune of `from` with the defaults.
    pub fn new(from: impl Into<String>, mode: FinetuneMode) -> Self {
        Finetune {
            from: from.into(),
            mode,
            backbone_lr_mult: 1.0,
            keep_head: false,
            model: None,
            normalize: None,
        }
    }

    /// Errors in the numbers and names, before anything is read.
    pub fn validate(&self) -> Result<()> {
        let m = self.backbone_lr_mult;
        if !(m.is_finite() && m >= 0.0) {
            return Err(Error::config(
                "finetune",
                "backbone_lr_mult",
                format!("must be a number ≥ 0, got {m}"),
            ));
        }
        if let Some(name) = &self.model {
            models::find(&strata_name(name))?;
        }
        if let Some(n) = &self.normalize {
            if !matches!(n.as_str(), "source" | "data") {
                parse_normalize(n)?;
            }
        }
        Ok(())
    }
}

/// ImageNet's per-channel mean and standard deviation (torchvision's models expect them).
pub fn imagenet() -> Normalize {
    Normalize {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    }
}

/// `imagenet` or `M,M,M/S,S,S` as a normalization.
pub fn parse_normalize(s: &str) -> Result<Normalize> {
    if s == "imagenet" {
        return Ok(imagenet());
    }
    let bad = || {
        Error::config(
            "normalize",
            "normalize",
            format!("`{s}`: use imagenet or MEAN,.../STD,... (per channel, on a 0–1 scale)"),
        )
    };
    let (m, sd) = s.split_once('/').ok_or_else(bad)?;
    let nums = |t: &str| -> Result<Vec<f32>> {
        t.split(',')
            .map(|x| x.trim().parse::<f32>().map_err(|_| bad()))
            .collect()
    };
    Normalize::new(nums(m)?, nums(sd)?)
}

/// A model name in strata's spelling: torchvision's `vgg11_bn` is `vgg11-bn`.
pub fn strata_name(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

/// The model a fine-tune of `ft` trains (read from the header alone).
pub fn model_name(ft: &Finetune) -> Result<String> {
    let path = existing_weights(Path::new(&ft.from))?;
    match checkpoint::read_metadata(&path)?.get(META_MODEL) {
        Some(name) => Ok(name.clone()),
        None => ft.model.as_deref().map(strata_name).ok_or_else(|| {
            Error::config(
                "finetune",
                "model",
                format!(
                    "{} is a bare state dict: say which model it is (--model)",
                    path.display()
                ),
            )
        }),
    }
}

/// Pretrained weights, opened.
#[derive(Debug)]
pub struct Source {
    /// The weights file.
    pub path: PathBuf,
    /// Its model.
    pub model: String,
    /// Its model configuration (from the header, or the model's defaults with the head's
    /// classes for a bare state dict).
    pub config: ModelConfig,
    /// The tensors (a `module.` prefix, as DataParallel writes it, removed).
    pub tensors: BTreeMap<String, Tensor>,
    /// The normalization it was trained with, when the header says.
    pub normalize: Option<Normalize>,
    /// Its class names, when the header says.
    pub class_names: Option<Vec<String>>,
    /// The dataset it was trained on, when the header says.
    pub data: Option<String>,
    /// Whether it is a bare state dict (no strata header).
    pub bare: bool,
}

/// The weights file of `from`: a run folder's `best.safetensors`, or `from` itself.
pub fn weights_file(from: &Path) -> PathBuf {
    if from.is_dir() {
        from.join("best.safetensors")
    } else {
        from.to_path_buf()
    }
}

fn existing_weights(from: &Path) -> Result<PathBuf> {
    let path = weights_file(from);
    if path.is_file() {
        return Ok(path);
    }
    Err(Error::config(
        "finetune",
        "from",
        format!(
            "{} does not exist: give a run folder (with best.safetensors) or a .safetensors file",
            path.display()
        ),
    ))
}

impl Source {
    /// Opens `from` (a run folder or a weights file). `model` names the model of a bare
    /// state dict; for a strata checkpoint it must agree with the header, when given.
    pub fn open(from: &Path, model: Option<&str>) -> Result<Source> {
        let path = existing_weights(from)?;
        let (tensors, meta) = checkpoint::read_tensors(&path)?;
        let tensors: BTreeMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, t)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), t))
            .collect();
        let asked = model.map(strata_name);
        let format = |reason: String| Error::Format {
            path: path.clone(),
            reason,
        };
        let (name, config, bare) = match meta.get(META_MODEL) {
            Some(name) => {
                if let Some(a) = &asked {
                    if a != name {
                        return Err(Error::config(
                            "finetune",
                            "model",
                            format!("{} holds a {name}, not a {a}; drop --model (a strata checkpoint names its model)", path.display()),
                        ));
                    }
                }
                let config: ModelConfig = serde_json::from_str(
                    meta.get(META_CONFIG)
                        .ok_or_else(|| format(format!("no `{META_CONFIG}` in the header")))?,
                )
                .map_err(|e| format(format!("bad `{META_CONFIG}`: {e}")))?;
                (name.clone(), config, false)
            }
            None => {
                let name = asked.ok_or_else(|| {
                    Error::config(
                        "finetune",
                        "model",
                        format!(
                            "{} is a bare state dict (no strata header): say which model it is, \
                             e.g. --model resnet18 (`strata models` lists them; torchvision's \
                             spelling such as vgg11_bn is accepted)",
                            path.display()
                        ),
                    )
                })?;
                let mut config = models::default_config(&name)?;
                // The head's rows are the classes it was trained for.
                let mut probe = models::build(&name, Some(config.clone()))?;
                if let Some(w) = head_names(&mut probe.net)
                    .iter()
                    .find(|n| n.ends_with(".weight"))
                    .and_then(|n| tensors.get(n))
                {
                    if let Some(&classes) = w.shape().first() {
                        config.classes = classes;
                    }
                }
                (name, config, true)
            }
        };
        let hm: HashMap<String, String> = meta.clone().into_iter().collect();
        Ok(Source {
            path,
            model: name,
            config,
            tensors,
            normalize: Normalize::from_metadata(&hm)?,
            class_names: meta
                .get("strata.classes")
                .and_then(|s| serde_json::from_str(s).ok()),
            data: meta.get("strata.data").cloned(),
            bare,
        })
    }
}

/// The parameter names of the model's head: its last linear layer.
pub fn head_names(net: &mut dyn Layer) -> Vec<String> {
    let mut last = None;
    nn::visit_layers_mut(net, "", &mut |path, l| {
        if (l as &mut dyn std::any::Any).is::<Linear>() {
            last = Some(path.to_string());
        }
    });
    let Some(prefix) = last else {
        return vec![];
    };
    nn::param_names(net)
        .into_iter()
        .filter(|n| n.strip_prefix(&prefix).is_some_and(|r| r.starts_with('.')))
        .collect()
}

/// What [`fit`] loaded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Tensors loaded from the source.
    pub loaded: usize,
    /// The head's parameters.
    pub head: Vec<String>,
    /// Whether the head was newly initialized (else the source's).
    pub new_head: bool,
}

/// Loads `src` into `model`: every tensor but the head's (unless `keep_head`), each of
/// which must match in name and shape.
pub fn fit(model: &mut Model, src: &Source, keep_head: bool) -> Result<FitReport> {
    let head = head_names(&mut model.net);
    let mut tensors = src.tensors.clone();
    if !keep_head {
        tensors.retain(|k, _| !head.contains(k));
    }
    let report = checkpoint::load_state_dict(&mut model.net, &tensors, false)?;
    let is_head = |k: &str| !keep_head && head.iter().any(|h| h == k);
    let missing: Vec<&String> = report.missing.iter().filter(|k| !is_head(k)).collect();
    if !report.mismatched.is_empty() || !missing.is_empty() || !report.unexpected.is_empty() {
        let mut hint = String::new();
        if model.config.input_size != src.config.input_size {
            let [h, w] = src.config.input_size;
            hint = format!(
                "; the new images are {}×{} and the source was trained on {h}×{w}: \
                 resize them (--augment resize:{h}x{w}, before any crop)",
                model.config.input_size[0], model.config.input_size[1]
            );
        }
        if keep_head && report.mismatched.iter().any(|(k, ..)| head.contains(k)) && hint.is_empty()
        {
            hint = "; the head has another number of classes: keep_head needs the same".into();
        }
        return Err(Error::config(
            "finetune",
            "from",
            format!(
                "the weights in {} do not fit a {} built for this data: {}{hint}",
                src.path.display(),
                model.name,
                report.describe()
            ),
        ));
    }
    Ok(FitReport {
        loaded: report.loaded.len(),
        new_head: !keep_head,
        head,
    })
}

/// Sets what trains: in [`FinetuneMode::Head`] every parameter but the head's is frozen
/// and every BatchNorm uses (and keeps) its running statistics; in
/// [`FinetuneMode::Full`] the backbone's learning rate is scaled by `backbone_lr_mult`.
pub fn freeze(model: &mut Model, head: &[String], mode: FinetuneMode, backbone_lr_mult: f32) {
    let in_head = |n: &str| head.iter().any(|h| h == n);
    match mode {
        FinetuneMode::Head => {
            nn::set_frozen(&mut model.net, true, &|n| !in_head(n));
            nn::visit_layers_mut(&mut model.net, "", &mut |_, l| {
                if let Some(bn) = (l as &mut dyn std::any::Any).downcast_mut::<BatchNorm2d>() {
                    bn.freeze_stats(true);
                }
            });
        }
        FinetuneMode::Full => model.net.visit_params("", &mut |n, p| {
            if !in_head(n) {
                p.lr_scale = backbone_lr_mult;
            }
        }),
    }
}
