//! Produce responses: matching them to requests, accounting for acked
//! batches, scheduling retries, and what happens when a connection dies.

use super::link::Health;
use super::state::{BatchAcct, InFlight, Sent, Shared};
use datastorm_engine::conn::PipeReader;
use datastorm_engine::metrics::{record_batch_latency, ShardCounters};
use datastorm_engine::wire::codes;
use datastorm_engine::wire::produce::read_produce_response;
use datastorm_engine::wire::varint::get_uvarint;
use glommio::sync::Semaphore;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Error codes after which the partition's leader may have moved.
const STALE_METADATA: [i16; 6] = [
    3,  // UNKNOWN_TOPIC_OR_PARTITION
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    56, // KAFKA_STORAGE_ERROR
    74, // FENCED_LEADER_EPOCH
    75, // UNKNOWN_LEADER_EPOCH
];
/// The broker already has this batch (idempotent resend): it counts as acked.
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
/// An earlier batch of the partition is missing (idempotent): resend in order.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

/// Reads a connection's Produce responses, in order, and accounts for them.
/// When the connection fails, moves every unanswered batch to the retry
/// queue and marks the connection broken for the sender loop.
pub(super) async fn read_acks(
    mut reader: PipeReader,
    inflight: Rc<RefCell<InFlight>>,
    permits: Rc<Semaphore>,
    health: Rc<Health>,
    shared: Rc<Shared>,
    version: i16,
) {
    let addr = reader.addr().to_owned();
    loop {
        let (corr, body) = match reader.next().await {
            Ok(r) => r,
            Err(e) => {
                let quiet = shared.closing.get() && inflight.borrow().requests.is_empty();
                if !quiet {
                    if !health.broken.get() {
                        shared.count_error("CONNECTION_FAILED", 1);
                    }
                    tracing::debug!("connection to {addr} failed: {e}");
                    requeue_inflight(&inflight, &shared, Instant::now());
                }
                health.broken.set(true);
                permits.close();
                return;
            }
        };
        let now = Instant::now();
        let mut inf = inflight.borrow_mut();
        let Some(mut sent) = inf.requests.pop_front() else {
            shared.fail(format!(
                "{addr} sent a response (correlation id {corr}) to no request"
            ));
            health.broken.set(true);
            permits.close();
            return;
        };
        if corr != sent.correlation_id {
            shared.fail(format!(
                "{addr} answered correlation id {corr}, expected {}",
                sent.correlation_id
            ));
            health.broken.set(true);
            permits.close();
            return;
        }
        // Response header v1: correlation id (read) + tagged fields.
        let Some(body) = skip_header_tags(body) else {
            shared.fail(format!("{addr} sent a truncated response header"));
            health.broken.set(true);
            permits.close();
            return;
        };
        let n = sent.batches.min(inf.batches.len());
        // One slice (moving nothing when the queue has not wrapped).
        let batches = &inf.batches.make_contiguous()[..n];
        settle(&addr, body, version, batches, &sent, &health, &shared, now);
        inf.batches.drain(..n);
        sent.request.reset();
        inf.spare.push(sent.request);
        let c = &shared.counters;
        ShardCounters::add(&c.requests_acked, 1);
        ShardCounters::set(&c.requests_in_flight, inf.requests.len() as u64);
        drop(inf);
        permits.signal(1);
    }
}

