//! Direct convolution over a gathered buffer, for the layers [`super::direct`] leaves
//! out: strided convolutions, dilations, and maps too narrow for whole vectors of
//! columns (resnet20's 8×8 stage, every stride-2 downsampling).
//!
//! The output plane `[oh, ow]` is treated as one flat run of `oh·ow` positions and cut
//! into vectors of 16 consecutive positions, whatever the row length. For that, each
//! image is first gathered into `Q[kw][c_in][sh][rows][ow]`: for kernel column `kx`,
//! input channel `ci` and row phase `φ < stride_h`,
//! `Q[kx][ci][φ][r][ox] = x_padded[ci][r·sh + φ][ox·sw + kx·dw]`. Kernel row `ky` reads
//! padded row `oy·sh + ky·dh = (oy + ky·dh / sh)·sh + φ` with `φ = ky·dh mod sh`, so
//! for output position `p = oy·ow + ox` the operand of tap `(ky, kx)` is
//! `Q[kx][ci][φ][p + (ky·dh / sh)·ow]`: 16 consecutive positions are 16 consecutive
//! floats, across row ends too. The buffer holds `kw` shifted copies of the input (3×
//! for a 3×3 kernel), a fraction of im2col's `kh·kw`, and it is rewritten whole for
//! every image.
//!
//! The register tile is the one of the direct kernel: 8 output channels × 2 vectors of
//! 16 positions, 16 accumulators; weights packed by [`super::direct::pack_weights`].

use super::geom::COB;
use super::geom::{valid_range, ConvGeom};

/// Positions per vector.
const LANES: usize = 16;
/// Vectors per register tile.
const VECS: usize = 2;
/// Elements past the gathered part: the last tile's idle lanes read up to here.
pub(crate) const SLACK: usize = VECS * LANES;

/// Whether the gathered kernel takes this convolution on this CPU: one group, a kernel
/// larger than 1×1, and an output plane that whole vectors cover with at most 25% of
/// lanes idle (an 8×8 or 16×16 map exactly; 7×7 = 49 positions in 64 lanes stays on
/// im2col + GEMM). A strided 1×1 layer has too few taps to pay for the tile's stores
/// (measured 0.6× of im2col + GEMM on resnet20's shortcut, 16 → 32 channels).
pub fn applies(g: &ConvGeom) -> bool {
    let ohw = g.ohw();
    g.groups == 1
        && g.kh * g.kw > 1
        && ohw > 0
        && ohw.div_ceil(LANES) * LANES * 4 <= ohw * 5
        && super::geom::has_avx512()
}

/// Sizes of the gathered buffer of one image.
#[derive(Clone, Copy, Debug)]
pub struct Gathered {
    /// Rows per phase: `oh` plus the kernel's reach in phase rows.
    pub rows: usize,
    /// Floats from one `(kx, ci)` block to the next: `sh · rows · ow`.
    pub block: usize,
}

impl Gathered {
    /// The buffer geometry for `g`.
    pub fn of(g: &ConvGeom) -> Self {
        let rows = g.oh + (g.kh - 1) * g.dilation.0 / g.stride.0;
        Gathered {
            rows,
            block: g.stride.0 * rows * g.ow,
        }
    }

    /// Elements of the buffer, with slack for the last tile's idle lanes.
    pub fn len(&self, g: &ConvGeom) -> usize {
        g.kw * g.c_in * self.block + SLACK
    }

    /// Offset of the operand of tap `(ky, kx)`, input channel `ci`, position 0.
    pub(crate) fn tap(&self, g: &ConvGeom, ci: usize, ky: usize, kx: usize) -> usize {
        let (sh, dh) = (g.stride.0, g.dilation.0);
        let (phase, off) = ((ky * dh) % sh, ky * dh / sh);
        (kx * g.c_in + ci) * self.block + (phase * self.rows + off) * g.ow
    }
}

