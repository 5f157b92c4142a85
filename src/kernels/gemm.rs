//! Matrix multiply: the one safe wrapper around the `gemm` crate.
//!
//! `c[m×n] (=|+=) op(a)[m×k] · op(b)[k×n]`, all matrices row-major and contiguous.
//! `op(a)` is `a` stored `[m, k]`, or, with `Trans::Yes`, `aᵀ` where `a` is stored `[k, m]`
//! (same for `b`: `[k, n]` or stored `[n, k]`). Transposes cost nothing: they are strides.
//!
//! The `gemm` crate computes `dst = alpha·dst + beta·lhs·rhs` (its scalars are the reverse
//! of BLAS); this module is the only place that knows it. Why `gemm` and not another
//! crate: see `docs/gemm.md`.

use crate::error::{Error, Result};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    No,
    /// Use the transpose of the stored matrix.
    Yes,
}

/// Whether the product overwrites or accumulates into the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accumulate {
    /// `c = a·b`
    No,
    /// `c += a·b`
    Yes,
}

/// Threading of one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// Run on the calling thread (the caller is already parallel).
    Seq,
    /// Use every thread of the current rayon pool.
    Rayon,
}

/// `c (=|+=) op(a) · op(b)`; see the module documentation for the layouts.
///
/// Returns an error if a slice is shorter than its dimensions require.
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
    par: Par,
) -> Result<()> {
    if a.len() < m * k || b.len() < k * n || c.len() < m * n {
        return Err(Error::shape(
            "matmul",
            format!(
                "a ≥ {}, b ≥ {}, c ≥ {} elements (m={m}, n={n}, k={k})",
                m * k,
                k * n,
                m * n
            ),
            &[a.len(), b.len(), c.len()],
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if acc == Accumulate::No {
            c[..m * n].iter_mut().for_each(|v| *v = 0.0);
        }
        return Ok(());
    }
    // Strides in elements: (row stride, column stride) of op(a), op(b) and c.
    let (a_rs, a_cs) = match ta {
        Trans::No => (k as isize, 1),
        Trans::Yes => (1, m as isize),
    };
    let (b_rs, b_cs) = match tb {
        Trans::No => (n as isize, 1),
        Trans::Yes => (1, k as isize),
    };
    let parallelism = match par {
        Par::Seq => gemm::Parallelism::None,
        Par::Rayon => match rayon::current_num_threads() {
            0 | 1 => gemm::Parallelism::None,
            t => gemm::Parallelism::Rayon(t),
        },
    };
    // SAFETY: the length checks above guarantee that every index the strides can reach
    // (max (m-1)·rs + (k-1)·cs for a, likewise b and c) lies inside its slice; `c` is
    // borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,                      // dst column stride
            n as isize,             // dst row stride
            acc == Accumulate::Yes, // read dst
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0, // alpha: weight of the old dst
            1.0, // beta: weight of lhs·rhs
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::naive;
    use rand::{Rng, SeedableRng};

    fn rand_vec(len: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn matches_naive_on_awkward_shapes_layouts_and_threads() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let shapes = [
            (0, 3, 2),
            (3, 0, 2),
            (2, 3, 0),
            (1, 1, 1),
            (1, 17, 5),
            (63, 1, 9),
            (7, 9, 64),
            (64, 49, 288),
            (33, 130, 17),
        ];
        for &(m, n, k) in &shapes {
            for ta in [Trans::No, Trans::Yes] {
                for tb in [Trans::No, Trans::Yes] {
                    for acc in [Accumulate::No, Accumulate::Yes] {
                        for par in [Par::Seq, Par::Rayon] {
                            let a = rand_vec(m * k, &mut rng);
                            let b = rand_vec(k * n, &mut rng);
                            let c0 = rand_vec(m * n, &mut rng);
                            let mut c = c0.clone();
                            let mut want = c0.clone();
                            matmul(m, n, k, &a, ta, &b, tb, &mut c, acc, par).unwrap();
                            naive::matmul(m, n, k, &a, ta, &b, tb, &mut want, acc);
                            for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                                assert!(
                                    (x - y).abs() <= 1e-5 * (1.0 + k as f32),
                                    "m={m} n={n} k={k} {ta:?} {tb:?} {acc:?} {par:?} at {i}: {x} vs {y}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn short_slices_are_an_error_not_a_panic() {
        let mut c = vec![0.0; 4];
        let err = matmul(
            2,
            2,
            2,
            &[1.0; 3],
            Trans::No,
            &[1.0; 4],
            Trans::No,
            &mut c,
            Accumulate::No,
            Par::Seq,
        );
        assert!(err.is_err());
    }
}
