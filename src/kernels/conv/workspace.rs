//! Per-thread buffers of the convolution kernels ([`ConvWorkspace`]), and the small
//! helpers that the forward and backward dispatchers share.

use super::geom::*;
use super::plan::*;
use super::winograd;
use crate::error::{Error, Result};
use crate::kernels::norm::seg_moments;

/// Per-thread buffers of the convolution kernels, kept by the layer between calls.
#[derive(Debug, Default)]
pub struct ConvWorkspace {
    pub(crate) chunks: Vec<ChunkBuf>,
    /// Weights packed for the direct kernel (forward), and for the input gradient.
    pub(crate) packed: Vec<f32>,
    pub(crate) packed_t: Vec<f32>,
    /// The same as bf16 channel pairs ([`bf16`]).
    pub(crate) packed_bf: Vec<u32>,
    pub(crate) packed_bf_t: Vec<u32>,
    /// The key the caller gave for the next forward's weights ([`Self::same_weights`]).
    pub(crate) next_key: Option<u64>,
    /// What the forward's `packed` (or `packed_bf`) was made from, when its caller gave
    /// a key.
    pub(crate) packed_for: Option<PackedFor>,
}

impl ConvWorkspace {
    /// Tells the next forward that its weights hold the same values as those of every
    /// earlier forward given `key` (for example a stamp of the weight tensor,
    /// [`crate::Tensor::stamp`]): when the packed form it kept was made from `key`, for
    /// the same geometry and kernel, it is used again instead of packing the weights
    /// anew. ImageNet layers' packing is milliseconds a call (16 MiB of transformed
    /// weights for 512 × 512 channels), and in inference the weights never change.
    /// Applies to the next forward only; a forward without a key packs, and forgets.
    pub fn same_weights(&mut self, key: u64) {
        self.next_key = Some(key);
    }
}

/// The layout packed weights are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackLayout {
    Winograd,
    WinogradBf16,
    Direct,
    Bf16,
}

/// What a workspace's forward-packed weights were made from: the caller's key, the
/// layout and the geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackedFor {
    pub(crate) key: u64,
    pub(crate) layout: PackLayout,
    pub(crate) geom: ConvGeom,
}

#[derive(Debug, Default)]
pub(crate) struct ChunkBuf {
    pub(crate) col: Vec<f32>,
    pub(crate) dw: Vec<f32>,
    /// Zero-padded image of the direct kernel, and the geometry its zero border is for;
    /// a second one for `dy` in the backward pass.
    pub(crate) pad: Vec<f32>,
    pub(crate) pad_for: Option<(ConvGeom, Path)>,
    pub(crate) pad_dy: Vec<f32>,
    pub(crate) pad_dy_for: Option<(ConvGeom, Path)>,
    /// The channels-last padded image of the Winograd weight gradient, and the
    /// geometry its zero border is for.
    pub(crate) pad_cl: Vec<f32>,
    pub(crate) pad_cl_for: Option<ConvGeom>,
    /// bf16 buffers: the paired gathered image (forward, input gradient), the plain one
    /// and the paired `dy` (weight gradient).
    pub(crate) pairs: Vec<u32>,
    pub(crate) plain: Vec<u16>,
    pub(crate) dy_pairs: Vec<u32>,
    /// Scratch of the gathers (one converted, zero-bordered plane) and of `pair_dy`.
    pub(crate) conv_pairs: Vec<u32>,
    /// One phase's output of a strided layer's input gradient ([`strided`]).
    pub(crate) phase_out: Vec<f32>,
    /// Several images' columns and `dy` for one GEMM of a small plane's weight gradient.
    pub(crate) batch: Vec<f32>,
    /// The full-size output of the images a forward pools before storing them
    /// ([`super::conv2d_forward_max_pooled`]).
    pub(crate) pre_pool: Vec<f32>,
}

/// Weights packed for the f32 or the bf16 gathered kernel.
pub(crate) enum Packed {
    F32(Vec<f32>),
    Bf16(Vec<u32>),
}

/// `buf[..len]`, grown (with zeros) when shorter.
pub(crate) fn grown<T: Default + Clone>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}

/// Where the Winograd input transform reads `count ≤ plan.images` consecutive images
/// `x[count, c_in, h, w]` of `g`: in place where [`winograd::reads_in_place`], otherwise
/// their padded copies, written into `pad` (room for `plan.images` of them, the border
/// zeroed once per geometry, as [`padded`]).
pub(crate) fn winograd_source<'a>(
    pad: &'a mut Vec<f32>,
    pad_for: &mut Option<(ConvGeom, Path)>,
    g: &ConvGeom,
    plan: &winograd::Plan,
    x: &'a [f32],
    count: usize,
) -> winograd::Source<'a> {
    if winograd::reads_in_place(g) {
        return winograd::Source::Plain(x);
    }
    let (len, img) = (plan.pad_len(g), g.c_in * g.h * g.w);
    let slots = plan.images.max(1);
    let p = padded(pad, pad_for, g, Path::Winograd, slots * len);
    for b in 0..count.min(slots) {
        let xi = &x[b * img..(b + 1) * img];
        super::direct::pad_image(g, plan.padded(), xi, &mut p[b * len..(b + 1) * len]);
    }
    winograd::Source::Padded(p)
}

