//! Activation layers: Sigmoid, Tanh, ReLU, LeakyReLU, ELU, GELU (exact and tanh), SiLU.
//!
//! `y = f(x)` element-wise, any shape; `dx = f'(x)·dy`. The formulas are in
//! [`crate::kernels::eltwise::Act`]. Defaults match PyTorch: LeakyReLU slope 0.01,
//! ELU alpha 1.0, GELU exact (`approximate="none"`).
//!
//! The lecture's point about these functions: sigmoid and tanh saturate (their
//! derivative is near 0 for large |x|, so gradients vanish); ReLU does not saturate for
//! x > 0 but passes no gradient for x < 0; the smooth variants (GELU, SiLU, ELU) give a
//! small gradient there, at a higher cost per element.

use super::fuse::Fuse;
use super::{check_dy, no_cache, Layer, Mode, ReluOutput};
use crate::error::Result;
use crate::kernels::eltwise::{act_backward, act_forward, Act};
use crate::tensor::Tensor;

/// Input and output kept for backward.
#[derive(Debug)]
struct ActivationCache {
    x: Tensor,
    y: Tensor,
}

/// An element-wise activation layer.
#[derive(Debug)]
pub struct Activation {
    act: Act,
    cache: Option<ActivationCache>,
    /// A ReLU applied by the layer before it (see [`Layer::fuse`]): a pass-through.
    fused: bool,
}

impl Activation {
    /// The layer for `act`.
    pub fn new(act: Act) -> Self {
        Activation {
            act,
            cache: None,
            fused: false,
        }
    }
    /// `max(0, x)`
    pub fn relu() -> Self {
        Self::new(Act::Relu)
    }
    /// `1/(1+e^{-x})`
    pub fn sigmoid() -> Self {
        Self::new(Act::Sigmoid)
    }
    /// `tanh(x)`
    pub fn tanh() -> Self {
        Self::new(Act::Tanh)
    }
    /// LeakyReLU with the given negative slope (PyTorch default 0.01).
    pub fn leaky_relu(slope: f32) -> Self {
        Self::new(Act::LeakyRelu(slope))
    }
    /// ELU with the given alpha (PyTorch default 1.0).
    pub fn elu(alpha: f32) -> Self {
        Self::new(Act::Elu(alpha))
    }
    /// Exact GELU, `x·Φ(x)`.
    pub fn gelu() -> Self {
        Self::new(Act::Gelu)
    }
    /// GELU with the tanh approximation.
    pub fn gelu_tanh() -> Self {
        Self::new(Act::GeluTanh)
    }
    /// SiLU (swish), `x·σ(x)`.
    pub fn silu() -> Self {
        Self::new(Act::Silu)
    }
    /// The function applied.
    pub fn act(&self) -> Act {
        self.act
    }
}

impl Layer for Activation {
    fn kind(&self) -> &'static str {
        match self.act {
            Act::Sigmoid => "Sigmoid",
            Act::Tanh => "Tanh",
            Act::Relu => "ReLU",
            Act::LeakyRelu(_) => "LeakyReLU",
            Act::Elu(_) => "ELU",
            Act::Gelu | Act::GeluTanh => "GELU",
            Act::Silu => "SiLU",
        }
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if self.fused {
            // The previous layer applied the ReLU; sharing the tensor costs no copy.
            return Ok(x.clone());
        }
        let mut y = Tensor::for_overwrite(x.shape());
        act_forward(self.act, x.data(), y.data_mut());
        self.cache = mode.caches().then(|| ActivationCache {
            x: x.clone(),
            y: y.clone(),
        });
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        if self.fused {
            return Ok(dy.clone());
        }
        let kind = self.kind();
        let cache = self.cache.as_ref().ok_or_else(|| no_cache(kind))?;
        check_dy(kind, dy, cache.x.shape())?;
        let mut dx = Tensor::for_overwrite(dy.shape());
        act_backward(
            self.act,
            cache.x.data(),
            cache.y.data(),
            dy.data(),
            dx.data_mut(),
        );
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
}

impl Fuse for Activation {
    fn relu_output(&self) -> ReluOutput {
        match (self.act, self.fused) {
            (Act::Relu, true) => ReluOutput::PassThrough,
            (Act::Relu, false) => ReluOutput::Applies,
            _ => ReluOutput::No,
        }
    }

    fn backward_relu(&mut self, dy: &Tensor, premasked: bool, _mask_input: bool) -> Result<Tensor> {
        if !premasked || self.act != Act::Relu || self.fused {
            return self.backward(dy);
        }
        let cache = self.cache.as_ref().ok_or_else(|| no_cache("ReLU"))?;
        check_dy("ReLU", dy, cache.x.shape())?;
        Ok(dy.clone())
    }

    fn relu_fusion_flag(&mut self) -> Option<&mut bool> {
        (self.act == Act::Relu && !self.fused).then_some(&mut self.fused)
    }
}
