//! The input transform of the Winograd kernel ([`super::winograd`]): `V = Bᵀ d B` of up
//! to 16 tiles of one tile row at a time, tile `i` in lane `i` (the even and odd columns
//! of each input row separated with `vpermt2ps`), read either from a zero-padded copy of
//! the image or from the image itself.
//!
//! Reading the image itself ([`Source::Plain`]) leaves the padding to the loads' masks:
//! a lane whose column lies left or right of the row reads as zero, and a row above or
//! below the image is all zeros — the values the padded copy holds there, so the
//! transform computes the same numbers bit for bit. It saves the copy: on 16-channel
//! 32×32 maps writing and reading back the padded image took as long as the transform.

#[cfg(target_arch = "x86_64")]
use super::geom::lane_mask;
use super::geom::ConvGeom;
use super::winograd_plan::Plan;
#[cfg(target_arch = "x86_64")]
use super::winograd_plan::LANES;
use super::winograd_tile::XI;

/// Where the input transform reads an image `[c_in, h, w]`.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// Its zero-padded copy ([`super::direct::pad_image`] with [`Plan::padded`]).
    Padded(&'a [f32]),
    /// The image itself; the padding comes from the loads' masks.
    Plain(&'a [f32]),
}

impl<'a> Source<'a> {
    /// Whether it holds one image of `g` in the form it names.
    pub fn fits(&self, g: &ConvGeom, plan: &Plan) -> bool {
        match self {
            Source::Padded(p) => p.len() >= plan.pad_len(g),
            Source::Plain(x) => x.len() >= g.c_in * g.h * g.w,
        }
    }

    /// The `b`-th of several images stored one after another.
    pub fn image(&self, g: &ConvGeom, plan: &Plan, b: usize) -> Source<'a> {
        match *self {
            Source::Padded(p) => Source::Padded(&p[b * plan.pad_len(g)..]),
            Source::Plain(x) => Source::Plain(&x[b * g.c_in * g.h * g.w..]),
        }
    }
}

/// `Bᵀ d B` of the `n ≤ 16` tiles of one chunk of one channel, tile `i` in lane `i`,
/// as 16 vectors (`ξ = 4·i + j`); `base` is the padded plane at the chunk's first row
/// and column.
///
/// # Safety
/// The CPU must support AVX-512F, and `n ≤ 16`. Rows `base + r·rs` (`r < 4`) must be
/// valid for reads of columns `0 ..= 2n + 1` (the loads are masked to them; the upper
/// loads' addresses are formed with `wrapping_add`, so an empty mask past the end of the
/// buffer is no access at all).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn input_chunk(
    base: *const f32,
    rs: usize,
    n: usize,
) -> [std::arch::x86_64::__m512; XI] {
    let masks = padded_masks(n);
    let mut u = [[std::arch::x86_64::_mm512_setzero_ps(); 4]; 4];
    for (r, ur) in u.iter_mut().enumerate() {
        *ur = row_part(load_row(
            base.add(r * rs),
            [0, LANES as isize, 2, LANES as isize + 2],
            masks,
        ));
    }
    combine(u)
}

/// The masks of a padded row's four loads for `n` tiles: columns 0 .. 2n + 2 in the
/// first two, 2 .. 2n + 2 in the shifted two.
#[cfg(target_arch = "x86_64")]
fn padded_masks(n: usize) -> [u16; 4] {
    [
        lane_mask(2 * n + 2),
        lane_mask((2 * n + 2).saturating_sub(LANES)),
        lane_mask(2 * n),
        lane_mask((2 * n).saturating_sub(LANES)),
    ]
}

/// One row's four masked loads, at element offsets `starts` from `row`: columns `[0..16,
/// 16..32, 2..18, 18..34]` of the padded row from the chunk's first column.
///
/// # Safety
/// The CPU must support AVX-512F; each load's unmasked lanes must be readable (the
/// addresses are formed with `wrapping_offset`, so a load with an empty mask, or lanes
/// masked off outside the buffer, are no access at all).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_row(
    row: *const f32,
    starts: [isize; 4],
    masks: [u16; 4],
) -> [std::arch::x86_64::__m512; 4] {
    use std::arch::x86_64::*;
    let mut l = [_mm512_setzero_ps(); 4];
    for ((l, &m), &start) in l.iter_mut().zip(&masks).zip(&starts) {
        *l = _mm512_maskz_loadu_ps(m, row.wrapping_offset(start));
    }
    l
}

/// The masks and offsets of the four loads of a chunk's rows read from the unpadded
/// plane of `g` ([`Source::Plain`]): the chunk's first tile is `tx0`, `n ≤ 16` tiles.
/// Each load is masked to the lanes the padded loads would take that lie inside the row
/// (`0 ≤ col < w`); lanes left or right of the row read as zero.
#[cfg(target_arch = "x86_64")]
fn plain_loads(g: &ConvGeom, tx0: usize, n: usize) -> ([isize; 4], [u16; 4]) {
    let w = g.w as isize;
    // The padded column 2·tx0 (lane 0 of the first load) is column s of the image.
    let s = (2 * tx0) as isize - g.pad.1 as isize;
    // Lanes j of a load from column `start` that the padded loads would take (j + lo <
    // count) and that lie inside the row.
    let lanes = |start: isize, lo: usize, count: usize| -> u16 {
        let first = (-start).clamp(0, LANES as isize);
        let last = (w - start)
            .min(count as isize - lo as isize)
            .clamp(0, LANES as isize);
        if last <= first {
            0
        } else {
            lane_mask(last as usize) & !lane_mask(first as usize)
        }
    };
    let (cnt, cnt2) = (2 * n + 2, 2 * n);
    let starts = [s, s + LANES as isize, s + 2, s + LANES as isize + 2];
    let masks = [
        lanes(starts[0], 0, cnt),
        lanes(starts[1], LANES, cnt),
        lanes(starts[2], 0, cnt2),
        lanes(starts[3], LANES, cnt2),
    ];
    (starts, masks)
}

