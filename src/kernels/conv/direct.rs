//! Direct convolution for stride-1 kernels on AVX-512: no im2col.
//!
//! Each image is copied once into a zero-padded buffer `P[c_in, HP, RS]` (the padding
//! of the convolution, plus slack so every 16-wide load stays inside). The output is
//! computed in register tiles of `COB = 8` output channels × `ROWS = 2` output rows ×
//! 16 output columns (16 accumulators of 16 lanes): for each input channel and kernel
//! tap, two unaligned loads of the padded rows and eight broadcast weights feed sixteen
//! fused multiply-adds. Weights are packed per block of 8 output channels as
//! `[block][c_in][kh·kw][8]`, zero beyond `c_out`.
//!
//! The weight gradient runs on the same padded buffer: for three output channels and up
//! to 9 taps at a time, 16-lane accumulators over the output plane, reduced at the end.
//!
//! Used (forward, input gradient as a convolution of `dy`, weight gradient) when the CPU has AVX-512F (checked at run time) and the
//! layer is larger than 1×1, stride 1, dilation 1, one group, padding smaller than the
//! kernel, and at least 12 output columns (narrower maps waste too many lanes); everything else stays
//! on im2col + GEMM. Compared with the direct definition on awkward shapes in the tests.

use super::geom::{has_avx512, ConvGeom, COB};

/// Output columns per vector.
const LANES: usize = 16;
/// Output rows per register tile.
const ROWS: usize = 2;

/// Whether the direct kernel handles this convolution on this CPU.
pub fn applies(g: &ConvGeom) -> bool {
    g.kh * g.kw > 1 // a 1×1 convolution is a plain product already
        && g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.groups == 1
        && g.pad.0 < g.kh
        && g.pad.1 < g.kw
        && g.ow >= 12
        && has_avx512()
}

/// Sizes of the padded image buffer.
#[derive(Clone, Copy, Debug)]
pub struct Padded {
    /// Rows per channel (padding, and whole tiles of `ROWS`).
    pub hp: usize,
    /// Row stride (padding, and whole vectors of `LANES` plus the kernel's reach).
    pub rs: usize,
}

impl Padded {
    /// The buffer geometry for `g`.
    pub fn of(g: &ConvGeom) -> Self {
        let oh_r = g.oh.div_ceil(ROWS) * ROWS;
        let ow_r = g.ow.div_ceil(LANES) * LANES;
        Padded {
            hp: (oh_r + g.kh - 1).max(g.h + 2 * g.pad.0),
            rs: (ow_r + g.kw - 1).max(g.w + 2 * g.pad.1),
        }
    }

    /// Elements of the buffer.
    pub fn len(&self, g: &ConvGeom) -> usize {
        g.c_in * self.hp * self.rs
    }
}

/// Packs `w[c_out, c_in, kh, kw]` as `[c_out/8 blocks][c_in][kh·kw][8]` into `out`.
pub fn pack_weights(g: &ConvGeom, w: &[f32], out: &mut Vec<f32>) {
    let kk = g.kh * g.kw;
    let blocks = g.c_out.div_ceil(COB);
    out.clear();
    out.resize(blocks * g.c_in * kk * COB, 0.0);
    for co in 0..g.c_out {
        let (b, j) = (co / COB, co % COB);
        for ci in 0..g.c_in {
            for t in 0..kk {
                out[((b * g.c_in + ci) * kk + t) * COB + j] = w[(co * g.c_in + ci) * kk + t];
            }
        }
    }
}

/// Copies one image `x[c_in, h, w]` into the zero-padded buffer `p` (whose padding
/// stays zero between calls: only the interior is written).
/// Rows are copied 16 floats at a time with AVX-512 where the CPU has it: as
/// `copy_from_slice` each row of a 32-wide map was a call to `memmove`, 12% of a
/// 16-channel Winograd forward on one thread.
pub fn pad_image(g: &ConvGeom, pd: Padded, x: &[f32], p: &mut [f32]) {
    assert!(x.len() >= g.c_in * g.h * g.w && p.len() >= g.c_in * pd.hp * pd.rs);
    assert!(pd.hp >= g.h + g.pad.0 && pd.rs >= g.w + g.pad.1);
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU has AVX-512F; row r of channel ci lands at
        // (ci·hp + r + pad.0)·rs + pad.1 .. + w ≤ c_in·hp·rs (asserted above), and is read
        // from x[(ci·h + r)·w ..][..w].
        unsafe { pad_image_avx512(g, pd, x, p) };
        return;
    }
    pad_image_scalar(g, pd, x, p);
}

