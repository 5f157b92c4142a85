//! Winograd F(2×2, 3×3) for stride-1 3×3 convolutions on AVX-512.
//!
//! Each 2×2 block of output ("tile") is computed from the 4×4 block of padded input
//! under it with 16 multiplications per input channel instead of 36 (Lavin & Gray,
//! 2015):
//!
//! ```text
//! Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
//!
//! Bᵀ = | 1  0 -1  0 |     G = | 1    0    0  |     Aᵀ = | 1  1  1  0 |
//!      | 0  1  1  0 |         | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//!      | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//!      | 0  1  0 -1 |         | 0    0    1  |
//! ```
//!
//! The sum over input channels at each of the 16 positions `ξ` of the transformed tile
//! is a product `M_ξ[c_out, tiles] = U_ξ[c_out, c_in] · V_ξ[c_in, tiles]`, so a layer
//! becomes 16 products of 2.25× fewer multiply-adds than the direct convolution, plus
//! the transforms (a few additions per input and per output value).
//!
//! Per image, the tile rows are cut into bands so that a band's `V` and `M` stay in the
//! core's L2 cache; each tile row has its own aligned piece of lanes (its width rounded
//! up to a power of two below 16, to whole vectors above). For each band: the input
//! transform (up to 16 tiles of one tile row in the lanes: even and odd columns of the
//! input rows separated with `vpermt2ps`, read from a padded copy or, for images up to
//! 128 KiB, from the image itself: [`Source`], `winograd_input.rs`), the 16 products in register tiles of 8
//! output channels × 48 tiles (24 accumulators; the weights broadcast; f32, or bf16
//! channel pairs with `vdpbf16ps` in [`super::winograd_bf16::image_bf16`]), and the output transform (even and
//! odd output columns interleaved back with `vpermt2ps`), which also applies the
//! [`Epilogue`]: bias, ReLU, and a following 2×2 max pool (a tile is one window).
//! Weights are transformed and packed once per call as `U[ξ][c_out/8][c_in][8]`, zero
//! beyond `c_out`.
//!
//! The weight gradient ([`weight_grad_image`]) runs the other way round — the sum is
//! over tiles — on channels-last copies of the image and `dy` (see the section below).
//!
//! F(2×2, 3×3) is the numerically mild member of the family (the transforms hold only
//! 0, ±1 and ±1/2); results differ from the direct sum by a few units in the last place.
//! Compared with the direct definition on awkward shapes in the tests.

#[cfg(target_arch = "x86_64")]
pub(crate) use super::geom::lane_mask;
use super::geom::ConvGeom;
#[cfg(target_arch = "x86_64")]
use super::winograd_input::input_avx512;
pub use super::winograd_input::Source;
pub(super) use super::winograd_plan::chunks;
pub use super::winograd_plan::Plan;
use super::winograd_plan::U_CACHED_BYTES;
pub(crate) use super::winograd_plan::{BAND_FLOATS, KB, LANES, NT};
pub(crate) use super::winograd_tile::XI;
use super::winograd_tile::{input_tile, output_tile, pack_filters, FilterAt};

/// Whether the Winograd kernel computes this convolution on this CPU: 3×3, stride 1, no
/// dilation, one group, enough channels on both sides that the products outweigh the
/// transforms, and at least 16 tiles (a 7×7 output) to fill a vector — on 4×4 and
/// smaller maps the lanes would be three quarters empty (VGG's deep layers at 32×32
/// inputs ran 14% slower on it). On a map of fewer than 48 tiles (three vectors) the
/// transformed weights must also fit a core's L2 cache (at most 1 MiB): each image
/// streams all of `U` for its few tiles, and on ResNet-18's 7×7 maps of 512 channels
/// (16 MiB of `U`, 16 tiles) that ran at 52 GFLOP/s against 128 for im2col + GEMM.
pub fn applies(g: &ConvGeom) -> bool {
    let tiles = g.oh.div_ceil(2) * g.ow.div_ceil(2);
    takes_shape(g) && (tiles >= NT * LANES || XI * g.c_in * g.c_out * 4 <= U_CACHED_BYTES)
}

/// 3×3, stride 1, no dilation, one group, 16 channels or more each way, at least 16
/// tiles, AVX-512.
fn takes_shape(g: &ConvGeom) -> bool {
    let tiles = g.oh.div_ceil(2) * g.ow.div_ceil(2);
    g.kh == 3
        && g.kw == 3
        && g.stride == (1, 1)
        && g.dilation == (1, 1)
        && g.groups == 1
        && g.c_in >= 16
        && g.c_out >= 16
        && tiles >= LANES
        && crate::kernels::conv::has_avx512()
}

