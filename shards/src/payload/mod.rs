//! Record contents: values, keys, and the partitioner for keyed records.
//!
//! `ValueSource` is the seam for generators: fixed-size values, and values
//! generated from Avro schemas with hints (`avro`). A source hands out a slice it owns (a pool or
//! a scratch buffer it rewrites), so the hot path copies each value once,
//! into the batch.

pub mod avro;
mod fixed;
mod keys;
pub mod registry;

pub use fixed::FixedValues;
pub use keys::{murmur2, Keys};

use crate::plan::PayloadSpec;

/// Produces record values for one shard.
pub trait ValueSource {
    /// The value of the shard's `seq`-th record.
    fn value(&mut self, seq: u64) -> &[u8];
    /// An upper bound on value length, for sealing batches before they overflow.
    fn max_len(&self) -> usize;
}

/// Builds the value source a plan asks for, seeded per shard.
pub fn value_source(
    spec: &PayloadSpec,
    seed: u64,
    shard: usize,
    shards: usize,
) -> Box<dyn ValueSource> {
    match *spec {
        PayloadSpec::Fixed { record_size, pool } => {
            Box::new(FixedValues::new(record_size, pool, shard_seed(seed, shard)))
        }
        PayloadSpec::Schema(ref s) => {
            let seed = shard_seed(seed, shard);
            let values = match s.pool {
                Some(n) => avro::AvroValues::pooled(&s.compiled, s.encoding(), seed, n.max(1)),
                None => avro::AvroValues::live(&s.compiled, s.encoding(), seed),
            };
            Box::new(values.with_shard(shard, shards))
        }
    }
}

/// The decimal digits of `n`, written into `tmp` without allocating.
#[inline]
pub fn decimal(n: u64, tmp: &mut [u8; 20]) -> &[u8] {
    let mut n = n;
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &tmp[i..]
}

/// Each shard's own random stream: the same seed and shard always give the
/// same records, and shards never share a stream.
pub fn shard_seed(seed: u64, shard: usize) -> u64 {
    // splitmix64 of (seed, shard) so neighbouring shards are uncorrelated.
    let mut z = seed ^ (shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