/// # Safety
/// The CPU must support AVX-512F; the lengths [`pad_image`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pad_image_avx512(g: &ConvGeom, pd: Padded, x: &[f32], p: &mut [f32]) {
    use std::arch::x86_64::*;
    let (xp, pp) = (x.as_ptr(), p.as_mut_ptr());
    for ci in 0..g.c_in {
        for r in 0..g.h {
            let dst = pp.add((ci * pd.hp + r + g.pad.0) * pd.rs + g.pad.1);
            let src = xp.add((ci * g.h + r) * g.w);
            let mut k = 0;
            while k < g.w {
                let m = super::geom::lane_mask((g.w - k).min(16));
                _mm512_mask_storeu_ps(dst.add(k), m, _mm512_maskz_loadu_ps(m, src.add(k)));
                k += 16;
            }
        }
    }
}

/// [`pad_image`] without SIMD.
fn pad_image_scalar(g: &ConvGeom, pd: Padded, x: &[f32], p: &mut [f32]) {
    for ci in 0..g.c_in {
        for r in 0..g.h {
            let dst = (ci * pd.hp + r + g.pad.0) * pd.rs + g.pad.1;
            let src = (ci * g.h + r) * g.w;
            p[dst..dst + g.w].copy_from_slice(&x[src..src + g.w]);
        }
    }
}

/// One image: `y[c_out, oh, ow] = conv(P, w) + bias`, from the padded buffer `p` and the
/// packed weights `wp`. Needs AVX-512F ([`applies`]).
pub fn image(g: &ConvGeom, pd: Padded, p: &[f32], wp: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    assert!(p.len() >= pd.len(g) && y.len() >= g.c_out * g.oh * g.ow);
    assert!(wp.len() >= g.c_out.div_ceil(COB) * g.c_in * g.kh * g.kw * COB);
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: the CPU has AVX-512F (checked just above); the asserts and the
            // buffer geometry (`Padded::of`) keep every load and store in bounds (see
            // the comments in `image_avx512`).
            unsafe { image_avx512(g, pd, p, wp, bias, y) };
            return;
        }
    }
    image_scalar(g, pd, p, wp, bias, y);
}

/// The same computation without SIMD, for CPUs where [`applies`] is false anyway; kept
/// so `image` is total.
fn image_scalar(
    g: &ConvGeom,
    pd: Padded,
    p: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let kk = g.kh * g.kw;
    for co in 0..g.c_out {
        let (b, j) = (co / COB, co % COB);
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let mut s = bias.map_or(0.0, |v| v[co]);
                for ci in 0..g.c_in {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let t = ky * g.kw + kx;
                            s += wp[((b * g.c_in + ci) * kk + t) * COB + j]
                                * p[(ci * pd.hp + oy + ky) * pd.rs + ox + kx];
                        }
                    }
                }
                y[(co * g.oh + oy) * g.ow + ox] = s;
            }
        }
    }
}

/// # Safety
/// The CPU must support AVX-512F. `pd` must be `Padded::of(g)` (its rows and row stride
/// cover every tile's unmasked loads), `p` must hold at least `pd.len(g)` values, `wp`
/// at least `g.c_out.div_ceil(COB) * g.c_in * g.kh * g.kw * COB` and `y` at least
/// `g.c_out * g.oh * g.ow`. `image` asserts the lengths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn image_avx512(
    g: &ConvGeom,
    pd: Padded,
    p: &[f32],
    wp: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let kk = g.kh * g.kw;
    let blocks = g.c_out.div_ceil(COB);
    let (pp, yp) = (p.as_ptr(), y.as_mut_ptr());
    for b in 0..blocks {
        let wb = wp.as_ptr().add(b * g.c_in * kk * COB);
        let cob = (g.c_out - b * COB).min(COB);
        let mut oy = 0;
        while oy < g.oh {
            let rows = (g.oh - oy).min(ROWS);
            let mut ox = 0;
            while ox < g.ow {
                let valid = (g.ow - ox).min(LANES);
                let mut acc = [[_mm512_setzero_ps(); COB]; ROWS];
                for ci in 0..g.c_in {
                    // Row `oy + r + ky` of channel `ci`, from column `ox`: rows up to
                    // oh_r + kh − 1 ≤ hp and columns up to ow_r + kw − 1 ≤ rs exist.
                    let base = pp.add((ci * pd.hp + oy) * pd.rs + ox);
                    let wc = wb.add(ci * kk * COB);
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let x0 = _mm512_loadu_ps(base.add(ky * pd.rs + kx));
                            let x1 = _mm512_loadu_ps(base.add((ky + 1) * pd.rs + kx));
                            let wt = wc.add((ky * g.kw + kx) * COB);
                            let [a0, a1] = &mut acc;
                            for (j, (s0, s1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate() {
                                let wv = _mm512_set1_ps(*wt.add(j));
                                *s0 = _mm512_fmadd_ps(wv, x0, *s0);
                                *s1 = _mm512_fmadd_ps(wv, x1, *s1);
                            }
                        }
                    }
                }
                let mask: __mmask16 = if valid == LANES {
                    0xFFFF
                } else {
                    ((1u32 << valid) - 1) as __mmask16
                };
                for (r, acc_r) in acc.iter().enumerate().take(rows) {
                    for (j, &a) in acc_r.iter().enumerate().take(cob) {
                        let co = b * COB + j;
                        let v = match bias {
                            Some(bv) => _mm512_add_ps(a, _mm512_set1_ps(bv[co])),
                            None => a,
                        };
                        // Output row oy + r < oh, columns ox..ox + valid ≤ ow.
                        let dst = yp.add((co * g.oh + oy + r) * g.ow + ox);
                        _mm512_mask_storeu_ps(dst, mask, v);
                    }
                }
                ox += LANES;
            }
            oy += ROWS;
        }
    }
}

