//! Mixed precision for convolutions: bf16 products, f32 sums (AVX-512 BF16).
//!
//! Opt-in per convolution through its plan ([`super::ConvPlan`] with
//! [`Precision::Bf16`]; `Conv2d::set_precision`, `nn::set_precision` for a whole model),
//! as `torch.set_float32_matmul_precision` lets PyTorch use bf16 inside f32 products. Everything outside the products stays
//! f32: tensors, master weights, normalization, loss and optimizer. Inside a
//! convolution the operands are rounded to bf16 (8 significant bits, round to nearest
//! even) while they are gathered, and `vdpbf16ps` multiplies pairs of them and adds both
//! products into f32 lanes, twice the multiply-adds of an f32 FMA per instruction.
//!
//! `vdpbf16ps` sums pairs along the reduction, so operands come in pairs:
//! - forward, and the input gradient of a stride-1 layer (a convolution of `dy`): pairs
//!   of input channels. The gathered buffer of [`super::gathered`] is built with one
//!   `u32` per position holding channels `2c` (low half) and `2c + 1` (high half), and
//!   the weights likewise; the tile is the f32 one (8 output channels × 2 vectors of 16
//!   positions), each instruction now covering two channels.
//! - weight gradient: pairs of output positions. The lanes hold 16 output channels;
//!   `dy` is laid out per image as `[positions/2][channels][2]`, and the gathered input
//!   as plain bf16 rows, where two neighbouring positions are one 32-bit broadcast. A
//!   tile is 8 kernel taps × 16 or 32 output channels, summed over every position of
//!   every image of a chunk before it is stored.
//!
//! Layers the gathered kernel does not take (1×1, grouped) and the input gradient of
//! strided layers stay f32.

#[cfg(target_arch = "x86_64")]
use super::gathered::{for_each_tile, store_tile, with_taps, TileAt};
use super::gathered::{Gathered, SLACK};
use super::geom::ConvGeom;
use super::geom::COB;

/// How convolutions multiply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 products (the default).
    #[default]
    F32,
    /// bf16 products with f32 accumulation, where the CPU has AVX-512 BF16; f32
    /// elsewhere.
    Bf16,
}

impl Precision {
    /// Its name on the command line: `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(crate::Error::config(
                "precision",
                "precision",
                format!("`{s}` is not a precision: use f32 or bf16 (bf16 products, f32 sums)"),
            )),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether this CPU multiplies in bf16 (AVX-512F and AVX-512 BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a convolution with geometry `g` runs in bf16 at precision `p`: asked for,
/// available on this CPU, a layer the gathered kernel takes, and at least 8 input
/// channels (with 1 or 3, the half-empty channel pairs and the gathered copies cost
/// more than the products save: measured 0.7–0.8× of f32 on the 1→32 and 3→16 first
/// layers, `cargo bench --bench conv`).
pub fn active_for(g: &ConvGeom, p: Precision) -> bool {
    p == Precision::Bf16 && g.c_in >= 8 && super::gathered::applies(g) && available()
}

/// Whether the weight gradient of `g` runs in bf16 at precision `p`: as [`active_for`], and enough
/// kernel taps to fill the tiles of 8 (a one-channel 3×3 first layer has 9 taps, two
/// tiles of which the second would be 7/8 idle; its f32 kernel is faster).
pub fn weight_grad_active_for(g: &ConvGeom, p: Precision) -> bool {
    active_for(g, p) && g.kg().div_ceil(WT) * WT * 4 <= g.kg() * 5
}

/// Rounds to the nearest bf16 (ties to even), as its 16 bits; NaN stays NaN.
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of a bf16.
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to bf16 and back: what the products see.
pub fn round(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | ((to_bf16(hi) as u32) << 16)
}

/// `g` seen with channel pairs as channels: the geometry of the paired buffer.
pub fn paired_geom(g: &ConvGeom) -> ConvGeom {
    ConvGeom {
        c_in: g.c_in.div_ceil(2),
        ..*g
    }
}

/// Elements (u32) of one image converted to channel pairs: `[c_in/2][h·w]`.
pub fn pairs_len(g: &ConvGeom) -> usize {
    g.c_in.div_ceil(2) * g.h * g.w
}

/// Converts one image `x[c_in, h·w]` to channel pairs `out[c_in/2][h·w]` (channel `2c`
/// in the low half, `2c + 1` in the high half, zero past the last channel), ready for
/// [`super::gathered::gather_image`] with [`paired_geom`].
pub fn to_pairs(g: &ConvGeom, x: &[f32], out: &mut [u32]) {
    let hw = g.h * g.w;
    assert!(x.len() >= g.c_in * hw && out.len() >= pairs_len(g));
    for (p, dst) in out[..pairs_len(g)].chunks_exact_mut(hw).enumerate() {
        let lo = &x[2 * p * hw..(2 * p + 1) * hw];
        let hi = (2 * p + 1 < g.c_in).then(|| &x[(2 * p + 1) * hw..(2 * p + 2) * hw]);
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: AVX-512F and BF16 are present; lengths are those of the slices.
            unsafe { pairs_avx512(lo, hi, dst) };
            continue;
        }
        for (i, d) in dst.iter_mut().enumerate() {
            *d = pair(lo[i], hi.map_or(0.0, |h| h[i]));
        }
    }
}

