//! Normalization statistics, shared by BatchNorm, GroupNorm, LayerNorm and InstanceNorm.
//!
//! The four layers differ only in which elements share a mean and variance (the
//! lecture's picture). Viewing `x` as `[N, C, HW]`, a statistic `s` covers whole
//! `HW`-segments `(n, c)`:
//! - [`NormAxes::PerChannel`] (BatchNorm): `s = c`, over all `n` and `hw`;
//! - [`NormAxes::PerSampleGroup`]`(G)`: `s = n·G + c / (C/G)`, over the group's channels
//!   and `hw` — GroupNorm; `G = 1` is LayerNorm, `G = C` is InstanceNorm.
//!
//! Forward: `x̂ = (x − μ_s)·rstd_s`, `rstd_s = 1/√(σ²_s + eps)` (biased variance),
//! `y = γ_c·x̂ + β_c`.
//! Backward with batch statistics, where `M` is the number of elements of `s`:
//! `dx = rstd_s·(γ_c·dy − mean_s(γ·dy) − x̂·mean_s(γ·dy·x̂))`,
//! `dγ_c += Σ dy·x̂`, `dβ_c += Σ dy` (over `n, hw`).
//!
//! Segment sums are blocked: 4 × 16 f32 lanes over blocks of 1,024 elements, each
//! block's lanes added in f64 (so a lane never sums more than 64 values in f32), then the
//! segments' mean and M2 combined with Chan's formula in f64 in a fixed order: accurate,
//! vectorizable, and independent of the thread count. The loops are compiled for AVX-512
//! and AVX2 as well as the baseline, and the widest the running CPU has is chosen at run
//! time (`multiversion`).
//! The channels-only LayerNorm (statistics over `C` at each `(n, h, w)`) has its own
//! kernels at the end of this file, since its reduction runs across segments.

use multiversion::multiversion;
use rayon::prelude::*;

/// f32 lanes of the blocked sums.
const LANES: usize = 16;
/// Elements per block of the blocked sums (16 per lane and accumulator).
const BLOCK: usize = 1024;
/// Independent accumulators of the blocked sums.
const WAYS: usize = 4;

/// `Σ` over a block's accumulators, lane by lane in f32 (each lane then holds the sum
/// of 64 values), then across the lanes in f64, halving in a tree (a serial chain of
/// 16 f64 adds per block cost as much as the block's sums on an 8×8 plane).
#[inline(always)]
fn fold_lanes(acc: &[[f32; LANES]; WAYS]) -> f64 {
    let mut v = [0.0f64; LANES];
    for (i, o) in v.iter_mut().enumerate() {
        *o = ((acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i])) as f64;
    }
    let mut n = LANES / 2;
    while n > 0 {
        for i in 0..n {
            v[i] += v[i + n];
        }
        n /= 2;
    }
    v[0]
}

/// `Σ (s[i] − m)` and `Σ (s[i] − m)²`, blocked (see the module notes).
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn dev_sums(s: &[f32], m: f32) -> (f64, f64) {
    let (mut t1, mut t2) = (0.0f64, 0.0f64);
    for blk in s.chunks(BLOCK) {
        // WAYS independent accumulators: one pair would wait on the add before it (a
        // chain 4 cycles long per vector); the sums are 4× faster this way.
        let (mut a1, mut a2) = ([[0.0f32; LANES]; WAYS], [[0.0f32; LANES]; WAYS]);
        let mut it = blk.chunks_exact(WAYS * LANES);
        for c in &mut it {
            for w in 0..WAYS {
                for i in 0..LANES {
                    let d = c[w * LANES + i] - m;
                    a1[w][i] += d;
                    a2[w][i] += d * d;
                }
            }
        }
        for &v in it.remainder() {
            let d = (v - m) as f64;
            t1 += d;
            t2 += d * d;
        }
        t1 += fold_lanes(&a1);
        t2 += fold_lanes(&a2);
    }
    (t1, t2)
}