/// Images up to this many bytes are read in place by the input transform
/// ([`Source::Plain`], no padded copy); larger ones are copied into the padded buffer
/// first. Read in place, resnet20's 32×32 × 16 image (64 KiB) ran forward and input
/// gradient 10–13% faster, resnet18's 56×56 × 64 (784 KiB) 11% slower: a band reads short
/// rows of 64 planes straight from L3, where the copy streams the image once.
const IN_PLACE_BYTES: usize = 128 << 10;

/// Whether the input transform reads the images of `g` in place ([`IN_PLACE_BYTES`]).
pub fn reads_in_place(g: &ConvGeom) -> bool {
    g.c_in * g.h * g.w * 4 <= IN_PLACE_BYTES
}

/// Whether the forward takes this convolution: what [`applies`] takes, and also the
/// small maps whose transformed weights exceed L2, which the forward computes several
/// images per band ([`Plan::batch_for`], [`images`]) — ResNet-18's 7×7 maps of 512
/// channels: 12–14 ms against 16–18 for im2col + GEMM at batch 16 (the forward's
/// dispatch falls back to the static rule's kernel with fewer than [`MIN_BATCHED`]
/// images per thread).
pub fn forward_applies(g: &ConvGeom) -> bool {
    takes_shape(g)
}

/// Images per thread below which a layer only [`forward_applies`] takes (not
/// [`applies`]) leaves the Winograd forward: each band would stream all of the
/// transformed weights (16 MiB for 512 channels) for a few tiles.
pub const MIN_BATCHED: usize = 4;

/// Transforms `w[c_out, c_in, 3, 3]` to `U = G w Gᵀ` and packs it as
/// `[ξ][c_out/8][c_in][8]` into `out`.
pub fn pack_weights(g: &ConvGeom, w: &[f32], out: &mut Vec<f32>) {
    pack_filters(g, Plan::of(g).kp, w, FilterAt::plain(g), out);
}

/// [`pack_weights`] for the input gradient of a stride-1 layer, `gt` its geometry as a
/// convolution of `dy`: from the layer's own weights `w[gt.c_in, gt.c_out, 3, 3]`, each
/// filter turned by 180° and the channels swapped as they are read.
pub fn pack_input_grad_weights(gt: &ConvGeom, w: &[f32], out: &mut Vec<f32>) {
    pack_filters(gt, Plan::of(gt).kp, w, FilterAt::flipped(gt), out);
}

/// What the output transform applies before storing: a per-channel bias, then a ReLU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// Added to every output of a channel.
    pub bias: Option<&'a [f32]>,
    /// `max(0, ·)` after the bias (NaN stays NaN).
    pub relu: bool,
    /// A 2×2 max pool with stride 2 (floor mode; NaN wins) after that, which is one
    /// tile's maximum: `y` is then `[c_out, oh/2, ow/2]`.
    pub pool: bool,
}

impl Epilogue<'_> {
    /// Elements of one image's output for `g`.
    pub fn out_len(&self, g: &ConvGeom) -> usize {
        if self.pool {
            g.c_out * (g.oh / 2) * (g.ow / 2)
        } else {
            g.c_out * g.oh * g.ow
        }
    }
}

