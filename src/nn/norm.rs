//! Normalization layers: `BatchNorm2d`, `GroupNorm`, `PerChannelLayerNorm`, `InstanceNorm2d`.
//!
//! One idea, four reductions (the lecture's picture), one kernel
//! ([`crate::kernels::norm`]):
//!
//! `y = γ_c · (x − μ) / √(σ² + eps) + β_c`
//!
//! Where: `μ, σ²` are the mean and *biased* variance over
//! - BatchNorm2d: `(N, H, W)` for each channel (in training; running estimates in eval),
//! - GroupNorm(G): `(C/G, H, W)` for each sample and group of channels,
//! - PerChannelLayerNorm: `(C, H, W)` for each sample (GroupNorm with G = 1),
//! - InstanceNorm2d: `(H, W)` for each sample and channel (GroupNorm with G = C);
//!
//! and `γ, β` are learnable per channel (`weight`, `bias` in the state dict).
//!
//! Shapes: `x: [N, C, H, W] -> y: [N, C, H, W]`, `γ, β: [C]`.
//!
//! PyTorch: eps defaults to 1e-5 and BatchNorm momentum to 0.1, with
//! `running = (1 − momentum)·running + momentum·batch`, the running variance taking the
//! *unbiased* batch variance (`σ²·M/(M−1)`), as `torch.nn.BatchNorm2d` does; the
//! normalization itself uses the biased one. `PerChannelLayerNorm` is `nn.GroupNorm(1, C)`:
//! per-channel `γ, β` as in the lecture's formula; PyTorch's `nn.LayerNorm([C, H, W])`,
//! with one `γ, β` per element, is [`super::LayerNorm`]. `InstanceNorm2d` defaults to `affine = true`, unlike
//! PyTorch (`false`), because every normalization of the lecture has learnable scale
//! and shift; it never tracks running statistics. The lecture writes BatchNorm per
//! position; for convolutions the standard reduction (PyTorch's) is over `N, H, W`.
//! Reference: Ioffe & Szegedy 2015 (BN), Ba et al. 2016 (LN), Ulyanov et al. 2016 (IN),
//! Wu & He 2018 (GN).

use super::fuse::Fuse;
use super::{check_dy, join, no_cache, ChannelAffine, Layer, Mode, Param, ReluOutput};
use crate::error::{Error, Result};
use crate::kernels::norm::{
    norm_apply, norm_backward, norm_stats, norm_stats_from, NormAxes, NormDims,
};
use crate::tensor::Tensor;

/// What backward needs from the forward pass.
#[derive(Debug)]
struct NormCache {
    x: Tensor,
    dims: NormDims,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    /// Whether `mean`/`rstd` were computed from `x` (false: running statistics).
    batch_stats: bool,
    /// The output, when a ReLU is fused into this layer (its mask for backward).
    relu_out: Option<Tensor>,
}

/// The part every normalization layer shares: the affine parameters and the cache.
#[derive(Debug)]
struct NormCore {
    layer: &'static str,
    channels: usize,
    eps: f32,
    weight: Option<Param>,
    bias: Option<Param>,
    cache: Option<NormCache>,
    /// A following ReLU applied in the same pass (see [`Layer::absorb_relu`]).
    relu: bool,
}