/// Gathers one image `x[c_in, h, w]` into `q` (every element of the gathered part is
/// written; the slack is left as it is). Generic over the element so the bf16 kernels
/// gather their converted images (`u16`, or `u32` channel pairs) the same way.
pub fn gather_image<T: Copy + Default>(g: &ConvGeom, gd: Gathered, x: &[T], q: &mut [T]) {
    let (sh, sw) = g.stride;
    let (ph, pw) = g.pad;
    let dw = g.dilation.1;
    assert!(q.len() >= gd.len(g) - SLACK && x.len() >= g.c_in * g.h * g.w);
    for kx in 0..g.kw {
        let (lo, hi) = valid_range(g.ow, g.w, sw, pw, kx * dw);
        for ci in 0..g.c_in {
            let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            let blk = &mut q[(kx * g.c_in + ci) * gd.block..(kx * g.c_in + ci + 1) * gd.block];
            for (i, dst) in blk.chunks_exact_mut(g.ow).enumerate() {
                let (phase, r) = (i / gd.rows, i % gd.rows);
                // Padded row r·sh + phase is input row r·sh + phase − ph.
                let iy = (r * sh + phase).checked_sub(ph).filter(|&iy| iy < g.h);
                let Some(iy) = iy.filter(|_| lo < hi) else {
                    dst.fill(T::default());
                    continue;
                };
                let src = &plane[iy * g.w..(iy + 1) * g.w];
                dst[..lo].fill(T::default());
                dst[hi..].fill(T::default());
                let ix0 = lo * sw + kx * dw - pw;
                if sw == 1 {
                    dst[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                } else {
                    for (d, &s) in dst[lo..hi].iter_mut().zip(src[ix0..].iter().step_by(sw)) {
                        *d = s;
                    }
                }
            }
        }
    }
}

/// Forms of a gathered buffer that [`gather_converted`] writes straight from an f32
/// image: f32 itself, bf16 channel pairs (`u32`, channel `2c` in the low half), plain
/// bf16 (`u16`).
pub(crate) const FORM_F32: u8 = 0;
pub(crate) const FORM_PAIRS: u8 = 1;
pub(crate) const FORM_PLAIN: u8 = 2;

/// How far ahead of the row being converted [`gather_converted`] prefetches, in bytes.
const PREFETCH: usize = 1024;

/// Whether [`gather_converted`] runs on this CPU (AVX-512 F and BW).
pub(crate) fn converted_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::geom::has_avx512() && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `u32`s of the plane buffer [`gather_converted`] needs for `g` with elements of
/// `bytes`: one zero-bordered input plane, and a vector of slack.
pub(crate) fn plane_len(g: &ConvGeom, bytes: usize) -> usize {
    (g.h * (g.w + 2 * g.pad.1) * bytes).div_ceil(4) + LANES
}

/// Gathers one image `x[c_in, h, w]` into `q` as [`gather_image`] does, one plane at a
/// time through `plane` ([`gather_converted`]) when this CPU has AVX-512 (the same
/// values).
pub fn gather_f32(g: &ConvGeom, gd: Gathered, x: &[f32], plane: &mut Vec<u32>, q: &mut [f32]) {
    assert!(q.len() >= gd.len(g) - SLACK && x.len() >= g.c_in * g.h * g.w);
    #[cfg(target_arch = "x86_64")]
    if converted_available() {
        // SAFETY: AVX-512 F and BW are present; lengths checked above.
        unsafe { gather_f32_avx512(g, gd, x, plane, q) };
        return;
    }
    let _ = plane;
    gather_image(g, gd, x, q);
}

/// # Safety
/// The CPU must support AVX-512F and AVX-512BW. `g` must come from `ConvGeom::new` and
/// `gd` be `Gathered::of(g)`; `x` must hold at least `g.c_in * g.h * g.w` values and `q`
/// at least `gd.len(g) - SLACK` (both asserted by `gather_f32`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn gather_f32_avx512(
    g: &ConvGeom,
    gd: Gathered,
    x: &[f32],
    plane: &mut Vec<u32>,
    q: &mut [f32],
) {
    gather_converted::<FORM_F32, f32>(g, gd, x, plane, q);
}