/// One image: `y[c_out, oh, ow] = conv(x, w) + bias` (and a ReLU, as `ep` says), from the
/// image `src` (itself, or its padded copy: [`Source`]) and the packed weights `u`;
/// `work` holds [`Plan::work_len`] floats.
#[allow(clippy::too_many_arguments)]
pub fn image(
    g: &ConvGeom,
    plan: &Plan,
    src: Source,
    u: &[f32],
    ep: Epilogue,
    y: &mut [f32],
    work: &mut [f32],
) {
    assert!(src.fits(g, plan) && u.len() >= plan.packed_len(g));
    assert!(y.len() >= ep.out_len(g) && work.len() >= plan.work_len(g));
    if let Some(b) = ep.bias {
        assert!(b.len() >= g.c_out);
    }
    // Whole vectors of V and M on cache-line boundaries: the products load them.
    let skip = work.as_ptr().align_offset(64).min(LANES);
    let (v, m) = work[skip..].split_at_mut(plan.v_len(g));
    let mut ty0 = 0;
    while ty0 < plan.th {
        let rb = plan.rows.min(plan.th - ty0);
        #[cfg(target_arch = "x86_64")]
        {
            if crate::kernels::conv::has_avx512() {
                // SAFETY: the CPU has AVX-512F (checked just above); the asserts and the
                // plan's sizes keep every access in bounds (see the comments in each).
                unsafe {
                    input_avx512(g, plan, src, ty0, rb, v);
                    let lanes = rb * plan.pitch;
                    multiply(
                        plan,
                        g.c_in,
                        u,
                        v,
                        m,
                        lanes,
                        [tile::<1>, tile::<2>, tile::<3>],
                    );
                    output_avx512(g, plan, m, ty0, rb, ep, y);
                }
                ty0 += rb;
                continue;
            }
        }
        // Without AVX-512 (where `applies` is false anyway): from a padded copy.
        let copy;
        let p = match src {
            Source::Padded(p) => p,
            Source::Plain(x) => {
                let mut q = vec![0.0; plan.pad_len(g)];
                super::direct::pad_image(g, plan.pd, x, &mut q);
                copy = q;
                &copy
            }
        };
        band_scalar(g, plan, p, u, ty0, rb, ep, y, v, m);
        ty0 += rb;
    }
}

