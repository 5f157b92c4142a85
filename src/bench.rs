//! Speed of a model: images per second of a training step or of inference, the
//! arithmetic rate, peak memory, and a per-layer time table (what `strata bench` prints).
//!
//! A training step is what the trainer does per batch: zero the gradients, forward in
//! train mode, softmax cross-entropy, backward, SGD (momentum 0.9) update. Inference is a
//! forward pass in eval mode. The input is a fixed random batch, so the data pipeline is
//! not measured here (`strata data bench` measures it).
//!
//! Timing: `warmup` untimed steps (buffers reach their steady size, caches warm), then
//! `iters` steps timed one by one; the figure quoted is the median, which a stray
//! interruption does not move. The per-layer table comes from a separate run of
//! `profile_iters` steps with [`crate::profile`] on, so the timed steps carry no
//! profiling cost.
//!
//! Arithmetic: a forward pass costs `2 · MACs` floating-point operations (MACs of the
//! convolutions and linear layers, as in [`crate::summary`]); a training step is counted
//! as three passes' worth (forward, input gradient, weight gradient), the usual
//! convention, although the first layer's input gradient is not needed.

use crate::error::{Error, Result};
use crate::kernels::bf16::Precision;
use crate::kernels::conv::Tuning;
use crate::loss::CrossEntropy;
use crate::models::Model;
use crate::nn::{zero_grad, Layer, Mode};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::profile;
use crate::tensor::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::time::Instant;

/// What to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchMode {
    /// Forward + loss + backward + SGD update.
    Train,
    /// Forward in eval mode.
    Infer,
}

impl std::str::FromStr for BenchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(BenchMode::Train),
            "infer" | "inference" | "eval" => Ok(BenchMode::Infer),
            _ => Err(Error::config(
                "bench",
                "mode",
                format!("`{s}` is not a mode: use train or infer"),
            )),
        }
    }
}

/// How long to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Images per step.
    pub batch: usize,
    /// Train or infer.
    pub mode: BenchMode,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub iters: usize,
    /// Steps of the profiled run that makes the per-layer table (0: no table).
    pub profile_iters: usize,
    /// Seed of the random input.
    pub seed: u64,
    /// Products of the convolutions (bf16: mixed precision, see [`crate::kernels::bf16`]).
    pub precision: Precision,
    /// How the convolutions pick their kernels (static rules, or timed once per layer
    /// during the warm-up).
    pub tuning: Tuning,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            batch: 128,
            mode: BenchMode::Train,
            warmup: 3,
            iters: 10,
            profile_iters: 3,
            seed: 0,
            precision: Precision::F32,
            tuning: Tuning::Static,
        }
    }
}

/// One leaf layer's share of a step.
#[derive(Clone, Debug, Serialize)]
pub struct LayerTime {
    /// State-dict path (`layer1.0.conv1`; `layer1.0.add` for a residual sum).
    pub name: String,
    /// Layer type.
    pub kind: String,
    /// Forward milliseconds per step.
    pub forward_ms: f64,
    /// Backward milliseconds per step (0 in inference).
    pub backward_ms: f64,
    /// Multiply-adds of the layer for the whole batch (forward).
    pub macs: u64,
    /// The kernels a convolution runs ([`crate::kernels::conv::ConvPlan::describe`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl LayerTime {
    /// GFLOP/s of the layer's forward and backward together (0 for layers without MACs).
    pub fn gflops(&self, mode: BenchMode) -> f64 {
        let passes = match mode {
            BenchMode::Train => 3.0,
            BenchMode::Infer => 1.0,
        };
        let ms = self.forward_ms + self.backward_ms;
        if self.macs == 0 || ms <= 0.0 {
            0.0
        } else {
            2.0 * passes * self.macs as f64 / (ms * 1e6)
        }
    }
}

