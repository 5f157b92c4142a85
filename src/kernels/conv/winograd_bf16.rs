//! The bf16 form of the Winograd kernel ([`super::winograd`]): the transformed input `V`
//! and weights `U` rounded to bf16 in channel pairs and multiplied with `vdpbf16ps`
//! (f32 sums); the transforms, `M` and the output transform are the f32 kernel's.

use super::bf16;
use super::geom::ConvGeom;
#[cfg(target_arch = "x86_64")]
use super::winograd::chunks;
use super::winograd::{lane_mask, multiply, output_avx512, Epilogue, Plan, KB, LANES, XI};
use super::winograd_input::input_chunk;
use super::winograd_tile::filter_of;

/// [`pack_weights`] for [`image_bf16`]: `U` rounded to bf16, input channels in pairs
/// (`2c` in the low half), as `[ξ][c_out/8][c_in/2][8]`.
pub fn pack_weights_bf16(g: &ConvGeom, w: &[f32], out: &mut Vec<u32>) {
    let plan = Plan::of(g);
    let (blocks, cp) = (plan.kp / KB, g.c_in.div_ceil(2));
    out.clear();
    out.resize(XI * plan.kp * cp, 0);
    for k in 0..g.c_out {
        for q in 0..cp {
            let (lo, hi) = (filter_of(g, w, k, 2 * q), filter_of(g, w, k, 2 * q + 1));
            for xi in 0..XI {
                out[((xi * blocks + k / KB) * cp + q) * KB + k % KB] = bf16::pair(lo[xi], hi[xi]);
            }
        }
    }
}

/// [`image`] with bf16 products: the transformed input `V` and weights `U`
/// ([`pack_weights_bf16`]) rounded to bf16 in channel pairs and multiplied with
/// `vdpbf16ps` (f32 sums); the transforms and `M` stay f32. `pairs` holds
/// [`Plan::pairs_len`] elements, `work` [`Plan::work_len`]. Needs [`bf16::available`]
/// and AVX-512 BW (every CPU with AVX-512 BF16 has it).
#[allow(clippy::too_many_arguments)]
pub fn image_bf16(
    g: &ConvGeom,
    plan: &Plan,
    p: &[f32],
    u: &[u32],
    ep: Epilogue,
    y: &mut [f32],
    pairs: &mut [u32],
    work: &mut [f32],
) {
    let cp = g.c_in.div_ceil(2);
    assert!(p.len() >= plan.pad_len(g) && u.len() >= XI * plan.kp * cp);
    assert!(y.len() >= ep.out_len(g) && work.len() >= plan.work_len(g));
    assert!(pairs.len() >= plan.pairs_len(g));
    assert!(bf16_available(), "image_bf16 needs AVX-512 BF16 and BW");
    if let Some(b) = ep.bias {
        assert!(b.len() >= g.c_out);
    }
    let skip = work.as_ptr().align_offset(64).min(LANES);
    let m = &mut work[skip..];
    let skip = pairs.as_ptr().align_offset(64).min(LANES);
    let v = &mut pairs[skip..];
    let mut ty0 = 0;
    while ty0 < plan.th {
        let rb = plan.rows.min(plan.th - ty0);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F, BW and BF16 (asserted above); the asserts and
        // the plan's sizes keep every access in bounds (see the comments in each).
        unsafe {
            input_bf16(g, plan, p, ty0, rb, v);
            let tiles = [tile_bf16::<1>, tile_bf16::<2>, tile_bf16::<3>];
            multiply(plan, g.c_in.div_ceil(2), u, v, m, rb * plan.pitch, tiles);
            output_avx512(g, plan, m, ty0, rb, ep, y);
        }
        ty0 += rb;
    }
}