impl NormCore {
    fn new(layer: &'static str, channels: usize, eps: f32, affine: bool) -> Result<Self> {
        if channels == 0 {
            return Err(Error::config(layer, "num_channels", "must be ≥ 1"));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::config(
                layer,
                "eps",
                format!("must be a positive number, got {eps}"),
            ));
        }
        Ok(NormCore {
            layer,
            channels,
            eps,
            weight: affine.then(|| Param::new(Tensor::full(&[channels], 1.0))),
            bias: affine.then(|| Param::new(Tensor::zeros(&[channels]))),
            cache: None,
            relu: false,
        })
    }

    fn dims(&self, x: &Tensor) -> Result<NormDims> {
        match *x.shape() {
            [n, c, h, w] if c == self.channels => Ok(NormDims { n, c, hw: h * w }),
            _ => Err(Error::shape(
                self.layer,
                format!("[N, {}, H, W]", self.channels),
                x.shape(),
            )),
        }
    }

    /// Normalizes with the given statistics and keeps the cache in training.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        axes: NormAxes,
        x: &Tensor,
        d: NormDims,
        mean: Vec<f32>,
        rstd: Vec<f32>,
        batch_stats: bool,
        mode: Mode,
    ) -> Tensor {
        let mut y = Tensor::for_overwrite(x.shape());
        norm_apply(
            axes,
            d,
            x.data(),
            &mean,
            &rstd,
            self.weight.as_ref().map(|p| p.value.data()),
            self.bias.as_ref().map(|p| p.value.data()),
            self.relu,
            y.data_mut(),
        );
        self.cache = mode.caches().then(|| NormCache {
            x: x.clone(),
            dims: d,
            mean,
            rstd,
            batch_stats,
            relu_out: self.relu.then(|| y.clone()),
        });
        y
    }

    /// Batch statistics of `x`: `(mean, biased var)`.
    /// Batch statistics of `x`, from the moments of its planes when given (and of the
    /// right count; computed here otherwise).
    fn stats(
        axes: NormAxes,
        x: &Tensor,
        d: NormDims,
        moments: Option<&[(f64, f64)]>,
    ) -> (Vec<f32>, Vec<f32>) {
        let k = axes.stat_count(d);
        let (mut mean, mut var) = (vec![0.0; k], vec![0.0; k]);
        match moments.filter(|m| m.len() == d.n * d.c) {
            Some(m) => norm_stats_from(axes, d, m, &mut mean, &mut var),
            None => norm_stats(axes, d, x.data(), &mut mean, &mut var),
        }
        (mean, var)
    }

    fn rstd(&self, var: &[f32]) -> Vec<f32> {
        var.iter()
            .map(|&v| (1.0 / (v as f64 + self.eps as f64).sqrt()) as f32)
            .collect()
    }

    /// [`ReluOutput::Applies`] with a ReLU absorbed.
    fn relu_output(&self) -> ReluOutput {
        if self.relu {
            ReluOutput::Applies
        } else {
            ReluOutput::No
        }
    }

    /// The backward; with `premasked`, `dy` is already zero where the fused ReLU's
    /// output is 0 and its mask is skipped.
    fn backward(&mut self, axes: NormAxes, dy: &Tensor, premasked: bool) -> Result<Tensor> {
        let c = self.cache.as_ref().ok_or_else(|| no_cache(self.layer))?;
        check_dy(self.layer, dy, c.x.shape())?;
        let mut dx = Tensor::for_overwrite(dy.shape());
        let (gamma, dgamma) = match self.weight.as_mut() {
            Some(p) => (Some(p.value.data()), Some(p.grad.data_mut())),
            None => (None, None),
        };
        norm_backward(
            axes,
            c.dims,
            c.batch_stats,
            c.x.data(),
            &c.mean,
            &c.rstd,
            gamma,
            c.relu_out.as_ref().filter(|_| !premasked).map(|y| y.data()),
            dy.data(),
            dx.data_mut(),
            dgamma,
            self.bias.as_mut().map(|p| p.grad.data_mut()),
        );
        Ok(dx)
    }

    fn param_count(&self) -> usize {
        self.weight.as_ref().map_or(0, |p| p.value.len())
            + self.bias.as_ref().map_or(0, |p| p.value.len())
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        if let Some(w) = self.weight.as_mut() {
            f(&join(prefix, "weight"), w);
        }
        if let Some(b) = self.bias.as_mut() {
            f(&join(prefix, "bias"), b);
        }
    }
}

/// Batch normalization over `(N, H, W)` per channel, with running statistics.
#[derive(Debug)]
pub struct BatchNorm2d {
    core: NormCore,
    momentum: f32,
    freeze_stats: bool,
    /// `[C]`, the running mean used in eval.
    pub running_mean: Tensor,
    /// `[C]`, the running (unbiased) variance used in eval.
    pub running_var: Tensor,
    /// Training steps seen (a float here; an integer in PyTorch's state dict).
    pub num_batches_tracked: Tensor,
}

