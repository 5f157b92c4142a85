//! The input gradient of a strided convolution as stride-1 convolutions of `dy`, one
//! per phase of the input, so that it runs on the gathered kernels (f32 or bf16)
//! instead of a GEMM into `col` and a `col2im` scatter-add.
//!
//! Along one axis (stride `s`, kernel `k`, padding `p`, no dilation), input position
//! `i` receives `dy[o]·w[t]` for every `o·s + t = i + p`. Cut the input into phases
//! `i = s·m + a` (`a < s`): the taps that reach phase `a` are `t ≡ a + p (mod s)`,
//! i.e. `t₀ + j·s` with `t₀ = (a + p) mod s`, and tap `j` reads `o = m + e₀ − j` with
//! `e₀ = ⌊(a + p)/s⌋`. So the phase is a stride-1 correlation of `dy` with the
//! phase's taps in reverse order: `dx_a[m] = Σ_j' w[t₀ + (T−1−j')·s]·dy[m + j' + e₀ − T + 1]`.
//! With a symmetric zero padding `P` (at least `T − 1 − e₀`, and enough at the far end
//! for the phase's last row), that is the plain convolution of [`ConvGeom`] whose
//! output row `m + δ`, `δ = e₀ + P + 1 − T`, is the phase's row `m`. A 3×3 stride-2
//! layer gives four phases of 1×1, 1×2, 2×1 and 2×2 taps: the same 9 products per
//! position as the forward pass, none on inserted zeros. A phase no tap reaches (a
//! 1×1 stride-2 layer's odd rows and columns) is zero.

use super::geom::ConvGeom;

/// One phase of the input: positions `(sh·m + a, sw·n + b)` for `m < rows`, `n < cols`.
#[derive(Clone, Debug)]
pub(crate) struct Phase {
    pub a: usize,
    pub b: usize,
    pub rows: usize,
    pub cols: usize,
    /// The stride-1 convolution of `dy` (`c_out` channels in, `c_in` out) that computes
    /// the phase, with its weights `[c_in][c_out][taps_h][taps_w]`; `None` when no tap
    /// reaches the phase (it is zero).
    pub conv: Option<(ConvGeom, Vec<f32>)>,
    /// Output row and column of the phase's `(0, 0)` in that convolution.
    pub delta: (usize, usize),
}

/// One axis of a phase: taps, first tap, padding, offset, positions.
#[derive(Clone, Copy, Debug)]
struct Axis {
    taps: usize,
    first: usize,
    pad: usize,
    delta: usize,
    count: usize,
}

fn axis(a: usize, size: usize, out: usize, k: usize, s: usize, p: usize) -> Axis {
    let count = if a < size { (size - a).div_ceil(s) } else { 0 };
    let first = (a + p) % s;
    let taps = if first < k {
        (k - 1 - first) / s + 1
    } else {
        0
    };
    let e0 = (a + p) / s;
    // P ≥ T − 1 − e₀ (the first row reads no further back than the padding) and
    // P ≥ count + e₀ − out (the output reaches the phase's last row).
    let pad = (taps.saturating_sub(1 + e0)).max((count + e0).saturating_sub(out));
    let delta = (e0 + pad + 1).saturating_sub(taps);
    Axis {
        taps,
        first,
        pad,
        delta,
        count,
    }
}

/// The axes with the largest padding among those with taps, and their offsets for it.
fn common_pad(mut axes: Vec<Axis>) -> Vec<Axis> {
    let pad = axes
        .iter()
        .filter(|x| x.taps > 0)
        .map(|x| x.pad)
        .max()
        .unwrap_or(0);
    for x in axes.iter_mut().filter(|x| x.taps > 0) {
        x.delta += pad - x.pad;
        x.pad = pad;
    }
    axes
}

