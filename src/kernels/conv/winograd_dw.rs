//! The weight gradient of the Winograd F(2×2, 3×3) kernel ([`super::winograd`]): `dU`
//! summed over tiles with channels in the lanes, then `dw = Gᵀ dU G`.

use super::geom::ConvGeom;
use super::winograd::applies;
use super::winograd::{lane_mask, Plan, BAND_FLOATS, LANES, XI};
use rayon::prelude::*;

// ---------------------------------------------------------------------------------------
// The weight gradient
// ---------------------------------------------------------------------------------------
//
// With `M_ξ = U_ξ · V_ξ` per transformed position and `Y = Aᵀ M A` per tile, the
// gradient of the transformed filter is `dU_ξ[k][c] = Σ_tiles DY_ξ[k][t] · V_ξ[c][t]`
// with `DY = A dY Aᵀ` (each 2×2 block of `dy` spread over a 4×4 tile), and
// `dw = Gᵀ dU G` once at the end. The sum runs over tiles, the long dimension, so it is
// laid out the other way round from the forward product: channels in the lanes, tiles
// in the loop. The image and `dy` are first transposed to channels-last (`[row][column]
// [c rounded to 16]`, 16 × 16 blocks in registers), after which a tile's input
// transform is 16 whole-vector loads per 16 channels and no permutes.

/// Tiles per band of the weight gradient: its `V` and `DY` stay under 384 KiB.
fn wgrad_band(g: &ConvGeom) -> usize {
    (BAND_FLOATS / (XI * (ch16(g.c_in) + ch16(g.c_out)))).max(LANES)
}

/// Channels rounded up to whole vectors.
fn ch16(c: usize) -> usize {
    c.div_ceil(LANES) * LANES
}

/// Where `dU[ξ][c][k0 ..]` starts in the accumulator ([`wgrad_acc_len`]), for `k0` a
/// multiple of 16: the 16 lanes from there are output channels `k0 .. k0 + 16`.
fn acc_at(g: &ConvGeom, xi: usize, c: usize, k0: usize) -> usize {
    let (c16, k16) = (ch16(g.c_in), ch16(g.c_out));
    xi * c16 * k16 + k0 * c16 + c * LANES
}

/// Whether the weight gradient of `g` runs here: the layers [`applies`] takes.
pub fn weight_grad_applies(g: &ConvGeom) -> bool {
    applies(g)
}

/// Elements of the weight gradient's accumulator `dU[ξ][c_out/16][c_in/16·16][16]`:
/// blocks of 16 output channels, each a matrix of input channels × 16 lanes
/// ([`acc_at`]). The finish reads each `ξ`'s block down its input channels, 64 bytes
/// after 64 bytes; with rows of all output channels (`[ξ][c][k]`) it read one line per
/// 2 KiB on 512 channels, each from another page, and took 4 ms a call.
pub fn wgrad_acc_len(g: &ConvGeom) -> usize {
    XI * ch16(g.c_in) * ch16(g.c_out)
}

/// Elements of the channels-last padded image buffer of [`weight_grad_image`] (whose
/// border stays zero between calls for one geometry).
pub fn wgrad_pad_len(g: &ConvGeom) -> usize {
    let pd = Plan::of(g).pd;
    pd.hp * pd.rs * ch16(g.c_in)
}

/// Elements of the weight gradient's scratch: `dy` channels-last, a band's `V` and
/// `DY`, and a vector to align them.
pub fn wgrad_work_len(g: &ConvGeom) -> usize {
    let band = wgrad_band(g);
    g.ohw() * ch16(g.c_out) + XI * (band + 1) * (ch16(g.c_in) + ch16(g.c_out)) + LANES
}

