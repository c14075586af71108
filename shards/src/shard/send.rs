//! From open batches to bytes on the socket: sealing a partition's batch
//! into its leader's next request, sending requests when an in-flight slot
//! is free, and putting retried batches back in order.

use super::acks::schedule_retry;
use super::generate::Sealer;
use super::link::{maintain, retire, Link, Opener};
use super::state::{BatchAcct, Knobs, Part, Sent, Shared};
use crate::plan::Acks;
use datastorm_engine::batch::{Producer, BATCH_HEADER_LEN};
use datastorm_engine::metrics::ShardCounters;
use std::time::{Duration, Instant};

/// A request is sent (waiting for a free slot if needed) once it holds this much.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The sender loop's connection state, passed around as one.
pub(super) struct Net<'a> {
    pub links: &'a mut Vec<Link>,
    pub opener: &'a Opener,
    pub next_metadata: Instant,
}

/// Seals partition `pi`'s batch into its leader's next request, and sends
/// that request now if a slot is free. While earlier batches of the
/// partition wait for a retry, or its leader is unreachable, the batch
/// queues behind them instead (order matters to idempotent sequences).
pub(super) async fn seal_and_queue(
    pi: usize,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    net: &mut Net<'_>,
    sealer: &mut Sealer,
) {
    // Idempotent producer: the partition's first batch is still out (see
    // `Shared::first_batch_out`). Wait for its ack, once per partition and
    // run, one round trip: queueing behind it instead would put the
    // partition on the copying retry path for as long as generation
    // outpaces that path.
    // Bounded by the request timeout: past it the batch queues behind the
    // first one instead (the retry queue keeps it back), so a lost ack can
    // never hold the generator for ever.
    let give_up_waiting = Instant::now() + Duration::from_millis(knobs.timeout_ms.max(0) as u64);
    while shared.first_batch_out(pi)
        && !shared.failed()
        && !parts[pi].dead
        && Instant::now() < give_up_waiting
    {
        pump(knobs, shared, parts, net).await;
        glommio::timer::sleep(Duration::from_micros(200)).await;
    }
    if parts[pi].dead {
        // A stopped partition: its open batch is never sent.
        sealer.scratch.clear();
        let sealed = parts[pi].builder.seal(
            knobs.compression,
            &mut sealer.compressor,
            &mut sealer.scratch,
        );
        ShardCounters::add(&shared.counters.records_failed, sealed.records as u64);
        return;
    }
    if !make_room(pi, knobs, shared, parts, net).await {
        return;
    }
    let li = parts[pi].link;
    let part = &mut parts[pi];
    sealer.scratch.clear();
    let producer = knobs
        .producer
        .map_or(Producer::NONE, |(id, epoch)| Producer {
            id,
            epoch,
            base_sequence: part.batch_seq,
        });
    let sealed = part.builder.seal_as(
        knobs.compression,
        &mut sealer.compressor,
        &mut sealer.scratch,
        producer,
    );
    debug_assert!(sealed.wire_bytes >= BATCH_HEADER_LEN);
    if knobs.producer.is_some() {
        part.batch_seq = part.batch_seq.wrapping_add(sealed.records) & i32::MAX;
    }
    let last = match knobs.pacer.borrow().as_ref() {
        Some(p) => p.intended(part.last_seq),
        None => part.last,
    };
    let acct = BatchAcct {
        part: pi,
        partition: part.id,
        records: sealed.records as u64,
        payload_bytes: part.payload_bytes,
        record_bytes: sealed.records_bytes as u64,
        first: part.first,
        last,
        pseq: part.next_seq - sealed.records as u64,
        start: 0,
        len: 0,
        attempt: 0,
    };
    ShardCounters::add(&shared.counters.batch_bytes_sent, sealed.wire_bytes as u64);
    let link = &mut net.links[li];
    let behind =
        link.conn.is_none() || shared.retry.borrow().has_part(pi) || shared.first_batch_out(pi);
    if behind {
        // Error path: a copy waits in the retry queue, due at once.
        shared.push_retry(acct, sealer.scratch.as_slice().to_vec(), Instant::now());
        return;
    }
    let range = link.request.add_batch(part.id, sealer.scratch.as_slice());
    shared.note_sent(&acct);
    link.pending.push(BatchAcct {
        start: range.start as u32,
        len: range.len() as u32,
        ..acct
    });
    part.queued = true;
    let full = link.request.body_len() >= MAX_REQUEST_BYTES;
    flush(li, knobs, shared, parts, net, full).await;
}

