//! `strata bench`: the speed of a model's training step or inference.

use super::models::{out, ModelFlags};
use anyhow::{Context, Result};
use clap::Args;
use strata::bench::{self, BenchMode, BenchOptions};
use strata::models;

/// `strata bench` arguments.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  strata bench                                   fmnist-cnn training step, batch 128
  strata bench --model resnet20 --mode infer
  strata bench --model resnet56 --batch 64 --threads 1
  strata bench --model resnet20 --json > resnet20.json

The same measurement in PyTorch, for a side-by-side ratio:
  python tools/bench_pytorch.py --model resnet20 --threads 2")]
pub struct BenchArgs {
    /// Model name (see `strata models`).
    #[arg(long, default_value = "fmnist-cnn")]
    pub model: String,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// train (forward + loss + backward + SGD update) or infer (forward, eval mode).
    #[arg(long, default_value = "train")]
    pub mode: String,
    /// Untimed steps before measuring.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Steps of the profiled run that makes the per-layer table (0: no table).
    #[arg(long, default_value_t = 3)]
    pub profile_iters: usize,
    #[command(flatten)]
    pub flags: ModelFlags,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `strata bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let mode: BenchMode = args.mode.parse()?;
    let config = args.flags.resolve(&args.model)?;
    let mut model = models::build(&args.model, Some(config))
        .with_context(|| format!("cannot build {}", args.model))?;
    let opts = BenchOptions {
        batch: args.batch,
        mode,
        warmup: args.warmup,
        iters: args.iters,
        profile_iters: args.profile_iters,
        seed: 0,
    };
    let report = bench::run(&mut model, &opts)?;
    if args.json {
        out(&(serde_json::to_string_pretty(&report)? + "\n"))
    } else {
        out(&report.render())
    }
}
