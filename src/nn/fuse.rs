//! Cross-layer fusion, apart from [`Layer`]: the [`Fuse`] trait of the layers that take
//! part, and the pass that finds them.
//!
//! [`Layer`] is the plain contract (forward, backward, parameters, shapes, children).
//! Fusion is an execution detail of the engine's own layers: a convolution hands the
//! moments of its output planes to the normalization after it, a normalization applies
//! the ReLU after it, an eval-mode normalization folds into the convolution before it
//! (with a following max pool on each image's output while it is in cache), and a ReLU's backward mask moves
//! into the layer after it. The containers ([`Sequential`], [`Residual`]) plan these
//! pairings over their children; they find a child's [`Fuse`] side by its type
//! ([`LayerFuse::fusion`]), never by name. A layer outside this module's list simply
//! runs apart — every fusion gives the same numbers as the layers run one by one
//! (tested bit for bit in `sequential.rs`), so a new layer needs none of this.

use super::{
    Activation, BatchNorm2d, Conv2d, GroupNorm, InstanceNorm2d, Layer, MaxPool2d, Mode,
    PerChannelLayerNorm, PoolConfig, Residual, Sequential,
};
use crate::error::Result;
use crate::kernels::eltwise::Act;
use crate::tensor::Tensor;
use std::any::Any;

/// The fusion side of a layer; every method has the "does not fuse" default.
pub trait Fuse: Layer {
    /// Whether [`Fuse::forward_folded`] can fold a per-channel affine map into this
    /// layer's weights (a convolution).
    fn folds_affine(&self) -> bool {
        false
    }

    /// Takes over a ReLU that directly follows this layer, applying it in its own output
    /// pass (and its mask in backward); returns whether it did. The normalization layers
    /// do; see [`Sequential::fuse`].
    fn absorb_relu(&mut self) -> bool {
        false
    }

    /// For a ReLU layer not yet fused: the flag that turns it into a pass-through once
    /// the layer before it has absorbed it. `None` for every other layer.
    fn relu_fusion_flag(&mut self) -> Option<&mut bool> {
        None
    }

    /// In eval mode, the per-channel affine map this layer computes, when it is one (a
    /// BatchNorm2d with its running statistics). [`Sequential`] folds it into the
    /// convolution before it ([`Fuse::forward_folded`]).
    fn eval_affine(&self) -> Option<ChannelAffine> {
        None
    }

    /// The eval-mode forward followed by the map `a`, folded into this layer's weights
    /// (`W·scale` per output channel, `b·scale + shift`): one pass instead of two.
    /// `None` when the layer cannot fold (the caller then runs both layers).
    fn forward_folded(&mut self, _x: &Tensor, _a: &ChannelAffine) -> Option<Result<Tensor>> {
        None
    }

    /// In eval mode, this layer's window when it is a max pool, which a convolution
    /// before it can apply to each image's output while it is in cache
    /// ([`Fuse::forward_folded_pooled`]).
    fn eval_max_pool(&self) -> Option<PoolConfig> {
        None
    }

    /// [`Fuse::forward_folded`] with the map `a` (and its ReLU), then the max pool
    /// `pool`, in one pass. `None` when the layer cannot (the caller then runs the
    /// layers apart).
    fn forward_folded_pooled(
        &mut self,
        _x: &Tensor,
        _a: &ChannelAffine,
        _pool: &PoolConfig,
    ) -> Option<Result<Tensor>> {
        None
    }

    /// The training forward, and the moments (mean, M2: [`crate::kernels::norm::seg_moments`])
    /// of every `(image, channel)` plane of the output, computed while each image's
    /// output is still in cache. `None` when the layer does not compute them. For a
    /// normalization that follows ([`Fuse::forward_with_moments`]), in [`Sequential`].
    fn forward_moments(
        &mut self,
        _x: &Tensor,
        _mode: Mode,
    ) -> Option<Result<(Tensor, PlaneMoments)>> {
        None
    }

    /// Whether [`Fuse::forward_moments`] computes the moments (checked before calling
    /// it, so that a layer is never run, or timed, twice in one step).
    fn gives_moments(&self) -> bool {
        false
    }