/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16. `lo`, and `hi` when given, must
/// hold at least `dst.len()` values: the vector loop reads them unchecked, 16 at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pairs_avx512(lo: &[f32], hi: Option<&[f32]>, dst: &mut [u32]) {
    use std::arch::x86_64::*;
    let n = dst.len();
    let body = n / LANES * LANES;
    for i in (0..body).step_by(LANES) {
        let a: __m256i =
            std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(lo.as_ptr().add(i))));
        let mut v = _mm512_cvtepu16_epi32(a);
        if let Some(h) = hi {
            let b: __m256i =
                std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(h.as_ptr().add(i))));
            v = _mm512_or_si512(v, _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(b)));
        }
        _mm512_storeu_si512(dst.as_mut_ptr().add(i) as *mut _, v);
    }
    for i in body..n {
        dst[i] = pair(lo[i], hi.map_or(0.0, |h| h[i]));
    }
}

/// Whether this CPU converts and gathers in one pass ([`gather_pairs`],
/// [`gather_plain`]): [`available`], and AVX-512 BW and VL (every CPU with AVX-512 BF16
/// has them).
fn fused_gather() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available()
            && super::gathered::converted_available()
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One image `x[c_in, h, w]` converted to channel pairs and gathered into `q` for
/// [`image`]: [`to_pairs`] then [`super::gathered::gather_image`] with [`paired_geom`],
/// the same bits, in one pass where the CPU allows. `tmp` is scratch (a converted
/// plane, or the converted image).
pub fn gather_pairs(g: &ConvGeom, gd: Gathered, x: &[f32], tmp: &mut Vec<u32>, q: &mut [u32]) {
    let gp = paired_geom(g);
    assert!(q.len() >= gd.len(&gp) - SLACK && x.len() >= g.c_in * g.h * g.w);
    #[cfg(target_arch = "x86_64")]
    if fused_gather() {
        // SAFETY: AVX-512 F, BW, VL and BF16 are present; lengths checked above.
        unsafe { gather_pairs_avx512(g, gd, x, tmp, q) };
        return;
    }
    if tmp.len() < pairs_len(g) {
        tmp.resize(pairs_len(g), 0);
    }
    to_pairs(g, x, tmp);
    super::gathered::gather_image(&gp, gd, tmp, q);
}

/// One image `x[c_in, h, w]` converted to bf16 and gathered into `q` for
/// [`weight_grad`]: [`to_plain`] then [`super::gathered::gather_image`], the same bits,
/// in one pass where the CPU allows. `tmp` is scratch (a converted plane, or the
/// converted image).
pub fn gather_plain(g: &ConvGeom, gd: Gathered, x: &[f32], tmp: &mut Vec<u32>, q: &mut [u16]) {
    let n = g.c_in * g.h * g.w;
    assert!(q.len() >= gd.len(g) - SLACK && x.len() >= n);
    #[cfg(target_arch = "x86_64")]
    if fused_gather() {
        // SAFETY: AVX-512 F, BW, VL and BF16 are present; lengths checked above.
        unsafe { gather_plain_avx512(g, gd, x, tmp, q) };
        return;
    }
    if tmp.len() < n.div_ceil(2) {
        tmp.resize(n.div_ceil(2), 0);
    }
    // SAFETY: any u32 buffer is a valid, suitably aligned u16 buffer twice as long.
    let (_, half, _) = unsafe { tmp.align_to_mut::<u16>() };
    to_plain(&x[..n], &mut half[..n]);
    super::gathered::gather_image(g, gd, &half[..n], q);
}

