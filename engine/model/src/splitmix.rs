//! SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators",
//! OOPSLA 2014): the one small seeded generator of the crate. Sampling draws from a
//! stream of it (so it needs no global torch seed); the trainer's dataset mixture uses
//! its output function as a hash of a counter (so every draw is addressable without
//! replaying a stream).

pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    /// The golden-ratio increment and the two mixing multipliers of the paper's `mix64`.
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    const MIX1: u64 = 0xbf58_476d_1ce4_e5b9;
    const MIX2: u64 = 0x94d0_49bb_1331_11eb;
    /// `2^-53`: the spacing of f64 values in [0.5, 1), so the top 53 bits map onto [0, 1).
    const UNIT: f64 = 1.0 / (1u64 << 53) as f64;

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(Self::MIX1);
        z = (z ^ (z >> 27)).wrapping_mul(Self::MIX2);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        Self::unit(self.next_u64())
    }

    /// The first output of the generator seeded with `z`: a well-mixed 64-bit hash of `z`.
    pub(crate) fn hash(z: u64) -> u64 {
        SplitMix64(z).next_u64()
    }

    /// Uniform in [0, 1) from 64 random bits (their top 53).
    pub(crate) fn unit(bits: u64) -> f64 {
        (bits >> 11) as f64 * Self::UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_published_sequence() {
        // First outputs for seed 1234567, from the reference C implementation
        // (https://prng.di.unimi.it/splitmix64.c), as listed in its test vectors.
        let mut r = SplitMix64(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(SplitMix64::hash(1_234_567), 6_457_827_717_110_365_317);
    }

    #[test]
    fn unit_is_the_top_53_bits_over_two_to_the_53() {
        for bits in [0, 1 << 11, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(
                SplitMix64::unit(bits),
                (bits >> 11) as f64 / (1u64 << 53) as f64
            );
        }
    }
}
