//! Pooling over each `[H, W]` plane of an NCHW tensor: max, average, adaptive average.
//!
//! Planes are independent, so every kernel runs in parallel over the `n·c` planes.
//! Max pooling records the flat in-plane index of each window's maximum (the first one
//! on ties, as PyTorch) and its backward adds `dy` at those indices.

use super::conv::out_size;
use super::naive::pool_window;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Geometry of a pooling window sliding over one plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window (height, width).
    pub kernel: (usize, usize),
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Implicit padding (vertical, horizontal); never counted as a maximum.
    pub pad: (usize, usize),
    /// Dilation (max pooling only; 1 for average pooling).
    pub dilation: (usize, usize),
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl PoolGeom {
    /// Validates the window against the input and computes the output size.
    pub fn new(
        op: &str,
        (h, w): (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: (usize, usize),
        dilation: (usize, usize),
        ceil_mode: bool,
    ) -> Result<Self> {
        if pad.0 * 2 > kernel.0 || pad.1 * 2 > kernel.1 {
            return Err(Error::config(
                op,
                "padding",
                format!("padding {pad:?} must be at most half the kernel {kernel:?}"),
            ));
        }
        let oh = out_size(h, kernel.0, stride.0, pad.0, dilation.0, ceil_mode);
        let ow = out_size(w, kernel.1, stride.1, pad.1, dilation.1, ceil_mode);
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok(PoolGeom {
                h,
                w,
                kernel,
                stride,
                pad,
                dilation,
                oh,
                ow,
            }),
            _ => Err(Error::shape(
                op,
                format!(
                    "an input plane of at least the window {kernel:?} (dilation {dilation:?}) after padding {pad:?}"
                ),
                &[h, w],
            )),
        }
    }
}

/// Max pooling forward: `y[p, oy, ox] = max` over the window, `argmax` its in-plane index.
pub fn max_pool_forward(g: &PoolGeom, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if ohw == 0 || hw == 0 {
        return;
    }
    y.par_chunks_mut(ohw)
        .zip(argmax.par_chunks_mut(ohw))
        .zip(x.par_chunks(hw))
        .for_each(|((yp, ap), xp)| {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut best = f32::NEG_INFINITY;
                    let mut best_i = u32::MAX;
                    for i in 0..g.kernel.0 {
                        let iy = (oy * g.stride.0 + i * g.dilation.0) as isize - g.pad.0 as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        for j in 0..g.kernel.1 {
                            let ix =
                                (ox * g.stride.1 + j * g.dilation.1) as isize - g.pad.1 as isize;
                            if ix < 0 || ix >= g.w as isize {
                                continue;
                            }
                            let idx = iy as usize * g.w + ix as usize;
                            let v = xp[idx];
                            // A NaN wins over numbers, so it propagates as in PyTorch.
                            if best_i == u32::MAX || v > best || (v.is_nan() && !best.is_nan()) {
                                best = v;
                                best_i = idx as u32;
                            }
                        }
                    }
                    yp[oy * g.ow + ox] = best;
                    ap[oy * g.ow + ox] = best_i;
                }
            }
        });
}

/// Max pooling backward: `dx` is overwritten with `dy` routed to each window's maximum.
pub fn max_pool_backward(g: &PoolGeom, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if hw == 0 {
        return;
    }
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
        dxp.iter_mut().for_each(|v| *v = 0.0);
        let dyp = &dy[p * ohw..(p + 1) * ohw];
        let ap = &argmax[p * ohw..(p + 1) * ohw];
        for (&d, &i) in dyp.iter().zip(ap) {
            if (i as usize) < hw {
                dxp[i as usize] += d;
            }
        }
    });
}

/// Divisor of average-pool output `(oy, ox)`.
fn avg_divisor(g: &PoolGeom, oy: usize, ox: usize, count_include_pad: bool) -> f32 {
    let (ylo, yhi, ylen) = pool_window(oy, g.h, g.kernel.0, g.stride.0, g.pad.0);
    let (xlo, xhi, xlen) = pool_window(ox, g.w, g.kernel.1, g.stride.1, g.pad.1);
    let n = if count_include_pad {
        ylen * xlen
    } else {
        (yhi - ylo) * (xhi - xlo)
    };
    n.max(1) as f32
}

/// Average pooling forward (PyTorch's divisor rules for padding and `ceil_mode`).
pub fn avg_pool_forward(g: &PoolGeom, count_include_pad: bool, x: &[f32], y: &mut [f32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if ohw == 0 || hw == 0 {
        return;
    }
    y.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .for_each(|(yp, xp)| {
            for oy in 0..g.oh {
                let (ylo, yhi, _) = pool_window(oy, g.h, g.kernel.0, g.stride.0, g.pad.0);
                for ox in 0..g.ow {
                    let (xlo, xhi, _) = pool_window(ox, g.w, g.kernel.1, g.stride.1, g.pad.1);
                    let mut s = 0.0f32;
                    for iy in ylo..yhi {
                        s += xp[iy * g.w + xlo..iy * g.w + xhi].iter().sum::<f32>();
                    }
                    yp[oy * g.ow + ox] = s / avg_divisor(g, oy, ox, count_include_pad);
                }
            }
        });
}

/// Average pooling backward: `dx` is overwritten.
pub fn avg_pool_backward(g: &PoolGeom, count_include_pad: bool, dy: &[f32], dx: &mut [f32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    if hw == 0 {
        return;
    }
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
        dxp.iter_mut().for_each(|v| *v = 0.0);
        let dyp = &dy[p * ohw..(p + 1) * ohw];
        for oy in 0..g.oh {
            let (ylo, yhi, _) = pool_window(oy, g.h, g.kernel.0, g.stride.0, g.pad.0);
            for ox in 0..g.ow {
                let (xlo, xhi, _) = pool_window(ox, g.w, g.kernel.1, g.stride.1, g.pad.1);
                let d = dyp[oy * g.ow + ox] / avg_divisor(g, oy, ox, count_include_pad);
                for iy in ylo..yhi {
                    dxp[iy * g.w + xlo..iy * g.w + xhi]
                        .iter_mut()
                        .for_each(|v| *v += d);
                }
            }
        }
    });
}

