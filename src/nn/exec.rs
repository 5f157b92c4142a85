//! The fused execution of a [`Sequential`]: a pass over its children lists the steps
//! (which children run together in one kernel, [`Step`]), and a loop runs them.
//!
//! The pass looks only at the children's types and states through their [`Fuse`] side:
//! - training: a convolution followed by a normalization with batch statistics computes
//!   the moments of its output planes for it ([`Step::Moments`]);
//! - eval: a normalization with running statistics folds into the convolution before it
//!   ([`Step::Folded`]), with the ReLUs and a max pool after it applied to each image's
//!   output while it is in cache when there is one ([`Step::FoldedPooled`]);
//! - everything else runs on its own ([`Step::Layer`]).
//!
//! A fused kernel may still decline at run time (channels that do not match, an input
//! the layer rejects): the loop then runs the same children one fusion less (pooled →
//! folded → apart), with the same numbers (or the error of the layer that rejects it). Backward
//! has its own list ([`backward_steps`]): which layer applies each ReLU's mask.
//!
//! [`Fuse`]: super::Fuse

use super::{ChannelAffine, Layer, Mode, ReluOutput, Sequential};
use crate::error::Result;
use crate::profile::{self, Phase};
use crate::tensor::Tensor;

/// One step of a fused forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Child `i` on its own.
    Layer(usize),
    /// Child `i` (a convolution) hands the moments of its output planes to child `i + 1`
    /// (a normalization with batch statistics).
    Moments(usize),
    /// Child `i + 1` (an eval-mode normalization, with its absorbed ReLU) folded into the
    /// weights of child `i` (a convolution).
    Folded(usize),
    /// [`Step::Folded`], then the children up to `pool` (pass-through or plain ReLUs,
    /// then a max pool) on each image's output in the convolution's pass; `relu`
    /// whether one applies.
    FoldedPooled {
        /// The convolution.
        conv: usize,
        /// The max pool.
        pool: usize,
        /// Whether a ReLU comes before the pool.
        relu: bool,
    },
}

/// The pass: the steps of a forward of `layers` in `mode`.
pub fn forward_steps(layers: &[(String, Box<dyn Layer>)], mode: Mode) -> Vec<Step> {
    let mut steps = vec![];
    let mut i = 0;
    while i < layers.len() {
        let this = layers[i].1.as_ref();
        let next = layers.get(i + 1).map(|(_, l)| l.as_ref());
        if mode == Mode::Eval && this.folds_affine() {
            if let Some(a) = next.and_then(|l| l.eval_affine()) {
                let mut relu = a.relu;
                let mut j = i + 2;
                while let Some((_, l)) = layers.get(j) {
                    match l.relu_output() {
                        ReluOutput::PassThrough => {}
                        ReluOutput::Applies if l.is_relu() => relu = true,
                        _ => break,
                    }
                    j += 1;
                }
                if layers
                    .get(j)
                    .is_some_and(|(_, l)| l.eval_max_pool().is_some())
                {
                    steps.push(Step::FoldedPooled {
                        conv: i,
                        pool: j,
                        relu,
                    });
                    i = j + 1;
                } else {
                    steps.push(Step::Folded(i));
                    i += 2;
                }
                continue;
            }
        }
        if mode != Mode::Eval && this.gives_moments() && next.is_some_and(|l| l.takes_moments(mode))
        {
            steps.push(Step::Moments(i));
            i += 2;
            continue;
        }
        steps.push(Step::Layer(i));
        i += 1;
    }
    steps
}

