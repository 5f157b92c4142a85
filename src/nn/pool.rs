//! Pooling layers: `MaxPool2d`, `AvgPool2d` and `AdaptiveAvgPool2d` (global pooling).
//!
//! Each slides a window over every `[H, W]` plane independently.
//! - Max: `y = max` over the window (padding never wins); `dx` receives `dy` at the
//!   position of the maximum (the first one on ties).
//! - Average: `y = Σ window / divisor`, the divisor counting padded positions when
//!   `count_include_pad` (PyTorch's default) and never positions beyond the padding.
//! - Adaptive average: output `(oy, ox)` averages rows `⌊oy·H/OH⌋ .. ⌈(oy+1)·H/OH⌉` and
//!   the same for columns; `AdaptiveAvgPool2d::global()` is the 1×1 global average pool.
//!
//! Shapes: `x: [N, C, H, W] -> y: [N, C, OH, OW]`. Match `torch.nn.MaxPool2d`,
//! `AvgPool2d` (without `divisor_override`) and `AdaptiveAvgPool2d`.

use super::fuse::Fuse;
use super::{check_dy, no_cache, Layer, Mode, Receptive};
use crate::error::{Error, Result};
use crate::kernels::pool::{self, PoolGeom};
use crate::tensor::Tensor;

/// Configuration of a sliding-window pooling layer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Window `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride. Default: the kernel.
    #[serde(default)]
    pub stride: Option<[usize; 2]>,
    /// Implicit padding, at most half the window. Default: `[0, 0]`.
    #[serde(default)]
    pub padding: [usize; 2],
    /// Dilation (max pooling only). Default: `[1, 1]`.
    #[serde(default = "ones")]
    pub dilation: [usize; 2],
    /// Round the output size up instead of down. Default: false.
    #[serde(default)]
    pub ceil_mode: bool,
    /// Average pooling: count padded positions in the divisor. Default: true.
    #[serde(default = "yes")]
    pub count_include_pad: bool,
}

fn ones() -> [usize; 2] {
    [1, 1]
}
fn yes() -> bool {
    true
}

impl PoolConfig {
    /// A square `k×k` window with stride `k`.
    pub fn new(k: usize) -> Self {
        PoolConfig {
            kernel: [k, k],
            stride: None,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: true,
        }
    }
    /// Sets a square stride.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = Some([s, s]);
        self
    }
    /// Sets a square padding.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = [p, p];
        self
    }

    pub(crate) fn geom(&self, op: &str, h: usize, w: usize) -> Result<PoolGeom> {
        let s = self.stride.unwrap_or(self.kernel);
        PoolGeom::new(
            op,
            (h, w),
            (self.kernel[0], self.kernel[1]),
            (s[0], s[1]),
            (self.padding[0], self.padding[1]),
            (self.dilation[0], self.dilation[1]),
            self.ceil_mode,
        )
    }

    fn receptive(&self) -> Receptive {
        let s = self.stride.unwrap_or(self.kernel);
        Receptive::Window {
            kernel: (self.kernel[0], self.kernel[1]),
            stride: (s[0], s[1]),
            dilation: (self.dilation[0], self.dilation[1]),
        }
    }

    fn validate(&self, op: &str) -> Result<()> {
        let s = self.stride.unwrap_or(self.kernel);
        if self.kernel.contains(&0) || s.contains(&0) || self.dilation.contains(&0) {
            return Err(Error::config(
                op,
                "kernel/stride/dilation",
                format!(
                    "must be ≥ 1, got {:?}, {:?}, {:?}",
                    self.kernel, s, self.dilation
                ),
            ));
        }
        if self.padding[0] * 2 > self.kernel[0] || self.padding[1] * 2 > self.kernel[1] {
            return Err(Error::config(
                op,
                "padding",
                format!(
                    "{:?} must be at most half the kernel {:?}",
                    self.padding, self.kernel
                ),
            ));
        }
        Ok(())
    }
}

