//! The `strata` command-line tool.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// strata: train and inspect convolutional networks on the CPU.
///
/// Examples:
///   strata models                          list the architectures
///   strata summary resnet20                per-layer shapes, parameters, MACs, receptive fields
///   strata summary vgg16 --input 3x224x224
///   strata summary resnet56 --norm group:8 --width 0.5
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the model architectures strata can build.
    Models,
    /// Show a model's layers: output shape, parameters, multiply-adds, receptive field.
    Summary(cli::models::SummaryArgs),
    /// List the layers strata implements, with their PyTorch equivalents.
    Layers,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Models => cli::models::list(),
        Command::Summary(args) => cli::models::summary(args),
        Command::Layers => {
            let text: String = LAYERS
                .iter()
                .map(|(n, t)| format!("{n:<20} {t}\n"))
                .collect();
            cli::models::out(&text)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Bad input (a name, a value, a file) is a usage error.
            ExitCode::from(2)
        }
    }
}

const LAYERS: &[(&str, &str)] = &[
    (
        "conv2d",
        "torch.nn.Conv2d (stride, padding, dilation, groups, bias)",
    ),
    ("linear", "torch.nn.Linear"),
    ("max_pool2d", "torch.nn.MaxPool2d"),
    ("avg_pool2d", "torch.nn.AvgPool2d"),
    (
        "adaptive_avg_pool2d",
        "torch.nn.AdaptiveAvgPool2d (global pool: output 1x1)",
    ),
    ("flatten", "torch.nn.Flatten"),
    ("dropout", "torch.nn.Dropout (inverted)"),
    ("dropout2d", "torch.nn.Dropout2d (inverted)"),
    ("relu", "torch.nn.ReLU"),
    ("leaky_relu", "torch.nn.LeakyReLU"),
    ("elu", "torch.nn.ELU"),
    ("gelu", "torch.nn.GELU (approximate none|tanh)"),
    ("silu", "torch.nn.SiLU"),
    ("sigmoid", "torch.nn.Sigmoid"),
    ("tanh", "torch.nn.Tanh"),
    ("batch_norm2d", "torch.nn.BatchNorm2d"),
    ("group_norm", "torch.nn.GroupNorm"),
    ("layer_norm", "torch.nn.GroupNorm(1, C)"),
    (
        "instance_norm2d",
        "torch.nn.InstanceNorm2d (affine by default)",
    ),
    (
        "channel_layer_norm",
        "LayerNorm over C at each position (ConvNeXt)",
    ),
];
