//! Pooling over each `[H, W]` plane of an NCHW tensor: max, average, adaptive average.
//!
//! Planes are independent, so every kernel runs in parallel over the `n·c` planes.
//! Max pooling records the flat in-plane index of each window's maximum (the first one
//! on ties, as PyTorch) and its backward adds `dy` at those indices.

use super::conv::out_size;
use super::naive::pool_window;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Geometry of a pooling window sliding over one plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window (height, width).
    pub kernel: (usize, usize),
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Implicit padding (vertical, horizontal); never counted as a maximum.
    pub pad: (usize, usize),
    /// Dilation (max pooling only; 1 for average pooling).
    pub dilation: (usize, usize),
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl PoolGeom {
    /// Validates the window against the input and computes the output size.
    pub fn new(
        op: &str,
        (h, w): (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: (usize, usize),
        dilation: (usize, usize),
        ceil_mode: bool,
    ) -> Result<Self> {
        if pad.0 * 2 > kernel.0 || pad.1 * 2 > kernel.1 {
            return Err(Error::config(
                op,
                "padding",
                format!("padding {pad:?} must be at most half the kernel {kernel:?}"),
            ));
        }
        let oh = out_size(h, kernel.0, stride.0, pad.0, dilation.0, ceil_mode);
        let ow = out_size(w, kernel.1, stride.1, pad.1, dilation.1, ceil_mode);
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok(PoolGeom {
                h,
                w,
                kernel,
                stride,
                pad,
                dilation,
                oh,
                ow,
            }),
            _ => Err(Error::shape(
                op,
                format!(
                    "an input plane of at least the window {kernel:?} (dilation {dilation:?}) after padding {pad:?}"
                ),
                &[h, w],
            )),
        }
    }
}

/// Planes per parallel task: enough work per task that scheduling is not the cost.
fn planes_per_task(plane_len: usize) -> usize {
    (16_384 / plane_len.max(1)).max(1)
}

/// Whether every window lies inside the plane (no padding, no ceil-mode overhang): the
/// loops then need no bounds checks.
fn windows_inside(g: &PoolGeom) -> bool {
    g.pad == (0, 0)
        && (g.oh - 1) * g.stride.0 + (g.kernel.0 - 1) * g.dilation.0 < g.h
        && (g.ow - 1) * g.stride.1 + (g.kernel.1 - 1) * g.dilation.1 < g.w
}

/// Max pooling forward: `y[p, oy, ox] = max` over the window, `argmax` its in-plane index.
pub fn max_pool_forward(g: &PoolGeom, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if ohw == 0 || hw == 0 {
        return;
    }
    let per = planes_per_task(hw);
    let inside = windows_inside(g);
    let avx512 = super::conv::has_avx512();
    y.par_chunks_mut(ohw * per)
        .zip(argmax.par_chunks_mut(ohw * per))
        .zip(x.par_chunks(hw * per))
        .for_each(|((yc, ac), xc)| {
            for ((yp, ap), xp) in yc
                .chunks_mut(ohw)
                .zip(ac.chunks_mut(ohw))
                .zip(xc.chunks(hw))
            {
                if inside && g.kernel == (2, 2) && g.stride == (2, 2) && g.dilation == (1, 1) {
                    #[cfg(target_arch = "x86_64")]
                    if avx512 {
                        // SAFETY: AVX-512F is present; the plane holds 2·oh rows of w
                        // ≥ 2·ow, and y, argmax hold oh·ow (chunks of those sizes).
                        unsafe { max_plane_2x2_avx512(g, xp, yp, ap) };
                        continue;
                    }
                    max_plane_2x2(g, xp, yp, ap);
                } else if avx512 && g.stride.1 <= 2 {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX-512F is present; the chunks hold one plane of h·w
                    // inputs and oh·ow outputs, as the kernel asserts.
                    unsafe {
                        max_plane_avx512(g, xp, yp, ap)
                    };
                } else if inside {
                    max_plane_inside(g, xp, yp, ap);
                } else {
                    max_plane(g, xp, yp, ap);
                }
            }
        });
}

