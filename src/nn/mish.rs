//! `Mish`: `y = x·tanh(softplus(x))` (Misra 2019, arXiv:1908.08681), `torch.nn.Mish`.
//!
//! A smooth, non-monotonic ReLU variant like SiLU/GELU. The derivative is
//! `tanh(sp) + x·σ(x)·(1 − tanh²(sp))` with `sp = ln(1 + eˣ)`, the form PyTorch's
//! backward uses. Both are computed in f64 and rounded once.
//!
//! This layer is also the example of adding a layer: this file, one entry in
//! [`super::registry`], one fixture case in `tools/make_fixtures.py`.

use super::{check_dy, no_cache, Layer, Mode};
use crate::error::Result;
use crate::kernels::eltwise::{mish_backward, mish_forward};
use crate::tensor::Tensor;

/// The Mish activation.
#[derive(Debug, Default)]
pub struct Mish {
    /// The training input, for backward.
    x: Option<Tensor>,
}

impl Mish {
    /// A Mish layer.
    pub fn new() -> Self {
        Mish::default()
    }
}

impl Layer for Mish {
    fn kind(&self) -> &'static str {
        "Mish"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut y = Tensor::for_overwrite(x.shape());
        mish_forward(x.data(), y.data_mut());
        self.x = mode.caches().then(|| x.clone());
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let x = self.x.as_ref().ok_or_else(|| no_cache("Mish"))?;
        check_dy("Mish", dy, x.shape())?;
        let mut dx = Tensor::for_overwrite(dy.shape());
        mish_backward(x.data(), dy.data(), dx.data_mut());
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
}
