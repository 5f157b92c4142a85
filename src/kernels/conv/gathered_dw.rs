//! The f32 weight gradient of the layers the gathered kernel computes ([`super::gathered`]:
//! strided convolutions such as ResNet's 3×3 stride-2 layers and the 7×7 stride-2 stem,
//! dilations, narrow maps), on the same gathered buffer instead of im2col + GEMM.
//!
//! With the image gathered into `Q` ([`gathered::gather_f32`], `kw` shifted copies of the
//! input rather than im2col's `kh·kw`), the operand of tap `t = (ci, ky, kx)` at output
//! position `p` is `Q[off_t + p]`, so
//! `dw[co][t] = Σ_p dy[co][p] · Q[off_t + p]`. `dy` is laid out channels-last first
//! (`dyᵀ[p][c_out rounded to 16]`, 16 × 16 blocks transposed in registers), and the sum
//! over positions runs with output channels in the lanes: a register tile of `T` taps ×
//! `NV` vectors of output channels loads `NV` vectors of `dyᵀ` and broadcasts `T` floats of
//! `Q` per position. The accumulator is transposed, `acc[t][c_out rounded to 16]`, as the
//! bf16 weight gradient's ([`super::bf16::add_transposed`] adds it into `dw`).

use super::bf16::co_lanes;
use super::gathered::{self, Gathered};
use super::geom::ConvGeom;

/// Channels per vector.
const LANES: usize = 16;
/// Floats of `dyᵀ` a block of positions may span (128 KiB: in L2 while every tap group
/// of the block reads it again).
const BLOCK_FLOATS: usize = 32 * 1024;

/// Whether this weight gradient runs for `g` on this CPU: the layers the gathered
/// forward takes (which needs AVX-512).
pub fn applies(g: &ConvGeom) -> bool {
    gathered::applies(g)
}

/// Elements of the channels-last `dyᵀ` of one image.
pub fn dy_len(g: &ConvGeom) -> usize {
    g.ohw() * co_lanes(g)
}

/// Elements of the transposed accumulator `acc[c_in·kh·kw][c_out rounded to 16]`.
pub fn acc_len(g: &ConvGeom) -> usize {
    g.kg() * co_lanes(g)
}

/// Adds one image's weight gradient into `acc` ([`acc_len`], transposed), from the
/// image gathered into `q` ([`gathered::gather_f32`] with `gd = Gathered::of(g)`) and its
/// `dy[c_out, oh·ow]`; `dyt` holds [`dy_len`] floats of scratch.
pub fn weight_grad_image(
    g: &ConvGeom,
    gd: Gathered,
    q: &[f32],
    dy: &[f32],
    dyt: &mut [f32],
    acc: &mut [f32],
) {
    assert!(q.len() >= gd.len(g) - gathered::SLACK && dy.len() >= g.c_out * g.ohw());
    assert!(dyt.len() >= dy_len(g) && acc.len() >= acc_len(g));
    assert!(
        applies(g),
        "the gathered weight gradient needs AVX-512F and a layer the gathered kernel takes"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (`applies`). The transpose writes `ohw` rows of `co_lanes`
    // floats into `dyt` (asserted) from `c_out` planes of `ohw` in `dy` (asserted); the
    // products read `q[off + p]` for `p < ohw`, inside the gathered part
    // (`Gathered::tap`: every tap's plane of `ohw` positions lies in its block), and
    // write `acc` rows `t < kg` of `co_lanes` floats.
    unsafe {
        super::winograd_dw::to_channels_last(
            dy.as_ptr(),
            g.c_out,
            1,
            g.ohw(),
            dyt.as_mut_ptr(),
            (0, 0, g.ohw()),
            co_lanes(g),
        );
        gathered::with_taps(g, gd, |taps| products(g, taps, q, dyt, acc));
    }
}

/// `acc[t][co] += Σ_p q[taps[t] + p] · dyt[p][co]` over blocks of positions, output
/// channels in blocks of up to four vectors, taps in groups of the tile's height.
///
/// # Safety
/// The CPU must support AVX-512F; `q[taps[t] + p]` must be readable for every tap and
/// `p < g.ohw()`, `dyt` hold [`dy_len`] and `acc` `taps.len() · co_lanes(g)` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn products(g: &ConvGeom, taps: &[usize], q: &[f32], dyt: &[f32], acc: &mut [f32]) {
    let (ohw, col) = (g.ohw(), co_lanes(g));
    let block = (BLOCK_FLOATS / col).max(LANES);
    let mut p0 = 0;
    while p0 < ohw {
        let np = block.min(ohw - p0);
        let mut c0 = 0;
        while c0 < col {
            let nv = ((col - c0) / LANES).min(4);
            let f = match nv {
                4 => group::<6, 4>,
                3 => group::<8, 3>,
                2 => group::<8, 2>,
                _ => group::<8, 1>,
            };
            f(taps, q, dyt, col, c0, p0, np, acc);
            c0 += nv * LANES;
        }
        p0 += np;
    }
}