/// Whether [`image_bf16`] runs on this CPU.
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        bf16::available() && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The input transform of one band in bf16 channel pairs: `v[c_in/2][ξ][bandp]`, each
/// element channel `2c` (low half) and `2c + 1` (high half), zero past `c_in`.
///
/// # Safety
/// The CPU must support AVX-512F, BW and BF16. `plan` must be `Plan::of(g)`,
/// `rb ≤ plan.rows` and `ty0 + rb ≤ plan.th`; `p` must hold at least `plan.pad_len(g)`
/// values and `v` at least `g.c_in.div_ceil(2) * plan.cs` (`image_bf16` asserts both, `v`
/// as `plan.pairs_len(g)`, one vector more for its alignment skip).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn input_bf16(g: &ConvGeom, plan: &Plan, p: &[f32], ty0: usize, rb: usize, v: &mut [u32]) {
    use std::arch::x86_64::*;
    // 16-bit lanes: channel 2c's tile i (lane i) then 2c + 1's (lane 16 + i) → pairs.
    let interleave = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    );
    let (pd, xv) = (plan.pd, plan.xs_v);
    let (pp, vp) = (p.as_ptr(), v.as_mut_ptr());
    for q in 0..g.c_in.div_ceil(2) {
        for (ty, tx0, n, l0) in chunks(plan, ty0, rb) {
            let at = |c: usize| pp.add((c * pd.hp + 2 * ty) * pd.rs + 2 * tx0);
            let lo = input_chunk(at(2 * q), pd.rs, n);
            let hi = if 2 * q + 1 < g.c_in {
                input_chunk(at(2 * q + 1), pd.rs, n)
            } else {
                [_mm512_setzero_ps(); XI]
            };
            let mask = lane_mask(n);
            for xi in 0..XI {
                let packed: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi[xi], lo[xi]));
                let pairs = _mm512_permutexvar_epi16(interleave, packed);
                let dst = vp.add(q * plan.cs + xi * xv + l0);
                _mm512_mask_storeu_epi32(dst as *mut i32, mask, pairs);
            }
        }
    }
}