/// The phases of `g`'s input gradient, or `None` when the decomposition does not
/// apply (stride 1, dilation, groups) or a phase's convolution would be empty.
pub(crate) fn phases(g: &ConvGeom, w: &[f32]) -> Option<Vec<Phase>> {
    let (sh, sw) = g.stride;
    if (sh, sw) == (1, 1) || g.dilation != (1, 1) || g.groups != 1 {
        return None;
    }
    let kk = g.kh * g.kw;
    // One padding per axis, the largest any phase needs: then the phases of one column
    // phase `b` differ only in their kernel height, and share one gathered copy of `dy`
    // (conv.rs gathers once per `b`; phases are listed `b` by `b`).
    let ys = common_pad(
        (0..sh)
            .map(|a| axis(a, g.h, g.oh, g.kh, sh, g.pad.0))
            .collect(),
    );
    let xs = common_pad(
        (0..sw)
            .map(|b| axis(b, g.w, g.ow, g.kw, sw, g.pad.1))
            .collect(),
    );
    let mut out = Vec::with_capacity(sh * sw);
    for (b, &xb) in xs.iter().enumerate() {
        for (a, &ya) in ys.iter().enumerate() {
            if ya.count == 0 || xb.count == 0 {
                continue;
            }
            let conv = if ya.taps == 0 || xb.taps == 0 {
                None
            } else {
                let pg = ConvGeom::new(
                    g.c_out,
                    g.oh,
                    g.ow,
                    g.c_in,
                    (ya.taps, xb.taps),
                    (1, 1),
                    (ya.pad, xb.pad),
                    (1, 1),
                    1,
                )
                .ok()?;
                if pg.oh < ya.delta + ya.count || pg.ow < xb.delta + xb.count {
                    return None;
                }
                let (th, tw) = (ya.taps, xb.taps);
                let mut pw = vec![0.0f32; g.c_in * g.c_out * th * tw];
                for ci in 0..g.c_in {
                    for co in 0..g.c_out {
                        for j in 0..th {
                            let ky = ya.first + (th - 1 - j) * sh;
                            for l in 0..tw {
                                let kx = xb.first + (tw - 1 - l) * sw;
                                pw[((ci * g.c_out + co) * th + j) * tw + l] =
                                    w[(co * g.c_in + ci) * kk + ky * g.kw + kx];
                            }
                        }
                    }
                }
                Some((pg, pw))
            };
            out.push(Phase {
                a,
                b,
                rows: ya.count,
                cols: xb.count,
                conv,
                delta: (ya.delta, xb.delta),
            });
        }
    }
    Some(out)
}

/// Writes the phase's positions of one image's `dx[c_in, h, w]` from its convolution's
/// output `y[c_in, oh', ow']` (zeros for a phase no tap reaches).
pub(crate) fn scatter(g: &ConvGeom, ph: &Phase, y: &[f32], dx: &mut [f32]) {
    let (sh, sw) = g.stride;
    let hw = g.h * g.w;
    if let Some((pg, _)) = &ph.conv {
        assert!(y.len() >= g.c_in * pg.ohw() && pg.c_out == g.c_in);
    }
    assert!(dx.len() >= g.c_in * hw);
    #[cfg(target_arch = "x86_64")]
    if sw <= 16 && super::geom::has_avx512() {
        // SAFETY: AVX-512F is present; y and dx hold what the asserts above say, and
        // the loops below stay inside the phase's rows and columns.
        unsafe { scatter_avx512(g, ph, y, dx) };
        return;
    }
    for ci in 0..g.c_in {
        let plane = &mut dx[ci * hw..(ci + 1) * hw];
        for m in 0..ph.rows {
            let row = &mut plane[(sh * m + ph.a) * g.w..(sh * m + ph.a + 1) * g.w];
            let dst = row[ph.b..].iter_mut().step_by(sw).take(ph.cols);
            match &ph.conv {
                None => dst.for_each(|v| *v = 0.0),
                Some((pg, _)) => {
                    let start = (ci * pg.oh + m + ph.delta.0) * pg.ow + ph.delta.1;
                    for (d, &s) in dst.zip(&y[start..start + ph.cols]) {
                        *d = s;
                    }
                }
            }
        }
    }
}