/// `Σ g[i]` and `Σ g[i]·(x[i] − m)`, blocked, with [`WAYS`] accumulators as in
/// [`dev_sums`].
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn grad_sums(g: &[f32], x: &[f32], m: f32) -> (f64, f64) {
    let (mut t1, mut t2) = (0.0f64, 0.0f64);
    for (gb, xb) in g.chunks(BLOCK).zip(x.chunks(BLOCK)) {
        let (mut a1, mut a2) = ([[0.0f32; LANES]; WAYS], [[0.0f32; LANES]; WAYS]);
        let mut gi = gb.chunks_exact(WAYS * LANES);
        let mut xi = xb.chunks_exact(WAYS * LANES);
        for (gc, xc) in (&mut gi).zip(&mut xi) {
            for w in 0..WAYS {
                for l in 0..LANES {
                    let k = w * LANES + l;
                    a1[w][l] += gc[k];
                    a2[w][l] += gc[k] * (xc[k] - m);
                }
            }
        }
        for (&gv, &xv) in gi.remainder().iter().zip(xi.remainder()) {
            t1 += gv as f64;
            t2 += gv as f64 * (xv - m) as f64;
        }
        t1 += fold_lanes(&a1);
        t2 += fold_lanes(&a2);
    }
    (t1, t2)
}

/// `y = x·scale + shift`, then `max(0, y)` with a fused ReLU.
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn affine<const RELU: bool>(x: &[f32], y: &mut [f32], scale: f32, shift: f32) {
    for (o, &v) in y.iter_mut().zip(x) {
        let a = v * scale + shift;
        *o = if RELU { a.max(0.0) } else { a };
    }
}

/// `dx = r·(gc·dy − a − (x − m)·r·b)`; with `dy` = `None`, `dx` holds `dy` on entry
/// (in place).
#[multiversion(targets("x86_64+avx512f+avx2+fma", "x86_64+avx2+fma"))]
fn backward_apply(
    dx: &mut [f32],
    dy: Option<&[f32]>,
    x: &[f32],
    (m, r): (f32, f32),
    gc: f32,
    (a, b): (f32, f32),
) {
    let f = |g: f32, xv: f32| r * (gc * g - a - (xv - m) * r * b);
    match dy {
        Some(dy) => {
            for ((o, &g), &xv) in dx.iter_mut().zip(dy).zip(x) {
                *o = f(g, xv);
            }
        }
        None => {
            for (o, &xv) in dx.iter_mut().zip(x) {
                *o = f(*o, xv);
            }
        }
    }
}

/// Which elements share one mean and variance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormAxes {
    /// One statistic per channel over `(N, H, W)`: BatchNorm.
    PerChannel,
    /// One statistic per sample and group of `C/G` channels over `(C/G, H, W)`.
    PerSampleGroup(usize),
}

/// Dimensions of a normalized tensor viewed as `[n, c, hw]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormDims {
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Elements per channel plane (`H·W`).
    pub hw: usize,
}

impl NormAxes {
    /// Number of statistics.
    pub fn stat_count(self, d: NormDims) -> usize {
        match self {
            NormAxes::PerChannel => d.c,
            NormAxes::PerSampleGroup(g) => d.n * g,
        }
    }

    /// The statistic that segment `(n, c)` belongs to.
    #[inline]
    pub fn stat_of(self, d: NormDims, n: usize, c: usize) -> usize {
        match self {
            NormAxes::PerChannel => c,
            NormAxes::PerSampleGroup(g) => n * g + c / (d.c / g),
        }
    }

    /// Number of elements that each statistic covers.
    pub fn count(self, d: NormDims) -> usize {
        match self {
            NormAxes::PerChannel => d.n * d.hw,
            NormAxes::PerSampleGroup(g) => d.c / g * d.hw,
        }
    }
}

/// Mean and sum of squared deviations (M2) of one segment, in one pass: deviations from a
/// shift `x₀`, the mean of the first 16 elements (inside the data's range, so close to
/// the mean for any sensible input), `M2 = Σ(x − x₀)² − n·(μ − x₀)²`.
pub fn seg_moments(s: &[f32]) -> (f64, f64) {
    if s.is_empty() {
        return (0.0, 0.0);
    }
    let head = &s[..s.len().min(LANES)];
    let x0 = (head.iter().map(|&v| v as f64).sum::<f64>() / head.len() as f64) as f32;
    let n = s.len() as f64;
    let (d1, d2) = dev_sums(s, x0);
    let off = d1 / n;
    (x0 as f64 + off, (d2 - n * off * off).max(0.0))
}

