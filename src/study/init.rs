//! `strata study init`: what initialization does to a deep plain network, layer by layer
//! (the lecture's picture). One batch of real images goes through `plain20` (19 3×3
//! convolutions, no shortcuts) built with tanh or ReLU, with or without BatchNorm, under
//! N(0, 0.01²), N(0, 1), Xavier and Kaiming (fan-in, `kaiming_uniform`: the variance
//! the lecture derives, 2/fan_in); for every activation layer the study records
//! the output's mean, standard deviation and histogram, and after one backward every
//! convolution's gradient norm. The lecture's claims, checked on the numbers:
//!
//! - N(0, 0.01²) with tanh: the activations collapse towards 0, layer after layer;
//! - N(0, 1) with tanh: they saturate at ±1;
//! - Kaiming with ReLU: their spread stays within a factor of 2 across the layers;
//! - BatchNorm makes every initialization look alike.

use super::{histogram, Claim};
use crate::data::{self, Augment, Loader, LoaderConfig, Normalize, Split};
use crate::error::{Error, Result};
use crate::models::{self, ModelConfig};
use crate::nn::{self, Layer, Mode};
use crate::train::stats::{self, Unit};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// What the study runs.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Dataset (its first batch is the input).
    pub data: String,
    /// Images in the batch [128].
    pub batch: usize,
    /// Model: a plain network [plain20].
    pub model: String,
    /// Width multiplier [1].
    pub width: f32,
    /// Histogram bins [20].
    pub bins: usize,
    /// Seed of the weights and the batch.
    pub seed: u64,
    /// Folder for results.json, init.svg and the text (none: nothing written).
    pub out: Option<PathBuf>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            data: "fashion-mnist".into(),
            batch: 128,
            model: "plain20".into(),
            width: 1.0,
            bins: 20,
            seed: 0,
            out: None,
        }
    }
}

/// One activation layer under one setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerAct {
    /// State-dict path.
    pub name: String,
    /// Output mean.
    pub mean: f64,
    /// Output standard deviation.
    pub std: f64,
    /// Fraction of saturated outputs (tanh) or of zeros (ReLU).
    pub saturated_or_zero: f64,
    /// Histogram of the outputs over `range`.
    pub histogram: Vec<u32>,
    /// The histogram's range.
    pub range: (f64, f64),
}

/// One setting: activation × initialization × normalization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitCase {
    /// `tanh` or `relu`.
    pub activation: String,
    /// `normal:0.01`, `normal:1`, `xavier`, `kaiming`.
    pub init: String,
    /// `none` or `batch`.
    pub norm: String,
    /// Every activation layer, in depth order.
    pub layers: Vec<LayerAct>,
    /// ‖∂L/∂W‖ of every convolution and the classifier, in depth order.
    pub grad_norms: Vec<(String, f64)>,
    /// The loss of the batch.
    pub loss: f64,
}

/// The study's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InitStudy {
    /// Every setting.
    pub cases: Vec<InitCase>,
    /// The lecture's claims, each with whether the numbers bear it out.
    pub claims: Vec<Claim>,
    /// Where the figure was written.
    pub figure: Option<PathBuf>,
}

const INITS: [&str; 4] = ["normal:0.01", "normal:1", "xavier", "kaiming_uniform"];

/// Runs the study.
pub fn init_study(opts: &InitOptions) -> Result<InitStudy> {
    if opts.batch < 2 || opts.bins < 2 {
        return Err(Error::config(
            "study init",
            "batch/bins",
            "need at least 2 images and 2 bins",
        ));
    }
    let set = Arc::new(data::load(&opts.data, Split::Train)?);
    let normalize = Normalize::from_dataset(&set);
    let loader = Loader::new(
        set.clone(),
        LoaderConfig {
            batch_size: opts.batch.min(set.len()),
            shuffle: true,
            drop_last: false,
            seed: opts.seed,
            workers: 1,
            prefetch: 1,
            augment: Augment::none(),
            normalize,
        },
    )?;
    let batch = loader.batch(0, 0);
    let mut cases = vec![];
    for act in ["tanh", "relu"] {
        for norm in ["none", "batch"] {
            for init in INITS {
                cases.push(one_case(opts, &set, act, init, norm, &batch)?);
            }
        }
    }
    let claims = super::init_claims(&cases);
    let mut study = InitStudy {
        cases,
        claims,
        figure: None,
    };
    if let Some(dir) = &opts.out {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let svg = dir.join("init.svg");
        super::plot_histograms(&svg, &study)?;
        study.figure = Some(svg);
        super::save(dir, &study, &study.claims)?;
    }
    Ok(study)
}

fn one_case(
    opts: &InitOptions,
    set: &crate::data::ImageDataset,
    act: &str,
    init: &str,
    norm: &str,
    batch: &crate::data::Batch,
) -> Result<InitCase> {
    let mut cfg = models::default_config(&opts.model)?;
    cfg = ModelConfig {
        classes: set.num_classes(),
        in_channels: set.channels(),
        input_size: [set.height(), set.width()],
        width: opts.width,
        norm: norm.parse()?,
        activation: act.parse()?,
        init: init.parse()?,
        seed: opts.seed,
        ..cfg
    };
    let mut model = models::build_with(&opts.model, Some(cfg), false)?;
    let units = stats::units(&mut model.net);
    nn::zero_grad(&mut model);
    let mut acts = vec![];
    let logits = nn::forward_traced(&mut model.net, &batch.x, Mode::Train, "", &mut |n, y| {
        if units.contains_key(n) {
            acts.push((n.to_string(), y.clone()));
        }
    })?;
    let out = crate::loss::CrossEntropy::default().forward(&logits, &batch.y)?;
    model.net.backward_params(&out.dlogits)?;
    let grads = stats::param_stats(&mut model.net)
        .into_iter()
        .map(|p| (p.name, p.grad_norm))
        .collect();
    let range = if act == "tanh" {
        (-1.0, 1.0)
    } else {
        (0.0, 3.0)
    };
    let layers = acts
        .iter()
        .map(|(name, y)| {
            let unit = units.get(name).copied().unwrap_or(Unit::Other);
            let s = stats::act_stats(name, unit, y);
            LayerAct {
                name: name.clone(),
                mean: s.mean,
                std: s.std,
                saturated_or_zero: if unit == Unit::Relu {
                    s.zero
                } else {
                    s.saturated
                },
                histogram: histogram(y.data(), range, opts.bins),
                range,
            }
        })
        .collect();
    Ok(InitCase {
        activation: act.into(),
        init: init.into(),
        norm: norm.into(),
        layers,
        grad_norms: grads,
        loss: out.loss,
    })
}