    /// Whether this layer's forward in `mode` computes the moments of its input's
    /// planes (a normalization with batch statistics), so that the layer before may
    /// hand them over ([`Fuse::forward_moments`]).
    fn takes_moments(&self, _mode: Mode) -> bool {
        false
    }

    /// The forward with the moments of the input's `(image, channel)` planes given, in
    /// plane order: the same numbers as [`Fuse::forward`] (the statistics are merged
    /// from the same per-plane moments), one pass over the input fewer. `None` when the
    /// layer cannot use them (the caller then runs [`Fuse::forward`]).
    fn forward_with_moments(
        &mut self,
        _x: &Tensor,
        _mode: Mode,
        _moments: &[(f64, f64)],
    ) -> Option<Result<Tensor>> {
        None
    }

    /// Whether this layer's training output is a ReLU's, and who applies its mask in
    /// backward ([`ReluOutput`]). [`Sequential`] lets the layer after such a layer mask
    /// its input gradient itself and the layer that owns the ReLU skip its mask
    /// ([`Fuse::backward_relu`]).
    fn relu_output(&self) -> ReluOutput {
        ReluOutput::No
    }

    /// Whether [`Fuse::backward_relu`] can mask the input gradient (`mask_input`).
    fn masks_relu_input(&self) -> bool {
        false
    }

    /// The backward with ReLU masks moved across layer boundaries, bit-identical to
    /// [`Fuse::backward`] followed by the ReLU backward they replace:
    /// - `premasked` (asked only of a layer whose [`Fuse::relu_output`] is
    ///   [`ReluOutput::Applies`]): `dy` is already zero where the output is 0, so the
    ///   layer skips its own mask;
    /// - `mask_input` (asked only where [`Fuse::masks_relu_input`]): the input is a
    ///   ReLU's output, and the input gradient is returned zero where the input is not
    ///   positive — the ReLU's backward, done here while the gradient is in cache.
    ///
    /// The default ignores `premasked` (masking again changes nothing).
    fn backward_relu(
        &mut self,
        dy: &Tensor,
        _premasked: bool,
        _mask_input: bool,
    ) -> Result<Tensor> {
        self.backward(dy)
    }

    /// Fuses ReLUs into the layers before them inside this container and its children;
    /// returns how many. The numbers are unchanged (same operations, same order per
    /// element); one pass over memory is saved each way.
    fn fuse(&mut self) -> usize {
        0
    }
}

/// Whether a layer's training output is a ReLU's ([`Fuse::relu_output`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReluOutput {
    /// Not a ReLU's output (or not known to be).
    No,
    /// A ReLU's output, and this layer's backward applies the ReLU's mask (a ReLU, a
    /// normalization with a ReLU absorbed).
    Applies,
    /// A fused ReLU that passes its input through: the layer before applies the mask.
    PassThrough,
}

/// Mean and M2 ([`crate::kernels::norm::seg_moments`]) of every `(image, channel)` plane
/// of a tensor, in plane order ([`Fuse::forward_moments`]).
pub type PlaneMoments = Vec<(f64, f64)>;

/// `y[n, c, …] = x[n, c, …]·scale[c] + shift[c]`, then a ReLU when `relu`: an eval-mode
/// BatchNorm2d (with a fused ReLU), ready to fold into the convolution before it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelAffine {
    /// Per-channel factor.
    pub scale: Vec<f32>,
    /// Per-channel offset.
    pub shift: Vec<f32>,
    /// Whether a ReLU follows.
    pub relu: bool,
}

/// The [`Fuse`] side of any layer, found by type: the engine's fusable layers are listed
/// here, every other layer has none (and the defaults of [`Fuse`] apply).
pub trait LayerFuse {
    /// This layer's [`Fuse`] side, if its type takes part in fusion.
    fn fusion(&self) -> Option<&dyn Fuse>;
    /// The same, mutable.
    fn fusion_mut(&mut self) -> Option<&mut dyn Fuse>;
}