/// [`image`] on `count ≤ plan.images` images at once ([`Plan::batched`]): `src` holds
/// the images one after another ([`Source::image`]), `y` their outputs
/// ([`Epilogue::out_len`] each), `work` [`Plan::work_len`] floats. All their tiles share
/// one band, so the products read the transformed weights once for all of them.
#[allow(clippy::too_many_arguments)]
pub fn images(
    g: &ConvGeom,
    plan: &Plan,
    count: usize,
    src: Source,
    u: &[f32],
    ep: Epilogue,
    y: &mut [f32],
    work: &mut [f32],
) {
    let (ol, il) = (ep.out_len(g), plan.th * plan.pitch);
    assert!(count >= 1 && count <= plan.images && plan.rows == plan.th);
    assert!(src.image(g, plan, count - 1).fits(g, plan) && u.len() >= plan.packed_len(g));
    assert!(y.len() >= count * ol && work.len() >= plan.work_len(g));
    if let Some(b) = ep.bias {
        assert!(b.len() >= g.c_out);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::conv::has_avx512() {
        let skip = work.as_ptr().align_offset(64).min(LANES);
        let (v, m) = work[skip..].split_at_mut(plan.v_len(g));
        // SAFETY: the CPU has AVX-512F; image b's lanes b·il .. (b + 1)·il lie within
        // the band (bandp ≥ images·il), so each call's offset slice keeps the accesses
        // of `image`'s argument within v and m.
        unsafe {
            for b in 0..count {
                input_avx512(g, plan, src.image(g, plan, b), 0, plan.th, &mut v[b * il..]);
            }
            let tiles = [tile::<1>, tile::<2>, tile::<3>];
            multiply(plan, g.c_in, u, v, m, count * il, tiles);
            for b in 0..count {
                output_avx512(g, plan, &m[b * il..], 0, plan.th, ep, &mut y[b * ol..]);
            }
        }
        return;
    }
    // Without AVX-512 (where `applies` is false anyway), one image at a time.
    let one = Plan::of(g);
    for b in 0..count {
        let yb = &mut y[b * ol..(b + 1) * ol];
        image(
            g,
            &one,
            src.image(g, plan, b),
            u,
            ep,
            yb,
            &mut work[..one.work_len(g)],
        );
    }
}

/// The input transform of one image into `v`'s lanes from its start, every tile row, in
/// the layout of `plan` ([`Plan::batched`]): the first step of [`images`], for the wide
/// weight gradient ([`super::winograd_dw_wide`]). Needs AVX-512F.
pub(super) fn input_lanes(g: &ConvGeom, plan: &Plan, src: Source, v: &mut [f32]) {
    assert!(plan.rows == plan.th && src.fits(g, plan));
    let reach = (g.c_in.max(1) - 1) * plan.cs + (XI - 1) * plan.xs_v + plan.th * plan.pitch;
    assert!(v.len() >= reach);
    assert!(crate::kernels::conv::has_avx512(), "needs AVX-512F");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (asserted); tile row ty's chunk stores reach lanes
    // l0 + n ≤ th·pitch of row (c, ξ), within `reach` ≤ v.len() (asserted), and the
    // loads stay in the image (`input_avx512`).
    unsafe {
        input_avx512(g, plan, src, 0, plan.th, v)
    }
}

/// One band without SIMD, for CPUs where [`applies`] is false anyway (and as the
/// vector code's twin in the tests).
#[allow(clippy::too_many_arguments)]
fn band_scalar(
    g: &ConvGeom,
    plan: &Plan,
    p: &[f32],
    u: &[f32],
    ty0: usize,
    rb: usize,
    ep: Epilogue,
    y: &mut [f32],
    v: &mut [f32],
    m: &mut [f32],
) {
    let (pd, cs, blocks) = (plan.pd, plan.cs, plan.kp / KB);
    let (xv, xm) = (plan.xs_v, plan.xs_m);
    for c in 0..g.c_in {
        for (ty, tx0, n, l0) in chunks(plan, ty0, rb) {
            for k in 0..n {
                let mut d = [[0.0f32; 4]; 4];
                for (r, dr) in d.iter_mut().enumerate() {
                    let row = (c * pd.hp + 2 * ty + r) * pd.rs + 2 * (tx0 + k);
                    dr.copy_from_slice(&p[row..row + 4]);
                }
                for (xi, val) in input_tile(&d).into_iter().enumerate() {
                    v[c * cs + xi * xv + l0 + k] = val;
                }
            }
        }
    }
    for xi in 0..XI {
        for k in 0..g.c_out {
            for l in 0..rb * plan.pitch {
                let mut s = 0.0f32;
                for c in 0..g.c_in {
                    s += u[((xi * blocks + k / KB) * g.c_in + c) * KB + k % KB]
                        * v[c * cs + xi * xv + l];
                }
                m[k * cs + xi * xm + l] = s;
            }
        }
    }
    for (ty, tx0, n, l0) in chunks(plan, ty0, rb) {
        for k in 0..g.c_out {
            let b = ep.bias.map_or(0.0, |b| b[k]);
            for t in 0..n {
                let mut mt = [0.0f32; XI];
                for (xi, mv) in mt.iter_mut().enumerate() {
                    *mv = m[k * cs + xi * xm + l0 + t];
                }
                let out = output_tile(&mt).map(|v| {
                    let v = v + b;
                    if ep.relu && v < 0.0 {
                        0.0
                    } else {
                        v
                    }
                });
                let tx = tx0 + t;
                if ep.pool {
                    let (ph, pw) = (g.oh / 2, g.ow / 2);
                    if ty < ph && tx < pw {
                        let most = out.iter().fold(f32::NEG_INFINITY, |a, &v| {
                            if a.is_nan() || v.is_nan() {
                                f32::NAN
                            } else {
                                a.max(v)
                            }
                        });
                        y[(k * ph + ty) * pw + tx] = most;
                    }
                    continue;
                }
                for (q, &val) in out.iter().enumerate() {
                    let (oy, ox) = (2 * ty + q / 2, 2 * tx + q % 2);
                    if oy < g.oh && ox < g.ow {
                        y[(k * g.oh + oy) * g.ow + ox] = val;
                    }
                }
            }
        }
    }
}

/// A register tile of the products ([`tile`], [`tile_bf16`]): `(reduction length,
/// weights, first column of V, row stride, first element of M)`.
/// Calling one needs what [`tile`] needs (see its `# Safety`).
pub(super) type TileFn<T> = unsafe fn(usize, *const T, *const T, usize, *mut f32);

/// The 16 products `M_ξ = U_ξ · V_ξ` of one band, into `m[k][ξ][bandp]` (rows `cs`
/// apart), in register tiles of 8 output channels × up to 3 vectors of tiles:
/// `tiles[n − 1]` takes `n` vectors; `reduce` is the length of the sum (input channels,
/// or their pairs); `lanes` the band's lanes in use (`≤ plan.bandp`).
///
/// # Safety
/// The CPU must support what `tiles` are compiled for (AVX-512F; BF16 too for
/// [`tile_bf16`]). With `rb ≤ plan.rows`: `u` must hold at least `XI * plan.kp * reduce`
/// values, `v` at least `reduce * plan.cs` and `m` at least `plan.kp * plan.cs` (all 8
/// channels of a block are written), `lanes ≤ plan.bandp`; `image`, `image_bf16` and
/// `images` assert or split these.
pub(super) unsafe fn multiply<T>(
    plan: &Plan,
    reduce: usize,
    u: &[T],
    v: &[T],
    m: &mut [f32],
    lanes: usize,
    tiles: [TileFn<T>; 3],
) {
    debug_assert!(lanes <= plan.bandp);
    let blocks = plan.kp / KB;
    let vectors = lanes.div_ceil(LANES);
    for xi in 0..XI {
        let vx = v.as_ptr().add(xi * plan.xs_v);
        let ux = u.as_ptr().add(xi * blocks * reduce * KB);
        let mx = m.as_mut_ptr().add(xi * plan.xs_m);
        let mut j = 0;
        while j < vectors {
            let nt = (vectors - j).min(NT);
            for kb in 0..blocks {
                let w = ux.add(kb * reduce * KB);
                let out = mx.add(kb * KB * plan.cs + j * LANES);
                tiles[nt - 1](reduce, w, vx.add(j * LANES), plan.cs, out);
            }
            j += nt;
        }
    }
}

/// One register tile: `out[k][n·16 ..] = Σ_c w[c][k] · col[c][n·16 ..]` for 8 output
/// channels and `N` vectors of tiles (rows of `col` and `out` are `stride` apart).
///
/// # Safety
/// The CPU must support AVX-512F. `w` must be valid for reads of `c_in * KB` floats,
/// `col` for reads of `c_in` rows of `N * LANES` floats `stride` apart, and `out` for
/// writes of `KB` rows of `N * LANES` floats `stride` apart. `multiply` takes them from
/// `u`, `v`, `m` with `stride = plan.cs` and `j·16 + N·16 ≤ plan.bandp`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const N: usize>(
    c_in: usize,
    w: *const f32,
    col: *const f32,
    stride: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); N]; KB];
    for c in 0..c_in {
        let row = col.add(c * stride);
        let mut xs = [_mm512_setzero_ps(); N];
        for (n, x) in xs.iter_mut().enumerate() {
            *x = _mm512_loadu_ps(row.add(n * LANES));
        }
        let wc = w.add(c * KB);
        for (k, acc_k) in acc.iter_mut().enumerate() {
            let wv = _mm512_set1_ps(*wc.add(k));
            for (a, &x) in acc_k.iter_mut().zip(&xs) {
                *a = _mm512_fmadd_ps(wv, x, *a);
            }
        }
    }
    for (k, acc_k) in acc.iter().enumerate() {
        for (n, &a) in acc_k.iter().enumerate() {
            _mm512_storeu_ps(out.add(k * stride + n * LANES), a);
        }
    }
}

