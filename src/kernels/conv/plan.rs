//! Which algorithm computes a convolution: the kernel paths and the rules that pick one.

use super::direct::{self};
use super::gathered::{self};
use super::geom::*;
use super::winograd;

/// Which kernel computes a convolution (forward, or the input gradient as one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
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
    pub(crate) fn of(g: &ConvGeom) -> Self {
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
}

/// The geometry of the input gradient of a stride-1 convolution as a convolution of `dy`
/// (flipped, transposed weights; padding `k − 1 − pad`), when a direct kernel takes it.
pub(crate) fn direct_input_grad(g: &ConvGeom) -> Option<ConvGeom> {
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
    (t.oh == g.h && t.ow == g.w && Path::of(&t) != Path::Gemm).then_some(t)
}

/// Images per GEMM for a layer on im2col + GEMM whose output plane is small: enough
/// columns (`images · oh·ow ≥ 128`) for the GEMM to run at speed — one image of a 2×2
/// plane is a product only 4 columns wide. 1 for grouped layers and large planes.
pub(crate) fn gemm_images(g: &ConvGeom) -> usize {
    if g.groups == 1 && g.ohw() > 0 && g.ohw() < 64 {
        (128 / g.ohw()).max(2)
    } else {
        1
    }
}
