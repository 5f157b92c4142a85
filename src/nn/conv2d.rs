//! `Conv2d`: 2-D cross-correlation with stride, padding, dilation, groups and bias.
//!
//! `y[n, co, oy, ox] = b[co] + Σ_{ci ∈ group(co)} Σ_{i,j} w[co, ci, i, j] ·
//!  x[n, g·cg_in + ci, oy·sh − ph + i·dh, ox·sw − pw + j·dw]`
//!
//! Where: `g = co / (c_out/groups)`, `cg_in = c_in/groups`, out-of-range `x` reads are 0.
//!
//! Shapes: `x: [N, c_in, H, W] -> y: [N, c_out, OH, OW]`, weight `[c_out, c_in/groups,
//! kh, kw]`, bias `[c_out]`, with `OH = ⌊(H + 2·ph − dh·(kh−1) − 1)/sh⌋ + 1`.
//!
//! Matches `torch.nn.Conv2d` (zero padding mode) including its default initialization,
//! `U(−1/√fan_in, 1/√fan_in)` for weight and bias. The kernels are in
//! [`crate::kernels::conv`].

use super::fuse::Fuse;
use super::{
    check_dy, expect_nchw, join, no_cache, ChannelAffine, Layer, Mode, Param, PlaneMoments,
    PoolConfig, Receptive,
};
use crate::error::{Error, Result};
use crate::kernels::bf16::Precision;
use crate::kernels::conv::{
    autotune_forward, book, conv2d_backward, conv2d_backward_relu_input, conv2d_forward,
    conv2d_forward_max_pooled, conv2d_forward_moments, conv2d_forward_relu, Choice, ConvGeom,
    ConvPlan, ConvWorkspace, PlanBook, Tuning,
};
use crate::tensor::Tensor;
use rand::Rng;
use std::sync::Arc;

/// Configuration of a [`Conv2d`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dConfig {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`. Default: `[1, 1]`.
    #[serde(default = "ones")]
    pub stride: [usize; 2],
    /// Zero padding `[ph, pw]`. Default: `[0, 0]`.
    #[serde(default)]
    pub padding: [usize; 2],
    /// Dilation `[dh, dw]`. Default: `[1, 1]`.
    #[serde(default = "ones")]
    pub dilation: [usize; 2],
    /// Channel groups; must divide `c_in` and `c_out`. Default: 1.
    #[serde(default = "one")]
    pub groups: usize,
    /// Learnable bias. Default: true.
    #[serde(default = "yes")]
    pub bias: bool,
}

fn ones() -> [usize; 2] {
    [1, 1]
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

impl Conv2dConfig {
    /// A square `k×k` convolution, stride 1, no padding, with bias.
    pub fn new(c_in: usize, c_out: usize, k: usize) -> Self {
        Conv2dConfig {
            c_in,
            c_out,
            kernel: [k, k],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }
    /// Sets a square stride.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }
    /// Sets a square padding.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = [p, p];
        self
    }
    /// Sets a square dilation.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }
    /// Sets the number of groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// Enables or disables the bias.
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config("Conv2d", field, reason));
        if self.c_in == 0 || self.c_out == 0 {
            return bad(
                "c_in/c_out",
                format!("channels must be ≥ 1, got {} → {}", self.c_in, self.c_out),
            );
        }
        if self.kernel.contains(&0) || self.stride.contains(&0) || self.dilation.contains(&0) {
            return bad(
                "kernel/stride/dilation",
                format!(
                    "must be ≥ 1, got kernel {:?}, stride {:?}, dilation {:?}",
                    self.kernel, self.stride, self.dilation
                ),
            );
        }
        if self.groups == 0
            || !self.c_in.is_multiple_of(self.groups)
            || !self.c_out.is_multiple_of(self.groups)
        {
            return bad(
                "groups",
                format!(
                    "{} must divide c_in={} and c_out={}",
                    self.groups, self.c_in, self.c_out
                ),
            );
        }
        Ok(())
    }

    fn geom(&self, h: usize, w: usize) -> Result<ConvGeom> {
        ConvGeom::new(
            self.c_in,
            h,
            w,
            self.c_out,
            (self.kernel[0], self.kernel[1]),
            (self.stride[0], self.stride[1]),
            (self.padding[0], self.padding[1]),
            (self.dilation[0], self.dilation[1]),
            self.groups,
        )
    }
}

/// What backward needs from the forward pass.
#[derive(Debug)]
struct Conv2dCache {
    x: Tensor,
    plan: ConvPlan,
}

