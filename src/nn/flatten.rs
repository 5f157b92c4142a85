//! `Flatten`: `[N, d1, d2, ...] -> [N, d1·d2·...]` (PyTorch's `torch.flatten(x, 1)`).
//! A reshape: the data are not moved; backward reshapes `dy` back.

use super::{check_dy, no_cache, Layer, Mode, Receptive};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Flattens every dimension after the batch.
#[derive(Debug, Default)]
pub struct Flatten {
    x_shape: Option<Vec<usize>>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Flatten::default()
    }
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let out = self.output_shape(x.shape())?;
        self.x_shape = mode.caches().then(|| x.shape().to_vec());
        x.clone().reshape(&out)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let s = self.x_shape.as_ref().ok_or_else(|| no_cache("Flatten"))?;
        check_dy("Flatten", dy, &self.output_shape(s)?)?;
        dy.clone().reshape(s)
    }

    fn receptive(&self) -> Receptive {
        Receptive::Global
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input {
            [n, rest @ ..] if !rest.is_empty() => Ok(vec![*n, rest.iter().product()]),
            _ => Err(Error::shape("Flatten", "rank ≥ 2 [N, ...]", input)),
        }
    }
}