/// The conversion to the buffer's form and the gather of [`gather_image`], each input
/// element read and converted once: an input plane (a channel, or a pair of them) is
/// converted into `plane` with its zero borders (the padded plane, in the buffer's
/// form), and each kernel column's rows of `q` are then plain copies out of it (64
/// bytes at a time), or for strided layers vector gathers of every `sw`-th element.
/// Rows of the padding are zero. Converting a whole plane before copying keeps the
/// copies' loads clear of the conversion's pending stores (row by row, store-to-load
/// forwarding failed on every load and cost more than it saved). Every element of
/// the gathered part is written; the slack is left as it is. For [`FORM_PAIRS`] the
/// buffer's channels are pairs of `x`'s (`g.c_in` counts `x`'s channels; a missing
/// last channel reads as zero), as with `bf16::paired_geom`.
///
/// # Safety
/// AVX-512 F and BW must be present, and VL and BF16 for the bf16 forms; `x` must
/// hold `g.c_in` planes of `h·w` and `q` the gathered part of `gd` for the buffer's
/// channels; `T` must be `f32`, `u32` or `u16` for `FORM` f32, pairs, plain.
/// `g` must come from `ConvGeom::new` and `gd` be `Gathered::of(g)`: the row copies
/// out of the padded plane and the block writes into `q` rely on both.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn gather_converted<const FORM: u8, T>(
    g: &ConvGeom,
    gd: Gathered,
    x: &[f32],
    plane: &mut Vec<u32>,
    q: &mut [T],
) {
    use std::arch::x86_64::*;
    let (sh, sw) = g.stride;
    let (ph, pw) = g.pad;
    let dw = g.dilation.1;
    let (hw, size) = (g.h * g.w, std::mem::size_of::<T>());
    let per = if FORM == FORM_PAIRS { 2 } else { 1 };
    let chans = g.c_in.div_ceil(per);
    let need = plane_len(g, size);
    if plane.len() < need {
        plane.resize(need, 0);
    }
    let (xp, qp) = (x.as_ptr(), q.as_mut_ptr() as *mut u8);
    let pp = plane.as_mut_ptr() as *mut u8;
    // Bytes of one padded row of the plane, and of one row of `q`.
    let (pitch, row_bytes) = ((g.w + 2 * pw) * size, g.ow * size);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let steps = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(sw as i32));
    for c in 0..chans {
        let ch0 = c * per;
        let has_hi = per == 2 && ch0 + 1 < g.c_in;
        // The padded plane: borders zero, each input row converted at column pw.
        for iy in 0..g.h {
            let src = xp.add(ch0 * hw + iy * g.w);
            let prow = pp.add(iy * pitch);
            copy_bytes(None, prow, pw * size);
            copy_bytes(None, prow.add((pw + g.w) * size), pw * size);
            // The image is usually cold, and a row is too short a stream for the
            // hardware prefetcher: ask for the rows ahead.
            let mut line = 0;
            while line < g.w * 4 {
                let ahead = (src as *const i8).wrapping_add(PREFETCH + line);
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                if has_hi {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(hw * 4));
                }
                line += 64;
            }
            let mut j = 0;
            while j < g.w {
                let n = (g.w - j).min(LANES);
                let m = ((1u32 << n) - 1) as __mmask16;
                let v = _mm512_maskz_loadu_ps(m, src.add(j));
                let at = prow.add((pw + j) * size);
                match FORM {
                    FORM_F32 => _mm512_mask_storeu_ps(at as *mut f32, m, v),
                    FORM_PAIRS => {
                        let lo: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
                        let mut pairs = _mm512_cvtepu16_epi32(lo);
                        if has_hi {
                            let u = _mm512_maskz_loadu_ps(m, src.add(hw + j));
                            let hi: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(u));
                            let hi = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(hi));
                            pairs = _mm512_or_si512(pairs, hi);
                        }
                        _mm512_mask_storeu_epi32(at as *mut i32, m, pairs);
                    }
                    _ => {
                        let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
                        _mm256_mask_storeu_epi16(at as *mut i16, m, h);
                    }
                }
                j += LANES;
            }
        }
        for i in 0..sh * gd.rows {
            let (phase, r) = (i / gd.rows, i % gd.rows);
            // Padded row r·sh + phase is input row r·sh + phase − ph.
            let iy = (r * sh + phase).checked_sub(ph).filter(|&iy| iy < g.h);
            for kx in 0..g.kw {
                let dst = qp.add(((kx * chans + c) * gd.block + i * g.ow) * size);
                let Some(iy) = iy else {
                    copy_bytes(None, dst, row_bytes);
                    continue;
                };
                let first = pp.add(iy * pitch + kx * dw * size);
                if sw == 1 {
                    copy_bytes(Some(first), dst, row_bytes);
                    continue;
                }
                // Every sw-th element: 32-bit lanes gathered (for u16, the low half of
                // the 32 bits at each element, packed on the store; the plane's slack
                // covers the upper half past its last element).
                let mut ox0 = 0;
                while ox0 < g.ow {
                    let n = (g.ow - ox0).min(LANES);
                    let m = ((1u32 << n) - 1) as __mmask16;
                    let idx = _mm512_add_epi32(steps, _mm512_set1_epi32((ox0 * sw) as i32));
                    if size == 4 {
                        let v = _mm512_mask_i32gather_epi32::<4>(
                            _mm512_setzero_si512(),
                            m,
                            idx,
                            first as *const i32,
                        );
                        _mm512_mask_storeu_epi32(dst.add(ox0 * 4) as *mut i32, m, v);
                    } else {
                        let v = _mm512_mask_i32gather_epi32::<2>(
                            _mm512_setzero_si512(),
                            m,
                            idx,
                            first as *const i32,
                        );
                        let h = _mm512_cvtepi32_epi16(v);
                        _mm256_mask_storeu_epi16(dst.add(ox0 * 2) as *mut i16, m, h);
                    }
                    ox0 += LANES;
                }
            }
        }
    }
}

