//! `strata train --watch N`: every N optimizer steps, one line of `watch.jsonl` with,
//! per layer, the output's statistics (mean, std, zeros, dead channels, saturation; see
//! [`super::stats`]) and, per weight, ‖W‖, ‖∂L/∂W‖ and the update ratio ‖ΔW‖/‖W‖ of
//! that step (CS231n's rule of thumb: about 1e-3; far below, the layer barely learns;
//! far above, the steps are too large for it).
//!
//! The cost falls on the watched steps only: that step's forward runs layer by layer
//! keeping a copy of every output, and the weights are copied once to measure the
//! update (measured in BENCHMARKS.md). The record of step s is written when step s+1
//! has its gradients, that is once the update of step s is known.

use super::stats::{self, ActStats, ParamStats};
use super::trainer::{ForwardView, Hook, StepInfo};
use crate::error::{Error, Result};
use crate::models::Model;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of `watch.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchRecord {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Optimizer steps before this one.
    pub step: u64,
    /// Learning rate of the step.
    pub lr: f32,
    /// Every layer's output, in forward order.
    pub acts: Vec<ActStats>,
    /// Every weight (convolutions, linear layers), in model order.
    pub params: Vec<ParamStats>,
}

/// The hook: give it to [`super::Trainer::epoch`] with the others.
pub struct Watch {
    every: u64,
    path: PathBuf,
    units: BTreeMap<String, stats::Unit>,
    pending: Option<(WatchRecord, BTreeMap<String, Vec<f32>>)>,
    acts: Vec<ActStats>,
    /// The first error writing the file (the run reports it after the epoch).
    pub error: Option<Error>,
}

impl Watch {
    /// Watches `model` every `every` steps into `path`.
    pub fn new(model: &mut Model, every: u64, path: &Path) -> Watch {
        Watch {
            every: every.max(1),
            path: path.to_path_buf(),
            units: stats::units(&mut model.net),
            pending: None,
            acts: vec![],
            error: None,
        }
    }

    /// Keeps only the records of steps before `step` (resuming from that step).
    pub fn truncate(path: &Path, step: u64) -> Result<()> {
        let kept: Vec<WatchRecord> = read(path)?.into_iter().filter(|r| r.step < step).collect();
        let mut text = String::new();
        for r in &kept {
            text.push_str(&line(r)?);
        }
        crate::checkpoint::write_atomic(path, text.as_bytes())
    }

    fn write(&mut self, r: &WatchRecord) {
        let result = line(r).and_then(|l| {
            let io = |source| Error::Io {
                path: self.path.clone(),
                source,
            };
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            f.write_all(l.as_bytes()).map_err(io)
        });
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }

    /// Writes the record still waiting for its update (the last watched step of a run).
    pub fn finish(&mut self) {
        if let Some((r, _)) = self.pending.take() {
            self.write(&r);
        }
    }
}

fn line(r: &WatchRecord) -> Result<String> {
    serde_json::to_string(r)
        .map(|s| s + "\n")
        .map_err(|e| Error::state("watch", e.to_string()))
}

/// Every record of a `watch.jsonl` (none when the file does not exist).
pub fn read(path: &Path) -> Result<Vec<WatchRecord>> {
    super::history::read_jsonl(path, "watch record")
}

impl Hook for Watch {
    fn wants_activations(&self, s: &StepInfo) -> bool {
        s.step.is_multiple_of(self.every)
    }

    fn after_forward(&mut self, _s: &StepInfo, f: &ForwardView) {
        if let Some(acts) = f.activations {
            self.acts = stats::all_act_stats(acts, &self.units);
        }
    }

    fn after_backward(&mut self, s: &StepInfo, model: &mut Model) {
        // The previous watched step's update is now known.
        if let Some((mut r, before)) = self.pending.take() {
            let ratios = stats::update_ratios(&mut model.net, &before);
            for p in &mut r.params {
                p.update_ratio = ratios.get(&p.name).copied();
            }
            self.write(&r);
        }
        if s.step.is_multiple_of(self.every) {
            let record = WatchRecord {
                epoch: s.epoch + 1,
                step: s.step,
                lr: s.lr,
                acts: std::mem::take(&mut self.acts),
                params: stats::param_stats(&mut model.net),
            };
            self.pending = Some((record, stats::snapshot(&mut model.net)));
        }
    }
}
