//! A small, stable, seedable random number generator for the data pipeline.
//!
//! The loader promises that an epoch's order and every image's augmentation depend only
//! on `(seed, epoch, index)`, never on the worker count or on which thread ran first, and
//! that they stay the same across releases of our dependencies. So the generator and its
//! sampling helpers live here, fixed: SplitMix64 (Steele, Lea & Flood 2014, the seeder of
//! `java.util.SplittableRandom` and of xoshiro), with integer and float helpers written
//! out rather than borrowed from `rand`, whose algorithms may change between versions.

/// SplitMix64: 64 bits of state, period 2⁶⁴, passes BigCrush; ample for augmentation.
#[derive(Clone, Debug)]
pub struct DataRng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a strong 64-bit mixer).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DataRng {
    /// A generator from one seed.
    pub fn new(seed: u64) -> Self {
        DataRng { state: mix(seed) }
    }

    /// A generator for stream `parts` under `seed`: distinct tuples give unrelated streams.
    ///
    /// The loader uses `(seed, [tag, epoch, index])`.
    pub fn for_stream(seed: u64, parts: &[u64]) -> Self {
        let mut h = mix(seed ^ GOLDEN);
        for &p in parts {
            h = mix(h ^ mix(p.wrapping_add(GOLDEN)));
        }
        DataRng { state: h }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// A uniform `f64` in `[0, 1)` (53 random bits).
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform `f32` in `[low, high)`; `low` when `high <= low`.
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        if high <= low {
            return low;
        }
        let v = low as f64 + (high as f64 - low as f64) * self.unit_f64();
        (v as f32).clamp(low, high)
    }

    /// A uniform integer in `[0, n)` (Lemire's multiply-shift; 0 when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// `true` with probability `p`.
    pub fn bernoulli(&mut self, p: f32) -> bool {
        self.unit_f64() < p as f64
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| DataRng::for_stream(7, &[1, 2, 3]).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let b = DataRng::for_stream(7, &[1, 2, 4]).next_u64();
        let c = DataRng::for_stream(8, &[1, 2, 3]).next_u64();
        assert_ne!(a[0], b);
        assert_ne!(a[0], c);
        // Pinned value: a change to the generator changes every seeded run; do it knowingly.
        assert_eq!(DataRng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn below_and_uniform_stay_in_range_and_cover_it() {
        let mut rng = DataRng::new(3);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[rng.below(5)] += 1;
            let u = rng.uniform(-2.0, 3.0);
            assert!((-2.0..=3.0).contains(&u));
        }
        assert!(seen.iter().all(|&s| s > 800 && s < 1200), "{seen:?}");
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.uniform(1.0, 1.0), 1.0);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        DataRng::new(1).shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
