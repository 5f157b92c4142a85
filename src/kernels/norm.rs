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
//! Segment sums are taken in f64 (mean and M2 per segment, combined with Chan's formula
//! in a fixed order), so the statistics do not depend on the thread count.
//! The channels-only LayerNorm (statistics over `C` at each `(n, h, w)`) has its own
//! kernels at the end of this file, since its reduction runs across segments.

use rayon::prelude::*;

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

/// Mean and sum of squared deviations of one segment, in f64.
fn seg_moments(s: &[f32]) -> (f64, f64) {
    if s.is_empty() {
        return (0.0, 0.0);
    }
    let mean = s.iter().map(|&v| v as f64).sum::<f64>() / s.len() as f64;
    let m2 = s.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>();
    (mean, m2)
}

/// Batch statistics: writes `mean[s]` and biased `var[s]` for every statistic.
pub fn norm_stats(axes: NormAxes, d: NormDims, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
    let seg: Vec<(f64, f64)> = if d.hw == 0 {
        vec![(0.0, 0.0); d.n * d.c]
    } else {
        x.par_chunks(d.hw).map(seg_moments).collect()
    };
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

/// `y = γ_c·(x − mean_s)·rstd_s + β_c` (γ = 1, β = 0 when absent).
#[allow(clippy::too_many_arguments)]
pub fn norm_apply(
    axes: NormAxes,
    d: NormDims,
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
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
            ys.iter_mut()
                .zip(xs)
                .for_each(|(o, &v)| *o = v * scale + shift);
        });
}

/// Backward of [`norm_apply`]. With `batch_stats` the statistics are those of `x` itself
/// (training-mode BatchNorm, every GroupNorm); without, they are constants (eval-mode
/// BatchNorm). `dx` is overwritten; `dgamma`, `dbeta` are accumulated into.
#[allow(clippy::too_many_arguments)]
pub fn norm_backward(
    axes: NormAxes,
    d: NormDims,
    batch_stats: bool,
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    gamma: Option<&[f32]>,
    dy: &[f32],
    dx: &mut [f32],
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
) {
    if d.hw == 0 {
        return;
    }
    // Per segment: Σ dy and Σ dy·x̂.
    let seg: Vec<(f64, f64)> = dy
        .par_chunks(d.hw)
        .zip(x.par_chunks(d.hw))
        .enumerate()
        .map(|(seg, (dys, xs))| {
            let s = axes.stat_of(d, seg / d.c, seg % d.c);
            let (m, r) = (mean[s] as f64, rstd[s] as f64);
            let mut sdy = 0.0f64;
            let mut sdyx = 0.0f64;
            for (&g, &v) in dys.iter().zip(xs) {
                sdy += g as f64;
                sdyx += g as f64 * (v as f64 - m) * r;
            }
            (sdy, sdyx)
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
    dx.par_chunks_mut(d.hw)
        .zip(dy.par_chunks(d.hw).zip(x.par_chunks(d.hw)))
        .enumerate()
        .for_each(|(seg, (dxs, (dys, xs)))| {
            let (n, c) = (seg / d.c, seg % d.c);
            let s = axes.stat_of(d, n, c);
            let gc = gamma.map_or(1.0, |g| g[c]);
            let r = rstd[s];
            let (a, b) = (mdy[s] as f32, mdyx[s] as f32);
            for ((o, &g), &v) in dxs.iter_mut().zip(dys).zip(xs) {
                let xhat = (v - mean[s]) * r;
                *o = r * (gc * g - a - xhat * b);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