/// Batch statistics: writes `mean[s]` and biased `var[s]` for every statistic.
pub fn norm_stats(axes: NormAxes, d: NormDims, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
    let seg: Vec<(f64, f64)> = if d.hw == 0 {
        vec![(0.0, 0.0); d.n * d.c]
    } else {
        x.par_chunks(d.hw).map(seg_moments).collect()
    };
    norm_stats_from(axes, d, &seg, mean, var);
}

/// [`norm_stats`] from the [`seg_moments`] of every `(n, c)` segment, in segment order
/// (computed elsewhere, e.g. by the layer that wrote `x` while it was in cache): the
/// same merge, so the same statistics bit for bit.
pub fn norm_stats_from(
    axes: NormAxes,
    d: NormDims,
    seg: &[(f64, f64)],
    mean: &mut [f32],
    var: &mut [f32],
) {
    assert_eq!(seg.len(), d.n * d.c, "one moment pair per (n, c) segment");
    let stats = axes.stat_count(d);
    // (count, mean, m2) per statistic, merged segment by segment in index order.
    let mut acc = vec![(0.0f64, 0.0f64, 0.0f64); stats];
    for n in 0..d.n {
        for c in 0..d.c {
            let (sm, sm2) = seg[n * d.c + c];
            let a = &mut acc[axes.stat_of(d, n, c)];
            let nb = d.hw as f64;
            let tot = a.0 + nb;
            if tot > 0.0 {
                let delta = sm - a.1;
                a.1 += delta * nb / tot;
                a.2 += sm2 + delta * delta * a.0 * nb / tot;
                a.0 = tot;
            }
        }
    }
    for (s, a) in acc.iter().enumerate() {
        mean[s] = a.1 as f32;
        var[s] = if a.0 > 0.0 { (a.2 / a.0) as f32 } else { 0.0 };
    }
}

/// `y = γ_c·(x − mean_s)·rstd_s + β_c` (γ = 1, β = 0 when absent), followed by
/// `max(0, y)` when `relu` (a ReLU fused into the same pass).
#[allow(clippy::too_many_arguments)]
pub fn norm_apply(
    axes: NormAxes,
    d: NormDims,
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    if d.hw == 0 {
        return;
    }
    y.par_chunks_mut(d.hw)
        .zip(x.par_chunks(d.hw))
        .enumerate()
        .for_each(|(seg, (ys, xs))| {
            let (n, c) = (seg / d.c, seg % d.c);
            let s = axes.stat_of(d, n, c);
            let scale = rstd[s] * gamma.map_or(1.0, |g| g[c]);
            let shift = beta.map_or(0.0, |b| b[c]) - mean[s] * scale;
            if relu {
                affine::<true>(xs, ys, scale, shift);
            } else {
                affine::<false>(xs, ys, scale, shift);
            }
        });
}

