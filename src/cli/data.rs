//! `strata data`: download datasets, print their statistics, preview augmentation, and
//! measure the loader.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use strata::data::download::{self, DownloadOptions};
use strata::data::folder::{ColorMode, FolderOptions};
use strata::data::preview::{self, PreviewOptions};
use strata::data::source::{self, Origin, Sources, Split};
use strata::data::transform::AUGMENT_SYNTAX;
use strata::data::{Augment, ImageDataset, Loader, LoaderConfig, Normalize};

/// Datasets: download, statistics, augmentation preview, loader benchmark.
#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Download a dataset into the cache (SHA-256 verified, resumable).
    Download(DownloadArgs),
    /// Print counts per class, image size and per-channel mean/std.
    Stats(StatsArgs),
    /// Write a PNG grid of images before and after augmentation.
    Preview(PreviewArgs),
    /// Measure loader throughput (images/s) with the given augmentation.
    Bench(BenchArgs),
}

/// Which dataset, and how to read it.
#[derive(Args, Debug)]
struct DatasetArgs {
    /// Dataset name (mnist, fashion-mnist, cifar10, cifar100, cifar100-coarse) or a
    /// directory. Looked up in: --data, the Debian package, the download cache, the
    /// embedded Fashion-MNIST subset.
    #[arg(default_value = "fashion-mnist")]
    dataset: String,
    /// Read the dataset from this directory (IDX files, CIFAR batches or an image
    /// folder root/<class>/*.png|jpg); overrides the lookup.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Split to read: train or test.
    #[arg(long, default_value = "train")]
    split: String,
    /// Image folders: resize every image to HxW (e.g. 32x32). Default: keep sizes.
    #[arg(long, value_name = "HxW")]
    resize: Option<String>,
    /// Image folders: force gray or rgb. Default: gray if every image is gray.
    #[arg(long, value_name = "gray|rgb")]
    color: Option<String>,
    /// Image folders: skip unreadable or wrongly sized files (and say how many).
    #[arg(long)]
    skip_bad: bool,
}

#[derive(Args, Debug)]
struct DownloadArgs {
    /// mnist, fashion-mnist or cifar10.
    name: String,
    /// Destination folder. Default: <cache>/<name> (cache: $STRATA_DATA_DIR,
    /// $XDG_CACHE_HOME/strata/datasets or ~/.cache/strata/datasets).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Fetch from this base URL instead of the canonical hosts (file names appended).
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Retries after a dropped connection, each resuming where it stopped.
    #[arg(long, default_value_t = 3)]
    retries: u32,
}

#[derive(Args, Debug)]
struct StatsArgs {
    #[command(flatten)]
    source: DatasetArgs,
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = AUGMENT_SYNTAX)]
struct PreviewArgs {
    #[command(flatten)]
    source: DatasetArgs,
    /// Augmentation to show (syntax below).
    #[arg(long, default_value = "flip,crop:4,jitter:0.3,erase")]
    augment: String,
    /// Number of images (rows), one per class first.
    #[arg(long, default_value_t = 8)]
    count: usize,
    /// Augmented versions per image (columns after the original).
    #[arg(long, default_value_t = 6)]
    variants: usize,
    /// Enlargement factor of each pixel.
    #[arg(long, default_value_t = 4)]
    scale: usize,
    /// Seed of the augmentation (as the loader's --seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output PNG file.
    #[arg(long, short, default_value = "preview.png")]
    out: PathBuf,
}

#[derive(Args, Debug)]
#[command(after_help = AUGMENT_SYNTAX)]
struct BenchArgs {
    #[command(flatten)]
    source: DatasetArgs,
    /// Augmentation (syntax below).
    #[arg(long, default_value = "flip,crop:4,jitter:0.4:0.4:0.4:0.1,erase")]
    augment: String,
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Loader worker threads (0: build batches on the main thread).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Batches built ahead of the consumer.
    #[arg(long, default_value_t = 4)]
    prefetch: usize,
    /// Epochs to time.
    #[arg(long, default_value_t = 2)]
    epochs: u64,
    /// Seed of shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs a `strata data` subcommand.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Download(a) => run_download(a),
        DataCommand::Stats(a) => run_stats(a),
        DataCommand::Preview(a) => run_preview(a),
        DataCommand::Bench(a) => run_bench(a),
    }
}

fn parse_size(s: &str) -> anyhow::Result<[usize; 2]> {
    let (h, w) = s
        .split_once('x')
        .with_context(|| format!("--resize `{s}`: expected HxW, e.g. 32x32"))?;
    let parse = |v: &str| v.parse::<usize>().ok().filter(|&n| n > 0);
    match (parse(h), parse(w)) {
        (Some(h), Some(w)) => Ok([h, w]),
        _ => anyhow::bail!("--resize `{s}`: expected HxW with positive integers"),
    }
}

