//! Layers described as data: a [`LayerSpec`] deserializes from JSON or TOML
//! (`{"layer": "conv2d", "c_in": 3, ...}`) and builds the layer. Field names and
//! defaults are PyTorch's; the parity fixtures in `tests/fixtures` use these specs.

use super::*;
use crate::error::Result;
use rand::Rng;

fn eps_default() -> f32 {
    1e-5
}
fn momentum_default() -> f32 {
    0.1
}
fn yes() -> bool {
    true
}
fn slope_default() -> f32 {
    0.01
}
fn one() -> f32 {
    1.0
}
fn half() -> f32 {
    0.5
}

/// GELU's two forms, named as in PyTorch's `approximate` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GeluApprox {
    /// Exact, with erf.
    #[default]
    None,
    /// The tanh approximation.
    Tanh,
}

/// One layer and its configuration.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum LayerSpec {
    /// [`Conv2d`]
    Conv2d(Conv2dConfig),
    /// [`Linear`]
    Linear {
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Learnable bias. Default: true.
        #[serde(default = "yes")]
        bias: bool,
    },
    /// [`MaxPool2d`]
    MaxPool2d(pool::PoolConfig),
    /// [`AvgPool2d`]
    AvgPool2d(pool::PoolConfig),
    /// [`AdaptiveAvgPool2d`]
    AdaptiveAvgPool2d {
        /// Output `[oh, ow]`.
        output: [usize; 2],
    },
    /// [`Flatten`]
    Flatten {},
    /// ReLU
    Relu {},
    /// Sigmoid
    Sigmoid {},
    /// Tanh
    Tanh {},
    /// SiLU
    Silu {},
    /// LeakyReLU
    LeakyRelu {
        /// Slope for `x < 0`. Default: 0.01.
        #[serde(default = "slope_default")]
        negative_slope: f32,
    },
    /// ELU
    Elu {
        /// Scale of the negative part. Default: 1.0.
        #[serde(default = "one")]
        alpha: f32,
    },
    /// GELU
    Gelu {
        /// `"none"` (exact, default) or `"tanh"`.
        #[serde(default)]
        approximate: GeluApprox,
    },
    /// [`BatchNorm2d`]
    BatchNorm2d {
        /// Channels.
        num_features: usize,
        /// Default: 1e-5.
        #[serde(default = "eps_default")]
        eps: f32,
        /// Default: 0.1.
        #[serde(default = "momentum_default")]
        momentum: f32,
    },
    /// [`GroupNorm`]
    GroupNorm {
        /// Groups; must divide the channels.
        num_groups: usize,
        /// Channels.
        num_channels: usize,
        /// Default: 1e-5.
        #[serde(default = "eps_default")]
        eps: f32,
    },
    /// [`LayerNorm`]
    LayerNorm {
        /// Channels.
        num_channels: usize,
        /// Default: 1e-5.
        #[serde(default = "eps_default")]
        eps: f32,
    },
    /// [`InstanceNorm2d`]
    InstanceNorm2d {
        /// Channels.
        num_features: usize,
        /// Default: 1e-5.
        #[serde(default = "eps_default")]
        eps: f32,
        /// Learnable γ, β. Default: true.
        #[serde(default = "yes")]
        affine: bool,
    },
    /// [`ChannelLayerNorm`]
    ChannelLayerNorm {
        /// Channels.
        num_channels: usize,
        /// Default: 1e-5.
        #[serde(default = "eps_default")]
        eps: f32,
    },
    /// [`Dropout`]
    Dropout {
        /// Drop probability. Default: 0.5.
        #[serde(default = "half")]
        p: f32,
        /// Mask RNG seed. Default: 0.
        #[serde(default)]
        seed: u64,
    },
    /// [`Dropout2d`]
    Dropout2d {
        /// Drop probability. Default: 0.5.
        #[serde(default = "half")]
        p: f32,
        /// Mask RNG seed. Default: 0.
        #[serde(default)]
        seed: u64,
    },
}

impl LayerSpec {
    /// Builds the layer, initializing parameters from `rng` (PyTorch's defaults).
    pub fn build(&self, rng: &mut impl Rng) -> Result<Box<dyn Layer>> {
        use crate::kernels::eltwise::Act;
        Ok(match self {
            LayerSpec::Conv2d(c) => Box::new(Conv2d::new(c.clone(), rng)?),
            LayerSpec::Linear {
                in_features,
                out_features,
                bias,
            } => Box::new(Linear::new(*in_features, *out_features, *bias, rng)?),
            LayerSpec::MaxPool2d(c) => Box::new(MaxPool2d::new(c.clone())?),
            LayerSpec::AvgPool2d(c) => Box::new(AvgPool2d::new(c.clone())?),
            LayerSpec::AdaptiveAvgPool2d { output } => Box::new(AdaptiveAvgPool2d::new(*output)?),
            LayerSpec::Flatten {} => Box::new(Flatten::new()),
            LayerSpec::Relu {} => Box::new(Activation::new(Act::Relu)),
            LayerSpec::Sigmoid {} => Box::new(Activation::new(Act::Sigmoid)),
            LayerSpec::Tanh {} => Box::new(Activation::new(Act::Tanh)),
            LayerSpec::Silu {} => Box::new(Activation::new(Act::Silu)),
            LayerSpec::LeakyRelu { negative_slope } => {
                Box::new(Activation::new(Act::LeakyRelu(*negative_slope)))
            }
            LayerSpec::Elu { alpha } => Box::new(Activation::new(Act::Elu(*alpha))),
            LayerSpec::Gelu { approximate } => Box::new(Activation::new(match approximate {
                GeluApprox::None => Act::Gelu,
                GeluApprox::Tanh => Act::GeluTanh,
            })),
            LayerSpec::BatchNorm2d {
                num_features,
                eps,
                momentum,
            } => Box::new(BatchNorm2d::with_options(*num_features, *eps, *momentum)?),
            LayerSpec::GroupNorm {
                num_groups,
                num_channels,
                eps,
            } => Box::new(GroupNorm::with_eps(*num_groups, *num_channels, *eps)?),
            LayerSpec::LayerNorm { num_channels, eps } => {
                Box::new(LayerNorm::with_eps(*num_channels, *eps)?)
            }
            LayerSpec::InstanceNorm2d {
                num_features,
                eps,
                affine,
            } => Box::new(InstanceNorm2d::with_options(*num_features, *eps, *affine)?),
            LayerSpec::ChannelLayerNorm { num_channels, eps } => {
                Box::new(ChannelLayerNorm::with_eps(*num_channels, *eps)?)
            }
            LayerSpec::Dropout { p, seed } => Box::new(Dropout::new(*p, *seed)?),
            LayerSpec::Dropout2d { p, seed } => Box::new(Dropout2d::new(*p, *seed)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn specs_parse_with_defaults_and_reject_bad_values() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let s: LayerSpec =
            serde_json::from_str(r#"{"layer": "conv2d", "c_in": 3, "c_out": 8, "kernel": [3, 3]}"#)
                .unwrap();
        let mut l = s.build(&mut rng).unwrap();
        assert_eq!(l.output_shape(&[2, 3, 10, 9]).unwrap(), vec![2, 8, 8, 7]);
        assert_eq!(param_names(l.as_mut()), ["weight", "bias"]);
        let bad: LayerSpec =
            serde_json::from_str(r#"{"layer": "group_norm", "num_groups": 3, "num_channels": 8}"#)
                .unwrap();
        assert!(bad.build(&mut rng).is_err());
        assert!(serde_json::from_str::<LayerSpec>(r#"{"layer": "conv9d"}"#).is_err());
    }
}