/// Backward of [`norm_apply`]. With `batch_stats` the statistics are those of `x` itself
/// (training-mode BatchNorm, every GroupNorm); without, they are constants (eval-mode
/// BatchNorm). `dx` is overwritten; `dgamma`, `dbeta` are accumulated into. With
/// `relu_out`, the forward pass had a fused ReLU whose output this is: `dy` is taken as
/// zero where it is 0.
#[allow(clippy::too_many_arguments)]
pub fn norm_backward(
    axes: NormAxes,
    d: NormDims,
    batch_stats: bool,
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    gamma: Option<&[f32]>,
    relu_out: Option<&[f32]>,
    dy: &[f32],
    dx: &mut [f32],
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
) {
    if d.hw == 0 {
        return;
    }
    // A fused ReLU: its backward first (dy where the output is positive), into `dx`,
    // which then serves as the upstream gradient; the last pass turns it into dx in place.
    if let Some(y) = relu_out {
        crate::kernels::eltwise::relu_backward_from_output(y, dy, dx);
    }
    let in_place = relu_out.is_some();
    // Per segment: Σ dy and Σ dy·x̂.
    let hw = d.hw;
    fn segment(v: &[f32], seg: usize, hw: usize) -> &[f32] {
        v.get(seg * hw..(seg + 1) * hw).unwrap_or(&[])
    }
    let dx_ro: &[f32] = dx;
    let seg: Vec<(f64, f64)> = (0..d.n * d.c)
        .into_par_iter()
        .map(|seg| {
            let s = axes.stat_of(d, seg / d.c, seg % d.c);
            let g = if in_place {
                segment(dx_ro, seg, hw)
            } else {
                segment(dy, seg, hw)
            };
            let (sdy, sdyxm) = grad_sums(g, segment(x, seg, hw), mean[s]);
            (sdy, sdyxm * rstd[s] as f64)
        })
        .collect();
    if let Some(dg) = dgamma {
        for (c, v) in dg.iter_mut().enumerate() {
            *v += (0..d.n).map(|n| seg[n * d.c + c].1).sum::<f64>() as f32;
        }
    }
    if let Some(db) = dbeta {
        for (c, v) in db.iter_mut().enumerate() {
            *v += (0..d.n).map(|n| seg[n * d.c + c].0).sum::<f64>() as f32;
        }
    }
    // Per statistic: mean(γ·dy) and mean(γ·dy·x̂).
    let stats = axes.stat_count(d);
    let mut mdy = vec![0.0f64; stats];
    let mut mdyx = vec![0.0f64; stats];
    if batch_stats {
        for n in 0..d.n {
            for c in 0..d.c {
                let s = axes.stat_of(d, n, c);
                let gc = gamma.map_or(1.0, |g| g[c]) as f64;
                mdy[s] += gc * seg[n * d.c + c].0;
                mdyx[s] += gc * seg[n * d.c + c].1;
            }
        }
        let m = axes.count(d).max(1) as f64;
        mdy.iter_mut().chain(mdyx.iter_mut()).for_each(|v| *v /= m);
    }
    dx.par_chunks_mut(d.hw).enumerate().for_each(|(seg, dxs)| {
        let (n, c) = (seg / d.c, seg % d.c);
        let s = axes.stat_of(d, n, c);
        let gc = gamma.map_or(1.0, |g| g[c]);
        let st = (mean[s], rstd[s]);
        let ab = (mdy[s] as f32, mdyx[s] as f32);
        let dys = (!in_place).then(|| segment(dy, seg, hw));
        backward_apply(dxs, dys, segment(x, seg, hw), st, gc, ab);
    });
}

/// Channels-only LayerNorm forward over `x[n, c, hw]`: statistics over `c` at each
/// `(n, hw)`; writes `y`, and `mean`/`rstd` of shape `[n, hw]`.
#[allow(clippy::too_many_arguments)]
pub fn channel_norm_forward(
    d: NormDims,
    eps: f32,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    let img = d.c * d.hw;
    if img == 0 {
        return;
    }
    y.par_chunks_mut(img)
        .zip(x.par_chunks(img))
        .zip(mean.par_chunks_mut(d.hw).zip(rstd.par_chunks_mut(d.hw)))
        .for_each(|((yi, xi), (mi, ri))| {
            let mut sum = vec![0.0f64; d.hw];
            for plane in xi.chunks_exact(d.hw) {
                sum.iter_mut().zip(plane).for_each(|(s, &v)| *s += v as f64);
            }
            sum.iter_mut().for_each(|s| *s /= d.c as f64);
            let mut m2 = vec![0.0f64; d.hw];
            for plane in xi.chunks_exact(d.hw) {
                for ((q, &v), &m) in m2.iter_mut().zip(plane).zip(&sum) {
                    *q += (v as f64 - m).powi(2);
                }
            }
            for p in 0..d.hw {
                mi[p] = sum[p] as f32;
                ri[p] = (1.0 / (m2[p] / d.c as f64 + eps as f64).sqrt()) as f32;
            }
            for (c, (yp, xp)) in yi
                .chunks_exact_mut(d.hw)
                .zip(xi.chunks_exact(d.hw))
                .enumerate()
            {
                for p in 0..d.hw {
                    yp[p] = (xp[p] - mi[p]) * ri[p] * gamma[c] + beta[c];
                }
            }
        });
}

