//! `strata bench`: the speed of a model's training step or inference, one configuration
//! or a sweep over models, batch sizes and thread counts (with a plot).

use super::models::{out, ModelFlags};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use strata::bench::{self, BenchMode, BenchOptions, BenchReport};
use strata::kernels::bf16::Precision;
use strata::models;
use strata::plot::{line_chart, Chart, Series};

/// `strata bench` arguments.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  strata bench                                   fmnist-cnn training step, batch 128
  strata bench --model resnet20 --mode infer
  strata bench --model resnet20 --json > resnet20.json
  strata bench --model resnet20 --batch 32,64,128,256 --plot batch.svg
  strata bench --model resnet20,resnet56,resnet110 --plot depth.svg
  strata bench --model resnet20 --thread-counts 1,2 --plot threads.svg
  strata bench --model resnet20 --precision bf16  mixed precision (AVX-512 BF16)
  strata bench --model resnet20 --conv-tuning timed  time each conv's kernels, keep the fastest

A list in --model, --batch or --thread-counts makes a sweep: one line per configuration,
and with --plot an SVG chart (images/s against batch or threads; time per step against
the arithmetic of the model for a list of models, a straight line when cost is linear).

The same measurement in PyTorch, for a side-by-side ratio:
  python tools/bench_pytorch.py --model resnet20 --threads 2")]
pub struct BenchArgs {
    /// Model name, or a comma-separated list (see `strata models`).
    #[arg(long, default_value = "fmnist-cnn", value_name = "NAME[,NAME...]")]
    pub model: String,
    /// Images per step, or a comma-separated list.
    #[arg(long, default_value = "128", value_name = "B[,B...]")]
    pub batch: String,
    /// Thread counts to sweep (each run in its own pool). Default: the --threads pool.
    #[arg(long, value_name = "T[,T...]")]
    pub thread_counts: Option<String>,
    /// train (forward + loss + backward + SGD update) or infer (forward, eval mode).
    #[arg(long, default_value = "train")]
    pub mode: String,
    /// Untimed steps before measuring.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Steps of the profiled run that makes the per-layer table (0: no table; sweeps
    /// print no table).
    #[arg(long, default_value_t = 3)]
    pub profile_iters: usize,
    #[command(flatten)]
    pub flags: ModelFlags,
    /// Run every layer on its own (no ReLU fused into the normalization or the residual
    /// sum), to measure what fusion buys.
    #[arg(long)]
    pub no_fuse: bool,
    /// Products of the convolutions: f32, or bf16 (mixed precision: bf16 products,
    /// f32 sums and everything else f32; needs AVX-512 BF16, f32 without it).
    #[arg(long, default_value = "f32", value_name = "f32|bf16")]
    pub precision: String,
    /// How each convolution picks its kernel: `auto` (as `strata train`: static rules
    /// in f32, timed under bf16), `static` (fixed rules per geometry) or `timed` (every
    /// kernel that applies is timed once on the first batch and the fastest kept, as
    /// cuDNN's benchmark mode; the bench always times afresh). The table's last column
    /// shows the choice.
    #[arg(long, default_value = "auto", value_name = "auto|static|timed")]
    pub conv_tuning: String,
    /// Write the sweep as an SVG chart to this file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Print the report (a list for a sweep) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

fn list<T: std::str::FromStr>(flag: &str, s: &str) -> Result<Vec<T>> {
    let items: Vec<T> = s
        .split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<T>()
                .map_err(|_| anyhow::anyhow!("--{flag}: `{p}` is not valid"))
        })
        .collect::<Result<_>>()?;
    if items.is_empty() {
        bail!("--{flag}: give at least one value");
    }
    Ok(items)
}