impl BatchNorm2d {
    /// The forward; batch statistics from the moments of `x`'s planes when given.
    fn forward_impl(
        &mut self,
        x: &Tensor,
        mode: Mode,
        moments: Option<&[(f64, f64)]>,
    ) -> Result<Tensor> {
        let d = self.core.dims(x)?;
        let axes = NormAxes::PerChannel;
        if !mode.trains() || self.freeze_stats {
            let rstd = self.core.rstd(self.running_var.data());
            let mean = self.running_mean.data().to_vec();
            return Ok(self.core.apply(axes, x, d, mean, rstd, false, mode));
        }
        let m = axes.count(d);
        if m <= 1 {
            return Err(Error::shape(
                "BatchNorm2d",
                "more than one value per channel in training (N·H·W > 1); use a larger batch or Mode::Eval",
                x.shape(),
            ));
        }
        let (mean, var) = NormCore::stats(axes, x, d, moments);
        let mo = self.momentum;
        let unbias = m as f32 / (m - 1) as f32;
        for (r, &b) in self.running_mean.data_mut().iter_mut().zip(&mean) {
            *r = (1.0 - mo) * *r + mo * b;
        }
        for (r, &v) in self.running_var.data_mut().iter_mut().zip(&var) {
            *r = (1.0 - mo) * *r + mo * v * unbias;
        }
        self.num_batches_tracked.data_mut()[0] += 1.0;
        let rstd = self.core.rstd(&var);
        Ok(self.core.apply(axes, x, d, mean, rstd, true, mode))
    }

    /// `C` channels, PyTorch defaults: eps 1e-5, momentum 0.1, γ = 1, β = 0.
    pub fn new(channels: usize) -> Result<Self> {
        Self::with_options(channels, 1e-5, 0.1)
    }

    /// With explicit eps and momentum (`0 ≤ momentum ≤ 1`).
    pub fn with_options(channels: usize, eps: f32, momentum: f32) -> Result<Self> {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::config(
                "BatchNorm2d",
                "momentum",
                format!("must be in [0, 1], got {momentum}"),
            ));
        }
        Ok(BatchNorm2d {
            core: NormCore::new("BatchNorm2d", channels, eps, true)?,
            momentum,
            freeze_stats: false,
            running_mean: Tensor::zeros(&[channels]),
            running_var: Tensor::full(&[channels], 1.0),
            num_batches_tracked: Tensor::zeros(&[]),
        })
    }

    /// Use the running statistics also in training mode, without updating them (a
    /// "frozen" BatchNorm, as when fine-tuning a pretrained network with small batches).
    pub fn freeze_stats(&mut self, frozen: bool) {
        self.freeze_stats = frozen;
    }
}

impl Layer for BatchNorm2d {
    fn kind(&self) -> &'static str {
        "BatchNorm2d"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_impl(x, mode, None)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        self.core.backward(NormAxes::PerChannel, dy, false)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        super::expect_nchw("BatchNorm2d", input, self.core.channels)?;
        Ok(input.to_vec())
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.core.visit_params(prefix, f);
    }

    fn own_param_count(&self) -> usize {
        self.core.param_count()
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "running_mean"), &mut self.running_mean);
        f(&join(prefix, "running_var"), &mut self.running_var);
        f(
            &join(prefix, "num_batches_tracked"),
            &mut self.num_batches_tracked,
        );
    }
}

impl Fuse for BatchNorm2d {
    fn eval_affine(&self) -> Option<ChannelAffine> {
        // The eval branch of `forward`: running statistics, the same scale and shift
        // as `norm_apply` computes per channel.
        let rstd = self.core.rstd(self.running_var.data());
        let c = &self.core;
        let scale: Vec<f32> = rstd
            .iter()
            .enumerate()
            .map(|(i, r)| r * c.weight.as_ref().map_or(1.0, |w| w.value.data()[i]))
            .collect();
        let shift = scale
            .iter()
            .zip(self.running_mean.data())
            .enumerate()
            .map(|(i, (s, m))| c.bias.as_ref().map_or(0.0, |b| b.value.data()[i]) - m * s)
            .collect();
        Some(ChannelAffine {
            scale,
            shift,
            relu: c.relu,
        })
    }

    fn takes_moments(&self, mode: Mode) -> bool {
        mode.trains() && !self.freeze_stats
    }

    fn forward_with_moments(
        &mut self,
        x: &Tensor,
        mode: Mode,
        moments: &[(f64, f64)],
    ) -> Option<Result<Tensor>> {
        Some(self.forward_impl(x, mode, Some(moments)))
    }