/// Loads the dataset the arguments name, reporting where it came from on stderr.
fn load(args: &DatasetArgs) -> anyhow::Result<ImageDataset> {
    let split: Split = args.split.parse()?;
    let color = match args.color.as_deref() {
        None => ColorMode::Auto,
        Some("gray") => ColorMode::Gray,
        Some("rgb") => ColorMode::Rgb,
        Some(other) => anyhow::bail!("--color `{other}`: expected gray or rgb"),
    };
    let sources = Sources {
        folder: FolderOptions {
            color,
            resize: args.resize.as_deref().map(parse_size).transpose()?,
            skip_bad: args.skip_bad,
        },
        ..Sources::default()
    };
    let loaded = match &args.data {
        Some(dir) => {
            anyhow::ensure!(dir.is_dir(), "--data {}: not a directory", dir.display());
            sources.load_dir(dir, split, source::Known::parse(&args.dataset))?
        }
        None => sources.load(&args.dataset, split)?,
    };
    if loaded.origin == Origin::Embedded {
        eprintln!("{}", strata::data::embedded::NOTICE);
    } else {
        eprintln!("strata: {} split from {}", split, loaded.origin);
    }
    if !loaded.skipped.is_empty() {
        eprintln!(
            "strata: skipped {} bad image files (--skip-bad), e.g. {}: {}",
            loaded.skipped.len(),
            loaded.skipped[0].0.display(),
            loaded.skipped[0].1
        );
    }
    Ok(loaded.dataset)
}

fn run_download(a: DownloadArgs) -> anyhow::Result<()> {
    let spec = download::find(&a.name).with_context(|| {
        let names: Vec<&str> = download::CATALOG.iter().map(|d| d.name).collect();
        format!(
            "cannot download `{}`: known datasets are {}",
            a.name,
            names.join(", ")
        )
    })?;
    let dir = a
        .dir
        .unwrap_or_else(|| source::default_cache_dir().join(spec.name));
    let options = DownloadOptions {
        mirror: a.mirror,
        retries: a.retries,
        ..DownloadOptions::default()
    };
    download::download_dataset(spec, &dir, &options)?;
    println!("{}", dir.display());
    Ok(())
}

fn run_stats(a: StatsArgs) -> anyhow::Result<()> {
    let d = load(&a.source)?;
    let norm = Normalize::from_dataset(&d);
    let counts = d.class_counts();
    if a.json {
        let classes: Vec<_> = d
            .class_names()
            .iter()
            .zip(&counts)
            .map(|(n, c)| serde_json::json!({"name": n, "count": c}))
            .collect();
        let v = serde_json::json!({
            "images": d.len(),
            "shape": d.shape(),
            "classes": classes,
            "mean": norm.mean,
            "std": norm.std,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let [c, h, w] = d.shape();
    println!("images       {}", d.len());
    println!("image size   {c}×{h}×{w} (C×H×W)");
    println!("classes      {}", d.num_classes());
    for (i, (name, count)) in d.class_names().iter().zip(&counts).enumerate() {
        println!("  {i:>3} {name:<24} {count:>7}");
    }
    let fmt = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "mean         [{}]  (per channel, pixels scaled to [0, 1])",
        fmt(&norm.mean)
    );
    println!("std          [{}]", fmt(&norm.std));
    Ok(())
}

/// `count` indices, one of each class in turn, so every class shows.
fn spread_indices(d: &ImageDataset, count: usize) -> Vec<usize> {
    let by_class = d.indices_by_class();
    let mut out = Vec::new();
    for round in 0.. {
        let before = out.len();
        for members in &by_class {
            if out.len() < count {
                if let Some(&i) = members.get(round) {
                    out.push(i);
                }
            }
        }
        if out.len() >= count || out.len() == before {
            break;
        }
    }
    out
}

fn run_preview(a: PreviewArgs) -> anyhow::Result<()> {
    let augment = Augment::parse(&a.augment)?;
    anyhow::ensure!(a.count >= 1 && a.count <= 256, "--count must be in 1..=256");
    anyhow::ensure!(a.variants <= 64, "--variants must be at most 64");
    let d = load(&a.source)?;
    let indices = spread_indices(&d, a.count);
    let options = PreviewOptions {
        variants: a.variants,
        seed: a.seed,
        scale: a.scale,
    };
    let grid = preview::grid(&d, &augment, &indices, &options)?;
    preview::write_png(&grid, &a.out)?;
    eprintln!(
        "strata: {} images × (original + {} augmented with `{augment}`), {}×{} px",
        indices.len(),
        a.variants,
        grid.width(),
        grid.height()
    );
    println!("{}", a.out.display());
    Ok(())
}

fn run_bench(a: BenchArgs) -> anyhow::Result<()> {
    let d = Arc::new(load(&a.source)?);
    let config = LoaderConfig {
        batch_size: a.batch_size,
        shuffle: true,
        drop_last: false,
        seed: a.seed,
        workers: a.workers,
        prefetch: a.prefetch,
        augment: Augment::parse(&a.augment)?,
        normalize: Normalize::from_dataset(&d),
    };
    let loader = Loader::new(Arc::clone(&d), config)?;
    let mut images = 0usize;
    let mut checksum = 0f64;
    let start = Instant::now();
    for epoch in 0..a.epochs {
        for batch in loader.epoch(epoch) {
            images += batch.y.len();
            checksum += batch.x.data()[0] as f64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let [c, h, w] = loader.output_shape();
    println!(
        "{images} images ({c}×{h}×{w}) in {secs:.3} s: {:.0} images/s  [workers {}, batch {}, augment `{}`] (checksum {checksum:.3})",
        images as f64 / secs,
        a.workers,
        a.batch_size,
        loader.config().augment
    );
    Ok(())
}
