//! Row-wise softmax and the fused softmax cross-entropy.
//!
//! For logits `z[N, C]`, `log p_ij = z_ij − logsumexp_j(z_i)`, computed with the row
//! maximum subtracted so that large logits do not overflow.

use rayon::prelude::*;

/// `p[i, :] = softmax(z[i, :])` for each of the `z.len() / c` rows.
pub fn softmax_rows(c: usize, z: &[f32], p: &mut [f32]) {
    if c == 0 {
        return;
    }
    p.par_chunks_mut(c)
        .zip(z.par_chunks(c))
        .for_each(|(pr, zr)| {
            let m = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut s = 0.0f64;
            for (o, &v) in pr.iter_mut().zip(zr) {
                *o = (v - m).exp();
                s += *o as f64;
            }
            let inv = (1.0 / s) as f32;
            pr.iter_mut().for_each(|v| *v *= inv);
        });
}

/// Mean softmax cross-entropy of logits `z[N, C]` against class indices `targets[N]`,
/// with label smoothing `eps` (the target distribution is `(1−eps)·onehot + eps/C`).
///
/// Writes `dz = (softmax(z) − q) / N` and returns the loss. Targets must be `< C`
/// (checked by the caller).
pub fn cross_entropy(c: usize, z: &[f32], targets: &[usize], eps: f32, dz: &mut [f32]) -> f64 {
    let n = targets.len();
    if n == 0 || c == 0 {
        return 0.0;
    }
    let inv_n = 1.0 / n as f64;
    let off = eps as f64 / c as f64;
    let on = 1.0 - eps as f64 + off;
    let losses: Vec<f64> = dz
        .par_chunks_mut(c)
        .zip(z.par_chunks(c))
        .zip(targets.par_iter())
        .map(|((dr, zr), &t)| {
            let m = zr.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let s: f64 = zr.iter().map(|&v| (v as f64 - m).exp()).sum();
            let lse = m + s.ln();
            let mut loss = 0.0;
            for (j, (d, &v)) in dr.iter_mut().zip(zr).enumerate() {
                let q = if j == t { on } else { off };
                let logp = v as f64 - lse;
                loss -= q * logp;
                *d = ((logp.exp() - q) * inv_n) as f32;
            }
            loss
        })
        .collect();
    losses.iter().sum::<f64>() * inv_n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_even_for_huge_logits() {
        let z = vec![1000.0, 1001.0, 999.0, -5.0, 0.0, 5.0];
        let mut p = vec![0.0; 6];
        softmax_rows(3, &z, &mut p);
        for r in p.chunks(3) {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(p[1] > p[0] && p[0] > p[2]);
    }

    #[test]
    fn uniform_logits_give_ln_c() {
        let z = vec![0.5; 40];
        let mut dz = vec![0.0; 40];
        let loss = cross_entropy(10, &z, &[0, 3, 9, 4], 0.0, &mut dz);
        assert!((loss - (10f64).ln()).abs() < 1e-6, "{loss}");
    }
}
