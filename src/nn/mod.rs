//! Layers: an explicit forward/backward pair per layer, parameters visited by name.
//!
//! Every layer implements [`Layer`]: `forward(x, mode)` computes the output and, in
//! [`Mode::Train`], keeps in a named cache what `backward` needs; `backward(dy)` returns
//! `dx` and *adds* into the gradients of the layer's parameters (the optimizer zeroes
//! them). Parameters and buffers are visited with their state-dict names
//! (`layer1.0.conv1.weight`, `bn1.running_mean`), the names torchvision uses, so weights
//! can move between strata and PyTorch.
//!
//! ```
//! use strata::nn::{Layer, Mode, Sequential, Conv2d, Conv2dConfig, BatchNorm2d, Activation};
//! use strata::Tensor;
//! use rand::SeedableRng;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let mut net = Sequential::new()
//!     .push("conv", Conv2d::new(Conv2dConfig::new(1, 8, 3).padding(1), &mut rng).unwrap())
//!     .push("bn", BatchNorm2d::new(8).unwrap())
//!     .push("act", Activation::relu());
//! let x = Tensor::randn(&[2, 1, 5, 5], 0.0, 1.0, &mut rng);
//! let y = net.forward(&x, Mode::Train).unwrap();
//! assert_eq!(y.shape(), &[2, 8, 5, 5]);
//! let dx = net.backward(&Tensor::full(y.shape(), 0.1)).unwrap();
//! assert_eq!(dx.shape(), x.shape());
//! assert_eq!(strata::nn::param_names(&mut net), ["conv.weight", "conv.bias", "bn.weight", "bn.bias"]);
//! ```

mod activation;
mod channel_norm;
mod conv2d;
mod dropout;
pub mod exec;
mod flatten;
pub mod fuse;
mod layer_norm;
mod linear;
mod mish;
mod norm;
mod pool;
pub mod registry;
mod residual;
mod sequential;
pub mod spec;

pub use activation::Activation;
pub use channel_norm::ChannelLayerNorm;
pub use conv2d::{Conv2d, Conv2dConfig};
pub use dropout::{Dropout, Dropout2d};
pub use flatten::Flatten;
pub use fuse::{ChannelAffine, Fuse, LayerFuse, PlaneMoments, ReluOutput};
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use mish::Mish;
pub use norm::{BatchNorm2d, GroupNorm, InstanceNorm2d, PerChannelLayerNorm};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, PoolConfig};
pub use residual::{Residual, Skip};
pub use sequential::{has_trainable, set_frozen, Sequential};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Training or evaluation behaviour, passed explicitly to every forward call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, dropout active, caches kept for backward.
    Train,
    /// Running statistics, dropout off, nothing cached: inference (and the fused
    /// paths: a normalization folded into the convolution before it).
    Eval,
    /// The numbers of [`Mode::Eval`] (running statistics, dropout off), with the caches
    /// kept so that `backward` may follow, as PyTorch's `model.eval()` with autograd on:
    /// gradients of an evaluated network (input-gradient maps), fine-tuning with frozen
    /// BatchNorm statistics and dropout off.
    EvalGrad,
}

impl Mode {
    /// Whether a forward in this mode keeps what `backward` needs.
    pub fn caches(self) -> bool {
        self != Mode::Eval
    }

    /// Whether this mode trains: batch statistics, running statistics updated, dropout on.
    pub fn trains(self) -> bool {
        self == Mode::Train
    }
}

/// A learnable tensor and its accumulated gradient.
#[derive(Clone, Debug)]
pub struct Param {
    /// The current value.
    pub value: Tensor,
    /// The gradient accumulated by `backward` since the last [`Param::zero_grad`].
    pub grad: Tensor,
    /// Frozen parameters are skipped by optimizers.
    pub frozen: bool,
    /// Multiplier of the learning rate for this parameter (1; a fine-tuned backbone may
    /// learn slower than its new head, as with PyTorch's parameter groups).
    pub lr_scale: f32,
}

impl Param {
    /// A parameter holding `value`, with a zero gradient.
    pub fn new(value: Tensor) -> Self {
        let grad = Tensor::zeros(value.shape());
        Param {
            value,
            grad,
            frozen: false,
            lr_scale: 1.0,
        }
    }