/// Copies `n` bytes from `src` to `dst` (zeros with no `src`), 64 at a time, the last
/// ones masked.
///
/// # Safety
/// The caller must be compiled with AVX-512F and BW, on a CPU that has them: this is
/// `#[inline(always)]` with no `target_feature` of its own. `dst` must be valid for
/// writes of `n` bytes, and `src`, when given, for reads of `n` bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn copy_bytes(src: Option<*const u8>, dst: *mut u8, n: usize) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i < n {
        let m: u64 = if n - i >= 64 {
            !0
        } else {
            (1u64 << (n - i)) - 1
        };
        let v = match src {
            Some(s) => _mm512_maskz_loadu_epi8(m, s.add(i) as *const i8),
            None => _mm512_setzero_si512(),
        };
        _mm512_mask_storeu_epi8(dst.add(i) as *mut i8, m, v);
        i += 64;
    }
}

/// One image: `y[c_out, oh·ow] = conv(x, w) + bias` from the gathered buffer `q` and the
/// packed weights `wp`.
pub fn image(
    g: &ConvGeom,
    gd: Gathered,
    q: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    assert!(q.len() >= gd.len(g) && y.len() >= g.c_out * g.ohw());
    assert!(wp.len() >= g.c_out.div_ceil(COB) * g.kg() * COB);
    #[cfg(target_arch = "x86_64")]
    {
        if super::geom::has_avx512() {
            // SAFETY: AVX-512F is present (checked just above). Loads read
            // `tap(ci, ky, kx) + p + 16·v` for p + 16·v < ohw rounded up to whole
            // vectors: at most the end of the (kx, ci) block plus fewer than
            // VECS·LANES, which the slack of `Gathered::len` covers; stores are masked
            // to `ohw` within each output plane.
            unsafe { image_avx512(g, gd, q, wp, bias, y) };
            return;
        }
    }
    image_scalar(g, gd, q, wp, bias, y);
}

/// The same computation without SIMD (CPUs where [`applies`] is false anyway).
fn image_scalar(
    g: &ConvGeom,
    gd: Gathered,
    q: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let (kk, ohw) = (g.kh * g.kw, g.ohw());
    for co in 0..g.c_out {
        let (b, j) = (co / COB, co % COB);
        let out = &mut y[co * ohw..(co + 1) * ohw];
        out.fill(bias.map_or(0.0, |v| v[co]));
        for ci in 0..g.c_in {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let wv = wp[((b * g.c_in + ci) * kk + ky * g.kw + kx) * COB + j];
                    let src = &q[gd.tap(g, ci, ky, kx)..][..ohw];
                    out.iter_mut().zip(src).for_each(|(o, &v)| *o += wv * v);
                }
            }
        }
    }
}

/// A key of [`with_taps`]' cache: the geometry and the gathered buffer's sizes.
type TapKey = (ConvGeom, usize, usize);

