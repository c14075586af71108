//! One partition's kept log: the record batches produced to it, with the
//! offsets the sink assigned, bounded in bytes (the oldest batches go first
//! and the log start offset moves up).
//!
//! Sharing: a partition can be produced to from any executor (connections
//! are spread by `SO_REUSEPORT`) and fetched from any other, so each
//! partition's log sits behind its own `Mutex`. There is no lock above it:
//! a Produce request takes one partition's lock per partition it writes,
//! only to patch base offsets into batches already copied and to push them
//! (the copy, the CRC and record walk happen before, outside the lock); a
//! Fetch takes it to find its batches and clone their handles (the bytes are
//! copied into the response outside it).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::batch::BATCH_HEADER_LEN;

/// Header fields of a v2 batch, by byte position.
const LAST_OFFSET_DELTA_AT: usize = 23;
const MAX_TIMESTAMP_AT: usize = 35;
const BATCH_LENGTH_AT: usize = 8;
/// baseOffset + batchLength: not counted by batchLength.
const LOG_OVERHEAD: usize = 12;

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(v)
}

/// One kept batch: where its bytes are and which offsets it holds.
#[derive(Debug, Clone)]
struct KeptBatch {
    base: i64,
    /// One past its last offset.
    end: i64,
    max_timestamp: i64,
    /// The buffer of the Produce it came in (shared by its batches).
    chunk: Bytes,
    start: usize,
    len: usize,
    /// When consumers may see it (its Produce is acknowledged); `None`: at
    /// once.
    visible_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct LogInner {
    /// The high watermark: the next offset to assign.
    next_offset: i64,
    batches: VecDeque<KeptBatch>,
    kept_bytes: usize,
}

impl LogInner {
    fn log_start(&self) -> i64 {
        self.batches.front().map_or(self.next_offset, |b| b.base)
    }

    /// Index of the batch holding `offset` (or the first after it).
    fn find(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.end <= offset)
    }

    /// How many batches consumers may see at `now`, and the high watermark
    /// they see: batches become visible in append order, so those not yet
    /// visible are a tail of the log.
    fn visible(&self, now: Instant) -> (usize, i64) {
        let shown = |b: &KeptBatch| b.visible_at.is_none_or(|t| t <= now);
        match self.batches.back() {
            None => (0, self.next_offset),
            Some(last) if shown(last) => (self.batches.len(), self.next_offset),
            Some(_) => {
                let n = self.batches.partition_point(shown);
                (n, self.batches[n].base)
            }
        }
    }
}

/// A partition's kept log. Aligned so that two partitions' locks never
/// share a cache line.
#[repr(align(64))]
#[derive(Debug, Default)]
pub(crate) struct PartitionLog {
    inner: Mutex<LogInner>,
}

/// Batches copied out of a Produce request, not yet given offsets.
pub(crate) struct Staged {
    chunk: BytesMut,
    /// (start in `chunk`, wire length, offsets taken, max timestamp) per batch.
    spans: Vec<(usize, usize, i64, i64)>,
}

impl Staged {
    /// Copies `records` (batches already validated by `batch::scan`) and
    /// notes each batch's span. Done outside any lock.
    pub(crate) fn copy(records: &[u8]) -> Staged {
        let mut spans = Vec::new();
        let mut at = 0usize;
        while at + LOG_OVERHEAD <= records.len() {
            let b = &records[at..];
            let len = usize::try_from(be_i32(b, BATCH_LENGTH_AT)).unwrap_or(0) + LOG_OVERHEAD;
            if len < BATCH_HEADER_LEN || len > b.len() {
                break;
            }
            let offsets = i64::from(be_i32(b, LAST_OFFSET_DELTA_AT)) + 1;
            spans.push((at, len, offsets, be_i64(b, MAX_TIMESTAMP_AT)));
            at += len;
        }
        Staged {
            chunk: BytesMut::from(&records[..at]),
            spans,
        }
    }
}

/// What a read found.
#[derive(Debug, Default)]
pub(crate) struct LogRead {
    /// The batches, whole, from the one holding the fetch offset, as
    /// ranges of their Produce buffers (adjacent batches of one buffer
    /// make one range).
    pub parts: Vec<(Bytes, usize, usize)>,
    pub bytes: usize,
    pub records: u64,
    pub high_watermark: i64,
    pub log_start: i64,
    /// When the first batch not yet visible becomes visible.
    pub next_visible: Option<Instant>,
}

/// A fetch offset outside the log (below its start, past its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfRange {
    pub high_watermark: i64,
    pub log_start: i64,
}

