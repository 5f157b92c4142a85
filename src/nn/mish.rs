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
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

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

/// `(tanh(softplus(x)), σ(x))` in f64.
fn parts(x: f32) -> (f64, f64) {
    let x = x as f64;
    // softplus without overflow: for large x, ln(1 + eˣ) = x + ln(1 + e⁻ˣ).
    let sp = if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    };
    (sp.tanh(), 1.0 / (1.0 + (-x).exp()))
}

impl Layer for Mish {
    fn kind(&self) -> &'static str {
        "Mish"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut y = Tensor::for_overwrite(x.shape());
        y.data_mut()
            .par_chunks_mut(CHUNK)
            .zip(x.data().par_chunks(CHUNK))
            .for_each(|(y, x)| {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = (x as f64 * parts(x).0) as f32;
                }
            });
        self.x = mode.caches().then(|| x.clone());
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let x = self.x.as_ref().ok_or_else(|| no_cache("Mish"))?;
        check_dy("Mish", dy, x.shape())?;
        let mut dx = Tensor::for_overwrite(dy.shape());
        dx.data_mut()
            .par_chunks_mut(CHUNK)
            .zip(x.data().par_chunks(CHUNK).zip(dy.data().par_chunks(CHUNK)))
            .for_each(|(dx, (x, dy))| {
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    let (t, s) = parts(x);
                    *dx = (dy as f64 * (t + x as f64 * s * (1.0 - t * t))) as f32;
                }
            });
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
}