/// Backward of [`channel_norm_forward`]: `dx` overwritten, `dgamma`/`dbeta` accumulated.
#[allow(clippy::too_many_arguments)]
pub fn channel_norm_backward(
    d: NormDims,
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let img = d.c * d.hw;
    if img == 0 {
        return;
    }
    // Per image: dγ, dβ partials and dx.
    let partials: Vec<(Vec<f64>, Vec<f64>)> = dx
        .par_chunks_mut(img)
        .zip(x.par_chunks(img).zip(dy.par_chunks(img)))
        .zip(mean.par_chunks(d.hw).zip(rstd.par_chunks(d.hw)))
        .map(|((dxi, (xi, dyi)), (mi, ri))| {
            let mut dg = vec![0.0f64; d.c];
            let mut db = vec![0.0f64; d.c];
            let mut a = vec![0.0f64; d.hw]; // Σ_c γ·dy
            let mut b = vec![0.0f64; d.hw]; // Σ_c γ·dy·x̂
            for c in 0..d.c {
                let (xp, gp) = (
                    &xi[c * d.hw..(c + 1) * d.hw],
                    &dyi[c * d.hw..(c + 1) * d.hw],
                );
                for p in 0..d.hw {
                    let xhat = ((xp[p] - mi[p]) * ri[p]) as f64;
                    let g = gp[p] as f64;
                    dg[c] += g * xhat;
                    db[c] += g;
                    a[p] += gamma[c] as f64 * g;
                    b[p] += gamma[c] as f64 * g * xhat;
                }
            }
            let inv_c = 1.0 / d.c as f64;
            for (c, &gc) in gamma.iter().enumerate() {
                for p in 0..d.hw {
                    let i = c * d.hw + p;
                    let xhat = ((xi[i] - mi[p]) * ri[p]) as f64;
                    let v = gc as f64 * dyi[i] as f64 - a[p] * inv_c - xhat * b[p] * inv_c;
                    dxi[i] = (ri[p] as f64 * v) as f32;
                }
            }
            (dg, db)
        })
        .collect();
    for (dg, db) in partials {
        dgamma.iter_mut().zip(dg).for_each(|(o, v)| *o += v as f32);
        dbeta.iter_mut().zip(db).for_each(|(o, v)| *o += v as f32);
    }
}

/// Normalization over rows of `m` contiguous values (PyTorch's `LayerNorm` over a
/// trailing `normalized_shape`), with an optional per-element weight and bias of length
/// `m`. Mean and biased variance per row in f64.
pub struct RowNorm<'a> {
    /// Values per row.
    pub m: usize,
    /// Added to the variance.
    pub eps: f32,
    /// Per-element scale, if any.
    pub weight: Option<&'a [f32]>,
    /// Per-element shift, if any.
    pub bias: Option<&'a [f32]>,
}

