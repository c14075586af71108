//! The books one stream task shares with its ack readers (all on the same
//! thread), and the per-batch, per-request and per-partition bookkeeping.

use super::events::{Event, Events};
use crate::plan::{Acks, RunPlan};
use datastorm_engine::batch::BatchBuilder;
use datastorm_engine::metrics::{latency_histogram, Counters, ShardCounters};
use datastorm_engine::wire::produce::ProduceRequestBuilder;
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Retry copies beyond this many bytes stop generation until they drain
/// (a broker outage must not grow memory without bound).
pub(super) const RETRY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// A stream's books: what its sender and its ack readers (tasks on the same
/// thread) both account into. Connection and partition events go through
/// the stream's [`Events`] queue instead.
pub(super) struct Books {
    pub counters: Arc<ShardCounters>,
    pub total: RefCell<Histogram<u64>>,
    pub interval: RefCell<Histogram<u64>>,
    pub send_delay: RefCell<Histogram<u64>>,
    pub send_delay_interval: RefCell<Histogram<u64>>,
    /// The warm-up ends here; results count from here.
    pub measure_from: Instant,
    /// The counters when the warm-up ended (`None` while it lasts).
    pub warmup_end: Cell<Option<Counters>>,
    pub errors: RefCell<BTreeMap<String, u64>>,
    pub failure: RefCell<Option<String>>,
    /// The stream is shutting its connections: a reader that ends with
    /// nothing in flight ends quietly.
    pub closing: Cell<bool>,
    /// Batches to send again (after a retriable error or a lost connection),
    /// with their bytes, oldest first. Per partition, the order is the send
    /// order (idempotent sequences depend on it).
    pub retry: RefCell<RetryQueue>,
    /// Acknowledged per-partition record numbers (the sequence header's
    /// numbers), as half-open ranges per partition.
    pub acked: RefCell<BTreeMap<i32, Vec<(u64, u64)>>>,
    pub policy: RetryPolicy,
    /// Idempotent producer, per part: `None` until the broker has
    /// acknowledged one of the partition's batches (it holds no state for
    /// our producer id there yet), then the first batch's `pseq` while
    /// that batch is out. See [`Books::first_batch_out`].
    pub unconfirmed: Option<RefCell<Vec<FirstBatch>>>,
    /// Where partitions stopped by an error are announced.
    pub events: Events,
}

/// When a failed batch is tried again, and when the run gives up.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy {
    /// Give up on a batch this long after its first record.
    pub delivery_timeout: Duration,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// A non-retriable error ends the run (instead of its partition).
    pub stop_run_on_error: bool,
}

impl RetryPolicy {
    pub fn of(plan: &RunPlan) -> Self {
        RetryPolicy {
            delivery_timeout: plan.delivery_timeout,
            max_retries: plan.retries,
            retry_backoff: plan.retry_backoff,
            stop_run_on_error: plan.on_error == crate::plan::OnError::Run,
        }
    }
}

/// Where a partition stands with the broker's idempotence state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FirstBatch {
    /// Nothing acknowledged yet, nothing out.
    Waiting,
    /// Nothing acknowledged yet; the batch with this `pseq` is out.
    Out(u64),
    /// The broker acknowledged a batch: it checks our sequences from now on.
    Confirmed,
}

/// A batch waiting to be resent.
pub(super) struct Retry {
    pub acct: BatchAcct,
    pub bytes: Vec<u8>,
    pub not_before: Instant,
}

/// The retry queue, oldest first, with a count of each partition's batches
/// in it: whether a partition has any, asked for every sealed batch while
/// the queue is not empty, is then a lookup rather than a scan of a queue
/// that a broker outage fills with thousands of batches. Read through
/// `Deref`; changed only by [`RetryQueue::insert`] and
/// [`RetryQueue::remove`], which keep the counts.
#[derive(Default)]
pub(super) struct RetryQueue {
    queue: VecDeque<Retry>,
    /// By part index (grown as parts come up).
    per_part: Vec<u32>,
    /// The copies' bytes, together.
    bytes: usize,
}

impl RetryQueue {
    /// The bytes of the batches in the queue.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether part `pi` has a batch in the queue.
    pub fn has_part(&self, pi: usize) -> bool {
        self.per_part.get(pi).is_some_and(|n| *n > 0)
    }

