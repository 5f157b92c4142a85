//! The table of layers: one [`LayerInfo`] per layer type that can be built from data.
//!
//! Each entry gives the name used in specs (`{"layer": "conv2d", ...}`, [`super::spec`]),
//! the PyTorch equivalent (`strata layers` prints both), the builder from the spec's
//! options (field names and defaults are PyTorch's), and the small cases of the
//! finite-difference gradient check (`tests/engine/gradcheck.rs` runs every one of them,
//! and checks that every entry but the stochastic ones has some). Adding a layer: its
//! file, one entry here, one case in `tools/make_fixtures.py` for the PyTorch parity.

use super::*;
use crate::error::{Error, Result};
use crate::kernels::eltwise::Act;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// How the gradient check draws a layer's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Uniform in [-2, 2].
    Normal,
    /// |x| in [0.2, 1.5], random sign: away from the kink of ReLU-like functions.
    AwayFromZero,
    /// A shuffled grid with step 0.05: no two values close (max pooling ties).
    Distinct,
}

/// One finite-difference gradient check: a spec, an input shape, how to draw the input.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// The layer spec, JSON.
    pub spec: &'static str,
    /// The input shape.
    pub input: &'static [usize],
    /// How the input is drawn.
    pub values: Values,
}

/// A layer type that can be built from a spec.
pub struct LayerInfo {
    /// Name in specs (`"conv2d"`).
    pub name: &'static str,
    /// The PyTorch module it equals.
    pub torch: &'static str,
    /// Builds the layer from the spec's options (everything but `"layer"`).
    pub build: fn(&serde_json::Value, &mut dyn RngCore) -> Result<Box<dyn Layer>>,
    /// Whether the options are valid for this layer (their types, not their values).
    pub parse: fn(&serde_json::Value) -> std::result::Result<(), serde_json::Error>,
    /// Gradient-check cases (none for stochastic layers).
    pub checks: &'static [Check],
}

/// The entry named `name`.
pub fn find(name: &str) -> Option<&'static LayerInfo> {
    LAYERS.iter().find(|l| l.name == name)
}

/// Every layer name, for messages.
pub fn names() -> Vec<&'static str> {
    LAYERS.iter().map(|l| l.name).collect()
}

fn options<T: DeserializeOwned>(name: &str, v: &serde_json::Value) -> Result<T> {
    T::deserialize(v).map_err(|e| Error::config("LayerSpec", name, e.to_string()))
}

fn parse_as<T: DeserializeOwned>(
    v: &serde_json::Value,
) -> std::result::Result<(), serde_json::Error> {
    T::deserialize(v).map(|_| ())
}

macro_rules! layer {
    (name: $name:literal, torch: $torch:literal, options: $opt:ty, build: $build:expr, checks: $checks:expr,) => {
        LayerInfo {
            name: $name,
            torch: $torch,
            build: |v, rng| {
                let o: $opt = options($name, v)?;
                let mut rng = rng;
                let f: fn($opt, &mut &mut dyn RngCore) -> Result<_> = $build;
                Ok(Box::new(f(o, &mut rng)?))
            },
            parse: parse_as::<$opt>,
            checks: $checks,
        }
    };
}

/// No options.
#[derive(Deserialize)]
pub struct NoOptions {}

fn eps_default() -> f32 {
    1e-5
}
fn yes() -> bool {
    true
}
fn half() -> f32 {
    0.5
}

/// `linear` options.
#[derive(Deserialize)]
pub struct LinearOptions {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
}

/// `adaptive_avg_pool2d` options.
#[derive(Deserialize)]
pub struct AdaptiveOptions {
    output: [usize; 2],
}

/// `dropout`, `dropout2d` options.
#[derive(Deserialize)]
pub struct DropoutOptions {
    #[serde(default = "half")]
    p: f32,
    #[serde(default)]
    seed: u64,
}

/// `leaky_relu` options.
#[derive(Deserialize)]
pub struct LeakyOptions {
    #[serde(default = "slope_default")]
    negative_slope: f32,
}
fn slope_default() -> f32 {
    0.01
}

