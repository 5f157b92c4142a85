//! Optimizers (SGD with momentum/Nesterov/weight decay, AdamW), gradient clipping, and
//! learning-rate schedules.
//!
//! An [`Optimizer`] keeps its per-parameter state by state-dict name, so it can be saved
//! in a checkpoint beside the weights (`optim.<param>.<buffer>`) and a run can resume
//! exactly. Frozen parameters ([`crate::nn::Param::frozen`]) are skipped, and each
//! parameter's learning rate is the step's times its [`crate::nn::Param::lr_scale`]. The update
//! formulas are in [`crate::kernels::optim`]; they are PyTorch's (`torch.optim.SGD`,
//! `torch.optim.AdamW`), checked against a PyTorch trajectory in the model tests.

mod schedule;

pub use schedule::{LrSchedule, Schedule};

use crate::error::{Error, Result};
use crate::kernels::optim::{adamw, sgd, sum_squares, AdamWStep, SgdStep};
use crate::nn::Layer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn momentum_default() -> f32 {
    0.9
}
fn beta1_default() -> f32 {
    0.9
}
fn beta2_default() -> f32 {
    0.999
}
fn eps_default() -> f32 {
    1e-8
}
fn adamw_decay_default() -> f32 {
    0.01
}

/// Which optimizer, with its hyper-parameters (learning rate apart: see [`LrSchedule`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// Stochastic gradient descent.
    Sgd {
        /// Momentum. Default: 0.9.
        #[serde(default = "momentum_default")]
        momentum: f32,
        /// Nesterov momentum. Default: false.
        #[serde(default)]
        nesterov: bool,
        /// L2 weight decay. Default: 0.
        #[serde(default)]
        weight_decay: f32,
    },
    /// Adam with decoupled weight decay.
    #[serde(rename = "adamw")]
    AdamW {
        /// Default: 0.9.
        #[serde(default = "beta1_default")]
        beta1: f32,
        /// Default: 0.999.
        #[serde(default = "beta2_default")]
        beta2: f32,
        /// Default: 1e-8.
        #[serde(default = "eps_default")]
        eps: f32,
        /// Default: 0.01 (PyTorch's).
        #[serde(default = "adamw_decay_default")]
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, r: String| Err(Error::config("optimizer", f, r));
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
                nesterov,
            } => {
                if !(0.0..1.0).contains(&momentum) {
                    return bad("momentum", format!("must be in [0, 1), got {momentum}"));
                }
                if nesterov && momentum == 0.0 {
                    return bad("nesterov", "Nesterov needs a momentum > 0".into());
                }
                check_decay(weight_decay)?;
            }
            OptimizerConfig::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                    return bad(
                        "beta1/beta2",
                        format!("must be in [0, 1), got {beta1}, {beta2}"),
                    );
                }
                if eps.is_nan() || eps <= 0.0 {
                    return bad("eps", format!("must be > 0, got {eps}"));
                }
                check_decay(weight_decay)?;
            }
        }
        Ok(())
    }

    fn buffers(&self) -> &'static [&'static str] {
        match self {
            OptimizerConfig::Sgd { momentum, .. } if *momentum == 0.0 => &[],
            OptimizerConfig::Sgd { .. } => &["momentum_buffer"],
            OptimizerConfig::AdamW { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }
}

fn check_decay(weight_decay: f32) -> Result<()> {
    if weight_decay >= 0.0 && weight_decay.is_finite() {
        Ok(())
    } else {
        Err(Error::config(
            "optimizer",
            "weight_decay",
            format!("must be ≥ 0, got {weight_decay}"),
        ))
    }
}

/// An optimizer and its state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    steps: u64,
    /// Per parameter name, one buffer per entry of `config.buffers()`.
    state: BTreeMap<String, Vec<Vec<f32>>>,
}

impl Optimizer {
    /// A fresh optimizer.
    pub fn new(config: OptimizerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Optimizer {
            config,
            steps: 0,
            state: BTreeMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Updates every unfrozen parameter of `net` from its gradient, with learning rate `lr`.
    pub fn step(&mut self, net: &mut dyn Layer, lr: f32) {
        self.steps += 1;
        let t = self.steps;
        let config = self.config.clone();
        let nbuf = config.buffers().len();
        let state = &mut self.state;
        net.visit_params("", &mut |name, p| {
            if p.frozen {
                return;
            }
            let lr = lr * p.lr_scale;
            // A parameter seen for the first time (or resized) starts its buffers afresh.
            let first = state
                .get(name)
                .is_none_or(|b| b.iter().any(|v| v.len() != p.value.len()));
            let bufs = state.entry(name.to_string()).or_default();
            if first {
                *bufs = vec![vec![0.0; p.value.len()]; nbuf];
            }
            match config {
                OptimizerConfig::Sgd {
                    momentum,
                    nesterov,
                    weight_decay,
                } => {
                    let s = SgdStep {
                        lr,
                        momentum,
                        nesterov,
                        weight_decay,
                        first,
                    };
                    let mut none = vec![];
                    let buf = bufs.first_mut().unwrap_or(&mut none);
                    sgd(s, p.value.data_mut(), p.grad.data(), buf);
                }
                OptimizerConfig::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let s = AdamWStep {
                        lr,
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                        t,
                    };
                    if let [m, v] = &mut bufs[..] {
                        adamw(s, p.value.data_mut(), p.grad.data(), m, v);
                    }
                }
            }
        });
    }

    /// The state as named tensors (`optim.<param>.<buffer>`, plus `optim.steps`), for a
    /// checkpoint.
    pub fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (name, bufs) in &self.state {
            for (bname, b) in self.config.buffers().iter().zip(bufs) {
                let len = b.len();
                if let Ok(t) = Tensor::from_vec(b.clone(), &[len]) {
                    out.insert(format!("optim.{name}.{bname}"), t);
                }
            }
        }
        out.insert("optim.steps".into(), Tensor::full(&[], self.steps as f32));
        out
    }