/// # Safety
/// The CPU must support AVX-512F, BW, VL and BF16. `g` must come from `ConvGeom::new`
/// and `gd` be `Gathered::of(g)`; `x` must hold at least `g.c_in * g.h * g.w` values
/// and `q` at least `gd.len(&paired_geom(g)) - SLACK` (both asserted by `gather_pairs`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn gather_pairs_avx512(
    g: &ConvGeom,
    gd: Gathered,
    x: &[f32],
    tmp: &mut Vec<u32>,
    q: &mut [u32],
) {
    use super::gathered::{gather_converted, FORM_PAIRS};
    gather_converted::<FORM_PAIRS, u32>(g, gd, x, tmp, q);
}

/// # Safety
/// The CPU must support AVX-512F, BW, VL and BF16. `g` must come from `ConvGeom::new`
/// and `gd` be `Gathered::of(g)`; `x` must hold at least `g.c_in * g.h * g.w` values
/// and `q` at least `gd.len(g) - SLACK` (both asserted by `gather_plain`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn gather_plain_avx512(
    g: &ConvGeom,
    gd: Gathered,
    x: &[f32],
    tmp: &mut Vec<u32>,
    q: &mut [u16],
) {
    use super::gathered::{gather_converted, FORM_PLAIN};
    gather_converted::<FORM_PLAIN, u16>(g, gd, x, tmp, q);
}

/// Converts `x` to bf16 into `out` (same length).
pub fn to_plain(x: &[f32], out: &mut [u16]) {
    assert!(out.len() >= x.len());
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512F and BF16 are present; `out` is at least as long as `x`.
        unsafe { plain_avx512(x, out) };
        return;
    }
    for (d, &v) in out.iter_mut().zip(x) {
        *d = to_bf16(v);
    }
}

/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16, and `out` must hold at least
/// `x.len()` values: the vector loop stores into it unchecked, 16 at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn plain_avx512(x: &[f32], out: &mut [u16]) {
    use std::arch::x86_64::*;
    let body = x.len() / LANES * LANES;
    for i in (0..body).step_by(LANES) {
        let v: __m256i =
            std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(x.as_ptr().add(i))));
        _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, v);
    }
    for i in body..x.len() {
        out[i] = to_bf16(x[i]);
    }
}

/// Packs `w[c_out, c_in, kh, kw]` as `[c_out/8 blocks][c_in/2][kh·kw][8]` channel pairs.
pub fn pack_weights(g: &ConvGeom, w: &[f32], out: &mut Vec<u32>) {
    let kk = g.kh * g.kw;
    let cp = g.c_in.div_ceil(2);
    let blocks = g.c_out.div_ceil(COB);
    out.clear();
    out.resize(blocks * cp * kk * COB, 0);
    for co in 0..g.c_out {
        let (b, j) = (co / COB, co % COB);
        for p in 0..cp {
            for t in 0..kk {
                let at = |ci: usize| {
                    if ci < g.c_in {
                        w[(co * g.c_in + ci) * kk + t]
                    } else {
                        0.0
                    }
                };
                out[((b * cp + p) * kk + t) * COB + j] = pair(at(2 * p), at(2 * p + 1));
            }
        }
    }
}