/// Adds one image's `dU` into `acc` ([`wgrad_acc_len`]), from the image `x[c_in, h, w]`
/// and its `dy[c_out, oh, ow]`. `xt` ([`wgrad_pad_len`]) must be all zero the first
/// time for a geometry; `work` holds [`wgrad_work_len`]. Needs AVX-512F
/// ([`weight_grad_applies`]).
pub fn weight_grad_image(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    acc: &mut [f32],
    xt: &mut [f32],
    work: &mut [f32],
) {
    assert!(x.len() >= g.c_in * g.h * g.w && dy.len() >= g.c_out * g.ohw());
    assert!(acc.len() >= wgrad_acc_len(g) && xt.len() >= wgrad_pad_len(g));
    assert!(work.len() >= wgrad_work_len(g));
    assert!(
        crate::kernels::conv::has_avx512(),
        "the Winograd weight gradient needs AVX-512F"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (asserted); the asserts and the sizes above keep
    // every access in bounds (see the comments in each function).
    unsafe {
        wgrad_avx512(g, x, dy, acc, xt, work)
    }
}

/// `dw[k][c][3][3] += Gᵀ dU[ξ][c][k] G` for the accumulated `acc` ([`wgrad_acc_len`]):
/// 16 output channels at a time (one vector of `acc` per `ξ` and input channel, each
/// `ξ` read down its block), the same operations per filter as the scalar definition,
/// then added into `dw` filter by filter; blocks of output channels in parallel.
pub fn weight_grad_finish(g: &ConvGeom, acc: &[f32], dw: &mut [f32]) {
    let row = g.c_in * 9;
    assert!(acc.len() >= wgrad_acc_len(g) && dw.len() >= g.c_out * row);
    // Blocks of 16 output channels in parallel, each on its own rows of dw.
    let dw = &mut dw[..g.c_out * row];
    dw.par_chunks_mut(LANES * row)
        .enumerate()
        .for_each(|(b, rows)| {
            let (k0, nk) = (b * LANES, rows.len() / row.max(1));
            for c in 0..g.c_in {
                let mut du = [[0.0f32; LANES]; XI];
                for (xi, d) in du.iter_mut().enumerate() {
                    let at = acc_at(g, xi, c, k0);
                    d.copy_from_slice(&acc[at..at + LANES]);
                }
                let out = finish_lanes(&du);
                add_filters(&out, &mut rows[c * 9..], row, nk);
            }
        });
}

/// `dst[kk·row + s] += out[s][kk]` for the `nk ≤ 16` filters of one input channel,
/// `row` floats apart. (AVX-512 gathers and scatters for this ran slower than the
/// scalar adds.)
fn add_filters(out: &[[f32; LANES]; 9], dst: &mut [f32], row: usize, nk: usize) {
    for kk in 0..nk {
        for (d, o) in dst[kk * row..kk * row + 9].iter_mut().zip(out) {
            *d += o[kk];
        }
    }
}

/// `Gᵀ du G` (3×3) of 16 filters, lane by lane: `du[ξ]` holds 16 output channels.
#[multiversion::multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub(super) fn finish_lanes(du: &[[f32; LANES]; XI]) -> [[f32; LANES]; 9] {
    // t = Gᵀ du (3×4), then t G (3×3); each statement on all 16 lanes.
    let mut t = [[[0.0f32; LANES]; 4]; 3];
    for j in 0..4 {
        let (u0, u1, u2, u3) = (&du[j], &du[4 + j], &du[8 + j], &du[12 + j]);
        for l in 0..LANES {
            t[0][j][l] = u0[l] + 0.5 * (u1[l] + u2[l]);
            t[1][j][l] = 0.5 * (u1[l] - u2[l]);
            t[2][j][l] = 0.5 * (u1[l] + u2[l]) + u3[l];
        }
    }
    let mut out = [[0.0f32; LANES]; 9];
    for (r, tr) in t.iter().enumerate() {
        for l in 0..LANES {
            out[3 * r][l] = tr[0][l] + 0.5 * (tr[1][l] + tr[2][l]);
            out[3 * r + 1][l] = 0.5 * (tr[1][l] - tr[2][l]);
            out[3 * r + 2][l] = 0.5 * (tr[1][l] + tr[2][l]) + tr[3][l];
        }
    }
    out
}

