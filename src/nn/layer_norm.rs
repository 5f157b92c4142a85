//! `LayerNorm`: PyTorch's `nn.LayerNorm(normalized_shape, eps, elementwise_affine, bias)`.
//!
//! Statistics over the last `k` dimensions of the input, `normalized_shape` (`[C, H, W]`
//! for a whole feature map, `[W]` for the last axis), one mean and biased variance per
//! leading index; then, when affine, a weight and a bias of shape `normalized_shape`
//! (one per element: `[C, H, W]` weights load from `nn.LayerNorm([C, H, W])`). The
//! lecture's form, with a per-channel `γ, β`, is [`super::PerChannelLayerNorm`].
//!
//! Backward, with `x̂ = (x − μ)·r`, `g = dy·w`, over each row of `M` elements:
//! `dx = r·(g − mean(g) − x̂·mean(g·x̂))`, `dw = Σ_rows dy·x̂`, `db = Σ_rows dy`.
//! Sums in f64 ([`RowNorm`]).

use super::{check_dy, join, no_cache, Layer, Mode, Param};
use crate::error::{Error, Result};
use crate::kernels::norm::RowNorm;
use crate::tensor::Tensor;

/// What backward needs: `x̂` and `1/σ` per row.
#[derive(Debug)]
struct Cache {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
    shape: Vec<usize>,
}

/// Layer normalization over the trailing `normalized_shape`, PyTorch's form.
#[derive(Debug)]
pub struct LayerNorm {
    normalized_shape: Vec<usize>,
    eps: f32,
    weight: Option<Param>,
    bias: Option<Param>,
    cache: Option<Cache>,
}

impl LayerNorm {
    /// `nn.LayerNorm(normalized_shape)`: eps 1e-5, weight 1 and bias 0 per element.
    pub fn new(normalized_shape: &[usize]) -> Result<Self> {
        Self::with_options(normalized_shape, 1e-5, true, true)
    }

    /// With eps, and whether there is a weight (`elementwise_affine`) and a bias.
    pub fn with_options(
        normalized_shape: &[usize],
        eps: f32,
        elementwise_affine: bool,
        bias: bool,
    ) -> Result<Self> {
        if normalized_shape.is_empty() || normalized_shape.contains(&0) {
            return Err(Error::config(
                "LayerNorm",
                "normalized_shape",
                format!("must be one or more positive sizes, got {normalized_shape:?}"),
            ));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::config(
                "LayerNorm",
                "eps",
                format!("must be positive, got {eps}"),
            ));
        }
        let affine = |v: f32| Param::new(Tensor::full(normalized_shape, v));
        Ok(LayerNorm {
            normalized_shape: normalized_shape.to_vec(),
            eps,
            weight: elementwise_affine.then(|| affine(1.0)),
            bias: (elementwise_affine && bias).then(|| affine(0.0)),
            cache: None,
        })
    }

    /// The shape normalized over.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }

    /// Elements per row, after checking that `x` ends in `normalized_shape`.
    fn row_len(&self, x: &[usize]) -> Result<usize> {
        let k = self.normalized_shape.len();
        if x.len() < k || x[x.len() - k..] != self.normalized_shape[..] {
            return Err(Error::shape(
                "LayerNorm",
                format!("[..., {}]", dims(&self.normalized_shape)),
                x,
            ));
        }
        Ok(self.normalized_shape.iter().product())
    }
}

fn dims(s: &[usize]) -> String {
    s.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Layer for LayerNorm {
    fn kind(&self) -> &'static str {
        "LayerNorm"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let m = self.row_len(x.shape())?;
        let w = self.weight.as_ref().map(|p| p.value.data());
        let b = self.bias.as_ref().map(|p| p.value.data());
        let mut y = Tensor::for_overwrite(x.shape());
        let mut xhat = vec![0.0f32; x.len()];
        let mut rstd = vec![0.0f32; x.len() / m];
        let rows = RowNorm {
            m,
            eps: self.eps,
            weight: w,
            bias: b,
        };
        rows.forward(x.data(), y.data_mut(), &mut xhat, &mut rstd);
        self.cache = mode.caches().then(|| Cache {
            xhat,
            rstd,
            shape: x.shape().to_vec(),
        });
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let c = self.cache.as_ref().ok_or_else(|| no_cache("LayerNorm"))?;
        check_dy("LayerNorm", dy, &c.shape)?;
        let m: usize = self.normalized_shape.iter().product();
        let rows = RowNorm {
            m,
            eps: self.eps,
            weight: self.weight.as_ref().map(|p| p.value.data()),
            bias: None,
        };
        let mut dx = Tensor::for_overwrite(dy.shape());
        rows.backward(&c.xhat, &c.rstd, dy.data(), dx.data_mut());
        let (dw, db) = RowNorm::param_grads(m, &c.xhat, dy.data());
        if let Some(p) = self.weight.as_mut() {
            p.grad
                .data_mut()
                .iter_mut()
                .zip(dw)
                .for_each(|(g, d)| *g += d);
        }
        if let Some(p) = self.bias.as_mut() {
            p.grad
                .data_mut()
                .iter_mut()
                .zip(db)
                .for_each(|(g, d)| *g += d);
        }
        Ok(dx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.row_len(input)?;
        Ok(input.to_vec())
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        if let Some(p) = self.weight.as_mut() {
            f(&join(prefix, "weight"), p);
        }
        if let Some(p) = self.bias.as_mut() {
            f(&join(prefix, "bias"), p);
        }
    }

    fn own_param_count(&self) -> usize {
        [&self.weight, &self.bias]
            .iter()
            .filter_map(|p| p.as_ref())
            .map(|p| p.value.len())
            .sum()
    }
}
