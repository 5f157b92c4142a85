//! ResNets (He et al. 2015, arXiv:1512.03385) and their plain twins.
//!
//! Models as data: a ResNet is a stem, a block type and a count of blocks per stage.
//! - CIFAR (`resnet20|32|44|56|110`): stem conv3×3(in→16) + norm + act; three stages of
//!   `n = (depth − 2)/6` BasicBlocks at 16, 32, 64 channels, stride 2 entering stages 2
//!   and 3; global average pool; `fc(64 → classes)`. Where the shape changes the
//!   shortcut is a projection, conv1×1 (stride 2) + norm (the paper's option B).
//! - `plain20|…|110`: the same layers without any shortcut: the lecture's degradation
//!   experiment (a deeper plain net trains *worse*; a deeper ResNet does not).
//! - ImageNet (`resnet18|34|50`): torchvision's layout: conv7×7/2 + norm + act +
//!   maxpool3×3/2; stages at 64, 128, 256, 512 with [2,2,2,2] / [3,4,6,3] BasicBlocks, or
//!   [3,4,6,3] Bottlenecks (1×1, 3×3 with the stride, 1×1 ×4) for ResNet-50.
//!
//! BasicBlock: `act(norm(conv3×3(act(norm(conv3×3/s(x))))) + shortcut(x))`.
//! Names: `conv1`, `bn1`, `layer<s>.<b>.conv1|bn1|conv2|bn2[|conv3|bn3]`,
//! `layer<s>.<b>.downsample.0|1`, `fc` — torchvision's.

use super::{Builder, ModelConfig, ModelInfo};
use crate::error::Result;
use crate::nn::{AdaptiveAvgPool2d, Flatten, MaxPool2d, PoolConfig, Residual, Sequential, Skip};

/// The ResNets: CIFAR's (6n + 2 layers, n blocks a stage; plain: no shortcuts) and
/// ImageNet's (blocks per stage, BasicBlock or Bottleneck).
pub(super) const MODELS: &[ModelInfo] = &[
    ModelInfo {
        name: "resnet20",
        description: "CIFAR ResNet-20: 3 stages x 3 BasicBlocks (16/32/64), 0.27M params",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 3, false),
    },
    ModelInfo {
        name: "resnet32",
        description: "CIFAR ResNet-32: 3 x 5 BasicBlocks",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 5, false),
    },
    ModelInfo {
        name: "resnet44",
        description: "CIFAR ResNet-44: 3 x 7 BasicBlocks",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 7, false),
    },
    ModelInfo {
        name: "resnet56",
        description: "CIFAR ResNet-56: 3 x 9 BasicBlocks, 0.85M params",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 9, false),
    },
    ModelInfo {
        name: "resnet110",
        description: "CIFAR ResNet-110: 3 x 18 BasicBlocks",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 18, false),
    },
    ModelInfo {
        name: "plain20",
        description: "ResNet-20 without shortcuts (degradation experiment)",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 3, true),
    },
    ModelInfo {
        name: "plain32",
        description: "ResNet-32 without shortcuts",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 5, true),
    },
    ModelInfo {
        name: "plain44",
        description: "ResNet-44 without shortcuts",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 7, true),
    },
    ModelInfo {
        name: "plain56",
        description: "ResNet-56 without shortcuts",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 9, true),
    },
    ModelInfo {
        name: "plain110",
        description: "ResNet-110 without shortcuts",
        config: ModelConfig::cifar,
        build: |b| cifar(b, 18, true),
    },
    ModelInfo {
        name: "resnet18",
        description: "ImageNet ResNet-18 (torchvision layout), 11.7M params",
        config: ModelConfig::imagenet,
        build: |b| imagenet(b, &[2, 2, 2, 2], false),
    },
    ModelInfo {
        name: "resnet34",
        description: "ImageNet ResNet-34 (torchvision layout)",
        config: ModelConfig::imagenet,
        build: |b| imagenet(b, &[3, 4, 6, 3], false),
    },
    ModelInfo {
        name: "resnet50",
        description: "ImageNet ResNet-50, Bottleneck blocks (torchvision layout)",
        config: ModelConfig::imagenet,
        build: |b| imagenet(b, &[3, 4, 6, 3], true),
    },
];