/// Accounts for one Produce response `body` to `sent`, whose batches are
/// `batches`: acked ones are counted, retriable failures queued again, the
/// others given up. A batch the response leaves out (a broker answering
/// some partitions of a request but not all) is resent, counted under
/// MISSING_FROM_RESPONSE; a response naming no partition of the request at
/// all fails the run, and a partition answered twice counts once.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle(
    addr: &str,
    body: &[u8],
    version: i16,
    batches: &[BatchAcct],
    sent: &Sent,
    health: &Health,
    shared: &Shared,
    now: Instant,
) {
    let n = batches.len();
    let measuring = shared.measuring(now);
    let c = &shared.counters;
    let mut total = shared.total.borrow_mut();
    let mut interval = shared.interval.borrow_mut();
    let request = &sent.request;
    // Which of the request's batches the response answered. A request holds
    // at most one batch per partition, one per partition of the shard's
    // topic, so 128 bits cover all but the widest shards; past those, the
    // rest are looked up as before but not checked for omission.
    let mut answered = 0u128;
    let mut answered_count = 0usize;
    let parsed = read_produce_response(body, version, |ack| {
        let Some(i) = batches.iter().position(|b| b.partition == ack.partition) else {
            return;
        };
        let b = &batches[i];
        if i < 128 {
            if answered & (1 << i) != 0 {
                // Answered twice: the first answer stands.
                return;
            }
            answered |= 1 << i;
        }
        answered_count += 1;
        if ack.error_code == 0 || ack.error_code == DUPLICATE_SEQUENCE_NUMBER {
            ShardCounters::add(&c.records_acked, b.records);
            ShardCounters::add(&c.payload_bytes_acked, b.payload_bytes);
            ShardCounters::add(&c.record_bytes_acked, b.record_bytes);
            ShardCounters::add(&c.batches_acked, 1);
            let first = now.saturating_duration_since(b.first).as_micros() as u64;
            let last = now.saturating_duration_since(b.last).as_micros() as u64;
            if measuring {
                record_batch_latency(&mut total, first, last, b.records);
            }
            record_batch_latency(&mut interval, first, last, b.records);
            shared.note_acked(b);
            return;
        }
        let code = codes::lookup(ack.error_code);
        shared.count_error(code.name, 1);
        if STALE_METADATA.contains(&ack.error_code) {
            shared.metadata_stale.set(true);
        }
        let retriable = code.retriable || ack.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER;
        let range = b.start as usize..(b.start + b.len) as usize;
        let bytes = || request.batch(range.clone()).to_vec();
        if retriable && !shared.failed() {
            schedule_retry(shared, b, bytes(), now, code.name);
            return;
        }
        let detail = ack
            .error_message
            .map(|m| format!(": {}", String::from_utf8_lossy(m)))
            .unwrap_or_default();
        let hint = code.hint.map(|h| format!(". {h}")).unwrap_or_default();
        let retried = if b.attempt > 0 {
            format!(" after {} retries", b.attempt)
        } else {
            String::new()
        };
        shared.give_up(
            b,
            "REJECTED",
            format!(
                "{addr} rejected a batch for partition {} with {code}{detail}{retried}{hint}",
                ack.partition
            ),
        );
    });
    match &parsed {
        Ok(throttle) => {
            let ms = (*throttle).max(0) as u64;
            ShardCounters::add(&c.throttle_ms, ms);
            if ms > 0 {
                // KIP-219: the client waits out the throttle before sending again.
                health
                    .throttled_until
                    .set(Some(now + Duration::from_millis(ms)));
            }
        }
        Err(e) => {
            shared.fail(format!(
                "{addr} sent a Produce response DataStorm cannot read: {e}"
            ));
        }
    }
    if parsed.is_err() {
        return;
    }
    if answered_count == 0 && n > 0 {
        let missing: u64 = batches.iter().map(|b| b.records).sum();
        ShardCounters::add(&c.records_failed, missing);
        shared.fail(format!(
            "{addr} answered a Produce request without any partition"
        ));
        return;
    }
    for (i, b) in batches.iter().enumerate().take(128) {
        if answered & (1 << i) == 0 {
            // Not answered, so not known to be written: send it again (a
            // duplicate at worst, which the idempotent producer prevents).
            if shared.failed() {
                // Counted (once) by give_up.
                shared.give_up(
                    b,
                    MISSING_FROM_RESPONSE,
                    format!(
                        "{addr} left partition {} out of its Produce response",
                        b.partition
                    ),
                );
            } else {
                shared.count_error(MISSING_FROM_RESPONSE, 1);
                let range = b.start as usize..(b.start + b.len) as usize;
                let bytes = request.batch(range).to_vec();
                schedule_retry(shared, b, bytes, now, MISSING_FROM_RESPONSE);
            }
        }
    }
}

/// The error counted for a batch its Produce response did not mention.
const MISSING_FROM_RESPONSE: &str = "MISSING_FROM_RESPONSE";

/// Queues `b` (whose bytes are `bytes`) for another attempt, unless it has
/// run out of attempts or of time: then it is given up.
pub(super) fn schedule_retry(
    shared: &Shared,
    b: &BatchAcct,
    bytes: Vec<u8>,
    now: Instant,
    why: &str,
) {
    let attempt = b.attempt + 1;
    if attempt > shared.max_retries {
        shared.give_up(
            b,
            "RETRIES_EXHAUSTED",
            format!(
                "a batch for partition {} failed {} times (last: {why}); see --retries",
                b.partition, attempt
            ),
        );
        return;
    }
    if now.saturating_duration_since(b.first) > shared.delivery_timeout {
        shared.give_up(
            b,
            "DELIVERY_TIMEOUT",
            format!(
                "a batch for partition {} was not acknowledged within the delivery timeout \
                 ({:?}; last error: {why}); see --delivery-timeout",
                b.partition, shared.delivery_timeout
            ),
        );
        return;
    }
    let wait = shared.backoff(attempt);
    shared.push_retry(BatchAcct { attempt, ..*b }, bytes, now + wait);
}

