//! Record keys and Kafka's key hash.

use crate::plan::KeySpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Makes one shard's keys.
pub struct Keys {
    spec: KeySpec,
    shard: u64,
    shards: u64,
    rng: SmallRng,
    /// Key ids this shard owns for `uniform` and `zipf`: `j * shards + shard` for `j < owned`.
    owned: u64,
    zipf: Option<Zipf<f64>>,
    buf: [u8; 16],
}

impl Keys {
    pub fn new(spec: &KeySpec, shard: usize, shards: usize, seed: u64) -> Self {
        let spec = spec.clone();
        let (shard, shards) = (shard as u64, shards.max(1) as u64);
        let owned = match spec {
            KeySpec::Uniform { n } | KeySpec::Zipf { n, .. } => {
                n.saturating_sub(shard).div_ceil(shards)
            }
            _ => 0,
        };
        let zipf = match spec {
            KeySpec::Zipf { exponent, .. } if owned > 0 => Zipf::new(owned as f64, exponent).ok(),
            _ => None,
        };
        Self {
            spec,
            shard,
            shards,
            rng: SmallRng::seed_from_u64(seed ^ 0x6b65_7973),
            owned,
            zipf,
            buf: [b'0'; 16],
        }
    }

    /// The key of the shard's `seq`-th record, or `None` for unkeyed records.
    #[inline]
    pub fn key(&mut self, seq: u64) -> Option<&[u8]> {
        let id = match &self.spec {
            // Field keys come with the value (`ValueSource::record`).
            KeySpec::None | KeySpec::Field { .. } => return None,
            KeySpec::Seq => seq * self.shards + self.shard,
            KeySpec::Random => {
                write_hex(&mut self.buf, self.rng.random());
                return Some(&self.buf);
            }
            // A shard with no share of a tiny key space reuses its first id.
            KeySpec::Uniform { .. } => {
                self.rng.random_range(0..self.owned.max(1)) * self.shards + self.shard
            }
            KeySpec::Zipf { .. } => {
                let rank = self.zipf.as_ref().map_or(1.0, |z| z.sample(&mut self.rng)) as u64;
                (rank.max(1) - 1) * self.shards + self.shard
            }
        };
        write_decimal(&mut self.buf, id);
        Some(&self.buf)
    }

    pub fn is_keyed(&self) -> bool {
        self.spec != KeySpec::None
    }
}

fn write_decimal(buf: &mut [u8; 16], mut n: u64) {
    for b in buf.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn write_hex(buf: &mut [u8; 16], n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Kafka's `Utils.murmur2`, which its default partitioner applies to keys.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn sequential_keys_are_disjoint_across_shards() {
        let mut a = Keys::new(&KeySpec::Seq, 0, 2, 1);
        let mut b = Keys::new(&KeySpec::Seq, 1, 2, 1);
        assert_eq!(a.key(0).unwrap(), b"0000000000000000");
        assert_eq!(b.key(0).unwrap(), b"0000000000000001");
        assert_eq!(a.key(21).unwrap(), b"0000000000000042");
        assert!(Keys::new(&KeySpec::None, 0, 1, 1).key(5).is_none());
    }

    #[test]
    fn uniform_keys_stay_in_the_shards_slice_of_the_key_space() {
        let mut seen = std::collections::BTreeSet::new();
        for shard in 0..3 {
            let mut k = Keys::new(&KeySpec::Uniform { n: 10 }, shard, 3, 5);
            for seq in 0..2000 {
                let id: u64 = std::str::from_utf8(k.key(seq).unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(id < 10);
                assert_eq!(id % 3, shard as u64, "shard {shard} drew {id}");
                seen.insert(id);
            }
        }
        assert_eq!(seen.len(), 10, "every key is drawn: {seen:?}");
    }

    #[test]
    fn zipf_keys_favour_low_ranks() {
        let mut k = Keys::new(
            &KeySpec::Zipf {
                exponent: 1.1,
                n: 1000,
            },
            0,
            1,
            5,
        );
        let mut counts = std::collections::HashMap::new();
        for seq in 0..20_000 {
            *counts.entry(k.key(seq).unwrap().to_vec()).or_insert(0u32) += 1;
        }
        let hot = counts[b"0000000000000000".as_slice()];
        let tenth = counts
            .get(b"0000000000000009".as_slice())
            .copied()
            .unwrap_or(0);
        assert!(hot > 5 * tenth.max(1), "rank 1: {hot}, rank 10: {tenth}");
        assert!(
            counts.len() > 100,
            "a long tail: {} distinct keys",
            counts.len()
        );
    }

    #[test]
    fn random_keys_are_hex_and_seeded() {
        let mut a = Keys::new(&KeySpec::Random, 0, 1, 9);
        let mut b = Keys::new(&KeySpec::Random, 0, 1, 9);
        let ka = a.key(0).unwrap().to_vec();
        assert!(ka.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(ka, b.key(0).unwrap());
    }
}
