//! The lecture's "how to train", as library functions over the [`crate::train::Trainer`]:
//!
//! - [`check`]: the sanity checks before training — the initial loss against ln(C), the
//!   data (class balance, input statistics, a preview), the network at initialization
//!   (activations and gradients per layer, with a verdict each), and overfitting a small
//!   sample;
//! - [`lr_find`]: the learning-rate range test, and the lecture's probe of a few rates;
//! - `strata train --watch N` ([`crate::train::watch`]) records activation, gradient and
//!   update statistics of a run every N steps, with [`crate::train::stats`];
//! - [`diagnose`]: reads a run's history (and watch records) and says which case it is,
//!   with the evidence, the remedies and the non-remedies.
//!
//! Every threshold any of them uses is a field of [`Thresholds`], with its default and
//! its reason; a TOML file (`--thresholds FILE`) overrides any of them.

pub mod check;
pub mod diagnose;
pub mod lr_find;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The outcome of one check or verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// As it should be.
    Pass,
    /// Worth a look; training may still work.
    Warn,
    /// Training will not work as set up.
    Fail,
}

impl Status {
    /// `pass`, `warn`, `FAIL`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// Every number the checks and the diagnosis decide by. Defaults in brackets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Initial loss: a relative distance |L − ln C| / ln C above this is a warning [0.15].
    /// A freshly initialized classifier should be unsure: its loss is near ln C.
    pub initial_loss_warn: f64,
    /// ... and above this a failure [0.5].
    pub initial_loss_fail: f64,
    /// Inputs after normalization: a channel mean beyond ±this is a warning [0.25].
    pub input_mean: f64,
    /// ... or a channel standard deviation outside [1/this, this] [2.0].
    pub input_std: f64,
    /// Class balance: the largest class over the smallest above this is a warning [3.0].
    pub class_imbalance: f64,
    /// A ReLU layer with more than this fraction of dead channels (zero for the whole
    /// batch) is "dead" [0.5].
    pub dead: f64,
    /// A sigmoid or tanh layer with more than this fraction of saturated outputs is
    /// "saturated" [0.5].
    pub saturated: f64,
    /// An activation layer (or the logits) whose output standard deviation is below this
    /// is "vanishing" [0.01]: the signal is dying out with depth.
    pub vanishing_std: f64,
    /// ... and above this "exploding" [10.0] (inputs are normalized to std 1; a healthy
    /// initialization keeps it near 1).
    pub exploding_std: f64,
    /// A weight whose relative gradient ‖∂L/∂W‖/‖W‖ is below this fraction of the
    /// largest layer's is "vanishing" [1e-3]: it learns a thousand times slower.
    pub vanishing_grad: f64,
    /// A relative gradient ‖∂L/∂W‖/‖W‖ below this is "vanishing" whatever the other
    /// layers do [1e-7]: a step at learning rate 0.1 would change the weight by less than
    /// a millionth (healthy layers show 1e-3 to 1).
    pub vanishing_grad_abs: f64,
    /// A relative gradient ‖∂L/∂W‖/‖W‖ above this is "exploding" [10.0]: one step at
    /// learning rate 0.1 would change the weight by more than itself.
    pub exploding_grad: f64,
    /// Images of the small sample to overfit [20].
    pub overfit_images: usize,
    /// Steps allowed to reach 100% training accuracy on it [300].
    pub overfit_steps: u64,
    /// After overfitting, validation accuracy below this multiple of chance (1/C) is a
    /// warning: memorized, but nothing carries to new images [1.25].
    pub overfit_val_chance: f64,
    /// Update ratio ‖ΔW‖/‖W‖ per step below this: the layer barely moves [3e-5] (the
    /// rule of thumb is about 1e-3; the band is 1.5 decades each way: BatchNorm networks at
    /// the peak of a one-cycle schedule run near 1e-2 and train well).
    pub update_low: f64,
    /// ... above this: the steps are too large for the layer [3e-2].
    pub update_high: f64,
    /// Diagnosis needs at least this many epochs [3].
    pub min_epochs: usize,
    /// The last this many epochs are the "end of the run" whose trends are read [3].
    pub window: usize,
    /// Train-minus-validation accuracy above this is a gap [0.05].
    pub gap: f64,
    /// Training accuracy at or above this: the training set is memorized, training
    /// longer cannot close a gap [0.99].
    pub memorized: f64,
    /// A validation loss this much (relative) above its minimum, reached at least
    /// `window` epochs before the end, is rising [0.05].
    pub val_rise: f64,
    /// A loss that falls by less than this (relative) over the whole run is flat [0.05].
    pub flat: f64,
    /// A loss still falling by more than this (relative, per epoch) over the window is
    /// still improving [0.01].
    pub improving: f64,
    /// Training accuracy below this at a plateau is underfitting [0.9].
    pub underfit_acc: f64,
    /// An iteration loss above this multiple of the median of the run's iteration losses
    /// (after the first epoch) is a spike [2.0].
    pub spike: f64,
    /// More than this fraction of epoch-to-epoch training-loss changes going up is
    /// oscillation [0.3].
    pub oscillation: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            initial_loss_warn: 0.15,
            initial_loss_fail: 0.5,
            input_mean: 0.25,
            input_std: 2.0,
            class_imbalance: 3.0,
            dead: 0.5,
            saturated: 0.5,
            vanishing_std: 0.01,
            exploding_std: 10.0,
            vanishing_grad: 1e-3,
            vanishing_grad_abs: 1e-7,
            exploding_grad: 10.0,
            overfit_images: 20,
            overfit_steps: 300,
            overfit_val_chance: 1.25,
            update_low: 3e-5,
            update_high: 3e-2,
            min_epochs: 3,
            window: 3,
            gap: 0.05,
            memorized: 0.99,
            val_rise: 0.05,
            flat: 0.05,
            improving: 0.01,
            underfit_acc: 0.9,
            spike: 2.0,
            oscillation: 0.3,
        }
    }
}

impl Thresholds {
    /// Reads a TOML file of any of the fields; unknown keys are errors that name them.
    pub fn from_toml(path: &Path) -> Result<Self> {
        crate::train::config::read_toml(path)
    }
}

/// Writes `value` as pretty JSON to `path`.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::state("json", e.to_string()))?;
    crate::checkpoint::write_atomic(path, text.as_bytes())
}
