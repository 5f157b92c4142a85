//! What every model builder takes: classes, input, width, normalization, activation,
//! dropout and initialization — each parseable from a CLI string and from TOML/JSON.

use crate::error::{Error, Result};
use crate::init::{FanMode, Nonlinearity};
use crate::kernels::eltwise::Act;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Which normalization follows each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// BatchNorm2d (statistics over N, H, W).
    Batch,
    /// GroupNorm with this many groups (channel counts are rounded up to a multiple).
    Group(usize),
    /// LayerNorm over (C, H, W) with per-channel γ, β = GroupNorm(1)
    /// ([`crate::nn::PerChannelLayerNorm`]).
    Layer,
    /// InstanceNorm2d = GroupNorm(C).
    Instance,
    /// No normalization; convolutions get a bias instead.
    None,
}

impl FromStr for NormKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::config(
                "model",
                "norm",
                format!("`{s}` is not a normalization; use batch, group:G (e.g. group:8), layer, instance or none"),
            )
        };
        Ok(match s {
            "batch" | "bn" => NormKind::Batch,
            "layer" | "ln" => NormKind::Layer,
            "instance" | "in" => NormKind::Instance,
            "none" => NormKind::None,
            _ => match s.strip_prefix("group:").or_else(|| s.strip_prefix("gn:")) {
                Some(g) => match g.parse::<usize>() {
                    Ok(g) if g > 0 => NormKind::Group(g),
                    _ => return Err(bad()),
                },
                None => return Err(bad()),
            },
        })
    }
}

/// The activation used throughout a model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActKind {
    /// ReLU.
    Relu,
    /// LeakyReLU with slope 0.01.
    LeakyRelu,
    /// ELU with alpha 1.
    Elu,
    /// Exact GELU.
    Gelu,
    /// SiLU / swish.
    Silu,
    /// Sigmoid (for the vanishing-gradient demonstration).
    Sigmoid,
    /// Tanh.
    Tanh,
}

impl ActKind {
    /// The element-wise function.
    pub fn act(self) -> Act {
        match self {
            ActKind::Relu => Act::Relu,
            ActKind::LeakyRelu => Act::LeakyRelu(0.01),
            ActKind::Elu => Act::Elu(1.0),
            ActKind::Gelu => Act::Gelu,
            ActKind::Silu => Act::Silu,
            ActKind::Sigmoid => Act::Sigmoid,
            ActKind::Tanh => Act::Tanh,
        }
    }

    /// The initialization gain that suits it (ReLU's √2 for the ReLU-like ones).
    pub fn nonlinearity(self) -> Nonlinearity {
        match self {
            ActKind::Relu | ActKind::Elu | ActKind::Gelu | ActKind::Silu => Nonlinearity::Relu,
            ActKind::LeakyRelu => Nonlinearity::LeakyRelu(0.01),
            ActKind::Sigmoid => Nonlinearity::Sigmoid,
            ActKind::Tanh => Nonlinearity::Tanh,
        }
    }
}

impl FromStr for ActKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "relu" => ActKind::Relu,
            "leaky_relu" | "leaky-relu" | "lrelu" => ActKind::LeakyRelu,
            "elu" => ActKind::Elu,
            "gelu" => ActKind::Gelu,
            "silu" | "swish" => ActKind::Silu,
            "sigmoid" => ActKind::Sigmoid,
            "tanh" => ActKind::Tanh,
            _ => {
                return Err(Error::config(
                    "model",
                    "activation",
                    format!("`{s}` is not an activation; use relu, leaky_relu, elu, gelu, silu, sigmoid or tanh"),
                ))
            }
        })
    }
}

/// How convolution and linear weights are initialized.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// Kaiming normal with fan-out and the activation's gain (torchvision's ResNet/VGG).
    KaimingNormal,
    /// Kaiming uniform with fan-in and the activation's gain.
    KaimingUniform,
    /// Xavier (Glorot) uniform with the activation's gain.
    Xavier,
    /// `N(0, std²)`: the lecture's "too small" (0.01) and "too large" (1.0) experiment.
    Normal(f32),
    /// Each layer's PyTorch default (`U(±1/√fan_in)`).
    Pytorch,
}