fn rank4(op: &str, x: &[usize]) -> Result<[usize; 4]> {
    match *x {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::shape(op, "[N, C, H, W]", x)),
    }
}

/// What max-pool backward needs.
#[derive(Debug)]
struct MaxPoolCache {
    x_shape: Vec<usize>,
    geom: PoolGeom,
    argmax: Vec<u32>,
    /// The output (a shared handle, no copy): where it is not positive, a ReLU before
    /// the pool passes no gradient ([`Layer::backward_relu`]).
    y: Tensor,
}

/// 2-D max pooling.
#[derive(Debug)]
pub struct MaxPool2d {
    config: PoolConfig,
    cache: Option<MaxPoolCache>,
}

impl MaxPool2d {
    /// Validates the configuration.
    pub fn new(config: PoolConfig) -> Result<Self> {
        config.validate("MaxPool2d")?;
        Ok(MaxPool2d {
            config,
            cache: None,
        })
    }
}

impl Layer for MaxPool2d {
    fn kind(&self) -> &'static str {
        "MaxPool2d"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let [n, c, h, w] = rank4("MaxPool2d", x.shape())?;
        let g = self.config.geom("MaxPool2d", h, w)?;
        let mut y = Tensor::for_overwrite(&[n, c, g.oh, g.ow]);
        if !mode.caches() {
            // No backward to route: the values alone.
            pool::max_pool_forward_values(&g, x.data(), y.data_mut());
            self.cache = None;
            return Ok(y);
        }
        let mut argmax = vec![0u32; y.len()];
        pool::max_pool_forward(&g, x.data(), y.data_mut(), &mut argmax);
        self.cache = mode.caches().then(|| MaxPoolCache {
            x_shape: x.shape().to_vec(),
            geom: g,
            argmax,
            y: y.clone(),
        });
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let cache = self.cache.as_ref().ok_or_else(|| no_cache("MaxPool2d"))?;
        let s = &cache.x_shape;
        check_dy("MaxPool2d", dy, &[s[0], s[1], cache.geom.oh, cache.geom.ow])?;
        let mut dx = Tensor::for_overwrite(s);
        pool::max_pool_backward(&cache.geom, dy.data(), &cache.argmax, dx.data_mut());
        Ok(dx)
    }

    fn receptive(&self) -> Receptive {
        self.config.receptive()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, h, w] = rank4("MaxPool2d", input)?;
        let g = self.config.geom("MaxPool2d", h, w)?;
        Ok(vec![n, c, g.oh, g.ow])
    }
}

impl Fuse for MaxPool2d {
    fn masks_relu_input(&self) -> bool {
        true
    }

    /// With `mask_input` (the input is a ReLU's output), the gradient reaches each
    /// window's maximum only where that maximum — the output — is positive: exactly
    /// where the ReLU's mask would let it through, so the ReLU's full-size mask pass is
    /// replaced by one over the pooled gradient.
    fn backward_relu(&mut self, dy: &Tensor, _premasked: bool, mask_input: bool) -> Result<Tensor> {
        if !mask_input {
            return self.backward(dy);
        }
        let cache = self.cache.as_ref().ok_or_else(|| no_cache("MaxPool2d"))?;
        let s = &cache.x_shape;
        check_dy("MaxPool2d", dy, &[s[0], s[1], cache.geom.oh, cache.geom.ow])?;
        let mut dx = Tensor::for_overwrite(s);
        let (g, y) = (&cache.geom, cache.y.data());
        pool::max_pool_backward_relu(g, dy.data(), &cache.argmax, y, dx.data_mut());
        Ok(dx)
    }

    fn eval_max_pool(&self) -> Option<PoolConfig> {
        Some(self.config.clone())
    }
}

/// 2-D average pooling.
#[derive(Debug)]
pub struct AvgPool2d {
    config: PoolConfig,
    cache: Option<(Vec<usize>, PoolGeom)>,
}

