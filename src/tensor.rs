//! `Tensor`: a contiguous, row-major `f32` buffer and its shape.
//!
//! No views, no strides, no autodiff graph: layers compute their own backward pass
//! (see `nn`). The elements are shared between clones and copied on the first write
//! (`Arc::make_mut`), so a layer that keeps its input or output for backward pays no
//! copy: value semantics, without the memory traffic. Each tensor carries a stamp
//! ([`Tensor::stamp`]) that changes at every write, so what is derived from its elements
//! (a convolution's packed weights in inference) can be kept until they change. Shape
//! problems are reported as [`Error::ShapeMismatch`] naming both the expected and the
//! received shape.
//!
//! ```
//! use strata::Tensor;
//! let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
//! assert_eq!(t.shape(), &[2, 3]);
//! let [rows, cols] = t.dims2("example").unwrap();
//! assert_eq!(rows * cols, t.len());
//! ```

use crate::error::{Error, Result};
use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

/// Buffers of dropped tensors, handed to [`Tensor::for_overwrite`] (and reused by
/// [`Tensor::full`]) so that a training step's outputs neither come fresh from the
/// allocator nor get zeroed when a kernel writes every element anyway.
mod recycle {
    use std::sync::Mutex;

    /// Smaller buffers are left to the allocator (256 KiB and up are kept).
    pub const MIN_LEN: usize = 1 << 16;
    /// At most this many buffers and this many elements (256 MiB) are kept; the oldest
    /// go first.
    const MAX_BUFFERS: usize = 64;
    const MAX_ELEMS: usize = 64 << 20;

    static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

    /// A kept buffer of exactly `len` elements (the most recently kept one).
    pub fn take(len: usize) -> Option<Vec<f32>> {
        if len < MIN_LEN {
            return None;
        }
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let i = pool.iter().rposition(|v| v.len() == len)?;
        Some(pool.swap_remove(i))
    }

    /// Keeps `v` for a later [`take`].
    pub fn give(v: Vec<f32>) {
        if v.len() < MIN_LEN {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(v);
        let mut total: usize = pool.iter().map(Vec::len).sum();
        while pool.len() > MAX_BUFFERS || total > MAX_ELEMS {
            total -= pool.remove(0).len();
        }
    }
}

/// The storage a tensor leaves behind when it is dropped (shared, never written).
static EMPTY: LazyLock<Arc<Vec<f32>>> = LazyLock::new(|| Arc::new(Vec::new()));

/// The source of [`Tensor::stamp`]s: each new or written tensor takes the next value.
static STAMPS: AtomicU64 = AtomicU64::new(1);

/// A value no tensor's stamp had before (nor will have): a key for things derived from
/// tensors ([`Tensor::stamp`]).
pub(crate) fn fresh_stamp() -> u64 {
    STAMPS.fetch_add(1, Ordering::Relaxed)
}

/// A dense `f32` tensor in row-major (C) order. Cloning is cheap (the elements are
/// shared until one of the clones is written to).
#[derive(Clone, Debug)]
pub struct Tensor {
    data: Arc<Vec<f32>>,
    shape: Vec<usize>,
    /// See [`Tensor::stamp`].
    stamp: u64,
}

/// Equal shapes and elements (the stamps are not compared).
impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data == other.data
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor whose elements are unspecified (zeros, or the stale values of a dropped
    /// tensor's buffer): for outputs a kernel writes in full, without paying for zeroing
    /// them first. Safe (the values are ordinary floats), but a kernel that leaves an
    /// element unwritten hands stale numbers on.
    pub fn for_overwrite(shape: &[usize]) -> Self {
        let n = numel(shape);
        Tensor {
            data: Arc::new(recycle::take(n).unwrap_or_else(|| vec![0.0; n])),
            shape: shape.to_vec(),
            stamp: fresh_stamp(),
        }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Self {
        let n = numel(shape);
        if let Some(mut v) = recycle::take(n) {
            v.fill(value);
            return Tensor {
                data: Arc::new(v),
                shape: shape.to_vec(),
                stamp: fresh_stamp(),
            };
        }
        Tensor {
            data: Arc::new(vec![value; numel(shape)]),
            shape: shape.to_vec(),
            stamp: fresh_stamp(),
        }
    }

    /// Wraps `data` with `shape`; the lengths must agree.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        if data.len() != numel(shape) {
            return Err(Error::shape(
                "Tensor::from_vec",
                format!("{} elements for shape {:?}", numel(shape), shape),
                &[data.len()],
            ));
        }
        Ok(Tensor {
            data: Arc::new(data),
            shape: shape.to_vec(),
            stamp: fresh_stamp(),
        })
    }

    /// Samples from a normal distribution `N(mean, std²)`.
    pub fn randn(shape: &[usize], mean: f32, std: f32, rng: &mut impl Rng) -> Self {
        let mut t = Self::zeros(shape);
        t.fill_normal(mean, std, rng);
        t
    }