/// `conv` then the configured norm, named `conv<i>` / `bn<i>`.
fn conv_norm(
    b: &mut Builder,
    seq: Sequential,
    i: usize,
    (c_in, c_out, k, stride): (usize, usize, usize, usize),
) -> Result<Sequential> {
    let conv = b.conv(c_in, c_out, k, stride, k / 2, false)?;
    let mut seq = seq.push(format!("conv{i}"), conv);
    if let Some(n) = b.norm(c_out)? {
        seq.add(format!("bn{i}"), n);
    }
    Ok(seq)
}

/// A block from `c_in` to `c_out` channels (`c_out` includes the bottleneck's ×4).
fn block(
    b: &mut Builder,
    c_in: usize,
    c_out: usize,
    stride: usize,
    bottleneck: bool,
    plain: bool,
) -> Result<Residual> {
    let mut body = Sequential::new();
    if bottleneck {
        let mid = c_out / 4;
        body = conv_norm(b, body, 1, (c_in, mid, 1, 1))?.push("relu1", b.act());
        body = conv_norm(b, body, 2, (mid, mid, 3, stride))?.push("relu2", b.act());
        body = conv_norm(b, body, 3, (mid, c_out, 1, 1))?;
    } else {
        body = conv_norm(b, body, 1, (c_in, c_out, 3, stride))?.push("relu1", b.act());
        body = conv_norm(b, body, 2, (c_out, c_out, 3, 1))?;
    }
    let skip = if plain {
        Skip::None
    } else if stride != 1 || c_in != c_out {
        let conv = b.conv(c_in, c_out, 1, stride, 0, false)?;
        let mut proj = Sequential::new().push("0", conv);
        if let Some(n) = b.norm(c_out)? {
            proj.add("1", n);
        }
        Skip::Projection(proj)
    } else {
        Skip::Identity
    };
    Ok(Residual::new(body, skip, Some(b.act())))
}

/// Stages `layer1..`: `(channels, blocks, stride)` each.
fn stages(
    b: &mut Builder,
    mut net: Sequential,
    mut c_in: usize,
    plan: &[(usize, usize, usize)],
    bottleneck: bool,
    plain: bool,
) -> Result<(Sequential, usize)> {
    for (s, &(c, blocks, stride)) in plan.iter().enumerate() {
        let c_out = if bottleneck { b.ch(c) * 4 } else { b.ch(c) };
        let mut stage = Sequential::new();
        for i in 0..blocks {
            let st = if i == 0 { stride } else { 1 };
            stage.add(
                i.to_string(),
                Box::new(block(b, c_in, c_out, st, bottleneck, plain)?),
            );
            c_in = c_out;
        }
        net = net.push(format!("layer{}", s + 1), stage);
    }
    Ok((net, c_in))
}

fn head(b: &mut Builder, net: Sequential, c: usize) -> Result<Sequential> {
    let mut net = net
        .push("avgpool", AdaptiveAvgPool2d::global())
        .push("flatten", Flatten::new());
    if b.cfg.dropout > 0.0 {
        let d = b.dropout(b.cfg.dropout)?;
        net = net.push("dropout", d);
    }
    let fc = b.linear(c, b.cfg.classes)?;
    Ok(net.push("fc", fc))
}

fn cifar(b: &mut Builder, n: usize, plain: bool) -> Result<Sequential> {
    let c0 = b.ch(16);
    let net =
        conv_norm(b, Sequential::new(), 1, (b.cfg.in_channels, c0, 3, 1))?.push("relu", b.act());
    let (net, c) = stages(
        b,
        net,
        c0,
        &[(16, n, 1), (32, n, 2), (64, n, 2)],
        false,
        plain,
    )?;
    head(b, net, c)
}

fn imagenet(b: &mut Builder, blocks: &[usize], bottleneck: bool) -> Result<Sequential> {
    let c0 = b.ch(64);
    let stem = b.conv(b.cfg.in_channels, c0, 7, 2, 3, false)?;
    let mut net = Sequential::new().push("conv1", stem);
    if let Some(n) = b.norm(c0)? {
        net.add("bn1", n);
    }
    let pool = MaxPool2d::new(PoolConfig::new(3).stride(2).padding(1))?;
    let net = net.push("relu", b.act()).push("maxpool", pool);
    let plan: Vec<(usize, usize, usize)> = [64, 128, 256, 512]
        .iter()
        .zip(blocks)
        .enumerate()
        .map(|(i, (&c, &n))| (c, n, if i == 0 { 1 } else { 2 }))
        .collect();
    let (net, c) = stages(b, net, c0, &plan, bottleneck, false)?;
    head(b, net, c)
}
