//! Softmax cross-entropy, fused with its gradient.
//!
//! `L = −(1/N) Σ_i Σ_j q_ij · log softmax(z_i)_j`, `q_i = (1 − ε)·onehot(t_i) + ε/C`
//!
//! Where: `z: [N, C]` logits, `t: [N]` class indices, `ε` the label smoothing.
//! Gradient: `∂L/∂z = (softmax(z) − q) / N`. Matches `torch.nn.functional.cross_entropy`
//! with mean reduction and `label_smoothing=ε`. The loss is summed in f64.

use crate::error::{Error, Result};
use crate::kernels::softmax;
use crate::tensor::Tensor;

/// The cross-entropy loss function.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CrossEntropy {
    /// Label smoothing ε in `[0, 1)`. Default: 0.
    pub label_smoothing: f32,
}

/// The loss value and the gradient with respect to the logits.
#[derive(Clone, Debug)]
pub struct LossOutput {
    /// Mean loss over the batch.
    pub loss: f64,
    /// `∂L/∂z`, shaped like the logits.
    pub dlogits: Tensor,
}

impl CrossEntropy {
    /// With label smoothing `eps` in `[0, 1)`.
    pub fn with_label_smoothing(eps: f32) -> Result<Self> {
        if !(0.0..1.0).contains(&eps) {
            return Err(Error::config(
                "CrossEntropy",
                "label_smoothing",
                format!("must be in [0, 1), got {eps}"),
            ));
        }
        Ok(CrossEntropy {
            label_smoothing: eps,
        })
    }

    /// Loss and gradient of `logits: [N, C]` against `targets: [N]`.
    pub fn forward(&self, logits: &Tensor, targets: &[usize]) -> Result<LossOutput> {
        let [n, c] = logits.dims2("CrossEntropy")?;
        if targets.len() != n {
            return Err(Error::shape(
                "CrossEntropy",
                format!("{n} targets, one per row of the logits"),
                &[targets.len()],
            ));
        }
        if let Some((i, &t)) = targets.iter().enumerate().find(|(_, &t)| t >= c) {
            return Err(Error::config(
                "CrossEntropy",
                "targets",
                format!("target {i} is class {t}, but the logits have only {c} classes (0..{c})"),
            ));
        }
        let mut dlogits = Tensor::zeros(&[n, c]);
        let loss = softmax::cross_entropy(
            c,
            logits.data(),
            targets,
            self.label_smoothing,
            dlogits.data_mut(),
        );
        Ok(LossOutput { loss, dlogits })
    }
}