impl AvgPool2d {
    /// Validates the configuration (dilation must be 1, as in PyTorch).
    pub fn new(config: PoolConfig) -> Result<Self> {
        config.validate("AvgPool2d")?;
        if config.dilation != [1, 1] {
            return Err(Error::config(
                "AvgPool2d",
                "dilation",
                "average pooling has no dilation; use [1, 1]",
            ));
        }
        Ok(AvgPool2d {
            config,
            cache: None,
        })
    }
}

impl Layer for AvgPool2d {
    fn kind(&self) -> &'static str {
        "AvgPool2d"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let [n, c, h, w] = rank4("AvgPool2d", x.shape())?;
        let g = self.config.geom("AvgPool2d", h, w)?;
        let mut y = Tensor::zeros(&[n, c, g.oh, g.ow]);
        pool::avg_pool_forward(&g, self.config.count_include_pad, x.data(), y.data_mut());
        self.cache = mode.caches().then(|| (x.shape().to_vec(), g));
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let (s, g) = self.cache.as_ref().ok_or_else(|| no_cache("AvgPool2d"))?;
        check_dy("AvgPool2d", dy, &[s[0], s[1], g.oh, g.ow])?;
        let mut dx = Tensor::zeros(s);
        pool::avg_pool_backward(g, self.config.count_include_pad, dy.data(), dx.data_mut());
        Ok(dx)
    }

    fn receptive(&self) -> Receptive {
        self.config.receptive()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, h, w] = rank4("AvgPool2d", input)?;
        let g = self.config.geom("AvgPool2d", h, w)?;
        Ok(vec![n, c, g.oh, g.ow])
    }
}

/// Adaptive average pooling to a fixed output size.
#[derive(Debug)]
pub struct AdaptiveAvgPool2d {
    output: [usize; 2],
    cache: Option<Vec<usize>>,
}

impl AdaptiveAvgPool2d {
    /// Pools every plane to `[oh, ow]`.
    pub fn new(output: [usize; 2]) -> Result<Self> {
        if output.contains(&0) {
            return Err(Error::config(
                "AdaptiveAvgPool2d",
                "output",
                format!("must be ≥ 1, got {output:?}"),
            ));
        }
        Ok(AdaptiveAvgPool2d {
            output,
            cache: None,
        })
    }

    /// Global average pooling (`[N, C, H, W] -> [N, C, 1, 1]`).
    pub fn global() -> Self {
        AdaptiveAvgPool2d {
            output: [1, 1],
            cache: None,
        }
    }

    fn check(&self, x: &[usize]) -> Result<[usize; 4]> {
        let d = rank4("AdaptiveAvgPool2d", x)?;
        if d[2] == 0 || d[3] == 0 {
            return Err(Error::shape(
                "AdaptiveAvgPool2d",
                "a non-empty plane [N, C, H≥1, W≥1]",
                x,
            ));
        }
        Ok(d)
    }
}

impl Layer for AdaptiveAvgPool2d {
    fn kind(&self) -> &'static str {
        "AdaptiveAvgPool2d"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let [n, c, h, w] = self.check(x.shape())?;
        let [oh, ow] = self.output;
        let mut y = Tensor::zeros(&[n, c, oh, ow]);
        pool::adaptive_avg_forward((h, w), (oh, ow), x.data(), y.data_mut());
        self.cache = mode.caches().then(|| x.shape().to_vec());
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let s = self
            .cache
            .as_ref()
            .ok_or_else(|| no_cache("AdaptiveAvgPool2d"))?;
        let [oh, ow] = self.output;
        check_dy("AdaptiveAvgPool2d", dy, &[s[0], s[1], oh, ow])?;
        let mut dx = Tensor::zeros(s);
        pool::adaptive_avg_backward((s[2], s[3]), (oh, ow), dy.data(), dx.data_mut());
        Ok(dx)
    }

    fn receptive(&self) -> Receptive {
        if self.output == [1, 1] {
            Receptive::Global
        } else {
            Receptive::Pointwise
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, _, _] = self.check(input)?;
        Ok(vec![n, c, self.output[0], self.output[1]])
    }
}
