//! [`Trainer`]: the training step, the epoch and the evaluation, with hooks.
//!
//! A `Trainer` owns what one training run changes — the model, the optimizer, the loss
//! and the step count — and nothing about files: `strata train` ([`super::run`]) adds
//! the run folder, checkpoints and history around it, and an LR finder, a sanity check,
//! a search trial or an activation study can drive the same step with its own loop.
//!
//! One step, [`Trainer::step`]:
//! 1. the learning rate of the step from the schedule (a function of the step count);
//! 2. gradients zeroed, forward in [`Mode::Train`] — traced leaf by leaf when a hook asks
//!    for activations ([`Hook::wants_activations`]), fused otherwise (the same numbers);
//! 3. the loss; a non-finite loss is [`Error::Diverged`] before any weight changes;
//!    [`Hook::after_forward`];
//! 4. backward (only the parameter gradients: the input is data), gradient clipping;
//!    [`Hook::after_backward`] sees the gradients before the optimizer uses them;
//! 5. the optimizer step, the step count + 1; [`Hook::after_step`], which may stop.
//!
//! The convolutions' precision is the trainer's ([`Trainer::precision`]), set on the
//! model's convolutions ([`nn::set_precision`]) at each call.

use super::metrics::Confusion;
use super::tta::Tta;
use crate::data::{Batch, Loader};
use crate::error::{Error, Result};
use crate::kernels::bf16::Precision;
use crate::loss::CrossEntropy;
use crate::models::Model;
use crate::nn::{self, Layer, Mode};
use crate::optim::{clip_grad_norm, LrSchedule, Optimizer};
use crate::tensor::Tensor;
use std::time::Instant;

/// Where a step is: the epoch and iteration it belongs to, and its learning rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// Epoch index, from 0.
    pub epoch: u64,
    /// Iteration in the epoch, from 0.
    pub iteration: u64,
    /// Optimizer steps taken before this one.
    pub step: u64,
    /// Learning rate of this step.
    pub lr: f32,
}

/// What one step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepResult {
    /// Mean loss of the batch (with label smoothing, when set).
    pub loss: f64,
    /// Correctly classified images of the batch (before the update).
    pub correct: u64,
    /// Images in the batch.
    pub images: u64,
    /// Global gradient norm before clipping, when clipping is on.
    pub grad_norm: Option<f32>,
}

/// The forward pass of a step, as hooks see it.
pub struct ForwardView<'a> {
    /// The batch.
    pub batch: &'a Batch,
    /// The network's output.
    pub logits: &'a Tensor,
    /// The mean loss.
    pub loss: f64,
    /// Every leaf's output under its state-dict path, in forward order, when a hook
    /// asked for them ([`Hook::wants_activations`]).
    pub activations: Option<&'a [(String, Tensor)]>,
}

/// Whether training goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this step (an epoch ends early; [`EpochStats::stopped`] is set).
    Stop,
}

/// Observes (and may stop) training. Every method has a default that does nothing.
pub trait Hook {
    /// Whether the next step's forward should record every layer's output
    /// ([`ForwardView::activations`]); costs one copy of every activation.
    fn wants_activations(&self, _s: &StepInfo) -> bool {
        false
    }
    /// After the forward pass and the loss, before backward.
    fn after_forward(&mut self, _s: &StepInfo, _f: &ForwardView) {}
    /// After backward (and clipping), before the optimizer step: the gradients are in
    /// the model's parameters ([`Layer::visit_params`], `Param::grad`).
    fn after_backward(&mut self, _s: &StepInfo, _model: &mut Model) {}
    /// After the optimizer step.
    fn after_step(&mut self, _s: &StepInfo, _r: &StepResult) -> Control {
        Control::Continue
    }
}

/// Totals of one epoch ([`Trainer::epoch`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// Epoch index, from 0.
    pub epoch: u64,
    /// Mean training loss over the epoch's images.
    pub loss: f64,
    /// Training accuracy.
    pub acc: f64,
    /// Images seen.
    pub images: u64,
    /// Steps taken.
    pub steps: u64,
    /// Learning rate of the last step.
    pub lr: f32,
    /// Wall seconds of the epoch's training.
    pub seconds: f64,
    /// Whether a hook stopped the epoch early.
    pub stopped: bool,
}

/// The model, the optimizer and its schedule, the loss, and the count of steps taken.
pub struct Trainer {
    /// The network.
    pub model: Model,
    /// The optimizer (its state: momenta, Adam moments).
    pub optimizer: Optimizer,
    /// Learning rate as a function of the step.
    pub schedule: LrSchedule,
    /// The training loss.
    pub loss: CrossEntropy,
    /// Clip the global gradient norm to this value.
    pub clip_grad: Option<f32>,
    /// Products of the convolutions.
    pub precision: Precision,
    /// Optimizer steps taken (the schedule's position).
    pub step: u64,
    /// Seed of the per-epoch randomness of the layers (dropout masks).
    pub seed: u64,
}

/// The seed of epoch `epoch`'s layer randomness: a pure function of `(seed, epoch)`, so
/// that a resumed run draws what an uninterrupted one would.
pub fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    let mut z = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 27)
}

impl Trainer {
    /// A trainer at step 0 (f32, plain cross-entropy, no clipping, seed 0).
    pub fn new(model: Model, optimizer: Optimizer, schedule: LrSchedule) -> Self {
        Trainer {
            model,
            optimizer,
            schedule,
            loss: CrossEntropy::default(),
            clip_grad: None,
            precision: Precision::F32,
            step: 0,
            seed: 0,
        }
    }