    /// Resets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }
}

/// A layer with an explicit backward pass.
pub trait Layer: std::any::Any + Send + std::fmt::Debug {
    /// Short name of the layer type (`"Conv2d"`), used in errors and summaries.
    fn kind(&self) -> &'static str;

    /// Computes the output; in [`Mode::Train`] and [`Mode::EvalGrad`] keeps what
    /// `backward` needs.
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor>;

    /// Given `dy = ∂L/∂y`, returns `dx = ∂L/∂x` and adds into the parameter gradients.
    /// Needs a preceding `forward` in [`Mode::Train`] or [`Mode::EvalGrad`].
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor>;

    /// Backward when `dx` is not needed (the network's first layer, the input being
    /// data): only the parameter gradients. Layers that can skip the input-gradient
    /// work do (a convolution saves a third of its backward); containers also skip the
    /// layers before their first trainable one (a frozen prefix costs nothing).
    fn backward_params(&mut self, dy: &Tensor) -> Result<()> {
        self.backward(dy).map(|_| ())
    }

    /// The output shape for an input shape, or the error `forward` would give.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Calls `f` with the full name and the value of every parameter.
    fn visit_params(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param)) {}

    /// Calls `f` with the full name and the value of every buffer (non-learned state).
    fn visit_buffers(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Tensor)) {}

    /// Reseeds any randomness the layer owns (dropout masks) from `seed`; containers pass
    /// it on. A trainer calls this at the start of each epoch, so a resumed run draws the
    /// same masks as an uninterrupted one.
    fn reseed(&mut self, _seed: u64) {}

    /// Named sub-layers of a container (empty for a leaf layer).
    fn children(&self) -> Vec<(&str, &dyn Layer)> {
        vec![]
    }

    /// The same, mutable: for passes over a network ([`visit_layers_mut`]: precision,
    /// frozen statistics, replacing nothing).
    fn children_mut(&mut self) -> Vec<(&str, &mut dyn Layer)> {
        vec![]
    }

    /// How the layer widens the receptive field (for summaries).
    fn receptive(&self) -> Receptive {
        Receptive::Pointwise
    }

    /// Multiply-adds of one forward pass at `input` (convolutions and linear layers; other
    /// layers count 0, as in the usual MAC tables).
    fn macs(&self, _input: &[usize]) -> u64 {
        0
    }

    /// Learnable scalars of this layer alone (not counting children).
    fn own_param_count(&self) -> usize {
        0
    }
}

/// How one layer maps input positions to output positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receptive {
    /// Each output sees the same position of its input (activations, norms, 1×1 maps).
    Pointwise,
    /// A sliding window: kernel `(kh, kw)`, stride, dilation.
    Window {
        /// Kernel size.
        kernel: (usize, usize),
        /// Stride.
        stride: (usize, usize),
        /// Dilation.
        dilation: (usize, usize),
    },
    /// Every output sees the whole input plane (global or adaptive pooling, flatten).
    Global,
}

/// Runs `layer` forward one leaf at a time, in the plain order of the definition (no
/// cross-layer fusion: a convolution does not hand its moments to the normalization
/// after it), and calls `f` with the state-dict path and the output of every leaf and
/// every residual block (`layer1.0`, the output after its sum). In [`Mode::Train`] the
/// numbers are those of [`Layer::forward`], bit for bit, and so are the caches: `backward`
/// may follow. In [`Mode::Eval`] each normalization runs apart from the convolution
/// before it (not folded into its weights), which changes the last bits. Containers are recognised by type ([`Sequential`], [`Residual`]); any other
/// layer is a leaf.
///
/// A ReLU absorbed by the normalization before it (models are built fused, see
/// `models::build_with`) is applied inside that normalization: its output is reported
/// after the ReLU. Build the model unfused to see each layer's own output.
pub fn forward_traced(
    layer: &mut dyn Layer,
    x: &Tensor,
    mode: Mode,
    prefix: &str,
    f: &mut dyn FnMut(&str, &Tensor),
) -> Result<Tensor> {
    let any: &mut dyn std::any::Any = layer;
    if let Some(seq) = any.downcast_mut::<Sequential>() {
        return seq.forward_traced(x, mode, prefix, f);
    }
    if let Some(res) = any.downcast_mut::<Residual>() {
        let y = res.forward_traced(x, mode, prefix, f)?;
        f(prefix, &y);
        return Ok(y);
    }
    let y = layer.forward(x, mode)?;
    f(prefix, &y);
    Ok(y)
}

