//! The Winograd F(2×2, 3×3) weight gradient of small maps with many channels — the
//! 7×7 maps of 512 channels of ImageNet ResNets — as one product per transformed
//! position over the tiles of many images.
//!
//! [`super::winograd_dw`] sums `dU_ξ[c][k] = Σ_t V_ξ[c][t] · DY_ξ[k][t]` band by band
//! with all of `dU` (16 · c_in · c_out floats: 16 MiB on 512 channels) in its register
//! tiles' reach; a 7×7 map has 16 tiles, so that accumulator would be streamed once per
//! image. Here the tiles of a group of images lie side by side in the lanes, as in the
//! batched forward ([`super::winograd::Plan::batched`]): `V_ξ` (`c_in` rows) and `DY_ξ`
//! (`c_out` rows) are two matrices of `lanes` columns, and `dU_ξ = DY_ξ · V_ξᵀ` is a
//! GEMM (`c_out × c_in × lanes`) that the GEMM library blocks for the caches and splits
//! between the threads. 16 such products hold `16/2.25` of the multiply-adds of
//! im2col + GEMM; the finish is `dw = Gᵀ dU G` per filter.

use super::geom::ConvGeom;
use super::winograd::{self, Plan, Source, LANES, XI};
#[cfg(target_arch = "x86_64")]
use super::winograd_dw::dy_tile;
use super::winograd_dw::finish_lanes;
use crate::error::Result;
use crate::kernels::gemm::{matmul, Accumulate, Par, Trans};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Lanes of one group of images: enough for the GEMM to run at speed, few enough that
/// `V` and `DY` stay a few MiB (16 MiB each at 512 lanes of 512 channels).
const GROUP_LANES: usize = 512;

/// Whether this form takes `g`: a layer the batched Winograd forward takes and the
/// per-image kernels do not (transformed weights over L2, too few tiles an image).
pub fn applies(g: &ConvGeom) -> bool {
    winograd::forward_applies(g) && !winograd::applies(g) && Plan::batch_for(g) > 1
}

/// `dweight[c_out, c_in, 3, 3] += ` the weight gradient over `n` images `x[n, c_in, h,
/// w]` and their `dy[n, c_out, oh, ow]`. Needs AVX-512F ([`applies`]).
pub fn weight_grad(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    dy: &[f32],
    dweight: &mut [f32],
) -> Result<()> {
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * g.ohw());
    assert!(x.len() >= n * x_img && dy.len() >= n * y_img);
    assert!(dweight.len() >= g.c_out * g.c_in * 9);
    assert!(
        crate::kernels::conv::has_avx512(),
        "the wide Winograd weight gradient needs AVX-512F"
    );
    let one = Plan::of(g);
    let il = one.th * one.pitch;
    // (At least two: `Plan::batched` of one image is the per-image layout.)
    let group = (GROUP_LANES / il).clamp(2, n.max(2));
    let plan = Plan::batched(g, group);
    let lanes = plan.bandp;
    // Lanes no tile writes (a row's tiles short of its pitch, or the band's rounding)
    // must hold zeros: the products sum over every lane.
    let gaps = one.pitch != one.tw || lanes != group * il;
    let fresh = |len: usize| {
        if gaps {
            Tensor::zeros(&[len])
        } else {
            Tensor::for_overwrite(&[len])
        }
    };
    let mut v_t = fresh(plan.v_len(g));
    let mut d_t = fresh(XI * g.c_out * lanes);
    let mut acc_t = Tensor::for_overwrite(&[XI * g.c_out * g.c_in]);
    let (v, d, acc) = (v_t.data_mut(), d_t.data_mut(), acc_t.data_mut());
    let mut i0 = 0;
    while i0 < n {
        let bn = group.min(n - i0);
        if bn < group {
            // A last, partial group: its unused lanes may hold an earlier group's
            // tiles (or, in a first group, anything): zeros in both.
            v.iter_mut().for_each(|e| *e = 0.0);
            d.iter_mut().for_each(|e| *e = 0.0);
        }
        // V (the images) and DY (their gradients) at once.
        rayon::join(
            || {
                for b in 0..bn {
                    let xi = &x[(i0 + b) * x_img..(i0 + b + 1) * x_img];
                    winograd::input_lanes(g, &plan, Source::Plain(xi), &mut v[b * il..]);
                }
            },
            || {
                for b in 0..bn {
                    let dyi = &dy[(i0 + b) * y_img..(i0 + b + 1) * y_img];
                    dy_lanes(g, &plan, dyi, d, b * il);
                }
            },
        );
        for xi in 0..XI {
            let dx = &d[xi * g.c_out * lanes..(xi + 1) * g.c_out * lanes];
            let vx = &v[xi * plan.xs_v..xi * plan.xs_v + g.c_in * lanes];
            let ax = &mut acc[xi * g.c_out * g.c_in..(xi + 1) * g.c_out * g.c_in];
            let mode = if i0 == 0 {
                Accumulate::No
            } else {
                Accumulate::Yes
            };
            matmul(
                g.c_out,
                g.c_in,
                lanes,
                dx,
                Trans::No,
                vx,
                Trans::Yes,
                ax,
                mode,
                Par::Rayon,
            )?;
        }
        i0 += bn;
    }
    if n > 0 {
        finish(g, acc, dweight);
    }
    Ok(())
}