/// `dst[((r + r0)·rs + col + c0)·c16 + ch] = src[(ch·rows + r)·cols + col]` for every
/// channel `ch < chans` (lanes past `chans` up to `c16` get zeros): planes to
/// channels-last, 16 × 16 blocks transposed in registers.
///
/// # Safety
/// The CPU must support AVX-512F. `c16` must be a multiple of 16 (each store writes 16
/// channels) and `c0 + cols ≤ rs`; `src` must be valid for reads of `chans·rows·cols`
/// floats and `dst` for writes of `(r0 + rows)·rs·c16`. `wgrad_avx512` passes `x` into
/// `xt` (`Plan::of`: `hp ≥ h + 2·pad.0`, `rs ≥ w + 2·pad.1`) and `dy` into `ow`-wide rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn to_channels_last(
    src: *const f32,
    chans: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    (r0, c0, rs): (usize, usize, usize),
    c16: usize,
) {
    use std::arch::x86_64::*;
    for cb in (0..c16).step_by(LANES) {
        for r in 0..rows {
            for x0 in (0..cols).step_by(LANES) {
                let n = (cols - x0).min(LANES);
                let mut v = [_mm512_setzero_si512(); LANES];
                for (j, vj) in v.iter_mut().enumerate() {
                    if cb + j < chans {
                        // Row r of plane cb + j, columns x0 .. x0 + n.
                        let at = src.add(((cb + j) * rows + r) * cols + x0);
                        *vj = _mm512_castps_si512(_mm512_maskz_loadu_ps(lane_mask(n), at));
                    }
                }
                crate::kernels::simd::transpose_16x16(&mut v);
                for (i, &vi) in v.iter().enumerate().take(n) {
                    let at = dst.add(((r + r0) * rs + x0 + i + c0) * c16 + cb);
                    _mm512_storeu_ps(at, _mm512_castsi512_ps(vi));
                }
            }
        }
    }
}