impl RowNorm<'_> {
    /// `y = x̂·w + b` with `x̂ = (x − μ)·r`; writes `x̂` and `r = 1/σ` per row for backward.
    pub fn forward(&self, x: &[f32], y: &mut [f32], xhat: &mut [f32], rstd: &mut [f32]) {
        let (m, eps, w, b) = (self.m, self.eps as f64, self.weight, self.bias);
        y.par_chunks_mut(m)
            .zip(xhat.par_chunks_mut(m))
            .zip(rstd.par_iter_mut())
            .zip(x.par_chunks(m))
            .for_each(|(((y, xh), r), x)| {
                let mean = x.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
                let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m as f64;
                let rs = 1.0 / (var + eps).sqrt();
                *r = rs as f32;
                for (i, (xh, &v)) in xh.iter_mut().zip(x).enumerate() {
                    let h = ((v as f64 - mean) * rs) as f32;
                    *xh = h;
                    y[i] = match (w, b) {
                        (Some(w), Some(b)) => h * w[i] + b[i],
                        (Some(w), None) => h * w[i],
                        _ => h,
                    };
                }
            });
    }

    /// `dx = r·(g − mean(g) − x̂·mean(g·x̂))` per row, with `g = dy·w`.
    pub fn backward(&self, xhat: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (m, w) = (self.m, self.weight);
        dx.par_chunks_mut(m)
            .zip(xhat.par_chunks(m))
            .zip(rstd.par_iter())
            .zip(dy.par_chunks(m))
            .for_each(|(((dx, xh), &r), dy)| {
                let g = |i: usize| dy[i] as f64 * w.map_or(1.0, |w| w[i] as f64);
                let (mut sg, mut sgx) = (0.0f64, 0.0f64);
                for (i, &h) in xh.iter().enumerate() {
                    sg += g(i);
                    sgx += g(i) * h as f64;
                }
                let (mg, mgx) = (sg / m as f64, sgx / m as f64);
                for (i, (d, &h)) in dx.iter_mut().zip(xh).enumerate() {
                    *d = (r as f64 * (g(i) - mg - h as f64 * mgx)) as f32;
                }
            });
    }

    /// `(Σ_rows dy·x̂, Σ_rows dy)` element by element: the weight and bias gradients.
    pub fn param_grads(m: usize, xhat: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let rows = dy.len() / m.max(1);
        (0..m)
            .into_par_iter()
            .map(|i| {
                let (mut w, mut b) = (0.0f64, 0.0f64);
                for r in 0..rows {
                    let k = r * m + i;
                    w += dy[k] as f64 * xhat[k] as f64;
                    b += dy[k] as f64;
                }
                (w as f32, b as f32)
            })
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_moments(s: &[f32]) -> (f64, f64) {
        let n = s.len() as f64;
        let mean = s.iter().map(|&v| v as f64).sum::<f64>() / n;
        (mean, s.iter().map(|&v| (v as f64 - mean).powi(2)).sum())
    }

    #[test]
    fn blocked_moments_are_as_accurate_as_f64_on_hard_segments() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // Lengths around the lane and block sizes; a large offset with a small spread;
        // a first element far from the mean; a constant segment.
        for len in [1, 7, 16, 17, 1023, 1024, 1025, 3137, 50_176] {
            let cases: [Vec<f32>; 3] = [
                (0..len)
                    .map(|_| 1000.0 + rng.random_range(-0.01..0.01))
                    .collect(),
                (0..len)
                    .map(|i| {
                        if i == 0 {
                            40.0
                        } else {
                            rng.random_range(-1.0..1.0)
                        }
                    })
                    .collect(),
                vec![0.25; len],
            ];
            for s in &cases {
                let (m, m2) = seg_moments(s);
                let (em, em2) = exact_moments(s);
                // f32 rounding of the data's own scale, as in PyTorch's f32 statistics.
                let scale = s.iter().fold(0.0f64, |a, &v| a.max((v as f64).abs()));
                assert!(
                    (m - em).abs() <= 1e-6 * scale.max(1e-3),
                    "len {len}: mean {m} vs {em}"
                );
                let tol = 1e-4 * em2 + 1e-9 * len as f64 * scale.max(1.0);
                assert!((m2 - em2).abs() <= tol, "len {len}: M2 {m2} vs {em2}");
            }
        }
    }

    #[test]
    fn stats_match_a_direct_two_pass_computation() {
        let d = NormDims { n: 3, c: 4, hw: 5 };
        let x: Vec<f32> = (0..60)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3 + 100.0)
            .collect();
        for axes in [
            NormAxes::PerChannel,
            NormAxes::PerSampleGroup(2),
            NormAxes::PerSampleGroup(4),
        ] {
            let k = axes.stat_count(d);
            let (mut m, mut v) = (vec![0.0; k], vec![0.0; k]);
            norm_stats(axes, d, &x, &mut m, &mut v);
            for s in 0..k {
                let mut vals = vec![];
                for n in 0..d.n {
                    for c in 0..d.c {
                        if axes.stat_of(d, n, c) == s {
                            vals.extend_from_slice(
                                &x[(n * d.c + c) * d.hw..(n * d.c + c + 1) * d.hw],
                            );
                        }
                    }
                }
                assert_eq!(vals.len(), axes.count(d));
                let mean = vals.iter().map(|&a| a as f64).sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>()
                    / vals.len() as f64;
                assert!((m[s] as f64 - mean).abs() < 1e-5, "{axes:?} mean {s}");
                assert!((v[s] as f64 - var).abs() < 1e-5, "{axes:?} var {s}");
            }
        }
    }
}