/// Adaptive window of output `o` of `out` over `input`: `floor(o·in/out) .. ceil((o+1)·in/out)`.
pub fn adaptive_window(o: usize, input: usize, out: usize) -> (usize, usize) {
    (o * input / out, ((o + 1) * input).div_ceil(out))
}

/// Adaptive average pooling forward from `[h, w]` planes to `[oh, ow]` planes.
pub fn adaptive_avg_forward(
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    x: &[f32],
    y: &mut [f32],
) {
    let (hw, ohw) = (h * w, oh * ow);
    if ohw == 0 || hw == 0 {
        return;
    }
    y.par_chunks_mut(ohw)
        .zip(x.par_chunks(hw))
        .for_each(|(yp, xp)| {
            for oy in 0..oh {
                let (y0, y1) = adaptive_window(oy, h, oh);
                for ox in 0..ow {
                    let (x0, x1) = adaptive_window(ox, w, ow);
                    let mut s = 0.0f32;
                    for iy in y0..y1 {
                        s += xp[iy * w + x0..iy * w + x1].iter().sum::<f32>();
                    }
                    yp[oy * ow + ox] = s / ((y1 - y0) * (x1 - x0)) as f32;
                }
            }
        });
}

/// Adaptive average pooling backward: `dx` is overwritten.
pub fn adaptive_avg_backward(
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    dy: &[f32],
    dx: &mut [f32],
) {
    let (hw, ohw) = (h * w, oh * ow);
    if hw == 0 {
        return;
    }
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, dxp)| {
        dxp.iter_mut().for_each(|v| *v = 0.0);
        let dyp = &dy[p * ohw..(p + 1) * ohw];
        for oy in 0..oh {
            let (y0, y1) = adaptive_window(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1) = adaptive_window(ox, w, ow);
                let d = dyp[oy * ow + ox] / ((y1 - y0) * (x1 - x0)) as f32;
                for iy in y0..y1 {
                    dxp[iy * w + x0..iy * w + x1]
                        .iter_mut()
                        .for_each(|v| *v += d);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_picks_the_maximum_and_routes_its_gradient() {
        // one 3x4 plane, 2x2 windows, stride 2, ceil mode -> 2x2 output
        let x: Vec<f32> = vec![1., 5., 2., 0., 3., 4., 8., 7., 9., -1., 6., 6.5];
        let g = PoolGeom::new("t", (3, 4), (2, 2), (2, 2), (0, 0), (1, 1), true).unwrap();
        assert_eq!((g.oh, g.ow), (2, 2));
        let mut y = vec![0.0; 4];
        let mut a = vec![0u32; 4];
        max_pool_forward(&g, &x, &mut y, &mut a);
        assert_eq!(y, vec![5., 8., 9., 6.5]);
        let mut dx = vec![1.0; 12];
        max_pool_backward(&g, &[1., 2., 3., 4.], &a, &mut dx);
        assert_eq!(dx, vec![0., 1., 0., 0., 0., 0., 2., 0., 3., 0., 0., 4.]);
    }

    #[test]
    fn avg_pool_divisors_follow_count_include_pad() {
        // 2x2 plane of ones, 3x3 window, padding 1, stride 1 -> every output averages
        // 4 ones; with padding counted the divisor is 9.
        let g = PoolGeom::new("t", (2, 2), (3, 3), (1, 1), (1, 1), (1, 1), false).unwrap();
        let x = vec![1.0; 4];
        let mut y = vec![0.0; 4];
        avg_pool_forward(&g, true, &x, &mut y);
        assert!(y.iter().all(|&v| (v - 4.0 / 9.0).abs() < 1e-7), "{y:?}");
        avg_pool_forward(&g, false, &x, &mut y);
        assert!(y.iter().all(|&v| (v - 1.0).abs() < 1e-7), "{y:?}");
    }

    #[test]
    fn adaptive_windows_cover_the_input_like_pytorch() {
        assert_eq!(adaptive_window(0, 5, 3), (0, 2));
        assert_eq!(adaptive_window(1, 5, 3), (1, 4));
        assert_eq!(adaptive_window(2, 5, 3), (3, 5));
        assert_eq!(adaptive_window(0, 7, 1), (0, 7));
    }

    #[test]
    fn bad_windows_are_errors() {
        assert!(PoolGeom::new("t", (2, 2), (3, 3), (1, 1), (0, 0), (1, 1), false).is_err());
        assert!(PoolGeom::new("t", (8, 8), (2, 2), (2, 2), (2, 2), (1, 1), false).is_err());
    }
}