std::thread_local! {
    /// The tap offsets of the last few geometries this thread ran (a convolution calls
    /// its kernels once per image, alternating two geometries in backward).
    static TAPS: std::cell::RefCell<Vec<(TapKey, Vec<usize>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the [`tap_offsets`] of `(g, gd)`, built once and then kept per thread
/// for the last four geometries (built per image, they cost 1% of a resnet20 step).
pub(crate) fn with_taps<R>(g: &ConvGeom, gd: Gathered, f: impl FnOnce(&[usize]) -> R) -> R {
    let key = (*g, gd.rows, gd.block);
    let taps = TAPS.with(|c| {
        let mut c = c.borrow_mut();
        match c.iter().position(|(k, _)| *k == key) {
            Some(i) => c.remove(i).1,
            None => tap_offsets(g, gd),
        }
    });
    let out = f(&taps);
    TAPS.with(|c| {
        let mut c = c.borrow_mut();
        c.insert(0, (key, taps));
        c.truncate(4);
    });
    out
}

/// Operand offsets ([`Gathered::tap`]) of every `(ci, ky, kx)`, in weight order.
pub(crate) fn tap_offsets(g: &ConvGeom, gd: Gathered) -> Vec<usize> {
    // Plain loops: built for every image, and a chain of flat_map iterators cost 2.5%
    // of a resnet20 step.
    let mut taps = Vec::with_capacity(g.c_in * g.kh * g.kw);
    for ci in 0..g.c_in {
        for ky in 0..g.kh {
            let row = gd.tap(g, ci, ky, 0);
            for kx in 0..g.kw {
                taps.push(row + kx * g.c_in * gd.block);
            }
        }
    }
    taps
}

/// Where one register tile sits: `((p, ohw), (co0, cob))`: positions from `p` of a
/// plane of `ohw`, output channels `co0..co0 + cob`.
pub(crate) type TileAt = ((usize, usize), (usize, usize));

/// Bytes of the gathered buffer that one pass over the blocks of output channels
/// reads ([`chunk_positions`]): a quarter of a 2 MiB L2.
const CHUNK_BYTES: usize = 512 * 1024;

/// Positions per pass of [`for_each_tile`]: every block of output channels reads the
/// gathered buffer over the pass's positions — `kw·c_in·sh` slabs, each over the
/// positions plus the kernel's reach in rows — so the passes are cut short enough for
/// that part to stay in L2 while the blocks go over it (whole plane when it fits; a
/// multiple of a tile's 32 positions otherwise). ResNet's 7×7/2 stem at 224 gathers 2.1
/// MiB per image, which each of its 8 blocks streamed from L3.
fn chunk_positions(g: &ConvGeom) -> usize {
    let slabs = (g.kw * g.c_in * g.stride.0).max(1);
    let reach = (g.kh - 1) * g.dilation.0 / g.stride.0 * g.ow;
    let per_slab = CHUNK_BYTES / 4 / slabs;
    let tile = VECS * LANES;
    (per_slab.saturating_sub(reach) / tile * tile).max(4 * tile)
}

/// Walks the register tiles of the output of `g` (`g.c_in` in the units the packed
/// weights `wp` count): `f(weights of the block, at, vectors)` for every block of 8
/// output channels and run of 2 vectors of positions (1 vector for a last run of at
/// most 16), in passes over [`chunk_positions`] positions at a time.
pub(crate) fn for_each_tile<W>(g: &ConvGeom, wp: &[W], mut f: impl FnMut(&[W], TileAt, usize)) {
    let (per_block, ohw) = (g.c_in * g.kh * g.kw * COB, g.ohw());
    let chunk = chunk_positions(g);
    let mut p0 = 0;
    while p0 < ohw {
        // A multiple of 32 positions: the same tiles as one pass over the plane.
        let end = (p0 + chunk).min(ohw);
        for b in 0..g.c_out.div_ceil(COB) {
            let wb = &wp[b * per_block..(b + 1) * per_block];
            let co = (b * COB, (g.c_out - b * COB).min(COB));
            let mut p = p0;
            while p < end {
                let nv = if end - p > LANES { VECS } else { 1 };
                f(wb, ((p, ohw), co), nv);
                p += nv * LANES;
            }
        }
        p0 = end;
    }
}

/// Stores a tile's sums `acc[v][j]` (+ bias) into `y[co0 + j, p + 16·v ..]`, masked to
/// the plane's `ohw` positions and the block's `cob` channels.
///
/// # Safety
/// AVX-512F must be present, and `y` must hold `co0 + cob` planes of `ohw`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn store_tile<const NV: usize>(
    acc: &[[std::arch::x86_64::__m512; COB]; NV],
    (p, ohw): (usize, usize),
    (co0, cob): (usize, usize),
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let yp = y.as_mut_ptr();
    for (v, acc_v) in acc.iter().enumerate() {
        let start = p + v * LANES;
        if start >= ohw {
            break;
        }
        let valid = (ohw - start).min(LANES);
        let mask: __mmask16 = if valid == LANES {
            0xFFFF
        } else {
            ((1u32 << valid) - 1) as __mmask16
        };
        for (j, &a) in acc_v.iter().enumerate().take(cob) {
            let co = co0 + j;
            let val = match bias {
                Some(bv) => _mm512_add_ps(a, _mm512_set1_ps(bv[co])),
                None => a,
            };
            _mm512_mask_storeu_ps(yp.add(co * ohw + start), mask, val);
        }
    }
}

/// # Safety
/// The CPU must support AVX-512F. `gd` must be `Gathered::of(g)`, `q` must hold at least
/// `gd.len(g)` values (slack included: the last tile's idle lanes read into it) and `y`
/// at least `g.c_out * g.ohw()`; `image` asserts both. `wp` is sliced with bounds checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn image_avx512(
    g: &ConvGeom,
    gd: Gathered,
    q: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    with_taps(g, gd, |taps| {
        for_each_tile(g, wp, |wb, at, nv| {
            if nv == 2 {
                tile::<2>(q, taps, wb, at, bias, y);
            } else {
                tile::<1>(q, taps, wb, at, bias, y);
            }
        })
    });
}