/// `dw[k][c] += Gᵀ dU[ξ][k][c] G` for `acc = dU[ξ][c_out][c_in]`: 16 input channels at
/// a time (one vector of each `ξ`'s row `k`), output channels in parallel.
fn finish(g: &ConvGeom, acc: &[f32], dweight: &mut [f32]) {
    let (ci, row) = (g.c_in, g.c_in * 9);
    let plane = g.c_out * ci;
    dweight[..g.c_out * row]
        .par_chunks_mut(row)
        .enumerate()
        .for_each(|(k, dst)| {
            for c0 in (0..ci).step_by(LANES) {
                let nc = (ci - c0).min(LANES);
                let mut du = [[0.0f32; LANES]; XI];
                for (xi, lanes) in du.iter_mut().enumerate() {
                    let at = xi * plane + k * ci + c0;
                    lanes[..nc].copy_from_slice(&acc[at..at + nc]);
                }
                let out = finish_lanes(&du);
                for l in 0..nc {
                    for (tap, o) in out.iter().enumerate() {
                        dst[(c0 + l) * 9 + tap] += o[l];
                    }
                }
            }
        });
}

/// `DY = A dY Aᵀ` of every tile of one image's `dy[c_out, oh, ow]` into
/// `d[ξ][k][lanes]` (`ξ` a `c_out × lanes` matrix), the image's tiles from lane `lane0`
/// in the order of `V` ([`winograd::chunks`]); outputs past `oh` or `ow` have no
/// gradient.
fn dy_lanes(g: &ConvGeom, plan: &Plan, dy: &[f32], d: &mut [f32], lane0: usize) {
    assert!(dy.len() >= g.c_out * g.ohw());
    assert!(d.len() >= XI * g.c_out * plan.bandp);
    assert!(lane0 + plan.th * plan.pitch <= plan.bandp);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (`weight_grad` asserts it); the loads are masked to
    // each row's columns (2·tx0 + cols ≤ ow, rows < oh) and the stores to lanes
    // lane0 + l0 .. + n ≤ lane0 + th·pitch ≤ bandp of row (ξ, k) (asserted above).
    unsafe {
        dy_lanes_avx512(g, plan, dy, d, lane0)
    }
}

/// # Safety
/// The CPU must support AVX-512F; the lengths [`dy_lanes`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dy_lanes_avx512(g: &ConvGeom, plan: &Plan, dy: &[f32], d: &mut [f32], lane0: usize) {
    use super::geom::lane_mask;
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let z = _mm512_setzero_ps();
    let (lanes, xs) = (plan.bandp, g.c_out * plan.bandp);
    let (yp, dp) = (dy.as_ptr(), d.as_mut_ptr());
    for k in 0..g.c_out {
        let plane = yp.add(k * g.ohw());
        for (ty, tx0, n, l0) in winograd::chunks(plan, 0, plan.th) {
            let cols = (2 * n).min(g.ow - 2 * tx0);
            let (m0, m1) = (lane_mask(cols), lane_mask(cols.saturating_sub(LANES)));
            // The even and odd columns of output row `oy` of the n tiles.
            let row = |oy: usize| {
                if oy >= g.oh {
                    return (z, z);
                }
                let r = plane.add(oy * g.ow + 2 * tx0);
                let lo = _mm512_maskz_loadu_ps(m0, r);
                let hi = _mm512_maskz_loadu_ps(m1, r.wrapping_add(LANES));
                (
                    _mm512_permutex2var_ps(lo, even, hi),
                    _mm512_permutex2var_ps(lo, odd, hi),
                )
            };
            let ((a, b), (c, e)) = (row(2 * ty), row(2 * ty + 1));
            let mask = lane_mask(n);
            for (xi, &val) in dy_tile(a, b, c, e).iter().enumerate() {
                let at = dp.add(xi * xs + k * lanes + lane0 + l0);
                _mm512_mask_storeu_ps(at, mask, val);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::naive;
    use rand::{Rng, SeedableRng};

    /// Equal to the naive twin (added onto what `dweight` held) for one image, a group
    /// and a half (the last group's lanes partly unused), an odd map and one whose rows
    /// leave lanes unwritten, channel counts that are not multiples of 16.
    #[test]
    fn wide_weight_gradient_matches_the_naive_twin() {
        if !crate::kernels::conv::has_avx512() {
            return; // never chosen on this CPU
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        // (12 × 6: rows of 3 tiles at a pitch of 4, lanes no tile writes.)
        for (n, ci, co, h, w) in [
            (1, 136, 130, 7, 7),
            (50, 136, 136, 7, 7),
            (3, 130, 140, 12, 6),
        ] {
            let g = ConvGeom::new(ci, h, w, co, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
            assert!(applies(&g), "{g:?}");
            let mut r = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
            };
            let (x, dy) = (r(n * ci * h * w), r(n * co * g.ohw()));
            let start = r(co * ci * 9);
            let (_, want, _) = naive::conv2d_backward(&g, n, &x, &vec![0.0; co * ci * 9], &dy);
            let mut got = start.clone();
            weight_grad(&g, n, &x, &dy, &mut got).unwrap();
            for (i, ((a, s), w)) in got.iter().zip(&start).zip(&want).enumerate() {
                let e = s + w;
                assert!(
                    (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{g:?} n={n} [{i}] {a} vs {e}"
                );
            }
        }
    }
}