/// The row half of the transform, `d Bᵀ`'s four columns for one input row, from its
/// four loads: the even and odd columns separated (`vpermt2ps`), then combined.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn row_part(
    [a, b, a2, b2]: [std::arch::x86_64::__m512; 4],
) -> [std::arch::x86_64::__m512; 4] {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let d0 = _mm512_permutex2var_ps(a, even, b);
    let d1 = _mm512_permutex2var_ps(a, odd, b);
    let d2 = _mm512_permutex2var_ps(a2, even, b2);
    let d3 = _mm512_permutex2var_ps(a2, odd, b2);
    [
        _mm512_sub_ps(d0, d2),
        _mm512_add_ps(d1, d2),
        _mm512_sub_ps(d2, d1),
        _mm512_sub_ps(d1, d3),
    ]
}

/// The column half: the tile's 16 values `ξ = 4·i + j` from its four rows' halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn combine(u: [[std::arch::x86_64::__m512; 4]; 4]) -> [std::arch::x86_64::__m512; XI] {
    use std::arch::x86_64::*;
    let [u0, u1, u2, u3] = u;
    let mut out = [_mm512_setzero_ps(); XI];
    for j in 0..4 {
        out[j] = _mm512_sub_ps(u0[j], u2[j]);
        out[4 + j] = _mm512_add_ps(u1[j], u2[j]);
        out[8 + j] = _mm512_sub_ps(u2[j], u1[j]);
        out[12 + j] = _mm512_sub_ps(u1[j], u3[j]);
    }
    out
}

/// The input transform of one band into `v[c_in][ξ][bandp]` (channels `cs` apart), from
/// the padded image or the image itself. A chunk's tile rows are taken one after the
/// other, so the last two input rows of one are the first two of the next: their loads
/// and row halves are kept, not redone (half the loads and permutes).
///
/// # Safety
/// The CPU must support AVX-512F. `plan` must be `Plan::of(g)` or `Plan::batched`,
/// `rb ≤ plan.rows` and `ty0 + rb ≤ plan.th`; `src` must fit one image
/// ([`Source::fits`], asserted by the callers) and `v` hold at least
/// `(c_in − 1)·cs + 15·xs_v + th·pitch` floats (the part of `work` the callers split
/// off). The padded loads stay in the copy by `Plan::of` (rows `≤ 2·th + 1 < hp`,
/// columns `≤ 2·tw + 1 < rs`); the plain ones are masked to the plane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn input_avx512(
    g: &ConvGeom,
    plan: &Plan,
    src: Source,
    ty0: usize,
    rb: usize,
    v: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (pd, xv) = (plan.pd, plan.xs_v);
    let vp = v.as_mut_ptr();
    for c in 0..g.c_in {
        for tx0 in (0..plan.tw).step_by(LANES) {
            let n = (plan.tw - tx0).min(LANES);
            // Input row `y` of the padded image (rows 2·ty .. 2·ty + 3 make tile row ty):
            // its row half.
            let (starts, masks, plane) = match src {
                Source::Padded(p) => {
                    let at = p.as_ptr().add(c * pd.hp * pd.rs + 2 * tx0);
                    let s = [0, LANES as isize, 2, LANES as isize + 2];
                    (s, padded_masks(n), at)
                }
                Source::Plain(x) => {
                    let (s, m) = plain_loads(g, tx0, n);
                    (s, m, x.as_ptr().add(c * g.h * g.w))
                }
            };
            let row = |y: usize| -> [__m512; 4] {
                let at = match src {
                    Source::Padded(_) => plane.add(y * pd.rs),
                    Source::Plain(_) => {
                        let iy = y as isize - g.pad.0 as isize;
                        if iy < 0 || iy >= g.h as isize {
                            return [_mm512_setzero_ps(); 4]; // a padding row: zeros
                        }
                        plane.wrapping_offset(iy * g.w as isize)
                    }
                };
                row_part(load_row(at, starts, masks))
            };
            let mask = lane_mask(n);
            let mut kept: Option<[[__m512; 4]; 2]> = None;
            for r in 0..rb {
                let ty = ty0 + r;
                let [h0, h1] = match kept {
                    Some(h) => h,
                    None => [row(2 * ty), row(2 * ty + 1)],
                };
                let (h2, h3) = (row(2 * ty + 2), row(2 * ty + 3));
                kept = Some([h2, h3]);
                let vals = combine([h0, h1, h2, h3]);
                let l0 = r * plan.pitch + tx0;
                for (xi, &val) in vals.iter().enumerate() {
                    // Lanes l0 .. l0 + n ≤ bandp of row (c, ξ).
                    _mm512_mask_storeu_ps(vp.add(c * plan.cs + xi * xv + l0), mask, val);
                }
            }
        }
    }
}