/// # Safety
/// The CPU must support AVX-512F. `x` must hold at least `g.c_in * g.h * g.w` values,
/// `dy` `g.c_out * g.ohw()`, `acc` `wgrad_acc_len(g)`, `xt` `wgrad_pad_len(g)` and `work`
/// `wgrad_work_len(g)`: all asserted by `weight_grad_image`. The tile loads stay in `xt`
/// by `Plan::of` (rows `≤ 2·th + 1 < hp`, columns `≤ 2·tw + 1 < rs`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn wgrad_avx512(
    g: &ConvGeom,
    x: &[f32],
    dy: &[f32],
    acc: &mut [f32],
    xt: &mut [f32],
    work: &mut [f32],
) {
    use std::arch::x86_64::*;
    let plan = Plan::of(g);
    let (pd, tw) = (plan.pd, plan.tw);
    let (c16, k16) = (ch16(g.c_in), ch16(g.c_out));
    let band = wgrad_band(g);
    // Rows per transformed position in V and DY: one more than the band, so that the
    // 16 positions' rows (written side by side) do not fall into the same L1 sets.
    let bs = band + 1;
    let tiles = g.oh.div_ceil(2) * tw;
    // The image channels-last inside its zero border (rows pad.0 .., columns pad.1 ..,
    // all inside hp × rs), and dy channels-last.
    let xp = xt.as_mut_ptr();
    to_channels_last(
        x.as_ptr(),
        g.c_in,
        g.h,
        g.w,
        xp,
        (g.pad.0, g.pad.1, pd.rs),
        c16,
    );
    let skip = work.as_ptr().align_offset(64).min(LANES);
    let work = &mut work[skip..];
    let (dyt, rest) = work.split_at_mut(g.ohw() * k16);
    let (vt, dyb) = rest.split_at_mut(XI * bs * c16);
    to_channels_last(
        dy.as_ptr(),
        g.c_out,
        g.oh,
        g.ow,
        dyt.as_mut_ptr(),
        (0, 0, g.ow),
        k16,
    );
    let (xp, dp, vp, bp) = (
        xp as *const f32,
        dyt.as_ptr(),
        vt.as_mut_ptr(),
        dyb.as_mut_ptr(),
    );
    let mut t0 = 0;
    while t0 < tiles {
        let nt = band.min(tiles - t0);
        for l in 0..nt {
            let (ty, tx) = ((t0 + l) / tw, (t0 + l) % tw);
            // V: rows 2ty .. 2ty + 3 ≤ 2·th + 1 < hp, columns 2tx .. 2tx + 3 < rs.
            for cv in (0..c16).step_by(LANES) {
                let base = xp.add((2 * ty * pd.rs + 2 * tx) * c16 + cv);
                let mut u = [[_mm512_setzero_ps(); 4]; 4];
                for (r, ur) in u.iter_mut().enumerate() {
                    let d = |q: usize| _mm512_loadu_ps(base.add((r * pd.rs + q) * c16));
                    let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
                    *ur = [
                        _mm512_sub_ps(d0, d2),
                        _mm512_add_ps(d1, d2),
                        _mm512_sub_ps(d2, d1),
                        _mm512_sub_ps(d1, d3),
                    ];
                }
                let [u0, u1, u2, u3] = u;
                for j in 0..4 {
                    let vals = [
                        _mm512_sub_ps(u0[j], u2[j]),
                        _mm512_add_ps(u1[j], u2[j]),
                        _mm512_sub_ps(u2[j], u1[j]),
                        _mm512_sub_ps(u1[j], u3[j]),
                    ];
                    for (i, &val) in vals.iter().enumerate() {
                        _mm512_storeu_ps(vp.add(((4 * i + j) * bs + l) * c16 + cv), val);
                    }
                }
            }
            // DY = A dY Aᵀ; outputs past oh or ow have no gradient.
            let (oy, ox) = (2 * ty, 2 * tx);
            let (has_r, has_c) = (oy + 1 < g.oh, ox + 1 < g.ow);
            for kv in (0..k16).step_by(LANES) {
                let at = |y: usize, x: usize| _mm512_loadu_ps(dp.add((y * g.ow + x) * k16 + kv));
                let z = _mm512_setzero_ps();
                let a = at(oy, ox);
                let b = if has_c { at(oy, ox + 1) } else { z };
                let c = if has_r { at(oy + 1, ox) } else { z };
                let d = if has_r && has_c {
                    at(oy + 1, ox + 1)
                } else {
                    z
                };
                for (xi, &val) in dy_tile(a, b, c, d).iter().enumerate() {
                    _mm512_storeu_ps(bp.add((xi * bs + l) * k16 + kv), val);
                }
            }
        }
        // dU_ξ[c][k] += Σ_l V_ξ[l][c] · DY_ξ[l][k]: 8 input channels × up to 3 vectors
        // of output channels per register tile.
        for xi in 0..XI {
            let vx = vp.add(xi * bs * c16) as *const f32;
            let dx = bp.add(xi * bs * k16) as *const f32;
            let ax = acc.as_mut_ptr().add(xi * c16 * k16);
            let mut kv = 0;
            while kv < k16 {
                let kn = ((k16 - kv) / LANES).min(3);
                for c0 in (0..c16).step_by(8) {
                    // dU[ξ][c0][kv ..] (acc_at), the next vector c16·16 floats on.
                    let (v0, d0, a0) = (vx.add(c0), dx.add(kv), ax.add(kv * c16 + c0 * LANES));
                    let ad = c16 * LANES;
                    match kn {
                        3 => wgrad_tile::<3>(nt, v0, c16, d0, k16, a0, ad),
                        2 => wgrad_tile::<2>(nt, v0, c16, d0, k16, a0, ad),
                        _ => wgrad_tile::<1>(nt, v0, c16, d0, k16, a0, ad),
                    }
                }
                kv += kn * LANES;
            }
        }
        t0 += nt;
    }
}

/// `DY = A dY Aᵀ` of the 2×2 blocks `[[a, b], [c, d]]` of `dy` (16 of them side by
/// side, in the lanes): the 16 vectors `ξ = 4·i + j` of the transformed tile.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn dy_tile(
    a: std::arch::x86_64::__m512,
    b: std::arch::x86_64::__m512,
    c: std::arch::x86_64::__m512,
    d: std::arch::x86_64::__m512,
) -> [std::arch::x86_64::__m512; XI] {
    use std::arch::x86_64::*;
    let z = _mm512_setzero_ps();
    let rows = [
        (a, b),
        (_mm512_add_ps(a, c), _mm512_add_ps(b, d)),
        (_mm512_sub_ps(a, c), _mm512_sub_ps(b, d)),
        (_mm512_sub_ps(z, c), _mm512_sub_ps(z, d)),
    ];
    let mut out = [z; XI];
    for (i, &(x0, x1)) in rows.iter().enumerate() {
        out[4 * i] = x0;
        out[4 * i + 1] = _mm512_add_ps(x0, x1);
        out[4 * i + 2] = _mm512_sub_ps(x0, x1);
        out[4 * i + 3] = _mm512_sub_ps(z, x1);
    }
    out
}

