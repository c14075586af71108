//! Synthetic data: what the sink serves from a partition that has no kept
//! log (a topic never produced to, or one named by
//! [`SyntheticTopics::Only`]), so that a consumer's ceiling is measurable
//! without a broker.
//!
//! One record batch is built at start with DataStorm's own batch builder
//! (sealed, CRC and all); a fetch gets copies of it, each with its base
//! offset patched in (the CRC does not cover the base offset), so offsets
//! grow without end: batch `i` of every partition holds offsets
//! `i * records_per_batch ..`. The high watermark a fetch reports is always
//! ahead of what it served.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

use crate::arena::WriteBuf;
use crate::batch::{BatchBuilder, Compression, Compressor};

/// The high watermark is this many batches past the last one served.
const AHEAD_BATCHES: i64 = 64;
/// Largest synthetic record value, in bytes.
pub const MAX_SYNTHETIC_RECORD: usize = 1 << 20;
/// Largest synthetic batch, records times record size, in bytes.
pub const MAX_SYNTHETIC_BATCH: usize = 16 << 20;

/// Which topics are synthetic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SyntheticTopics {
    /// Every topic nobody has produced to yet (nor created with
    /// CreateTopics); a topic's first Produce makes it a kept one.
    #[default]
    Unproduced,
    /// Only these topics, always (what is produced to them is counted and
    /// given offsets, never kept); every other topic is served from its
    /// kept log, empty until produced to.
    Only(Vec<String>),
}

/// The synthetic batches' shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticConfig {
    pub topics: SyntheticTopics,
    /// Bytes of each record's value (no key, no headers).
    pub record_size: usize,
    pub records_per_batch: i32,
    pub compression: Compression,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            topics: SyntheticTopics::Unproduced,
            record_size: 100,
            records_per_batch: 500,
            compression: Compression::Lz4,
        }
    }
}

impl SyntheticConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.record_size > MAX_SYNTHETIC_RECORD {
            return Err(format!(
                "synthetic record size must be at most {MAX_SYNTHETIC_RECORD}, got {}",
                self.record_size
            ));
        }
        let records = usize::try_from(self.records_per_batch).unwrap_or(0);
        if records == 0 || records.saturating_mul(self.record_size.max(1)) > MAX_SYNTHETIC_BATCH {
            return Err(format!(
                "synthetic records per batch must be at least 1 and at most \
                 {MAX_SYNTHETIC_BATCH} bytes of records, got {} of {} bytes",
                self.records_per_batch, self.record_size
            ));
        }
        Ok(())
    }
}

/// Recent synthetic reads of this thread (a sink executor), by first
/// batch and count: every partition holds the same synthetic batches at the
/// same offsets, so a consumer reading its partitions in step asks for the
/// same bytes again and again, and gets them without a copy.
struct Recent {
    entries: Vec<(i64, usize, Bytes)>,
    next: usize,
}

/// Recent reads kept per executor.
const RECENT_READS: usize = 8;

impl Recent {
    fn get(&mut self, first: i64, count: usize, make: impl FnOnce() -> Bytes) -> Bytes {
        if let Some((_, _, b)) = self
            .entries
            .iter()
            .find(|(f, c, _)| *f == first && *c == count)
        {
            return b.clone();
        }
        let bytes = make();
        if self.entries.len() < RECENT_READS {
            self.entries.push((first, count, bytes.clone()));
        } else {
            self.entries[self.next] = (first, count, bytes.clone());
            self.next = (self.next + 1) % RECENT_READS;
        }
        bytes
    }
}

thread_local! {
    static RECENT: RefCell<Recent> = const {
        RefCell::new(Recent { entries: Vec::new(), next: 0 })
    };
}

/// The synthetic batch, built once.
#[derive(Debug)]
pub(crate) struct Synthetic {
    pub topics: SyntheticTopics,
    batch: Bytes,
    records_per_batch: i64,
}

/// What a synthetic read serves.
pub(crate) struct SyntheticRead {
    pub records: Bytes,
    pub record_count: u64,
    pub high_watermark: i64,
}

impl Synthetic {
    /// Builds the batch: values of printable pseudo-random bytes, distinct
    /// per record (so LZ4 finds about as little as in a producer's payload
    /// pool), stamped with the sink's start time.
    pub(crate) fn build(cfg: &SyntheticConfig, now_ms: i64) -> Synthetic {
        let mut builder = BatchBuilder::with_capacity(64 << 10);
        let mut value = vec![0u8; cfg.record_size];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..cfg.records_per_batch {
            for b in value.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = b' ' + (state % 95) as u8;
            }
            builder.append(now_ms, None, &value, &[]);
        }
        let mut out = WriteBuf::default();
        builder.seal(
            cfg.compression,
            &mut Compressor::for_codec(cfg.compression),
            &mut out,
        );
        Synthetic {
            topics: cfg.topics.clone(),
            batch: Bytes::copy_from_slice(out.as_slice()),
            records_per_batch: i64::from(cfg.records_per_batch),
        }
    }

    /// Whether `topic` is served synthetic data (`produced`: someone made
    /// it a kept topic).
    pub(crate) fn serves(&self, topic: &str, produced: bool) -> bool {
        match &self.topics {
            SyntheticTopics::Unproduced => !produced,
            SyntheticTopics::Only(list) => list.iter().any(|t| t == topic),
        }
    }

    /// Whole batches from the one holding `offset` (>= 0), up to `budget`
    /// bytes, at least one if `min_one`.
    pub(crate) fn read(&self, offset: i64, budget: usize, min_one: bool) -> SyntheticRead {
        let len = self.batch.len();
        let mut count = budget / len;
        if count == 0 && min_one {
            count = 1;
        }
        let first = offset / self.records_per_batch;
        let served_end = first.saturating_add(count as i64);
        SyntheticRead {
            records: RECENT.with(|r| {
                r.borrow_mut()
                    .get(first, count, || self.copies(first, count))
            }),
            record_count: count as u64 * self.records_per_batch as u64,
            high_watermark: served_end
                .saturating_add(AHEAD_BATCHES)
                .saturating_mul(self.records_per_batch),
        }
    }

    /// `count` copies of the batch, the first holding batch `first`.
    fn copies(&self, first: i64, count: usize) -> Bytes {
        let len = self.batch.len();
        let mut out = BytesMut::with_capacity(count * len);
        for i in 0..count as i64 {
            let base = first
                .saturating_add(i)
                .saturating_mul(self.records_per_batch);
            let at = out.len();
            out.extend_from_slice(&self.batch);
            out[at..at + 8].copy_from_slice(&base.to_be_bytes());
        }
        out.freeze()
    }

    /// Whether `topic` is synthetic whatever is produced to it (named by
    /// [`SyntheticTopics::Only`]): what is produced to it is not kept.
    pub(crate) fn forced(&self, topic: &str) -> bool {
        match &self.topics {
            SyntheticTopics::Unproduced => false,
            SyntheticTopics::Only(list) => list.iter().any(|t| t == topic),
        }
    }
}
