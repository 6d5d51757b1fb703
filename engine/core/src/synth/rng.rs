//! The seeded random source of the generator.
//!
//! ChaCha8 is specified independently of any platform or crate version, so a seed means
//! the same pages everywhere. Page `i` of seed `s` draws from ChaCha8 keyed by `s` on
//! stream `i`: pages are independent of each other (a held-out range `[k, k + n)` never
//! depends on how pages `0..k` were made). Sampling helpers are written here rather than
//! taken from `rand`'s distributions, whose algorithms may change between versions.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 2^-53: turns the top 53 bits of a `u64` into a uniform `f64` in [0, 1).
const F64_UNIT: f64 = 1.0 / (1u64 << 53) as f64;

/// Deterministic random source for one page.
pub struct PageRng(ChaCha8Rng);

impl PageRng {
    /// The stream of page `index` under `seed`.
    pub fn for_page(seed: u64, index: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        Self(rng)
    }

    /// Uniform integer in `0..n` (`n > 0`), by the multiply-shift map of a 64-bit draw
    /// (bias below `n / 2^64`, far under anything a page could show).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.0.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        debug_assert!(lo <= hi);
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }

    /// Uniform float in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.0.next_u64() >> 11) as f64 * F64_UNIT)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform(0.0, 1.0) < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index drawn with the given non-negative weights (not all zero).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < u64::from(w) {
                return i;
            }
            r -= u64::from(w);
        }
        weights.len() - 1
    }

    /// Raw 64 bits (noise generation).
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_repeatable() {
        let a: Vec<u64> = (0..4).map(|_| PageRng::for_page(7, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut p3 = PageRng::for_page(7, 3);
        let mut p4 = PageRng::for_page(7, 4);
        let mut s8 = PageRng::for_page(8, 3);
        let x = p3.next_u64();
        assert_ne!(x, p4.next_u64());
        assert_ne!(x, s8.next_u64());
    }

    #[test]
    fn samplers_stay_in_range_and_cover_it() {
        let mut rng = PageRng::for_page(1, 0);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = rng.range(10, 14);
            assert!((10..=14).contains(&v));
            seen[(v - 10) as usize] = true;
            let f = rng.uniform(-2.0, 3.0);
            assert!((-2.0..3.0).contains(&f));
        }
        assert!(seen.iter().all(|&s| s));
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            counts[rng.weighted(&[1, 0, 2])] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[2] > counts[0]);
    }
}
