//! The transforms of Winograd F(2×2, 3×3) on one tile ([`super::winograd`]): the filter
//! `G g Gᵀ`, the input `Bᵀ d B` and the output `Aᵀ m A`, in plain scalar code — the
//! definition the vectorized kernels follow and are tested against.

use super::geom::ConvGeom;
use rayon::prelude::*;

/// Positions of a transformed 4×4 tile.
pub(crate) const XI: usize = 16;

/// `U = G f Gᵀ` of one 3×3 filter `f` (row-major), as `u[4·i + j]`.
pub(crate) fn filter_tile(f: &[f32]) -> [f32; XI] {
    // t = G f (4×3), then u = t Gᵀ (4×4).
    let mut t = [[0.0f32; 3]; 4];
    for s in 0..3 {
        let (f0, f1, f2) = (f[s], f[3 + s], f[6 + s]);
        t[0][s] = f0;
        t[1][s] = 0.5 * (f0 + f1 + f2);
        t[2][s] = 0.5 * (f0 - f1 + f2);
        t[3][s] = f2;
    }
    let mut u = [0.0f32; XI];
    for (i, ti) in t.iter().enumerate() {
        u[4 * i] = ti[0];
        u[4 * i + 1] = 0.5 * (ti[0] + ti[1] + ti[2]);
        u[4 * i + 2] = 0.5 * (ti[0] - ti[1] + ti[2]);
        u[4 * i + 3] = ti[2];
    }
    u
}

/// The transformed filter of output channel `k` and input channel `c` (zero past
/// `c_in`).
pub(crate) fn filter_of(g: &ConvGeom, w: &[f32], k: usize, c: usize) -> [f32; XI] {
    if c < g.c_in {
        filter_tile(&w[(k * g.c_in + c) * 9..(k * g.c_in + c) * 9 + 9])
    } else {
        [0.0; XI]
    }
}

/// `Bᵀ d B` of one 4×4 block `d[r][c]`, as `out[4·i + j]`.
pub(crate) fn input_tile(d: &[[f32; 4]; 4]) -> [f32; XI] {
    let mut u = [[0.0f32; 4]; 4];
    for (ur, dr) in u.iter_mut().zip(d) {
        *ur = [dr[0] - dr[2], dr[1] + dr[2], dr[2] - dr[1], dr[1] - dr[3]];
    }
    let mut out = [0.0f32; XI];
    for j in 0..4 {
        out[j] = u[0][j] - u[2][j];
        out[4 + j] = u[1][j] + u[2][j];
        out[8 + j] = u[2][j] - u[1][j];
        out[12 + j] = u[1][j] - u[3][j];
    }
    out
}

/// `Aᵀ m A` of one transformed tile `m[4·i + j]`: the 2×2 outputs `[y00, y01, y10, y11]`.
pub(crate) fn output_tile(m: &[f32; XI]) -> [f32; 4] {
    let mut s = [[0.0f32; 4]; 2];
    for j in 0..4 {
        s[0][j] = m[j] + m[4 + j] + m[8 + j];
        s[1][j] = m[4 + j] - m[8 + j] - m[12 + j];
    }
    [
        s[0][0] + s[0][1] + s[0][2],
        s[0][1] - s[0][2] - s[0][3],
        s[1][0] + s[1][1] + s[1][2],
        s[1][1] - s[1][2] - s[1][3],
    ]
}

/// Where the 3×3 filter of output channel `k` and input channel `c` lies in a weight
/// array: tap `s` (row-major) at `k·ks + c·cs + s`, or at `k·ks + c·cs + 8 − s` when
/// `flip` ([`gather_filters`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FilterAt {
    ks: usize,
    cs: usize,
    flip: bool,
}

impl FilterAt {
    /// The filters of `w[c_out, c_in, 3, 3]` for `g` as they are.
    pub(crate) fn plain(g: &ConvGeom) -> Self {
        FilterAt {
            ks: g.c_in * 9,
            cs: 9,
            flip: false,
        }
    }

