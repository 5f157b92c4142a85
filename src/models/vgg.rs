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

use super::Builder;
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

pub(super) const CATALOG: &[(&str, &str)] = &[
    (
        "vgg11",
        "VGG-11 (config A), no BN; ImageNet head at 224, compact head at small inputs",
    ),
    ("vgg11-bn", "VGG-11 with BatchNorm"),
    ("vgg13", "VGG-13 (config B), no BN"),
    ("vgg13-bn", "VGG-13 with BatchNorm"),
    (
        "vgg16",
        "VGG-16 (config D), no BN; 138M parameters at 224x224",
    ),
    ("vgg16-bn", "VGG-16 with BatchNorm"),
    ("vgg19", "VGG-19 (config E), no BN"),
    ("vgg19-bn", "VGG-19 with BatchNorm"),
    (
        "vgg11-bn-cifar",
        "VGG-11 with BatchNorm, defaults for CIFAR (3x32x32, 10 classes, compact head)",
    ),
];

/// The depth of a VGG name (`vgg16-bn` → 16).
pub(super) fn depth(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("vgg")?;
    let rest = rest.strip_suffix("-cifar").unwrap_or(rest);
    let rest = rest.strip_suffix("-bn").unwrap_or(rest);
    match rest {
        "11" => Some(11),
        "13" => Some(13),
        "16" => Some(16),
        "19" => Some(19),
        _ => None,
    }
}

pub(super) fn build(b: &mut Builder, name: &str) -> Result<Sequential> {
    let table = match depth(name) {
        Some(11) => A,
        Some(13) => B,
        Some(16) => D,
        _ => E,
    };
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
