//! 2-D convolution in NCHW by im2col + GEMM, forward and backward.
//!
//! Dimensions: `n` batch, `c_in`/`c_out` channels, `h, w` input size, `kh, kw` kernel,
//! `oh, ow` output size, `g` groups, `cg_in = c_in / g`, `cg_out = c_out / g`,
//! `kg = cg_in·kh·kw` (the reduction length of one group).
//!
//! Forward, per image and group: `y_g[cg_out, oh·ow] = w_g[cg_out, kg] · col_g[kg, oh·ow]`,
//! where `col = im2col(x)` lays each receptive field out as a column.
//! Backward, per image and group:
//! - `dw_gᵀ += col_g · dy_gᵀ` (partial sums per thread, transposed and combined in a
//!   fixed order; the transposed product is the fast one, see `docs/conv.md`),
//! - `dcol_g = w_gᵀ · dy_g`, then `dx = col2im(dcol)` (scatter-add of the columns),
//! - `db[c] = Σ_{n,oh,ow} dy[n, c]`.
//!
//! A 1×1 convolution with stride 1 and no padding skips im2col: `col` is the image itself.
//! The batch is cut into one chunk per rayon thread; each chunk owns its buffers in a
//! [`ConvWorkspace`], so the steady state allocates nothing.

use super::bf16;
use super::direct::{self, Padded};
use super::gathered::{self, Gathered};
use super::gemm::{matmul, Accumulate, Par, Trans};
use super::norm::seg_moments;
use super::strided;
use super::winograd;
use super::{chunk_count, split_ranges};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Output length of a sliding window (convolution or pooling) along one axis.
///
/// `floor_or_ceil((input + 2·pad − dilation·(kernel−1) − 1) / stride) + 1`; with
/// `ceil_mode` the last window must still start inside the input or left padding
/// (PyTorch's rule). `None` when the window does not fit or a parameter is zero.
pub fn out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = dilation * (kernel - 1) + 1;
    let padded = input + 2 * pad;
    if padded < span {
        return None;
    }
    let room = padded - span;
    let mut out = if ceil_mode {
        room.div_ceil(stride) + 1
    } else {
        room / stride + 1
    };
    if ceil_mode && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    Some(out)
}

/// The geometry of one convolution, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding (vertical, horizontal).
    pub pad: (usize, usize),
    /// Dilation (vertical, horizontal).
    pub dilation: (usize, usize),
    /// Channel groups.
    pub groups: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvGeom {
    /// Validates the parameters and computes the output size.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        (kh, kw): (usize, usize),
        stride: (usize, usize),
        pad: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Self> {
        if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
            return Err(Error::config(
                "Conv2d",
                "groups",
                format!("{groups} groups must divide c_in={c_in} and c_out={c_out}"),
            ));
        }
        let oh = out_size(h, kh, stride.0, pad.0, dilation.0, false);
        let ow = out_size(w, kw, stride.1, pad.1, dilation.1, false);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(Error::shape(
                "Conv2d",
                format!(
                    "an input at least as large as the dilated kernel {}x{} after padding {:?} (stride {:?})",
                    dilation.0 * kh.saturating_sub(1) + 1,
                    dilation.1 * kw.saturating_sub(1) + 1,
                    pad,
                    stride
                ),
                &[c_in, h, w],
            ));
        };
        Ok(ConvGeom {
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            pad,
            dilation,
            groups,
            oh,
            ow,
        })
    }

    /// Reduction length of one group: `c_in/groups · kh · kw`.
    pub fn kg(&self) -> usize {
        self.c_in / self.groups * self.kh * self.kw
    }

    /// Output pixels per channel.
    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }

    /// True when the im2col matrix is the input itself.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == (1, 1) && self.pad == (0, 0)
    }

    /// Multiply-adds of the forward pass for one image.
    pub fn macs_per_image(&self) -> usize {
        self.c_out * self.kg() * self.ohw()
    }
}

/// Per-thread buffers of the convolution kernels, kept by the layer between calls.
#[derive(Debug, Default)]
pub struct ConvWorkspace {
    chunks: Vec<ChunkBuf>,
    /// Weights packed for the direct kernel (forward), and for the input gradient.
    packed: Vec<f32>,
    packed_t: Vec<f32>,
    /// The same as bf16 channel pairs ([`bf16`]).
    packed_bf: Vec<u32>,
    packed_bf_t: Vec<u32>,
}

#[derive(Debug, Default)]
struct ChunkBuf {
    col: Vec<f32>,
    dw: Vec<f32>,
    /// Zero-padded image of the direct kernel, and the geometry its zero border is for;
    /// a second one for `dy` in the backward pass.
    pad: Vec<f32>,
    pad_for: Option<(ConvGeom, Path)>,
    pad_dy: Vec<f32>,
    pad_dy_for: Option<(ConvGeom, Path)>,
    /// The channels-last padded image of the Winograd weight gradient, and the
    /// geometry its zero border is for.
    pad_cl: Vec<f32>,
    pad_cl_for: Option<ConvGeom>,
    /// bf16 buffers: the paired gathered image (forward, input gradient), the plain one
    /// and the paired `dy` (weight gradient).
    pairs: Vec<u32>,
    plain: Vec<u16>,
    dy_pairs: Vec<u32>,
    /// Scratch of the gathers (one converted, zero-bordered plane) and of `pair_dy`.
    conv_pairs: Vec<u32>,
    /// One phase's output of a strided layer's input gradient ([`strided`]).
    phase_out: Vec<f32>,
    /// Several images' columns and `dy` for one GEMM of a small plane's weight gradient.
    batch: Vec<f32>,
}

/// Weights packed for the f32 or the bf16 gathered kernel.
enum Packed {
    F32(Vec<f32>),
    Bf16(Vec<u32>),
}

/// `buf[..len]`, grown (with zeros) when shorter.
fn grown<T: Default + Clone>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}

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

/// The padded buffer of `len` elements for `g` in the layout of `path`, its border
/// zeroed when the geometry or the layout changed.
fn padded<'a>(
    pad: &'a mut Vec<f32>,
    pad_for: &mut Option<(ConvGeom, Path)>,
    g: &ConvGeom,
    path: Path,
    len: usize,
) -> &'a mut [f32] {
    if *pad_for != Some((*g, path)) {
        pad.clear();
        pad.resize(len, 0.0);
        *pad_for = Some((*g, path));
    }
    &mut pad[..len]
}

