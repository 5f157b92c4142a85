//! `strata train`, `strata eval`, `strata predict`.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use strata::data::{self, Augment, Loader, LoaderConfig, Split};
use strata::optim::{OptimizerConfig, Schedule};
use strata::train::{self, IterProgress, Observer, Record, RunPaths, TrainConfig};

/// `strata train` flags: where the run lives, and what it trains ([`RunFlags`]).
#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// Continue the run in this folder from its last checkpoint (exactly, for the same
    /// --threads).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Run folder. Default: runs/<model>-<data>[-N], the first free one.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Record per-layer activation, gradient and update statistics every N steps into
    /// the run folder (watch.jsonl; `strata diagnose` reads them). Default: off.
    #[arg(long, value_name = "N")]
    pub watch: Option<u64>,
    #[command(flatten)]
    pub run: RunFlags,
}

/// What a run trains — model, data, optimizer, schedule, augmentation: shared by
/// `train`, `check` and `lr-find`. Each flag overrides the config file, which overrides
/// the defaults.
#[derive(Args, Clone, Debug, Default)]
pub struct RunFlags {
    /// A TOML file with any TrainConfig field (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Model name (`strata models`). Default: fmnist-cnn.
    #[arg(long)]
    pub model: Option<String>,
    /// Dataset: fashion-mnist, mnist, cifar10, cifar100, or a folder (IDX files, CIFAR
    /// batches, or root/<class>/*.png|jpg). Default: fashion-mnist (the Debian package
    /// if installed, else the download cache, else the embedded subset).
    #[arg(long, value_name = "NAME|DIR")]
    pub data: Option<String>,
    /// Epochs. Default: 15.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Images per batch. Default: 128.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate (the peak of one-cycle). Default: 0.1.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Optimizer: sgd, nesterov, adamw. Default: nesterov (SGD, momentum 0.9, Nesterov).
    #[arg(long, value_name = "NAME")]
    pub optimizer: Option<String>,
    /// Momentum of SGD. Default: 0.9.
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Weight decay (L2 for SGD, decoupled for AdamW). Default: 5e-4 (SGD), 0.01 (AdamW).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Schedule: constant, step:EVERY_STEPS:GAMMA, cosine, one-cycle. Default: one-cycle.
    #[arg(long, value_name = "KIND")]
    pub schedule: Option<String>,
    /// Linear warm-up, in epochs. Default: 0.
    #[arg(long, value_name = "EPOCHS")]
    pub warmup_epochs: Option<f32>,
    /// Label smoothing of the loss, in [0, 1). Default: 0.
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Products of the convolutions: f32, or bf16 for mixed precision (bf16 products,
    /// f32 sums, f32 master weights; needs AVX-512 BF16, f32 without it). Default: f32.
    #[arg(long, value_name = "f32|bf16")]
    pub precision: Option<String>,
    /// How the convolutions pick their kernels: `auto` (the default: the static rules in
    /// f32, so runs are identical on every CPU; timed under bf16, so that a layer where
    /// bf16 does not pay runs f32), `static`, or `timed` (each kernel that applies is
    /// timed once per layer geometry and the fastest kept, as cuDNN's benchmark mode;
    /// the choices go to the run's plans.json, which a resume reads back, and to a cache
    /// keyed by CPU model: $STRATA_PLAN_CACHE or ~/.cache/strata/conv-plans.json).
    #[arg(long, value_name = "auto|static|timed")]
    pub conv_tuning: Option<String>,
    /// Test-time augmentation of the final test: `flip` classifies each test image and
    /// its mirror image and averages the two softmax outputs (timm's --tta, fastai's
    /// tta); printed and recorded (metrics.json `test_tta`) beside the plain accuracy.
    /// Training is unchanged. Default: none.
    #[arg(long, value_name = "none|flip", value_parser = ["none", "flip", "hflip"])]
    pub tta: Option<String>,
    /// Clip the global gradient norm to this value. Default: off.
    #[arg(long, value_name = "NORM")]
    pub clip_grad: Option<f32>,
    /// Augmentations, comma-separated (see `strata data --help`), `none`, or `auto`.
    /// Default: auto = flip,crop:2, and crop:2 alone for handwritten digits (mnist).
    #[arg(long, value_name = "LIST")]
    pub augment: Option<String>,
    /// Fraction of the training split held out for validation. Default: 0.1.
    #[arg(long, value_name = "FRACTION")]
    pub val_fraction: Option<f64>,
    /// Use only N training images per class. Default: all.
    #[arg(long, value_name = "N")]
    pub per_class: Option<usize>,
    /// Use only these classes (numbers, as `strata data` lists them), relabelled from 0
    /// in the order given: `5-9`, `0,2,4`, `3,1`. Default: all.
    #[arg(long, value_name = "LIST")]
    pub classes: Option<String>,
    /// Stop after N epochs without improvement of the monitored number. Default: off.
    #[arg(long, value_name = "N")]
    pub early_stop: Option<u64>,
    /// What decides best.safetensors and early stopping: val_acc or val_loss.
    /// Default: val_acc.
    #[arg(long, value_name = "METRIC")]
    pub monitor: Option<String>,
    /// Seed of everything random. Default: 0.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Loader worker threads. Default: 2.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Iterations between history lines. Default: 50.
    #[arg(long, value_name = "N")]
    pub log_every: Option<u64>,
    #[command(flatten)]
    pub arch: super::models::ArchFlags,
}

/// `5-9`, `0,2,4` or a mix (`0-2,7`) as class numbers, in the order given.
pub fn parse_classes(s: &str) -> Result<Vec<u32>> {
    let mut out = vec![];
    for part in s.split(',').map(str::trim) {
        let num = |t: &str| -> Result<u32> {
            t.trim().parse().with_context(|| {
                format!("--classes `{s}`: `{t}` is not a class number (use e.g. 5-9 or 0,2,4)")
            })
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    bail!("--classes `{s}`: the range {a}-{b} runs backwards");
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

fn parse_schedule(s: &str) -> Result<Schedule> {
    let parts: Vec<&str> = s.split(':').collect();
    Ok(match parts[..] {
        ["constant"] => Schedule::Constant,
        ["cosine"] => Schedule::Cosine { min_lr: 0.0 },
        ["one-cycle"] | ["one_cycle"] | ["onecycle"] => Schedule::OneCycle {
            pct_start: 0.3,
            div: 25.0,
            final_div: 1e4,
        },
        ["step", every, gamma] => Schedule::Step {
            every: every
                .parse()
                .context("step:EVERY:GAMMA: EVERY must be a whole number of steps")?,
            gamma: gamma
                .parse()
                .context("step:EVERY:GAMMA: GAMMA must be a number")?,
        },
        _ => bail!("--schedule `{s}`: use constant, cosine, one-cycle or step:EVERY_STEPS:GAMMA"),
    })
}

impl RunFlags {
    /// Defaults ← config file ← flags.
    pub fn resolve(&self) -> Result<TrainConfig> {
        let c = match &self.config {
            Some(p) => TrainConfig::from_toml(p)?,
            None => TrainConfig::default(),
        };
        self.resolve_onto(c)
    }

    /// `c` with the flags that were given applied.
    pub fn resolve_onto(&self, mut c: TrainConfig) -> Result<TrainConfig> {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        set!(
            model,
            data,
            epochs,
            batch_size,
            lr,
            label_smoothing,
            warmup_epochs,
            val_fraction,
            seed,
            workers,
            log_every
        );
        if let Some(p) = &self.precision {
            c.precision = p.parse()?;
        }
        if let Some(t) = &self.conv_tuning {
            c.conv_tuning = t.parse()?;
        }
        if let Some(t) = &self.tta {
            c.tta = t.parse()?;
        }
        if self.clip_grad.is_some() {
            c.clip_grad = self.clip_grad;
        }
        if self.per_class.is_some() {
            c.per_class = self.per_class;
        }
        if let Some(s) = &self.classes {
            c.classes = Some(parse_classes(s)?);
        }
        if self.early_stop.is_some() {
            c.early_stop = self.early_stop;
        }
        let a = &self.arch;
        for (dst, src) in [
            (&mut c.norm, &a.norm),
            (&mut c.activation, &a.activation),
            (&mut c.init, &a.init),
        ] {
            if src.is_some() {
                *dst = src.clone();
            }
        }
        if a.width.is_some() {
            c.width = a.width;
        }
        if a.dropout.is_some() {
            c.dropout = a.dropout;
        }
        if let Some(a) = &self.augment {
            c.augment = if a == "none" {
                String::new()
            } else {
                a.clone()
            };
        }
        if let Some(s) = &self.schedule {
            c.schedule = parse_schedule(s)?;
        }
        if let Some(m) = &self.monitor {
            c.monitor = match m.as_str() {
                "val_acc" | "val-acc" => train::Monitor::ValAcc,
                "val_loss" | "val-loss" => train::Monitor::ValLoss,
                _ => bail!("--monitor `{m}`: use val_acc or val_loss"),
            };
        }
        if let Some(o) = &self.optimizer {
            c.optimizer = match o.as_str() {
                "sgd" => OptimizerConfig::Sgd {
                    momentum: 0.9,
                    nesterov: false,
                    weight_decay: 5e-4,
                },
                "nesterov" => OptimizerConfig::Sgd {
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 5e-4,
                },
                "adamw" => OptimizerConfig::AdamW {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.01,
                },
                _ => bail!("--optimizer `{o}`: use sgd, nesterov or adamw"),
            };
        }
        match &mut c.optimizer {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                if let Some(m) = self.momentum {
                    *momentum = m;
                }
                if let Some(w) = self.weight_decay {
                    *weight_decay = w;
                }
            }
            OptimizerConfig::AdamW { weight_decay, .. } => {
                if let Some(w) = self.weight_decay {
                    *weight_decay = w;
                }
                if self.momentum.is_some() {
                    bail!(
                        "--momentum applies to SGD; AdamW has beta1/beta2 (set them in --config)"
                    );
                }
            }
        }
        c.validate()?;
        Ok(c)
    }
}

/// A progress bar on a terminal, plain lines otherwise; stops on Ctrl-C.
/// The progress bar (or lines) of a training run; stops on Ctrl-C.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    log_every: u64,
    stop: Arc<AtomicBool>,
}

impl Progress {
    /// A progress display printing a line every `log_every` iterations off a terminal.
    pub fn new(log_every: u64, stop: Arc<AtomicBool>) -> Self {
        Progress {
            bar: None,
            log_every,
            stop,
        }
    }
}

/// The first Ctrl-C sets the flag (training stops at the next step, the last
/// checkpoint intact); a second one ends the process at once.
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to quit at once)");
    });
    if let Err(e) = installed {
        eprintln!("warning: cannot catch Ctrl-C ({e}); it will end the run at once");
    }
    stop
}

