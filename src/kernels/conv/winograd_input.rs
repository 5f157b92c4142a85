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
use super::winograd_plan::{chunks, LANES};
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
    use std::arch::x86_64::*;
    // The n tiles need columns 0 .. 2n + 1 of the 4 rows from `base`; the loads are
    // masked to them.
    let (ma, mb) = (
        lane_mask(2 * n + 2),
        lane_mask((2 * n + 2).saturating_sub(LANES)),
    );
    let (ma2, mb2) = (lane_mask(2 * n), lane_mask((2 * n).saturating_sub(LANES)));
    let mut rows = [[_mm512_setzero_ps(); 4]; 4];
    for (r, loads) in rows.iter_mut().enumerate() {
        let row = base.add(r * rs);
        *loads = [
            _mm512_maskz_loadu_ps(ma, row),
            _mm512_maskz_loadu_ps(mb, row.wrapping_add(LANES)),
            _mm512_maskz_loadu_ps(ma2, row.add(2)),
            _mm512_maskz_loadu_ps(mb2, row.wrapping_add(LANES + 2)),
        ];
    }
    transform(rows)
}

/// [`input_chunk`] from the unpadded plane `plane[h, w]` of `g`: the chunk of tile row
/// `ty` whose first tile is `tx0`, `n ≤ 16` tiles.
///
/// # Safety
/// The CPU must support AVX-512F, `n ≤ 16`, and `plane` must be valid for reads of
/// `g.h · g.w` floats. Each load is masked to the columns inside the row (`0 ≤ col <
/// w`) of rows inside the plane; its address is formed with `wrapping_offset`, so the
/// masked-off lanes left or right of the plane are no access at all.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn input_chunk_plain(
    plane: *const f32,
    g: &ConvGeom,
    ty: usize,
    tx0: usize,
    n: usize,
) -> [std::arch::x86_64::__m512; XI] {
    use std::arch::x86_64::*;
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
    let mut rows = [[_mm512_setzero_ps(); 4]; 4];
    for (r, loads) in rows.iter_mut().enumerate() {
        let iy = (2 * ty + r) as isize - g.pad.0 as isize;
        if iy < 0 || iy >= g.h as isize {
            continue; // a padding row: zeros
        }
        let row = plane.wrapping_offset(iy * w);
        for ((l, &m), &start) in loads.iter_mut().zip(&masks).zip(&starts) {
            *l = _mm512_maskz_loadu_ps(m, row.wrapping_offset(start));
        }
    }
    transform(rows)
}

/// The transform of one chunk from its rows' four loads each: `[columns 0..16, 16..32,
/// 2..18, 18..34]` of the padded row from the chunk's first column.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn transform(rows: [[std::arch::x86_64::__m512; 4]; 4]) -> [std::arch::x86_64::__m512; XI] {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mut u = [[_mm512_setzero_ps(); 4]; 4];
    for (ur, &[a, b, a2, b2]) in u.iter_mut().zip(&rows) {
        let d0 = _mm512_permutex2var_ps(a, even, b);
        let d1 = _mm512_permutex2var_ps(a, odd, b);
        let d2 = _mm512_permutex2var_ps(a2, even, b2);
        let d3 = _mm512_permutex2var_ps(a2, odd, b2);
        *ur = [
            _mm512_sub_ps(d0, d2),
            _mm512_add_ps(d1, d2),
            _mm512_sub_ps(d2, d1),
            _mm512_sub_ps(d1, d3),
        ];
    }
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
/// the padded image or the image itself.
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
        for (ty, tx0, n, l0) in chunks(plan, ty0, rb) {
            let vals = match src {
                Source::Padded(p) => {
                    let base = p.as_ptr().add((c * pd.hp + 2 * ty) * pd.rs + 2 * tx0);
                    input_chunk(base, pd.rs, n)
                }
                Source::Plain(x) => input_chunk_plain(x.as_ptr().add(c * g.h * g.w), g, ty, tx0, n),
            };
            let mask = lane_mask(n);
            for (xi, &val) in vals.iter().enumerate() {
                // Lanes l0 .. l0 + n ≤ bandp of row (c, ξ).
                _mm512_mask_storeu_ps(vp.add(c * plan.cs + xi * xv + l0), mask, val);
            }
        }
    }
}