/// Calls `f` with the state-dict path and every layer of `layer`, containers first, then
/// their children in order.
pub fn visit_layers_mut(
    layer: &mut dyn Layer,
    prefix: &str,
    f: &mut dyn FnMut(&str, &mut dyn Layer),
) {
    f(prefix, layer);
    for (name, child) in layer.children_mut() {
        visit_layers_mut(child, &join(prefix, name), f);
    }
}

/// Sets the precision of every convolution of `layer` ([`Conv2d::set_precision`]).
pub fn set_precision(layer: &mut dyn Layer, p: crate::kernels::bf16::Precision) {
    visit_layers_mut(layer, "", &mut |_, l| {
        if let Some(c) = (l as &mut dyn std::any::Any).downcast_mut::<Conv2d>() {
            c.set_precision(p);
        }
    });
}

/// Sets how every convolution of `layer` picks its kernels ([`Conv2d::set_tuning`]).
pub fn set_tuning(layer: &mut dyn Layer, t: crate::kernels::conv::Tuning) {
    visit_layers_mut(layer, "", &mut |_, l| {
        if let Some(c) = (l as &mut dyn std::any::Any).downcast_mut::<Conv2d>() {
            c.set_tuning(t);
        }
    });
}

/// Gives every convolution of `layer` the book of timed choices `book`
/// ([`Conv2d::set_plan_book`]).
pub fn set_plan_book(
    layer: &mut dyn Layer,
    book: Option<std::sync::Arc<crate::kernels::conv::PlanBook>>,
) {
    visit_layers_mut(layer, "", &mut |_, l| {
        if let Some(c) = (l as &mut dyn std::any::Any).downcast_mut::<Conv2d>() {
            c.set_plan_book(book.clone());
        }
    });
}

/// The plan of every convolution that has run, by state-dict path.
pub fn conv_plans(layer: &mut dyn Layer) -> Vec<(String, crate::kernels::conv::ConvPlan)> {
    let mut v = vec![];
    visit_layers_mut(layer, "", &mut |name, l| {
        if let Some(p) = (l as &mut dyn std::any::Any)
            .downcast_mut::<Conv2d>()
            .and_then(|c| c.plan().copied())
        {
            v.push((name.to_string(), p));
        }
    });
    v
}

/// `prefix.name`, or `name` alone at the top level.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The state-dict names of all parameters, in visiting order.
pub fn param_names(layer: &mut dyn Layer) -> Vec<String> {
    let mut names = vec![];
    layer.visit_params("", &mut |name, _| names.push(name.to_string()));
    names
}

/// The total number of learnable scalars.
pub fn param_count(layer: &mut dyn Layer) -> usize {
    let mut total = 0;
    layer.visit_params("", &mut |_, p| total += p.value.len());
    total
}

/// Sets every parameter gradient to zero.
pub fn zero_grad(layer: &mut dyn Layer) {
    layer.visit_params("", &mut |_, p| p.zero_grad());
}

/// The error returned by `backward` without a training forward.
pub(crate) fn no_cache(layer: &str) -> Error {
    Error::state(
        layer,
        "backward called without a preceding forward in Mode::Train or Mode::EvalGrad (Mode::Eval keeps nothing); run forward(x, Mode::Train) first",
    )
}

/// Checks that `dy` has the shape of the cached output.
pub(crate) fn check_dy(layer: &str, dy: &Tensor, want: &[usize]) -> Result<()> {
    if dy.shape() != want {
        return Err(Error::shape(
            format!("{layer}::backward"),
            format!("dy of the output shape {want:?}"),
            dy.shape(),
        ));
    }
    Ok(())
}

/// Checks a rank-4 input with `c` channels; returns `[n, c, h, w]`.
pub(crate) fn expect_nchw(layer: &str, x: &[usize], c: usize) -> Result<[usize; 4]> {
    match *x {
        [n, xc, h, w] if xc == c => Ok([n, xc, h, w]),
        _ => Err(Error::shape(layer, format!("[N, {c}, H, W]"), x)),
    }
}
