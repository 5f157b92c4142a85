//! Learning-rate schedules as pure functions of the step.
//!
//! `lr(t)` for `t` in `0..total`, with an optional linear warm-up over the first `warmup`
//! steps (`lr·(t+1)/warmup`, multiplied into the schedule):
//! - constant: `base`;
//! - step: `base·γ^⌊t/every⌋`;
//! - cosine: `min + (base − min)·(1 + cos(π·t/total))/2`;
//! - one-cycle (Smith 2018; PyTorch's `OneCycleLR`, cosine annealing): from
//!   `base/div` up to `base` over the first `pct_start` of the steps, then down to
//!   `base/(div·final_div)`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The shape of the schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Always the base rate.
    Constant,
    /// Multiply by `gamma` every `every` steps.
    Step {
        /// Steps between decays.
        every: u64,
        /// Decay factor.
        gamma: f32,
    },
    /// Cosine decay to `min_lr`.
    Cosine {
        /// Final rate. Default: 0.
        #[serde(default)]
        min_lr: f32,
    },
    /// One-cycle: warm up to the base (peak) rate, then anneal.
    OneCycle {
        /// Fraction of the steps spent rising. Default: 0.3.
        #[serde(default = "pct_default")]
        pct_start: f32,
        /// Initial rate = peak / div. Default: 25.
        #[serde(default = "div_default")]
        div: f32,
        /// Final rate = initial / final_div. Default: 1e4.
        #[serde(default = "final_div_default")]
        final_div: f32,
    },
}

fn pct_default() -> f32 {
    0.3
}
fn div_default() -> f32 {
    25.0
}
fn final_div_default() -> f32 {
    1e4
}

/// A schedule bound to a base rate and a length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Base (peak for one-cycle) learning rate.
    pub base_lr: f32,
    /// Total optimizer steps of the run.
    pub total_steps: u64,
    /// Linear warm-up steps (0 = none).
    pub warmup_steps: u64,
    /// The shape.
    pub schedule: Schedule,
}

fn cos_anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

impl LrSchedule {
    /// Validates the values.
    pub fn new(
        base_lr: f32,
        total_steps: u64,
        warmup_steps: u64,
        schedule: Schedule,
    ) -> Result<Self> {
        let bad = |f: &str, r: String| Err(Error::config("schedule", f, r));
        if !(base_lr > 0.0 && base_lr.is_finite()) {
            return bad("lr", format!("must be a positive number, got {base_lr}"));
        }
        if total_steps == 0 {
            return bad("total_steps", "must be ≥ 1".into());
        }
        match schedule {
            Schedule::Step { every, gamma } if every == 0 || gamma.is_nan() || gamma <= 0.0 => {
                return bad("step", format!("every must be ≥ 1 and gamma > 0, got {every}, {gamma}"))
            }
            Schedule::OneCycle { pct_start, div, final_div }
                if !(0.0..1.0).contains(&pct_start) || div.is_nan() || div < 1.0 || final_div.is_nan() || final_div < 1.0 =>
            {
                return bad("one_cycle", format!("need 0 ≤ pct_start < 1, div ≥ 1, final_div ≥ 1; got {pct_start}, {div}, {final_div}"))
            }
            _ => {}
        }
        Ok(LrSchedule {
            base_lr,
            total_steps,
            warmup_steps,
            schedule,
        })
    }

    /// The learning rate of step `t` (0-based).
    pub fn lr(&self, t: u64) -> f32 {
        let base = self.base_lr as f64;
        let total = self.total_steps.max(1) as f64;
        let tf = t.min(self.total_steps) as f64;
        let lr = match self.schedule {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => {
                base * (gamma as f64).powi((t / every.max(1)) as i32)
            }
            Schedule::Cosine { min_lr } => cos_anneal(base, min_lr as f64, tf / total),
            Schedule::OneCycle {
                pct_start,
                div,
                final_div,
            } => {
                let initial = base / div as f64;
                let min = initial / final_div as f64;
                let up = (pct_start as f64 * total - 1.0).max(1.0);
                let down = (total - 1.0 - up).max(1.0);
                if tf <= up {
                    cos_anneal(initial, base, tf / up)
                } else {
                    cos_anneal(base, min, ((tf - up) / down).min(1.0))
                }
            }
        };
        let warm = if t < self.warmup_steps {
            (t + 1) as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        (lr * warm) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_hit_their_endpoints() {
        let c = LrSchedule::new(0.1, 100, 0, Schedule::Cosine { min_lr: 0.001 }).unwrap();
        assert!((c.lr(0) - 0.1).abs() < 1e-7 && (c.lr(100) - 0.001).abs() < 1e-7);
        assert!((c.lr(50) - 0.0505).abs() < 1e-6);
        let s = LrSchedule::new(
            0.1,
            100,
            0,
            Schedule::Step {
                every: 30,
                gamma: 0.1,
            },
        )
        .unwrap();
        assert!(
            (s.lr(29) - 0.1).abs() < 1e-7
                && (s.lr(30) - 0.01).abs() < 1e-8
                && (s.lr(61) - 0.001).abs() < 1e-9
        );
        let o = LrSchedule::new(
            0.1,
            1000,
            0,
            Schedule::OneCycle {
                pct_start: 0.3,
                div: 25.0,
                final_div: 1e4,
            },
        )
        .unwrap();
        assert!((o.lr(0) - 0.004).abs() < 1e-7);
        let peak = (0..1000).map(|t| o.lr(t)).fold(0.0f32, f32::max);
        assert!((peak - 0.1).abs() < 1e-6);
        assert!(o.lr(999) < 1e-6);
        let w = LrSchedule::new(0.1, 100, 10, Schedule::Constant).unwrap();
        assert!(
            (w.lr(0) - 0.01).abs() < 1e-7
                && (w.lr(9) - 0.1).abs() < 1e-7
                && (w.lr(50) - 0.1).abs() < 1e-7
        );
        assert!(LrSchedule::new(0.0, 10, 0, Schedule::Constant).is_err());
        assert!(LrSchedule::new(
            0.1,
            10,
            0,
            Schedule::Step {
                every: 0,
                gamma: 0.1
            }
        )
        .is_err());
    }
}