/// Adds one image's weight gradient into `dw[c_out, c_in, kh, kw]`:
/// `dw[co, ci, ky, kx] += Σ_{oy, ox} dy[co, oy, ox] · P[ci, oy + ky, ox + kx]`, from the
/// padded input `p` of the forward pass. Needs AVX-512F ([`applies`]).
pub fn weight_grad(g: &ConvGeom, pd: Padded, p: &[f32], dy: &[f32], dw: &mut [f32]) {
    assert!(p.len() >= pd.len(g) && dy.len() >= g.c_out * g.oh * g.ow);
    assert!(dw.len() >= g.c_out * g.c_in * g.kh * g.kw);
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            // SAFETY: AVX-512F is present (checked just above); loads stay inside `p`
            // (rows < hp, columns < rs by `Padded::of`) and `dy` (masked to `ow`).
            unsafe { weight_grad_avx512(g, pd, p, dy, dw) };
            return;
        }
    }
    weight_grad_fallback(g, pd, p, dy, dw);
}

fn weight_grad_fallback(g: &ConvGeom, pd: Padded, p: &[f32], dy: &[f32], dw: &mut [f32]) {
    let kk = g.kh * g.kw;
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for t in 0..kk {
                let (ky, kx) = (t / g.kw, t % g.kw);
                let mut s = 0.0f32;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        s += dy[(co * g.oh + oy) * g.ow + ox]
                            * p[(ci * pd.hp + oy + ky) * pd.rs + ox + kx];
                    }
                }
                dw[(co * g.c_in + ci) * kk + t] += s;
            }
        }
    }
}

/// Output channels and kernel taps per register tile of the weight gradient: 3 × 9 = 27
/// accumulators (a whole 3×3 kernel); each load of the padded input feeds 3 FMAs. The
/// tile loops have constant trip counts so the accumulators stay in registers: a group
/// with fewer taps repeats offset 0 and drops those sums, missing channels read dy as 0.
const WCO: usize = 3;
const TAPS: usize = 9;

