//! The hook of `strata train`: progress to the [`Observer`] after every step, and an
//! `iter` line in the history every `log_every` steps.

use super::history::{History, Record};
use super::trainer::{Control, Hook, StepInfo, StepResult};
use super::{IterProgress, Observer, TrainConfig};
use crate::error::Error;
use std::time::Instant;

/// Progress and history of one epoch.
pub(super) struct RunLog<'a> {
    obs: &'a mut dyn Observer,
    history: &'a History,
    epochs: u64,
    per_epoch: u64,
    log_every: u64,
    time0: f64,
    start: Instant,
    t_epoch: Instant,
    /// Epoch totals: loss × images, correct, images.
    epoch: (f64, u64, u64),
    /// The same since the last history line, and when that window began.
    window: (f64, u64, u64),
    t_window: Instant,
    /// The first error (writing the history); training stops on it.
    pub(super) error: Option<Error>,
    /// Whether the observer asked to stop.
    pub(super) interrupted: bool,
}

impl<'a> RunLog<'a> {
    pub(super) fn new(
        obs: &'a mut dyn Observer,
        history: &'a History,
        cfg: &TrainConfig,
        per_epoch: u64,
        time0: f64,
        start: Instant,
    ) -> Self {
        RunLog {
            obs,
            history,
            epochs: cfg.epochs,
            per_epoch,
            log_every: cfg.log_every,
            time0,
            start,
            t_epoch: Instant::now(),
            epoch: (0.0, 0, 0),
            window: (0.0, 0, 0),
            t_window: Instant::now(),
            error: None,
            interrupted: false,
        }
    }
}

impl Hook for RunLog<'_> {
    fn after_step(&mut self, s: &StepInfo, r: &StepResult) -> Control {
        let n = r.images;
        for t in [&mut self.epoch, &mut self.window] {
            t.0 += r.loss * n as f64;
            t.1 += r.correct;
            t.2 += n;
        }
        let (loss, correct, seen) = self.epoch;
        let secs = self.t_epoch.elapsed().as_secs_f64();
        self.obs.iteration(&IterProgress {
            epoch: s.epoch + 1,
            epochs: self.epochs,
            iteration: s.iteration + 1,
            iterations: self.per_epoch,
            loss: loss / seen as f64,
            acc: correct as f64 / seen as f64,
            images_per_s: seen as f64 / secs.max(1e-9),
            lr: s.lr,
        });
        let step = s.step + 1;
        if step.is_multiple_of(self.log_every) {
            let (w_loss, w_correct, w_seen) = self.window;
            let line = Record {
                kind: "iter".into(),
                epoch: s.epoch + 1,
                step,
                lr: s.lr,
                train_loss: w_loss / w_seen as f64,
                train_acc: w_correct as f64 / w_seen as f64,
                val_loss: None,
                val_acc: None,
                time_s: self.time0 + self.start.elapsed().as_secs_f64(),
                images_per_s: w_seen as f64 / self.t_window.elapsed().as_secs_f64().max(1e-9),
            };
            if let Err(e) = self.history.append(&line) {
                self.error = Some(e);
                return Control::Stop;
            }
            self.window = (0.0, 0, 0);
            self.t_window = Instant::now();
        }
        if self.obs.should_stop() {
            self.interrupted = true;
            return Control::Stop;
        }
        Control::Continue
    }
}