impl InitScheme {
    /// Initializes a weight `[out, in, ...]` and its optional bias.
    pub fn apply(
        self,
        act: ActKind,
        weight: &mut crate::Tensor,
        bias: Option<&mut crate::Tensor>,
        rng: &mut impl rand::Rng,
    ) -> Result<()> {
        use crate::init;
        let nl = act.nonlinearity();
        match self {
            InitScheme::Pytorch => return init::pytorch_default(weight, bias, rng),
            InitScheme::KaimingNormal => init::kaiming_normal(weight, FanMode::FanOut, nl, rng)?,
            InitScheme::KaimingUniform => init::kaiming_uniform(weight, FanMode::FanIn, nl, rng)?,
            InitScheme::Xavier => init::xavier_uniform(weight, nl.gain(), rng)?,
            InitScheme::Normal(std) => init::normal(weight, std, rng),
        }
        if let Some(b) = bias {
            b.fill(0.0);
        }
        Ok(())
    }
}

impl FromStr for InitScheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "kaiming" | "kaiming_normal" | "he" => InitScheme::KaimingNormal,
            "kaiming_uniform" => InitScheme::KaimingUniform,
            "xavier" | "glorot" => InitScheme::Xavier,
            "pytorch" | "default" => InitScheme::Pytorch,
            _ => match s.strip_prefix("normal:").map(str::parse::<f32>) {
                Some(Ok(std)) if std >= 0.0 && std.is_finite() => InitScheme::Normal(std),
                _ => {
                    return Err(Error::config(
                        "model",
                        "init",
                        format!("`{s}` is not an init scheme; use kaiming, kaiming_uniform, xavier, pytorch or normal:STD (e.g. normal:0.01)"),
                    ))
                }
            },
        })
    }
}

/// Everything a model builder needs besides the architecture's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Output classes.
    pub classes: usize,
    /// Input channels (1 for grayscale, 3 for RGB).
    pub in_channels: usize,
    /// Input `[height, width]`; sets the classifier's input size.
    pub input_size: [usize; 2],
    /// Channel width multiplier. Default: 1.0.
    pub width: f32,
    /// Normalization after each convolution.
    pub norm: NormKind,
    /// Activation throughout.
    pub activation: ActKind,
    /// Dropout probability before the classifier (0 = none).
    pub dropout: f32,
    /// Weight initialization.
    pub init: InitScheme,
    /// Seed of the initialization.
    pub seed: u64,
}

impl ModelConfig {
    /// The defaults for CIFAR-sized inputs: 3×32×32, 10 classes, width 1, BatchNorm,
    /// ReLU, no dropout, Kaiming normal initialization, seed 0.
    pub fn cifar() -> Self {
        ModelConfig {
            classes: 10,
            in_channels: 3,
            input_size: [32, 32],
            width: 1.0,
            norm: NormKind::Batch,
            activation: ActKind::Relu,
            dropout: 0.0,
            init: InitScheme::KaimingNormal,
            seed: 0,
        }
    }

    /// The defaults for ImageNet: [`ModelConfig::cifar`] at 224×224 with 1000 classes.
    pub fn imagenet() -> Self {
        ModelConfig {
            classes: 1000,
            input_size: [224, 224],
            ..Self::cifar()
        }
    }

    /// Checks the values that every builder relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config("model", field, reason));
        if self.classes == 0 {
            return bad("classes", "must be ≥ 1".into());
        }
        if self.in_channels == 0 {
            return bad("in_channels", "must be ≥ 1".into());
        }
        if self.input_size.contains(&0) {
            return bad(
                "input_size",
                format!("must be ≥ 1, got {:?}", self.input_size),
            );
        }
        if !(self.width > 0.0 && self.width <= 16.0) {
            return bad("width", format!("must be in (0, 16], got {}", self.width));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            );
        }
        Ok(())
    }

    /// `c` scaled by the width multiplier, at least 1, and a multiple of the GroupNorm
    /// group count.
    pub fn channels(&self, c: usize) -> usize {
        let scaled = ((c as f32 * self.width).round() as usize).max(1);
        match self.norm {
            NormKind::Group(g) => scaled.div_ceil(g) * g,
            _ => scaled,
        }
    }
}