    fn relu_output(&self) -> ReluOutput {
        self.core.relu_output()
    }

    fn backward_relu(&mut self, dy: &Tensor, premasked: bool, _mask_input: bool) -> Result<Tensor> {
        let skip = premasked && self.core.relu;
        self.core.backward(NormAxes::PerChannel, dy, skip)
    }

    fn absorb_relu(&mut self) -> bool {
        self.core.relu = true;
        true
    }
}

/// The shared body of the per-sample normalizations.
#[derive(Debug)]
struct SampleNorm {
    core: NormCore,
    groups: usize,
}

impl SampleNorm {
    fn new(
        layer: &'static str,
        groups: usize,
        channels: usize,
        eps: f32,
        affine: bool,
    ) -> Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::config(
                layer,
                "num_groups",
                format!("{groups} groups must divide {channels} channels"),
            ));
        }
        Ok(SampleNorm {
            core: NormCore::new(layer, channels, eps, affine)?,
            groups,
        })
    }

    fn forward(
        &mut self,
        x: &Tensor,
        mode: Mode,
        moments: Option<&[(f64, f64)]>,
    ) -> Result<Tensor> {
        let d = self.core.dims(x)?;
        let axes = NormAxes::PerSampleGroup(self.groups);
        let (mean, var) = NormCore::stats(axes, x, d, moments);
        let rstd = self.core.rstd(&var);
        Ok(self.core.apply(axes, x, d, mean, rstd, true, mode))
    }

    fn backward(&mut self, dy: &Tensor, premasked: bool) -> Result<Tensor> {
        self.core
            .backward(NormAxes::PerSampleGroup(self.groups), dy, premasked)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        super::expect_nchw(self.core.layer, input, self.core.channels)?;
        Ok(input.to_vec())
    }
}

/// Defines a per-sample normalization layer type around [`SampleNorm`].
macro_rules! sample_norm_layer {
    ($name:ident, $kind:literal) => {
        impl Layer for $name {
            fn kind(&self) -> &'static str {
                $kind
            }
            fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
                self.0.forward(x, mode, None)
            }
            fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
                self.0.backward(dy, false)
            }
            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
                self.0.output_shape(input)
            }
            fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
                self.0.core.visit_params(prefix, f);
            }
            fn own_param_count(&self) -> usize {
                self.0.core.param_count()
            }
        }

        impl Fuse for $name {
            fn takes_moments(&self, _mode: Mode) -> bool {
                true
            }
            fn forward_with_moments(
                &mut self,
                x: &Tensor,
                mode: Mode,
                moments: &[(f64, f64)],
            ) -> Option<Result<Tensor>> {
                Some(self.0.forward(x, mode, Some(moments)))
            }
            fn relu_output(&self) -> ReluOutput {
                self.0.core.relu_output()
            }
            fn backward_relu(
                &mut self,
                dy: &Tensor,
                premasked: bool,
                _mask_input: bool,
            ) -> Result<Tensor> {
                let skip = premasked && self.0.core.relu;
                self.0.backward(dy, skip)
            }
            fn absorb_relu(&mut self) -> bool {
                self.0.core.relu = true;
                true
            }
        }
    };
}

/// Group normalization: statistics over `(C/G, H, W)` per sample and group.
#[derive(Debug)]
pub struct GroupNorm(SampleNorm);

impl GroupNorm {
    /// `G` groups over `C` channels (`G` divides `C`), eps 1e-5, affine.
    pub fn new(groups: usize, channels: usize) -> Result<Self> {
        Self::with_eps(groups, channels, 1e-5)
    }
    /// With an explicit eps.
    pub fn with_eps(groups: usize, channels: usize, eps: f32) -> Result<Self> {
        Ok(GroupNorm(SampleNorm::new(
            "GroupNorm",
            groups,
            channels,
            eps,
            true,
        )?))
    }
}
sample_norm_layer!(GroupNorm, "GroupNorm");

/// Layer normalization over `(C, H, W)` per sample with a per-channel `γ, β` (the
/// lecture's form; `nn.GroupNorm(1, C)`). Models built with `--norm layer` use it.
#[derive(Debug)]
pub struct PerChannelLayerNorm(SampleNorm);