/// A 2-D convolution layer; see the module documentation.
#[derive(Debug)]
pub struct Conv2d {
    config: Conv2dConfig,
    /// `[c_out, c_in/groups, kh, kw]`
    pub weight: Param,
    /// `[c_out]`, if configured.
    pub bias: Option<Param>,
    cache: Option<Conv2dCache>,
    ws: ConvWorkspace,
    precision: Precision,
    tuning: Tuning,
    /// Where timed choices are looked up and recorded (shared by a model's layers).
    book: Option<Arc<PlanBook>>,
    /// The plan of the last geometry and precision.
    plan: Option<ConvPlan>,
    /// Inference's weights with a normalization folded in, kept while they stay valid.
    folded: Option<Folded>,
}

/// The weights and bias with a [`ChannelAffine`] folded in, and what they were made
/// from: in inference the same fold would be computed (and its packing redone) on every
/// batch.
#[derive(Debug)]
struct Folded {
    /// [`Tensor::stamp`]s of the weight and the bias they were folded from.
    from: (u64, Option<u64>),
    scale: Vec<f32>,
    shift: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// This fold's key for the kernel's packed weights ([`ConvWorkspace::same_weights`]).
    key: u64,
}

/// `weight` and `bias` with the per-channel map `a` folded in: `W·scale` per output
/// channel, `b·scale + shift` — the kept fold in `kept` when the weight, the bias and `a`
/// are those it was made from, else a new one (with a new key) put there.
fn fold<'a>(
    kept: &'a mut Option<Folded>,
    weight: &Param,
    bias: Option<&Param>,
    a: &ChannelAffine,
) -> &'a Folded {
    let from = (weight.value.stamp(), bias.map(|b| b.value.stamp()));
    match kept.take() {
        Some(f) if f.from == from && f.scale == a.scale && f.shift == a.shift => kept.insert(f),
        _ => {
            let w = weight.value.data();
            let c_out = a.scale.len();
            let per = w.len() / c_out.max(1);
            let folded: Vec<f32> = w
                .chunks_exact(per)
                .zip(&a.scale)
                .flat_map(|(row, &s)| row.iter().map(move |v| v * s))
                .collect();
            let b: Vec<f32> = (0..c_out)
                .map(|c| {
                    let b = bias.map_or(0.0, |b| b.value.data()[c]);
                    b * a.scale[c] + a.shift[c]
                })
                .collect();
            kept.insert(Folded {
                from,
                scale: a.scale.clone(),
                shift: a.shift.clone(),
                weight: folded,
                bias: b,
                key: crate::tensor::fresh_stamp(),
            })
        }
    }
}

impl Conv2d {
    /// Builds the layer with PyTorch's default initialization.
    pub fn new(config: Conv2dConfig, rng: &mut impl Rng) -> Result<Self> {
        config.validate()?;
        let shape = [
            config.c_out,
            config.c_in / config.groups,
            config.kernel[0],
            config.kernel[1],
        ];
        let mut weight = Tensor::zeros(&shape);
        let mut bias = config.bias.then(|| Tensor::zeros(&[config.c_out]));
        crate::init::pytorch_default(&mut weight, bias.as_mut(), rng)?;
        Ok(Conv2d {
            config,
            weight: Param::new(weight),
            bias: bias.map(Param::new),
            cache: None,
            ws: ConvWorkspace::default(),
            precision: Precision::F32,
            tuning: Tuning::Static,
            book: None,
            plan: None,
            folded: None,
        })
    }

    /// Products in f32 (the default) or bf16 (mixed precision: bf16 products, f32 sums;
    /// f32 where the CPU lacks AVX-512 BF16). `nn::set_precision` sets a whole model.
    pub fn set_precision(&mut self, p: Precision) {
        self.precision = p;
    }

    /// The precision of the products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Static rules (the default) or timed choice of the forward kernel
    /// ([`autotune_forward`]), once per input geometry.
    pub fn set_tuning(&mut self, t: Tuning) {
        self.tuning = t;
        self.plan = None;
    }

    /// How this layer picks its plan ([`Conv2d::set_tuning`]).
    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    /// The book of timed choices this layer consults before timing and records into
    /// (`None`: every new geometry is timed).
    pub fn set_plan_book(&mut self, book: Option<Arc<PlanBook>>) {
        self.book = book;
        self.plan = None;
    }

    /// The plan of the last forward (which kernel each pass runs), if any.
    pub fn plan(&self) -> Option<&ConvPlan> {
        self.plan.as_ref()
    }