/// A partition appears once per request: if partition `pi` already has a
/// batch in its leader's pending request, sends that request first. False
/// when the stream has failed.
async fn make_room(
    pi: usize,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    net: &mut Net<'_>,
) -> bool {
    if parts[pi].queued {
        let li = parts[pi].link;
        flush(li, knobs, shared, parts, net, true).await;
        if parts[pi].queued {
            // The request could not go out (its connection failed): its
            // batches moved to the retry queue.
            unqueue_pending(&mut net.links[li], parts, shared, Instant::now());
        }
    }
    !shared.failed()
}

/// Moves a link's unsent batches to the retry queue (its connection is
/// gone, or a partition changed leader), in order, and empties its request.
pub(super) fn unqueue_pending(link: &mut Link, parts: &mut [Part], shared: &Shared, now: Instant) {
    for b in link.pending.drain(..) {
        let range = b.start as usize..(b.start + b.len) as usize;
        let bytes = link.request.batch(range).to_vec();
        parts[b.part].queued = false;
        // Never sent: not an attempt.
        shared.push_retry(b, bytes, now);
    }
    link.request.reset();
}

/// Puts batches whose backoff has passed back into their leaders' next
/// requests: per partition in queue order, one batch per request, only to
/// links that are up. Batches that ran out of time are given up.
async fn requeue_retries(knobs: &Knobs, shared: &Shared, parts: &mut [Part], net: &mut Net<'_>) {
    let now = Instant::now();
    let mut i = 0;
    // Partitions with an entry before `i` that stays queued: their later
    // entries wait too, so that they keep their order. (The entries before
    // `i` are exactly those that stayed: a removed one's place is taken by
    // the next.)
    let mut waiting = vec![false; parts.len()];
    loop {
        let next = {
            let mut q = shared.retry.borrow_mut();
            let mut found = None;
            while i < q.len() {
                let r = &q[i];
                let pi = r.acct.part;
                let link = &net.links[parts[pi].link];
                let ready = r.not_before <= now
                    && !waiting[pi]
                    && !parts[pi].queued
                    && !shared.first_batch_out(pi)
                    && link.conn.as_ref().is_some_and(|c| !c.health.broken.get());
                if ready || parts[pi].dead {
                    found = q.remove(i);
                    break;
                }
                waiting[pi] = true;
                i += 1;
            }
            found
        };
        let Some(r) = next else { return };
        shared
            .retry_bytes
            .set(shared.retry_bytes.get().saturating_sub(r.bytes.len()));
        let pi = r.acct.part;
        if parts[pi].dead {
            ShardCounters::add(&shared.counters.records_failed, r.acct.records);
            continue;
        }
        if now.saturating_duration_since(r.acct.first) > shared.delivery_timeout {
            schedule_retry(shared, &r.acct, r.bytes, now, "DELIVERY_TIMEOUT");
            continue;
        }
        let link = &mut net.links[parts[pi].link];
        let range = link.request.add_batch(r.acct.partition, &r.bytes);
        shared.note_sent(&r.acct);
        link.pending.push(BatchAcct {
            start: range.start as u32,
            len: range.len() as u32,
            ..r.acct
        });
        parts[pi].queued = true;
        if r.acct.attempt > 0 {
            ShardCounters::add(&shared.counters.retries, 1);
        }
        ShardCounters::add(&shared.counters.batch_bytes_sent, r.bytes.len() as u64);
        if link.request.body_len() >= MAX_REQUEST_BYTES {
            let li = parts[pi].link;
            flush(li, knobs, shared, parts, net, false).await;
        }
    }
}

/// Between chunks: connection upkeep, due retries, stopped partitions, and
/// every link's waiting request for which a slot is free.
pub(super) async fn pump(knobs: &Knobs, shared: &Shared, parts: &mut [Part], net: &mut Net<'_>) {
    let needs_care = shared.metadata_stale.get()
        || net
            .links
            .iter()
            .any(|l| l.conn.as_ref().is_none_or(|c| c.health.broken.get()));
    if needs_care {
        maintain(net.links, parts, knobs, net.opener, &mut net.next_metadata).await;
    }
    if !shared.stopped.borrow().is_empty() {
        apply_stopped(shared, parts);
    }
    if !shared.retry.borrow().is_empty() {
        requeue_retries(knobs, shared, parts, net).await;
    }
    for li in 0..net.links.len() {
        if !net.links[li].pending.is_empty() {
            flush(li, knobs, shared, parts, net, false).await;
        }
    }
}