impl Observer for Progress {
    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn iteration(&mut self, p: &IterProgress) {
        let msg = format!(
            "loss {:.4} acc {:.2}% lr {:.2e} {:.0} img/s",
            p.loss,
            100.0 * p.acc,
            p.lr,
            p.images_per_s
        );
        if std::io::stderr().is_terminal() {
            let bar = self.bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::new(p.iterations);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} {msg} (ETA {eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            });
            bar.set_prefix(format!("epoch {}/{}", p.epoch, p.epochs));
            bar.set_position(p.iteration);
            bar.set_message(msg);
        } else if p.iteration.is_multiple_of(self.log_every) || p.iteration == p.iterations {
            eprintln!(
                "epoch {}/{} iter {}/{}: {msg}",
                p.epoch, p.epochs, p.iteration, p.iterations
            );
        }
    }

    fn epoch(&mut self, r: &Record) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let val = match (r.val_loss, r.val_acc) {
            (Some(l), Some(a)) => format!(", val loss {l:.4} acc {:.2}%", 100.0 * a),
            _ => String::new(),
        };
        eprintln!(
            "epoch {}: train loss {:.4} acc {:.2}%{val}, {:.0} img/s, {:.0}s",
            r.epoch,
            r.train_loss,
            100.0 * r.train_acc,
            r.images_per_s,
            r.time_s
        );
    }

    fn note(&mut self, msg: &str) {
        eprintln!("{msg}");
    }
}

