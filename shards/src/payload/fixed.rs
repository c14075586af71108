//! Fixed-size values of printable random bytes, like Kafka's own perf tool.

use super::ValueSource;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// `pool` pre-generated values of `size` bytes, handed out in turn.
///
/// The pool is generated once per shard; a pool larger than LZ4's 64 KB
/// window keeps the data about as compressible as random printable text
/// (that is, barely), rather than the single repeated value Kafka's perf
/// tool sends.
pub struct FixedValues {
    pool: Vec<u8>,
    size: usize,
    count: u64,
}

impl FixedValues {
    pub fn new(size: usize, pool: usize, seed: u64) -> Self {
        let pool = pool.max(1);
        let mut rng = SmallRng::seed_from_u64(seed);
        let bytes = (0..size * pool)
            .map(|_| rng.random_range(b'!'..=b'~'))
            .collect();
        Self {
            pool: bytes,
            size,
            count: pool as u64,
        }
    }
}

impl ValueSource for FixedValues {
    #[inline]
    fn value(&mut self, seq: u64) -> &[u8] {
        let i = (seq % self.count) as usize * self.size;
        &self.pool[i..i + self.size]
    }

    fn max_len(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_printable_sized_and_deterministic() {
        let mut a = FixedValues::new(100, 10, 7);
        let mut b = FixedValues::new(100, 10, 7);
        for seq in 0..25 {
            let v = a.value(seq).to_vec();
            assert_eq!(v.len(), 100);
            assert!(v.iter().all(|c| (b'!'..=b'~').contains(c)));
            assert_eq!(v, b.value(seq));
        }
        assert_eq!(a.value(3).to_vec(), a.value(13).to_vec(), "pool cycles");
        assert_ne!(a.value(3).to_vec(), a.value(4).to_vec());
        assert_eq!(FixedValues::new(0, 5, 1).value(9), b"");
    }
}
