//! splitmix64: a tiny deterministic generator of random-looking numbers, for what must repeat
//! from a seed without a random number generator crate — benchmark values, test noise, test
//! histories. Not for anything that must be unpredictable (the chaos run's choices use `rand`).
//!
//! The constants are those of Steele, Lea and Flood's SplitMix (the golden-ratio increment and
//! the two multipliers of the finaliser), so a seed gives the same sequence everywhere.

/// The increment of the state: 2^64 divided by the golden ratio.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One splitmix64 sequence.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The sequence that starts from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` must not be 0). The modulo bias is irrelevant for picking test
    /// operations.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True `percent` times out of a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `len` bytes: the next numbers, little-endian, cut to length.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            bytes.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_of_seed_zero_is_the_published_one() {
        // The first outputs of splitmix64 from state 0, as in the reference implementation.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn bytes_have_the_asked_length_and_follow_the_numbers() {
        let mut numbers = SplitMix64::new(7);
        let first = numbers.next_u64().to_le_bytes();
        let mut bytes = SplitMix64::new(7);
        assert_eq!(bytes.bytes(3), first[..3]);
        assert_eq!(bytes.bytes(0).len(), 0);
        assert_eq!(bytes.bytes(17).len(), 17);
    }
}