/// The geometry of the input gradient of a stride-1 convolution as a convolution of `dy`
/// (flipped, transposed weights; padding `k − 1 − pad`), when a direct kernel takes it.
fn direct_input_grad(g: &ConvGeom) -> Option<ConvGeom> {
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

/// `w[c_out, c_in, kh, kw]` flipped and transposed to `[c_in, c_out, kh, kw]`.
fn flip_transpose(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
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

/// Images per GEMM for a layer on im2col + GEMM whose output plane is small: enough
/// columns (`images · oh·ow ≥ 128`) for the GEMM to run at speed — one image of a 2×2
/// plane is a product only 4 columns wide. 1 for grouped layers and large planes.
fn gemm_images(g: &ConvGeom) -> usize {
    if g.groups == 1 && g.ohw() > 0 && g.ohw() < 64 {
        (128 / g.ohw()).max(2)
    } else {
        1
    }
}

/// The end of one image's forward while its output is in cache: the bias (when the
/// kernel did not add it), the ReLU (when it did not apply it), and the moments of its
/// planes for a normalization after the layer.
fn finish_image(
    yi: &mut [f32],
    ohw: usize,
    bias: Option<&[f32]>,
    relu: bool,
    moments: Option<&mut [(f64, f64)]>,
) {
    if let Some(b) = bias {
        for (plane, &bc) in yi.chunks_exact_mut(ohw).zip(b) {
            plane.iter_mut().for_each(|v| *v += bc);
        }
    }
    if relu {
        super::eltwise::relu_inplace(yi);
    }
    if let Some(m) = moments {
        for (mc, plane) in m.iter_mut().zip(yi.chunks_exact(ohw)) {
            *mc = seg_moments(plane);
        }
    }
}

/// Copies the rows of one image's `[rows][ohw]` block into columns `b·ohw ..` of the
/// batched `[rows][cols]` matrix.
fn put_block(src: &[f32], ohw: usize, b: usize, cols: usize, dst: &mut [f32]) {
    for (r, row) in src.chunks_exact(ohw).enumerate() {
        dst[r * cols + b * ohw..r * cols + (b + 1) * ohw].copy_from_slice(row);
    }
}

/// The reverse of [`put_block`].
fn take_block(src: &[f32], ohw: usize, b: usize, cols: usize, dst: &mut [f32]) {
    for (r, row) in dst.chunks_exact_mut(ohw).enumerate() {
        row.copy_from_slice(&src[r * cols + b * ohw..r * cols + (b + 1) * ohw]);
    }
}

impl ConvWorkspace {
    fn prepare(&mut self, chunks: usize, col_len: usize, dw_len: usize) {
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

/// Lays the receptive fields of one image `x[c_in, h, w]` out as columns of
/// `col[c_in·kh·kw, oh·ow]` (zeros where a field reaches into the padding).
pub fn im2col(g: &ConvGeom, x: &[f32], col: &mut [f32]) {
    let ohw = g.ohw();
    let (sh, sw) = g.stride;
    let (ph, pw) = g.pad;
    let (dh, dw) = g.dilation;
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let out = &mut col[row * ohw..(row + 1) * ohw];
                let (lo, hi) = valid_range(g.ow, g.w, sw, pw, j * dw);
                let (ylo, yhi) = valid_range(g.oh, g.h, sh, ph, i * dh);
                if lo >= hi || ylo >= yhi {
                    out.fill(0.0);
                    continue;
                }
                out[..ylo * g.ow].fill(0.0);
                out[yhi * g.ow..].fill(0.0);
                let ix0 = lo * sw + j * dw - pw;
                let n = hi - lo;
                for (oy, dst) in out.chunks_exact_mut(g.ow).enumerate().take(yhi).skip(ylo) {
                    let iy = oy * sh + i * dh - ph;
                    let src = &plane[iy * g.w + ix0..];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if sw == 1 {
                        dst[lo..hi].copy_from_slice(&src[..n]);
                    } else {
                        for (v, &s) in dst[lo..hi].iter_mut().zip(src.iter().step_by(sw)) {
                            *v = s;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the columns `col[c_in·kh·kw, oh·ow]` back onto the image `dx[c_in, h, w]`
/// (the adjoint of [`im2col`]).
pub fn col2im(g: &ConvGeom, col: &[f32], dx: &mut [f32]) {
    let ohw = g.ohw();
    let (sh, sw) = g.stride;
    let (ph, pw) = g.pad;
    let (dh, dw) = g.dilation;
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let src = &col[row * ohw..(row + 1) * ohw];
                let (lo, hi) = valid_range(g.ow, g.w, sw, pw, j * dw);
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.oh {
                    let iy = (oy * sh + i * dh) as isize - ph as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let s = &src[oy * g.ow..(oy + 1) * g.ow];
                    let ix0 = lo * sw + j * dw - pw;
                    if sw == 1 {
                        for (d, v) in dst[ix0..ix0 + (hi - lo)].iter_mut().zip(&s[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        for (k, v) in s[lo..hi].iter().enumerate() {
                            dst[ix0 + k * sw] += v;
                        }
                    }
                }
            }
        }
    }
}

/// The output columns `ox` in `lo..hi` whose input column `ox·stride + offset − pad`
/// lies inside `0..w`.
pub(crate) fn valid_range(
    ow: usize,
    w: usize,
    stride: usize,
    pad: usize,
    offset: usize,
) -> (usize, usize) {
    // ox·stride + offset ≥ pad  ⇔  ox ≥ ceil((pad − offset) / stride)
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // ox·stride + offset − pad ≤ w − 1  ⇔  ox ≤ (w − 1 + pad − offset) / stride
    let hi = if w + pad > offset {
        ((w - 1 + pad - offset) / stride + 1).min(ow)
    } else {
        0
    };
    (lo.min(ow), hi.max(lo.min(ow)))
}

fn check_len(op: &str, what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::shape(
            op,
            format!("{what} of {want} elements"),
            &[got],
        ));
    }
    Ok(())
}

/// `y[n, c_out, oh, ow] = conv(x[n, c_in, h, w], weight[c_out, c_in/g, kh, kw]) + bias`.
pub fn conv2d_forward(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    forward(g, n, x, weight, bias, y, None, (false, false), ws)
}

/// [`conv2d_forward`] followed by a ReLU, applied to each image's output while it is in
/// cache (in the output transform of the Winograd kernel): the eval-mode path of a
/// convolution with a folded BatchNorm + ReLU after it.
pub fn conv2d_forward_relu(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    forward(g, n, x, weight, bias, y, None, (true, false), ws)
}

/// Whether [`conv2d_forward_pooled`] takes `g` now: layers the Winograd kernel computes
/// (f32, or bf16 where the CPU runs its bf16 form), with at least a 2×2 output.
pub fn pooled_applies(g: &ConvGeom) -> bool {
    Path::of(g) == Path::Winograd
        && g.oh >= 2
        && g.ow >= 2
        && (!bf16::active_for(g) || winograd::bf16_available())
}

/// [`conv2d_forward`], optionally a ReLU, then a 2×2 max pool with stride 2 (floor mode,
/// NaN wins), in the Winograd kernel's output transform — each 2×2 output tile is one
/// pooling window, so the full-size output is never written: the eval-mode path of
/// convolution → BatchNorm → ReLU → MaxPool2d(2). `y` is `[n, c_out, oh/2, ow/2]`.
/// An error unless [`pooled_applies`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_pooled(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    if !pooled_applies(g) {
        return Err(Error::config(
            "conv2d_forward_pooled",
            "geometry",
            format!("{g:?} is not one the Winograd kernel computes; run the convolution and the pool apart"),
        ));
    }
    forward(g, n, x, weight, bias, y, None, (relu, true), ws)
}

/// [`conv2d_forward`], and the [`seg_moments`] (mean, M2) of every output plane `(n,
/// c_out)` into `moments`, computed from each image's output while it is still in
/// cache: what a normalization after this layer needs ([`super::norm::norm_stats_from`]),
/// without reading the output back from memory.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_moments(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    moments: &mut [(f64, f64)],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    check_len("conv2d_forward", "moments", moments.len(), n * g.c_out)?;
    forward(g, n, x, weight, bias, y, Some(moments), (false, false), ws)
}

#[allow(clippy::too_many_arguments)]
fn forward(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    moments: Option<&mut [(f64, f64)]>,
    (relu, pool): (bool, bool),
    ws: &mut ConvWorkspace,
) -> Result<()> {
    let ep_len = winograd::Epilogue {
        bias: None,
        relu,
        pool,
    };
    let (x_img, y_img) = (g.c_in * g.h * g.w, ep_len.out_len(g));
    check_len("conv2d_forward", "x", x.len(), n * x_img)?;
    check_len("conv2d_forward", "y", y.len(), n * y_img)?;
    check_len("conv2d_forward", "weight", weight.len(), g.c_out * g.kg())?;
    if let Some(b) = bias {
        check_len("conv2d_forward", "bias", b.len(), g.c_out)?;
    }
    if n == 0 || y_img == 0 {
        return Ok(());
    }
    let chunks = chunk_count(n);
    let path = Path::of(g);
    let gd = Gathered::of(g);
    let wplan = winograd::Plan::of(g);
    let col_len = match path {
        Path::Winograd => wplan.work_len(g),
        Path::Direct => 0,
        Path::Gathered => gd.len(g),
        Path::Gemm if g.is_pointwise() => 0,
        Path::Gemm => g.kg() * g.groups * g.ohw(),
    };
    // Small planes on GEMM: several images per product (one image's columns, then the
    // batch's input columns and outputs).
    let gb = if path == Path::Gemm {
        gemm_images(g)
    } else {
        1
    };
    let col_len = if gb > 1 {
        g.kg() * g.ohw() + (g.kg() + g.c_out) * gb * g.ohw()
    } else {
        col_len
    };
    ws.prepare(chunks, col_len, 0);
    let bf = bf16::active_for(g);
    // bf16 products of a layer the Winograd kernel takes: its bf16 form.
    let wbf = bf && path == Path::Winograd && winograd::bf16_available();
    let bf_len = gd.len(&bf16::paired_geom(g));
    if wbf {
        winograd::pack_weights_bf16(g, weight, &mut ws.packed_bf);
    } else if bf {
        bf16::pack_weights(g, weight, &mut ws.packed_bf);
    } else if path == Path::Winograd {
        winograd::pack_weights(g, weight, &mut ws.packed);
    } else if path != Path::Gemm {
        direct::pack_weights(g, weight, &mut ws.packed);
    }
    let (packed, packed_bf) = (&ws.packed, &ws.packed_bf);
    let pd = Padded::of(g);
    let ranges = split_ranges(n, chunks);
    let (cg_out, kg, ohw) = (g.c_out / g.groups, g.kg(), g.ohw());
    // Hand each chunk of images its slice of y (and of the moments) and its buffers.
    let mut jobs = Vec::with_capacity(chunks);
    let mut rest = y;
    let mut rest_m = moments;
    for (range, buf) in ranges.iter().zip(ws.chunks.iter_mut()) {
        let (mine, tail) = rest.split_at_mut(range.len() * y_img);
        rest = tail;
        let mine_m = match rest_m.take() {
            Some(m) => {
                let (mine_m, tail_m) = m.split_at_mut(range.len() * g.c_out);
                rest_m = Some(tail_m);
                Some(mine_m)
            }
            None => None,
        };
        jobs.push((range.clone(), mine, mine_m, buf));
    }
    jobs.into_par_iter()
        .try_for_each(|(range, y_chunk, mut m_chunk, buf)| -> Result<()> {
            if gb > 1 {
                // y_b[c_out, images·ohw] = w · col_b, then each image's planes out.
                let (one, rest) = buf.col[..col_len].split_at_mut(kg * ohw);
                let (colb, yb) = rest.split_at_mut(kg * gb * ohw);
                let mut i0 = 0;
                while i0 < range.len() {
                    let bn = gb.min(range.len() - i0);
                    let cols = bn * ohw;
                    for b in 0..bn {
                        let img = range.start + i0 + b;
                        let xi = &x[img * x_img..(img + 1) * x_img];
                        if g.is_pointwise() {
                            put_block(xi, ohw, b, cols, colb);
                        } else {
                            im2col(g, xi, one);
                            put_block(one, ohw, b, cols, colb);
                        }
                    }
                    let yb = &mut yb[..g.c_out * cols];
                    matmul(
                        g.c_out,
                        cols,
                        kg,
                        weight,
                        Trans::No,
                        &colb[..kg * cols],
                        Trans::No,
                        yb,
                        Accumulate::No,
                        Par::Seq,
                    )?;
                    for b in 0..bn {
                        let j = i0 + b;
                        let yi = &mut y_chunk[j * y_img..(j + 1) * y_img];
                        take_block(yb, ohw, b, cols, yi);
                        let mj = m_chunk
                            .as_deref_mut()
                            .map(|m| &mut m[j * g.c_out..(j + 1) * g.c_out]);
                        finish_image(yi, ohw, bias, relu, mj);
                    }
                    i0 += bn;
                }
                return Ok(());
            }
            for (i, img) in range.enumerate() {
                let xi = &x[img * x_img..(img + 1) * x_img];
                let yi = &mut y_chunk[i * y_img..(i + 1) * y_img];
                // Whether the kernel applied the ReLU itself; the bias left to add (GEMM).
                let mut relu_done = false;
                let mut gemm_bias = None;
                'image: {
                    if wbf {
                        let len = wplan.pad_len(g);
                        let p = padded(&mut buf.pad, &mut buf.pad_for, g, path, len);
                        direct::pad_image(g, wplan.padded(), xi, p);
                        let q = grown(&mut buf.pairs, wplan.pairs_len(g));
                        let work = &mut buf.col[..col_len];
                        let ep = winograd::Epilogue { bias, relu, pool };
                        winograd::image_bf16(g, &wplan, p, packed_bf, ep, yi, q, work);
                        relu_done = true;
                        break 'image;
                    }
                    if bf {
                        let q = grown(&mut buf.pairs, bf_len);
                        bf16::gather_pairs(g, gd, xi, &mut buf.conv_pairs, q);
                        bf16::image(g, gd, q, packed_bf, bias, yi);
                        break 'image;
                    }
                    match path {
                        Path::Winograd => {
                            let len = wplan.pad_len(g);
                            let p = padded(&mut buf.pad, &mut buf.pad_for, g, path, len);
                            direct::pad_image(g, wplan.padded(), xi, p);
                            let work = &mut buf.col[..col_len];
                            let ep = winograd::Epilogue { bias, relu, pool };
                            winograd::image(g, &wplan, p, packed, ep, yi, work);
                            relu_done = true;
                            break 'image;
                        }
                        Path::Direct => {
                            let p = padded(&mut buf.pad, &mut buf.pad_for, g, path, pd.len(g));
                            direct::pad_image(g, pd, xi, p);
                            direct::image(g, pd, p, packed, bias, yi);
                            break 'image;
                        }
                        Path::Gathered => {
                            let q = &mut buf.col[..col_len];
                            gathered::gather_f32(g, gd, xi, &mut buf.conv_pairs, q);
                            gathered::image(g, gd, q, packed, bias, yi);
                            break 'image;
                        }
                        Path::Gemm => {}
                    }
                    let col: &[f32] = if g.is_pointwise() {
                        xi
                    } else {
                        im2col(g, xi, &mut buf.col[..col_len]);
                        &buf.col[..col_len]
                    };
                    for grp in 0..g.groups {
                        matmul(
                            cg_out,
                            ohw,
                            kg,
                            &weight[grp * cg_out * kg..(grp + 1) * cg_out * kg],
                            Trans::No,
                            &col[grp * kg * ohw..(grp + 1) * kg * ohw],
                            Trans::No,
                            &mut yi[grp * cg_out * ohw..(grp + 1) * cg_out * ohw],
                            Accumulate::No,
                            Par::Seq,
                        )?;
                    }
                    gemm_bias = bias;
                }
                let mi = m_chunk
                    .as_deref_mut()
                    .map(|m| &mut m[i * g.c_out..(i + 1) * g.c_out]);
                finish_image(yi, ohw, gemm_bias, relu && !relu_done, mi);
            }
            Ok(())
        })
}

/// Gradients of [`conv2d_forward`]: `dx` is overwritten (if asked for), `dweight` and
/// `dbias` are accumulated into (`+=`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    ws: &mut ConvWorkspace,
) -> Result<()> {
    backward(g, n, x, weight, dy, dx, dweight, dbias, false, ws)
}