fn free_run_dir(cfg: &TrainConfig) -> PathBuf {
    let data = Path::new(&cfg.data)
        .file_name()
        .map_or("data".into(), |s| s.to_string_lossy().into_owned());
    let base = PathBuf::from("runs").join(format!("{}-{}", cfg.model, data));
    if !base.exists() {
        return base;
    }
    (2..)
        .map(|i| PathBuf::from(format!("{}-{i}", base.display())))
        .find(|p| !p.exists())
        .unwrap_or(base)
}

/// `strata train`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let (cfg, paths, resume) = match &args.resume {
        Some(dir) => {
            let paths = RunPaths::new(dir);
            let mut cfg = TrainConfig::from_toml(&paths.config()).with_context(|| {
                format!(
                    "{} is not a run folder (no readable config.toml)",
                    dir.display()
                )
            })?;
            // The run goes on as configured: only --epochs (a longer or shorter run) and
            // --workers (loader threads; the batches are the same) may change.
            let asked = args.run.resolve_onto(cfg.clone())?;
            let conflicts = cfg.differences(&asked, train::RESUME_MAY_CHANGE);
            if !conflicts.is_empty() {
                bail!(
                    "--resume continues {} as its config.toml says; these flags differ from it: {}. \
                     Leave them out (only --epochs and --workers may change), or start a new run \
                     with --run-dir",
                    dir.display(),
                    conflicts.join(", ")
                );
            }
            cfg.epochs = asked.epochs;
            cfg.workers = asked.workers;
            if args.watch.is_some() {
                cfg.watch = args.watch;
            }
            (cfg, paths, true)
        }
        None => {
            let mut cfg = args.run.resolve()?;
            if args.watch.is_some() {
                cfg.watch = args.watch;
            }
            let dir = args.run_dir.clone().unwrap_or_else(|| free_run_dir(&cfg));
            if RunPaths::new(&dir).last().exists() {
                bail!(
                    "{} already holds a run; use --resume {} to continue it, or another --run-dir",
                    dir.display(),
                    dir.display()
                );
            }
            (cfg, RunPaths::new(&dir), false)
        }
    };
    eprintln!("run folder: {}", paths.dir.display());
    super::warn_without_bf16(cfg.precision);
    let mut progress = Progress::new(cfg.log_every, stop_on_ctrl_c());
    let outcome = train::run(&cfg, &paths, resume, &mut progress)?;
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    if outcome.interrupted {
        let saved = if paths.last().exists() {
            format!(
                "the last checkpoint (epoch {}) is intact; continue with: strata train --resume {}",
                outcome.epochs,
                paths.dir.display()
            )
        } else {
            "no epoch had finished, so nothing was saved".to_string()
        };
        eprintln!("stopped during epoch {}: {saved}", outcome.epochs + 1);
        // 128 + SIGINT, as a shell reports a process ended by Ctrl-C.
        std::process::exit(130);
    }
    let mut text = format!(
        "\n{} on {}: {} epochs in {:.0}s{}\n",
        cfg.model,
        cfg.data,
        outcome.epochs,
        outcome.time_s,
        if outcome.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );
    if let Some(b) = outcome.best {
        text.push_str(&format!("best validation {:?}: {:.4}\n", cfg.monitor, b));
    }
    if let Some((loss, conf)) = &outcome.test {
        text.push_str(&format!(
            "test accuracy {:.2}% (loss {loss:.4}, {} images)\n\n",
            100.0 * conf.accuracy(),
            conf.total()
        ));
        if let Some((loss, tc)) = &outcome.test_tta {
            text.push_str(&format!(
                "test accuracy with --tta {}: {:.2}% (loss {loss:.4}; {:+.2} points)\n\n",
                cfg.tta.name(),
                100.0 * tc.accuracy(),
                100.0 * (tc.accuracy() - conf.accuracy())
            ));
        }
        text.push_str(&conf.render(&outcome.class_names));
    }
    text.push_str(&format!(
        "\nhistory, checkpoints and metrics: {}\n",
        paths.dir.display()
    ));
    text.push_str(&super::report::leave(&paths.dir));
    super::models::out(&text)
}