/// One image: `y[c_out, oh·ow] = conv(x, w) + bias` from the paired buffer `q`
/// ([`to_pairs`], then [`super::gathered::gather_image`] with [`paired_geom`]) and paired weights `wp` ([`pack_weights`]). Needs [`available`].
pub fn image(
    g: &ConvGeom,
    gd: Gathered,
    q: &[u32],
    wp: &[u32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let gp = paired_geom(g);
    assert!(q.len() >= gd.len(&gp) && y.len() >= g.c_out * g.ohw());
    assert!(wp.len() >= g.c_out.div_ceil(COB) * gp.kg() * COB);
    assert!(
        available(),
        "bf16 convolution on a CPU without AVX-512 BF16"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F and BF16 are present (asserted above); loads stay inside `q` as
    // in the f32 gathered kernel (same geometry, one u32 per f32), stores are masked to
    // the output plane.
    unsafe {
        image_avx512(&gp, gd, q, wp, bias, y)
    };
}

/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16. `gp` must be the paired geometry
/// (`paired_geom`) and `gd` be `Gathered::of(gp)`; `q` must hold at least `gd.len(gp)`
/// values (slack included: the last tile's idle lanes read into it) and `y` at least
/// `gp.c_out * gp.ohw()`. `wp` is sliced with bounds checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn image_avx512(
    gp: &ConvGeom,
    gd: Gathered,
    q: &[u32],
    wp: &[u32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    with_taps(gp, gd, |taps| {
        for_each_tile(gp, wp, |wb, at, nv| {
            if nv == 2 {
                tile::<2>(q, taps, wb, at, bias, y);
            } else {
                tile::<1>(q, taps, wb, at, bias, y);
            }
        })
    });
}

const LANES: usize = 16;

/// The f32 gathered tile with channel pairs: one `vdpbf16ps` per weight and vector.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16. With `at = ((p, ohw), (co0, cob))`:
/// `q` must hold at least `p + off + 16 * NV` values for every `off` in `taps`, `wb` at
/// least `taps.len() * COB`, and `y` at least `(co0 + cob) * ohw` (see `store_tile`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
// Indexed on both axes of `acc` in the inner loop; plain indices keep it in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn tile<const NV: usize>(
    q: &[u32],
    taps: &[usize],
    wb: &[u32],
    at: TileAt,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (qp, wbp) = (q.as_ptr().add(at.0 .0), wb.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); COB]; NV];
    for (t, &off) in taps.iter().enumerate() {
        let mut x = [_mm512_setzero_si512(); NV];
        for (v, xv) in x.iter_mut().enumerate() {
            *xv = _mm512_loadu_si512(qp.add(off + v * LANES) as *const _);
        }
        let wt = wbp.add(t * COB);
        for j in 0..COB {
            let wv: __m512bh = std::mem::transmute(_mm512_set1_epi32(*wt.add(j) as i32));
            for v in 0..NV {
                let xv: __m512bh = std::mem::transmute(x[v]);
                acc[v][j] = _mm512_dpbf16_ps(acc[v][j], xv, wv);
            }
        }
    }
    store_tile(&acc, at.0, at.1, bias, y);
}

/// Positions of one image's plane in the weight-gradient buffers: `oh·ow` rounded up
/// to an even count.
fn even_ohw(g: &ConvGeom) -> usize {
    g.ohw().div_ceil(2) * 2
}

/// Output channels rounded up to whole vectors (the column count of the transposed
/// accumulators that [`add_transposed`] reads, also the gathered f32 weight gradient's).
pub(super) fn co_lanes(g: &ConvGeom) -> usize {
    g.c_out.div_ceil(LANES) * LANES
}

/// Elements (u16) of the plain bf16 gathered buffer for the weight gradient.
pub fn wgrad_input_len(g: &ConvGeom, gd: Gathered) -> usize {
    gd.len(g) + 2
}

/// Elements (u32) of the paired `dy` buffer for the weight gradient.
pub fn wgrad_dy_len(g: &ConvGeom) -> usize {
    even_ohw(g) / 2 * co_lanes(g)
}

/// Elements (f32) of the transposed weight-gradient accumulator `[c_in·kh·kw][c_out
/// rounded up to 16]`.
pub fn wgrad_acc_len(g: &ConvGeom) -> usize {
    g.kg() * co_lanes(g)
}

/// Lays one image's `dy[c_out, oh·ow]` out as `[positions/2][c_out rounded to 16]`
/// pairs of neighbouring positions (zeros past the plane and the channels). `tmp` holds
/// `dy` converted to bf16 on the way.
pub fn pair_dy(g: &ConvGeom, dy: &[f32], tmp: &mut Vec<u32>, out: &mut [u32]) {
    assert!(out.len() >= wgrad_dy_len(g) && dy.len() >= g.c_out * g.ohw());
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512F and BF16 are present; lengths checked above.
        unsafe { pair_dy_avx512(g, dy, out) };
        return;
    }
    pair_dy_scalar(g, dy, tmp, out);
}