/// Stops the partitions the ack readers gave up on; the stream fails when
/// none is left.
fn apply_stopped(shared: &Shared, parts: &mut [Part]) {
    let stopped: Vec<(usize, String)> = shared.stopped.borrow_mut().drain(..).collect();
    for (pi, why) in stopped {
        if !parts[pi].dead {
            parts[pi].dead = true;
            tracing::warn!("partition {} stopped: {why}", parts[pi].id);
            shared
                .stopped_reasons
                .borrow_mut()
                .insert(parts[pi].id, why);
        }
    }
    if parts.iter().all(|p| p.dead) {
        let reasons = shared.stopped_reasons.borrow();
        let first = reasons.values().next().cloned().unwrap_or_default();
        shared.fail(format!(
            "every partition of the stream was stopped by errors; the first: {first}"
        ));
    }
}

/// Sends link `li`'s waiting request. With `wait`, waits for an in-flight
/// slot (and a broker's throttle); without, sends only if one is free now.
/// A failed connection is retired here; its batches go to the retry queue.
pub(super) async fn flush(
    li: usize,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    net: &mut Net<'_>,
    wait: bool,
) {
    let link = &mut net.links[li];
    if link.pending.is_empty() {
        return;
    }
    let Some(conn) = link.conn.as_ref() else {
        unqueue_pending(link, parts, shared, Instant::now());
        return;
    };
    if conn.health.broken.get() {
        retire(li, net.links, parts, net.opener).await;
        return;
    }
    if let Some(until) = conn.health.throttled_until.get() {
        let now = Instant::now();
        if now < until {
            if !wait {
                return;
            }
            glommio::timer::sleep(until - now).await;
        }
        if let Some(c) = net.links[li].conn.as_ref() {
            c.health.throttled_until.set(None);
        }
    }
    if knobs.acks != Acks::None {
        let Some(permits) = net.links[li].conn.as_ref().map(|c| c.permits.clone()) else {
            return;
        };
        let got = if wait {
            // A closed semaphore means the connection failed or timed out.
            permits.acquire(1).await.is_ok()
        } else {
            permits.try_acquire(1).unwrap_or(false)
        };
        if !got {
            let broken = net.links[li]
                .conn
                .as_ref()
                .is_none_or(|c| c.health.broken.get());
            if broken {
                retire(li, net.links, parts, net.opener).await;
            }
            return;
        }
    }
    let link = &mut net.links[li];
    let conn = link.conn.as_mut().expect("checked above");
    let corr = conn.sender.take_correlation_id();
    let records: u64 = link.pending.iter().map(|b| b.records).sum();
    let frame = link.request.finish(
        conn.version,
        corr,
        &knobs.client_id,
        knobs.acks.wire(),
        knobs.timeout_ms,
    );
    // The broker cannot answer before the whole request is written, so the
    // in-flight entry can be added after the write completes.
    let written = conn.sender.write(frame).await;
    if written.is_err() {
        if !conn.health.broken.get() {
            shared.count_error("CONNECTION_FAILED", 1);
        }
        conn.health.broken.set(true);
        if knobs.acks != Acks::None {
            conn.permits.signal(1);
        }
        // Never acknowledged: the request's batches go back in the queue.
        unqueue_pending(link, parts, shared, Instant::now());
        retire(li, net.links, parts, net.opener).await;
        return;
    }
    ShardCounters::add(&shared.counters.requests_sent, 1);
    ShardCounters::add(&shared.counters.records_sent, records);
    for b in &link.pending {
        parts[b.part].queued = false;
    }
    if knobs.acks == Acks::None {
        // No response will come: a written record counts as acked.
        shared.measuring(Instant::now());
        let c = &shared.counters;
        for b in &link.pending {
            ShardCounters::add(&c.records_acked, b.records);
            ShardCounters::add(&c.payload_bytes_acked, b.payload_bytes);
            ShardCounters::add(&c.record_bytes_acked, b.record_bytes);
            ShardCounters::add(&c.batches_acked, 1);
            shared.note_acked(b);
        }
        ShardCounters::add(&c.requests_acked, 1);
        link.request.reset();
    } else {
        let mut inf = conn.inflight.borrow_mut();
        let next = inf
            .spare
            .pop()
            .expect("one spare request buffer per in-flight slot");
        let request = std::mem::replace(&mut link.request, next);
        inf.requests.push_back(Sent {
            correlation_id: corr,
            sent_at: Instant::now(),
            batches: link.pending.len(),
            request,
        });
        inf.batches.extend(link.pending.iter().copied());
        ShardCounters::set(
            &shared.counters.requests_in_flight,
            inf.requests.len() as u64,
        );
    }
    link.pending.clear();
}