/// `strata eval` arguments.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run folder (uses its best.safetensors) or a checkpoint file.
    pub checkpoint: PathBuf,
    /// Dataset to evaluate on. Default: the one the model was trained on.
    #[arg(long, value_name = "NAME|DIR")]
    pub data: Option<String>,
    /// Split: test or train. Default: test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Images per batch. Default: 256.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// The model of a bare state dict (no strata header), e.g. a torchvision state dict
    /// saved as safetensors: resnet18, vgg11_bn (torchvision's spelling accepted).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Normalization instead of the recorded one: imagenet, or MEAN,.../STD,... on a
    /// 0–1 scale. Default: the checkpoint's; ImageNet's for a bare RGB state dict.
    #[arg(long, value_name = "SPEC")]
    pub normalize: Option<String>,
    /// Test-time augmentation: `flip` averages the softmax of each image and of its
    /// mirror image (twice the forward passes). Default: none.
    #[arg(
        long,
        value_name = "none|flip",
        default_value = "none",
        value_parser = ["none", "flip", "hflip"]
    )]
    pub tta: String,
}

fn load_as(model: &Option<String>, normalize: &Option<String>) -> train::LoadAs {
    train::LoadAs {
        model: model.clone(),
        normalize: normalize.clone(),
    }
}

/// No augmentation, or a resize when the data's images are not the model's size.
fn eval_resize(data: [usize; 3], model: [usize; 3]) -> Result<Augment> {
    if data[0] != model[0] {
        bail!(
            "the data has {}-channel images and the model takes {}-channel ones",
            data[0],
            model[0]
        );
    }
    if data[1..] == model[1..] {
        return Ok(Augment::none());
    }
    eprintln!(
        "note: the images are {}×{}, the model takes {}×{}: resized",
        data[1], data[2], model[1], model[2]
    );
    Ok(Augment::parse(&format!(
        "resize:{}x{}",
        model[1], model[2]
    ))?)
}