/// The measurement.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Model name.
    pub model: String,
    /// Train or infer.
    pub mode: BenchMode,
    /// Images per step.
    pub batch: usize,
    /// Threads of the math pool.
    pub threads: usize,
    /// Products of the convolutions.
    pub precision: Precision,
    /// Timed steps.
    pub iters: usize,
    /// Median seconds per step.
    pub median_s: f64,
    /// Fastest step, seconds.
    pub min_s: f64,
    /// Slowest step, seconds.
    pub max_s: f64,
    /// `batch / median_s`.
    pub images_per_s: f64,
    /// Floating-point operations of one step (see the module notes), in GFLOP.
    pub gflop_per_step: f64,
    /// `gflop_per_step / median_s`.
    pub gflops: f64,
    /// Resident memory before the measurement (the model built), bytes (Linux).
    pub rss_start: Option<u64>,
    /// Peak resident memory of the process during the measurement, bytes (Linux; the
    /// process's peak so far where the peak cannot be reset).
    pub rss_peak: Option<u64>,
    /// Per-layer forward/backward times, forward order.
    pub layers: Vec<LayerTime>,
    /// Milliseconds per step outside the layers: loss, zeroing gradients, optimizer.
    pub other_ms: f64,
}

/// A resident-memory figure of this process from `/proc/self/status` (`VmRSS`, `VmHWM`).
fn proc_status_bytes(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Current resident memory of this process, bytes (Linux only).
pub fn rss() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// Peak resident memory of this process so far, bytes (Linux only).
pub fn peak_rss() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// Resets the peak to the current resident memory (Linux ≥ 4.0: `5` into
/// `/proc/self/clear_refs`), so that one measurement of several in a process has its own
/// peak. Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

struct Step {
    x: Tensor,
    y: Vec<usize>,
    ce: CrossEntropy,
    opt: Optimizer,
}

impl Step {
    /// One step; returns the seconds spent outside the network's forward/backward.
    fn run(&mut self, model: &mut Model, mode: BenchMode) -> Result<f64> {
        match mode {
            BenchMode::Infer => {
                model.forward(&self.x, Mode::Eval)?;
                Ok(0.0)
            }
            BenchMode::Train => {
                let t = Instant::now();
                zero_grad(model);
                let mut other = t.elapsed().as_secs_f64();
                let logits = model.forward(&self.x, Mode::Train)?;
                let t = Instant::now();
                let out = self.ce.forward(&logits, &self.y)?;
                other += t.elapsed().as_secs_f64();
                if !out.loss.is_finite() {
                    return Err(Error::state(
                        "bench",
                        format!("the loss became {} on random data", out.loss),
                    ));
                }
                model.net.backward_params(&out.dlogits)?;
                let t = Instant::now();
                // A small rate keeps random-data training finite over many steps.
                self.opt.step(model, 1e-3);
                Ok(other + t.elapsed().as_secs_f64())
            }
        }
    }
}

/// Measures `model` (see the module notes).
pub fn run(model: &mut Model, opts: &BenchOptions) -> Result<BenchReport> {
    crate::nn::set_precision(model, opts.precision);
    crate::nn::set_tuning(model, opts.tuning);
    if opts.batch == 0 || opts.iters == 0 {
        return Err(Error::config(
            "bench",
            "batch/iters",
            format!(
                "need at least one image and one timed step, got batch {} and iters {}",
                opts.batch, opts.iters
            ),
        ));
    }
    reset_peak_rss();
    let rss_start = rss();
    let [c, h, w] = model.input_shape();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let classes = model.config.classes.max(1);
    let mut step = Step {
        x: Tensor::randn(&[opts.batch, c, h, w], 0.0, 1.0, &mut rng),
        y: (0..opts.batch).map(|i| i % classes).collect(),
        ce: CrossEntropy::default(),
        opt: Optimizer::new(OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        })?,
    };
    let summary = crate::summary::summarize(model, &[c, h, w])?;

    for _ in 0..opts.warmup {
        step.run(model, opts.mode)?;
    }
    let mut times = Vec::with_capacity(opts.iters);
    for _ in 0..opts.iters {
        let t = Instant::now();
        step.run(model, opts.mode)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median_s = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };

    let mut layers = vec![];
    let mut other_ms = 0.0;
    if opts.profile_iters > 0 {
        profile::take();
        profile::enable(true);
        let mut other = 0.0;
        let result = (0..opts.profile_iters).try_for_each(|_| {
            other += step.run(model, opts.mode)?;
            Ok::<(), Error>(())
        });
        profile::enable(false);
        result?;
        other_ms = 1e3 * other / opts.profile_iters as f64;
        let plans = crate::nn::conv_plans(model);
        for (name, kind, f, b) in profile::per_leaf(&profile::take()) {
            let plan = plans
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| p.describe());
            let macs = summary
                .rows
                .iter()
                .find(|r| r.name == name)
                .map_or(0, |r| r.macs * opts.batch as u64);
            layers.push(LayerTime {
                name,
                kind,
                forward_ms: f * 1e3,
                backward_ms: b * 1e3,
                macs,
                plan,
            });
        }
    }

    let passes = match opts.mode {
        BenchMode::Train => 3.0,
        BenchMode::Infer => 1.0,
    };
    let gflop_per_step = passes * 2.0 * summary.macs as f64 * opts.batch as f64 / 1e9;
    Ok(BenchReport {
        model: model.name.clone(),
        mode: opts.mode,
        batch: opts.batch,
        threads: rayon::current_num_threads(),
        precision: opts.precision,
        iters: opts.iters,
        median_s,
        min_s: times[0],
        max_s: times[times.len() - 1],
        images_per_s: opts.batch as f64 / median_s,
        gflop_per_step,
        gflops: gflop_per_step / median_s,
        rss_start,
        rss_peak: peak_rss(),
        layers,
        other_ms,
    })
}

