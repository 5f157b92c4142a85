//! `Residual`: `y = body(x) + shortcut(x)`, the building block of ResNet.
//!
//! Where: `shortcut` is the identity, or a projection (1×1 conv + norm in ResNet) when
//! the body changes the shape. Backward: `dx = body'(dy) + shortcut'(dy)` — the identity
//! path hands `dy` straight to earlier layers, which is why deep residual networks
//! train where plain ones degrade (He et al. 2015, arXiv:1512.03385).
//!
//! The body's children are named directly under the block (`layer1.0.conv1.weight`),
//! the projection under `downsample` (`layer1.0.downsample.0.weight`), as in
//! torchvision. The activation after the sum belongs to the enclosing `Sequential`.

use super::{join, Layer, Mode, Param, Sequential};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A residual block.
#[derive(Debug)]
pub struct Residual {
    body: Sequential,
    shortcut: Option<Sequential>,
}

impl Residual {
    /// `body(x) + x`.
    pub fn identity(body: Sequential) -> Self {
        Residual {
            body,
            shortcut: None,
        }
    }

    /// `body(x) + projection(x)`.
    pub fn projected(body: Sequential, projection: Sequential) -> Self {
        Residual {
            body,
            shortcut: Some(projection),
        }
    }
}

impl Layer for Residual {
    fn kind(&self) -> &'static str {
        "Residual"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut y = self.body.forward(x, mode)?;
        let s = match self.shortcut.as_mut() {
            Some(p) => p.forward(x, mode)?,
            None => x.clone(),
        };
        if s.shape() != y.shape() {
            return Err(Error::shape(
                "Residual",
                format!(
                    "a shortcut of the body's output shape {:?} (add a projection)",
                    y.shape()
                ),
                s.shape(),
            ));
        }
        y.add_assign(&s)?;
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let mut dx = self.body.backward(dy)?;
        match self.shortcut.as_mut() {
            Some(p) => dx.add_assign(&p.backward(dy)?)?,
            None => dx.add_assign(dy)?,
        }
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let out = self.body.output_shape(input)?;
        let s = match &self.shortcut {
            Some(p) => p.output_shape(input)?,
            None => input.to_vec(),
        };
        if s != out {
            return Err(Error::shape(
                "Residual",
                format!("a shortcut of the body's output shape {out:?} (add a projection)"),
                &s,
            ));
        }
        Ok(out)
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.body.visit_params(prefix, f);
        if let Some(p) = self.shortcut.as_mut() {
            p.visit_params(&join(prefix, "downsample"), f);
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        self.body.visit_buffers(prefix, f);
        if let Some(p) = self.shortcut.as_mut() {
            p.visit_buffers(&join(prefix, "downsample"), f);
        }
    }
}