    /// The filters of the input gradient of a stride-1 layer, geometry `gt` (`gt.c_in`
    /// is the layer's `c_out`): the layer's own weights, input and output channels
    /// swapped and each filter turned by 180°, read in place (no flipped copy).
    pub(crate) fn flipped(gt: &ConvGeom) -> Self {
        FilterAt {
            ks: 9,
            cs: gt.c_out * 9,
            flip: true,
        }
    }
}

/// Filters per pass of [`pack_filters`]: 8 output channels × 2 input channels, a vector.
const PACK_LANES: usize = 16;

/// `U = G f Gᵀ` of every filter of `w` (located by `at`), packed `[ξ][kp/8][c_in][8]`
/// for `g` into `out` (resized to `XI·kp·c_in`; every element written, zero past
/// `c_out`). The values of [`filter_tile`], bit for bit, 16 filters at a time: one
/// vector per `ξ` holds the 8 output channels of a block for two neighbouring input
/// channels, which is 16 consecutive floats of `out`.
pub(crate) fn pack_filters(g: &ConvGeom, kp: usize, w: &[f32], at: FilterAt, out: &mut Vec<f32>) {
    let blocks = kp / 8;
    let len = XI * kp * g.c_in;
    if out.len() != len {
        out.clear();
        out.resize(len, 0.0);
    }
    if len == 0 {
        return;
    }
    // Blocks of 8 output channels in parallel: each `ξ`'s slab of `out` cut into its
    // blocks' parts, and each block handed its 16 parts (ImageNet layers: 512 × 512
    // filters are 16 MiB of `U`, packed at every call).
    let mut parts: Vec<Vec<&mut [f32]>> = (0..blocks).map(|_| Vec::with_capacity(XI)).collect();
    for slab in out.chunks_mut(blocks * g.c_in * 8) {
        for (kb, part) in slab.chunks_mut(g.c_in * 8).enumerate() {
            parts[kb].push(part);
        }
    }
    assert!(w.len() >= g.c_out * g.c_in * 9, "weights of {g:?}");
    parts.into_par_iter().enumerate().for_each(|(kb, mut dst)| {
        let kn = g.c_out.saturating_sub(kb * 8).min(8);
        pack_block(w, at, g.c_in, (kb * 8, kn), &mut dst);
    });
}

/// The filters of output channels `k0 .. k0 + kn` (`kn ≤ 8`) for every input channel,
/// into `dst[ξ]` (`[c_in][8]` each): two input channels per pass. One function compiled
/// for the vector width, with the gather and the transform inlined (called apart they
/// passed their arrays through `memmove`).
#[multiversion::multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn pack_block(w: &[f32], at: FilterAt, c_in: usize, k: (usize, usize), dst: &mut [&mut [f32]]) {
    for c0 in (0..c_in).step_by(2) {
        let cn = (c_in - c0).min(2);
        let f = if at.flip {
            gather_filters::<true>(w, at, k, (c0, cn))
        } else {
            gather_filters::<false>(w, at, k, (c0, cn))
        };
        let u = filter_lanes(&f);
        for (part, ux) in dst.iter_mut().zip(&u) {
            match part.get_mut(c0 * 8..c0 * 8 + PACK_LANES) {
                Some(d) => d.copy_from_slice(ux), // two whole channels: one vector
                None => part[c0 * 8..c0 * 8 + 8].copy_from_slice(&ux[..8]),
            }
        }
    }
}

/// The taps of 16 filters, lane `dc·8 + kk` holding filter `(k0 + kk, c0 + dc)`:
/// `f[s][lane]` is its tap `s`, zero in the lanes past `kn` output or `cn` input
/// channels (`kn ≤ 8`, `cn ≤ 2`). Monomorphized on the flip so that the nine taps of a
/// filter are loads at constant offsets (with each tap's place worked out at run time,
/// and with AVX-512 gathers, a pass took about 1,000 cycles).
#[inline(always)]
fn gather_filters<const FLIP: bool>(
    w: &[f32],
    at: FilterAt,
    (k0, kn): (usize, usize),
    (c0, cn): (usize, usize),
) -> [[f32; PACK_LANES]; 9] {
    let mut f = [[0.0f32; PACK_LANES]; 9];
    for dc in 0..cn {
        for kk in 0..kn {
            let first = (k0 + kk) * at.ks + (c0 + dc) * at.cs;
            let taps: &[f32; 9] = match w.get(first..first + 9).and_then(|t| t.try_into().ok()) {
                Some(t) => t,
                None => continue, // beyond the weights (pack_filters asserts they are not)
            };
            for (s, fs) in f.iter_mut().enumerate() {
                fs[dc * 8 + kk] = taps[if FLIP { 8 - s } else { s }];
            }
        }
    }
    f
}

