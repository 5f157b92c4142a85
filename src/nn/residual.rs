//! `Residual`: `y = post(body(x) + skip(x))`, the building block of ResNet.
//!
//! Where: `skip` is the identity, a projection (1×1 conv + norm in ResNet) when the body
//! changes the shape, or absent — a *plain* block, the same layers without the shortcut,
//! for the lecture's degradation experiment. `post` is an optional activation after the
//! sum (ReLU in ResNet). Backward: `dx = body'(post'(dy)) + skip'(post'(dy))` — the
//! identity path hands the gradient straight to earlier layers, which is why deep
//! residual networks train where plain ones degrade (He et al. 2015, arXiv:1512.03385).
//!
//! The body's children are named directly under the block (`layer1.0.conv1.weight`),
//! the projection under `downsample` (`layer1.0.downsample.0.weight`), as in
//! torchvision.

use super::fuse::Fuse;
use super::{check_dy, join, no_cache, Activation, Layer, Mode, Param, ReluOutput, Sequential};
use crate::error::{Error, Result};
use crate::kernels::eltwise::{add_relu_into, add_where_positive, relu_backward_from_output, Act};
use crate::profile::{self, Phase};
use crate::tensor::Tensor;

/// The shortcut of a residual block.
#[derive(Debug)]
pub enum Skip {
    /// `x` itself.
    Identity,
    /// A learned projection (named `downsample`).
    Projection(Sequential),
    /// No shortcut: a plain block.
    None,
}

/// A residual (or plain) block.
#[derive(Debug)]
pub struct Residual {
    body: Sequential,
    skip: Skip,
    post: Option<Activation>,
    /// The block's output, kept in training when `post` is a ReLU fused with the sum.
    relu_out: Option<Tensor>,
    /// The training input (a shared handle), for masking the input gradient when the
    /// input is a ReLU's output ([`Layer::backward_relu`]).
    input: Option<Tensor>,
}

impl Residual {
    /// `body(x) + x`.
    pub fn identity(body: Sequential) -> Self {
        Self::new(body, Skip::Identity, None)
    }

    /// `body(x) + projection(x)`.
    pub fn projected(body: Sequential, projection: Sequential) -> Self {
        Self::new(body, Skip::Projection(projection), None)
    }

    /// `post(body(x) + skip(x))`, `post` optional.
    pub fn new(body: Sequential, skip: Skip, post: Option<Activation>) -> Self {
        Residual {
            body,
            skip,
            post,
            relu_out: None,
            input: None,
        }
    }

    /// The shortcut.
    pub fn skip(&self) -> &Skip {
        &self.skip
    }

    fn post_is_relu(&self) -> bool {
        self.post.as_ref().is_some_and(|a| a.act() == Act::Relu)
    }

    fn post_forward(&mut self, y: Tensor, mode: Mode) -> Result<Tensor> {
        match self.post.as_mut() {
            Some(a) => profile::layer("post", a, Phase::Forward, |l| l.forward(&y, mode)),
            None => Ok(y),
        }
    }

    /// Whether the block ends in the fused sum + ReLU.
    fn fused_relu(&self) -> bool {
        !matches!(self.skip, Skip::None) && self.post_is_relu()
    }

    /// The backward; `premasked`: `dy` is already zero where the fused Add+ReLU's output
    /// is 0; `mask_input`: the input gradient is masked where the input is not positive,
    /// in the pass that adds the two branches' gradients ([`Layer::backward_relu`]).
    fn backward_impl(&mut self, dy: &Tensor, premasked: bool, mask_input: bool) -> Result<Tensor> {
        let fused = self.fused_relu();
        let dsum = match self.post.as_mut() {
            Some(_) if fused => {
                let y = self.relu_out.as_ref().ok_or_else(|| no_cache("Residual"))?;
                check_dy("Residual", dy, y.shape())?;
                if premasked {
                    dy.clone()
                } else {
                    let mut d = Tensor::for_overwrite(dy.shape());
                    profile::op("add", "Add+ReLU", true, Phase::Backward, || {
                        relu_backward_from_output(y.data(), dy.data(), d.data_mut())
                    });
                    d
                }
            }
            Some(a) => profile::layer("post", a, Phase::Backward, |l| l.backward(dy))?,
            None => dy.clone(),
        };
        let mut dx = self.body.backward(&dsum)?;
        let skip = match &mut self.skip {
            Skip::Projection(p) => Some(profile::layer("downsample", p, Phase::Backward, |l| {
                l.backward(&dsum)
            })?),
            Skip::Identity => None,
            Skip::None => return Ok(dx),
        };
        let s = skip.as_ref().unwrap_or(&dsum);
        if mask_input {
            // The sum and the backward of the ReLU that produced the input, one pass.
            let x = self.input.as_ref().ok_or_else(|| no_cache("Residual"))?;
            if s.shape() != dx.shape() || x.shape() != dx.shape() {
                return Err(Self::mismatch(dx.shape(), s.shape()));
            }
            profile::op("add", "Add", true, Phase::Backward, || {
                add_where_positive(dx.data_mut(), s.data(), x.data())
            });
            return Ok(dx);
        }
        profile::op("add", "Add", true, Phase::Backward, || dx.add_assign(s))?;
        Ok(dx)
    }