/// [`pair_dy`] without SIMD: `dy` converted row by row into `tmp`, then transposed.
fn pair_dy_scalar(g: &ConvGeom, dy: &[f32], tmp: &mut Vec<u32>, out: &mut [u32]) {
    let (ohw, col) = (g.ohw(), co_lanes(g));
    let pairs = even_ohw(g) / 2;
    // dy in bf16, rows of `pairs` u32 (a zero after an odd row).
    if tmp.len() < g.c_out * pairs {
        tmp.resize(g.c_out * pairs, 0);
    }
    // SAFETY: any u32 buffer is a valid, suitably aligned u16 buffer twice as long.
    let (_, half, _) = unsafe { tmp[..g.c_out * pairs].align_to_mut::<u16>() };
    for (co, row) in half.chunks_exact_mut(2 * pairs).enumerate() {
        for (d, &v) in row.iter_mut().zip(&dy[co * ohw..(co + 1) * ohw]) {
            *d = to_bf16(v);
        }
        row[ohw..].fill(0);
    }
    out[..wgrad_dy_len(g)].fill(0);
    for (co, row) in tmp[..g.c_out * pairs].chunks_exact(pairs).enumerate() {
        for (pp, &v) in row.iter().enumerate() {
            out[pp * col + co] = v;
        }
    }
}

/// [`pair_dy`] in one pass: for 16 channels and 16 position pairs at a time, each
/// channel's 32 positions are converted into one vector of 16 pairs
/// (`vcvtne2ps2bf16`), and the 16 × 16 block of pairs is transposed in registers
/// (32-bit and 64-bit interleaves, then two rounds of 128-bit lane shuffles).
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16. `dy` must hold at least
/// `g.c_out * g.ohw()` values (its loads are masked to the plane) and `out` at least
/// `wgrad_dy_len(g)`; `pair_dy` asserts both.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pair_dy_avx512(g: &ConvGeom, dy: &[f32], out: &mut [u32]) {
    use std::arch::x86_64::*;
    let (ohw, col) = (g.ohw(), co_lanes(g));
    let pairs = even_ohw(g) / 2;
    let mask = |n: usize| ((1u32 << n) - 1) as __mmask16;
    let (dp, op) = (dy.as_ptr(), out.as_mut_ptr());
    for c0 in (0..col).step_by(LANES) {
        let mut pp0 = 0;
        while pp0 < pairs {
            // Positions 2·pp0 .. 2·pp0 + 32 of channels c0 .. c0 + 16, as pairs.
            let avail = ohw - 2 * pp0;
            let (n_lo, n_hi) = (avail.min(LANES), avail.saturating_sub(LANES).min(LANES));
            let mut r = [_mm512_setzero_si512(); LANES];
            for (j, rj) in r.iter_mut().enumerate() {
                let co = c0 + j;
                if co >= g.c_out {
                    break;
                }
                let base = dp.add(co * ohw + 2 * pp0);
                let lo = _mm512_maskz_loadu_ps(mask(n_lo), base);
                let hi = _mm512_maskz_loadu_ps(mask(n_hi), base.add(LANES));
                *rj = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            }
            // r[a][b] (channel a, pair b) → r[b][a].
            crate::kernels::simd::transpose_16x16(&mut r);
            for (k, &row) in r.iter().enumerate().take((pairs - pp0).min(LANES)) {
                _mm512_storeu_si512(op.add((pp0 + k) * col + c0) as *mut _, row);
            }
            pp0 += LANES;
        }
    }
}

/// Adds one image's weight gradient into `acc[c_in·kh·kw][c_out rounded to 16]`
/// (transposed), from the plain bf16 image ([`to_plain`]) gathered into `q` (with a zeroed slack,
/// so the pair read past the last position is finite) and [`pair_dy`]'s `d`.
pub fn weight_grad(g: &ConvGeom, gd: Gathered, q: &[u16], d: &[u32], acc: &mut [f32]) {
    assert!(q.len() >= wgrad_input_len(g, gd) && d.len() >= wgrad_dy_len(g));
    assert!(acc.len() >= wgrad_acc_len(g));
    assert!(
        available(),
        "bf16 convolution on a CPU without AVX-512 BF16"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F and BF16 are present (asserted above). A broadcast reads the two
    // u16 at `tap + 2·pp` with 2·pp < even_ohw ≤ ohw + 1: at most one past the tap's
    // plane, inside the block or the +2 slack of `wgrad_input_len`; `d` and `acc`
    // reads/writes stay within the asserted lengths (whole vectors of 16 channels).
    unsafe {
        weight_grad_avx512(g, gd, q, d, acc)
    };
}

/// Taps per weight-gradient tile.
const WT: usize = 8;

/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16. `gd` must be `Gathered::of(g)`, and
/// `q`, `d` and `acc` must hold at least `wgrad_input_len(g, gd)`, `wgrad_dy_len(g)` and
/// `wgrad_acc_len(g)` values (asserted by `weight_grad`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn weight_grad_avx512(g: &ConvGeom, gd: Gathered, q: &[u16], d: &[u32], acc: &mut [f32]) {
    with_taps(g, gd, |taps| weight_grad_taps(g, taps, q, d, acc));
}