    /// Takes `plan` as this layer's plan (as if it had chosen it; the next input of
    /// another size or precision plans anew): for a replica that must run the kernels
    /// its model chose (`models::replicas`), timed choices included.
    pub fn adopt_plan(&mut self, plan: ConvPlan) {
        self.plan = Some(plan);
    }

    /// The plan for input shape `x` (`[N, C, H, W]`) at this layer's precision: the kept
    /// one when the geometry and precision match, else a new one (timed on this layer's
    /// weights and `x` when tuning is on: the whole training step when `step`, as the
    /// first forward of a training run is, the forward alone for inference).
    fn plan_for(&mut self, x: &Tensor, step: bool) -> Result<(usize, ConvPlan)> {
        let (n, g) = self.geom_for(x.shape())?;
        if let Some(p) = self
            .plan
            .filter(|p| p.geom == g && p.precision == self.precision)
        {
            return Ok((n, p));
        }
        let mut plan = ConvPlan::new(g, self.precision);
        if self.tuning == Tuning::Timed {
            let threads = rayon::current_num_threads();
            let key = book::key(&g, self.precision, n, threads, step);
            let known = self.book.as_ref().and_then(|b| b.get(&key));
            match known.and_then(|c| c.apply(&plan)) {
                Some(p) => plan = p,
                None => {
                    let (w, b) = (
                        self.weight.value.data(),
                        self.bias.as_ref().map(|b| b.value.data()),
                    );
                    plan = autotune_forward(&plan, n, x.data(), w, b, step, &mut self.ws)?;
                    // A plan nothing was timed for (one candidate) is the static one again
                    // next time: only timed choices go to the book.
                    if let Some(book) = self.book.as_ref().filter(|_| plan.tuned) {
                        book.insert(key, Choice::of(&plan));
                    }
                }
            }
        }
        self.plan = Some(plan);
        Ok((n, plan))
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    fn geom_for(&self, x: &[usize]) -> Result<(usize, ConvGeom)> {
        let [n, _, h, w] = expect_nchw("Conv2d", x, self.config.c_in)?;
        Ok((n, self.config.geom(h, w)?))
    }
}

impl Conv2d {
    /// Parameter gradients, and the input gradient into `dx` when asked for.
    fn backward_into(&mut self, dy: &Tensor, dx: Option<&mut Tensor>) -> Result<()> {
        self.backward_impl(dy, dx, false)
    }

    /// The backward; with `relu_input`, `dx` is masked where the input is not positive
    /// ([`Layer::backward_relu`]).
    fn backward_impl(
        &mut self,
        dy: &Tensor,
        dx: Option<&mut Tensor>,
        relu_input: bool,
    ) -> Result<()> {
        let cache = self.cache.as_ref().ok_or_else(|| no_cache("Conv2d"))?;
        let plan = cache.plan;
        let g = plan.geom;
        let n = cache.x.shape()[0];
        check_dy("Conv2d", dy, &[n, g.c_out, g.oh, g.ow])?;
        let dx = dx.map(|d| {
            *d = Tensor::for_overwrite(cache.x.shape());
            d.data_mut()
        });
        let (x, w) = (cache.x.data(), self.weight.value.data());
        let (dw, db) = (
            self.weight.grad.data_mut(),
            self.bias.as_mut().map(|b| b.grad.data_mut()),
        );
        match dx {
            Some(dx) if relu_input => {
                conv2d_backward_relu_input(&plan, n, x, w, dy.data(), dx, dw, db, &mut self.ws)
            }
            dx => conv2d_backward(&plan, n, x, w, dy.data(), dx, dw, db, &mut self.ws),
        }
    }
}

impl Conv2d {
    /// The forward, with the moments of the output planes into `moments` when asked.
    fn forward_impl(
        &mut self,
        x: &Tensor,
        mode: Mode,
        moments: Option<&mut Vec<(f64, f64)>>,
    ) -> Result<Tensor> {
        let (n, plan) = self.plan_for(x, mode.caches())?;
        let g = plan.geom;
        let mut y = Tensor::for_overwrite(&[n, g.c_out, g.oh, g.ow]);
        let (w, b) = (
            self.weight.value.data(),
            self.bias.as_ref().map(|b| b.value.data()),
        );
        // Unchanged weights (inference, a frozen layer) keep their packed form.
        self.ws.same_weights(self.weight.value.stamp());
        if mode.caches() {
            self.folded = None; // training: the inference fold is stale at the next step
        }
        match moments {
            Some(m) => {
                m.clear();
                m.resize(n * g.c_out, (0.0, 0.0));
                conv2d_forward_moments(&plan, n, x.data(), w, b, y.data_mut(), m, &mut self.ws)?
            }
            None => conv2d_forward(&plan, n, x.data(), w, b, y.data_mut(), &mut self.ws)?,
        }
        self.cache = match mode {
            Mode::Train | Mode::EvalGrad => Some(Conv2dCache { x: x.clone(), plan }),
            Mode::Eval => None,
        };
        Ok(y)
    }
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "Conv2d"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_impl(x, mode, None)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let mut dx = Tensor::zeros(&[]);
        self.backward_into(dy, Some(&mut dx))?;
        Ok(dx)
    }