    /// The number of classes the model predicts.
    pub fn classes(&self) -> usize {
        self.model.config.classes
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f32 {
        self.schedule.lr(self.step)
    }

    /// One optimizer step on `batch`; `epoch` and `iteration` only label it for hooks.
    pub fn step(
        &mut self,
        batch: &Batch,
        epoch: u64,
        iteration: u64,
        hooks: &mut [&mut dyn Hook],
    ) -> Result<(StepResult, Control)> {
        nn::set_precision(&mut self.model, self.precision);
        self.step_in(batch, epoch, iteration, hooks)
    }

    fn step_in(
        &mut self,
        batch: &Batch,
        epoch: u64,
        iteration: u64,
        hooks: &mut [&mut dyn Hook],
    ) -> Result<(StepResult, Control)> {
        let info = StepInfo {
            epoch,
            iteration,
            step: self.step,
            lr: self.schedule.lr(self.step),
        };
        nn::zero_grad(&mut self.model);
        let trace = hooks.iter().any(|h| h.wants_activations(&info));
        let mut acts: Vec<(String, Tensor)> = vec![];
        let logits = if trace {
            nn::forward_traced(
                &mut self.model.net,
                &batch.x,
                Mode::Train,
                "",
                &mut |n, t| acts.push((n.to_string(), t.clone())),
            )?
        } else {
            self.model.forward(&batch.x, Mode::Train)?
        };
        let out = self.loss.forward(&logits, &batch.y)?;
        if !out.loss.is_finite() {
            return Err(Error::Diverged {
                loss: out.loss,
                epoch: epoch + 1,
                iteration: iteration + 1,
                step: self.step,
                lr: info.lr,
            });
        }
        let view = ForwardView {
            batch,
            logits: &logits,
            loss: out.loss,
            activations: trace.then_some(acts.as_slice()),
        };
        for h in hooks.iter_mut() {
            h.after_forward(&info, &view);
        }
        drop(acts);
        self.model.net.backward_params(&out.dlogits)?;
        let grad_norm = self.clip_grad.map(|c| clip_grad_norm(&mut self.model, c));
        for h in hooks.iter_mut() {
            h.after_backward(&info, &mut self.model);
        }
        self.optimizer.step(&mut self.model, info.lr);
        self.step += 1;
        let mut conf = Confusion::new(self.classes());
        conf.add_logits(logits.data(), &batch.y);
        let result = StepResult {
            loss: out.loss,
            correct: conf.correct(),
            images: batch.y.len() as u64,
            grad_norm,
        };
        let mut control = Control::Continue;
        for h in hooks.iter_mut() {
            if h.after_step(&info, &result) == Control::Stop {
                control = Control::Stop;
            }
        }
        Ok((result, control))
    }

    /// One epoch over `loader` (its shuffle and augmentation of epoch `epoch`), the
    /// layers reseeded for the epoch first. Stops early when a hook says so.
    pub fn epoch(
        &mut self,
        loader: &Loader,
        epoch: u64,
        hooks: &mut [&mut dyn Hook],
    ) -> Result<EpochStats> {
        self.model.reseed(epoch_seed(self.seed, epoch));
        let t = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut steps) = (0.0f64, 0u64, 0u64, 0u64);
        let mut lr = self.lr();
        let mut stopped = false;
        for (it, batch) in loader.epoch(epoch).enumerate() {
            lr = self.lr();
            let (r, control) = self.step(&batch, epoch, it as u64, hooks)?;
            loss_sum += r.loss * r.images as f64;
            correct += r.correct;
            seen += r.images;
            steps += 1;
            if control == Control::Stop {
                stopped = true;
                break;
            }
        }
        Ok(EpochStats {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            acc: correct as f64 / seen.max(1) as f64,
            images: seen,
            steps,
            lr,
            seconds: t.elapsed().as_secs_f64(),
            stopped,
        })
    }

    /// Plain cross-entropy and the confusion matrix of the model over `loader`, in
    /// [`Mode::Eval`].
    pub fn evaluate(&mut self, loader: &Loader) -> Result<(f64, Confusion)> {
        let classes = self.classes();
        nn::set_precision(&mut self.model, self.precision);
        evaluate(&mut self.model, loader, classes)
    }

    /// [`Trainer::evaluate`] with the views of `tta` averaged ([`super::tta`]).
    pub fn evaluate_tta(&mut self, loader: &Loader, tta: Tta) -> Result<(f64, Confusion)> {
        let classes = self.classes();
        nn::set_precision(&mut self.model, self.precision);
        evaluate_tta(&mut self.model, loader, classes, tta)
    }
}

/// [`evaluate`] with the views of `tta` averaged ([`super::tta`]; [`Tta::None`] is
/// [`evaluate`]).
pub fn evaluate_tta(
    model: &mut dyn Layer,
    loader: &Loader,
    classes: usize,
    tta: Tta,
) -> Result<(f64, Confusion)> {
    match tta {
        Tta::None => evaluate(model, loader, classes),
        Tta::Flip => super::tta::evaluate_flip(model, loader, classes),
    }
}

/// Loss (plain cross-entropy) and confusion matrix of `model` over `loader`, in
/// [`Mode::Eval`], at the precision its convolutions are set to.
pub fn evaluate(
    model: &mut dyn Layer,
    loader: &Loader,
    classes: usize,
) -> Result<(f64, Confusion)> {
    let ce = CrossEntropy::default();
    let mut conf = Confusion::new(classes);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for batch in loader.epoch(0) {
        let logits = model.forward(&batch.x, Mode::Eval)?;
        let out = ce.forward(&logits, &batch.y)?;
        sum += out.loss * batch.y.len() as f64;
        n += batch.y.len();
        conf.add_logits(logits.data(), &batch.y);
    }
    Ok((sum / n.max(1) as f64, conf))
}
