//! The hot loops, and nothing else.
//!
//! Free functions on slices with explicit dimensions; layers in `nn` call them and never
//! loop over elements themselves. Each optimized kernel has a naive twin in [`naive`];
//! the tests at the bottom of each file compare the two over awkward shapes.
//!
//! Parallelism: one level of `rayon` per kernel. Reductions are cut into a fixed number
//! of chunks (the rayon thread count) and combined in chunk order, so results are
//! identical for a given thread count.

pub mod conv;
pub mod eltwise;
pub mod gemm;
pub mod naive;
pub mod norm;
pub mod optim;
pub mod pool;
pub(crate) mod simd;
pub mod softmax;

pub use conv::{bf16, direct, gathered, winograd};

/// How many pieces to cut a parallel job of `items` independent items into.
pub(crate) fn chunk_count(items: usize) -> usize {
    rayon::current_num_threads().clamp(1, items.max(1))
}

/// Splits `items` into `chunks` contiguous ranges of nearly equal length.
pub(crate) fn split_ranges(items: usize, chunks: usize) -> Vec<std::ops::Range<usize>> {
    let chunks = chunks.max(1);
    (0..chunks)
        .map(|i| (i * items / chunks)..((i + 1) * items / chunks))
        .collect()
}