impl BenchReport {
    /// The headline and the per-layer table as aligned text.
    pub fn render(&self) -> String {
        let mb =
            |b: Option<u64>| b.map_or("n/a".to_string(), |b| format!("{:.0} MB", b as f64 / 1e6));
        let mode = match self.mode {
            BenchMode::Train => "train step",
            BenchMode::Infer => "inference",
        };
        let prec = match self.precision {
            Precision::F32 => "",
            Precision::Bf16 => ", bf16 products",
        };
        let mut s = format!(
            "{} {mode}, batch {}, {} threads{prec}, median of {} steps\n\
             {:.1} images/s   {:.2} ms/step (min {:.2}, max {:.2})   {:.1} GFLOP/s ({:.2} GFLOP/step)\n\
             resident memory: {} at start, {} peak\n",
            self.model,
            self.batch,
            self.threads,
            self.iters,
            self.images_per_s,
            self.median_s * 1e3,
            self.min_s * 1e3,
            self.max_s * 1e3,
            self.gflops,
            self.gflop_per_step,
            mb(self.rss_start),
            mb(self.rss_peak),
        );
        if self.layers.is_empty() {
            return s;
        }
        let total: f64 = self
            .layers
            .iter()
            .map(|l| l.forward_ms + l.backward_ms)
            .sum::<f64>()
            + self.other_ms;
        let mut rows: Vec<[String; 7]> = vec![[
            "layer", "type", "fwd ms", "bwd ms", "share", "GFLOP/s", "kernels",
        ]
        .map(String::from)];
        for l in &self.layers {
            let g = l.gflops(self.mode);
            rows.push([
                l.name.clone(),
                l.kind.clone(),
                format!("{:.3}", l.forward_ms),
                format!("{:.3}", l.backward_ms),
                format!(
                    "{:.1}%",
                    100.0 * (l.forward_ms + l.backward_ms) / total.max(1e-12)
                ),
                if g > 0.0 {
                    format!("{g:.1}")
                } else {
                    "-".into()
                },
                l.plan.clone().unwrap_or_default(),
            ]);
        }
        if self.mode == BenchMode::Train {
            rows.push([
                "(loss, zero_grad, optimizer)".into(),
                "".into(),
                "".into(),
                format!("{:.3}", self.other_ms),
                format!("{:.1}%", 100.0 * self.other_ms / total.max(1e-12)),
                "-".into(),
                "".into(),
            ]);
        }
        s.push_str(&format!(
            "\nper layer (profiled run; {:.2} ms/step in total):\n",
            total
        ));
        s.push_str(&crate::summary::text_table(&rows, 2, false));
        let mut kinds: Vec<(String, f64)> = vec![];
        for l in &self.layers {
            let ms = l.forward_ms + l.backward_ms;
            match kinds.iter_mut().find(|(k, _)| *k == l.kind) {
                Some((_, t)) => *t += ms,
                None => kinds.push((l.kind.clone(), ms)),
            }
        }
        kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
        s.push_str("\nby layer type: ");
        let parts: Vec<String> = kinds
            .iter()
            .map(|(k, ms)| format!("{k} {:.1}%", 100.0 * ms / total.max(1e-12)))
            .collect();
        s.push_str(&parts.join(", "));
        s.push('\n');
        s
    }
}