/// [`tile`] on `pairs` channel pairs with `vdpbf16ps`.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16. `w` must be valid for reads of
/// `pairs * KB` values, `col` for reads of `pairs` rows of `N * LANES` values `stride`
/// apart, and `out` for writes of `KB` rows of `N * LANES` floats `stride` apart (as
/// `multiply` gives them, like [`tile`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn tile_bf16<const N: usize>(
    pairs: usize,
    w: *const u32,
    col: *const u32,
    stride: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); N]; KB];
    for q in 0..pairs {
        let row = col.add(q * stride);
        let mut xs = [_mm512_setzero_si512(); N];
        for (n, x) in xs.iter_mut().enumerate() {
            *x = _mm512_loadu_si512(row.add(n * LANES) as *const _);
        }
        let wq = w.add(q * KB);
        for (k, acc_k) in acc.iter_mut().enumerate() {
            let wv: __m512bh = std::mem::transmute(_mm512_set1_epi32(*wq.add(k) as i32));
            for (a, &x) in acc_k.iter_mut().zip(&xs) {
                *a = _mm512_dpbf16_ps(*a, std::mem::transmute::<__m512i, __m512bh>(x), wv);
            }
        }
    }
    for (k, acc_k) in acc.iter().enumerate() {
        for (n, &a) in acc_k.iter().enumerate() {
            _mm512_storeu_ps(out.add(k * stride + n * LANES), a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::winograd_tile::{input_tile, output_tile};
    use crate::kernels::naive;
    use rand::{Rng, SeedableRng};

    fn operands(rng: &mut impl Rng, g: &ConvGeom) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut v =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let x = v(g.c_in * g.h * g.w);
        let w = v(g.c_out * g.c_in * 9);
        (x, w, v(g.c_out))
    }

    /// The bf16 kernel's arithmetic without SIMD: `V` and `U` rounded to bf16, the
    /// products summed exactly (f64).
    fn bf16_twin(g: &ConvGeom, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let pad = |c: usize, r: isize, col: isize| -> f32 {
            let (r, col) = (r - g.pad.0 as isize, col - g.pad.1 as isize);
            if r < 0 || col < 0 || r >= g.h as isize || col >= g.w as isize {
                0.0
            } else {
                x[(c * g.h + r as usize) * g.w + col as usize]
            }
        };
        let mut y = vec![0.0; g.c_out * g.oh * g.ow];
        for ty in 0..g.oh.div_ceil(2) {
            for tx in 0..g.ow.div_ceil(2) {
                let vs: Vec<[f32; XI]> = (0..g.c_in)
                    .map(|c| {
                        let mut d = [[0.0f32; 4]; 4];
                        for (r, dr) in d.iter_mut().enumerate() {
                            for (q, v) in dr.iter_mut().enumerate() {
                                *v = pad(c, (2 * ty + r) as isize, (2 * tx + q) as isize);
                            }
                        }
                        input_tile(&d).map(crate::kernels::bf16::round)
                    })
                    .collect();
                for k in 0..g.c_out {
                    let mut m = [0.0f64; XI];
                    for (c, v) in vs.iter().enumerate() {
                        let u = filter_of(g, w, k, c).map(crate::kernels::bf16::round);
                        for xi in 0..XI {
                            m[xi] += u[xi] as f64 * v[xi] as f64;
                        }
                    }
                    let out = output_tile(&m.map(|v| v as f32));
                    for (q, &val) in out.iter().enumerate() {
                        let (oy, ox) = (2 * ty + q / 2, 2 * tx + q % 2);
                        if oy < g.oh && ox < g.ow {
                            y[(k * g.oh + oy) * g.ow + ox] = val + bias[k];
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn bf16_winograd_rounds_the_transformed_operands_and_sums_in_f32() {
        if !bf16_available() {
            return; // never chosen on this CPU
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        // Odd channel counts (a half-empty last pair), odd sizes, paddings 0–2, bands.
        let cases = [
            (16, 16, 8, 8, (1, 1)),
            (17, 19, 9, 11, (1, 1)),
            (33, 16, 13, 30, (0, 2)),
            (64, 64, 14, 14, (1, 1)),
            (96, 96, 20, 20, (1, 1)),
        ];
        for (ci, co, h, w, pad) in cases {
            let g = ConvGeom::new(ci, h, w, co, (3, 3), (1, 1), pad, (1, 1), 1).unwrap();
            let (x, wt, bias) = operands(&mut rng, &g);
            let plan = Plan::of(&g);
            let mut p = vec![0.0; plan.pad_len(&g)];
            crate::kernels::conv::direct::pad_image(&g, plan.padded(), &x, &mut p);
            let mut u = vec![];
            pack_weights_bf16(&g, &wt, &mut u);
            let mut pairs = vec![u32::MAX; plan.pairs_len(&g)];
            let mut work = vec![f32::NAN; plan.work_len(&g)];
            let mut y = vec![f32::NAN; co * g.oh * g.ow];
            image_bf16(
                &g,
                &plan,
                &p,
                &u,
                Epilogue {
                    bias: Some(&bias),
                    ..Epilogue::default()
                },
                &mut y,
                &mut pairs,
                &mut work,
            );
            // Against the same arithmetic: only the order of the f32 sums differs.
            let twin = bf16_twin(&g, &x, &wt, &bias);
            for (i, (a, b)) in y.iter().zip(&twin).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{g:?} [{i}]: {a} vs {b}"
                );
            }
            // Against the exact convolution: within bf16 rounding of the operands.
            let want = naive::conv2d_forward(&g, 1, &x, &wt, Some(&bias));
            let rms = (want.iter().map(|v| v * v).sum::<f32>() / want.len() as f32).sqrt();
            let err = y
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(
                    0.0f32,
                    |e, d| if d.is_nan() { f32::INFINITY } else { e.max(d) },
                );
            assert!(err < 0.05 * rms, "{g:?}: {err} (rms {rms})");
        }
    }
}