/// `acc[i][q] += Σ_l v[l][i] · d[l][q·16 ..]` for 8 input channels `i` and `N`
/// vectors `q` of output channels; rows of `v` are `vs` apart, of `d` `ds`; the
/// accumulator's vector `(i, q)` is at `i·16 + q·ad`.
///
/// # Safety
/// The CPU must support AVX-512F. `acc` must be valid for reads and writes of the
/// vectors `(i, q)` for `i < 8`, `q < N`; `d` for reads of `nt` rows of `N * LANES`
/// floats `ds` apart, and `v` for reads of `nt` rows of 8 floats `vs` apart.
/// `wgrad_avx512` keeps them inside `acc`, `DY` and `V` (`c0 + 8 ≤ c16`,
/// `kv + 16·N ≤ k16`, `nt ≤ band`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn wgrad_tile<const N: usize>(
    nt: usize,
    v: *const f32,
    vs: usize,
    d: *const f32,
    ds: usize,
    acc: *mut f32,
    ad: usize,
) {
    use std::arch::x86_64::*;
    let mut s = [[_mm512_setzero_ps(); N]; 8];
    for (i, si) in s.iter_mut().enumerate() {
        for (q, sq) in si.iter_mut().enumerate() {
            *sq = _mm512_loadu_ps(acc.add(i * LANES + q * ad));
        }
    }
    for l in 0..nt {
        let mut dv = [_mm512_setzero_ps(); N];
        for (q, x) in dv.iter_mut().enumerate() {
            *x = _mm512_loadu_ps(d.add(l * ds + q * LANES));
        }
        let vl = v.add(l * vs);
        for (i, si) in s.iter_mut().enumerate() {
            let b = _mm512_set1_ps(*vl.add(i));
            for (sq, &x) in si.iter_mut().zip(&dv) {
                *sq = _mm512_fmadd_ps(b, x, *sq);
            }
        }
    }
    for (i, si) in s.iter().enumerate() {
        for (q, &sq) in si.iter().enumerate() {
            _mm512_storeu_ps(acc.add(i * LANES + q * ad), sq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The 16-lane finish adds, bit for bit, the scalar `Gᵀ dU G` of every filter (and
    /// nothing for the padding channels of `acc`).
    #[test]
    fn finish_adds_the_scalar_transform_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for (ci, co) in [(16, 16), (17, 33), (40, 20)] {
            let g = ConvGeom::new(ci, 8, 8, co, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
            let acc: Vec<f32> = (0..wgrad_acc_len(&g))
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let start: Vec<f32> = (0..co * ci * 9)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let mut got = start.clone();
            weight_grad_finish(&g, &acc, &mut got);
            for k in 0..co {
                for c in 0..ci {
                    let du: [f32; XI] =
                        std::array::from_fn(|xi| acc[acc_at(&g, xi, c, k / 16 * 16) + k % 16]);
                    let mut t = [[0.0f32; 4]; 3];
                    for j in 0..4 {
                        let (u0, u1, u2, u3) = (du[j], du[4 + j], du[8 + j], du[12 + j]);
                        t[0][j] = u0 + 0.5 * (u1 + u2);
                        t[1][j] = 0.5 * (u1 - u2);
                        t[2][j] = 0.5 * (u1 + u2) + u3;
                    }
                    let at = (k * ci + c) * 9;
                    for (r, tr) in t.iter().enumerate() {
                        let want = [
                            tr[0] + 0.5 * (tr[1] + tr[2]),
                            0.5 * (tr[1] - tr[2]),
                            0.5 * (tr[1] + tr[2]) + tr[3],
                        ];
                        for (q, w) in want.iter().enumerate() {
                            let i = at + 3 * r + q;
                            let exp = start[i] + w;
                            assert_eq!(got[i].to_bits(), exp.to_bits(), "{ci}->{co} k{k} c{c}");
                        }
                    }
                }
            }
        }
    }
}
