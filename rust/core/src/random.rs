//! Seeded randomness: a SplitMix64 stream, independent named sub-streams and
//! uniform sampling without replacement. Every random choice of the crate
//! (k-means seeding, silhouette and cluster sampling) draws from here, so a
//! seed fixes the result whatever the thread count.

use std::collections::HashSet;

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast, well-mixed 64-bit
/// generator; enough for seeding and sampling (not for cryptography).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire 2019). `n > 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let t = n.wrapping_neg() % n;
            while (m as u64) < t {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }
}

/// An independent seed for a named sub-stream (e.g. `[k, restart]`), so that
/// every task draws from its own stream whatever the order tasks run in.
pub fn derive_seed(seed: u64, stream: &[u64]) -> u64 {
    let mut g = SplitMix64::new(seed ^ 0x6A09_E667_F3BC_C908);
    let mut h = g.next_u64();
    for s in stream {
        let mut g = SplitMix64::new(h ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        h = g.next_u64();
    }
    h
}

/// `m` distinct indices of `0..n`, uniformly at random, in random order
/// (all of `0..n`, shuffled, when `m ≥ n`).
pub fn sample_indices(n: usize, m: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let m = m.min(n);
    let mut out: Vec<usize> = if m.saturating_mul(4) >= n {
        // Partial Fisher–Yates over the whole index range.
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..m {
            let j = i + rng.below((n - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(m);
        return all;
    } else {
        // Floyd's algorithm: O(m) memory; the set is then sorted so the
        // result does not depend on hash iteration order.
        let mut set = HashSet::with_capacity(2 * m);
        for j in n - m..n {
            let t = rng.below(j as u64 + 1) as usize;
            if !set.insert(t) {
                set.insert(j);
            }
        }
        let mut v: Vec<usize> = set.into_iter().collect();
        v.sort_unstable();
        v
    };
    for i in (1..out.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_reproducible_and_unbiased_enough() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[a.below(7) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
        assert_ne!(derive_seed(1, &[2, 0]), derive_seed(1, &[2, 1]));
    }

    #[test]
    fn samples_are_distinct_and_in_range() {
        let mut rng = SplitMix64::new(3);
        for (n, m) in [(10, 10), (1000, 10), (1000, 600), (5, 9)] {
            let s = sample_indices(n, m, &mut rng);
            assert_eq!(s.len(), m.min(n));
            let set: HashSet<_> = s.iter().collect();
            assert_eq!(set.len(), s.len());
            assert!(s.iter().all(|&i| i < n));
        }
    }
}