impl PerChannelLayerNorm {
    /// `C` channels, eps 1e-5.
    pub fn new(channels: usize) -> Result<Self> {
        Self::with_eps(channels, 1e-5)
    }
    /// With an explicit eps.
    pub fn with_eps(channels: usize, eps: f32) -> Result<Self> {
        Ok(PerChannelLayerNorm(SampleNorm::new(
            "PerChannelLayerNorm",
            1,
            channels,
            eps,
            true,
        )?))
    }
}
sample_norm_layer!(PerChannelLayerNorm, "PerChannelLayerNorm");

/// Instance normalization over `(H, W)` per sample and channel.
#[derive(Debug)]
pub struct InstanceNorm2d(SampleNorm);

impl InstanceNorm2d {
    /// `C` channels, eps 1e-5, affine (see the module notes on this default).
    pub fn new(channels: usize) -> Result<Self> {
        Self::with_options(channels, 1e-5, true)
    }
    /// With explicit eps and affine.
    pub fn with_options(channels: usize, eps: f32, affine: bool) -> Result<Self> {
        Ok(InstanceNorm2d(SampleNorm::new(
            "InstanceNorm2d",
            channels,
            channels,
            eps,
            affine,
        )?))
    }
}
sample_norm_layer!(InstanceNorm2d, "InstanceNorm2d");

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn eval_batchnorm_is_a_per_channel_affine_map() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut bn = BatchNorm2d::new(3).unwrap();
        bn.running_mean = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3]).unwrap();
        bn.running_var = Tensor::from_vec(vec![4.0, 0.25, 1.0], &[3]).unwrap();
        bn.core.weight.as_mut().unwrap().value =
            Tensor::from_vec(vec![2.0, 1.0, -1.0], &[3]).unwrap();
        bn.core.bias.as_mut().unwrap().value = Tensor::from_vec(vec![0.0, 1.0, 3.0], &[3]).unwrap();
        let x = Tensor::randn(&[2, 3, 2, 2], 0.0, 1.0, &mut rng);
        let y = bn.forward(&x, Mode::Eval).unwrap();
        let (m, v, g, b) = (
            [0.5, -1.0, 2.0],
            [4.0, 0.25, 1.0],
            [2.0, 1.0, -1.0],
            [0.0, 1.0, 3.0],
        );
        for (i, (&xv, &yv)) in x.data().iter().zip(y.data()).enumerate() {
            let c = (i / 4) % 3;
            let want = g[c] * (xv - m[c]) / (v[c] + 1e-5f32).sqrt() + b[c];
            assert!((yv - want).abs() < 1e-5, "{i}: {yv} vs {want}");
        }
        assert_eq!(bn.num_batches_tracked.data()[0], 0.0);
    }

    #[test]
    fn training_batchnorm_updates_running_stats_with_unbiased_variance() {
        let mut bn = BatchNorm2d::with_options(1, 1e-5, 0.5).unwrap();
        // one channel, values 1..4: mean 2.5, biased var 1.25, unbiased 5/3
        let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 1, 1, 2]).unwrap();
        bn.forward(&x, Mode::Train).unwrap();
        assert!((bn.running_mean.data()[0] - 1.25).abs() < 1e-6);
        assert!((bn.running_var.data()[0] - (0.5 + 0.5 * 5.0 / 3.0)).abs() < 1e-6);
        assert_eq!(bn.num_batches_tracked.data()[0], 1.0);
    }

    #[test]
    fn bad_configs_and_shapes_are_errors() {
        assert!(GroupNorm::new(3, 8).is_err());
        assert!(BatchNorm2d::with_options(4, 1e-5, 1.5).is_err());
        assert!(PerChannelLayerNorm::with_eps(4, 0.0).is_err());
        let mut bn = BatchNorm2d::new(4).unwrap();
        let err = bn
            .forward(&Tensor::zeros(&[2, 3, 4, 4]), Mode::Train)
            .unwrap_err();
        assert!(
            err.to_string().contains("[N, 4, H, W]") && err.to_string().contains("[2, 3, 4, 4]"),
            "{err}"
        );
        assert!(bn
            .forward(&Tensor::zeros(&[1, 4, 1, 1]), Mode::Train)
            .is_err());
    }
}