/// The backward list: for each child from the last, `(i, premasked, mask_input)` —
/// whether its `dy` is already masked for its own ReLU, and whether it masks its input
/// gradient for the ReLU before it ([`super::Fuse::backward_relu`]). `premasked_last`:
/// the caller masked `dy` for the last child's ReLU; `mask_first`: the first child
/// masks for a ReLU before the container.
pub fn backward_steps(
    layers: &[(String, Box<dyn Layer>)],
    premasked_last: bool,
    mask_first: bool,
) -> Vec<(usize, bool, bool)> {
    let owner = |i: usize| relu_mask_owner(layers, i);
    let n = layers.len();
    let mut premasked: Option<usize> = n.checked_sub(1).filter(|_| premasked_last);
    let mut steps = Vec::with_capacity(n);
    for i in (0..n).rev() {
        let o = owner(i);
        let mask_here = (o.is_some() || (i == 0 && mask_first)) && layers[i].1.masks_relu_input();
        let pre = premasked == Some(i);
        steps.push((i, pre, mask_here));
        if mask_here {
            premasked = o;
        } else if pre {
            premasked = None;
        }
    }
    steps
}

/// The layer that applies the ReLU mask of layer `i`'s input, when that input is a
/// ReLU's output: the layer before, or the one before a run of pass-through ReLUs.
pub(super) fn relu_mask_owner(layers: &[(String, Box<dyn Layer>)], i: usize) -> Option<usize> {
    let mut j = i.checked_sub(1)?;
    loop {
        match layers[j].1.relu_output() {
            ReluOutput::Applies => return Some(j),
            ReluOutput::PassThrough => j = j.checked_sub(1)?,
            ReluOutput::No => return None,
        }
    }
}

impl Sequential {
    /// The fused forward steps in `mode`, one line each with the children's names
    /// (`conv1 + bn1 (moments)`), for summaries and tests.
    pub fn execution(&self, mode: Mode) -> Vec<String> {
        let name = |i: usize| self.layers[i].0.as_str();
        forward_steps(&self.layers, mode)
            .into_iter()
            .map(|s| match s {
                Step::Layer(i) => name(i).to_string(),
                Step::Moments(i) => format!("{} + {} (moments)", name(i), name(i + 1)),
                Step::Folded(i) => format!("{} + {} (folded)", name(i), name(i + 1)),
                Step::FoldedPooled { conv, pool, .. } => {
                    let all: Vec<&str> = (conv..=pool).map(name).collect();
                    format!("{} (folded, pooled)", all.join(" + "))
                }
            })
            .collect()
    }

    /// Runs child `i` on its own.
    fn run_layer(&mut self, i: usize, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (name, layer) = &mut self.layers[i];
        profile::layer(name, layer.as_mut(), Phase::Forward, |l| l.forward(x, mode))
    }

    /// Lists children `range` in profiles with no time of their own (run inside another's
    /// kernel).
    fn ride_along(&mut self, range: std::ops::RangeInclusive<usize>) {
        for (name, l) in &mut self.layers[range] {
            profile::layer(name, l.as_mut(), Phase::Forward, |_| ());
        }
    }

    /// [`Step::Folded`] of child `i`, or `None` when the convolution declines.
    fn run_folded(&mut self, i: usize, x: &Tensor, a: &ChannelAffine) -> Option<Result<Tensor>> {
        let (name, layer) = &mut self.layers[i];
        let y = profile::layer(name, layer.as_mut(), Phase::Forward, |l| {
            l.forward_folded(x, a)
        })?;
        self.ride_along(i + 1..=i + 1);
        Some(y)
    }

