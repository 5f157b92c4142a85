//! Which algorithm computes a convolution: the kernel paths, the rules that pick one, and
//! the [`ConvPlan`] that holds the choice for one geometry and precision.
//!
//! The static rules (the default) pick, for the forward: Winograd F(2×2, 3×3) where it
//! applies, else the direct kernel, else the gathered one, else im2col + GEMM; under bf16
//! the bf16 Winograd form or the bf16 gathered kernel where [`bf16::active_for`] says so.
//! [`super::autotune_forward`] instead times every forward candidate that applies, once,
//! and keeps the fastest (cuDNN's benchmark mode); under bf16 the bf16 forward is one of
//! them, and a layer where an f32 kernel wins runs in f32 altogether.

use super::bf16::{self, Precision};
use super::direct;
use super::gathered;
use super::gathered_dw;
use super::geom::*;
use super::strided;
use super::winograd;
use super::winograd_bf16;
use super::winograd_dw;
use super::winograd_dw_wide;

/// Which kernel computes a convolution (forward, or the input gradient as one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// [`winograd`]: F(2×2, 3×3) for stride-1 3×3 layers with enough channels.
    Winograd,
    /// [`direct`]: stride 1, whole vectors of output columns.
    Direct,
    /// [`gathered`]: strided or narrow maps, output positions as one flat run.
    Gathered,
    /// im2col (or the input itself for a pointwise layer) + GEMM.
    Gemm,
}

impl Path {
    /// The static rule: the first kernel, in the order of the variants, that applies.
    pub fn of(g: &ConvGeom) -> Self {
        if winograd::applies(g) {
            Path::Winograd
        } else if direct::applies(g) {
            Path::Direct
        } else if gathered::applies(g) {
            Path::Gathered
        } else {
            Path::Gemm
        }
    }

    /// The static rule for the forward: [`Path::of`], and Winograd also on the small
    /// maps that its batched form takes ([`winograd::forward_applies`]).
    ///
    /// And im2col + GEMM instead of the gathered kernel where the reduction is long
    /// (`kg ≥ 512`): its register tile reads every tap's two vectors of the gathered image
    /// and eight weights per 16 multiply-adds, about 20 bytes a cycle from L2, where the
    /// GEMM's packed panels stay in L1 (forward at batch 16, 2 threads, alternated: 3×3
    /// stride 2 64 → 128 at 56×56 16.9–20.7 → 14.9–15.3 ms, 128 → 128 50 → 30 ms, 256 →
    /// 256 at 28×28 21–30 → 19–21 ms; 128 → 256 even; resnet20's `kg` 144 and 288 and the
    /// 7×7 stem's 147 stay gathered, where it wins 1.1–2×).
    pub fn forward_of(g: &ConvGeom) -> Self {
        if winograd::forward_applies(g) {
            Path::Winograd
        } else {
            Path::forward_per_image(g)
        }
    }

    /// [`Path::forward_of`] without the batched Winograd form: what the forward runs
    /// where that form does not pay (few images per thread, bf16 products).
    pub(crate) fn forward_per_image(g: &ConvGeom) -> Self {
        match Path::of(g) {
            Path::Gathered if g.kg() >= GATHERED_MAX_KG => Path::Gemm,
            p => p,
        }
    }
}

/// The reduction length from which the forward leaves the gathered kernel for
/// im2col + GEMM ([`Path::forward_of`]).
const GATHERED_MAX_KG: usize = 512;

/// The geometry of the input gradient of a stride-1 convolution as a convolution of `dy`
/// (flipped, transposed weights; padding `k − 1 − pad`), when a direct kernel takes it.
pub(crate) fn direct_input_grad(g: &ConvGeom) -> Option<ConvGeom> {
    input_grad_geom(g).filter(|t| Path::of(t) != Path::Gemm)
}

/// The geometry of the input gradient as a convolution of `dy`, when the batched
/// Winograd form takes it and no per-image kernel does ([`direct_input_grad`] is
/// `None`): small maps whose transformed weights exceed L2, ResNet-18's 7×7 maps of
/// 512 channels. [`super::backward`] then runs it several images per band, as the
/// forward does ([`winograd::images`]); im2col + GEMM + col2im took 1.85× the forward's
/// time there.
pub(crate) fn batched_winograd_input_grad(g: &ConvGeom) -> Option<ConvGeom> {
    input_grad_geom(g).filter(|t| {
        Path::of(t) == Path::Gemm
            && winograd::forward_applies(t)
            && winograd::Plan::batch_for(t) > 1
    })
}