/// Max pooling forward without the indices (inference: no backward to route): the
/// values of [`max_pool_forward`], bit for bit, at a fraction of its work where AVX-512
/// runs [`max_values_avx512`] (horizontal stride 1 or 2); elsewhere that function with
/// a scratch index buffer per task.
pub fn max_pool_forward_values(g: &PoolGeom, x: &[f32], y: &mut [f32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if ohw == 0 || hw == 0 {
        return;
    }
    let per = planes_per_task(hw);
    y.par_chunks_mut(ohw * per)
        .zip(x.par_chunks(hw * per))
        .for_each(|(yc, xc)| {
            let planes = yc.len() / ohw;
            max_pool_values_serial(g, &xc[..planes * hw], yc);
        });
}

/// [`max_pool_forward_values`] of whole planes on the calling thread: `x` holds planes
/// of `h·w`, `y` as many of `oh·ow` (asserted). For a kernel that pools each image it
/// has just computed, while the image is in cache (a convolution's epilogue:
/// [`crate::kernels::conv::conv2d_forward_max_pooled`]).
pub fn max_pool_values_serial(g: &PoolGeom, x: &[f32], y: &mut [f32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if ohw == 0 || hw == 0 {
        return;
    }
    assert!(x.len().is_multiple_of(hw) && y.len() == x.len() / hw * ohw);
    #[cfg(target_arch = "x86_64")]
    if super::conv::has_avx512() && g.stride.1 <= 2 {
        for (yp, xp) in y.chunks_mut(ohw).zip(x.chunks(hw)) {
            // SAFETY: AVX-512F is present and the horizontal stride is 1 or 2; the
            // chunks hold one plane of h·w inputs and oh·ow outputs (asserted above).
            unsafe { max_values_avx512(g, xp, yp) };
        }
        return;
    }
    let mut scratch = vec![0u32; y.len()];
    max_pool_forward_serial(g, x, y, &mut scratch);
}

/// [`max_pool_forward`] of whole planes on the calling thread.
fn max_pool_forward_serial(g: &PoolGeom, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    for ((yp, ap), xp) in y
        .chunks_mut(ohw)
        .zip(argmax.chunks_mut(ohw))
        .zip(x.chunks(hw))
    {
        if windows_inside(g) {
            max_plane_inside(g, xp, yp, ap);
        } else {
            max_plane(g, xp, yp, ap);
        }
    }
}

/// Lanes `lo .. hi` (clamped to 0 ..= 32) as a bit mask.
fn lane_range(lo: isize, hi: isize) -> u32 {
    let (lo, hi) = (lo.clamp(0, 32) as u32, hi.clamp(0, 32) as u32);
    if hi <= lo {
        0
    } else {
        (((1u64 << hi) - 1) & !((1u64 << lo) - 1)) as u32
    }
}

/// For the AVX-512 max-pool kernels, per (block of 16 outputs of a row, kernel column):
/// the lanes whose input column lies inside the row, the elements the loads read (for
/// stride 2, two vectors' worth) and the row offset of lane 0 — worked out once per
/// plane (recomputed per tap they were most of the kernels' time). Lane `k` reads
/// column `base + k·sx`; floor division by `sx ∈ {1, 2}` is a shift.
fn column_taps(g: &PoolGeom) -> Vec<(u16, u32, isize)> {
    let (w, sx) = (g.w as isize, g.stride.1 as isize);
    let shift = sx - 1;
    let blocks = g.ow.div_ceil(16);
    let mut taps = Vec::with_capacity(blocks * g.kernel.1);
    for b in 0..blocks {
        let (ox0, n) = (16 * b as isize, (g.ow - 16 * b).min(16) as isize);
        for j in 0..g.kernel.1 {
            let base = ox0 * sx + (j * g.dilation.1) as isize - g.pad.1 as isize;
            let k_lo = if base < 0 {
                (-base + sx - 1) >> shift
            } else {
                0
            };
            let k_hi = n.min((w - base + sx - 1) >> shift);
            let valid = lane_range(k_lo, k_hi);
            let e = if sx == 1 {
                valid
            } else {
                lane_range(2 * k_lo, 2 * k_hi - 1)
            };
            taps.push((valid as u16, e, base));
        }
    }
    taps
}

/// One plane of [`max_pool_forward_values`], 16 outputs of a row at a time: per tap of
/// the window, one masked load (two and a permute of the even elements for stride 2)
/// and `max(v, best)`, which keeps `best` on ties as [`beats`] keeps the first index; a
/// NaN over a number replaces it, as there. The lane masks of each column block and
/// kernel column are worked out once per plane, not per tap.
///
/// # Safety
/// The CPU must support AVX-512F and `g.stride.1` must be 1 or 2 (asserted, with the
/// lengths: `xp` at least `h * w`, `yp` at least `oh * ow`); lanes outside the row are
/// masked off and never touch memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_values_avx512(g: &PoolGeom, xp: &[f32], yp: &mut [f32]) {
    use std::arch::x86_64::*;
    let (w, sx) = (g.w as isize, g.stride.1 as isize);
    assert!(xp.len() >= g.h * g.w && yp.len() >= g.oh * g.ow);
    assert!(sx == 1 || sx == 2);
    let even = _mm512_slli_epi32::<1>(_mm512_setr_epi32(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let taps = column_taps(g);
    let blocks = g.ow.div_ceil(16);
    let (xq, yq) = (xp.as_ptr(), yp.as_mut_ptr());
    for oy in 0..g.oh {
        for b in 0..blocks {
            let mut best = neg_inf;
            for i in 0..g.kernel.0 {
                let iy = (oy * g.stride.0 + i * g.dilation.0) as isize - g.pad.0 as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                for &(valid, e, base) in &taps[b * g.kernel.1..(b + 1) * g.kernel.1] {
                    if valid == 0 {
                        continue;
                    }
                    let row = xq.wrapping_offset(iy * w + base);
                    let v = if sx == 1 {
                        _mm512_mask_loadu_ps(neg_inf, valid, row)
                    } else {
                        let lo = _mm512_maskz_loadu_ps(e as __mmask16, row);
                        let hi =
                            _mm512_maskz_loadu_ps((e >> 16) as __mmask16, row.wrapping_add(16));
                        _mm512_mask_mov_ps(neg_inf, valid, _mm512_permutex2var_ps(lo, even, hi))
                    };
                    // max(v, best) returns `best` on ties and when either is a NaN; a
                    // NaN `v` over a number `best` is taken here.
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v)
                        & _mm512_cmp_ps_mask::<_CMP_ORD_Q>(best, best);
                    best = _mm512_mask_blend_ps(nan, _mm512_max_ps(v, best), v);
                }
            }
            let n = (g.ow - 16 * b).min(16);
            let m = ((1u32 << n) - 1) as __mmask16;
            _mm512_mask_storeu_ps(yq.add(oy * g.ow + 16 * b), m, best);
        }
    }
}

/// `v` replaces the running maximum `best`: larger, or a NaN over a number (a NaN
/// propagates as in PyTorch); ties keep the first index.
#[inline(always)]
fn beats(v: f32, best: f32) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

/// The running maximum and its index after considering `(v, i)`.
#[inline(always)]
fn pick(best: (f32, u32), v: f32, i: u32) -> (f32, u32) {
    if beats(v, best.0) {
        (v, i)
    } else {
        best
    }
}

/// One plane, the common 2×2 window with stride 2 (inside the plane).
fn max_plane_2x2(g: &PoolGeom, xp: &[f32], yp: &mut [f32], ap: &mut [u32]) {
    let w = g.w;
    for oy in 0..g.oh {
        let top = 2 * oy * w;
        let (r0, r1) = (&xp[top..top + w], &xp[top + w..top + 2 * w]);
        let yrow = &mut yp[oy * g.ow..(oy + 1) * g.ow];
        let arow = &mut ap[oy * g.ow..(oy + 1) * g.ow];
        for (ox, ((yv, av), (p0, p1))) in yrow
            .iter_mut()
            .zip(arow.iter_mut())
            .zip(r0.chunks_exact(2).zip(r1.chunks_exact(2)))
            .enumerate()
        {
            let i = (top + 2 * ox) as u32;
            let mut b = (p0[0], i);
            b = pick(b, p0[1], i + 1);
            b = pick(b, p1[0], i + w as u32);
            b = pick(b, p1[1], i + w as u32 + 1);
            *yv = b.0;
            *av = b.1;
        }
    }
}

/// [`max_plane_2x2`], 16 outputs at a time: each row pair's even and odd columns
/// separated by permutes, the running maximum and its index kept with the same rule
/// ([`beats`]: larger, or a NaN over a number; ties keep the first) as lane masks.
///
/// # Safety
/// The CPU must support AVX-512F. The lengths the unchecked loads and stores rely on
/// (`xp` at least `2 * oh * w`, `2 * ow <= w`, `yp` and `ap` at least `oh * ow`) are
/// asserted on entry.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_plane_2x2_avx512(g: &PoolGeom, xp: &[f32], yp: &mut [f32], ap: &mut [u32]) {
    use std::arch::x86_64::*;
    let w = g.w;
    assert!(xp.len() >= 2 * g.oh * w && 2 * g.ow <= w && yp.len() >= g.oh * g.ow);
    assert!(ap.len() >= g.oh * g.ow);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let even = _mm512_slli_epi32::<1>(lanes);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    // (v, its index) replaces (best, bi) where `beats` says so.
    let step = |best: __m512, bi: __m512i, v: __m512, vi: __m512i| {
        let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
        let nan =
            _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v) & _mm512_cmp_ps_mask::<_CMP_ORD_Q>(best, best);
        let m = gt | nan;
        (
            _mm512_mask_blend_ps(m, best, v),
            _mm512_mask_blend_epi32(m, bi, vi),
        )
    };
    let (xq, yq, aq) = (xp.as_ptr(), yp.as_mut_ptr(), ap.as_mut_ptr() as *mut i32);
    for oy in 0..g.oh {
        let top = 2 * oy * w;
        let mut ox0 = 0;
        while ox0 < g.ow {
            let n = (g.ow - ox0).min(16);
            // 2·n input columns from 2·ox0, as two vectors of 16.
            let lo_n = (2 * n).min(16);
            let hi_n = 2 * n - lo_n;
            let (mlo, mhi) = (
                ((1u32 << lo_n) - 1) as __mmask16,
                ((1u32 << hi_n) - 1) as __mmask16,
            );
            let r0 = xq.add(top + 2 * ox0);
            let r1 = r0.add(w);
            let (a0, a1) = (
                _mm512_maskz_loadu_ps(mlo, r0),
                _mm512_maskz_loadu_ps(mhi, r0.add(16)),
            );
            let (b0, b1) = (
                _mm512_maskz_loadu_ps(mlo, r1),
                _mm512_maskz_loadu_ps(mhi, r1.add(16)),
            );
            let i0 = _mm512_add_epi32(even, _mm512_set1_epi32((top + 2 * ox0) as i32));
            let one = _mm512_set1_epi32(1);
            let wv = _mm512_set1_epi32(w as i32);
            let mut best = _mm512_permutex2var_ps(a0, even, a1);
            let mut bi = i0;
            (best, bi) = step(
                best,
                bi,
                _mm512_permutex2var_ps(a0, odd, a1),
                _mm512_add_epi32(i0, one),
            );
            let i2 = _mm512_add_epi32(i0, wv);
            (best, bi) = step(best, bi, _mm512_permutex2var_ps(b0, even, b1), i2);
            (best, bi) = step(
                best,
                bi,
                _mm512_permutex2var_ps(b0, odd, b1),
                _mm512_add_epi32(i2, one),
            );
            let m = ((1u32 << n) - 1) as __mmask16;
            let at = oy * g.ow + ox0;
            _mm512_mask_storeu_ps(yq.add(at), m, best);
            _mm512_mask_storeu_epi32(aq.add(at), m, bi);
            ox0 += 16;
        }
    }
}