/// [`conv2d_backward`] for an input that is a ReLU's output: `dx` is zero where `x` is
/// not positive — the ReLU's backward, applied to each image's `dx` while it is still in
/// cache (what `eltwise::relu_backward_from_output` would compute from `dx`, bit for
/// bit), so the ReLU's own pass can be skipped.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_relu_input(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    ws: &mut ConvWorkspace,
) -> Result<()> {
    backward(g, n, x, weight, dy, Some(dx), dweight, dbias, true, ws)
}

/// `dx[i] = 0` where `x[i]` is not positive (as a ReLU's backward from its output).
#[multiversion::multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn relu_mask(dx: &mut [f32], x: &[f32]) {
    for (d, &v) in dx.iter_mut().zip(x) {
        *d = if v > 0.0 { *d } else { 0.0 };
    }
}

#[allow(clippy::too_many_arguments)]
fn backward(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    mask_by_input: bool,
    ws: &mut ConvWorkspace,
) -> Result<()> {
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * g.ohw());
    let w_len = g.c_out * g.kg();
    check_len("conv2d_backward", "x", x.len(), n * x_img)?;
    check_len("conv2d_backward", "dy", dy.len(), n * y_img)?;
    check_len("conv2d_backward", "weight", weight.len(), w_len)?;
    check_len("conv2d_backward", "dweight", dweight.len(), w_len)?;
    let (cg_out, kg, ohw) = (g.c_out / g.groups, g.kg(), g.ohw());
    if let Some(db) = dbias {
        check_len("conv2d_backward", "dbias", db.len(), g.c_out)?;
        db.par_iter_mut().enumerate().for_each(|(c, d)| {
            let mut s = 0.0f64;
            for img in 0..n {
                let start = img * y_img + c * ohw;
                s += dy[start..start + ohw]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>();
            }
            *d += s as f32;
        });
    }
    let mut dx = dx;
    // The input gradient as a direct convolution of dy, where the kernel takes it.
    let dgeom = dx.as_ref().and_then(|_| direct_input_grad(g));
    // A strided layer's input gradient phase by phase on the gathered kernels
    // ([`strided`]), where AVX-512 runs them.
    let phases = match (&dx, &dgeom) {
        (Some(_), None) if direct::has_avx512() => strided::phases(g, weight),
        _ => None,
    };
    if let Some(d) = dx.as_deref_mut() {
        check_len("conv2d_backward", "dx", d.len(), n * x_img)?;
        if dgeom.is_none() && phases.is_none() {
            d.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    if n == 0 || y_img == 0 {
        return Ok(());
    }
    let chunks = chunk_count(n);
    let col_len = g.kg() * g.groups * ohw;
    // The input gradient's kernel, and its gathered buffer (in `col`, after the
    // weight gradient is done with it) when it is the gathered one.
    let dpath = dgeom.as_ref().map_or(Path::Gemm, Path::of);
    let gdt = dgeom.as_ref().map(Gathered::of);
    let gdt_len = match (&dgeom, gdt) {
        (Some(gt), Some(gd)) if dpath == Path::Gathered => gd.len(gt),
        (Some(gt), _) if dpath == Path::Winograd => winograd::Plan::of(gt).work_len(gt),
        _ => 0,
    };
    // bf16 products: the weight gradient (transposed accumulator in `dw`), and the
    // input gradient of a stride-1 layer.
    let bf_dw = bf16::weight_grad_active_for(g);
    let bf_dx = dgeom.as_ref().is_some_and(bf16::active_for);
    let wbf_dx = bf_dx && dpath == Path::Winograd && winograd::bf16_available();
    let gd = Gathered::of(g);
    // The weight gradient by Winograd on the 3×3 layers it takes (also faster than the
    // direct kernel on 16→16: resnet20 f32 training +3–6%); from the padded input where
    // the direct kernel takes it and is the faster (thin inputs: measured 1.2–1.8× on
    // c_in ≤ 16, 0.4–0.6× on 32–64 channels); im2col + GEMM otherwise. The direct one
    // accumulates in the natural layout; Winograd's `dU` follows it in `dw`.
    let wino_dw = !bf_dw && winograd::weight_grad_applies(g);
    let direct_dw = !wino_dw && direct::applies(g) && g.c_in <= 16;
    let dw_len = if bf_dw {
        w_len.max(bf16::wgrad_acc_len(g))
    } else if wino_dw {
        w_len + winograd::wgrad_acc_len(g)
    } else {
        w_len
    };
    let wino_work = if wino_dw {
        winograd::wgrad_work_len(g)
    } else {
        0
    };
    // A GEMM weight gradient of a small plane: several images per product (their
    // columns and dy side by side, after the per-image buffers in `col`).
    let gemm_dw = !direct_dw && !bf_dw && !wino_dw;
    let gbw = if gemm_dw { gemm_images(g) } else { 1 };
    // ... and its input gradient too, when that is GEMM + col2im (`dcol` of the block
    // after the columns and dy).
    let batch_dx = gbw > 1 && dx.is_some() && dgeom.is_none() && phases.is_none();
    let batch_len = if gbw > 1 {
        (kg + g.c_out + if batch_dx { kg } else { 0 }) * gbw * ohw
    } else {
        0
    };
    ws.prepare(chunks, col_len.max(gdt_len).max(wino_work), dw_len);
    let ranges = split_ranges(n, chunks);
    let pointwise = g.is_pointwise();
    let pd = Padded::of(g);
    if let Some(gt) = &dgeom {
        if wbf_dx {
            winograd::pack_weights_bf16(gt, &flip_transpose(g, weight), &mut ws.packed_bf_t);
        } else if bf_dx {
            bf16::pack_weights(gt, &flip_transpose(g, weight), &mut ws.packed_bf_t);
        } else if dpath == Path::Winograd {
            winograd::pack_weights(gt, &flip_transpose(g, weight), &mut ws.packed_t);
        } else {
            direct::pack_weights(gt, &flip_transpose(g, weight), &mut ws.packed_t);
        }
    }
    // Each phase's weights, packed for the bf16 kernel (enough channels of dy to pair)
    // or the f32 one.
    let phase_bf = |pg: &ConvGeom| {
        bf16::precision() == bf16::Precision::Bf16 && pg.c_in >= 8 && bf16::available()
    };
    let phase_packs: Vec<Packed> = phases
        .iter()
        .flatten()
        .map(|ph| match &ph.conv {
            Some((pg, pw)) if phase_bf(pg) => {
                let mut v = Vec::new();
                bf16::pack_weights(pg, pw, &mut v);
                Packed::Bf16(v)
            }
            Some((pg, pw)) => {
                let mut v = Vec::new();
                direct::pack_weights(pg, pw, &mut v);
                Packed::F32(v)
            }
            None => Packed::F32(Vec::new()),
        })
        .collect();
    let (packed_t, packed_bf_t) = (&ws.packed_t, &ws.packed_bf_t);
    let mut jobs = Vec::with_capacity(chunks);
    let mut rest = dx;
    for (range, buf) in ranges.iter().zip(ws.chunks.iter_mut()) {
        let mine = match rest.take() {
            Some(r) => {
                let (mine, tail) = r.split_at_mut(range.len() * x_img);
                rest = Some(tail);
                Some(mine)
            }
            None => None,
        };
        jobs.push((range.clone(), mine, buf));
    }
    jobs.into_par_iter()
        .try_for_each(|(range, mut dx_chunk, buf)| -> Result<()> {
            let ChunkBuf {
                col,
                dw,
                pad,
                pad_for,
                pad_dy,
                pad_dy_for,
                pad_cl,
                pad_cl_for,
                pairs,
                plain,
                dy_pairs,
                conv_pairs,
                phase_out,
                batch,
            } = buf;
            dw[..dw_len].iter_mut().for_each(|v| *v = 0.0);
            let (images, first) = (range.len(), range.start);
            for (i, img) in range.enumerate() {
                let xi = &x[img * x_img..(img + 1) * x_img];
                let dyi = &dy[img * y_img..(img + 1) * y_img];
                if bf_dw {
                    let q = grown(plain, bf16::wgrad_input_len(g, gd));
                    bf16::gather_plain(g, gd, xi, conv_pairs, q);
                    let d = grown(dy_pairs, bf16::wgrad_dy_len(g));
                    bf16::pair_dy(g, dyi, conv_pairs, d);
                    bf16::weight_grad(g, gd, q, d, &mut dw[..dw_len]);
                } else if direct_dw {
                    let p = padded(pad, pad_for, g, Path::Direct, pd.len(g));
                    direct::pad_image(g, pd, xi, p);
                    direct::weight_grad(g, pd, p, dyi, &mut dw[..w_len]);
                } else if wino_dw {
                    let len = winograd::wgrad_pad_len(g);
                    if *pad_cl_for != Some(*g) {
                        pad_cl.clear();
                        pad_cl.resize(len, 0.0);
                        *pad_cl_for = Some(*g);
                    }
                    let acc = &mut dw[w_len..dw_len];
                    let work = &mut col[..wino_work];
                    winograd::weight_grad_image(g, xi, dyi, acc, &mut pad_cl[..len], work);
                }
                // dw_gᵀ[kg, cg_out] += col_g · dy_gᵀ. The transposed product keeps the
                // long dimension (kg) in the GEMM's rows: 2–6× faster than dy_g · col_gᵀ
                // when cg_out is small (docs/conv.md).
                if gbw > 1 {
                    // Image i's columns and dy into slot b of its block; the block's
                    // product when it is full.
                    let i0 = i / gbw * gbw;
                    let (bn, b) = (gbw.min(images - i0), i - i0);
                    let cols = bn * ohw;
                    let batch = grown(batch, batch_len);
                    let (colb, rest) = batch.split_at_mut(kg * gbw * ohw);
                    let (dyb, dcolb) = rest.split_at_mut(g.c_out * gbw * ohw);
                    if pointwise {
                        put_block(xi, ohw, b, cols, colb);
                    } else {
                        im2col(g, xi, &mut col[..col_len]);
                        put_block(&col[..col_len], ohw, b, cols, colb);
                    }
                    put_block(dyi, ohw, b, cols, dyb);
                    if b + 1 == bn {
                        matmul(
                            kg,
                            g.c_out,
                            cols,
                            &colb[..kg * cols],
                            Trans::No,
                            &dyb[..g.c_out * cols],
                            Trans::Yes,
                            &mut dw[..w_len],
                            Accumulate::Yes,
                            Par::Seq,
                        )?;
                    }
                    // dcol_b = wᵀ · dy_b, then each image's dx = col2im(its columns),
                    // masked for a ReLU before this layer.
                    if let (true, true, Some(dxc)) =
                        (batch_dx, b + 1 == bn, dx_chunk.as_deref_mut())
                    {
                        let dcolb = &mut dcolb[..kg * cols];
                        matmul(
                            kg,
                            cols,
                            g.c_out,
                            weight,
                            Trans::Yes,
                            &dyb[..g.c_out * cols],
                            Trans::No,
                            dcolb,
                            Accumulate::No,
                            Par::Seq,
                        )?;
                        for bb in 0..bn {
                            let j = i0 + bb;
                            let dxj = &mut dxc[j * x_img..(j + 1) * x_img];
                            if pointwise {
                                take_block(dcolb, ohw, bb, cols, dxj);
                            } else {
                                take_block(dcolb, ohw, bb, cols, &mut col[..col_len]);
                                col2im(g, &col[..col_len], dxj);
                            }
                            if mask_by_input {
                                let xj = &x[(first + j) * x_img..(first + j + 1) * x_img];
                                relu_mask(dxj, xj);
                            }
                        }
                    }
                }
                let col_ref: &[f32] = if pointwise || gbw > 1 {
                    xi
                } else if direct_dw || bf_dw || wino_dw {
                    &[]
                } else {
                    im2col(g, xi, &mut col[..col_len]);
                    &col[..col_len]
                };
                for grp in (0..g.groups).filter(|_| gemm_dw && gbw == 1) {
                    matmul(
                        kg,
                        cg_out,
                        ohw,
                        &col_ref[grp * kg * ohw..(grp + 1) * kg * ohw],
                        Trans::No,
                        &dyi[grp * cg_out * ohw..(grp + 1) * cg_out * ohw],
                        Trans::Yes,
                        &mut dw[grp * cg_out * kg..(grp + 1) * cg_out * kg],
                        Accumulate::Yes,
                        Par::Seq,
                    )?;
                }
                'dx: {
                    if let (Some(dxc), Some(phs)) = (dx_chunk.as_deref_mut(), &phases) {
                        let dxi = &mut dxc[i * x_img..(i + 1) * x_img];
                        // The column phase whose gathered dy is in the buffer: the
                        // phases of one `b` share it (same padding and kernel width).
                        let mut have: Option<(usize, bool)> = None;
                        for (ph, pack) in phs.iter().zip(&phase_packs) {
                            let Some((pg, _)) = &ph.conv else {
                                strided::scatter(g, ph, &[], dxi);
                                continue;
                            };
                            let pgd = Gathered::of(pg);
                            let out = grown(phase_out, pg.c_out * pg.ohw());
                            let fresh = have != Some((ph.b, matches!(pack, Packed::Bf16(_))));
                            match pack {
                                Packed::Bf16(wp) => {
                                    let q = grown(pairs, pgd.len(&bf16::paired_geom(pg)));
                                    if fresh {
                                        bf16::gather_pairs(pg, pgd, dyi, conv_pairs, q);
                                    }
                                    bf16::image(pg, pgd, q, wp, None, out);
                                    have = Some((ph.b, true));
                                }
                                Packed::F32(wp) => {
                                    let q = grown(col, pgd.len(pg));
                                    if fresh {
                                        gathered::gather_f32(pg, pgd, dyi, conv_pairs, q);
                                    }
                                    gathered::image(pg, pgd, q, wp, None, out);
                                    have = Some((ph.b, false));
                                }
                            }
                            strided::scatter(g, ph, out, dxi);
                        }
                        break 'dx;
                    }
                    // dx as a direct convolution of dy with the flipped, transposed weights
                    if let (Some(dxc), Some(gt), Some(gd)) = (dx_chunk.as_deref_mut(), &dgeom, gdt)
                    {
                        let dxi = &mut dxc[i * x_img..(i + 1) * x_img];
                        if wbf_dx {
                            let plan = winograd::Plan::of(gt);
                            let p = padded(pad_dy, pad_dy_for, gt, dpath, plan.pad_len(gt));
                            direct::pad_image(gt, plan.padded(), dyi, p);
                            let q = grown(pairs, plan.pairs_len(gt));
                            let work = &mut col[..gdt_len];
                            let ep = winograd::Epilogue::default();
                            winograd::image_bf16(gt, &plan, p, packed_bf_t, ep, dxi, q, work);
                            break 'dx;
                        }
                        if bf_dx {
                            let q = grown(pairs, gd.len(&bf16::paired_geom(gt)));
                            bf16::gather_pairs(gt, gd, dyi, conv_pairs, q);
                            bf16::image(gt, gd, q, packed_bf_t, None, dxi);
                            break 'dx;
                        }
                        if dpath == Path::Gathered {
                            let q = &mut col[..gdt_len];
                            gathered::gather_f32(gt, gd, dyi, conv_pairs, q);
                            gathered::image(gt, gd, q, packed_t, None, dxi);
                            break 'dx;
                        }
                        if dpath == Path::Winograd {
                            let plan = winograd::Plan::of(gt);
                            let p = padded(pad_dy, pad_dy_for, gt, dpath, plan.pad_len(gt));
                            direct::pad_image(gt, plan.padded(), dyi, p);
                            let work = &mut col[..gdt_len];
                            let ep = winograd::Epilogue::default();
                            winograd::image(gt, &plan, p, packed_t, ep, dxi, work);
                            break 'dx;
                        }
                        let pdt = Padded::of(gt);
                        let p = padded(pad_dy, pad_dy_for, gt, dpath, pdt.len(gt));
                        direct::pad_image(gt, pdt, dyi, p);
                        direct::image(gt, pdt, p, packed_t, None, dxi);
                        break 'dx;
                    }
                    // dcol_g = w_gᵀ · dy_g, then dx = col2im(dcol)
                    if batch_dx {
                        break 'dx; // at the end of the image's block, above
                    }
                    if let Some(dxc) = dx_chunk.as_deref_mut() {
                        let dxi = &mut dxc[i * x_img..(i + 1) * x_img];
                        let dcol: &mut [f32] = if pointwise { dxi } else { &mut col[..col_len] };
                        for grp in 0..g.groups {
                            matmul(
                                kg,
                                ohw,
                                cg_out,
                                &weight[grp * cg_out * kg..(grp + 1) * cg_out * kg],
                                Trans::Yes,
                                &dyi[grp * cg_out * ohw..(grp + 1) * cg_out * ohw],
                                Trans::No,
                                &mut dcol[grp * kg * ohw..(grp + 1) * kg * ohw],
                                Accumulate::No,
                                Par::Seq,
                            )?;
                        }
                        if !pointwise {
                            col2im(g, &col[..col_len], dxi);
                        }
                    }
                }
                // The ReLU before this layer, masked here while dx is in cache.
                if let (true, false, Some(dxc)) = (mask_by_input, batch_dx, dx_chunk.as_deref_mut())
                {
                    relu_mask(&mut dxc[i * x_img..(i + 1) * x_img], xi);
                }
            }
            if wino_dw {
                let (d, acc) = dw[..dw_len].split_at_mut(w_len);
                winograd::weight_grad_finish(g, acc, d);
            }
            Ok(())
        })?;
    // Combine the per-chunk weight gradients in chunk order (reproducible).
    for buf in &ws.chunks[..chunks] {
        if bf_dw {
            bf16::add_transposed(g, &buf.dw[..dw_len], dweight);
            continue;
        }
        if direct_dw || wino_dw {
            dweight
                .iter_mut()
                .zip(&buf.dw[..w_len])
                .for_each(|(d, v)| *d += v);
            continue;
        }
        for grp in 0..g.groups {
            let dwt = &buf.dw[grp * cg_out * kg..(grp + 1) * cg_out * kg];
            let dst = &mut dweight[grp * cg_out * kg..(grp + 1) * cg_out * kg];
            for (r, row) in dwt.chunks_exact(cg_out).enumerate() {
                for (co, &v) in row.iter().enumerate() {
                    dst[co * kg + r] += v;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::naive;
    use rand::{Rng, SeedableRng};

    fn rand_vec(len: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn out_size_follows_pytorch() {
        assert_eq!(out_size(28, 3, 1, 1, 1, false), Some(28));
        assert_eq!(out_size(32, 3, 2, 1, 1, false), Some(16));
        assert_eq!(out_size(7, 3, 2, 0, 2, false), Some(2));
        assert_eq!(out_size(2, 3, 1, 0, 1, false), None);
        // ceil mode: 5 with k2 s2 -> 3 windows, the last one starting inside the input
        assert_eq!(out_size(5, 2, 2, 0, 1, true), Some(3));
        // ... but a window starting in the right padding is dropped
        assert_eq!(out_size(4, 2, 2, 1, 1, true), Some(3));
        assert_eq!(out_size(4, 3, 0, 1, 1, false), None);
    }

    /// (n, c_in, h, w, c_out, k, stride, pad, dilation, groups)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        (usize, usize),
        (usize, usize),
        (usize, usize),
        (usize, usize),
        usize,
    );

    const CASES: &[Case] = &[
        (1, 1, 5, 5, 1, (3, 3), (1, 1), (0, 0), (1, 1), 1),
        (2, 3, 7, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (3, 4, 9, 8, 6, (3, 2), (2, 1), (1, 0), (1, 1), 2),
        (2, 4, 6, 6, 4, (3, 3), (1, 1), (2, 2), (2, 2), 4),
        (2, 6, 5, 7, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (2, 6, 5, 7, 4, (1, 1), (2, 2), (0, 0), (1, 1), 2),
        (5, 2, 4, 4, 3, (4, 4), (1, 1), (0, 0), (1, 1), 1),
        (1, 3, 11, 3, 2, (5, 1), (3, 1), (2, 0), (1, 1), 1),
        (0, 3, 5, 5, 2, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // Shapes the direct kernel takes (stride 1, ≥ 12 output columns), forward and
        // input gradient: odd rows, c_out not a multiple of 8, no padding, 5x5, 1x1.
        (2, 3, 9, 16, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (3, 2, 6, 20, 9, (3, 3), (1, 1), (0, 0), (1, 1), 1),
        (2, 4, 5, 13, 8, (5, 5), (1, 1), (2, 2), (1, 1), 1),
        (2, 2, 4, 14, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (1, 16, 12, 12, 17, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // Shapes the gathered kernel takes (and, with ≥ 8 input channels, the bf16 ones):
        // 8-column maps (forward and input gradient),
        // stride 2 (3×3, a 7×7 stem), stride (2, 1) with a 3×2 kernel and a
        // one-vector tail, dilation, padding as large as the kernel.
        (3, 9, 8, 8, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 10, 16, 16, 9, (3, 3), (2, 2), (1, 1), (1, 1), 1),
        (1, 3, 32, 32, 8, (7, 7), (2, 2), (3, 3), (1, 1), 1),
        (2, 8, 10, 9, 6, (3, 2), (2, 1), (1, 0), (1, 1), 1),
        (2, 11, 12, 10, 4, (3, 3), (1, 1), (2, 2), (2, 2), 1),
        (1, 9, 6, 6, 3, (2, 2), (1, 1), (2, 2), (1, 1), 1),
        // Shapes the Winograd kernel takes (3×3, stride 1, ≥ 16 channels each way),
        // forward and input gradient: odd sizes, c_out not a multiple of 8, paddings 0
        // and 2 (the input gradient's padding is 2 and 0), a map narrower than a vector.
        (2, 16, 9, 11, 17, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (1, 24, 8, 8, 16, (3, 3), (1, 1), (0, 0), (1, 1), 1),
        (1, 16, 6, 5, 20, (3, 3), (1, 1), (2, 2), (1, 1), 1),
        (3, 32, 14, 14, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // ... and its weight gradient (≥ 32 output channels, more than 16 input ones):
        // three vectors of output channels, odd sizes, paddings 0 and 2.
        (2, 20, 9, 7, 40, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (1, 17, 9, 6, 33, (3, 3), (1, 1), (0, 2), (1, 1), 1),
        (2, 40, 9, 9, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 16, 9, 10, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // Small planes on GEMM, several images per product (blocks cut by the chunks):
        // 2×2, a pointwise 3×3, a strided 3×3 (input gradient by phases).
        (5, 6, 2, 2, 7, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (4, 3, 3, 3, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (3, 4, 5, 5, 6, (3, 3), (2, 2), (1, 1), (1, 1), 1),
        // Three row phases (stride 3), and dilation with stride 2.
        (1, 12, 17, 46, 3, (3, 3), (3, 3), (1, 1), (1, 1), 1),
        (1, 8, 20, 20, 4, (3, 3), (2, 2), (2, 2), (2, 2), 1),
    ];

    /// Runs every case through forward and backward and compares with the naive twin
    /// within `tol` (relative to 1 + |value|); `prep` maps every operand first. Returns
    /// how many cases the bf16 kernels took.
    fn compare_cases(prep: fn(f32) -> f32, tol: f32) -> usize {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut vec =
            |len: usize| -> Vec<f32> { rand_vec(len, &mut rng).into_iter().map(prep).collect() };
        // One workspace for all cases, as a layer whose input size changes would reuse
        // it: stale buffers of another geometry must not leak into a result.
        let mut ws = ConvWorkspace::default();
        let mut bf_cases = 0;
        // The bf16 Winograd kernel rounds the *transformed* operands (sums of up to four
        // inputs, of up to nine weights) to bf16, not the operands themselves: its error
        // is a few times that of bf16 products, checked here against the output's rms
        // (its own test in `winograd` checks it against the same arithmetic, tightly).
        let winograd_bf16 = |t: &ConvGeom| {
            bf16::active_for(t) && winograd::applies(t) && winograd::bf16_available()
        };
        let check = |got: &[f32], want: &[f32], what: &str, g: &ConvGeom, wino: bool| {
            if wino {
                assert_close_rms(got, want, what, g, 0.03);
            } else {
                assert_close(got, want, what, g, tol);
            }
        };
        for &(n, c_in, h, w, c_out, k, s, p, d, grp) in CASES {
            let g = ConvGeom::new(c_in, h, w, c_out, k, s, p, d, grp).unwrap();
            bf_cases += usize::from(bf16::active_for(&g));
            let x = vec(n * c_in * h * w);
            let wt = vec(c_out * g.kg());
            let b = vec(c_out);
            let mut y = vec![0.0; n * c_out * g.ohw()];
            conv2d_forward(&g, n, &x, &wt, Some(&b), &mut y, &mut ws).unwrap();
            let want = naive::conv2d_forward(&g, n, &x, &wt, Some(&b));
            check(&y, &want, "y", &g, winograd_bf16(&g));

            let dy = vec(y.len());
            let mut dx = vec![9.0; x.len()];
            let mut dw = vec![0.5; wt.len()];
            let mut db = vec![0.25; c_out];
            conv2d_backward(
                &g,
                n,
                &x,
                &wt,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
                &mut ws,
            )
            .unwrap();
            let (wdx, wdw, wdb) = naive::conv2d_backward(&g, n, &x, &wt, &dy);
            let dx_wino = direct_input_grad(&g).is_some_and(|t| winograd_bf16(&t));
            check(&dx, &wdx, "dx", &g, dx_wino);
            let wdw: Vec<f32> = wdw.iter().map(|v| v + 0.5).collect();
            let wdb: Vec<f32> = wdb.iter().map(|v| v + 0.25).collect();
            assert_close(&dw, &wdw, "dw", &g, tol);
            assert_close(&db, &wdb, "db", &g, tol);
        }
        bf_cases
    }

    #[test]
    fn forward_and_backward_match_the_naive_twin() {
        assert_eq!(compare_cases(|v| v, 1e-4), 0);
    }

    #[test]
    fn bf16_products_of_bf16_operands_are_exact() {
        if !bf16::available() {
            return; // f32 everywhere on this CPU: the test above covers it
        }
        // Operands already in bf16: their products are exact in f32 and only the order
        // of the f32 sums differs from the twin (except on the bf16 Winograd kernel,
        // which rounds transformed operands: see `compare_cases`).
        bf16::set_precision(bf16::Precision::Bf16);
        let taken = compare_cases(bf16::round, 1e-4);
        bf16::set_precision(bf16::Precision::F32);
        assert!(taken >= 8, "the bf16 kernels took only {taken} cases");
    }

    #[test]
    fn bf16_products_of_f32_operands_are_within_bf16_rounding() {
        if !bf16::available() {
            return;
        }
        // Each operand rounded to 8 significant bits: relative error ≤ 2⁻⁸ per factor,
        // so a few 1e-3 on sums of up to ~200 unit-sized products of random sign.
        bf16::set_precision(bf16::Precision::Bf16);
        compare_cases(|v| v, 5e-2);
        bf16::set_precision(bf16::Precision::F32);
    }

    fn assert_close_rms(got: &[f32], want: &[f32], what: &str, g: &ConvGeom, frac: f32) {
        assert_eq!(got.len(), want.len(), "{what} length for {g:?}");
        let rms = (want.iter().map(|v| v * v).sum::<f32>() / want.len().max(1) as f32).sqrt();
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= frac * rms,
                "{what}[{i}] {a} vs {b} (rms {rms}) for {g:?}"
            );
        }
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str, g: &ConvGeom, tol: f32) {
        assert_eq!(got.len(), want.len(), "{what} length for {g:?}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{what}[{i}] {a} vs {b} for {g:?}"
            );
        }
    }

    /// The input gradient masked for a ReLU before the layer equals the plain one with
    /// the mask applied after, bit for bit, on every kernel path: direct, gathered,
    /// Winograd, and GEMM with several images per product (2×2 and pointwise planes).
    #[test]
    fn relu_masked_input_gradient_equals_masking_after() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let cases = [
            (5, 6, 2, 2, 7, 3, 1),
            (4, 3, 3, 3, 5, 1, 0),
            (3, 16, 10, 10, 16, 3, 1),
            (3, 4, 16, 16, 5, 3, 1),
            (2, 3, 8, 8, 4, 3, 1),
        ];
        for (n, ci, h, w, co, k, p) in cases {
            let g = ConvGeom::new(ci, h, w, co, (k, k), (1, 1), (p, p), (1, 1), 1).unwrap();
            let x: Vec<f32> = rand_vec(n * ci * h * w, &mut rng);
            let wt = rand_vec(co * g.kg(), &mut rng);
            let dy = rand_vec(n * co * g.ohw(), &mut rng);
            let mut ws = ConvWorkspace::default();
            let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
            conv2d_backward(&g, n, &x, &wt, &dy, Some(&mut dx), &mut dw, None, &mut ws).unwrap();
            relu_mask(&mut dx, &x);
            let (mut dx2, mut dw2) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
            conv2d_backward_relu_input(&g, n, &x, &wt, &dy, &mut dx2, &mut dw2, None, &mut ws)
                .unwrap();
            assert_eq!(dx, dx2, "{g:?}");
            assert_eq!(dw, dw2, "{g:?}");
        }
    }

    #[test]
    fn kernel_larger_than_padded_input_is_an_error() {
        let err = ConvGeom::new(3, 2, 2, 4, (5, 5), (1, 1), (1, 1), (1, 1), 1).unwrap_err();
        assert!(err.to_string().contains("[3, 2, 2]"), "{err}");
        assert!(ConvGeom::new(3, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1), 2).is_err());
    }
}
