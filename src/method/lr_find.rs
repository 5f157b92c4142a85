//! `strata lr-find`: the learning-rate range test (Smith 2015; fastai's `lr_find`), and the
//! lecture's step 3 done literally (`--probe`).
//!
//! **The sweep.** From the run's initialization, one training step per batch at a rate
//! growing exponentially from `start` to `end` over `iterations` steps. The loss is
//! smoothed with an exponential moving average (β = 0.98, bias-corrected); the sweep
//! stops when the loss is not finite or the smoothed loss exceeds `diverge` × its
//! minimum. **The suggestion** is the rate at the minimum of the smoothed loss divided by
//! 10 (fastai's `minimum/10` rule): at the minimum the loss is already about to blow up,
//! a tenth of it still falls fast. The steepest point (the most negative slope of the
//! smoothed loss against log rate) is reported beside it.
//!
//! **The probe.** For each given rate, from the same initialization and the same
//! batches, `probe_iterations` steps at that constant rate; the table says how much the
//! loss fell: from the first step's loss (taken before any update, so the same for every
//! rate) to the mean of the last 10 steps. A rate that first blows the loss up and then
//! recovers part of the way shows as a small fall, as it should.

use super::write_json;
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::optim::{LrSchedule, Optimizer, Schedule};
use crate::plot::{self, Chart, Series};
use crate::train::{Observer, Setup, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How to sweep and probe.
#[derive(Clone, Debug)]
pub struct LrFindOptions {
    /// First rate of the sweep [1e-7].
    pub start: f64,
    /// Last rate [10].
    pub end: f64,
    /// Steps of the sweep [200].
    pub iterations: usize,
    /// Stop when the smoothed loss exceeds this multiple of its minimum [4].
    pub diverge: f64,
    /// Rates to probe (none: no probe).
    pub probe: Vec<f64>,
    /// Steps per probed rate [100].
    pub probe_iterations: usize,
    /// Folder for lr_find.json and lr_find.svg (none: nothing written).
    pub out: Option<PathBuf>,
}

impl Default for LrFindOptions {
    fn default() -> Self {
        LrFindOptions {
            start: 1e-7,
            end: 10.0,
            iterations: 200,
            diverge: 4.0,
            probe: vec![],
            probe_iterations: 100,
            out: None,
        }
    }
}

impl LrFindOptions {
    /// Checks the ranges (before any data is read).
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, r: String| Err(Error::config("lr-find", f, r));
        if !(self.start > 0.0 && self.start.is_finite()) {
            return bad(
                "start",
                format!("must be a positive number, got {}", self.start),
            );
        }
        if !(self.end > self.start && self.end.is_finite()) {
            return bad(
                "end",
                format!("must be above start ({}), got {}", self.start, self.end),
            );
        }
        if self.iterations < 10 {
            return bad(
                "iterations",
                format!("must be ≥ 10, got {}", self.iterations),
            );
        }
        if self.diverge.is_nan() || self.diverge <= 1.0 {
            return bad("diverge", format!("must be > 1, got {}", self.diverge));
        }
        if let Some(r) = self.probe.iter().find(|r| !(**r > 0.0 && r.is_finite())) {
            return bad(
                "probe",
                format!("every rate must be a positive number, got {r}"),
            );
        }
        if !self.probe.is_empty() && self.probe_iterations < 15 {
            return bad(
                "probe_iterations",
                format!("must be ≥ 15, got {}", self.probe_iterations),
            );
        }
        Ok(())
    }
}

/// One step of the sweep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrPoint {
    /// The rate of the step.
    pub lr: f64,
    /// Its loss.
    pub loss: f64,
    /// The smoothed loss.
    pub smoothed: f64,
}

