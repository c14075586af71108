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

use crate::plan::{KeySpec, PayloadSpec};

/// One generated record's value, and its key when the source makes keys
/// (`--key field:NAME`: the key is a field of the value).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub value: &'a [u8],
    pub key: Option<&'a [u8]>,
}

/// Produces record values for one shard.
pub trait ValueSource {
    /// The value of the shard's `seq`-th record.
    fn value(&mut self, seq: u64) -> &[u8];
    /// The shard's `seq`-th record with its key, for sources that derive the
    /// key from the value. Sources without keys return `key: None`.
    #[inline]
    fn record(&mut self, seq: u64) -> Record<'_> {
        Record {
            value: self.value(seq),
            key: None,
        }
    }
    /// An upper bound on value length, for sealing batches before they overflow.
    fn max_len(&self) -> usize;
}

/// Builds the value source a stream asks for, seeded per shard. Fails when
/// `keys` names a field the payload cannot give keys from (checked before a
/// run starts, see [`check_keys`]).
pub fn value_source(
    spec: &PayloadSpec,
    keys: &KeySpec,
    seed: u64,
    shard: usize,
    shards: usize,
) -> Result<Box<dyn ValueSource>, avro::KeyFieldError> {
    check_keys(spec, keys)?;
    Ok(match *spec {
        PayloadSpec::Fixed { record_size, pool } => {
            Box::new(FixedValues::new(record_size, pool, shard_seed(seed, shard)))
        }
        PayloadSpec::Schema(ref s) => {
            let seed = shard_seed(seed, shard);
            let mut values = match s.pool {
                Some(n) => avro::AvroValues::pooled(&s.compiled, s.encoding(), seed, n.max(1)),
                None => avro::AvroValues::live(&s.compiled, s.encoding(), seed),
            };
            if let Some(name) = keys.field() {
                values = values.with_key(s.compiled.key_field(name)?);
            }
            Box::new(values.with_shard(shard, shards))
        }
    })
}

/// Whether the stream's key spec fits its payload: `field:NAME` needs a
/// schema payload with a top-level field NAME of a type with a key form.
pub fn check_keys(spec: &PayloadSpec, keys: &KeySpec) -> Result<(), avro::KeyFieldError> {
    let Some(name) = keys.field() else {
        return Ok(());
    };
    match spec {
        PayloadSpec::Fixed { .. } => Err(avro::KeyFieldError::NeedsSchema(name.to_owned())),
        PayloadSpec::Schema(s) => s.compiled.key_field(name).map(|_| ()),
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