/// `elu` options.
#[derive(Deserialize)]
pub struct EluOptions {
    #[serde(default = "one")]
    alpha: f32,
}
fn one() -> f32 {
    1.0
}

/// GELU's approximation, as PyTorch names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeluApprox {
    /// The exact erf form.
    #[default]
    None,
    /// The tanh approximation.
    Tanh,
}

/// `gelu` options.
#[derive(Deserialize)]
pub struct GeluOptions {
    #[serde(default)]
    approximate: GeluApprox,
}

/// `batch_norm2d` options.
#[derive(Deserialize)]
pub struct BatchNormOptions {
    num_features: usize,
    #[serde(default = "eps_default")]
    eps: f32,
    #[serde(default = "momentum_default")]
    momentum: f32,
}
fn momentum_default() -> f32 {
    0.1
}

/// `group_norm` options.
#[derive(Deserialize)]
pub struct GroupNormOptions {
    num_groups: usize,
    num_channels: usize,
    #[serde(default = "eps_default")]
    eps: f32,
}

/// `per_channel_layer_norm`, `channel_layer_norm` options.
#[derive(Deserialize)]
pub struct ChannelsOptions {
    num_channels: usize,
    #[serde(default = "eps_default")]
    eps: f32,
}

/// `layer_norm` options (PyTorch's names).
#[derive(Deserialize)]
pub struct LayerNormOptions {
    normalized_shape: Vec<usize>,
    #[serde(default = "eps_default")]
    eps: f32,
    #[serde(default = "yes")]
    elementwise_affine: bool,
    #[serde(default = "yes")]
    bias: bool,
}

/// `instance_norm2d` options.
#[derive(Deserialize)]
pub struct InstanceOptions {
    num_features: usize,
    #[serde(default = "eps_default")]
    eps: f32,
    #[serde(default = "yes")]
    affine: bool,
}

