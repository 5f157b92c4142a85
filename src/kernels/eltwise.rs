//! Element-wise maps: activation functions forward and backward, and small vector ops.
//!
//! Each activation's backward takes the forward *input* `x` (and, where cheaper, the
//! output `y`) and the upstream gradient `dy`, and writes `dx = f'(x)·dy`.

use multiversion::multiversion;
use rayon::prelude::*;

/// Below this many elements a map runs on the calling thread.
const PAR_MIN: usize = 1 << 15;
/// Elements per parallel task.
const PAR_CHUNK: usize = 1 << 14;

/// `dst[i] += src[i]`.
pub fn add_into(dst: &mut [f32], src: &[f32]) {
    if dst.len() >= PAR_MIN {
        dst.par_chunks_mut(PAR_CHUNK)
            .zip(src.par_chunks(PAR_CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(a, b)| *a += b));
    } else {
        dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
    }
}

/// `dst[i] = max(0, dst[i] + src[i])`: a residual sum and its ReLU in one pass.
pub fn add_relu_into(dst: &mut [f32], src: &[f32]) {
    #[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
    fn run(d: &mut [f32], s: &[f32]) {
        d.iter_mut()
            .zip(s)
            .for_each(|(a, &b)| *a = (*a + b).max(0.0));
    }
    if dst.len() >= PAR_MIN {
        dst.par_chunks_mut(PAR_CHUNK)
            .zip(src.par_chunks(PAR_CHUNK))
            .for_each(|(d, s)| run(d, s));
    } else {
        run(dst, src);
    }
}

/// `dst[i] = dst[i] + src[i]` where `x[i] > 0`, else 0: a gradient sum and the backward
/// of the ReLU whose output is `x`, in one pass.
pub fn add_where_positive(dst: &mut [f32], src: &[f32], x: &[f32]) {
    #[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
    fn run(d: &mut [f32], s: &[f32], x: &[f32]) {
        for ((a, &b), &v) in d.iter_mut().zip(s).zip(x) {
            *a = if v > 0.0 { *a + b } else { 0.0 };
        }
    }
    if dst.len() >= PAR_MIN {
        dst.par_chunks_mut(PAR_CHUNK)
            .zip(src.par_chunks(PAR_CHUNK).zip(x.par_chunks(PAR_CHUNK)))
            .for_each(|(d, (s, x))| run(d, s, x));
    } else {
        run(dst, src, x);
    }
}

/// `dst[i] = max(0, dst[i])` in place on the calling thread ([`relu_inplace`]'s
/// pieces): for a kernel's epilogue, already inside a parallel task.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
pub fn relu_seq(d: &mut [f32]) {
    d.iter_mut().for_each(|a| *a = a.max(0.0));
}

/// `dst[i] = max(0, dst[i])` in place.
pub fn relu_inplace(dst: &mut [f32]) {
    if dst.len() >= PAR_MIN {
        dst.par_chunks_mut(PAR_CHUNK).for_each(relu_seq);
    } else {
        relu_seq(dst);
    }
}

/// `dx[i] = dy[i]` where `y[i] > 0`, else 0: the backward of a ReLU from its output.
pub fn relu_backward_from_output(y: &[f32], dy: &[f32], dx: &mut [f32]) {
    #[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
    fn run(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((o, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
            *o = if v > 0.0 { g } else { 0.0 };
        }
    }
    if dx.len() >= PAR_MIN {
        dx.par_chunks_mut(PAR_CHUNK)
            .zip(y.par_chunks(PAR_CHUNK).zip(dy.par_chunks(PAR_CHUNK)))
            .for_each(|(o, (y, g))| run(y, g, o));
    } else {
        run(y, dy, dx);
    }
}

/// `dst[i] *= s`.
pub fn scale(dst: &mut [f32], s: f32) {
    dst.iter_mut().for_each(|v| *v *= s);
}

/// An element-wise activation function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// `1 / (1 + e^{-x})`
    Sigmoid,
    /// `tanh(x)`
    Tanh,
    /// `max(0, x)`
    Relu,
    /// `x` if `x > 0` else `slope·x`
    LeakyRelu(f32),
    /// `x` if `x > 0` else `alpha·(e^x − 1)`
    Elu(f32),
    /// `x·Φ(x)`, `Φ` the standard normal CDF (exact, with erf)
    Gelu,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`
    GeluTanh,
    /// `x·σ(x)` (also called swish)
    Silu,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl Act {
    /// `f(x)`.
    #[inline]
    pub fn f(self, x: f32) -> f32 {
        match self {
            Act::Sigmoid => sigmoid(x),
            Act::Tanh => x.tanh(),
            Act::Relu => x.max(0.0),
            Act::LeakyRelu(s) => {
                if x > 0.0 {
                    x
                } else {
                    s * x
                }
            }
            Act::Elu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            Act::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Act::GeluTanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_C * x * x * x)).tanh()),
            Act::Silu => x * sigmoid(x),
        }
    }

    /// `f'(x)`, given the input `x` and the output `y = f(x)`.
    #[inline]
    pub fn df(self, x: f32, y: f32) -> f32 {
        match self {
            Act::Sigmoid => y * (1.0 - y),
            Act::Tanh => 1.0 - y * y,
            Act::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Act::LeakyRelu(s) => {
                if x > 0.0 {
                    1.0
                } else {
                    s
                }
            }
            Act::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    y + a
                }
            }
            Act::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
                cdf + x * pdf
            }
            Act::GeluTanh => {
                let inner = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
                let t = inner.tanh();
                let dinner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner
            }
            Act::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
        }
    }
}

