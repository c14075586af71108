//! Produce responses: matching them to requests, accounting for acked
//! batches, scheduling retries, and what happens when a connection dies.

use super::link::Health;
use super::state::{BatchAcct, InFlight, Shared};
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
        let measuring = shared.measuring(now);
        let c = &shared.counters;
        let mut total = shared.total.borrow_mut();
        let mut interval = shared.interval.borrow_mut();
        let batches = inf.batches.range(..n);
        let request = &sent.request;
        let mut answered = 0usize;
        let parsed = read_produce_response(body, version, |ack| {
            let Some(b) = batches.clone().find(|b| b.partition == ack.partition) else {
                return;
            };
            answered += 1;
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
                schedule_retry(&shared, b, bytes(), now, code.name);
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
        if answered == 0 && n > 0 && parsed.is_ok() {
            let missing: u64 = inf.batches.range(..n).map(|b| b.records).sum();
            ShardCounters::add(&c.records_failed, missing);
            shared.fail(format!(
                "{addr} answered a Produce request without any partition"
            ));
        }
        inf.batches.drain(..n);
        sent.request.reset();
        inf.spare.push(sent.request);
        ShardCounters::add(&c.requests_acked, 1);
        ShardCounters::set(&c.requests_in_flight, inf.requests.len() as u64);
        drop(inf);
        permits.signal(1);
    }
}

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