/// [`weight_grad_avx512`] with the tap offsets given.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16. `q` must hold at least
/// `off + even_ohw(g)` values for every `off` in `taps`, `d` at least
/// `wgrad_dy_len(g)`, and `acc` at least `taps.len() * co_lanes(g)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn weight_grad_taps(g: &ConvGeom, taps: &[usize], q: &[u16], d: &[u32], acc: &mut [f32]) {
    let col = co_lanes(g);
    let pairs = even_ohw(g) / 2;
    let mut t0 = 0;
    while t0 < taps.len() {
        let nt = (taps.len() - t0).min(WT);
        // Missing taps of the last tile repeat its first one; their sums are dropped.
        let mut offs = [taps[t0]; WT];
        offs[..nt].copy_from_slice(&taps[t0..t0 + nt]);
        let mut c0 = 0;
        while c0 < col {
            if col - c0 >= 2 * LANES {
                wtile::<2>(q, &offs, nt, d, pairs, col, c0, t0, acc);
                c0 += 2 * LANES;
            } else {
                wtile::<1>(q, &offs, nt, d, pairs, col, c0, t0, acc);
                c0 += LANES;
            }
        }
        t0 += nt;
    }
}

/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16, and `c0 + 16 * NV <= col`. `q` must
/// hold at least `offs[t] + 2 * pairs` values for every `t` (two are read as one `u32`),
/// `d` at least `pairs * col`, and `acc` at least `(t0 + nt) * col`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn wtile<const NV: usize>(
    q: &[u16],
    offs: &[usize; WT],
    nt: usize,
    d: &[u32],
    pairs: usize,
    col: usize,
    c0: usize,
    t0: usize,
    acc: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (qp, dp) = (q.as_ptr(), d.as_ptr().add(c0));
    let mut s = [[_mm512_setzero_ps(); NV]; WT];
    for pp in 0..pairs {
        let mut dv = [_mm512_setzero_si512(); NV];
        for (v, x) in dv.iter_mut().enumerate() {
            *x = _mm512_loadu_si512(dp.add(pp * col + v * LANES) as *const _);
        }
        for t in 0..WT {
            let two = (qp.add(offs[t] + 2 * pp) as *const u32).read_unaligned();
            let qv: __m512bh = std::mem::transmute(_mm512_set1_epi32(two as i32));
            for v in 0..NV {
                let x: __m512bh = std::mem::transmute(dv[v]);
                s[t][v] = _mm512_dpbf16_ps(s[t][v], x, qv);
            }
        }
    }
    for (t, s_t) in s.iter().enumerate().take(nt) {
        for (v, &sv) in s_t.iter().enumerate() {
            let dst = acc.as_mut_ptr().add((t0 + t) * col + c0 + v * LANES);
            _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), sv));
        }
    }
}