/// The layers, in the order `strata layers` lists them.
pub static LAYERS: &[LayerInfo] = &[
    layer! {
        name: "conv2d",
        torch: "torch.nn.Conv2d (stride, padding, dilation, groups, bias)",
        options: Conv2dConfig,
        build: |c, rng| Conv2d::new(c, rng),
        checks: &[
            Check {
                spec: r#"{"layer":"conv2d","c_in":3,"c_out":4,"kernel":[3,3],"padding":[1,1]}"#,
                input: &[2, 3, 5, 7],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"conv2d","c_in":2,"c_out":3,"kernel":[3,3],"stride":[2,2],"padding":[1,1],"bias":false}"#,
                input: &[1, 2, 7, 6],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"conv2d","c_in":4,"c_out":6,"kernel":[3,2],"stride":[2,1],"padding":[2,0],"dilation":[2,1],"groups":2}"#,
                input: &[2, 4, 9, 5],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"conv2d","c_in":3,"c_out":3,"kernel":[3,3],"padding":[1,1],"groups":3}"#,
                input: &[1, 3, 4, 5],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"conv2d","c_in":5,"c_out":2,"kernel":[1,1]}"#,
                input: &[3, 5, 3, 3],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "linear",
        torch: "torch.nn.Linear",
        options: LinearOptions,
        build: |o, rng| Linear::new(o.in_features, o.out_features, o.bias, rng),
        checks: &[
            Check {
                spec: r#"{"layer":"linear","in_features":7,"out_features":4}"#,
                input: &[3, 7],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"linear","in_features":5,"out_features":2,"bias":false}"#,
                input: &[1, 5],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "max_pool2d",
        torch: "torch.nn.MaxPool2d",
        options: PoolConfig,
        build: |c, _| MaxPool2d::new(c),
        checks: &[
            Check {
                spec: r#"{"layer":"max_pool2d","kernel":[2,2]}"#,
                input: &[2, 3, 6, 5],
                values: Values::Distinct,
            },
            Check {
                spec: r#"{"layer":"max_pool2d","kernel":[3,3],"stride":[2,2],"padding":[1,1],"ceil_mode":true}"#,
                input: &[1, 2, 7, 8],
                values: Values::Distinct,
            },
            Check {
                spec: r#"{"layer":"max_pool2d","kernel":[2,3],"stride":[1,2],"dilation":[2,1]}"#,
                input: &[1, 2, 6, 7],
                values: Values::Distinct,
            },
        ],
    },
    layer! {
        name: "avg_pool2d",
        torch: "torch.nn.AvgPool2d",
        options: PoolConfig,
        build: |c, _| AvgPool2d::new(c),
        checks: &[
            Check {
                spec: r#"{"layer":"avg_pool2d","kernel":[3,3],"stride":[2,2],"padding":[1,1],"count_include_pad":false,"ceil_mode":true}"#,
                input: &[2, 2, 7, 6],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"avg_pool2d","kernel":[2,2]}"#,
                input: &[1, 3, 5, 4],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "adaptive_avg_pool2d",
        torch: "torch.nn.AdaptiveAvgPool2d (global pool: output 1x1)",
        options: AdaptiveOptions,
        build: |o, _| AdaptiveAvgPool2d::new(o.output),
        checks: &[
            Check {
                spec: r#"{"layer":"adaptive_avg_pool2d","output":[3,2]}"#,
                input: &[2, 2, 5, 7],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"adaptive_avg_pool2d","output":[1,1]}"#,
                input: &[2, 3, 4, 3],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "flatten",
        torch: "torch.nn.Flatten",
        options: NoOptions,
        build: |_, _| Ok(Flatten::new()),
        checks: &[
            Check {
                spec: r#"{"layer":"flatten"}"#,
                input: &[2, 3, 2, 2],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "dropout",
        torch: "torch.nn.Dropout (inverted)",
        options: DropoutOptions,
        build: |o, _| Dropout::new(o.p, o.seed),
        checks: &[],
    },
    layer! {
        name: "dropout2d",
        torch: "torch.nn.Dropout2d (inverted)",
        options: DropoutOptions,
        build: |o, _| Dropout2d::new(o.p, o.seed),
        checks: &[],
    },
    layer! {
        name: "relu",
        torch: "torch.nn.ReLU",
        options: NoOptions,
        build: |_, _| Ok(Activation::new(Act::Relu)),
        checks: &[
            Check {
                spec: r#"{"layer":"relu"}"#,
                input: &[2, 3, 3, 3],
                values: Values::AwayFromZero,
            },
        ],
    },
    layer! {
        name: "leaky_relu",
        torch: "torch.nn.LeakyReLU",
        options: LeakyOptions,
        build: |o, _| Ok(Activation::new(Act::LeakyRelu(o.negative_slope))),
        checks: &[
            Check {
                spec: r#"{"layer":"leaky_relu","negative_slope":0.1}"#,
                input: &[2, 9],
                values: Values::AwayFromZero,
            },
        ],
    },
    layer! {
        name: "elu",
        torch: "torch.nn.ELU",
        options: EluOptions,
        build: |o, _| Ok(Activation::new(Act::Elu(o.alpha))),
        checks: &[
            Check {
                spec: r#"{"layer":"elu","alpha":0.7}"#,
                input: &[2, 2, 3, 3],
                values: Values::AwayFromZero,
            },
        ],
    },
    layer! {
        name: "gelu",
        torch: "torch.nn.GELU (approximate none|tanh)",
        options: GeluOptions,
        build: |o, _| Ok(Activation::new(match o.approximate {
            GeluApprox::None => Act::Gelu,
            GeluApprox::Tanh => Act::GeluTanh,
        })),
        checks: &[
            Check {
                spec: r#"{"layer":"gelu"}"#,
                input: &[2, 2, 3, 3],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"gelu","approximate":"tanh"}"#,
                input: &[2, 11],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "mish",
        torch: "torch.nn.Mish",
        options: NoOptions,
        build: |_, _| Ok(Mish::new()),
        checks: &[Check {
            spec: r#"{"layer":"mish"}"#,
            input: &[2, 2, 3, 3],
            values: Values::Normal,
        }],
    },
    layer! {
        name: "silu",
        torch: "torch.nn.SiLU",
        options: NoOptions,
        build: |_, _| Ok(Activation::new(Act::Silu)),
        checks: &[
            Check {
                spec: r#"{"layer":"silu"}"#,
                input: &[2, 2, 3, 3],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "sigmoid",
        torch: "torch.nn.Sigmoid",
        options: NoOptions,
        build: |_, _| Ok(Activation::new(Act::Sigmoid)),
        checks: &[
            Check {
                spec: r#"{"layer":"sigmoid"}"#,
                input: &[2, 2, 3, 3],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "tanh",
        torch: "torch.nn.Tanh",
        options: NoOptions,
        build: |_, _| Ok(Activation::new(Act::Tanh)),
        checks: &[
            Check {
                spec: r#"{"layer":"tanh"}"#,
                input: &[2, 2, 3, 3],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "batch_norm2d",
        torch: "torch.nn.BatchNorm2d",
        options: BatchNormOptions,
        build: |o, _| BatchNorm2d::with_options(o.num_features, o.eps, o.momentum),
        checks: &[
            Check {
                spec: r#"{"layer":"batch_norm2d","num_features":3}"#,
                input: &[4, 3, 3, 5],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"batch_norm2d","num_features":2,"momentum":0.3}"#,
                input: &[1, 2, 3, 3],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "group_norm",
        torch: "torch.nn.GroupNorm",
        options: GroupNormOptions,
        build: |o, _| GroupNorm::with_eps(o.num_groups, o.num_channels, o.eps),
        checks: &[
            Check {
                spec: r#"{"layer":"group_norm","num_groups":2,"num_channels":6}"#,
                input: &[2, 6, 3, 3],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"group_norm","num_groups":1,"num_channels":3}"#,
                input: &[1, 3, 4, 5],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "layer_norm",
        torch: "torch.nn.LayerNorm (normalized_shape, elementwise_affine, bias)",
        options: LayerNormOptions,
        build: |o, _| LayerNorm::with_options(&o.normalized_shape, o.eps, o.elementwise_affine, o.bias),
        checks: &[
            Check {
                spec: r#"{"layer":"layer_norm","normalized_shape":[3,2,4]}"#,
                input: &[2, 3, 2, 4],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"layer_norm","normalized_shape":[5],"bias":false}"#,
                input: &[3, 2, 5],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "per_channel_layer_norm",
        torch: "torch.nn.GroupNorm(1, C): LayerNorm statistics over (C, H, W), per-channel affine (the lecture's form)",
        options: ChannelsOptions,
        build: |o, _| PerChannelLayerNorm::with_eps(o.num_channels, o.eps),
        checks: &[
            Check {
                spec: r#"{"layer":"per_channel_layer_norm","num_channels":4}"#,
                input: &[2, 4, 3, 3],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "instance_norm2d",
        torch: "torch.nn.InstanceNorm2d (affine by default)",
        options: InstanceOptions,
        build: |o, _| InstanceNorm2d::with_options(o.num_features, o.eps, o.affine),
        checks: &[
            Check {
                spec: r#"{"layer":"instance_norm2d","num_features":3}"#,
                input: &[2, 3, 4, 3],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"instance_norm2d","num_features":2,"affine":false}"#,
                input: &[1, 2, 3, 5],
                values: Values::Normal,
            },
        ],
    },
    layer! {
        name: "channel_layer_norm",
        torch: "LayerNorm over C at each position (ConvNeXt)",
        options: ChannelsOptions,
        build: |o, _| ChannelLayerNorm::with_eps(o.num_channels, o.eps),
        checks: &[
            Check {
                spec: r#"{"layer":"channel_layer_norm","num_channels":5}"#,
                input: &[2, 5, 3, 2],
                values: Values::Normal,
            },
            Check {
                spec: r#"{"layer":"channel_layer_norm","num_channels":3,"eps":1e-6}"#,
                input: &[1, 3, 1, 4],
                values: Values::Normal,
            },
        ],
    },
];