macro_rules! fusable {
    ($($t:ty),*) => {
        impl LayerFuse for dyn Layer {
            fn fusion(&self) -> Option<&dyn Fuse> {
                let any: &dyn Any = self;
                $( if let Some(l) = any.downcast_ref::<$t>() { return Some(l); } )*
                None
            }
            fn fusion_mut(&mut self) -> Option<&mut dyn Fuse> {
                let any: &mut dyn Any = self;
                $( if any.is::<$t>() { return any.downcast_mut::<$t>().map(|l| l as &mut dyn Fuse); } )*
                None
            }
        }
    };
}

fusable!(
    Conv2d,
    BatchNorm2d,
    GroupNorm,
    PerChannelLayerNorm,
    InstanceNorm2d,
    Activation,
    MaxPool2d,
    Sequential,
    Residual
);

/// Fuses ReLUs into the normalizations before them throughout `layer` (a pass at build
/// time); returns how many. The same operations in the same order per element: the
/// numbers do not change.
pub fn fuse(layer: &mut dyn Layer) -> usize {
    layer.fusion_mut().map_or(0, |f| f.fuse())
}

/// The [`Fuse`] calls on any layer, for the containers: a layer without a [`Fuse`] side
/// answers with the defaults (does not fuse; a plain backward).
impl dyn Layer {
    /// Whether this is a ReLU layer ([`Activation`] with [`Act::Relu`]).
    pub(crate) fn is_relu(&self) -> bool {
        (self as &dyn Any)
            .downcast_ref::<Activation>()
            .is_some_and(|a| a.act() == Act::Relu)
    }
    pub(crate) fn relu_output(&self) -> ReluOutput {
        self.fusion().map_or(ReluOutput::No, |f| f.relu_output())
    }
    pub(crate) fn masks_relu_input(&self) -> bool {
        self.fusion().is_some_and(|f| f.masks_relu_input())
    }
    pub(crate) fn folds_affine(&self) -> bool {
        self.fusion().is_some_and(|f| f.folds_affine())
    }
    pub(crate) fn eval_affine(&self) -> Option<ChannelAffine> {
        self.fusion().and_then(|f| f.eval_affine())
    }
    pub(crate) fn eval_max_pool(&self) -> Option<PoolConfig> {
        self.fusion().and_then(|f| f.eval_max_pool())
    }
    pub(crate) fn gives_moments(&self) -> bool {
        self.fusion().is_some_and(|f| f.gives_moments())
    }
    pub(crate) fn takes_moments(&self, mode: Mode) -> bool {
        self.fusion().is_some_and(|f| f.takes_moments(mode))
    }
    pub(crate) fn absorb_relu(&mut self) -> bool {
        self.fusion_mut().is_some_and(|f| f.absorb_relu())
    }
    pub(crate) fn relu_fusion_flag(&mut self) -> Option<&mut bool> {
        self.fusion_mut().and_then(|f| f.relu_fusion_flag())
    }
    pub(crate) fn fuse(&mut self) -> usize {
        fuse(self)
    }
    pub(crate) fn forward_folded(
        &mut self,
        x: &Tensor,
        a: &ChannelAffine,
    ) -> Option<Result<Tensor>> {
        self.fusion_mut().and_then(|f| f.forward_folded(x, a))
    }
    pub(crate) fn forward_folded_pooled(
        &mut self,
        x: &Tensor,
        a: &ChannelAffine,
        pool: &PoolConfig,
    ) -> Option<Result<Tensor>> {
        self.fusion_mut()
            .and_then(|f| f.forward_folded_pooled(x, a, pool))
    }
    pub(crate) fn forward_moments(
        &mut self,
        x: &Tensor,
        mode: Mode,
    ) -> Option<Result<(Tensor, PlaneMoments)>> {
        self.fusion_mut().and_then(|f| f.forward_moments(x, mode))
    }
    pub(crate) fn forward_with_moments(
        &mut self,
        x: &Tensor,
        mode: Mode,
        moments: &[(f64, f64)],
    ) -> Option<Result<Tensor>> {
        self.fusion_mut()
            .and_then(|f| f.forward_with_moments(x, mode, moments))
    }
    pub(crate) fn backward_relu(
        &mut self,
        dy: &Tensor,
        premasked: bool,
        mask_input: bool,
    ) -> Result<Tensor> {
        if let Some(f) = self.fusion_mut() {
            return f.backward_relu(dy, premasked, mask_input);
        }
        self.backward(dy)
    }
}
