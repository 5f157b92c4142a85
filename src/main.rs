//! The `strata` command-line tool.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// strata: train and inspect convolutional networks on the CPU.
///
/// Examples:
///   strata train                           fmnist-cnn on Fashion-MNIST (the default job)
///   strata train --model resnet20 --data cifar10 --epochs 30
///   strata eval runs/fmnist-cnn-fashion-mnist
///   strata predict runs/fmnist-cnn-fashion-mnist shoe.png
///   strata models                          list the architectures
///   strata summary resnet20                per-layer shapes, parameters, MACs, receptive fields
///   strata summary vgg16 --input 3x224x224
///   strata summary resnet56 --norm group:8 --width 0.5
///   strata bench --model resnet20          images/s of a training step, per-layer times
///   strata check                           sanity checks before training (initial loss, data,
///                                          activations and gradients, overfit 20 images)
///   strata lr-find --probe 1e-1,1e-2,1e-3  the learning-rate range test, and a probe of rates
///   strata diagnose runs/fmnist-cnn-fashion-mnist   what the curves say, and what to do
///   strata tune space.toml                 hyperparameter search (grid, random, halving; --ray)
///   strata study init                      what initialization does to a deep plain network
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, verbatim_doc_comment)]
struct Cli {
    /// Worker threads for the math (default: all cores). Results are identical for a
    /// given seed and thread count.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model (default: fmnist-cnn on Fashion-MNIST, the lecture's recipe).
    #[command(allow_negative_numbers = true)]
    Train(cli::train::TrainArgs),
    /// Evaluate a run or checkpoint: accuracy, per-class table, confusion matrix.
    Eval(cli::train::EvalArgs),
    /// Classify image files with a trained model (top-k classes and probabilities).
    Predict(cli::train::PredictArgs),
    /// List the model architectures strata can build.
    Models,
    /// Show a model's layers: output shape, parameters, multiply-adds, receptive field.
    Summary(cli::models::SummaryArgs),
    /// List the layers strata implements, with their PyTorch equivalents.
    Layers,
    /// Speed of a training step or inference: images/s, GFLOP/s, memory, per-layer times.
    Bench(cli::bench::BenchArgs),
    /// The lecture's sanity checks before training: initial loss, data, the network at
    /// initialization layer by layer, overfitting a small sample. Exit 1 when one fails.
    #[command(allow_negative_numbers = true)]
    Check(cli::method::CheckArgs),
    /// The learning-rate range test: a sweep from 1e-7 to 10, the loss against the rate,
    /// a suggested rate; --probe trains at a few rates and tables how the loss fell.
    #[command(name = "lr-find", allow_negative_numbers = true)]
    LrFind(cli::method::LrFindArgs),
    /// Read a run's curves (and --watch records): overfitting, underfitting, not trained
    /// enough, learning rate too high or too low, dead layers — with the evidence and
    /// what to do.
    Diagnose(cli::method::DiagnoseArgs),
    /// Hyperparameter search: grid, random or successive halving over any training
    /// field, trials on this machine or a Ray cluster; results table, plots, best config.
    Tune(cli::tune::TuneArgs),
    /// Transfer learning: a pretrained run or state dict (torchvision's too) with a new
    /// head for new classes; train the head alone, every layer, or one then the other.
    #[command(allow_negative_numbers = true)]
    Finetune(cli::transfer::FinetuneArgs),
    /// The lecture's seven steps in one time budget: initial loss, overfit a small
    /// sample, find a learning rate, coarse search, fine search, train the best longer,
    /// read the curves — and report.html telling each step and its decision.
    #[command(allow_negative_numbers = true)]
    Recipe(cli::recipe::RecipeArgs),
    /// Rebuild report.html — one self-contained page to open in a browser — for a run,
    /// search, lr-find or study folder (every command writes its own at the end).
    Report(cli::report::ReportArgs),
    /// The lecture's experiments, reproduced on this machine with figures (init).
    Study(cli::study::StudyArgs),
    /// Datasets: download, statistics, augmentation preview, loader benchmark.
    Data(cli::data::DataArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    strata::alloc::keep_freed_memory();
    if let Some(t) = cli.threads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if t == 0 || t > 4 * cores {
            eprintln!(
                "error: --threads {t}: give 1 to {} (this machine has {cores} cores; \
                 leave the flag out to use them all)",
                4 * cores
            );
            return ExitCode::from(2);
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
        {
            eprintln!("error: --threads {t}: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Models => cli::models::list(),
        Command::Summary(args) => cli::models::summary(&args),
        Command::Train(args) => cli::train::run(&args),
        Command::Eval(args) => cli::train::eval(&args),
        Command::Finetune(args) => cli::transfer::run(&args),
        Command::Report(args) => cli::report::run(&args),
        Command::Recipe(args) => cli::recipe::run(&args),
        Command::Predict(args) => cli::train::predict(&args),
        Command::Layers => {
            let text: String = strata::nn::registry::LAYERS
                .iter()
                .map(|l| format!("{:<20} {}\n", l.name, l.torch))
                .collect();
            cli::models::out(&text)
        }
        Command::Data(args) => cli::data::run(args),
        Command::Bench(args) => cli::bench::run(&args),
        Command::Check(args) => cli::method::check(&args),
        Command::LrFind(args) => cli::method::lr_find(&args),
        Command::Diagnose(args) => cli::method::diagnose(&args),
        Command::Tune(args) => cli::tune::run(&args),
        Command::Study(args) => cli::study::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            exit_code(&e)
        }
    }
}

/// The error and its causes, each said once (a strata error already includes the
/// operating system's message it wraps).
fn message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// 1 when a run failed (e.g. a download), 2 for usage and input errors.
fn exit_code(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<strata::Error>() {
        Some(strata::Error::Download { .. } | strata::Error::Diverged { .. }) => ExitCode::from(1),
        _ => ExitCode::from(2),
    }
}
