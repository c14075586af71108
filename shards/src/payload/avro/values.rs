//! [`AvroValues`]: a shard's schema-driven [`ValueSource`].

use super::key::{KeyBuf, KeyField};
use super::plan::{Cx, NOT_DRAWN};
use super::{write_datum, CompiledSchema, Encoding, ValueSource};
use crate::payload::Record;
use std::time::{SystemTime, UNIX_EPOCH};

/// Live mode re-reads the wall clock once per this many records: timestamps
/// stay within a few milliseconds of now without a clock call per record.
const CLOCK_EVERY: u64 = 1024;

/// Record values generated from a [`CompiledSchema`].
///
/// * `live`: each call writes a fresh datum into one reused buffer. No
///   allocation per record once the buffer has grown to the largest record.
/// * `pooled`: `pool` data are generated up front into one contiguous
///   buffer and handed out in turn; a call is an index.
///
/// With [`with_key`](AvroValues::with_key), [`ValueSource::record`] also
/// hands out each record's key, the key form of one of its fields: live, it
/// is copied into a small reused buffer while the datum is written; pooled,
/// the keys are generated with the pool and stored beside it.
pub struct AvroValues {
    schema: CompiledSchema,
    enc: Encoding,
    cx: Cx,
    seed: u64,
    /// Live mode: the current datum is `buf[..len]` (the writer keeps the
    /// rest as scratch).
    buf: Vec<u8>,
    len: usize,
    /// Pooled mode: all data back to back, and where each ends.
    pool: Vec<u8>,
    ends: Vec<usize>,
    key: Option<KeyField>,
    /// Live mode: the current record's key.
    key_buf: KeyBuf,
    /// Pooled mode: all keys back to back, and each record's (`None`: null).
    keys: Vec<u8>,
    key_spans: Vec<Option<(usize, usize)>>,
    fixed_now: bool,
    generated: u64,
    max_len: usize,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl AvroValues {
    /// Generates a datum per call.
    pub fn live(schema: &CompiledSchema, enc: Encoding, seed: u64) -> Self {
        let plan = schema.plan();
        let avro = schema.max_avro_len();
        let max_len = match enc {
            Encoding::Avro => avro,
            Encoding::Confluent { .. } => avro.saturating_add(5),
            // Escaping and number text can outgrow the binary form several
            // times over; this bound is loose on purpose.
            Encoding::Json => avro.saturating_mul(8).saturating_add(64),
        };
        AvroValues {
            schema: schema.clone(),
            enc,
            cx: Cx::new(seed, plan.counters, wall_ms()).with_lag(plan.lagged),
            seed,
            buf: Vec::with_capacity(max_len.min(64 * 1024)),
            len: 0,
            pool: Vec::new(),
            ends: Vec::new(),
            key: None,
            key_buf: KeyBuf::default(),
            keys: Vec::new(),
            key_spans: Vec::new(),
            fixed_now: false,
            generated: 0,
            max_len,
        }
    }

    /// Generates `pool` data now and cycles through them.
    pub fn pooled(schema: &CompiledSchema, enc: Encoding, seed: u64, pool: usize) -> Self {
        let mut v = Self::live(schema, enc, seed);
        v.fill_pool(pool.max(1));
        v
    }

    /// Pins "now" for timestamp hints to `epoch_ms`, making the output a pure
    /// function of the seed (tests, reproducible data sets). Regenerates the
    /// pool of a pooled source.
    pub fn with_fixed_now(mut self, epoch_ms: i64) -> Self {
        self.fixed_now = true;
        self.cx.now_ms = epoch_ms;
        if !self.ends.is_empty() {
            let n = self.ends.len();
            self.reset();
            self.fill_pool(n);
        }
        self
    }

    /// Makes `iteration` sequences interleave across shards: shard `shard`
    /// of `shards` takes steps `shard, shard + shards, ...`, so sequence
    /// values stay unique across the run. Regenerates a pool.
    pub fn with_shard(mut self, shard: usize, shards: usize) -> Self {
        self.cx.stride = (shard as u64, shards.max(1) as u64);
        if !self.ends.is_empty() {
            let n = self.ends.len();
            self.reset();
            self.fill_pool(n);
        }
        self
    }

    /// Makes [`ValueSource::record`] return the key form of field `key` of
    /// each record (from [`CompiledSchema::key_field`] of this source's
    /// schema). The data stay the same; a pool is regenerated to hold the
    /// keys.
    pub fn with_key(mut self, key: KeyField) -> Self {
        self.key = Some(key);
        if !self.ends.is_empty() {
            let n = self.ends.len();
            self.reset();
            self.fill_pool(n);
        }
        self
    }

    /// Back to the first datum of the seed (to regenerate a pool).
    fn reset(&mut self) {
        self.cx.rng = Cx::rng_for(self.seed);
        self.cx.counters.iter_mut().for_each(|c| *c = 0);
        self.cx.lag.iter_mut().for_each(|l| *l = NOT_DRAWN);
        self.pool.clear();
        self.ends.clear();
        self.keys.clear();
        self.key_spans.clear();
    }

    fn fill_pool(&mut self, n: usize) {
        for _ in 0..n {
            let key = self.key.as_ref().map(|k| (k.index(), &mut self.key_buf));
            let start = self.ends.last().copied().unwrap_or(0);
            let end = write_datum(
                &self.schema,
                &mut self.cx,
                self.enc,
                &mut self.pool,
                start,
                key,
            );
            self.ends.push(end);
            if self.key.is_some() {
                let span = self.key_buf.get().map(|k| {
                    self.keys.extend_from_slice(k);
                    (self.keys.len() - k.len(), self.keys.len())
                });
                self.key_spans.push(span);
            }
        }
        // The writer leaves scratch bytes past the last datum.
        self.pool.truncate(self.ends.last().copied().unwrap_or(0));
        self.pool.shrink_to_fit();
        let largest = self
            .ends
            .iter()
            .scan(0, |start, &end| {
                let len = end - *start;
                *start = end;
                Some(len)
            })
            .max()
            .unwrap_or(0);
        self.max_len = largest;
    }

    /// The encoding values are written in.
    pub fn encoding(&self) -> Encoding {
        self.enc
    }

    /// Whether values come from a pre-generated pool.
    pub fn is_pooled(&self) -> bool {
        !self.ends.is_empty()
    }
}

impl AvroValues {
    /// Live mode: writes the next datum (and its key) into the buffers.
    #[inline]
    fn generate(&mut self) {
        if !self.fixed_now && self.generated % CLOCK_EVERY == 0 {
            self.cx.now_ms = wall_ms();
        }
        self.generated += 1;
        let key = self.key.as_ref().map(|k| (k.index(), &mut self.key_buf));
        self.len = write_datum(&self.schema, &mut self.cx, self.enc, &mut self.buf, 0, key);
    }

    /// Pooled mode: the index into the pool of the `seq`-th record.
    #[inline]
    fn slot(&self, seq: u64) -> usize {
        (seq % self.ends.len() as u64) as usize
    }

    #[inline]
    fn pooled_value(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.pool[start..self.ends[i]]
    }
}

impl ValueSource for AvroValues {
    #[inline]
    fn value(&mut self, seq: u64) -> &[u8] {
        if !self.ends.is_empty() {
            return self.pooled_value(self.slot(seq));
        }
        self.generate();
        &self.buf[..self.len]
    }

    #[inline]
    fn record(&mut self, seq: u64) -> Record<'_> {
        if self.key.is_none() {
            return Record {
                value: self.value(seq),
                key: None,
            };
        }
        if !self.ends.is_empty() {
            let i = self.slot(seq);
            return Record {
                value: self.pooled_value(i),
                key: self.key_spans[i].map(|(s, e)| &self.keys[s..e]),
            };
        }
        self.generate();
        Record {
            value: &self.buf[..self.len],
            key: self.key_buf.get(),
        }
    }

    fn max_len(&self) -> usize {
        self.max_len
    }
}
