//! [`AvroValues`]: a shard's schema-driven [`ValueSource`].

use super::plan::Cx;
use super::{write_datum, CompiledSchema, Encoding, ValueSource};
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
pub struct AvroValues {
    schema: CompiledSchema,
    enc: Encoding,
    cx: Cx,
    seed: u64,
    buf: Vec<u8>,
    /// Pooled mode: all data back to back, and where each ends.
    pool: Vec<u8>,
    ends: Vec<usize>,
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
            cx: Cx::new(seed, plan.counters, wall_ms()),
            seed,
            buf: Vec::with_capacity(max_len.min(64 * 1024)),
            pool: Vec::new(),
            ends: Vec::new(),
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

    /// Back to the first datum of the seed (to regenerate a pool).
    fn reset(&mut self) {
        self.cx.rng = rand::SeedableRng::seed_from_u64(self.seed);
        self.cx.counters.iter_mut().for_each(|c| *c = 0);
        self.pool.clear();
        self.ends.clear();
    }

    fn fill_pool(&mut self, n: usize) {
        let plan = self.schema.plan();
        for _ in 0..n {
            write_datum(plan, &mut self.cx, self.enc, &mut self.pool);
            self.ends.push(self.pool.len());
        }
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

impl ValueSource for AvroValues {
    #[inline]
    fn value(&mut self, seq: u64) -> &[u8] {
        if !self.ends.is_empty() {
            let i = (seq % self.ends.len() as u64) as usize;
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            return &self.pool[start..self.ends[i]];
        }
        if !self.fixed_now && self.generated % CLOCK_EVERY == 0 {
            self.cx.now_ms = wall_ms();
        }
        self.generated += 1;
        self.buf.clear();
        write_datum(self.schema.plan(), &mut self.cx, self.enc, &mut self.buf);
        &self.buf
    }

    fn max_len(&self) -> usize {
        self.max_len
    }
}