    /// The forward with the body and the projection run by `run(seq, x, name)`
    /// (plainly, or traced; `name` is `""` for the body, `"downsample"` for the
    /// projection).
    fn forward_with(
        &mut self,
        x: &Tensor,
        mode: Mode,
        run: &mut dyn FnMut(&mut dyn Layer, &Tensor, &str) -> Result<Tensor>,
    ) -> Result<Tensor> {
        self.input = mode.caches().then(|| x.clone());
        let mut y = run(&mut self.body, x, "")?;
        let s = match &mut self.skip {
            Skip::Projection(p) => Some(profile::layer("downsample", p, Phase::Forward, |l| {
                run(l, x, "downsample")
            })?),
            Skip::Identity => None,
            Skip::None => return self.post_forward(y, mode),
        };
        let s = s.as_ref().unwrap_or(x);
        if s.shape() != y.shape() {
            return Err(Self::mismatch(y.shape(), s.shape()));
        }
        if self.post_is_relu() {
            // The sum and its ReLU in one pass; the output is the backward mask.
            profile::op("add", "Add+ReLU", true, Phase::Forward, || {
                add_relu_into(y.data_mut(), s.data())
            });
            self.relu_out = mode.caches().then(|| y.clone());
            return Ok(y);
        }
        profile::op("add", "Add", true, Phase::Forward, || y.add_assign(s))?;
        self.post_forward(y, mode)
    }

    /// [`super::forward_traced`] through the body; the shortcut and the sum run as in
    /// [`Layer::forward`] (the caller reports the block's output).
    pub fn forward_traced(
        &mut self,
        x: &Tensor,
        mode: Mode,
        prefix: &str,
        f: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        self.forward_with(x, mode, &mut |seq, x, name| {
            let path = if name.is_empty() {
                prefix.to_string()
            } else {
                join(prefix, name)
            };
            super::forward_traced(seq, x, mode, &path, f)
        })
    }

    fn mismatch(body: &[usize], skip: &[usize]) -> Error {
        Error::shape(
            "Residual",
            format!("a shortcut of the body's output shape {body:?} (add a projection)"),
            skip,
        )
    }
}

impl Layer for Residual {
    fn kind(&self) -> &'static str {
        "Residual"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_with(x, mode, &mut |seq, x, _| seq.forward(x, mode))
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        self.backward_impl(dy, false, false)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let out = self.body.output_shape(input)?;
        let s = match &self.skip {
            Skip::Projection(p) => p.output_shape(input)?,
            Skip::Identity => input.to_vec(),
            Skip::None => return Ok(out),
        };
        if s != out {
            return Err(Self::mismatch(&out, &s));
        }
        Ok(out)
    }

    fn reseed(&mut self, seed: u64) {
        self.body.reseed(seed);
        if let Skip::Projection(p) = &mut self.skip {
            p.reseed(seed ^ 0x5851_F42D_4C95_7F2D);
        }
    }

    fn children_mut(&mut self) -> Vec<(&str, &mut dyn Layer)> {
        let mut c = self.body.children_mut();
        if let Skip::Projection(p) = &mut self.skip {
            c.push(("downsample", p as &mut dyn Layer));
        }
        if let Some(a) = &mut self.post {
            c.push(("post", a as &mut dyn Layer));
        }
        c
    }

    fn children(&self) -> Vec<(&str, &dyn Layer)> {
        let mut c = self.body.children();
        if let Skip::Projection(p) = &self.skip {
            c.push(("downsample", p as &dyn Layer));
        }
        if let Some(a) = &self.post {
            c.push(("post", a as &dyn Layer));
        }
        c
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.body.visit_params(prefix, f);
        if let Skip::Projection(p) = &mut self.skip {
            p.visit_params(&join(prefix, "downsample"), f);
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        self.body.visit_buffers(prefix, f);
        if let Skip::Projection(p) = &mut self.skip {
            p.visit_buffers(&join(prefix, "downsample"), f);
        }
    }
}

impl Fuse for Residual {
    fn relu_output(&self) -> ReluOutput {
        if self.fused_relu() {
            ReluOutput::Applies
        } else {
            ReluOutput::No
        }
    }

    fn masks_relu_input(&self) -> bool {
        !matches!(self.skip, Skip::None)
    }

    fn backward_relu(&mut self, dy: &Tensor, premasked: bool, mask_input: bool) -> Result<Tensor> {
        self.backward_impl(dy, premasked, mask_input)
    }

    fn fuse(&mut self) -> usize {
        let skip = match &mut self.skip {
            Skip::Projection(p) => p.fuse(),
            _ => 0,
        };
        self.body.fuse() + skip
    }
}