/// # Safety
/// The CPU must support AVX-512F. `pd` must be `Padded::of(g)`, `p` must hold at least
/// `pd.len(g)` values and `dy` at least `g.c_out * g.oh * g.ow` (its loads are masked to
/// `ow`); `weight_grad` asserts the lengths. `dw` is indexed with bounds checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_grad_avx512(g: &ConvGeom, pd: Padded, p: &[f32], dy: &[f32], dw: &mut [f32]) {
    use std::arch::x86_64::*;
    let kk = g.kh * g.kw;
    let (pp, dyp) = (p.as_ptr(), dy.as_ptr());
    let plane = g.oh * g.ow;
    let mut co = 0;
    while co < g.c_out {
        // Up to four output channels at a time; missing ones read dy as zero.
        let quad = (g.c_out - co).min(WCO);
        for ci in 0..g.c_in {
            let mut t0 = 0;
            while t0 < kk {
                let taps = (kk - t0).min(TAPS);
                let mut acc = [[_mm512_setzero_ps(); TAPS]; WCO];
                let mut offs = [0usize; TAPS];
                for (t, o) in offs.iter_mut().enumerate().take(taps) {
                    let (ky, kx) = ((t0 + t) / g.kw, (t0 + t) % g.kw);
                    *o = ky * pd.rs + kx;
                }
                for oy in 0..g.oh {
                    let prow = pp.add((ci * pd.hp + oy) * pd.rs);
                    let mut ox = 0;
                    while ox < g.ow {
                        let valid = (g.ow - ox).min(LANES);
                        let mask: __mmask16 = if valid == LANES {
                            0xFFFF
                        } else {
                            ((1u32 << valid) - 1) as __mmask16
                        };
                        // dy beyond `ow` (and of missing channels) is read as 0, so P's
                        // slack columns add nothing.
                        let mut d = [_mm512_setzero_ps(); WCO];
                        for (j, dj) in d.iter_mut().enumerate() {
                            if j < quad {
                                *dj = _mm512_maskz_loadu_ps(
                                    mask,
                                    dyp.add((co + j) * plane + oy * g.ow + ox),
                                );
                            }
                        }
                        let base = prow.add(ox);
                        for t in 0..TAPS {
                            let xv = _mm512_loadu_ps(base.add(offs[t]));
                            for j in 0..WCO {
                                acc[j][t] = _mm512_fmadd_ps(d[j], xv, acc[j][t]);
                            }
                        }
                        ox += LANES;
                    }
                }
                for (j, acc_j) in acc.iter().enumerate().take(quad) {
                    for (t, &a) in acc_j.iter().enumerate().take(taps) {
                        dw[((co + j) * g.c_in + ci) * kk + t0 + t] += _mm512_reduce_add_ps(a);
                    }
                }
                t0 += taps;
            }
        }
        co += quad;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::naive;
    use rand::{Rng, SeedableRng};

    #[test]
    fn direct_equals_the_definition_on_awkward_shapes() {
        if !has_avx512() {
            return; // the kernel is never chosen on this CPU; nothing to compare
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        // (c_in, c_out, h, w, k, pad): odd rows, widths around 16, c_out not a multiple
        // of 8, 1x1 and 5x5 kernels, no padding.
        let cases = [
            (3, 16, 32, 32, 3, 1),
            (5, 13, 9, 17, 3, 1),
            (4, 8, 7, 14, 3, 0),
            (2, 9, 6, 31, 5, 2),
            (6, 3, 5, 20, 2, 1),
            (1, 20, 28, 28, 3, 1),
        ];
        for (ci, co, h, w, k, pad) in cases {
            let g = ConvGeom::new(ci, h, w, co, (k, k), (1, 1), (pad, pad), (1, 1), 1).unwrap();
            assert!(applies(&g), "{g:?}");
            let x: Vec<f32> = (0..ci * h * w)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let wt: Vec<f32> = (0..co * ci * k * k)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let bias: Vec<f32> = (0..co).map(|_| rng.random_range(-1.0..1.0)).collect();
            let pd = Padded::of(&g);
            let mut p = vec![0.0; pd.len(&g)];
            pad_image(&g, pd, &x, &mut p);
            let mut wp = vec![];
            pack_weights(&g, &wt, &mut wp);
            let mut y = vec![f32::NAN; co * g.oh * g.ow];
            image(&g, pd, &p, &wp, Some(&bias), &mut y);
            let want = naive::conv2d_forward(&g, 1, &x, &wt, Some(&bias));
            let err = y
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-4, "{g:?}: {err}");
            let mut y2 = vec![f32::NAN; co * g.oh * g.ow];
            image_scalar(&g, pd, &p, &wp, Some(&bias), &mut y2);
            let err = y2
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-4, "fallback {g:?}: {err}");
        }
    }

    /// The vector copy writes the interior exactly as the scalar one and leaves every
    /// padding element as it was (widths below, at and across 16, uneven padding).
    #[test]
    fn pad_image_fills_the_interior_only() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for (c, h, w, pad) in [(2, 3, 5, 1), (3, 4, 16, 2), (2, 5, 33, 1), (1, 3, 47, 0)] {
            let g = ConvGeom::new(c, h, w, 4, (3, 3), (1, 1), (pad, pad), (1, 1), 1).unwrap();
            let pd = Padded::of(&g);
            let x: Vec<f32> = (0..c * h * w)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut got = vec![7.0; pd.len(&g)];
            let mut want = got.clone();
            pad_image(&g, pd, &x, &mut got);
            pad_image_scalar(&g, pd, &x, &mut want);
            assert_eq!(got, want, "{g:?}");
            let sevens = got.iter().filter(|&&v| v == 7.0).count();
            assert_eq!(sevens, pd.len(&g) - c * h * w, "{g:?}");
        }
    }
}