/// One probed rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// The rate.
    pub lr: f64,
    /// Loss of the first step, before any update (the same for every rate).
    pub start_loss: f64,
    /// Mean loss of the last 10 steps (or at divergence).
    pub end_loss: f64,
    /// `start_loss − end_loss`, relative to `start_loss`.
    pub fall: f64,
    /// Whether the loss became non-finite.
    pub diverged: bool,
}

/// What the sweep found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LrFindReport {
    /// Model name.
    pub model: String,
    /// Dataset.
    pub data: String,
    /// The sweep, step by step.
    pub points: Vec<LrPoint>,
    /// Why the sweep ended.
    pub stopped: String,
    /// The rate at the minimum of the smoothed loss.
    pub min_lr: f64,
    /// The rate of the steepest fall.
    pub steepest_lr: f64,
    /// The suggested rate.
    pub suggestion: f64,
    /// The rule that chose it.
    pub rule: String,
    /// The probe's table (empty without `--probe`).
    pub probe: Vec<ProbeRow>,
    /// The rate of the run's configuration, for comparison.
    pub config_lr: f64,
    /// Where the plot was written.
    pub plot: Option<PathBuf>,
}

/// The sweep (and the probe) on the run `cfg` describes.
pub fn lr_find(
    cfg: &TrainConfig,
    opts: &LrFindOptions,
    obs: &mut dyn Observer,
) -> Result<LrFindReport> {
    opts.validate()?;
    let mut cfg = cfg.clone();
    cfg.augment = cfg.resolved_augment();
    let mut setup = Setup::new(&cfg, false, obs)?;
    let initial = checkpoint::state_dict(&mut setup.trainer.model.net);

    obs.note(&format!(
        "lr-find: {} steps from {:e} to {:e}",
        opts.iterations, opts.start, opts.end
    ));
    let n = opts.iterations;
    let ratio = (opts.end / opts.start).ln();
    let rates = (0..n).map(|i| opts.start * (ratio * i as f64 / (n - 1) as f64).exp());
    let (points, stopped) = run_at(&mut setup, &cfg, rates, Some(opts.diverge), obs)?;
    if points.len() < 3 {
        return Err(Error::config(
            "lr-find",
            "start",
            format!(
                "the loss diverged within {} steps ({stopped}); start the sweep lower",
                points.len()
            ),
        ));
    }
    let (min_i, _) = points
        .iter()
        .enumerate()
        .fold((0, f64::INFINITY), |(bi, b), (i, p)| {
            if p.smoothed < b {
                (i, p.smoothed)
            } else {
                (bi, b)
            }
        });
    let min_lr = points[min_i].lr;
    // Steepest: the most negative slope of the smoothed loss per unit of ln(rate), over
    // the points before the minimum (skipping the first tenth: the average warms up).
    let skip = (points.len() / 10).max(1);
    let steepest_lr = (skip..=min_i.max(skip))
        .filter(|&i| i + 1 < points.len())
        .min_by(|&a, &b| {
            let slope = |i: usize| {
                (points[i + 1].smoothed - points[i].smoothed)
                    / (points[i + 1].lr / points[i].lr).ln()
            };
            slope(a).total_cmp(&slope(b))
        })
        .map_or(min_lr, |i| points[i].lr);
    let suggestion = min_lr / 10.0;

    let mut probe = vec![];
    for &lr in &opts.probe {
        obs.note(&format!(
            "probe: {} steps at lr {lr:e}",
            opts.probe_iterations
        ));
        checkpoint::load_state_dict(&mut setup.trainer.model.net, &initial, true)?;
        let rates = std::iter::repeat_n(lr, opts.probe_iterations);
        let (pts, stop) = run_at(&mut setup, &cfg, rates, None, obs)?;
        let mean = |s: &[LrPoint]| s.iter().map(|p| p.loss).sum::<f64>() / s.len().max(1) as f64;
        let start_loss = pts.first().map_or(f64::NAN, |p| p.loss);
        let end_loss = mean(&pts[pts.len().saturating_sub(10)..]);
        probe.push(ProbeRow {
            lr,
            start_loss,
            end_loss,
            fall: (start_loss - end_loss) / start_loss.abs().max(1e-12),
            diverged: stop.starts_with("the loss is not finite"),
        });
    }

    let mut report = LrFindReport {
        model: cfg.model.clone(),
        data: cfg.data.clone(),
        points,
        stopped,
        min_lr,
        steepest_lr,
        suggestion,
        rule: "minimum/10: a tenth of the rate at which the smoothed loss was lowest".into(),
        probe,
        config_lr: f64::from(cfg.lr),
        plot: None,
    };
    if let Some(dir) = &opts.out {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let svg = dir.join("lr_find.svg");
        draw(&report, &svg)?;
        report.plot = Some(svg);
        write_json(&dir.join("lr_find.json"), &report)?;
    }
    Ok(report)
}