    /// Queues `r` at the end, or before the first batch of its partition
    /// with a later `pseq` (per partition the queue stays in record order).
    pub fn insert(&mut self, r: Retry) {
        let pi = r.acct.part;
        let at = if self.has_part(pi) {
            self.queue
                .iter()
                .position(|e| e.acct.part == pi && e.acct.pseq > r.acct.pseq)
                .unwrap_or(self.queue.len())
        } else {
            self.queue.len()
        };
        if self.per_part.len() <= pi {
            self.per_part.resize(pi + 1, 0);
        }
        self.per_part[pi] += 1;
        self.bytes += r.bytes.len();
        self.queue.insert(at, r);
    }

    pub fn remove(&mut self, i: usize) -> Option<Retry> {
        let r = self.queue.remove(i)?;
        self.per_part[r.acct.part] -= 1;
        self.bytes = self.bytes.saturating_sub(r.bytes.len());
        Some(r)
    }
}

impl std::ops::Deref for RetryQueue {
    type Target = VecDeque<Retry>;

    fn deref(&self) -> &VecDeque<Retry> {
        &self.queue
    }
}

impl Books {
    pub fn new(
        counters: Arc<ShardCounters>,
        measure_from: Instant,
        policy: RetryPolicy,
        idempotent_parts: Option<usize>,
        events: Events,
    ) -> Self {
        Books {
            counters,
            total: RefCell::new(latency_histogram()),
            interval: RefCell::new(latency_histogram()),
            send_delay: RefCell::new(latency_histogram()),
            send_delay_interval: RefCell::new(latency_histogram()),
            measure_from,
            warmup_end: Cell::new(None),
            errors: RefCell::new(BTreeMap::new()),
            failure: RefCell::new(None),
            closing: Cell::new(false),
            retry: RefCell::default(),
            acked: RefCell::new(BTreeMap::new()),
            policy,
            unconfirmed: idempotent_parts.map(|n| RefCell::new(vec![FirstBatch::Waiting; n])),
            events,
        }
    }

    pub fn fail(&self, why: String) {
        let mut f = self.failure.borrow_mut();
        if f.is_none() {
            *f = Some(why);
        }
    }

    pub fn failed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    pub fn count_error(&self, name: &str, n: u64) {
        *self.errors.borrow_mut().entry(name.to_owned()).or_default() += n;
        ShardCounters::add(&self.counters.errors, n);
    }

    /// Whether results count at `now`. The first call after the warm-up
    /// snapshots the counters, so the warm-up is subtracted exactly: every
    /// accounting site asks before it counts.
    #[inline]
    pub fn measuring(&self, now: Instant) -> bool {
        if self.warmup_end.get().is_some() {
            return true;
        }
        if now < self.measure_from {
            return false;
        }
        self.warmup_end.set(Some(self.counters.snapshot()));
        true
    }

    /// Queues a batch to be sent again. Error path: the copy is allocated
    /// here, not per record.
    /// Per partition the queue stays in record order (sequence order for the
    /// idempotent producer): a batch that failed after later ones were
    /// queued goes back before them.
    pub fn push_retry(&self, acct: BatchAcct, bytes: Vec<u8>, not_before: Instant) {
        self.note_returned(&acct);
        self.retry.borrow_mut().insert(Retry {
            acct,
            bytes,
            not_before,
        });
    }