/// The input gradient of a stride-1 convolution as a convolution of `dy`, any kernel.
fn input_grad_geom(g: &ConvGeom) -> Option<ConvGeom> {
    if g.stride != (1, 1) || g.dilation != (1, 1) || g.groups != 1 {
        return None;
    }
    let pad = (
        g.kh.checked_sub(1 + g.pad.0)?,
        g.kw.checked_sub(1 + g.pad.1)?,
    );
    let t = ConvGeom::new(
        g.c_out,
        g.oh,
        g.ow,
        g.c_in,
        (g.kh, g.kw),
        (1, 1),
        pad,
        (1, 1),
        1,
    )
    .ok()?;
    (t.oh == g.h && t.ow == g.w).then_some(t)
}

/// A layer whose weights (`kg · c_out ≥ 2²⁰`, 4 MiB) are too many for the small-layer
/// kernels: the 7×7 maps of 512 channels and the 1×1 layers of 2,048 in ImageNet
/// ResNets. Its GEMM products take more images at once ([`gemm_images`]), its weight
/// gradient is one product over the batch, and a strided one's input gradient is
/// GEMM + col2im rather than phases on the gathered kernel (1,024 → 2,048 stride 2 at
/// 14×14: 47 GFLOP/s there).
pub(crate) fn large_layer(g: &ConvGeom) -> bool {
    g.kg() * g.c_out >= 1 << 20
}

/// Images per GEMM for a layer on im2col + GEMM whose output plane is small: enough
/// columns (`images · oh·ow ≥ 128`) for the GEMM to run at speed — one image of a 2×2
/// plane is a product only 4 columns wide. A large layer (`kg · c_out ≥ 2²⁰`, the 7×7
/// maps of 512 channels in ImageNet ResNets) takes images up to 512 columns: its weight
/// gradient (9 MiB for 4,608 × 512) is read and written once per product, so a product
/// of 98 columns spent more time on that traffic than on arithmetic. 1 for grouped
/// layers and large planes.
pub(crate) fn gemm_images(g: &ConvGeom) -> usize {
    let large = large_layer(g);
    if g.groups == 1 && g.ohw() > 0 && g.ohw() < 64 {
        if large {
            512usize.div_ceil(g.ohw()).max(2)
        } else {
            (128 / g.ohw()).max(2)
        }
    } else {
        1
    }
}

impl Path {
    /// Every path whose kernel computes the forward of `g` (im2col + GEMM always does).
    pub fn candidates(g: &ConvGeom) -> Vec<Path> {
        let mut v = vec![];
        if winograd::forward_applies(g) {
            v.push(Path::Winograd);
        }
        if direct::applies(g) {
            v.push(Path::Direct);
        }
        if gathered::applies(g) {
            v.push(Path::Gathered);
        }
        v.push(Path::Gemm);
        v
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Path::Winograd => "winograd",
            Path::Direct => "direct",
            Path::Gathered => "gathered",
            Path::Gemm => "gemm",
        }
    }
}

/// How a layer picks its plan: by the static rules (the default), or by timing the
/// forward candidates once per geometry ([`super::autotune_forward`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tuning {
    /// The rules of [`Path::of`] and [`bf16::active_for`].
    #[default]
    Static,
    /// Time every forward candidate once on the layer's first batch of a geometry (under
    /// bf16 also the bf16 forward: a layer where f32 wins falls back to f32).
    Timed,
}

/// The kernel of a weight gradient ([`ConvPlan::weight_grad`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGrad {
    /// bf16 products on the gathered layout.
    Bf16,
    /// Winograd's `dU`, transformed back.
    Winograd,
    /// The direct kernel from the padded input.
    Direct,
    /// Products on the gathered image ([`gathered_dw`]).
    Gathered,
    /// im2col + GEMM.
    Gemm,
}

/// How one convolution is computed: its geometry, its precision and the kernel of each
/// pass, chosen once (a layer keeps its plan while the input size and precision stay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    /// The geometry.
    pub geom: ConvGeom,
    /// Products in f32 or bf16.
    pub precision: Precision,
    /// The kernel of the f32 forward ([`ConvPlan::forward_name`] tells what runs under
    /// bf16).
    pub forward: Path,
    /// Whether the forward multiplies in bf16.
    pub bf16_forward: bool,
    /// Whether the weight gradient multiplies in bf16.
    pub bf16_weight_grad: bool,
    /// Whether the input gradient may multiply in bf16 (where [`bf16::active_for`] takes
    /// its geometry): the precision's rule, off when timing chose f32 for the layer.
    pub bf16_input_grad: bool,
    /// Whether the forward was timed ([`super::autotune_forward`]) rather than ruled.
    pub tuned: bool,
}