/// The padded buffer of `len` elements for `g` in the layout of `path`, its border
/// zeroed when the geometry or the layout changed.
pub(crate) fn padded<'a>(
    pad: &'a mut Vec<f32>,
    pad_for: &mut Option<(ConvGeom, Path)>,
    g: &ConvGeom,
    path: Path,
    len: usize,
) -> &'a mut [f32] {
    if *pad_for != Some((*g, path)) || pad.len() < len {
        pad.clear();
        pad.resize(len, 0.0);
        *pad_for = Some((*g, path));
    }
    &mut pad[..len]
}

impl ConvWorkspace {
    pub(crate) fn prepare(&mut self, chunks: usize, col_len: usize, dw_len: usize) {
        if self.chunks.len() < chunks {
            self.chunks.resize_with(chunks, ChunkBuf::default);
        }
        for buf in &mut self.chunks[..chunks] {
            if buf.col.len() < col_len {
                buf.col.resize(col_len, 0.0);
            }
            if buf.dw.len() < dw_len {
                buf.dw.resize(dw_len, 0.0);
            }
        }
    }
}

/// Copies the rows of one image's `[rows][ohw]` block into columns `b·ohw ..` of the
/// batched `[rows][cols]` matrix.
pub(crate) fn put_block(src: &[f32], ohw: usize, b: usize, cols: usize, dst: &mut [f32]) {
    for (r, row) in src.chunks_exact(ohw).enumerate() {
        dst[r * cols + b * ohw..r * cols + (b + 1) * ohw].copy_from_slice(row);
    }
}

/// The reverse of [`put_block`].
pub(crate) fn take_block(src: &[f32], ohw: usize, b: usize, cols: usize, dst: &mut [f32]) {
    for (r, row) in dst.chunks_exact_mut(ohw).enumerate() {
        row.copy_from_slice(&src[r * cols + b * ohw..r * cols + (b + 1) * ohw]);
    }
}

/// The end of one image's forward while its output is in cache: the bias (when the
/// kernel did not add it), the ReLU (when it did not apply it), and the moments of its
/// planes for a normalization after the layer.
pub(crate) fn finish_image(
    yi: &mut [f32],
    ohw: usize,
    bias: Option<&[f32]>,
    relu: bool,
    moments: Option<&mut [(f64, f64)]>,
) {
    match bias {
        Some(b) => {
            for (plane, &bc) in yi.chunks_exact_mut(ohw).zip(b) {
                bias_relu(plane, bc, relu);
            }
        }
        None if relu => crate::kernels::eltwise::relu_seq(yi),
        None => {}
    }
    if let Some(m) = moments {
        for (mc, plane) in m.iter_mut().zip(yi.chunks_exact(ohw)) {
            *mc = seg_moments(plane);
        }
    }
}

/// `v += b`, then `max(v, 0)` when `relu`, over one plane in one sweep (on the calling
/// thread: `finish_image` runs inside a chunk's task; two sweeps, the first in plain
/// SSE, were 3.6% of resnet50's inference).
#[multiversion::multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn bias_relu(plane: &mut [f32], b: f32, relu: bool) {
    if relu {
        plane.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
    } else {
        plane.iter_mut().for_each(|v| *v += b);
    }
}

pub(crate) fn check_len(op: &str, what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::shape(
            op,
            format!("{what} of {want} elements"),
            &[got],
        ));
    }
    Ok(())
}

/// `w[c_out, c_in, kh, kw]` flipped and transposed to `[c_in, c_out, kh, kw]`.
pub(crate) fn flip_transpose(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let kk = g.kh * g.kw;
    let mut out = vec![0.0; w.len()];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for t in 0..kk {
                out[(ci * g.c_out + co) * kk + (kk - 1 - t)] = w[(co * g.c_in + ci) * kk + t];
            }
        }
    }
    out
}

/// `dx[i] = 0` where `x[i]` is not positive (as a ReLU's backward from its output).
#[multiversion::multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(crate) fn relu_mask(dx: &mut [f32], x: &[f32]) {
    for (d, &v) in dx.iter_mut().zip(x) {
        *d = if v > 0.0 { *d } else { 0.0 };
    }
}