/// `y[i] = act(x[i])`.
pub fn act_forward(act: Act, x: &[f32], y: &mut [f32]) {
    #[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
    fn relu(xs: &[f32], ys: &mut [f32]) {
        ys.iter_mut().zip(xs).for_each(|(o, &v)| *o = v.max(0.0));
    }
    let run = |xs: &[f32], ys: &mut [f32]| {
        if act == Act::Relu {
            relu(xs, ys);
        } else {
            ys.iter_mut().zip(xs).for_each(|(o, &v)| *o = act.f(v));
        }
    };
    if x.len() >= PAR_MIN {
        y.par_chunks_mut(PAR_CHUNK)
            .zip(x.par_chunks(PAR_CHUNK))
            .for_each(|(ys, xs)| run(xs, ys));
    } else {
        run(x, y);
    }
}

/// `dx[i] = act'(x[i]) · dy[i]` given the forward input `x` and output `y`.
pub fn act_backward(act: Act, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    #[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
    fn relu(xs: &[f32], dys: &[f32], dxs: &mut [f32]) {
        for ((o, &g), &v) in dxs.iter_mut().zip(dys).zip(xs) {
            *o = if v > 0.0 { g } else { 0.0 };
        }
    }
    let run = |xs: &[f32], ys: &[f32], dys: &[f32], dxs: &mut [f32]| {
        if act == Act::Relu {
            relu(xs, dys, dxs);
        } else {
            for i in 0..dxs.len() {
                dxs[i] = act.df(xs[i], ys[i]) * dys[i];
            }
        }
    };
    if x.len() >= PAR_MIN {
        dx.par_chunks_mut(PAR_CHUNK)
            .zip(x.par_chunks(PAR_CHUNK))
            .zip(y.par_chunks(PAR_CHUNK).zip(dy.par_chunks(PAR_CHUNK)))
            .for_each(|((dxs, xs), (ys, dys))| run(xs, ys, dys, dxs));
    } else {
        run(x, y, dy, dx);
    }
}

/// `dst[i] *= src[i]`.
pub fn mul_into(dst: &mut [f32], src: &[f32]) {
    if dst.len() >= PAR_MIN {
        dst.par_chunks_mut(PAR_CHUNK)
            .zip(src.par_chunks(PAR_CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(a, b)| *a *= b));
    } else {
        dst.iter_mut().zip(src).for_each(|(a, b)| *a *= b);
    }
}

/// Elements per parallel task of the Mish maps.
const MISH_CHUNK: usize = 1 << 14;

/// `(tanh(softplus(x)), σ(x))` in f64.
fn parts(x: f32) -> (f64, f64) {
    let x = x as f64;
    // softplus without overflow: for large x, ln(1 + eˣ) = x + ln(1 + e⁻ˣ).
    let sp = if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    };
    (sp.tanh(), 1.0 / (1.0 + (-x).exp()))
}

/// Mish: `y = x·tanh(softplus(x))` (in f64, rounded once).
pub fn mish_forward(x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(MISH_CHUNK)
        .zip(x.par_chunks(MISH_CHUNK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = (x as f64 * parts(x).0) as f32;
            }
        });
}

/// Mish's backward: `dx = dy·(tanh(sp) + x·σ(x)·(1 − tanh²(sp)))`, `sp = softplus(x)`.
pub fn mish_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(MISH_CHUNK)
        .zip(x.par_chunks(MISH_CHUNK).zip(dy.par_chunks(MISH_CHUNK)))
        .for_each(|(dx, (x, dy))| {
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                let (t, s) = parts(x);
                *dx = (dy as f64 * (t + x as f64 * s * (1.0 - t * t))) as f32;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Act; 9] = [
        Act::Sigmoid,
        Act::Tanh,
        Act::Relu,
        Act::LeakyRelu(0.1),
        Act::Elu(1.0),
        Act::Elu(0.5),
        Act::Gelu,
        Act::GeluTanh,
        Act::Silu,
    ];

    #[test]
    fn derivatives_match_central_differences_in_f64_of_the_formula() {
        for act in ALL {
            for &x in &[-3.1f32, -1.2, -0.3, 0.2, 0.7, 2.5] {
                let h = 1e-2f32;
                let fd = (act.f(x + h) as f64 - act.f(x - h) as f64) / (2.0 * h as f64);
                let an = act.df(x, act.f(x)) as f64;
                assert!(
                    (fd - an).abs() < 2e-3 * (1.0 + an.abs()),
                    "{act:?} at {x}: {fd} vs {an}"
                );
            }
        }
    }

    #[test]
    fn parallel_and_serial_paths_agree() {
        let x: Vec<f32> = (0..PAR_MIN + 77)
            .map(|i| ((i % 97) as f32 - 48.0) / 10.0)
            .collect();
        for act in ALL {
            let mut y = vec![0.0; x.len()];
            act_forward(act, &x, &mut y);
            for (i, (&xv, &yv)) in x.iter().zip(&y).enumerate() {
                assert_eq!(yv, act.f(xv), "{act:?} at {i}");
            }
            let dy: Vec<f32> = x.iter().map(|v| v * 0.5 - 1.0).collect();
            let mut dx = vec![0.0; x.len()];
            act_backward(act, &x, &y, &dy, &mut dx);
            for i in (0..x.len()).step_by(101) {
                assert_eq!(dx[i], act.df(x[i], y[i]) * dy[i]);
            }
        }
    }
}