impl ConvPlan {
    /// The static choice for `g` at precision `p`.
    pub fn new(g: ConvGeom, p: Precision) -> Self {
        ConvPlan {
            geom: g,
            precision: p,
            forward: Path::forward_of(&g),
            bf16_forward: bf16::active_for(&g, p),
            bf16_weight_grad: bf16::weight_grad_active_for(&g, p),
            bf16_input_grad: p == Precision::Bf16,
            tuned: false,
        }
    }

    /// The f32 static choice.
    pub fn f32(g: ConvGeom) -> Self {
        Self::new(g, Precision::F32)
    }

    /// This plan with the forward on `path` (which must apply to the geometry: one of
    /// [`Path::candidates`]); `None` when it does not.
    pub fn with_forward(self, path: Path) -> Option<Self> {
        Path::candidates(&self.geom)
            .contains(&path)
            .then_some(ConvPlan {
                forward: path,
                ..self
            })
    }

    /// What the forward runs: `winograd`, `direct`, `gathered`, `gemm` (`gemm×B` when B
    /// images share one product), or their bf16 forms.
    pub fn forward_name(&self) -> String {
        if self.bf16_forward {
            if self.forward == Path::Winograd && winograd_bf16::bf16_available() {
                return "winograd-bf16".into();
            }
            return "gathered-bf16".into();
        }
        match self.forward {
            Path::Gemm if gemm_images(&self.geom) > 1 => {
                format!("gemm×{}", gemm_images(&self.geom))
            }
            p => p.name().into(),
        }
    }

    /// What the input gradient runs: a convolution of `dy` on a kernel path, strided
    /// phases, or GEMM + col2im.
    pub fn input_grad_name(&self) -> String {
        match direct_input_grad(&self.geom) {
            Some(t) if self.bf16_input_grad && bf16::active_for(&t, self.precision) => {
                if Path::of(&t) == Path::Winograd && winograd_bf16::bf16_available() {
                    "winograd-bf16".into()
                } else {
                    "gathered-bf16".into()
                }
            }
            Some(t) => Path::of(&t).name().into(),
            None if !self.bf16_input_grad && batched_winograd_input_grad(&self.geom).is_some() => {
                "winograd".into()
            }
            None if has_avx512()
                && !large_layer(&self.geom)
                && strided::phases(&self.geom, &vec![0.0; self.geom.c_out * self.geom.kg()])
                    .is_some() =>
            {
                "strided-phases".into()
            }
            None => "gemm+col2im".into(),
        }
    }

    /// The kernel of the weight gradient: bf16 gathered where bf16 applies, Winograd on
    /// the 3×3 layers it takes (also faster than the direct kernel on 16→16: resnet20 f32
    /// training +3–6%), direct from the padded input on thin inputs (`c_in ≤ 16`, where it
    /// measured 1.2–1.8× GEMM; 0.4–0.6× on 32–64 channels), on the gathered image where
    /// the gathered forward applies (strided layers, the 7×7/2 stem: 1.05–2.7× GEMM on
    /// resnet20/18's layers), im2col + GEMM otherwise.
    pub fn weight_grad(&self) -> WeightGrad {
        let g = &self.geom;
        if self.bf16_weight_grad {
            WeightGrad::Bf16
        } else if winograd_dw::weight_grad_applies(g) {
            WeightGrad::Winograd
        } else if direct::applies(g) && g.c_in <= 16 {
            WeightGrad::Direct
        } else if gathered_dw::applies(g) {
            WeightGrad::Gathered
        } else {
            WeightGrad::Gemm
        }
    }

    /// What the weight gradient runs.
    pub fn weight_grad_name(&self) -> String {
        match self.weight_grad() {
            WeightGrad::Bf16 => "gathered-bf16".into(),
            WeightGrad::Winograd => "winograd".into(),
            WeightGrad::Direct => "direct".into(),
            WeightGrad::Gathered => "gathered".into(),
            WeightGrad::Gemm if large_layer(&self.geom) && self.geom.groups == 1 => {
                if winograd_dw_wide::applies(&self.geom) {
                    "winograd-batch".into()
                } else {
                    "gemm-batch".into()
                }
            }
            WeightGrad::Gemm if gemm_images(&self.geom) > 1 => {
                format!("gemm×{}", gemm_images(&self.geom))
            }
            WeightGrad::Gemm => "gemm".into(),
        }
    }

    /// One line: `fwd winograd · dx direct · dw winograd (f32)`.
    pub fn describe(&self) -> String {
        format!(
            "fwd {}{} · dx {} · dw {} ({})",
            self.forward_name(),
            if self.tuned { " (timed)" } else { "" },
            self.input_grad_name(),
            self.weight_grad_name(),
            self.precision
        )
    }
}