/// `strata eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let mut t = train::load_trained_as(&args.checkpoint, &load_as(&args.model, &args.normalize))?;
    for w in &t.warnings {
        eprintln!("warning: {w}");
    }
    let name = match (&args.data, &t.data) {
        (Some(d), _) | (None, Some(d)) => d.clone(),
        (None, None) => {
            bail!("the checkpoint does not say which data it was trained on; pass --data")
        }
    };
    let split: Split = args.split.parse()?;
    let mut ds = data::load(&name, split)?;
    // A model of some of the dataset's classes is evaluated on those.
    if let (Some(c), true) = (&t.classes, t.data.as_deref() == Some(name.as_str())) {
        ds = ds.classes_subset(c)?;
    }
    if ds.num_classes() != t.model.config.classes {
        bail!(
            "{name} has {} classes but the model predicts {}",
            ds.num_classes(),
            t.model.config.classes
        );
    }
    let ds_shape = ds.shape();
    let loader = Loader::new(
        Arc::new(ds),
        LoaderConfig {
            batch_size: args.batch_size,
            shuffle: false,
            augment: eval_resize(ds_shape, t.model.input_shape())?,
            normalize: t.normalize.clone(),
            ..LoaderConfig::default()
        },
    )?;
    let classes = t.model.config.classes;
    let tta: train::tta::Tta = args.tta.parse()?;
    let (loss, conf) = train::evaluate_tta(&mut t.model, &loader, classes, tta)?;
    super::models::out(&format!(
        "{} on {name} ({split}{}): accuracy {:.2}%, loss {loss:.4}, {} images\n\n{}",
        args.checkpoint.display(),
        if tta.is_none() {
            String::new()
        } else {
            format!(", --tta {}", tta.name())
        },
        100.0 * conf.accuracy(),
        conf.total(),
        conf.render(&t.class_names)
    ))
}

/// `strata predict` arguments.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run folder (its best.safetensors) or a checkpoint file.
    pub checkpoint: PathBuf,
    /// PNG or JPEG images, any size: converted to the model's channels and input size.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// Print JSON: per image the top classes, the raw logits and the probabilities.
    #[arg(long)]
    pub json: bool,
    /// How images reach the model's input size: center-crop (torchvision's evaluation
    /// transform: the short side resized, the center cropped) or stretch (the whole
    /// image resized).
    #[arg(long, default_value = "center-crop", value_name = "HOW")]
    pub resize: String,
    /// The model of a bare state dict (no strata header), e.g. a torchvision state dict
    /// saved as safetensors: resnet18, vgg11_bn (torchvision's spelling accepted).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Normalization instead of the recorded one: imagenet, or MEAN,.../STD,... on a
    /// 0–1 scale. Default: the checkpoint's; ImageNet's for a bare RGB state dict.
    #[arg(long, value_name = "SPEC")]
    pub normalize: Option<String>,
}

/// `strata predict`.
pub fn predict(args: &PredictArgs) -> Result<()> {
    let mut p = strata::predict::Predictor::load_as(
        &args.checkpoint,
        &load_as(&args.model, &args.normalize),
    )?;
    p.resize = args.resize.parse()?;
    for w in &p.trained.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        let all = args
            .images
            .iter()
            .map(|path| p.explain_file(path, args.top_k))
            .collect::<strata::Result<Vec<_>>>()?;
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let mut text = String::new();
    for path in &args.images {
        text.push_str(&format!("{}\n", path.display()));
        for g in p.predict_file(path, args.top_k)? {
            text.push_str(&format!("  {:>6.2}%  {}\n", 100.0 * g.probability, g.name));
        }
    }
    super::models::out(&text)
}

#[cfg(test)]
mod tests {
    use super::parse_classes;

    #[test]
    fn class_lists_parse_ranges_and_lists_in_order() {
        assert_eq!(parse_classes("5-9").unwrap(), vec![5, 6, 7, 8, 9]);
        assert_eq!(parse_classes("3,1, 0-1").unwrap(), vec![3, 1, 0, 1]);
        assert!(parse_classes("9-5").is_err());
        assert!(parse_classes("a").is_err());
        assert!(parse_classes("").is_err());
    }
}