/// One register tile: output channels `co0..co0 + cob`, positions `p..p + 16·NV`
/// (`at = ((p, ohw), (co0, cob))`).
///
/// # Safety
/// The CPU must support AVX-512F. With `at = ((p, ohw), (co0, cob))`: `q` must hold at
/// least `p + off + 16 * NV` values for every `off` in `taps`, `wb` at least
/// `taps.len() * COB`, and `y` at least `(co0 + cob) * ohw` (see `store_tile`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// `acc[v][j]` is indexed on both axes in the inner loop, kept as plain indices so the
// compiler sees fixed-size arrays it can keep in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const NV: usize>(
    q: &[f32],
    taps: &[usize],
    wb: &[f32],
    at: TileAt,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (qp, wbp) = (q.as_ptr().add(at.0 .0), wb.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); COB]; NV];
    for (t, &off) in taps.iter().enumerate() {
        let mut x = [_mm512_setzero_ps(); NV];
        for (v, xv) in x.iter_mut().enumerate() {
            *xv = _mm512_loadu_ps(qp.add(off + v * LANES));
        }
        let wt = wbp.add(t * COB);
        for j in 0..COB {
            let wv = _mm512_set1_ps(*wt.add(j));
            for v in 0..NV {
                acc[v][j] = _mm512_fmadd_ps(wv, x[v], acc[v][j]);
            }
        }
    }
    store_tile(&acc, at.0, at.1, bias, y);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiles cover every output position of every block of channels once, in
    /// passes (several on the stem at 224 and on a 64-channel layer), with 2 vectors
    /// except a last run of at most 16 positions.
    #[test]
    fn tiles_cover_the_plane_once_in_passes() {
        for (c_in, hw, k, s, c_out) in [(3, 224, 7, 2, 64), (64, 40, 3, 2, 9), (16, 8, 3, 1, 8)] {
            let g = ConvGeom::new(
                c_in,
                hw,
                hw,
                c_out,
                (k, k),
                (s, s),
                (k / 2, k / 2),
                (1, 1),
                1,
            )
            .unwrap();
            let ohw = g.ohw();
            let chunk = chunk_positions(&g);
            assert_eq!(chunk % (VECS * LANES), 0);
            let passes = ohw.div_ceil(chunk);
            assert_eq!(passes > 1, c_in != 16, "{g:?}: {passes} passes of {chunk}");
            let blocks = c_out.div_ceil(COB);
            let wp = vec![0.0f32; blocks * g.kg() * COB];
            let mut seen = vec![0u8; blocks * ohw];
            for_each_tile(&g, &wp, |wb, ((p, n), (co0, cob)), nv| {
                assert_eq!((n, wb.len()), (ohw, g.kg() * COB));
                assert_eq!(cob, (c_out - co0).min(COB));
                assert!(nv == VECS || ohw - p <= LANES);
                for q in p..(p + nv * LANES).min(ohw) {
                    seen[co0 / COB * ohw + q] += 1;
                }
            });
            assert!(seen.iter().all(|&v| v == 1), "{g:?}");
        }
    }
}
