//! The `strata` command-line tool.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// strata: train and inspect convolutional networks on the CPU.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// List the layers strata implements, with their PyTorch equivalents.
    Layers,
    /// Datasets: download, statistics, augmentation preview, loader benchmark.
    Data(cli::data::DataArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Layers => {
            for (name, torch) in LAYERS {
                println!("{name:<20} {torch}");
            }
            Ok(())
        }
        Command::Data(args) => cli::data::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code(&e)
        }
    }
}

/// 1 when a run failed (e.g. a download), 2 for usage and input errors.
fn exit_code(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<strata::Error>() {
        Some(strata::Error::Download { .. }) => ExitCode::from(1),
        _ => ExitCode::from(2),
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