/// [`scatter`] with vector expands: a row of the phase's columns is read 16/sw values
/// at a time, spread to every `sw`-th lane from lane `b` (`vexpandps`) and stored
/// under that lane mask, which leaves the other phases' columns as they are.
///
/// # Safety
/// The CPU must support AVX-512F, and `g.stride.1 <= 16`. `ph` must be a phase of `g`
/// from `phases`, so its rows, columns and offsets lie inside both planes; `dx` must
/// hold at least `g.c_in * g.h * g.w` values and, when `ph.conv` is `Some((pg, _))`,
/// `y` at least `g.c_in * pg.ohw()` (`scatter` asserts both).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scatter_avx512(g: &ConvGeom, ph: &Phase, y: &[f32], dx: &mut [f32]) {
    use std::arch::x86_64::*;
    let (sh, sw) = g.stride;
    let hw = g.h * g.w;
    // Values per vector: the lanes b, b + sw, … below 16.
    let per = (16 - ph.b).div_ceil(sw);
    let spread =
        |cnt: usize| -> __mmask16 { (0..cnt).fold(0u16, |m, j| m | (1 << (j * sw + ph.b))) };
    let full = spread(per);
    let (yp, dp) = (y.as_ptr(), dx.as_mut_ptr());
    for ci in 0..g.c_in {
        for m in 0..ph.rows {
            let row = dp.add(ci * hw + (sh * m + ph.a) * g.w);
            let src = ph
                .conv
                .as_ref()
                .map(|(pg, _)| yp.add((ci * pg.oh + m + ph.delta.0) * pg.ow + ph.delta.1));
            let mut n = 0;
            while n < ph.cols {
                let cnt = (ph.cols - n).min(per);
                let mask = if cnt == per { full } else { spread(cnt) };
                let v = match src {
                    Some(s) => {
                        let take = ((1u32 << cnt) - 1) as __mmask16;
                        _mm512_maskz_expand_ps(mask, _mm512_maskz_loadu_ps(take, s.add(n)))
                    }
                    None => _mm512_setzero_ps(),
                };
                _mm512_mask_storeu_ps(row.add(n * sw), mask, v);
                n += cnt;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::naive;

    /// Every phase's convolution, scattered, gives the naive input gradient: strides 2
    /// and 3, kernels 1 to 5 (odd and even), paddings 0 to 3, sizes that do and do not
    /// divide by the stride.
    #[test]
    fn phases_give_the_input_gradient() {
        let cases = [
            // c_in, h, w, c_out, k, stride, pad
            (3, 8, 8, 4, (3, 3), (2, 2), (1, 1)),
            (2, 9, 7, 3, (3, 3), (2, 2), (1, 1)),
            (2, 8, 8, 3, (1, 1), (2, 2), (0, 0)),
            (2, 11, 10, 2, (5, 4), (3, 2), (2, 3)),
            (1, 7, 9, 2, (2, 3), (2, 3), (0, 1)),
            (2, 6, 6, 2, (3, 3), (2, 2), (3, 0)),
        ];
        let mut seed = 77u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for (c_in, h, w, c_out, k, stride, pad) in cases {
            let g = ConvGeom::new(c_in, h, w, c_out, k, stride, pad, (1, 1), 1).unwrap();
            let wt: Vec<f32> = (0..c_out * c_in * k.0 * k.1).map(|_| next()).collect();
            let dy: Vec<f32> = (0..c_out * g.ohw()).map(|_| next()).collect();
            let x = vec![0.0; c_in * h * w];
            let (want, _, _) = naive::conv2d_backward(&g, 1, &x, &wt, &dy);
            let phases = phases(&g, &wt).expect("phases apply");
            let mut got = vec![f32::NAN; c_in * h * w];
            for ph in &phases {
                let y = match &ph.conv {
                    Some((pg, pw)) => naive::conv2d_forward(pg, 1, &dy, pw, None),
                    None => Vec::new(),
                };
                scatter(&g, ph, &y, &mut got);
            }
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5, "{g:?} at {i}: {a} vs {b}");
            }
        }
    }
}