    /// Runs one step; a fused kernel that declines runs one fusion less.
    fn run_step(&mut self, step: Step, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match step {
            Step::Layer(i) => self.run_layer(i, x, mode),
            Step::Moments(i) => {
                let (name, layer) = &mut self.layers[i];
                let out = profile::layer(name, layer.as_mut(), Phase::Forward, |l| {
                    l.forward_moments(x, mode)
                });
                let Some(out) = out else {
                    let y = self.run_layer(i, x, mode)?;
                    return self.run_layer(i + 1, &y, mode);
                };
                let (y, m) = out?;
                let (name, norm) = &mut self.layers[i + 1];
                profile::layer(name, norm.as_mut(), Phase::Forward, |l| {
                    l.forward_with_moments(&y, mode, &m)
                        .unwrap_or_else(|| l.forward(&y, mode))
                })
            }
            Step::Folded(i) => {
                let folded = match self.layers[i + 1].1.eval_affine() {
                    Some(a) => self.run_folded(i, x, &a),
                    None => None,
                };
                match folded {
                    Some(y) => y,
                    None => {
                        let y = self.run_layer(i, x, mode)?;
                        self.run_layer(i + 1, &y, mode)
                    }
                }
            }
            Step::FoldedPooled { conv, pool, relu } => {
                let a = self.layers[conv + 1].1.eval_affine();
                if let (Some(a), Some(cfg)) = (a, self.layers[pool].1.eval_max_pool()) {
                    let pooled = ChannelAffine { relu, ..a };
                    let (name, layer) = &mut self.layers[conv];
                    let y = profile::layer(name, layer.as_mut(), Phase::Forward, |l| {
                        l.forward_folded_pooled(x, &pooled, &cfg)
                    });
                    if let Some(y) = y {
                        self.ride_along(conv + 1..=pool);
                        return y;
                    }
                }
                let mut h = self.run_step(Step::Folded(conv), x, mode)?;
                for j in conv + 2..=pool {
                    h = self.run_layer(j, &h, mode)?;
                }
                Ok(h)
            }
        }
    }

    /// The forward: the pass's steps, in order.
    pub(super) fn forward_fused(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h: Option<Tensor> = None;
        for step in forward_steps(&self.layers, mode) {
            let y = self.run_step(step, h.as_ref().unwrap_or(x), mode)?;
            h = Some(y);
        }
        Ok(h.unwrap_or_else(|| x.clone()))
    }

    /// The backward by [`backward_steps`].
    pub(super) fn backward_fused(
        &mut self,
        dy: &Tensor,
        premasked_last: bool,
        mask_first: bool,
    ) -> Result<Tensor> {
        let d = self.walk_backward(dy, premasked_last, mask_first, None)?;
        Ok(d.unwrap_or_else(|| dy.clone()))
    }

    /// [`Layer::backward_params`] by [`backward_steps`]: the children after the first
    /// trainable one as in [`Sequential::backward_fused`] (ReLU masks moved across
    /// their boundaries), that one by its own `backward_params`, none before it. A
    /// first child handed a premasked `dy` masks it again, which changes nothing.
    pub(super) fn backward_params_fused(&mut self, dy: &Tensor) -> Result<()> {
        let first = self
            .layers
            .iter_mut()
            .position(|(_, l)| super::sequential::has_trainable(l.as_mut()));
        match first {
            Some(f) => self.walk_backward(dy, false, false, Some(f)).map(|_| ()),
            None => Ok(()),
        }
    }

    /// The children's backward passes in the order of [`backward_steps`]; at child
    /// `params_at` its `backward_params` and a stop (`None`). `None` also for no children.
    fn walk_backward(
        &mut self,
        dy: &Tensor,
        premasked_last: bool,
        mask_first: bool,
        params_at: Option<usize>,
    ) -> Result<Option<Tensor>> {
        let mut d: Option<Tensor> = None;
        for (i, pre, mask) in backward_steps(&self.layers, premasked_last, mask_first) {
            let g = d.as_ref().unwrap_or(dy);
            let (name, layer) = &mut self.layers[i];
            if params_at == Some(i) {
                profile::layer(name, layer.as_mut(), Phase::Backward, |l| {
                    l.backward_params(g)
                })?;
                return Ok(None);
            }
            let out = profile::layer(name, layer.as_mut(), Phase::Backward, |l| {
                if pre || mask {
                    l.backward_relu(g, pre, mask)
                } else {
                    l.backward(g)
                }
            })?;
            d = Some(out);
        }
        Ok(d)
    }
}
