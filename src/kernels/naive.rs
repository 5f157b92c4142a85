//! Naive twins of the optimized kernels: direct loops, written for clarity only.
//! The tests of each kernel compare against these over awkward shapes.

use super::conv::ConvGeom;
use super::gemm::{Accumulate, Trans};

/// Triple-loop `c (=|+=) op(a)·op(b)` with the layouts of [`super::gemm::matmul`].
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    c: &mut [f32],
    acc: Accumulate,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                let av = match ta {
                    Trans::No => a[i * k + p],
                    Trans::Yes => a[p * m + i],
                };
                let bv = match tb {
                    Trans::No => b[p * n + j],
                    Trans::Yes => b[j * k + p],
                };
                s += av as f64 * bv as f64;
            }
            let old = if acc == Accumulate::Yes {
                c[i * n + j]
            } else {
                0.0
            };
            c[i * n + j] = old + s as f32;
        }
    }
}

/// The input index that output `(oy, ox)` and kernel tap `(i, j)` read, if inside.
fn tap(g: &ConvGeom, oy: usize, ox: usize, i: usize, j: usize) -> Option<(usize, usize)> {
    let iy = (oy * g.stride.0 + i * g.dilation.0) as isize - g.pad.0 as isize;
    let ix = (ox * g.stride.1 + j * g.dilation.1) as isize - g.pad.1 as isize;
    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
        None
    } else {
        Some((iy as usize, ix as usize))
    }
}

/// Direct convolution, the definition itself.
pub fn conv2d_forward(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (cg_in, cg_out) = (g.c_in / g.groups, g.c_out / g.groups);
    let mut y = vec![0.0; n * g.c_out * g.oh * g.ow];
    for img in 0..n {
        for co in 0..g.c_out {
            let grp = co / cg_out;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut s = bias.map_or(0.0, |b| b[co] as f64);
                    for ci in 0..cg_in {
                        let c = grp * cg_in + ci;
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                if let Some((iy, ix)) = tap(g, oy, ox, i, j) {
                                    let xv = x[((img * g.c_in + c) * g.h + iy) * g.w + ix];
                                    let wv = w[((co * cg_in + ci) * g.kh + i) * g.kw + j];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                    }
                    y[((img * g.c_out + co) * g.oh + oy) * g.ow + ox] = s as f32;
                }
            }
        }
    }
    y
}

/// Direct convolution backward: `(dx, dw, db)`, each freshly computed.
pub fn conv2d_backward(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (cg_in, cg_out) = (g.c_in / g.groups, g.c_out / g.groups);
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    let mut db = vec![0.0f64; g.c_out];
    for img in 0..n {
        for co in 0..g.c_out {
            let grp = co / cg_out;
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let d = dy[((img * g.c_out + co) * g.oh + oy) * g.ow + ox] as f64;
                    db[co] += d;
                    for ci in 0..cg_in {
                        let c = grp * cg_in + ci;
                        for i in 0..g.kh {
                            for j in 0..g.kw {
                                if let Some((iy, ix)) = tap(g, oy, ox, i, j) {
                                    let xi = ((img * g.c_in + c) * g.h + iy) * g.w + ix;
                                    let wi = ((co * cg_in + ci) * g.kh + i) * g.kw + j;
                                    dx[xi] += w[wi] as f64 * d;
                                    dw[wi] += x[xi] as f64 * d;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|e| e as f32).collect();
    (f(dx), f(dw), f(db))
}

/// Pooling window of output `o` along one axis: the input range it covers after
/// clipping, and its length clipped only to the padded input (for `count_include_pad`).
pub fn pool_window(
    o: usize,
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> (usize, usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let end_padded = (start + kernel as isize).min((input + pad) as isize);
    let padded_len = (end_padded - start) as usize;
    let lo = start.max(0) as usize;
    let hi = (end_padded.max(0) as usize).min(input);
    (lo, hi.max(lo), padded_len)
}