/// Any window with a horizontal stride of 1 or 2 (padding, dilation, ceil mode), 16
/// outputs of a row at a time: for each tap of the window in row-major order, the 16
/// inputs it sees (one load, or two and a permute of the even elements for stride 2;
/// taps in the padding masked off) update the running maximum and its index by
/// [`beats`], the first valid tap taken unconditionally, as [`max_plane`] does.
///
/// # Safety
/// The CPU must support AVX-512F. The lengths the masked loads and stores rely on
/// (`xp` at least `h * w`, `yp` and `ap` at least `oh * ow`) are asserted on entry;
/// lanes outside the plane are masked off and never touch memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn max_plane_avx512(g: &PoolGeom, xp: &[f32], yp: &mut [f32], ap: &mut [u32]) {
    use std::arch::x86_64::*;
    let (w, sx) = (g.w as isize, g.stride.1 as isize);
    assert!(xp.len() >= g.h * g.w && yp.len() >= g.oh * g.ow && ap.len() >= g.oh * g.ow);
    assert!(sx == 1 || sx == 2);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let even = _mm512_slli_epi32::<1>(lanes);
    let lane_step = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(sx as i32));
    let unset = _mm512_set1_epi32(-1);
    let taps = column_taps(g);
    let blocks = g.ow.div_ceil(16);
    let (xq, yq, aq) = (xp.as_ptr(), yp.as_mut_ptr(), ap.as_mut_ptr() as *mut i32);
    for oy in 0..g.oh {
        for b in 0..blocks {
            let mut best = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut bi = unset;
            for i in 0..g.kernel.0 {
                let iy = (oy * g.stride.0 + i * g.dilation.0) as isize - g.pad.0 as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                for &(valid, e, base) in &taps[b * g.kernel.1..(b + 1) * g.kernel.1] {
                    if valid == 0 {
                        continue;
                    }
                    // Elements e of the row from `base` that the valid lanes read.
                    let row = xq.wrapping_offset(iy * w + base);
                    let v = if sx == 1 {
                        _mm512_maskz_loadu_ps(valid, row)
                    } else {
                        let lo = _mm512_maskz_loadu_ps(e as __mmask16, row);
                        let hi =
                            _mm512_maskz_loadu_ps((e >> 16) as __mmask16, row.wrapping_add(16));
                        _mm512_permutex2var_ps(lo, even, hi)
                    };
                    let vi = _mm512_add_epi32(lane_step, _mm512_set1_epi32((iy * w + base) as i32));
                    let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v)
                        & _mm512_cmp_ps_mask::<_CMP_ORD_Q>(best, best);
                    let first = _mm512_cmpeq_epi32_mask(bi, unset);
                    let m = valid & (gt | nan | first);
                    best = _mm512_mask_blend_ps(m, best, v);
                    bi = _mm512_mask_blend_epi32(m, bi, vi);
                }
            }
            let n = (g.ow - 16 * b).min(16);
            let m = ((1u32 << n) - 1) as __mmask16;
            let at = oy * g.ow + 16 * b;
            _mm512_mask_storeu_ps(yq.add(at), m, best);
            _mm512_mask_storeu_epi32(aq.add(at), m, bi);
        }
    }
}

