//! The network seen from inside: per-layer statistics of activations, gradients and
//! updates, and what kind of unit each layer is (to know what "dead" or "saturated"
//! means for it).
//!
//! - Activations ([`ActStats`]): mean and standard deviation of a layer's output over the
//!   batch; for ReLU-like layers the fraction of outputs that are exactly 0 and the
//!   fraction of *dead channels* (0 for every image and position of the batch: no
//!   gradient reaches their weights); for sigmoid and tanh the fraction of *saturated*
//!   outputs (within [`SATURATION`] of an asymptote, where the derivative is under 4%).
//! - Parameters ([`ParamStats`]): per weight tensor, ‖W‖, ‖∂L/∂W‖ and, between two
//!   snapshots, the update ratio ‖ΔW‖/‖W‖ (CS231n's rule of thumb: about 1e-3).

use crate::kernels::eltwise::Act;
use crate::nn::{self, Activation, Layer};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An output within this distance of a sigmoid's 0 or 1, or of tanh's ±1, is saturated:
/// the local derivative is then below 0.02 (sigmoid) or 0.04 (tanh).
pub const SATURATION: f32 = 0.02;

/// What a layer's outputs are, for the statistics that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// ReLU: outputs ≥ 0, zero means no gradient.
    Relu,
    /// Sigmoid: outputs in (0, 1).
    Sigmoid,
    /// Tanh: outputs in (−1, 1).
    Tanh,
    /// Any other layer (convolution, normalization, pooling, smooth activations...).
    Other,
}

impl Unit {
    fn of(act: Act) -> Unit {
        match act {
            Act::Relu => Unit::Relu,
            Act::Sigmoid => Unit::Sigmoid,
            Act::Tanh => Unit::Tanh,
            _ => Unit::Other,
        }
    }
}

/// The unit of every activation layer of `net`, by state-dict path (found by type).
pub fn units(net: &mut dyn Layer) -> BTreeMap<String, Unit> {
    let mut out = BTreeMap::new();
    nn::visit_layers_mut(net, "", &mut |path, l| {
        if let Some(a) = (l as &mut dyn std::any::Any).downcast_mut::<Activation>() {
            out.insert(path.to_string(), Unit::of(a.act()));
        }
    });
    out
}

/// Statistics of one layer's output over a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActStats {
    /// State-dict path of the layer (`features.3`, `layer2.1`).
    pub name: String,
    /// What kind of unit it is.
    pub unit: Unit,
    /// Mean of the outputs.
    pub mean: f64,
    /// Standard deviation of the outputs.
    pub std: f64,
    /// Fraction of outputs exactly 0 (ReLU layers; 0 otherwise).
    pub zero: f64,
    /// Fraction of channels that are 0 for every image and position (ReLU layers).
    pub dead: f64,
    /// Fraction of saturated outputs (sigmoid and tanh layers).
    pub saturated: f64,
}

/// The statistics of `y` (`[N, C, ...]` or `[N, F]`), the output of a layer of `unit`.
pub fn act_stats(name: &str, unit: Unit, y: &Tensor) -> ActStats {
    let d = y.data();
    let n = d.len().max(1) as f64;
    let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = d
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let (mut zero, mut dead, mut saturated) = (0.0, 0.0, 0.0);
    match unit {
        Unit::Relu => {
            zero = d.iter().filter(|&&v| v == 0.0).count() as f64 / n;
            let shape = y.shape();
            let (batch, channels) = (shape[0].max(1), shape.get(1).copied().unwrap_or(1));
            let per = d.len() / (batch * channels).max(1);
            let dead_channels = (0..channels)
                .filter(|&c| {
                    (0..batch).all(|b| {
                        let at = (b * channels + c) * per;
                        d[at..at + per].iter().all(|&v| v == 0.0)
                    })
                })
                .count();
            dead = dead_channels as f64 / channels.max(1) as f64;
        }
        Unit::Sigmoid => {
            saturated = d
                .iter()
                .filter(|&&v| !(SATURATION..=1.0 - SATURATION).contains(&v))
                .count() as f64
                / n;
        }
        Unit::Tanh => {
            saturated = d.iter().filter(|&&v| v.abs() > 1.0 - SATURATION).count() as f64 / n;
        }
        Unit::Other => {}
    }
    ActStats {
        name: name.to_string(),
        unit,
        mean,
        std: var.sqrt(),
        zero,
        dead,
        saturated,
    }
}