    /// Restores the state written by [`Optimizer::state_tensors`].
    pub fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        let steps = tensors
            .get("optim.steps")
            .and_then(|t| t.data().first().copied())
            .ok_or_else(|| {
                Error::state(
                    "optimizer",
                    "the checkpoint has no optimizer state (optim.steps)",
                )
            })?;
        self.steps = steps as u64;
        self.state.clear();
        let names = self.config.buffers();
        for (key, t) in tensors {
            let Some(rest) = key.strip_prefix("optim.") else {
                continue;
            };
            let Some((param, buf)) = rest.rsplit_once('.') else {
                continue;
            };
            let Some(i) = names.iter().position(|n| *n == buf) else {
                continue;
            };
            let entry = self
                .state
                .entry(param.to_string())
                .or_insert_with(|| vec![vec![]; names.len()]);
            entry[i] = t.data().to_vec();
        }
        Ok(())
    }
}

/// Scales all unfrozen gradients so that their global L2 norm is at most `max_norm`.
/// Returns the norm before clipping (as `torch.nn.utils.clip_grad_norm_`).
pub fn clip_grad_norm(net: &mut dyn Layer, max_norm: f32) -> f32 {
    let mut total = 0.0f64;
    net.visit_params("", &mut |_, p| {
        if !p.frozen {
            total += sum_squares(p.grad.data());
        }
    });
    let norm = total.sqrt() as f32;
    if norm > max_norm && norm.is_finite() {
        let s = max_norm / (norm + 1e-6);
        net.visit_params("", &mut |_, p| {
            if !p.frozen {
                crate::kernels::eltwise::scale(p.grad.data_mut(), s);
            }
        });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Linear, Mode};
    use rand::SeedableRng;

    fn tiny() -> Linear {
        let mut l = Linear::new(3, 2, true, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
        l.weight.grad = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.0, 1.0, -0.5], &[2, 3]).unwrap();
        l.bias.as_mut().unwrap().grad = Tensor::from_vec(vec![1.0, -1.0], &[2]).unwrap();
        l
    }

    #[test]
    fn sgd_momentum_matches_the_pytorch_recurrence_by_hand() {
        let mut l = tiny();
        let w0 = l.weight.value.data()[0];
        let mut opt = Optimizer::new(OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        })
        .unwrap();
        opt.step(&mut l, 0.1); // buf = g = 0.5, w -= 0.05
        opt.step(&mut l, 0.1); // buf = 0.9·0.5 + 0.5 = 0.95, w -= 0.095
        assert!((l.weight.value.data()[0] - (w0 - 0.05 - 0.095)).abs() < 1e-6);
    }

    #[test]
    fn frozen_parameters_do_not_move_and_state_round_trips() {
        let mut l = tiny();
        l.weight.frozen = true;
        let w = l.weight.value.clone();
        let b = l.bias.as_ref().unwrap().value.clone();
        let mut opt = Optimizer::new(OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        })
        .unwrap();
        opt.step(&mut l, 0.01);
        assert_eq!(l.weight.value, w);
        // Adam's first step moves each coordinate by lr·sign(g)
        let moved: Vec<f32> = l
            .bias
            .as_ref()
            .unwrap()
            .value
            .data()
            .iter()
            .zip(b.data())
            .map(|(a, b)| a - b)
            .collect();
        assert!(
            (moved[0] + 0.01).abs() < 1e-5 && (moved[1] - 0.01).abs() < 1e-5,
            "{moved:?}"
        );
        let mut other = Optimizer::new(opt.config().clone()).unwrap();
        other.load_state(&opt.state_tensors()).unwrap();
        assert_eq!(other.steps(), 1);
        assert_eq!(other.state_tensors(), opt.state_tensors());
        let _ = Mode::Train;
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_bad_configs_are_errors() {
        let mut l = tiny();
        let n = clip_grad_norm(&mut l, 1.0);
        assert!((n - (0.25f32 + 1.0 + 4.0 + 1.0 + 0.25 + 1.0 + 1.0).sqrt()).abs() < 1e-5);
        assert!((clip_grad_norm(&mut l, 10.0) - 1.0).abs() < 1e-4);
        assert!(Optimizer::new(OptimizerConfig::Sgd {
            momentum: 1.5,
            nesterov: false,
            weight_decay: 0.0
        })
        .is_err());
        assert!(Optimizer::new(OptimizerConfig::Sgd {
            momentum: 0.0,
            nesterov: true,
            weight_decay: 0.0
        })
        .is_err());
    }
}
