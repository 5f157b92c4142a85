//! `Linear`: a fully connected layer, `y = x·Wᵀ + b`.
//!
//! Where: `W` is `[out, in]`, `b` is `[out]`.
//! Shapes: `x: [N, in] -> y: [N, out]`.
//! Backward: `dx = dy·W`, `dW += dyᵀ·x`, `db += Σ_n dy`.
//! Matches `torch.nn.Linear`, including its default initialization
//! `U(−1/√in, 1/√in)` for weight and bias.

use super::{check_dy, join, no_cache, Layer, Mode, Param};
use crate::error::{Error, Result};
use crate::kernels::gemm::{matmul, Accumulate, Par, Trans};
use crate::tensor::Tensor;
use rand::Rng;

/// What backward needs from the forward pass.
#[derive(Debug)]
struct LinearCache {
    x: Tensor,
}

/// A fully connected layer; see the module documentation.
#[derive(Debug)]
pub struct Linear {
    in_features: usize,
    out_features: usize,
    /// `[out, in]`
    pub weight: Param,
    /// `[out]`, if configured.
    pub bias: Option<Param>,
    cache: Option<LinearCache>,
}

impl Linear {
    /// Builds the layer with PyTorch's default initialization.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::config(
                "Linear",
                "in_features/out_features",
                format!("must be ≥ 1, got {in_features} → {out_features}"),
            ));
        }
        let mut weight = Tensor::zeros(&[out_features, in_features]);
        let mut b = bias.then(|| Tensor::zeros(&[out_features]));
        crate::init::pytorch_default(&mut weight, b.as_mut(), rng)?;
        Ok(Linear {
            in_features,
            out_features,
            weight: Param::new(weight),
            bias: b.map(Param::new),
            cache: None,
        })
    }

    fn check(&self, x: &[usize]) -> Result<usize> {
        match *x {
            [n, f] if f == self.in_features => Ok(n),
            _ => Err(Error::shape(
                "Linear",
                format!("[N, {}] (flatten conv features first)", self.in_features),
                x,
            )),
        }
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "Linear"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let n = self.check(x.shape())?;
        let (fi, fo) = (self.in_features, self.out_features);
        let mut y = Tensor::zeros(&[n, fo]);
        if let Some(b) = &self.bias {
            for row in y.data_mut().chunks_exact_mut(fo) {
                row.copy_from_slice(b.value.data());
            }
        }
        let acc = if self.bias.is_some() {
            Accumulate::Yes
        } else {
            Accumulate::No
        };
        matmul(
            n,
            fo,
            fi,
            x.data(),
            Trans::No,
            self.weight.value.data(),
            Trans::Yes,
            y.data_mut(),
            acc,
            Par::Rayon,
        )?;
        self.cache = mode.caches().then(|| LinearCache { x: x.clone() });
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let cache = self.cache.as_ref().ok_or_else(|| no_cache("Linear"))?;
        let n = cache.x.shape()[0];
        let (fi, fo) = (self.in_features, self.out_features);
        check_dy("Linear", dy, &[n, fo])?;
        // dW[out, in] += dyᵀ[out, N] · x[N, in]
        matmul(
            fo,
            fi,
            n,
            dy.data(),
            Trans::Yes,
            cache.x.data(),
            Trans::No,
            self.weight.grad.data_mut(),
            Accumulate::Yes,
            Par::Rayon,
        )?;
        if let Some(b) = self.bias.as_mut() {
            let db = b.grad.data_mut();
            for row in dy.data().chunks_exact(fo) {
                db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
            }
        }
        // dx[N, in] = dy[N, out] · W[out, in]
        let mut dx = Tensor::zeros(&[n, fi]);
        matmul(
            n,
            fi,
            fo,
            dy.data(),
            Trans::No,
            self.weight.value.data(),
            Trans::No,
            dx.data_mut(),
            Accumulate::No,
            Par::Rayon,
        )?;
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![self.check(input)?, self.out_features])
    }

    fn macs(&self, input: &[usize]) -> u64 {
        input
            .first()
            .map_or(0, |&n| (n * self.in_features * self.out_features) as u64)
    }

    fn own_param_count(&self) -> usize {
        self.weight.value.len() + self.bias.as_ref().map_or(0, |b| b.value.len())
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        f(&join(prefix, "weight"), &mut self.weight);
        if let Some(b) = self.bias.as_mut() {
            f(&join(prefix, "bias"), b);
        }
    }
}
