//! im2col and col2im: receptive fields as columns of a matrix, and back.

use super::geom::{valid_range, ConvGeom};

/// Lays the receptive fields of one image `x[c_in, h, w]` out as columns of
/// `col[c_in·kh·kw, oh·ow]` (zeros where a field reaches into the padding).
pub fn im2col(g: &ConvGeom, x: &[f32], col: &mut [f32]) {
    let ohw = g.ohw();
    for (row, out) in col[..g.kg() * g.groups * ohw]
        .chunks_exact_mut(ohw)
        .enumerate()
    {
        fill_row(g, x, row, out);
    }
}

/// Rows `r0 ..` of the im2col matrix of a batch of `n` images `x[n, c_in, h, w]` with
/// the images side by side: `out[r − r0][img·oh·ow + p]`, as many rows as `out` holds
/// (the operand of one weight-gradient product over the whole batch).
pub fn im2col_batch_rows(g: &ConvGeom, x: &[f32], n: usize, r0: usize, out: &mut [f32]) {
    let (ohw, x_img) = (g.ohw(), g.c_in * g.h * g.w);
    if ohw == 0 || n == 0 {
        return;
    }
    for (k, row) in out.chunks_exact_mut(n * ohw).enumerate() {
        for (img, part) in row.chunks_exact_mut(ohw).enumerate() {
            fill_row(g, &x[img * x_img..(img + 1) * x_img], r0 + k, part);
        }
    }
}

/// Row `row` (input channel, kernel row, kernel column) of one image's im2col matrix.
fn fill_row(g: &ConvGeom, x: &[f32], row: usize, out: &mut [f32]) {
    let (sh, sw) = g.stride;
    let (ph, pw) = g.pad;
    let (dh, dw) = g.dilation;
    let (c, i, j) = (row / (g.kh * g.kw), row / g.kw % g.kh, row % g.kw);
    let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
    let (lo, hi) = valid_range(g.ow, g.w, sw, pw, j * dw);
    let (ylo, yhi) = valid_range(g.oh, g.h, sh, ph, i * dh);
    if lo >= hi || ylo >= yhi {
        out.fill(0.0);
        return;
    }
    out[..ylo * g.ow].fill(0.0);
    out[yhi * g.ow..].fill(0.0);
    let ix0 = lo * sw + j * dw - pw;
    let n = hi - lo;
    for (oy, dst) in out.chunks_exact_mut(g.ow).enumerate().take(yhi).skip(ylo) {
        let iy = oy * sh + i * dh - ph;
        let src = &plane[iy * g.w + ix0..];
        dst[..lo].fill(0.0);
        dst[hi..].fill(0.0);
        match sw {
            1 => dst[lo..hi].copy_from_slice(&src[..n]),
            2 => copy_stride2(src, &mut dst[lo..hi]),
            _ => copy_strided(src, sw, &mut dst[lo..hi]),
        }
    }
}

/// `dst[k] = src[k·sw]`.
fn copy_strided(src: &[f32], sw: usize, dst: &mut [f32]) {
    for (v, &s) in dst.iter_mut().zip(src.iter().step_by(sw)) {
        *v = s;
    }
}

/// `dst[k] = src[2k]`: the rows of stride-2 layers (ResNets' downsampling), 16 at a time
/// with AVX-512 (two loads, the even lanes picked by one permute); `src` must hold
/// `2·dst.len() − 1` values.
fn copy_stride2(src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    assert!(src.len() > 2 * (n - 1), "a stride-2 row past its source");
    #[cfg(target_arch = "x86_64")]
    if super::geom::has_avx512() {
        // SAFETY: the CPU has AVX-512F; the loads are masked to src[..2n − 1] and the
        // stores to dst[..n] (asserted above).
        unsafe { copy_stride2_avx512(src, dst) };
        return;
    }
    copy_strided(src, 2, dst);
}

/// # Safety
/// The CPU must support AVX-512F; `src.len() ≥ 2·dst.len() − 1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn copy_stride2_avx512(src: &[f32], dst: &mut [f32]) {
    use super::geom::lane_mask as mask;
    use std::arch::x86_64::*;
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let n = dst.len();
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    let mut k = 0;
    while k < n {
        let r = (n - k).min(16);
        // Source values 2k .. 2k + 2r − 1 (the last one needed is 2(k + r − 1)).
        let need = 2 * r - 1;
        let a = _mm512_maskz_loadu_ps(mask(need), sp.add(2 * k));
        // (No lane of the second load is read when `need ≤ 16`: its address may then
        // lie past the row, so it is formed without `add`.)
        let b = _mm512_maskz_loadu_ps(mask(need.saturating_sub(16)), sp.wrapping_add(2 * k + 16));
        let v = _mm512_permutex2var_ps(a, even, b);
        _mm512_mask_storeu_ps(dp.add(k), mask(r), v);
        k += r;
    }
}

/// Adds the columns `col[c_in·kh·kw, oh·ow]` back onto the image `dx[c_in, h, w]`
/// (the adjoint of [`im2col`]).
pub fn col2im(g: &ConvGeom, col: &[f32], dx: &mut [f32]) {
    let ohw = g.ohw();
    let (sh, sw) = g.stride;
    let (ph, pw) = g.pad;
    let (dh, dw) = g.dilation;
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = (c * g.kh + i) * g.kw + j;
                let src = &col[row * ohw..(row + 1) * ohw];
                let (lo, hi) = valid_range(g.ow, g.w, sw, pw, j * dw);
                if lo >= hi {
                    continue;
                }
                for oy in 0..g.oh {
                    let iy = (oy * sh + i * dh) as isize - ph as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let s = &src[oy * g.ow..(oy + 1) * g.ow];
                    let ix0 = lo * sw + j * dw - pw;
                    if sw == 1 {
                        for (d, v) in dst[ix0..ix0 + (hi - lo)].iter_mut().zip(&s[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        for (k, v) in s[lo..hi].iter().enumerate() {
                            dst[ix0 + k * sw] += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stride-2 copy picks the even source values, on lengths around whole vectors,
    /// with the source exactly as long as it must be (the masked loads stay inside).
    #[test]
    fn stride2_rows_take_every_other_value() {
        for n in [1, 2, 15, 16, 17, 31, 32, 33, 56, 112] {
            let src: Vec<f32> = (0..2 * n - 1).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut got = vec![f32::NAN; n + 1];
            copy_stride2(&src, &mut got[..n]);
            let mut want = vec![f32::NAN; n];
            copy_strided(&src, 2, &mut want);
            assert_eq!(&got[..n], &want[..], "n = {n}");
            assert!(got[n].is_nan(), "n = {n}: wrote past the row");
        }
    }
}