/// Statistics of every recorded activation (as `Trainer` hooks receive them).
pub fn all_act_stats(acts: &[(String, Tensor)], units: &BTreeMap<String, Unit>) -> Vec<ActStats> {
    acts.iter()
        .map(|(name, y)| act_stats(name, units.get(name).copied().unwrap_or(Unit::Other), y))
        .collect()
}

/// Norms of one weight tensor and its gradient (and, between snapshots, its update).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamStats {
    /// State-dict name (`features.0.weight`).
    pub name: String,
    /// ‖W‖ (Frobenius).
    pub weight_norm: f64,
    /// ‖∂L/∂W‖ of the step.
    pub grad_norm: f64,
    /// ‖ΔW‖/‖W‖ over one optimizer step, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_ratio: Option<f64>,
}

fn norm(d: &[f32]) -> f64 {
    d.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt()
}

/// ‖W‖ and ‖∂L/∂W‖ of every multi-dimensional parameter (convolution and linear weights;
/// biases and normalization scales left out), in model order.
pub fn param_stats(net: &mut dyn Layer) -> Vec<ParamStats> {
    let mut out = vec![];
    net.visit_params("", &mut |name, p| {
        if p.value.shape().len() >= 2 {
            out.push(ParamStats {
                name: name.to_string(),
                weight_norm: norm(p.value.data()),
                grad_norm: norm(p.grad.data()),
                update_ratio: None,
            });
        }
    });
    out
}

/// A copy of every multi-dimensional parameter's values, to measure an update.
pub fn snapshot(net: &mut dyn Layer) -> BTreeMap<String, Vec<f32>> {
    let mut out = BTreeMap::new();
    net.visit_params("", &mut |name, p| {
        if p.value.shape().len() >= 2 {
            out.insert(name.to_string(), p.value.data().to_vec());
        }
    });
    out
}

/// ‖W_now − W_before‖/‖W_before‖ for every parameter of `before`.
pub fn update_ratios(
    net: &mut dyn Layer,
    before: &BTreeMap<String, Vec<f32>>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    net.visit_params("", &mut |name, p| {
        if let Some(b) = before.get(name) {
            if b.len() == p.value.len() {
                let diff = p
                    .value
                    .data()
                    .iter()
                    .zip(b)
                    .map(|(&x, &y)| f64::from(x - y).powi(2))
                    .sum::<f64>()
                    .sqrt();
                out.insert(name.to_string(), diff / norm(b).max(1e-30));
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_channels_zeros_and_saturation_are_counted() {
        // [N=2, C=2, 2]: channel 0 is zero everywhere, channel 1 is not.
        let y = Tensor::from_vec(vec![0., 0., 1., 0., 0., 0., 0., 2.], &[2, 2, 2]).unwrap();
        let s = act_stats("r", Unit::Relu, &y);
        assert_eq!(s.dead, 0.5);
        assert_eq!(s.zero, 6.0 / 8.0);
        assert!((s.mean - 3.0 / 8.0).abs() < 1e-12);
        let t = Tensor::from_vec(vec![0.999, -0.99, 0.5, 0.0], &[1, 4]).unwrap();
        assert_eq!(act_stats("t", Unit::Tanh, &t).saturated, 0.5);
        let g = Tensor::from_vec(vec![0.001, 0.5, 0.999, 0.3], &[1, 4]).unwrap();
        assert_eq!(act_stats("s", Unit::Sigmoid, &g).saturated, 0.5);
        assert_eq!(act_stats("o", Unit::Other, &g).saturated, 0.0);
    }
}
