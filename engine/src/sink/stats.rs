//! Counters: one cache-line-aligned block per executor, written only by that
//! executor's thread, read (relaxed) by anyone and summed in `stats()`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::batch::BatchScan;
use super::SinkStats;
use crate::batch::CODECS;

/// Counters of one executor. Aligned to 128 bytes so that two executors'
/// blocks never share a cache line (or an adjacent-line prefetch pair).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct ExecCounters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub produce_requests: AtomicU64,
    pub batches: AtomicU64,
    pub records: AtomicU64,
    pub batch_bytes: AtomicU64,
    pub record_bytes: AtomicU64,
    /// Batches by codec id: none, gzip, snappy, lz4, zstd.
    pub codec_batches: [AtomicU64; 5],
    pub crc_errors: AtomicU64,
    pub decode_errors: AtomicU64,
    pub malformed_batches: AtomicU64,
    pub unknown_partitions: AtomicU64,
    pub fetch_requests: AtomicU64,
    pub fetch_records: AtomicU64,
    pub fetch_bytes: AtomicU64,
    pub list_offsets_requests: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes: a relaxed
/// load and store, no locked read-modify-write.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

impl ExecCounters {
    pub(crate) fn add_to(&self, s: &mut SinkStats) {
        s.connections += self.connections.load(Relaxed);
        s.requests += self.requests.load(Relaxed);
        s.produce_requests += self.produce_requests.load(Relaxed);
        s.batches += self.batches.load(Relaxed);
        s.records += self.records.load(Relaxed);
        s.batch_bytes += self.batch_bytes.load(Relaxed);
        s.record_bytes += self.record_bytes.load(Relaxed);
        for (name, n) in CODECS.iter().zip(&self.codec_batches) {
            let n = n.load(Relaxed);
            if n > 0 {
                *s.batches_by_codec.entry((*name).to_owned()).or_default() += n;
            }
        }
        s.crc_errors += self.crc_errors.load(Relaxed);
        s.decode_errors += self.decode_errors.load(Relaxed);
        s.malformed_batches += self.malformed_batches.load(Relaxed);
        s.unknown_partitions += self.unknown_partitions.load(Relaxed);
        s.fetch_requests += self.fetch_requests.load(Relaxed);
        s.fetch_records += self.fetch_records.load(Relaxed);
        s.fetch_bytes += self.fetch_bytes.load(Relaxed);
        s.list_offsets_requests += self.list_offsets_requests.load(Relaxed);
    }
}

/// What one Produce request added, accumulated locally and published once
/// per request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ProduceTally {
    pub batches: u64,
    pub records: u64,
    pub batch_bytes: u64,
    /// Records-section bytes after decompression.
    pub record_bytes: u64,
    pub codec_batches: [u64; 5],
    pub crc_errors: u64,
    pub malformed_batches: u64,
    pub unknown_partitions: u64,
}

impl ProduceTally {
    /// Adds one partition's accepted batches.
    pub(crate) fn add(&mut self, scan: &BatchScan) {
        self.batches += scan.batches;
        self.records += scan.records;
        self.batch_bytes += scan.bytes;
        self.record_bytes += scan.record_bytes;
        for (n, by) in self.codec_batches.iter_mut().zip(scan.by_codec) {
            *n += by;
        }
    }

    pub(crate) fn publish(&self, c: &ExecCounters) {
        bump(&c.batches, self.batches);
        bump(&c.records, self.records);
        bump(&c.batch_bytes, self.batch_bytes);
        bump(&c.record_bytes, self.record_bytes);
        for (counter, n) in c.codec_batches.iter().zip(self.codec_batches) {
            bump(counter, n);
        }
        bump(&c.crc_errors, self.crc_errors);
        bump(&c.malformed_batches, self.malformed_batches);
        bump(&c.unknown_partitions, self.unknown_partitions);
    }
}
