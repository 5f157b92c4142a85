//! `fmnist-cnn`: the Fashion-MNIST reference network of DESIGN.md.
//!
//! `[conv3×3(in→32) + norm + act, conv3×3(32→32) + norm + act, maxpool 2,
//!   conv3×3(32→64) + norm + act, conv3×3(64→64) + norm + act, maxpool 2]`,
//! flatten, optional dropout, `linear(64·H/4·W/4 → classes)`. Convolutions have no bias
//! (the norm's β replaces it). About 36.5 MFLOP forward per 28×28 image.
//! Names: `features.<i>.*` (indexed like torchvision's VGG), `classifier.*`.

use super::{Builder, ModelConfig, ModelInfo};
use crate::error::Result;
use crate::nn::{Flatten, Layer, MaxPool2d, PoolConfig, Sequential};

/// The small models.
pub(super) const MODELS: &[ModelInfo] = &[ModelInfo {
    name: "fmnist-cnn",
    description:
        "4 conv (32,32,64,64) + BN + ReLU, 2 max-pools, linear; 1x28x28 (DESIGN.md reference model)",
    config: || ModelConfig {
        in_channels: 1,
        input_size: [28, 28],
        ..ModelConfig::cifar()
    },
    build: fmnist_cnn,
}];

fn fmnist_cnn(b: &mut Builder) -> Result<Sequential> {
    let cfg = b.cfg.clone();
    let mut features = Sequential::new();
    let mut c_in = cfg.in_channels;
    // 0 marks a 2×2 max pool.
    for c in [32usize, 32, 0, 64, 64, 0] {
        if c == 0 {
            let idx = features.len();
            features.add(
                idx.to_string(),
                Box::new(MaxPool2d::new(PoolConfig::new(2))?),
            );
            continue;
        }
        let c_out = b.ch(c);
        let idx = features.len();
        features.add(
            idx.to_string(),
            Box::new(b.conv(c_in, c_out, 3, 1, 1, false)?),
        );
        if let Some(n) = b.norm(c_out)? {
            let idx = features.len();
            features.add(idx.to_string(), n);
        }
        let idx = features.len();
        features.add(idx.to_string(), Box::new(b.act()));
        c_in = c_out;
    }
    let feat =
        features.output_shape(&[1, cfg.in_channels, cfg.input_size[0], cfg.input_size[1]])?;
    let flat: usize = feat[1..].iter().product();
    let mut net = Sequential::new()
        .push("features", features)
        .push("flatten", Flatten::new());
    if cfg.dropout > 0.0 {
        let d = b.dropout(cfg.dropout)?;
        net = net.push("dropout", d);
    }
    let fc = b.linear(flat, cfg.classes)?;
    Ok(net.push("classifier", fc))
}