/// Every tap, `T` at a time, for output channels `c0 .. c0 + 16·NV` and positions
/// `p0 .. p0 + np`.
///
/// # Safety
/// As [`products`], with `c0 + 16·NV ≤ col` and `p0 + np ≤ ohw`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn group<const T: usize, const NV: usize>(
    taps: &[usize],
    q: &[f32],
    dyt: &[f32],
    col: usize,
    c0: usize,
    p0: usize,
    np: usize,
    acc: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mut t0 = 0;
    while t0 < taps.len() {
        let nt = (taps.len() - t0).min(T);
        // Missing taps of the last group repeat its first one; their sums are dropped.
        let mut offs = [taps[t0]; T];
        offs[..nt].copy_from_slice(&taps[t0..t0 + nt]);
        let qp: [*const f32; T] = std::array::from_fn(|t| q.as_ptr().add(offs[t] + p0));
        let dp = dyt.as_ptr().add(p0 * col + c0);
        let mut s = [[_mm512_setzero_ps(); NV]; T];
        for p in 0..np {
            let mut dv = [_mm512_setzero_ps(); NV];
            for (v, x) in dv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(dp.add(p * col + v * LANES));
            }
            for (st, &qt) in s.iter_mut().zip(&qp) {
                let b = _mm512_set1_ps(*qt.add(p));
                for (sv, &x) in st.iter_mut().zip(&dv) {
                    *sv = _mm512_fmadd_ps(b, x, *sv);
                }
            }
        }
        for (t, st) in s.iter().enumerate().take(nt) {
            for (v, &sv) in st.iter().enumerate() {
                let dst = acc.as_mut_ptr().add((t0 + t) * col + c0 + v * LANES);
                _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), sv));
            }
        }
        t0 += nt;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::naive;
    use rand::{Rng, SeedableRng};

    /// Against the definition: strided 3×3 with several output-channel blocks and a
    /// partial vector, a 7×7 stride-2 stem (blocks of positions), a dilated layer and a
    /// narrow stride-1 map, taps not a multiple of the tile's height.
    #[test]
    fn gathered_weight_gradient_equals_the_definition() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        // (c_in, h, w, c_out, k, stride, pad, dilation)
        let cases = [
            (5, 16, 16, 21, (3, 3), (2, 2), (1, 1), (1, 1)),
            (3, 66, 66, 64, (7, 7), (2, 2), (3, 3), (1, 1)),
            (4, 9, 10, 80, (3, 2), (2, 1), (1, 0), (1, 1)),
            (6, 12, 10, 17, (3, 3), (1, 1), (2, 2), (2, 2)),
            (9, 8, 8, 48, (3, 3), (1, 1), (1, 1), (1, 1)),
        ];
        for (ci, h, w, co, k, s, p, d) in cases {
            let g = ConvGeom::new(ci, h, w, co, k, s, p, d, 1).unwrap();
            if !applies(&g) {
                assert!(!crate::kernels::conv::has_avx512(), "{g:?}");
                continue;
            }
            let n = 2;
            let mut v = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
            };
            let x = v(n * ci * h * w);
            let dy = v(n * co * g.ohw());
            let wt = v(co * g.kg());
            let (_, want, _) = naive::conv2d_backward(&g, n, &x, &wt, &dy);
            let gd = Gathered::of(&g);
            let mut q = vec![f32::NAN; gd.len(&g)];
            let mut plane = vec![];
            let mut dyt = vec![f32::NAN; dy_len(&g)];
            let mut acc = vec![0.0; acc_len(&g)];
            let (xi, yi) = (ci * h * w, co * g.ohw());
            for i in 0..n {
                gathered::gather_f32(&g, gd, &x[i * xi..(i + 1) * xi], &mut plane, &mut q);
                let dyi = &dy[i * yi..(i + 1) * yi];
                weight_grad_image(&g, gd, &q, dyi, &mut dyt, &mut acc);
            }
            let mut got = vec![0.0; want.len()];
            crate::kernels::conv::bf16::add_transposed(&g, &acc, &mut got);
            let scale = (n * g.ohw()) as f32;
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 2e-6 * scale, "{g:?} [{i}]: {a} vs {b}");
            }
        }
    }
}
