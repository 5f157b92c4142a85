//! `ChannelLayerNorm`: LayerNorm over the channels at each position — the lecture's
//! LayerNorm formula, and ConvNeXt's "channels-first" LayerNorm.
//!
//! `y[n, c, h, w] = γ_c · (x[n, c, h, w] − μ_{n,h,w}) / √(σ²_{n,h,w} + eps) + β_c`
//!
//! Where: `μ_{n,h,w}` and `σ²_{n,h,w}` (biased) are taken over `c` alone.
//! Shapes: `x: [N, C, H, W] -> y: [N, C, H, W]`, `γ, β: [C]`.
//! PyTorch equivalent: `F.layer_norm(x.permute(0, 2, 3, 1), (C,), γ, β, eps)` permuted
//! back. Default eps 1e-5 (ConvNeXt uses 1e-6).

use super::{check_dy, expect_nchw, join, no_cache, Layer, Mode, Param};
use crate::error::{Error, Result};
use crate::kernels::norm::{channel_norm_backward, channel_norm_forward, NormDims};
use crate::tensor::Tensor;

/// What backward needs from the forward pass.
#[derive(Debug)]
struct ChannelNormCache {
    x: Tensor,
    dims: NormDims,
    /// `[N, H·W]`
    mean: Vec<f32>,
    /// `[N, H·W]`
    rstd: Vec<f32>,
}

/// LayerNorm over `C` at each `(n, h, w)`.
#[derive(Debug)]
pub struct ChannelLayerNorm {
    channels: usize,
    eps: f32,
    /// `[C]`
    pub weight: Param,
    /// `[C]`
    pub bias: Param,
    cache: Option<ChannelNormCache>,
}

impl ChannelLayerNorm {
    /// `C` channels, eps 1e-5.
    pub fn new(channels: usize) -> Result<Self> {
        Self::with_eps(channels, 1e-5)
    }

    /// With an explicit eps.
    pub fn with_eps(channels: usize, eps: f32) -> Result<Self> {
        if channels == 0 {
            return Err(Error::config(
                "ChannelLayerNorm",
                "num_channels",
                "must be ≥ 1",
            ));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::config(
                "ChannelLayerNorm",
                "eps",
                format!("must be a positive number, got {eps}"),
            ));
        }
        Ok(ChannelLayerNorm {
            channels,
            eps,
            weight: Param::new(Tensor::full(&[channels], 1.0)),
            bias: Param::new(Tensor::zeros(&[channels])),
            cache: None,
        })
    }
}

impl Layer for ChannelLayerNorm {
    fn kind(&self) -> &'static str {
        "ChannelLayerNorm"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let [n, c, h, w] = expect_nchw("ChannelLayerNorm", x.shape(), self.channels)?;
        let dims = NormDims { n, c, hw: h * w };
        let mut y = Tensor::zeros(x.shape());
        let (mut mean, mut rstd) = (vec![0.0; n * h * w], vec![0.0; n * h * w]);
        channel_norm_forward(
            dims,
            self.eps,
            x.data(),
            self.weight.value.data(),
            self.bias.value.data(),
            y.data_mut(),
            &mut mean,
            &mut rstd,
        );
        self.cache = mode.caches().then(|| ChannelNormCache {
            x: x.clone(),
            dims,
            mean,
            rstd,
        });
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let c = self
            .cache
            .as_ref()
            .ok_or_else(|| no_cache("ChannelLayerNorm"))?;
        check_dy("ChannelLayerNorm", dy, c.x.shape())?;
        let mut dx = Tensor::zeros(dy.shape());
        channel_norm_backward(
            c.dims,
            c.x.data(),
            &c.mean,
            &c.rstd,
            self.weight.value.data(),
            dy.data(),
            dx.data_mut(),
            self.weight.grad.data_mut(),
            self.bias.grad.data_mut(),
        );
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        expect_nchw("ChannelLayerNorm", input, self.channels)?;
        Ok(input.to_vec())
    }

    fn own_param_count(&self) -> usize {
        2 * self.channels
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }
}
