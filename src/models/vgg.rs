//! VGG-11/13/16/19, with or without BatchNorm (Simonyan & Zisserman 2014).
//!
//! Models as data: each depth is a table of `Conv(c)` and `Pool` entries (torchvision's
//! configurations A, B, D, E). Every conv is 3×3, padding 1, with bias; the lecture's
//! point is that three stacked 3×3 convs see a 7×7 window with 27·C² weights instead
//! of 49·C² (see `strata summary`).
//!
//! Heads: for inputs of at least 128 px, torchvision's ImageNet head (adaptive average
//! pool to 7×7, `Linear(512·7·7, 4096)`, ReLU, Dropout, `Linear(4096, 4096)`, ReLU, Dropout,
//! `Linear(4096, classes)`); for smaller inputs (CIFAR's 32×32) a compact head: global
//! average pool, Dropout, `Linear(512, classes)`. Names follow torchvision:
//! `features.<i>.*`, `classifier.<i>.*`.

use super::{Builder, ModelConfig, ModelInfo, NormKind};
use crate::error::Result;
use crate::nn::{AdaptiveAvgPool2d, Flatten, MaxPool2d, PoolConfig, Sequential};

/// 0 marks a 2×2 max pool.
const A: &[usize] = &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
const B: &[usize] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
];
const D: &[usize] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];
const E: &[usize] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
];

/// The VGG models: the layer table (A, B, D, E of Simonyan & Zisserman) and whether
/// the defaults use BatchNorm and CIFAR's input.
pub(super) const MODELS: &[ModelInfo] = &[
    ModelInfo {
        name: "vgg11",
        description: "VGG-11 (config A), no BN; ImageNet head at 224, compact head at small inputs",
        config: || config(false, false),
        build: |b| build(b, A),
    },
    ModelInfo {
        name: "vgg11-bn",
        description: "VGG-11 with BatchNorm",
        config: || config(true, false),
        build: |b| build(b, A),
    },
    ModelInfo {
        name: "vgg13",
        description: "VGG-13 (config B), no BN",
        config: || config(false, false),
        build: |b| build(b, B),
    },
    ModelInfo {
        name: "vgg13-bn",
        description: "VGG-13 with BatchNorm",
        config: || config(true, false),
        build: |b| build(b, B),
    },
    ModelInfo {
        name: "vgg16",
        description: "VGG-16 (config D), no BN; 138M parameters at 224x224",
        config: || config(false, false),
        build: |b| build(b, D),
    },
    ModelInfo {
        name: "vgg16-bn",
        description: "VGG-16 with BatchNorm",
        config: || config(true, false),
        build: |b| build(b, D),
    },
    ModelInfo {
        name: "vgg19",
        description: "VGG-19 (config E), no BN",
        config: || config(false, false),
        build: |b| build(b, E),
    },
    ModelInfo {
        name: "vgg19-bn",
        description: "VGG-19 with BatchNorm",
        config: || config(true, false),
        build: |b| build(b, E),
    },
    ModelInfo {
        name: "vgg11-bn-cifar",
        description:
            "VGG-11 with BatchNorm, defaults for CIFAR (3x32x32, 10 classes, compact head)",
        config: || config(true, true),
        build: |b| build(b, A),
    },
];

/// The default configuration: CIFAR's input and a compact head, or ImageNet's with
/// dropout 0.5 in the classifier; BatchNorm or none.
fn config(bn: bool, cifar: bool) -> ModelConfig {
    let norm = if bn { NormKind::Batch } else { NormKind::None };
    if cifar {
        ModelConfig {
            norm,
            ..ModelConfig::cifar()
        }
    } else {
        ModelConfig {
            norm,
            dropout: 0.5,
            ..ModelConfig::imagenet()
        }
    }
}

fn build(b: &mut Builder, table: &[usize]) -> Result<Sequential> {
    let cfg = b.cfg.clone();
    let mut features = Sequential::new();
    let mut c_in = cfg.in_channels;
    for &c in table {
        let idx = features.len().to_string();
        if c == 0 {
            features.add(idx, Box::new(MaxPool2d::new(PoolConfig::new(2))?));
            continue;
        }
        let c_out = b.ch(c);
        features.add(idx, Box::new(b.conv(c_in, c_out, 3, 1, 1, true)?));
        if let Some(n) = b.norm(c_out)? {
            features.add(features.len().to_string(), n);
        }
        features.add(features.len().to_string(), Box::new(b.act()));
        c_in = c_out;
    }
    let mut net = Sequential::new().push("features", features);
    let imagenet_head = cfg.input_size[0].min(cfg.input_size[1]) >= 128;
    if imagenet_head {
        let hidden = b.ch(4096);
        net = net
            .push("avgpool", AdaptiveAvgPool2d::new([7, 7])?)
            .push("flatten", Flatten::new());
        let fc0 = b.linear(c_in * 49, hidden)?;
        let d1 = b.dropout(cfg.dropout)?;
        let fc3 = b.linear(hidden, hidden)?;
        let d2 = b.dropout(cfg.dropout)?;
        let fc6 = b.linear(hidden, cfg.classes)?;
        let classifier = Sequential::new()
            .push("0", fc0)
            .push("1", b.act())
            .push("2", d1)
            .push("3", fc3)
            .push("4", b.act())
            .push("5", d2)
            .push("6", fc6);
        Ok(net.push("classifier", classifier))
    } else {
        let d = b.dropout(cfg.dropout)?;
        let fc = b.linear(c_in, cfg.classes)?;
        net = net
            .push("avgpool", AdaptiveAvgPool2d::global())
            .push("flatten", Flatten::new());
        Ok(net.push("classifier", Sequential::new().push("0", d).push("1", fc)))
    }
}
