//! The transfer experiment of docs/transfer.md: does starting from a network trained on
//! other classes beat training from scratch when data is scarce?
//!
//! ```text
//! cargo run --release --example transfer_experiment -- [--data fashion-mnist] [--out runs/transfer]
//!     [--sizes 10,50,500] [--seeds 0,1,2] [--steps 300] [--source-epochs 8]
//! ```
//!
//! 1. Pre-train `fmnist-cnn` on classes 0–4 (all their images, the default recipe for
//!    `--source-epochs`).
//! 2. For each size (images per class of classes 5–9) and seed: scratch (a new network,
//!    the default recipe's rate 0.1), head only, every layer, head-then-full (the
//!    fine-tunes at `strata finetune`'s rate 0.01), each for about `--steps` steps of
//!    batch 32; test accuracy on the 5,000 test images of classes 5–9.
//! 3. A markdown table, mean ± standard deviation over the seeds, and results.csv.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use strata::train::pretrained::{Finetune, FinetuneMode};
use strata::train::{self, Quiet, RunPaths, TrainConfig};
use strata::transfer::{self, FinetuneOptions, Mode};

struct Args {
    data: String,
    out: PathBuf,
    sizes: Vec<usize>,
    seeds: Vec<u64>,
    steps: usize,
    source_epochs: u64,
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("`{x}` in `{s}`"))
        })
        .collect()
}

fn parse() -> Result<Args> {
    let mut a = Args {
        data: "fashion-mnist".into(),
        out: "runs/transfer".into(),
        sizes: vec![10, 50, 500],
        seeds: vec![0, 1, 2],
        steps: 300,
        source_epochs: 8,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [k, v] = pair else {
            bail!("flags take a value: {pair:?}")
        };
        match k.as_str() {
            "--data" => a.data = v.clone(),
            "--out" => a.out = v.into(),
            "--sizes" => a.sizes = list(v)?,
            "--seeds" => a.seeds = list(v)?,
            "--steps" => a.steps = v.parse()?,
            "--source-epochs" => a.source_epochs = v.parse()?,
            _ => bail!("unknown flag {k}"),
        }
    }
    Ok(a)
}

/// A run on classes 5–9 with `per_class` images each, about `steps` steps long.
fn target(a: &Args, per_class: usize, seed: u64, lr: f32) -> TrainConfig {
    let batch = 32;
    let per_epoch = (5 * per_class).div_ceil(batch);
    TrainConfig {
        data: a.data.clone(),
        classes: Some(vec![5, 6, 7, 8, 9]),
        per_class: Some(per_class),
        val_fraction: 0.0,
        batch_size: batch,
        epochs: a.steps.div_ceil(per_epoch).max(1) as u64,
        lr,
        seed,
        log_every: 1_000_000,
        ..TrainConfig::default()
    }
}

fn main() -> Result<()> {
    let a = parse()?;
    let t0 = Instant::now();
    let source = a.out.join("source-0-4");
    if !source.join("best.safetensors").is_file() {
        let cfg = TrainConfig {
            data: a.data.clone(),
            classes: Some(vec![0, 1, 2, 3, 4]),
            epochs: a.source_epochs,
            ..TrainConfig::default()
        };
        let o = train::run(&cfg, &RunPaths::new(&source), false, &mut Quiet)?;
        eprintln!(
            "source: classes 0–4, test {:.2}% ({:.0} s)",
            100.0 * o.test.map_or(0.0, |t| t.1.accuracy()),
            o.time_s
        );
    }
    let methods = ["scratch", "head", "full", "head-then-full"];
    let mut csv = String::from("per_class,seed,method,test_acc,seconds\n");
    let mut table: Vec<(usize, &str, Vec<f64>)> = vec![];
    for &n in &a.sizes {
        for m in methods {
            let mut accs = vec![];
            for &seed in &a.seeds {
                let dir = a.out.join(format!("{n}-per-class/{m}-seed{seed}"));
                let t = Instant::now();
                let acc = run_one(&a, &source, &dir, n, seed, m)?;
                let s = t.elapsed().as_secs_f64();
                eprintln!(
                    "{n:>4}/class {m:<15} seed {seed}: {:.2}% ({s:.0} s)",
                    100.0 * acc
                );
                csv.push_str(&format!("{n},{seed},{m},{acc:.4},{s:.1}\n"));
                accs.push(acc);
            }
            table.push((n, m, accs));
        }
    }
    std::fs::write(a.out.join("results.csv"), &csv)?;
    println!("| images per class | {} |", methods.join(" | "));
    println!("|---|{}", "---|".repeat(methods.len()));
    for &n in &a.sizes {
        let cells: Vec<String> = table
            .iter()
            .filter(|r| r.0 == n)
            .map(|(_, _, v)| {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let var =
                    v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
                format!("{:.2} ± {:.2}", 100.0 * mean, 100.0 * var.sqrt())
            })
            .collect();
        println!("| {n} | {} |", cells.join(" | "));
    }
    eprintln!(
        "{} runs in {:.0} s; {}",
        table.len() * a.seeds.len(),
        t0.elapsed().as_secs_f64(),
        a.out.join("results.csv").display()
    );
    Ok(())
}

fn run_one(a: &Args, source: &Path, dir: &Path, n: usize, seed: u64, m: &str) -> Result<f64> {
    let acc = |o: train::Outcome| o.test.map_or(0.0, |t| t.1.accuracy());
    Ok(match m {
        "scratch" => acc(train::run(
            &target(a, n, seed, 0.1),
            &RunPaths::new(dir),
            false,
            &mut Quiet,
        )?),
        "head" | "full" => {
            let mut cfg = target(a, n, seed, 0.01);
            let mode = if m == "head" {
                FinetuneMode::Head
            } else {
                FinetuneMode::Full
            };
            cfg.finetune = Some(Finetune::new(source.display().to_string(), mode));
            acc(train::run(&cfg, &RunPaths::new(dir), false, &mut Quiet)?)
        }
        _ => {
            // A fifth of the steps for the head, the rest for every layer.
            let cfg = target(a, n, seed, 0.01);
            let head_epochs = (cfg.epochs / 5).max(1);
            let mut train = cfg.clone();
            train.epochs = (cfg.epochs - head_epochs).max(1);
            let r = transfer::finetune(
                &FinetuneOptions {
                    train,
                    from: source.display().to_string(),
                    model: None,
                    normalize: None,
                    mode: Mode::HeadThenFull,
                    backbone_lr_mult: 1.0,
                    head_epochs,
                    out: dir.to_path_buf(),
                },
                &mut Quiet,
            )?;
            r.test_acc().unwrap_or(0.0)
        }
    })
}