/// Moves every batch awaiting a response on a failed connection to the
/// retry queue, oldest first, and empties the connection's in-flight state.
pub(super) fn requeue_inflight(inflight: &RefCell<InFlight>, shared: &Shared, now: Instant) {
    let mut inf = inflight.borrow_mut();
    while let Some(mut sent) = inf.requests.pop_front() {
        let n = sent.batches.min(inf.batches.len());
        for b in inf.batches.drain(..n) {
            let range = b.start as usize..(b.start + b.len) as usize;
            let bytes = sent.request.batch(range).to_vec();
            schedule_retry(shared, &b, bytes, now, "CONNECTION_FAILED");
        }
        sent.request.reset();
        inf.spare.push(sent.request);
    }
    inf.batches.clear();
    ShardCounters::set(&shared.counters.requests_in_flight, 0);
}

pub(super) fn skip_header_tags(body: &[u8]) -> Option<&[u8]> {
    let (fields, mut pos) = get_uvarint(body)?;
    for _ in 0..fields {
        let (_tag, n) = get_uvarint(body.get(pos..)?)?;
        pos += n;
        let (len, n) = get_uvarint(body.get(pos..)?)?;
        pos += n + len as usize;
    }
    body.get(pos..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::state::tests::{acct, test_shared};
    use datastorm_engine::wire::produce::ProduceRequestBuilder;
    use std::cell::Cell;
    use std::sync::atomic::Ordering::Relaxed;

    /// A Produce response (v9 layout) for topic "t" answering `parts`
    /// (partition, error code).
    fn response(parts: &[(i32, i16)]) -> Vec<u8> {
        let mut b = vec![2, 2, b't', parts.len() as u8 + 1];
        for &(p, err) in parts {
            b.extend_from_slice(&p.to_be_bytes());
            b.extend_from_slice(&err.to_be_bytes());
            b.extend_from_slice(&[0; 24]); // base offset, append time, log start
            b.extend_from_slice(&[1, 0, 0]); // no record errors, null message, tags
        }
        b.push(0); // topic tags
        b.extend_from_slice(&0i32.to_be_bytes()); // throttle
        b.push(0);
        b
    }

    /// A request with batches for partitions 0 and 1, and their accounts.
    fn two_batches() -> (Sent, Vec<BatchAcct>) {
        let mut request = ProduceRequestBuilder::new("t", "c", 256);
        let accts = [(0, b"zero"), (1, b"one!")]
            .map(|(p, bytes)| {
                let r = request.add_batch(p, bytes);
                BatchAcct {
                    start: r.start as u32,
                    len: r.len() as u32,
                    ..acct(p as usize, 0, 10)
                }
            })
            .to_vec();
        let sent = Sent {
            correlation_id: 1,
            sent_at: Instant::now(),
            batches: 2,
            request,
        };
        (sent, accts)
    }

    fn health() -> Health {
        Health {
            broken: Cell::new(false),
            throttled_until: Cell::new(None),
        }
    }

    fn settle_with(shared: &Shared, parts: &[(i32, i16)]) {
        let (sent, accts) = two_batches();
        let body = response(parts);
        settle(
            "b:9092",
            &body,
            9,
            &accts,
            &sent,
            &health(),
            shared,
            Instant::now(),
        );
    }

    #[test]
    fn a_batch_left_out_of_a_response_is_sent_again() {
        let shared = test_shared();
        settle_with(&shared, &[(0, 0)]);
        assert_eq!(shared.counters.records_acked.load(Relaxed), 10);
        assert_eq!(shared.errors.borrow().get(MISSING_FROM_RESPONSE), Some(&1));
        let retry = shared.retry.borrow();
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].acct.partition, 1);
        assert_eq!(retry[0].acct.attempt, 1);
        assert_eq!(retry[0].bytes, b"one!");
        assert!(shared.failure.borrow().is_none());
    }

    #[test]
    fn a_partition_answered_twice_counts_once() {
        let shared = test_shared();
        settle_with(&shared, &[(0, 0), (0, 0), (1, 0)]);
        assert_eq!(shared.counters.records_acked.load(Relaxed), 20);
        assert_eq!(shared.counters.batches_acked.load(Relaxed), 2);
        assert!(shared.retry.borrow().is_empty());
        assert!(shared.errors.borrow().is_empty());
    }

    #[test]
    fn a_response_without_the_requests_partitions_fails_the_run() {
        let shared = test_shared();
        settle_with(&shared, &[(5, 0)]);
        assert_eq!(shared.counters.records_failed.load(Relaxed), 20);
        let failure = shared.failure.borrow().clone().expect("failed");
        assert_eq!(
            failure,
            "b:9092 answered a Produce request without any partition"
        );
    }

    #[test]
    fn a_retriable_error_queues_the_batch_and_acks_the_other() {
        let shared = test_shared();
        settle_with(&shared, &[(0, 6), (1, 0)]);
        assert_eq!(shared.counters.records_acked.load(Relaxed), 10);
        assert_eq!(
            shared.errors.borrow().get("NOT_LEADER_OR_FOLLOWER"),
            Some(&1)
        );
        assert_eq!(shared.retry.borrow()[0].acct.partition, 0);
        assert!(shared.metadata_stale.get());
    }
}