    /// Samples uniformly from `[low, high)`.
    pub fn rand_uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl Rng) -> Self {
        let mut t = Self::zeros(shape);
        t.fill_uniform(low, high, rng);
        t
    }

    /// Overwrites every element with a sample of `N(mean, std²)` (`std` ≥ 0).
    pub fn fill_normal(&mut self, mean: f32, std: f32, rng: &mut impl Rng) {
        match Normal::new(mean, std.max(0.0)) {
            Ok(dist) => self
                .data_mut()
                .iter_mut()
                .for_each(|v| *v = dist.sample(rng)),
            Err(_) => self.fill(mean),
        }
    }

    /// Overwrites every element with a uniform sample from `[low, high)`.
    pub fn fill_uniform(&mut self, low: f32, high: f32, rng: &mut impl Rng) {
        match Uniform::new(low, high) {
            Ok(dist) => self
                .data_mut()
                .iter_mut()
                .for_each(|v| *v = dist.sample(rng)),
            Err(_) => self.fill(low),
        }
    }

    /// Sets every element to `value` (large tensors in parallel chunks: zeroing
    /// resnet18's 47 MB of gradients every step was a few ms on one thread).
    pub fn fill(&mut self, value: f32) {
        self.stamp = fresh_stamp();
        match Arc::get_mut(&mut self.data) {
            Some(d) if d.len() >= 1 << 16 => {
                use rayon::prelude::*;
                d.par_chunks_mut(1 << 15).for_each(|c| c.fill(value))
            }
            Some(d) => d.iter_mut().for_each(|v| *v = value),
            // Shared: a fresh buffer rather than a copy that is overwritten at once.
            None => self.data = Arc::new(vec![value; self.data.len()]),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements in row-major order, mutable (copied first if a clone shares them).
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.stamp = fresh_stamp();
        Arc::make_mut(&mut self.data).as_mut_slice()
    }

    /// Takes the elements out (copied if a clone shares them).
    pub fn into_vec(mut self) -> Vec<f32> {
        let data = std::mem::replace(&mut self.data, EMPTY.clone());
        Arc::unwrap_or_clone(data)
    }

    /// A number that changes whenever the elements may have changed: every new tensor
    /// and every write (`data_mut`, `fill`, `add_assign`…) takes a fresh one from a
    /// process-wide counter, and a clone keeps it while it is not written to. So two
    /// tensors with the same stamp hold the same elements — what a cache of something
    /// computed from them (the convolution's packed weights in inference) can be keyed on.
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// Whether `self` and `other` share their elements (a clone not yet written to).
    pub fn shares_data(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// The same elements with a new shape of equal size.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        if numel(shape) != self.data.len() {
            return Err(Error::shape(
                "Tensor::reshape",
                format!("a shape with {} elements", self.data.len()),
                shape,
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// `[N, C, H, W]` of a rank-4 tensor, or an error naming `op`.
    pub fn dims4(&self, op: &str) -> Result<[usize; 4]> {
        match self.shape[..] {
            [n, c, h, w] => Ok([n, c, h, w]),
            _ => Err(Error::shape(op, "rank 4 [N, C, H, W]", &self.shape)),
        }
    }

    /// `[N, F]` of a rank-2 tensor, or an error naming `op`.
    pub fn dims2(&self, op: &str) -> Result<[usize; 2]> {
        match self.shape[..] {
            [n, f] => Ok([n, f]),
            _ => Err(Error::shape(op, "rank 2 [N, F]", &self.shape)),
        }
    }

    /// Checks that `self` has exactly `shape`, naming `op` otherwise.
    pub fn expect_shape(&self, op: &str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(Error::shape(op, format!("{shape:?}"), &self.shape));
        }
        Ok(())
    }

    /// Adds `other` element-wise into `self`; shapes must be equal.
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        other.expect_shape("Tensor::add_assign", &self.shape)?;
        self.stamp = fresh_stamp();
        crate::kernels::eltwise::add_into(
            Arc::make_mut(&mut self.data).as_mut_slice(),
            other.data(),
        );
        Ok(())
    }

    /// The largest absolute element-wise difference to `other` (shapes must agree).
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        other.expect_shape("Tensor::max_abs_diff", &self.shape)?;
        Ok(self
            .data
            .iter()
            .zip(other.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max))
    }
}