impl PartitionLog {
    fn lock(&self) -> MutexGuard<'_, LogInner> {
        // A poisoned lock means a panic elsewhere mid-append; the deque is
        // still a valid (if short) log.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Assigns `count` offsets without keeping anything (a partition that
    /// keeps no bytes, or a synthetic topic). Returns (base, log start).
    pub(crate) fn skip(&self, count: i64) -> (i64, i64) {
        let mut g = self.lock();
        let base = g.next_offset;
        g.next_offset += count;
        let start = if g.batches.is_empty() {
            g.next_offset
        } else {
            g.log_start()
        };
        (base, start)
    }

    /// Gives the staged batches their offsets (patched into each header's
    /// baseOffset, which the CRC does not cover), keeps them, and drops the
    /// oldest batches past `keep` bytes. Returns (base offset, log start).
    pub(crate) fn append(
        &self,
        staged: Staged,
        keep: usize,
        visible_at: Option<Instant>,
    ) -> (i64, i64) {
        let Staged { mut chunk, spans } = staged;
        let mut g = self.lock();
        let base = g.next_offset;
        let mut next = base;
        for &(start, _, offsets, _) in &spans {
            chunk[start..start + 8].copy_from_slice(&next.to_be_bytes());
            next += offsets;
        }
        let chunk = chunk.freeze();
        let mut offset = base;
        for (start, len, offsets, max_timestamp) in spans {
            g.batches.push_back(KeptBatch {
                base: offset,
                end: offset + offsets,
                max_timestamp,
                chunk: chunk.clone(),
                start,
                len,
                visible_at,
            });
            g.kept_bytes += len;
            offset += offsets;
        }
        g.next_offset = next;
        while g.kept_bytes > keep {
            let Some(old) = g.batches.pop_front() else {
                break;
            };
            g.kept_bytes -= old.len;
        }
        (base, g.log_start())
    }

    /// (log start, high watermark) as consumers see them at `now`.
    pub(crate) fn bounds(&self, now: Instant) -> (i64, i64) {
        let g = self.lock();
        (g.log_start(), g.visible(now).1)
    }

    /// Whole batches from the one holding `offset`, up to `budget` bytes,
    /// but at least one if `min_one` (as Kafka, so that a batch larger than
    /// the limits still gets through).
    pub(crate) fn read(
        &self,
        offset: i64,
        budget: usize,
        min_one: bool,
        now: Instant,
    ) -> Result<LogRead, OutOfRange> {
        let g = self.lock();
        let (shown, high_watermark) = g.visible(now);
        let log_start = g.log_start();
        // As Kafka: out of range past the log end, not past the high
        // watermark (between them a fetch finds nothing yet).
        if offset < log_start || offset > g.next_offset {
            return Err(OutOfRange {
                high_watermark,
                log_start,
            });
        }
        let mut read = LogRead {
            high_watermark,
            log_start,
            next_visible: g.batches.get(shown).and_then(|b| b.visible_at),
            ..LogRead::default()
        };
        for b in g.batches.range(g.find(offset).min(shown)..shown) {
            let fits = read.bytes + b.len <= budget;
            let first_anyway = min_one && read.parts.is_empty();
            if !(fits || first_anyway) {
                break;
            }
            read.bytes += b.len;
            read.records += (b.end - b.base) as u64;
            match read.parts.last_mut() {
                Some((chunk, _, end)) if chunk.as_ptr() == b.chunk.as_ptr() && *end == b.start => {
                    *end += b.len;
                }
                _ => read.parts.push((b.chunk.clone(), b.start, b.start + b.len)),
            }
        }
        Ok(read)
    }

    /// ListOffsets by timestamp: the base offset of the first kept batch
    /// whose max timestamp is at least `ts`, with that max timestamp.
    pub(crate) fn offset_for_timestamp(&self, ts: i64) -> Option<(i64, i64)> {
        let g = self.lock();
        g.batches
            .iter()
            .find(|b| b.max_timestamp >= ts)
            .map(|b| (b.base, b.max_timestamp))
    }

    /// ListOffsets max timestamp: the last offset of the kept batch with
    /// the largest max timestamp (the earliest such batch), and that stamp.
    pub(crate) fn max_timestamp(&self) -> Option<(i64, i64)> {
        let g = self.lock();
        let mut best: Option<&KeptBatch> = None;
        for b in &g.batches {
            if best.is_none_or(|x| b.max_timestamp > x.max_timestamp) {
                best = Some(b);
            }
        }
        best.map(|b| (b.end - 1, b.max_timestamp))
    }
}

/// Joins a read's batches into the one `records` field of a Fetch
/// partition: no copy when they are one range of one buffer.
pub(crate) fn join(parts: Vec<(Bytes, usize, usize)>, bytes: usize) -> Bytes {
    match parts.as_slice() {
        [] => Bytes::new(),
        [(chunk, start, end)] => chunk.slice(*start..*end),
        _ => {
            let mut out = BytesMut::with_capacity(bytes);
            for (chunk, start, end) in &parts {
                out.extend_from_slice(&chunk[*start..*end]);
            }
            out.freeze()
        }
    }
}