    fn backward_params(&mut self, dy: &Tensor) -> Result<()> {
        self.backward_into(dy, None)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (n, g) = self.geom_for(input)?;
        Ok(vec![n, g.c_out, g.oh, g.ow])
    }

    fn receptive(&self) -> Receptive {
        let c = &self.config;
        Receptive::Window {
            kernel: (c.kernel[0], c.kernel[1]),
            stride: (c.stride[0], c.stride[1]),
            dilation: (c.dilation[0], c.dilation[1]),
        }
    }

    fn macs(&self, input: &[usize]) -> u64 {
        match self.geom_for(input) {
            Ok((n, g)) => (n * g.macs_per_image()) as u64,
            Err(_) => 0,
        }
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

impl Fuse for Conv2d {
    fn folds_affine(&self) -> bool {
        true
    }

    fn gives_moments(&self) -> bool {
        true
    }

    fn forward_moments(
        &mut self,
        x: &Tensor,
        mode: Mode,
    ) -> Option<Result<(Tensor, PlaneMoments)>> {
        let mut moments = Vec::new();
        Some(
            self.forward_impl(x, mode, Some(&mut moments))
                .map(|y| (y, moments)),
        )
    }

    fn forward_folded(&mut self, x: &Tensor, a: &ChannelAffine) -> Option<Result<Tensor>> {
        let c_out = self.weight.value.shape()[0];
        if a.scale.len() != c_out || a.shift.len() != c_out {
            return None; // not this layer's channels: the two layers run (and say why)
        }
        let mut run = || -> Result<Tensor> {
            let (n, plan) = self.plan_for(x, false)?;
            let g = plan.geom;
            let f = fold(&mut self.folded, &self.weight, self.bias.as_ref(), a);
            self.ws.same_weights(f.key);
            let mut y = Tensor::for_overwrite(&[n, g.c_out, g.oh, g.ow]);
            // The ReLU of a folded BatchNorm + ReLU on each image while it is in cache
            // (in the Winograd kernel's output transform).
            let conv = if a.relu {
                conv2d_forward_relu
            } else {
                conv2d_forward
            };
            conv(
                &plan,
                n,
                x.data(),
                &f.weight,
                Some(&f.bias),
                y.data_mut(),
                &mut self.ws,
            )?;
            Ok(y)
        };
        let y = run();
        self.cache = None;
        Some(y)
    }

    fn forward_folded_pooled(
        &mut self,
        x: &Tensor,
        a: &ChannelAffine,
        pool: &PoolConfig,
    ) -> Option<Result<Tensor>> {
        let c_out = self.weight.value.shape()[0];
        if a.scale.len() != c_out || a.shift.len() != c_out {
            return None;
        }
        let mut run = || -> Result<Tensor> {
            let (n, plan) = self.plan_for(x, false)?;
            let g = plan.geom;
            let pg = pool.geom("MaxPool2d", g.oh, g.ow)?;
            let f = fold(&mut self.folded, &self.weight, self.bias.as_ref(), a);
            self.ws.same_weights(f.key);
            let mut y = Tensor::for_overwrite(&[n, g.c_out, pg.oh, pg.ow]);
            conv2d_forward_max_pooled(
                &plan,
                n,
                x.data(),
                &f.weight,
                Some(&f.bias),
                a.relu,
                &pg,
                y.data_mut(),
                &mut self.ws,
            )?;
            Ok(y)
        };
        let y = run();
        self.cache = None;
        Some(y)
    }

    fn masks_relu_input(&self) -> bool {
        true
    }

    fn backward_relu(&mut self, dy: &Tensor, _premasked: bool, mask_input: bool) -> Result<Tensor> {
        let mut dx = Tensor::zeros(&[]);
        self.backward_impl(dy, Some(&mut dx), mask_input)?;
        Ok(dx)
    }
}