impl Drop for Tensor {
    /// Hands a large buffer that no clone shares to [`Tensor::for_overwrite`].
    fn drop(&mut self) {
        if self.data.len() >= recycle::MIN_LEN && Arc::strong_count(&self.data) == 1 {
            let data = std::mem::replace(&mut self.data, EMPTY.clone());
            if let Ok(v) = Arc::try_unwrap(data) {
                recycle::give(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A stamp is kept by clones until they are written to, and every write or new
    /// tensor takes a stamp no other tensor has.
    #[test]
    fn stamps_change_with_every_write_and_follow_clones() {
        let mut a = Tensor::zeros(&[4]);
        let b = a.clone();
        assert_eq!(a.stamp(), b.stamp());
        assert_ne!(
            Tensor::zeros(&[4]).stamp(),
            a.stamp(),
            "equal, but a new tensor"
        );
        let mut seen = vec![a.stamp()];
        let writes: [&dyn Fn(&mut Tensor); 4] = [
            &|t| t.data_mut()[0] = 1.0,
            &|t| t.fill(2.0),
            &|t| t.add_assign(&Tensor::full(&[4], 1.0)).unwrap(),
            &|t| t.fill_normal(0.0, 1.0, &mut rand::rngs::StdRng::seed_from_u64(1)),
        ];
        for write in writes {
            write(&mut a);
            assert!(!seen.contains(&a.stamp()));
            seen.push(a.stamp());
        }
        assert_eq!(b.stamp(), seen[0]);
        assert_eq!(b.data(), &[0.0; 4], "the clone's elements are its own");
        let c = a.clone().reshape(&[2, 2]).unwrap();
        assert_eq!(c.stamp(), a.stamp());
    }

    #[test]
    fn dropped_buffers_are_recycled_only_when_no_clone_shares_them() {
        // A size no other test uses, so parallel tests cannot take the buffer first.
        let shape = [3, 7, 61, 53];
        let mut a = Tensor::for_overwrite(&shape);
        a.data_mut().fill(2.5);
        let kept = a.clone();
        let ptr = a.data().as_ptr();
        drop(a); // `kept` still shares the buffer: it must not be handed out
        let b = Tensor::for_overwrite(&shape);
        assert_ne!(b.data().as_ptr(), ptr);
        assert!(kept.data().iter().all(|&v| v == 2.5));
        drop(kept); // the last owner: recycled
        let c = Tensor::for_overwrite(&shape);
        assert_eq!(c.data().as_ptr(), ptr);
        assert_eq!(c.data()[0], 2.5, "for_overwrite hands the stale values on");
        drop(c);
        // `zeros` may take a recycled buffer too, and zeroes it.
        let z = Tensor::zeros(&shape);
        assert!(z.data().iter().all(|&v| v == 0.0));
        // Small tensors are left to the allocator.
        let small = Tensor::full(&[4], 1.0);
        drop(small);
        assert!(Tensor::for_overwrite(&[4]).data().iter().all(|&v| v == 0.0));
        // into_vec still hands the elements out.
        let v = Tensor::full(&shape, 3.0).into_vec();
        assert_eq!(v.len(), 3 * 7 * 61 * 53);
        assert!(v.iter().all(|&x| x == 3.0));
    }

    #[test]
    fn from_vec_rejects_wrong_length_and_names_both_sizes() {
        let err = Tensor::from_vec(vec![0.0; 5], &[2, 3]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("6 elements") && msg.contains("[5]"), "{msg}");
    }

    #[test]
    fn dims4_rejects_rank_2() {
        let t = Tensor::zeros(&[2, 3]);
        assert!(t.dims4("conv").unwrap_err().to_string().contains("[2, 3]"));
    }

    #[test]
    fn randn_is_seeded_and_has_the_right_moments() {
        let mut a = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = rand::rngs::StdRng::seed_from_u64(7);
        let x = Tensor::randn(&[10_000], 1.0, 2.0, &mut a);
        let y = Tensor::randn(&[10_000], 1.0, 2.0, &mut b);
        assert_eq!(x, y);
        let mean = x.data().iter().map(|&v| v as f64).sum::<f64>() / 1e4;
        let var = x
            .data()
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / 1e4;
        assert!((mean - 1.0).abs() < 0.06, "mean {mean}");
        assert!((var.sqrt() - 2.0).abs() < 0.06, "std {}", var.sqrt());
    }

    #[test]
    fn clones_share_until_written() {
        let a = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
        let mut b = a.clone();
        assert!(a.shares_data(&b));
        b.data_mut()[0] = 5.0;
        assert!(!a.shares_data(&b));
        assert_eq!(a.data(), &[1.0, 2.0]);
        assert_eq!(b.data(), &[5.0, 2.0]);
        let mut c = a.clone();
        c.fill(3.0);
        assert_eq!((a.data(), c.data()), (&[1.0, 2.0][..], &[3.0, 3.0][..]));
    }

    /// A tensor large enough to be filled in parallel chunks (with a short tail) gets
    /// every element, and a fresh stamp.
    #[test]
    fn large_fill_reaches_every_element() {
        let n = (1 << 17) + 5;
        let mut t = Tensor::from_vec((0..n).map(|v| v as f32).collect(), &[n]).unwrap();
        let before = t.stamp();
        t.fill(1.5);
        assert!(t.data().iter().all(|&v| v == 1.5));
        assert_ne!(t.stamp(), before);
    }

    #[test]
    fn reshape_keeps_data_and_checks_size() {
        let t = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
        let r = t.clone().reshape(&[3, 2]).unwrap();
        assert_eq!(r.data(), t.data());
        assert!(t.reshape(&[4, 2]).is_err());
    }
}