/// One plane whose windows all lie inside it.
fn max_plane_inside(g: &PoolGeom, xp: &[f32], yp: &mut [f32], ap: &mut [u32]) {
    let (kh, kw) = g.kernel;
    let (sy, sx) = g.stride;
    let (dy, dx) = g.dilation;
    for oy in 0..g.oh {
        let yrow = &mut yp[oy * g.ow..(oy + 1) * g.ow];
        let arow = &mut ap[oy * g.ow..(oy + 1) * g.ow];
        for (ox, (yv, av)) in yrow.iter_mut().zip(arow.iter_mut()).enumerate() {
            let base = oy * sy * g.w + ox * sx;
            let mut best_i = base;
            let mut best = xp[base];
            for i in 0..kh {
                let row = base + i * dy * g.w;
                for j in 0..kw {
                    let idx = row + j * dx;
                    let v = xp[idx];
                    if beats(v, best) {
                        best = v;
                        best_i = idx;
                    }
                }
            }
            *yv = best;
            *av = best_i as u32;
        }
    }
}

/// One plane, any geometry (windows may reach into padding, which never wins).
fn max_plane(g: &PoolGeom, xp: &[f32], yp: &mut [f32], ap: &mut [u32]) {
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let mut best = f32::NEG_INFINITY;
            let mut best_i = u32::MAX;
            for i in 0..g.kernel.0 {
                let iy = (oy * g.stride.0 + i * g.dilation.0) as isize - g.pad.0 as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                for j in 0..g.kernel.1 {
                    let ix = (ox * g.stride.1 + j * g.dilation.1) as isize - g.pad.1 as isize;
                    if ix < 0 || ix >= g.w as isize {
                        continue;
                    }
                    let idx = iy as usize * g.w + ix as usize;
                    let v = xp[idx];
                    if best_i == u32::MAX || beats(v, best) {
                        best = v;
                        best_i = idx as u32;
                    }
                }
            }
            yp[oy * g.ow + ox] = best;
            ap[oy * g.ow + ox] = best_i;
        }
    }
}