    /// The backoff before attempt `attempt` (1 = first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.policy
            .retry_backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(10))
            .min(Duration::from_secs(1))
    }

    /// Records a batch that will never be acknowledged: counted as failed,
    /// and its partition (or the run) stopped with `why`.
    pub fn give_up(&self, b: &BatchAcct, error: &str, why: String) {
        self.note_returned(b);
        self.count_error(error, 1);
        ShardCounters::add(&self.counters.records_failed, b.records);
        if self.policy.stop_run_on_error {
            self.fail(why);
        } else {
            self.events
                .send(Event::PartitionStopped { part: b.part, why });
        }
    }

    /// Idempotent producer: whether `part` must hold its batches back
    /// because its first batch is out unacknowledged.
    ///
    /// A broker with no state for a producer id on a partition accepts any
    /// first sequence number. Were a later batch pipelined behind a first
    /// batch that fails retriably (NOT_LEADER_OR_FOLLOWER right after topic
    /// creation), the broker would take the later one as the first and
    /// answer OUT_OF_ORDER_SEQUENCE_NUMBER to the resent first batch for
    /// ever. So until one batch is acknowledged, one batch at a time.
    pub fn first_batch_out(&self, part: usize) -> bool {
        self.unconfirmed
            .as_ref()
            .is_some_and(|u| matches!(u.borrow()[part], FirstBatch::Out(_)))
    }

    /// A batch of `b.part` goes out (into a request).
    pub fn note_sent(&self, b: &BatchAcct) {
        if let Some(u) = &self.unconfirmed {
            let mut u = u.borrow_mut();
            if u[b.part] == FirstBatch::Waiting {
                u[b.part] = FirstBatch::Out(b.pseq);
            }
        }
    }

    /// A batch came back unacknowledged (to be resent, or given up).
    pub fn note_returned(&self, b: &BatchAcct) {
        if let Some(u) = &self.unconfirmed {
            let mut u = u.borrow_mut();
            if u[b.part] == FirstBatch::Out(b.pseq) {
                u[b.part] = FirstBatch::Waiting;
            }
        }
    }

    /// A batch the broker acknowledged: its records' numbers are in.
    pub fn note_acked(&self, b: &BatchAcct) {
        if let Some(u) = &self.unconfirmed {
            u.borrow_mut()[b.part] = FirstBatch::Confirmed;
        }
        let mut acked = self.acked.borrow_mut();
        let ranges = acked.entry(b.partition).or_default();
        let (start, end) = (b.pseq, b.pseq + b.records);
        match ranges.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => {
                ranges.push((start, end));
                if ranges.len() > 1 && ranges[ranges.len() - 2].0 > start {
                    // Acked out of order (after a retry): keep it sorted and merged.
                    ranges.sort_unstable();
                    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
                    for &(s, e) in ranges.iter() {
                        match merged.last_mut() {
                            Some(m) if m.1 >= s => m.1 = m.1.max(e),
                            _ => merged.push((s, e)),
                        }
                    }
                    *ranges = merged;
                }
            }
        }
    }
}

/// Accounting for one batch between its seal and its ack.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchAcct {
    pub part: usize,
    pub partition: i32,
    pub records: u64,
    pub payload_bytes: u64,
    pub record_bytes: u64,
    /// Latency origins of the first and last record.
    pub first: Instant,
    pub last: Instant,
    /// The first record's number within its partition (sequence header).
    pub pseq: u64,
    /// Where the batch's bytes lie in its request.
    pub start: u32,
    pub len: u32,
    /// 0 for the first send.
    pub attempt: u32,
}

/// A request awaiting its response. It keeps its buffer, so a batch the
/// broker answers with a retriable error can be sent again.
pub(super) struct Sent {
    pub correlation_id: i32,
    pub sent_at: Instant,
    pub batches: usize,
    pub request: ProduceRequestBuilder,
}

/// Requests awaiting a response on one connection, oldest first.
pub(super) struct InFlight {
    pub requests: VecDeque<Sent>,
    pub batches: VecDeque<BatchAcct>,
    /// Request buffers not in use, for the sender to take.
    pub spare: Vec<ProduceRequestBuilder>,
}

/// One partition's open batch.
pub(super) struct Part {
    pub id: i32,
    /// Index of the link to its leader.
    pub link: usize,
    pub builder: BatchBuilder,
    pub payload_bytes: u64,
    pub first: Instant,
    pub first_seq: u64,
    pub last: Instant,
    pub last_seq: u64,
    /// A sealed batch of this partition waits in its link's request.
    pub queued: bool,
    /// The next record's number in this partition (the sequence header).
    pub next_seq: u64,
    /// The next batch's base sequence (idempotent producer).
    pub batch_seq: i32,
    /// Stopped by a non-retriable error.
    pub dead: bool,
}

/// Settings the hot loop reads.
pub(super) struct Knobs {
    pub acks: Acks,
    pub client_id: String,
    pub timeout_ms: i32,
    pub batch_size: usize,
    pub linger: Duration,
    pub compression: datastorm_engine::batch::Compression,
    /// Idempotent producer: (producer id, epoch).
    pub producer: Option<(i64, i16)>,
}