/// The output transform of one band, plus the epilogue, into `y[c_out, oh, ow]`.
///
/// # Safety
/// The CPU must support AVX-512F. `plan` must be `Plan::of(g)`, `rb ≤ plan.rows` and
/// `ty0 + rb ≤ plan.th`; `m` must hold at least `g.c_out * plan.cs` values (whole-vector
/// loads run up to 16 lanes past a row's tiles, within its `cs`) and `y` at least
/// `ep.out_len(g)` (`image` and `image_bf16` assert `y`, and `work` for `m`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn output_avx512(
    g: &ConvGeom,
    plan: &Plan,
    m: &[f32],
    ty0: usize,
    rb: usize,
    ep: Epilogue,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let xm = plan.xs_m;
    let zero = _mm512_setzero_ps();
    let (mp, yp) = (m.as_ptr(), y.as_mut_ptr());
    for k in 0..g.c_out {
        for (ty, tx0, n, l0) in chunks(plan, ty0, rb) {
            let cols = (2 * n).min(g.ow - 2 * tx0);
            let (mask0, mask1) = (lane_mask(cols), lane_mask(cols.saturating_sub(LANES)));
            let second_row = 2 * ty + 1 < g.oh;
            // Row (k, ξ) from lane l0: 16 lanes may run past the band into the next
            // row, or past the last row into the slack (Plan::work_len).
            let mk = mp.add(k * plan.cs + l0);
            let ld = |xi: usize| _mm512_loadu_ps(mk.add(xi * xm));
            let mut s0 = [_mm512_setzero_ps(); 4];
            let mut s1 = [_mm512_setzero_ps(); 4];
            for j in 0..4 {
                let (m0, m1, m2, m3) = (ld(j), ld(4 + j), ld(8 + j), ld(12 + j));
                let t = _mm512_sub_ps(m1, m2);
                s0[j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                s1[j] = _mm512_sub_ps(t, m3);
            }
            let b = _mm512_set1_ps(ep.bias.map_or(0.0, |b| b[k]));
            // The even and odd columns of one output row of the 16 tiles, with the bias
            // and the ReLU (`max(0, v)` returns v when it is NaN).
            let columns = |s: &[__m512; 4]| {
                let e = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], b));
                let o = _mm512_sub_ps(_mm512_sub_ps(s[1], s[2]), _mm512_sub_ps(s[3], b));
                if ep.relu {
                    (_mm512_max_ps(zero, e), _mm512_max_ps(zero, o))
                } else {
                    (e, o)
                }
            };
            if ep.pool {
                // Pooled row ty < oh/2, columns tx0 .. tx0 + n clipped to ow/2 (floor
                // mode drops a last half tile).
                let (ph, pw) = (g.oh / 2, g.ow / 2);
                let count = n.min(pw.saturating_sub(tx0));
                if ty >= ph || count == 0 {
                    continue;
                }
                let ((e0, o0), (e1, o1)) = (columns(&s0), columns(&s1));
                let most = _mm512_max_ps(_mm512_max_ps(e0, o0), _mm512_max_ps(e1, o1));
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(e0, o0)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(e1, o1);
                let most = _mm512_mask_mov_ps(most, nan, _mm512_set1_ps(f32::NAN));
                let dst = yp.add((k * ph + ty) * pw + tx0);
                _mm512_mask_storeu_ps(dst, lane_mask(count), most);
                continue;
            }
            let row = |s: &[__m512; 4]| {
                let (e, o) = columns(s);
                (
                    _mm512_permutex2var_ps(e, lo, o),
                    _mm512_permutex2var_ps(e, hi, o),
                )
            };
            // Output row 2·ty (< oh), columns 2·tx0 .. 2·tx0 + cols ≤ ow.
            let dst = yp.add((k * g.oh + 2 * ty) * g.ow + 2 * tx0);
            let (r0, r1) = row(&s0);
            _mm512_mask_storeu_ps(dst, mask0, r0);
            _mm512_mask_storeu_ps(dst.wrapping_add(LANES), mask1, r1);
            if second_row {
                let (r0, r1) = row(&s1);
                let dst = dst.add(g.ow);
                _mm512_mask_storeu_ps(dst, mask0, r0);
                _mm512_mask_storeu_ps(dst.wrapping_add(LANES), mask1, r1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::naive;
    use rand::{Rng, SeedableRng};

    fn run(
        g: &ConvGeom,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        simd: bool,
    ) -> Vec<f32> {
        run_ep(g, x, w, bias, relu, false, simd)
    }

    fn run_ep(
        g: &ConvGeom,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        pool: bool,
        simd: bool,
    ) -> Vec<f32> {
        let plan = Plan::of(g);
        let mut p = vec![0.0; plan.pad_len(g)];
        crate::kernels::conv::direct::pad_image(g, plan.padded(), x, &mut p);
        let mut u = vec![];
        pack_weights(g, w, &mut u);
        let mut work = vec![f32::NAN; plan.work_len(g)];
        let ep = Epilogue { bias, relu, pool };
        let mut y = vec![f32::NAN; ep.out_len(g)];
        if simd {
            image(g, &plan, Source::Padded(&p), &u, ep, &mut y, &mut work);
            // The image read in place (the padding from the loads' masks): the same
            // numbers, bit for bit.
            let mut y2 = vec![f32::NAN; ep.out_len(g)];
            image(g, &plan, Source::Plain(x), &u, ep, &mut y2, &mut work);
            let bits = |v: &[f32]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&y2), "plain source, {g:?}");
        } else {
            let (v, m) = work.split_at_mut(plan.v_len(g));
            let mut ty0 = 0;
            while ty0 < plan.th {
                let rb = plan.rows.min(plan.th - ty0);
                band_scalar(g, &plan, &p, &u, ty0, rb, ep, &mut y, v, m);
                ty0 += rb;
            }
        }
        y
    }

    /// A random image, weights and bias for `g`, uniform in [-1, 1).
    fn operands(rng: &mut impl Rng, g: &ConvGeom) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut v =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let x = v(g.c_in * g.h * g.w);
        let w = v(g.c_out * g.c_in * 9);
        (x, w, v(g.c_out))
    }

    #[test]
    fn winograd_equals_the_definition_on_awkward_shapes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // (c_in, c_out, h, w, pad): odd sizes (half tiles at the edges), widths that
        // cut 16-tile chunks and bands mid-row, c_out not a multiple of 8, paddings 0–3,
        // one band and several, maps smaller than a vector.
        let cases = [
            (16, 16, 8, 8, (1, 1)),
            (17, 19, 9, 11, (1, 1)),
            (16, 24, 28, 28, (1, 1)),
            (32, 16, 13, 37, (0, 2)),
            (20, 33, 5, 3, (2, 0)),
            (64, 64, 14, 14, (1, 1)),
            (16, 17, 34, 35, (3, 1)),
            (24, 16, 3, 3, (0, 0)),
            // Transformed weights over 1 MiB: the whole image is one band.
            (136, 130, 13, 15, (1, 1)),
        ];
        for (ci, co, h, w, pad) in cases {
            let g = ConvGeom::new(ci, h, w, co, (3, 3), (1, 1), pad, (1, 1), 1).unwrap();
            let (x, wt, bias) = operands(&mut rng, &g);
            let want = naive::conv2d_forward(&g, 1, &x, &wt, Some(&bias));
            let scale = (ci * 9) as f32;
            for simd in [true, false] {
                if simd && !crate::kernels::conv::has_avx512() {
                    continue;
                }
                let got = run(&g, &x, &wt, Some(&bias), false, simd);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(
                        0.0f32,
                        |e, d| if d.is_nan() { f32::INFINITY } else { e.max(d) },
                    );
                assert!(err < 2e-6 * scale, "{g:?} simd={simd}: {err}");
            }
            let none = run(&g, &x, &wt, None, false, crate::kernels::conv::has_avx512());
            let want0 = naive::conv2d_forward(&g, 1, &x, &wt, None);
            let err = none
                .iter()
                .zip(&want0)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 2e-6 * scale, "{g:?} no bias: {err}");
            for simd in [true, false] {
                if simd && !crate::kernels::conv::has_avx512() {
                    continue;
                }
                let got = run(&g, &x, &wt, Some(&bias), true, simd);
                let mut negatives = 0;
                for (a, b) in got.iter().zip(&want) {
                    negatives += usize::from(*b < -1e-3);
                    assert!(
                        (a - b.max(0.0)).abs() < 2e-6 * scale,
                        "{g:?} relu: {a} vs {b}"
                    );
                }
                assert!(negatives > 0, "{g:?}: the ReLU had nothing to do");
            }
        }
    }

    #[test]
    fn pooled_epilogue_is_the_max_of_each_tile_and_nan_wins() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        // Even and odd output sizes (floor mode drops the last half window), chunks cut
        // mid-row (40 columns: 20 tiles), several bands.
        for (ci, co, h, w) in [(16, 16, 8, 8), (17, 24, 9, 11), (16, 16, 14, 40)] {
            let g = ConvGeom::new(ci, h, w, co, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
            let (mut x, wt, bias) = operands(&mut rng, &g);
            let (ph, pw) = (g.oh / 2, g.ow / 2);
            let pool_of = |y: &[f32], relu: bool| -> Vec<f32> {
                let mut out = vec![0.0; co * ph * pw];
                for k in 0..co {
                    for (py, px) in (0..ph).flat_map(|a| (0..pw).map(move |b| (a, b))) {
                        let v = (0..4)
                            .map(|q| y[(k * g.oh + 2 * py + q / 2) * g.ow + 2 * px + q % 2])
                            .fold(f32::NEG_INFINITY, f32::max);
                        out[(k * ph + py) * pw + px] = if relu { v.max(0.0) } else { v };
                    }
                }
                out
            };
            let want_y = naive::conv2d_forward(&g, 1, &x, &wt, Some(&bias));
            for (simd, relu) in [(true, true), (true, false), (false, true), (false, false)] {
                if simd && !crate::kernels::conv::has_avx512() {
                    continue;
                }
                let got = run_ep(&g, &x, &wt, Some(&bias), relu, true, simd);
                let want = pool_of(&want_y, relu);
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 2e-6 * (ci * 9) as f32,
                        "{g:?} {relu}: {a} vs {b}"
                    );
                }
            }
            // A NaN input: every pooled window whose tile reads it is NaN, the rest not.
            x[(ci / 2 * h + 3) * w + 4] = f32::NAN;
            for simd in [true, false] {
                if simd && !crate::kernels::conv::has_avx512() {
                    continue;
                }
                let got = run_ep(&g, &x, &wt, Some(&bias), true, true, simd);
                for k in 0..co {
                    for (py, px) in (0..ph).flat_map(|a| (0..pw).map(move |b| (a, b))) {
                        // Tile (py, px) reads input rows 2py − 1 ..= 2py + 2 (padding 1).
                        let reads = (2 * py..=2 * py + 3).contains(&4)
                            && (2 * px..=2 * px + 3).contains(&5);
                        let v = got[(k * ph + py) * pw + px];
                        assert_eq!(v.is_nan(), reads, "{g:?} simd={simd} ({k}, {py}, {px})");
                    }
                }
            }
        }
    }

    /// Images side by side in one band compute, bit for bit, what each computes alone
    /// (each lane's sum runs over the channels in the same order), with every epilogue.
    #[test]
    fn batched_images_equal_one_image_at_a_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        // Weights over 1 MiB (batched by `batch_for`) and a small layer batched anyway;
        // odd maps, a count below the plan's images.
        for (ci, co, h, w) in [(136, 130, 13, 15), (16, 24, 9, 7)] {
            let g = ConvGeom::new(ci, h, w, co, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
            let plan = Plan::batched(&g, 4);
            let (pl, count) = (plan.pad_len(&g), 3);
            let mut u = vec![];
            let (_, wt, bias) = operands(&mut rng, &g);
            pack_weights(&g, &wt, &mut u);
            let mut p = vec![0.0; pl * count];
            let xs: Vec<Vec<f32>> = (0..count).map(|_| operands(&mut rng, &g).0).collect();
            for (b, x) in xs.iter().enumerate() {
                let dst = &mut p[b * pl..(b + 1) * pl];
                crate::kernels::conv::direct::pad_image(&g, plan.padded(), x, dst);
            }
            for (relu, pool) in [(false, false), (true, false), (true, true)] {
                let ep = Epilogue {
                    bias: Some(&bias),
                    relu,
                    pool,
                };
                let ol = ep.out_len(&g);
                let mut y = vec![f32::NAN; ol * count];
                let mut work = vec![f32::NAN; plan.work_len(&g)];
                images(
                    &g,
                    &plan,
                    count,
                    Source::Padded(&p),
                    &u,
                    ep,
                    &mut y,
                    &mut work,
                );
                let plain: Vec<f32> = xs.concat();
                let mut y2 = vec![f32::NAN; ol * count];
                images(
                    &g,
                    &plan,
                    count,
                    Source::Plain(&plain),
                    &u,
                    ep,
                    &mut y2,
                    &mut work,
                );
                let bits = |v: &[f32]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y), bits(&y2), "plain sources, {g:?}");
                for (b, x) in xs.iter().enumerate() {
                    let simd = crate::kernels::conv::has_avx512();
                    let one = run_ep(&g, x, &wt, Some(&bias), relu, pool, simd);
                    assert_eq!(
                        y[b * ol..(b + 1) * ol]
                            .iter()
                            .map(|v| v.to_bits())
                            .collect::<Vec<_>>(),
                        one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "image {b} of {g:?}, relu {relu}, pool {pool}"
                    );
                }
            }
        }
        // One image keeps its L2-sized bands.
        let g = ConvGeom::new(64, 56, 56, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let (one, of) = (Plan::batched(&g, 1), Plan::of(&g));
        assert_eq!((one.rows, one.bandp, one.images), (of.rows, of.bandp, 1));
        assert!(of.rows < of.th);
        assert!(
            Plan::batch_for(
                &ConvGeom::new(256, 14, 14, 256, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap()
            ) > 1
        );
        assert_eq!(
            Plan::batch_for(
                &ConvGeom::new(64, 14, 14, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap()
            ),
            1
        );
    }

    #[test]
    fn several_bands_cover_every_tile() {
        // 96 channels each way and a 40×40 map: 400 tiles in bands of at most 32.
        let g = ConvGeom::new(96, 40, 40, 96, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let plan = Plan::of(&g);
        assert!(plan.rows < plan.th, "{plan:?}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let x: Vec<f32> = (0..96 * 1600)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let wt: Vec<f32> = (0..96 * 96 * 9)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let want = naive::conv2d_forward(&g, 1, &x, &wt, None);
        let got = run(&g, &x, &wt, None, false, crate::kernels::conv::has_avx512());
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 2e-6 * 96.0 * 9.0, "{err}");
    }
}