/// [`filter_tile`] on 16 filters at once (the same operations in the same order, so
/// the same values), each statement on all 16 lanes.
#[inline(always)]
fn filter_lanes(f: &[[f32; PACK_LANES]; 9]) -> [[f32; PACK_LANES]; XI] {
    // t = G f (4×3), then u = t Gᵀ (4×4).
    let mut t = [[[0.0f32; PACK_LANES]; 3]; 4];
    for s in 0..3 {
        let (f0, f1, f2) = (&f[s], &f[3 + s], &f[6 + s]);
        for l in 0..PACK_LANES {
            t[0][s][l] = f0[l];
            t[1][s][l] = 0.5 * (f0[l] + f1[l] + f2[l]);
            t[2][s][l] = 0.5 * (f0[l] - f1[l] + f2[l]);
            t[3][s][l] = f2[l];
        }
    }
    let mut u = [[0.0f32; PACK_LANES]; XI];
    for (i, ti) in t.iter().enumerate() {
        for l in 0..PACK_LANES {
            u[4 * i][l] = ti[0][l];
            u[4 * i + 1][l] = 0.5 * (ti[0][l] + ti[1][l] + ti[2][l]);
            u[4 * i + 2][l] = 0.5 * (ti[0][l] - ti[1][l] + ti[2][l]);
            u[4 * i + 3][l] = ti[2][l];
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Every packed value is `filter_tile` of its filter, bit for bit, with zeros past
    /// `c_out`; the flipped reading equals packing a flipped, transposed copy.
    #[test]
    fn packed_filters_are_the_tiles_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for (ci, co) in [(16, 16), (17, 19), (3, 8), (32, 13), (1, 1)] {
            let g = ConvGeom::new(ci, 6, 6, co, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
            let w: Vec<f32> = (0..co * ci * 9)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let kp = co.div_ceil(8) * 8;
            let mut out = vec![f32::NAN; 3];
            pack_filters(&g, kp, &w, FilterAt::plain(&g), &mut out);
            assert_eq!(out.len(), XI * kp * ci);
            for k in 0..kp {
                for c in 0..ci {
                    let want = if k < co {
                        filter_tile(&w[(k * ci + c) * 9..(k * ci + c) * 9 + 9])
                    } else {
                        [0.0; XI]
                    };
                    for (xi, &v) in want.iter().enumerate() {
                        let got = out[((xi * (kp / 8) + k / 8) * ci + c) * 8 + k % 8];
                        assert_eq!(got.to_bits(), v.to_bits(), "{ci}->{co} k{k} c{c} xi{xi}");
                    }
                }
            }
            // The input gradient's geometry: co -> ci channels, filters flipped.
            let gt = ConvGeom::new(co, 6, 6, ci, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
            let mut flipped = vec![0.0; w.len()];
            for k in 0..co {
                for c in 0..ci {
                    for s in 0..9 {
                        flipped[(c * co + k) * 9 + 8 - s] = w[(k * ci + c) * 9 + s];
                    }
                }
            }
            let kpt = ci.div_ceil(8) * 8;
            let (mut a, mut b) = (vec![], vec![1.0; 7]);
            pack_filters(&gt, kpt, &flipped, FilterAt::plain(&gt), &mut a);
            pack_filters(&gt, kpt, &w, FilterAt::flipped(&gt), &mut b);
            assert_eq!(a, b, "{ci}->{co} flipped");
        }
    }
}