impl Knobs {
    pub fn of(plan: &RunPlan) -> Self {
        Knobs {
            acks: plan.acks,
            client_id: plan.client_id.clone(),
            timeout_ms: plan.request_timeout.as_millis().min(i32::MAX as u128) as i32,
            batch_size: plan.batch_size,
            linger: plan.linger,
            compression: plan.compression,
            producer: None,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn acked_ranges_merge_in_and_out_of_order() {
        let books = test_books();
        let b = |pseq, records| acct(3, pseq, records);
        books.note_acked(&b(0, 10));
        books.note_acked(&b(10, 5));
        books.note_acked(&b(25, 5));
        books.note_acked(&b(15, 10)); // a retried batch lands late
        assert_eq!(books.acked.borrow()[&3], vec![(0, 30)]);
    }

    #[test]
    fn the_retry_queue_keeps_partition_order_and_counts() {
        let mut q = RetryQueue::default();
        let r = |part, pseq| Retry {
            acct: acct(part, pseq, 10),
            bytes: Vec::new(),
            not_before: Instant::now(),
        };
        assert!(!q.has_part(0) && !q.has_part(7));
        q.insert(r(2, 20));
        q.insert(r(0, 10));
        q.insert(r(2, 30));
        // A batch that failed after later ones of its partition were queued
        // goes back before them; other partitions keep their places.
        q.insert(r(2, 10));
        assert_eq!(q.bytes(), 0);
        let order: Vec<_> = q.iter().map(|e| (e.acct.part, e.acct.pseq)).collect();
        assert_eq!(order, [(2, 10), (2, 20), (0, 10), (2, 30)]);
        assert!(q.has_part(0) && q.has_part(2) && !q.has_part(1));
        assert_eq!(q.remove(2).map(|e| e.acct.part), Some(0));
        assert!(!q.has_part(0) && q.has_part(2));
        while !q.is_empty() {
            q.remove(0);
        }
        assert!(!q.has_part(2));
        assert!(q.remove(0).is_none());
    }

    #[test]
    fn an_unconfirmed_partition_has_one_batch_out_until_an_ack() {
        let mut books = test_books();
        books.unconfirmed = Some(RefCell::new(vec![FirstBatch::Waiting; 2]));
        let b = |part, pseq| acct(part, pseq, 10);
        assert!(!books.first_batch_out(0));
        books.note_sent(&b(0, 0));
        assert!(books.first_batch_out(0));
        assert!(!books.first_batch_out(1), "per partition");
        // A later batch held back in the retry queue does not release it.
        books.push_retry(b(0, 10), vec![0; 4], Instant::now());
        assert!(books.first_batch_out(0));
        // The first batch fails retriably: it goes back, the gate opens
        // for its resend (which the queue orders first).
        books.push_retry(b(0, 0), vec![0; 4], Instant::now());
        assert!(!books.first_batch_out(0));
        assert_eq!(books.retry.borrow()[0].acct.pseq, 0);
        books.note_sent(&b(0, 0));
        assert!(books.first_batch_out(0));
        books.note_acked(&b(0, 0));
        assert!(!books.first_batch_out(0));
        // Confirmed: pipelining from now on.
        books.note_sent(&b(0, 10));
        books.note_sent(&b(0, 20));
        assert!(!books.first_batch_out(0));
        // Without the idempotent producer there is no gate at all.
        let plain = test_books();
        plain.note_sent(&b(0, 0));
        assert!(!plain.first_batch_out(0));
    }

    /// A batch of `records` records of partition `part` (its index is its
    /// id), numbered from `pseq`, at the start of its request.
    pub(crate) fn acct(part: usize, pseq: u64, records: u64) -> BatchAcct {
        BatchAcct {
            part,
            partition: part as i32,
            records,
            payload_bytes: 0,
            record_bytes: 0,
            first: Instant::now(),
            last: Instant::now(),
            pseq,
            start: 0,
            len: 0,
            attempt: 0,
        }
    }

    pub(crate) fn test_books() -> Books {
        let policy = RetryPolicy {
            delivery_timeout: Duration::from_secs(120),
            max_retries: 10,
            retry_backoff: Duration::from_millis(100),
            stop_run_on_error: false,
        };
        let counters = Arc::new(ShardCounters::default());
        Books::new(counters, Instant::now(), policy, None, Events::default())
    }
}
