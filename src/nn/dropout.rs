//! `Dropout` and `Dropout2d`, inverted.
//!
//! Training: `y = x·m / (1 − p)` with `m ~ Bernoulli(1 − p)` drawn per element
//! (`Dropout`) or per `(n, c)` channel plane (`Dropout2d`); evaluation: `y = x`.
//! Backward: `dx = dy·m / (1 − p)`.
//!
//! The lecture scales activations by `p_keep` at test time instead; inverted dropout
//! scales by `1/(1 − p)` while training, which gives the same expected activation and
//! leaves inference untouched. This is what PyTorch does. Each layer owns a seeded RNG,
//! so a run is reproducible; PyTorch's masks cannot be reproduced (different RNG).

use super::{check_dy, no_cache, Layer, Mode};
use crate::error::{Error, Result};
use crate::kernels::eltwise;
use crate::tensor::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn check_p(layer: &str, p: f32) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::config(
            layer,
            "p",
            format!("the drop probability must be in [0, 1), got {p}"),
        ));
    }
    Ok(())
}

/// Shared body of both dropout layers: `plane` elements share one mask value.
#[derive(Debug)]
struct DropoutCore {
    p: f32,
    rng: StdRng,
    /// `m / (1 − p)` per element, kept for backward.
    scale: Option<Vec<f32>>,
}

impl DropoutCore {
    fn forward(&mut self, x: &Tensor, mode: Mode, plane: usize) -> Tensor {
        if !mode.trains() || self.p == 0.0 {
            self.scale = mode.caches().then(|| vec![1.0; x.len()]);
            return x.clone();
        }
        let keep = 1.0 / (1.0 - self.p);
        let mut scale = vec![0.0f32; x.len()];
        for chunk in scale.chunks_mut(plane.max(1)) {
            let v = if self.rng.random::<f32>() < self.p {
                0.0
            } else {
                keep
            };
            chunk.iter_mut().for_each(|s| *s = v);
        }
        let mut y = x.clone();
        eltwise::mul_into(y.data_mut(), &scale);
        self.scale = Some(scale);
        y
    }

    fn backward(&self, layer: &str, dy: &Tensor) -> Result<Tensor> {
        let scale = self.scale.as_ref().ok_or_else(|| no_cache(layer))?;
        if scale.len() != dy.len() {
            return Err(Error::shape(
                format!("{layer}::backward"),
                format!("dy of {} elements", scale.len()),
                dy.shape(),
            ));
        }
        let mut dx = dy.clone();
        eltwise::mul_into(dx.data_mut(), scale);
        Ok(dx)
    }
}

/// Element-wise inverted dropout.
#[derive(Debug)]
pub struct Dropout {
    core: DropoutCore,
    shape: Vec<usize>,
}

impl Dropout {
    /// Drops each element with probability `p` (PyTorch default 0.5), seeded.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        check_p("Dropout", p)?;
        Ok(Dropout {
            core: DropoutCore {
                p,
                rng: StdRng::seed_from_u64(seed),
                scale: None,
            },
            shape: vec![],
        })
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "Dropout"
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.shape = x.shape().to_vec();
        Ok(self.core.forward(x, mode, 1))
    }
    fn reseed(&mut self, seed: u64) {
        self.core.rng = StdRng::seed_from_u64(seed);
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        check_dy("Dropout", dy, &self.shape)?;
        self.core.backward("Dropout", dy)
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
}

/// Channel-wise inverted dropout: whole `[H, W]` planes are dropped together.
#[derive(Debug)]
pub struct Dropout2d {
    core: DropoutCore,
    shape: Vec<usize>,
}

impl Dropout2d {
    /// Drops each channel plane with probability `p` (PyTorch default 0.5), seeded.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        check_p("Dropout2d", p)?;
        Ok(Dropout2d {
            core: DropoutCore {
                p,
                rng: StdRng::seed_from_u64(seed),
                scale: None,
            },
            shape: vec![],
        })
    }
}

impl Layer for Dropout2d {
    fn kind(&self) -> &'static str {
        "Dropout2d"
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let [_, _, h, w] = x.dims4("Dropout2d")?;
        self.shape = x.shape().to_vec();
        Ok(self.core.forward(x, mode, h * w))
    }
    fn reseed(&mut self, seed: u64) {
        self.core.rng = StdRng::seed_from_u64(seed);
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        check_dy("Dropout2d", dy, &self.shape)?;
        self.core.backward("Dropout2d", dy)
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input {
            [_, _, _, _] => Ok(input.to_vec()),
            _ => Err(Error::shape("Dropout2d", "[N, C, H, W]", input)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_mode_keeps_about_1_minus_p_and_scales_exactly() {
        let mut d = Dropout::new(0.3, 42).unwrap();
        let x = Tensor::full(&[100, 100], 2.0);
        let y = d.forward(&x, Mode::Train).unwrap();
        let kept = y.data().iter().filter(|&&v| v != 0.0).count() as f64 / 1e4;
        assert!((kept - 0.7).abs() < 0.02, "kept {kept}");
        assert!(y
            .data()
            .iter()
            .all(|&v| v == 0.0 || (v - 2.0 / 0.7).abs() < 1e-6));
        let dy = Tensor::full(&[100, 100], 1.0);
        let dx = d.backward(&dy).unwrap();
        for (a, b) in dx.data().iter().zip(y.data()) {
            assert_eq!(*a == 0.0, *b == 0.0);
        }
    }

    #[test]
    fn dropout2d_drops_whole_planes_and_eval_is_identity() {
        let mut d = Dropout2d::new(0.5, 1).unwrap();
        let x = Tensor::full(&[4, 8, 3, 3], 1.0);
        let y = d.forward(&x, Mode::Train).unwrap();
        for plane in y.data().chunks(9) {
            assert!(plane.iter().all(|&v| v == plane[0]));
        }
        assert_eq!(d.forward(&x, Mode::Eval).unwrap(), x);
        assert!(Dropout2d::new(1.0, 0).is_err());
        assert!(Dropout::new(-0.1, 0).is_err());
    }
}
