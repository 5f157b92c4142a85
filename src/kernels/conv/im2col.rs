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
        if sw == 1 {
            dst[lo..hi].copy_from_slice(&src[..n]);
        } else {
            for (v, &s) in dst[lo..hi].iter_mut().zip(src.iter().step_by(sw)) {
                *v = s;
            }
        }
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