/// Max pooling backward: `dx` is overwritten with `dy` routed to each window's maximum.
pub fn max_pool_backward(g: &PoolGeom, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    route_max(g, dy, argmax, None, dx);
}

/// [`max_pool_backward`] of a pool whose input is a ReLU's output, with the ReLU's
/// backward folded in: the gradient of an output `y` that is not positive (its whole
/// window was zero after the ReLU) is dropped — what masking `dy` by `y > 0` first would
/// give, bit for bit, without that pass.
pub fn max_pool_backward_relu(g: &PoolGeom, dy: &[f32], argmax: &[u32], y: &[f32], dx: &mut [f32]) {
    route_max(g, dy, argmax, Some(y), dx);
}

/// Routes each `dy` to its window's maximum; with `y`, only where `y > 0`.
fn route_max(g: &PoolGeom, dy: &[f32], argmax: &[u32], y: Option<&[f32]>, dx: &mut [f32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if hw == 0 {
        return;
    }
    if ohw == 0 {
        dx.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    if let Some(y) = y {
        assert!(
            y.len() >= dy.len(),
            "max_pool_backward_relu: y shorter than dy"
        );
    }
    let per = planes_per_task(hw);
    dx.par_chunks_mut(hw * per)
        .zip(dy.par_chunks(ohw * per))
        .zip(argmax.par_chunks(ohw * per))
        .enumerate()
        .for_each(|(t, ((dxc, dyc), ac))| {
            for (k, ((dxp, dyp), ap)) in dxc
                .chunks_mut(hw)
                .zip(dyc.chunks(ohw))
                .zip(ac.chunks(ohw))
                .enumerate()
            {
                dxp.iter_mut().for_each(|v| *v = 0.0);
                let at = (t * per + k) * ohw;
                for (j, (&d, &i)) in dyp.iter().zip(ap).enumerate() {
                    // The ReLU lets the gradient through where its output is > 0
                    // (a NaN output stops it, as `relu_backward_from_output` does).
                    let d = match y.map(|y| y[at + j] > 0.0) {
                        Some(false) => 0.0,
                        _ => d,
                    };
                    if let Some(v) = dxp.get_mut(i as usize) {
                        *v += d;
                    }
                }
            }
        });
}

/// Divisor of average-pool output `(oy, ox)`.
fn avg_divisor(g: &PoolGeom, oy: usize, ox: usize, count_include_pad: bool) -> f32 {
    let (ylo, yhi, ylen) = pool_window(oy, g.h, g.kernel.0, g.stride.0, g.pad.0);
    let (xlo, xhi, xlen) = pool_window(ox, g.w, g.kernel.1, g.stride.1, g.pad.1);
    let n = if count_include_pad {
        ylen * xlen
    } else {
        (yhi - ylo) * (xhi - xlo)
    };
    n.max(1) as f32
}

/// Average pooling forward (PyTorch's divisor rules for padding and `ceil_mode`).
pub fn avg_pool_forward(g: &PoolGeom, count_include_pad: bool, x: &[f32], y: &mut [f32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if ohw == 0 || hw == 0 {
        return;
    }
    y.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .for_each(|(yp, xp)| {
            for oy in 0..g.oh {
                let (ylo, yhi, _) = pool_window(oy, g.h, g.kernel.0, g.stride.0, g.pad.0);
                for ox in 0..g.ow {
                    let (xlo, xhi, _) = pool_window(ox, g.w, g.kernel.1, g.stride.1, g.pad.1);
                    let mut s = 0.0f32;
                    for iy in ylo..yhi {
                        s += xp[iy * g.w + xlo..iy * g.w + xhi].iter().sum::<f32>();
                    }
                    yp[oy * g.ow + ox] = s / avg_divisor(g, oy, ox, count_include_pad);
                }
            }
        });
}

/// Average pooling backward: `dx` is overwritten.
pub fn avg_pool_backward(g: &PoolGeom, count_include_pad: bool, dy: &[f32], dx: &mut [f32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if hw == 0 {
        return;
    }
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
        dxp.iter_mut().for_each(|v| *v = 0.0);
        let dyp = &dy[p * ohw..(p + 1) * ohw];
        for oy in 0..g.oh {
            let (ylo, yhi, _) = pool_window(oy, g.h, g.kernel.0, g.stride.0, g.pad.0);
            for ox in 0..g.ow {
                let (xlo, xhi, _) = pool_window(ox, g.w, g.kernel.1, g.stride.1, g.pad.1);
                let d = dyp[oy * g.ow + ox] / avg_divisor(g, oy, ox, count_include_pad);
                for iy in ylo..yhi {
                    dxp[iy * g.w + xlo..iy * g.w + xhi]
                        .iter_mut()
                        .for_each(|v| *v += d);
                }
            }
        }
    });
}

/// Adaptive window of output `o` of `out` over `input`: `floor(o·in/out) .. ceil((o+1)·in/out)`.
pub fn adaptive_window(o: usize, input: usize, out: usize) -> (usize, usize) {
    (o * input / out, ((o + 1) * input).div_ceil(out))
}

/// Adaptive average pooling forward from `[h, w]` planes to `[oh, ow]` planes.
pub fn adaptive_avg_forward(
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    x: &[f32],
    y: &mut [f32],
) {
    let (hw, ohw) = (h * w, oh * ow);
    if ohw == 0 || hw == 0 {
        return;
    }
    y.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .for_each(|(yp, xp)| {
            for oy in 0..oh {
                let (y0, y1) = adaptive_window(oy, h, oh);
                for ox in 0..ow {
                    let (x0, x1) = adaptive_window(ox, w, ow);
                    let mut s = 0.0f32;
                    for iy in y0..y1 {
                        s += xp[iy * w + x0..iy * w + x1].iter().sum::<f32>();
                    }
                    yp[oy * ow + ox] = s / ((y1 - y0) * (x1 - x0)) as f32;
                }
            }
        });
}

/// Adaptive average pooling backward: `dx` is overwritten.
pub fn adaptive_avg_backward(
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    dy: &[f32],
    dx: &mut [f32],
) {
    let (hw, ohw) = (h * w, oh * ow);
    if hw == 0 {
        return;
    }
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
        dxp.iter_mut().for_each(|v| *v = 0.0);
        let dyp = &dy[p * ohw..(p + 1) * ohw];
        for oy in 0..oh {
            let (y0, y1) = adaptive_window(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1) = adaptive_window(ox, w, ow);
                let d = dyp[oy * ow + ox] / ((y1 - y0) * (x1 - x0)) as f32;
                for iy in y0..y1 {
                    dxp[iy * w + x0..iy * w + x1]
                        .iter_mut()
                        .for_each(|v| *v += d);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_picks_the_maximum_and_routes_its_gradient() {
        // one 3x4 plane, 2x2 windows, stride 2, ceil mode -> 2x2 output
        let x: Vec<f32> = vec![1., 5., 2., 0., 3., 4., 8., 7., 9., -1., 6., 6.5];
        let g = PoolGeom::new("t", (3, 4), (2, 2), (2, 2), (0, 0), (1, 1), true).unwrap();
        assert_eq!((g.oh, g.ow), (2, 2));
        let mut y = vec![0.0; 4];
        let mut a = vec![0u32; 4];
        max_pool_forward(&g, &x, &mut y, &mut a);
        assert_eq!(y, vec![5., 8., 9., 6.5]);
        let mut dx = vec![1.0; 12];
        max_pool_backward(&g, &[1., 2., 3., 4.], &a, &mut dx);
        assert_eq!(dx, vec![0., 1., 0., 0., 0., 0., 2., 0., 3., 0., 0., 4.]);
    }

    #[test]
    fn the_fast_max_paths_equal_the_general_one_with_ties_and_nans() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // (h, w, kernel, stride, dilation): the 2x2 path, the inside path, odd sizes.
        let cases = [
            (8, 6, (2, 2), (2, 2), (1, 1)),
            (7, 9, (2, 2), (2, 2), (1, 1)),
            (6, 40, (2, 2), (2, 2), (1, 1)),
            (14, 14, (2, 2), (2, 2), (1, 1)),
            (4, 33, (2, 2), (2, 2), (1, 1)),
            (5, 65, (2, 2), (2, 2), (1, 1)),
            (9, 8, (3, 3), (2, 2), (1, 1)),
            (10, 10, (3, 2), (1, 3), (2, 1)),
        ];
        // Padded and ceil-mode windows (the 3x3/2 stem pool of ImageNet ResNets, stride
        // 1, dilation, rows wider than 16 and 32 outputs).
        let padded = [
            (112, 112, (3, 3), (2, 2), (1, 1), (1, 1), false),
            (7, 9, (3, 3), (2, 2), (1, 1), (1, 1), true),
            (5, 37, (3, 3), (1, 1), (1, 1), (1, 1), false),
            (9, 40, (3, 5), (2, 1), (1, 2), (1, 2), false),
            (6, 70, (2, 2), (2, 2), (1, 1), (1, 1), true),
            (8, 33, (5, 3), (1, 2), (2, 1), (2, 2), true),
        ];
        let all = cases
            .iter()
            .map(|&(h, w, k, st, d)| (h, w, k, st, (0, 0), d, false))
            .chain(padded);
        for (h, w, k, st, pad, d, ceil) in all {
            let g = PoolGeom::new("t", (h, w), k, st, pad, d, ceil).unwrap();
            let planes = 3;
            // Few distinct values (many ties), and some NaNs.
            let x: Vec<f32> = (0..planes * h * w)
                .map(|_| match rng.random_range(0..10) {
                    0 => f32::NAN,
                    5 => -0.0,
                    v => (v % 4) as f32,
                })
                .collect();
            let n = planes * g.oh * g.ow;
            let (mut y, mut a) = (vec![0.0; n], vec![0u32; n]);
            max_pool_forward(&g, &x, &mut y, &mut a);
            let (mut y2, mut a2) = (vec![0.0; n], vec![0u32; n]);
            for p in 0..planes {
                let o = p * g.oh * g.ow..(p + 1) * g.oh * g.ow;
                max_plane(
                    &g,
                    &x[p * h * w..(p + 1) * h * w],
                    &mut y2[o.clone()],
                    &mut a2[o],
                );
            }
            assert_eq!(a, a2, "{h}x{w} k{k:?} s{st:?} p{pad:?} d{d:?} ceil {ceil}");
            let same = y
                .iter()
                .zip(&y2)
                .all(|(u, v)| u == v || (u.is_nan() && v.is_nan()));
            assert!(same, "{y:?} vs {y2:?}");
            // Without the indices (inference), the same values bit for bit: signed
            // zeros keep the first of a tie, NaNs win.
            let mut y3 = vec![1.0; n];
            max_pool_forward_values(&g, &x, &mut y3);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&y3),
                bits(&y),
                "values {h}x{w} k{k:?} s{st:?} p{pad:?}"
            );
            // The backward pass routes each gradient to its argmax, zero elsewhere.
            let dy: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let mut dx = vec![7.0; planes * h * w];
            max_pool_backward(&g, &dy, &a, &mut dx);
            let mut want = vec![0.0; planes * h * w];
            for (i, (&d, &k)) in dy.iter().zip(&a).enumerate() {
                want[i / (g.oh * g.ow) * h * w + k as usize] += d;
            }
            assert_eq!(dx, want, "backward {h}x{w} k{k:?} s{st:?} d{d:?}");
        }
    }

    #[test]
    fn avg_pool_divisors_follow_count_include_pad() {
        // 2x2 plane of ones, 3x3 window, padding 1, stride 1 -> every output averages
        // 4 ones; with padding counted the divisor is 9.
        let g = PoolGeom::new("t", (2, 2), (3, 3), (1, 1), (1, 1), (1, 1), false).unwrap();
        let x = vec![1.0; 4];
        let mut y = vec![0.0; 4];
        avg_pool_forward(&g, true, &x, &mut y);
        assert!(y.iter().all(|&v| (v - 4.0 / 9.0).abs() < 1e-7), "{y:?}");
        avg_pool_forward(&g, false, &x, &mut y);
        assert!(y.iter().all(|&v| (v - 1.0).abs() < 1e-7), "{y:?}");
    }

    #[test]
    fn adaptive_windows_cover_the_input_like_pytorch() {
        assert_eq!(adaptive_window(0, 5, 3), (0, 2));
        assert_eq!(adaptive_window(1, 5, 3), (1, 4));
        assert_eq!(adaptive_window(2, 5, 3), (3, 5));
        assert_eq!(adaptive_window(0, 7, 1), (0, 7));
    }

    #[test]
    fn bad_windows_are_errors() {
        assert!(PoolGeom::new("t", (2, 2), (3, 3), (1, 1), (0, 0), (1, 1), false).is_err());
        assert!(PoolGeom::new("t", (8, 8), (2, 2), (2, 2), (2, 2), (1, 1), false).is_err());
    }
}