/// Adds the transposed accumulator `acc[c_in·kh·kw][c_out rounded to 16]` into
/// `dw[c_out, c_in·kh·kw]`, sixteen output channels at a time so that both sides are
/// read in runs (one channel at a time read `acc` a cache line per element).
pub fn add_transposed(g: &ConvGeom, acc: &[f32], dw: &mut [f32]) {
    let (kg, col) = (g.kg(), co_lanes(g));
    for co0 in (0..g.c_out).step_by(LANES) {
        let n = (g.c_out - co0).min(LANES);
        for t in 0..kg {
            let row = &acc[t * col + co0..t * col + co0 + n];
            for (j, &v) in row.iter().enumerate() {
                dw[(co0 + j) * kg + t] += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        assert_eq!(to_bf16(-2.0), 0xC000);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even 1.
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3F80);
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even).
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3F82);
        // Just above a tie rounds up.
        assert_eq!(to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(from_bf16(to_bf16(0.15625)), 0.15625);
        assert_eq!(to_bf16(f32::INFINITY), 0x7F80);
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert!((round(std::f32::consts::PI) - std::f32::consts::PI).abs() < 0.01);
    }

    /// The one-pass gathers write the bits of the two-step ones (convert, then
    /// [`gather_image`]) on strides, dilations, paddings wider than the kernel, odd
    /// channel counts and rows that are not whole vectors; the slack stays untouched.
    #[test]
    fn one_pass_gathers_equal_two_steps() {
        use super::super::gathered::{gather_f32, gather_image};
        let cases = [
            // c_in, h, w, k, stride, pad, dilation
            (3, 9, 9, (3, 3), (1, 1), (1, 1), (1, 1)),
            (5, 16, 16, (3, 3), (2, 2), (1, 1), (1, 1)),
            (4, 20, 33, (3, 5), (1, 3), (2, 1), (1, 1)),
            (2, 7, 40, (3, 3), (1, 1), (4, 5), (1, 1)),
            (7, 12, 18, (3, 3), (1, 2), (2, 2), (2, 3)),
            (1, 8, 8, (2, 2), (1, 1), (0, 0), (1, 1)),
        ];
        let mut seed = 0x2545_F491_u32;
        for (c_in, h, w, k, stride, pad, dil) in cases {
            let g = ConvGeom::new(c_in, h, w, 4, k, stride, pad, dil, 1).unwrap();
            let x: Vec<f32> = (0..c_in * h * w)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed as f32 / u32::MAX as f32 - 0.5) * 7.0
                })
                .collect();
            let gd = Gathered::of(&g);
            let gp = paired_geom(&g);
            // Sentinels mark the slack, which neither gather may touch.
            let mut want_f = vec![-9.0f32; gd.len(&g)];
            gather_image(&g, gd, &x, &mut want_f);
            let mut got_f = vec![-9.0f32; gd.len(&g)];
            gather_f32(&g, gd, &x, &mut Vec::new(), &mut got_f);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got_f), bits(&want_f), "f32 gather, {g:?}");

            let mut tmp = vec![0u32; pairs_len(&g)];
            to_pairs(&g, &x, &mut tmp);
            let mut want_p = vec![7u32; gd.len(&gp)];
            gather_image(&gp, gd, &tmp, &mut want_p);
            let mut got_p = vec![7u32; gd.len(&gp)];
            gather_pairs(&g, gd, &x, &mut Vec::new(), &mut got_p);
            assert_eq!(got_p, want_p, "pairs gather, {g:?}");

            let mut plain = vec![0u16; x.len()];
            to_plain(&x, &mut plain);
            let mut want_h = vec![7u16; gd.len(&g)];
            gather_image(&g, gd, &plain, &mut want_h);
            let mut got_h = vec![7u16; gd.len(&g)];
            gather_plain(&g, gd, &x, &mut Vec::new(), &mut got_h);
            assert_eq!(got_h, want_h, "plain gather, {g:?}");
        }
    }

    /// The one-pass pairing of `dy` (convert, transpose in registers) writes the bits of
    /// the row-by-row one: channel counts below, at and across 16, odd planes, planes
    /// shorter and longer than a block of 32 positions.
    #[test]
    fn pairing_dy_in_registers_equals_the_plain_transpose() {
        if !available() {
            return; // the plain path is the only one on this CPU
        }
        let mut seed = 0x9E37_79B9u32;
        for (c_out, oh, ow) in [(5, 3, 3), (16, 8, 8), (20, 7, 7), (33, 5, 13), (64, 16, 16)] {
            let g = ConvGeom::new(4, oh, ow, c_out, (1, 1), (1, 1), (0, 0), (1, 1), 1).unwrap();
            let dy: Vec<f32> = (0..c_out * g.ohw())
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed as f32 / u32::MAX as f32 - 0.5) * 3.0
                })
                .collect();
            let mut want = vec![7u32; wgrad_dy_len(&g)];
            pair_dy_scalar(&g, &dy, &mut Vec::new(), &mut want);
            let mut got = vec![7u32; wgrad_dy_len(&g)];
            // SAFETY: AVX-512F and BF16 are present (checked above); lengths as asserted
            // by `pair_dy`.
            unsafe { pair_dy_avx512(&g, &dy, &mut got) };
            assert_eq!(got, want, "c_out {c_out}, {oh}x{ow}");
        }
    }
}