/// `strata bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let mode: BenchMode = args.mode.parse()?;
    let precision: Precision = args.precision.parse()?;
    super::warn_without_bf16(precision);
    let tuning = args
        .conv_tuning
        .parse::<strata::train::ConvTuning>()?
        .resolve(precision);
    let names: Vec<String> = list("model", &args.model)?;
    let batches: Vec<usize> = list("batch", &args.batch)?;
    let threads: Vec<usize> = match &args.thread_counts {
        Some(s) => list("thread-counts", s)?,
        None => vec![rayon::current_num_threads()],
    };
    if batches.contains(&0) || threads.contains(&0) {
        bail!("--batch and --thread-counts need values of at least 1");
    }
    let sweep = names.len() * batches.len() * threads.len() > 1;
    if args.plot.is_some() && !sweep {
        bail!("--plot draws a sweep: give a list to --model, --batch or --thread-counts");
    }
    let mut reports = vec![];
    for name in &names {
        let config = args.flags.resolve(name)?;
        for &t in &threads {
            for &batch in &batches {
                let mut model = models::build_with(name, Some(config.clone()), !args.no_fuse)
                    .with_context(|| format!("cannot build {name}"))?;
                let opts = BenchOptions {
                    batch,
                    mode,
                    warmup: args.warmup,
                    iters: args.iters,
                    profile_iters: if sweep { 0 } else { args.profile_iters },
                    seed: 0,
                    precision,
                    tuning,
                };
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .with_context(|| format!("cannot start {t} threads"))?;
                let report = pool.install(|| bench::run(&mut model, &opts))?;
                if sweep && !args.json {
                    out(&line(&report))?;
                }
                reports.push(report);
            }
        }
    }
    if let Some(path) = &args.plot {
        plot(path, &reports, &names, &batches, &threads)?;
        eprintln!("wrote {}", path.display());
    }
    match (args.json, sweep) {
        (true, true) => out(&(serde_json::to_string_pretty(&reports)? + "\n")),
        (true, false) => out(&(serde_json::to_string_pretty(&reports[0])? + "\n")),
        (false, true) => Ok(()),
        (false, false) => out(&reports[0].render()),
    }
}

/// One line of a sweep.
fn line(r: &BenchReport) -> String {
    let mb = r
        .rss_peak
        .map_or("n/a".into(), |b| format!("{:.0} MB", b as f64 / 1e6));
    format!(
        "{:<12} {:?} batch {:>4}  threads {:>2}  {:>9.1} images/s  {:>9.2} ms/step  {:>6.1} GFLOP/s  peak {mb}\n",
        r.model, r.mode, r.batch, r.threads, r.images_per_s, r.median_s * 1e3, r.gflops
    )
}

fn plot(
    path: &std::path::Path,
    reports: &[BenchReport],
    names: &[String],
    batches: &[usize],
    threads: &[usize],
) -> Result<()> {
    let mode = format!("{:?}", reports[0].mode).to_lowercase();
    let mut series = vec![];
    let (title, x_label, y_label, log_x);
    if batches.len() > 1 {
        for name in names {
            for &t in threads {
                let points = reports
                    .iter()
                    .filter(|r| &r.model == name && r.threads == t)
                    .map(|r| (r.batch as f64, r.images_per_s))
                    .collect();
                series.push(Series {
                    label: format!("{name}, {t} threads"),
                    points,
                });
            }
        }
        (title, x_label, y_label, log_x) = (
            format!("strata {mode}: throughput against batch size"),
            "batch size",
            "images/s",
            true,
        );
    } else if threads.len() > 1 {
        for name in names {
            let points = reports
                .iter()
                .filter(|r| &r.model == name)
                .map(|r| (r.threads as f64, r.images_per_s))
                .collect();
            series.push(Series {
                label: format!("{name}, batch {}", batches[0]),
                points,
            });
        }
        (title, x_label, y_label, log_x) = (
            format!("strata {mode}: throughput against threads"),
            "threads",
            "images/s",
            false,
        );
    } else {
        let points = reports
            .iter()
            .map(|r| (r.gflop_per_step, r.median_s * 1e3))
            .collect();
        series.push(Series {
            label: format!("{} (batch {})", names.join(", "), batches[0]),
            points,
        });
        (title, x_label, y_label, log_x) = (
            format!("strata {mode}: time per step against the model's arithmetic"),
            "GFLOP per step",
            "ms per step",
            false,
        );
    }
    let chart = Chart {
        title: &title,
        x_label,
        y_label,
        log_x,
    };
    line_chart(path, &chart, &series)?;
    Ok(())
}
