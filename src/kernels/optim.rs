//! Parameter updates, element-wise over one parameter tensor.
//!
//! SGD (PyTorch's form): `g = grad + wd·p`; `buf = μ·buf + g` (`buf = g` on the first
//! step); `g = g + μ·buf` (Nesterov) or `g = buf`; `p −= lr·g`.
//! AdamW (decoupled decay, Loshchilov & Hutter 2019): `p −= lr·wd·p`;
//! `m = β1·m + (1−β1)·g`; `v = β2·v + (1−β2)·g²`;
//! `p −= lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + eps)`.

/// Hyper-parameters of one SGD step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum μ (0 = plain SGD).
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f32,
    /// True on the first step (the momentum buffer starts as the gradient).
    pub first: bool,
}

/// One SGD step on `p` with gradient `g` and momentum buffer `buf` (same length).
pub fn sgd(s: SgdStep, p: &mut [f32], g: &[f32], buf: &mut [f32]) {
    for i in 0..p.len() {
        let mut d = g[i] + s.weight_decay * p[i];
        if s.momentum != 0.0 {
            buf[i] = if s.first { d } else { s.momentum * buf[i] + d };
            d = if s.nesterov {
                d + s.momentum * buf[i]
            } else {
                buf[i]
            };
        }
        p[i] -= s.lr * d;
    }
}

/// Hyper-parameters of one AdamW step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f32,
    /// β1.
    pub beta1: f32,
    /// β2.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Step number, from 1.
    pub t: u64,
}

/// One AdamW step on `p` with gradient `g` and moments `m`, `v`.
pub fn adamw(s: AdamWStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let bc1 = 1.0 - (s.beta1 as f64).powi(s.t as i32);
    let bc2 = 1.0 - (s.beta2 as f64).powi(s.t as i32);
    let step = (s.lr as f64 / bc1) as f32;
    let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
    for i in 0..p.len() {
        p[i] *= 1.0 - s.lr * s.weight_decay;
        m[i] = s.beta1 * m[i] + (1.0 - s.beta1) * g[i];
        v[i] = s.beta2 * v[i] + (1.0 - s.beta2) * g[i] * g[i];
        p[i] -= step * m[i] / (v[i].sqrt() * inv_sqrt_bc2 + s.eps);
    }
}

/// `Σ g²` in f64.
pub fn sum_squares(g: &[f32]) -> f64 {
    g.iter().map(|&v| v as f64 * v as f64).sum()
}