/// Steps at the given rates over the loader's batches; stops at a non-finite loss or,
/// with `diverge`, when the smoothed loss passes that multiple of its minimum.
fn run_at(
    setup: &mut Setup,
    cfg: &TrainConfig,
    rates: impl Iterator<Item = f64>,
    diverge: Option<f64>,
    obs: &mut dyn Observer,
) -> Result<(Vec<LrPoint>, String)> {
    let t = &mut setup.trainer;
    t.optimizer = Optimizer::new(cfg.optimizer.clone())?;
    t.step = 0;
    let (mut avg, beta) = (0.0f64, 0.98f64);
    let mut best = f64::INFINITY;
    let mut points = vec![];
    let mut stopped = "the sweep reached its last rate".to_string();
    let per_epoch = setup.train_loader.len().max(1);
    for (i, lr) in rates.enumerate() {
        let (epoch, b) = ((i / per_epoch) as u64, i % per_epoch);
        let batch = setup.train_loader.batch(epoch, b);
        t.schedule = LrSchedule::new(lr as f32, 1, 0, Schedule::Constant)?;
        let loss = match t.step(&batch, epoch, b as u64, &mut []) {
            Ok((r, _)) => r.loss,
            Err(Error::Diverged { .. }) => {
                stopped = format!("the loss is not finite at lr {lr:.3e}");
                break;
            }
            Err(e) => return Err(e),
        };
        avg = beta * avg + (1.0 - beta) * loss;
        let smoothed = avg / (1.0 - beta.powi(i as i32 + 1));
        points.push(LrPoint { lr, loss, smoothed });
        best = best.min(smoothed);
        if let Some(d) = diverge {
            if i > 5 && smoothed > d * best {
                stopped =
                    format!("the smoothed loss passed {d}× its minimum at lr {lr:.3e} (diverging)");
                break;
            }
        }
        if obs.should_stop() {
            stopped = "interrupted".into();
            break;
        }
    }
    Ok((points, stopped))
}

fn draw(r: &LrFindReport, path: &std::path::Path) -> Result<()> {
    let lo = r
        .points
        .iter()
        .map(|p| p.smoothed)
        .fold(f64::INFINITY, f64::min);
    let cap = 4.0 * lo.max(1e-6);
    let raw = Series {
        label: "loss".into(),
        points: r.points.iter().map(|p| (p.lr, p.loss.min(cap))).collect(),
    };
    let smooth = Series {
        label: "smoothed loss".into(),
        points: r
            .points
            .iter()
            .map(|p| (p.lr, p.smoothed.min(cap)))
            .collect(),
    };
    let top = smooth.points.iter().map(|p| p.1).fold(lo, f64::max);
    let mark = Series {
        label: format!("suggested {:.1e}", r.suggestion),
        points: vec![(r.suggestion, lo), (r.suggestion, top)],
    };
    plot::line_chart(
        path,
        &Chart {
            title: "learning-rate range test",
            x_label: "learning rate",
            y_label: "training loss",
            log_x: true,
        },
        &[raw, smooth, mark],
    )
}
