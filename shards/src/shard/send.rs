//! From open batches to bytes on the socket: sealing a partition's batch
//! into its leader's next request, sending requests when an in-flight slot
//! is free, and putting retried batches back in order.

use super::acks::schedule_retry;
use super::state::{BatchAcct, Retry, Sent};
use super::task::StreamTask;
use crate::plan::Acks;
use datastorm_engine::batch::{Producer, BATCH_HEADER_LEN};
use datastorm_engine::metrics::ShardCounters;
use datastorm_engine::wire::produce::RequestFields;
use std::time::{Duration, Instant};

/// A request is sent (waiting for a free slot if needed) once it holds this much.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

impl StreamTask {
    /// Seals partition `pi`'s batch into its leader's next request, and
    /// sends that request now if a slot is free. While earlier batches of
    /// the partition wait for a retry, or its leader is unreachable, the
    /// batch queues behind them instead (order matters to idempotent
    /// sequences).
    pub async fn seal(&mut self, pi: usize) {
        self.await_first_batch(pi).await;
        if self.parts[pi].dead {
            // A stopped partition: its open batch is never sent.
            let sealer = &mut self.sealer;
            sealer.scratch.clear();
            let sealed = self.parts[pi].builder.seal(
                self.knobs.compression,
                &mut sealer.compressor,
                &mut sealer.scratch,
            );
            ShardCounters::add(&self.books.counters.records_failed, sealed.records as u64);
            return;
        }
        if !self.make_room(pi).await {
            return;
        }
        let acct = self.seal_open_batch(pi);
        let li = self.parts[pi].link;
        let link = &mut self.links[li];
        let books = &self.books;
        let behind =
            link.conn.is_none() || books.retry.borrow().has_part(pi) || books.first_batch_out(pi);
        if behind {
            // Error path: a copy waits in the retry queue, due at once.
            let bytes = self.sealer.scratch.as_slice().to_vec();
            books.push_retry(acct, bytes, Instant::now());
            return;
        }
        let range = link
            .request
            .add_batch(acct.partition, self.sealer.scratch.as_slice());
        books.note_sent(&acct);
        link.pending.push(BatchAcct {
            start: range.start as u32,
            len: range.len() as u32,
            ..acct
        });
        self.parts[pi].queued = true;
        let full = link.request.body_len() >= MAX_REQUEST_BYTES;
        self.flush(li, full).await;
    }

    /// Idempotent producer: the partition's first batch is still out (see
    /// `Books::first_batch_out`). Waits for its ack, once per partition and
    /// run, one round trip: queueing behind it instead would put the
    /// partition on the copying retry path for as long as generation
    /// outpaces that path. Bounded by the request timeout: past it the
    /// batch queues behind the first one instead (the retry queue keeps it
    /// back), so a lost ack can never hold the generator for ever.
    async fn await_first_batch(&mut self, pi: usize) {
        let timeout = Duration::from_millis(self.knobs.timeout_ms.max(0) as u64);
        let give_up_waiting = Instant::now() + timeout;
        while self.books.first_batch_out(pi)
            && !self.books.failed()
            && !self.parts[pi].dead
            && Instant::now() < give_up_waiting
        {
            self.pump().await;
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Seals part `pi`'s open batch into the sealer's scratch buffer; its
    /// account, not yet placed in a request.
    fn seal_open_batch(&mut self, pi: usize) -> BatchAcct {
        let knobs = &self.knobs;
        let part = &mut self.parts[pi];
        let sealer = &mut self.sealer;
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
        let last = match &self.pacer {
            Some(p) => p.intended(part.last_seq),
            None => part.last,
        };
        let c = &self.books.counters;
        ShardCounters::add(&c.batch_bytes_sent, sealed.wire_bytes as u64);
        BatchAcct {
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
        }
    }

    /// A partition appears once per request: if partition `pi` already has
    /// a batch in its leader's pending request, sends that request first.
    /// False when the stream has failed.
    async fn make_room(&mut self, pi: usize) -> bool {
        if self.parts[pi].queued {
            let li = self.parts[pi].link;
            self.flush(li, true).await;
            if self.parts[pi].queued {
                // The request could not go out (its connection failed): its
                // batches moved to the retry queue.
                self.unqueue(li, Instant::now());
            }
        }
        !self.books.failed()
    }

    /// Between chunks: the events reported since the last pump, connection
    /// upkeep, due retries, and every link's waiting request for which a
    /// slot is free.
    pub async fn pump(&mut self) {
        self.handle_events();
        if self.needs_care() {
            self.maintain().await;
        }
        if !self.books.retry.borrow().is_empty() {
            self.requeue_retries().await;
        }
        for li in 0..self.links.len() {
            if !self.links[li].pending.is_empty() {
                self.flush(li, false).await;
            }
        }
    }

    /// Puts batches whose backoff has passed back into their leaders' next
    /// requests: per partition in queue order, one batch per request, only
    /// to links that are up. Batches that ran out of time are given up.
    async fn requeue_retries(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        // Partitions with an entry before `i` that stays queued: their later
        // entries wait too, so that they keep their order. (The entries
        // before `i` are exactly those that stayed: a removed one's place
        // is taken by the next.)
        let mut waiting = vec![false; self.parts.len()];
        while let Some(r) = self.next_ready_retry(&mut i, &mut waiting, now) {
            let pi = r.acct.part;
            if self.parts[pi].dead {
                ShardCounters::add(&self.books.counters.records_failed, r.acct.records);
                continue;
            }
            if now.saturating_duration_since(r.acct.first) > self.books.policy.delivery_timeout {
                schedule_retry(&self.books, &r.acct, r.bytes, now, "DELIVERY_TIMEOUT");
                continue;
            }
            let li = self.parts[pi].link;
            let link = &mut self.links[li];
            let range = link.request.add_batch(r.acct.partition, &r.bytes);
            self.books.note_sent(&r.acct);
            link.pending.push(BatchAcct {
                start: range.start as u32,
                len: range.len() as u32,
                ..r.acct
            });
            self.parts[pi].queued = true;
            let c = &self.books.counters;
            if r.acct.attempt > 0 {
                ShardCounters::add(&c.retries, 1);
            }
            ShardCounters::add(&c.batch_bytes_sent, r.bytes.len() as u64);
            if link.request.body_len() >= MAX_REQUEST_BYTES {
                self.flush(li, false).await;
            }
        }
    }

    /// Takes the first retry from position `*i` on that can go now (or whose
    /// partition stopped); entries passed over mark their partition waiting.
    fn next_ready_retry(&self, i: &mut usize, waiting: &mut [bool], now: Instant) -> Option<Retry> {
        let mut q = self.books.retry.borrow_mut();
        while *i < q.len() {
            let r = &q[*i];
            let pi = r.acct.part;
            let link = &self.links[self.parts[pi].link];
            let ready = r.not_before <= now
                && !waiting[pi]
                && !self.parts[pi].queued
                && !self.books.first_batch_out(pi)
                && link.conn.as_ref().is_some_and(|c| !c.broken);
            if ready || self.parts[pi].dead {
                return q.remove(*i);
            }
            waiting[pi] = true;
            *i += 1;
        }
        None
    }

    /// Sends link `li`'s waiting request. With `wait`, waits for an
    /// in-flight slot (and a broker's throttle); without, sends only if one
    /// is free now. A failed connection is retired here; its batches go to
    /// the retry queue.
    pub async fn flush(&mut self, li: usize, wait: bool) {
        if self.links[li].pending.is_empty() {
            return;
        }
        self.handle_events();
        let Some(conn) = self.links[li].conn.as_ref() else {
            self.unqueue(li, Instant::now());
            return;
        };
        if conn.broken {
            self.retire(li).await;
            return;
        }
        if let Some(until) = conn.throttled_until {
            let now = Instant::now();
            if now < until {
                if !wait {
                    return;
                }
                glommio::timer::sleep(until - now).await;
            }
            if let Some(c) = self.links[li].conn.as_mut() {
                c.throttled_until = None;
            }
        }
        if self.knobs.acks != Acks::None && !self.take_slot(li, wait).await {
            return;
        }
        self.send(li).await;
    }

    /// Takes an in-flight slot on link `li`'s connection: false when none is
    /// free (without `wait`) or the connection failed (then retired).
    async fn take_slot(&mut self, li: usize, wait: bool) -> bool {
        let Some(permits) = self.links[li].conn.as_ref().map(|c| c.permits.clone()) else {
            return false;
        };
        let got = if wait {
            // A closed semaphore means the connection failed or timed out.
            permits.acquire(1).await.is_ok()
        } else {
            permits.try_acquire(1).unwrap_or(false)
        };
        if !got {
            // Why the slots closed, if they did, is in the events.
            self.handle_events();
            let broken = self.links[li].conn.as_ref().is_none_or(|c| c.broken);
            if broken {
                self.retire(li).await;
            }
        }
        got
    }

    /// Writes link `li`'s request (a slot is taken) and moves it in flight.
    async fn send(&mut self, li: usize) {
        let link = &mut self.links[li];
        let conn = link.conn.as_mut().expect("checked by flush");
        let corr = conn.sender.take_correlation_id();
        let records: u64 = link.pending.iter().map(|b| b.records).sum();
        let knobs = &self.knobs;
        let frame = link.request.finish(RequestFields {
            version: conn.version,
            correlation_id: corr,
            client_id: &knobs.client_id,
            acks: knobs.acks.wire(),
            timeout_ms: knobs.timeout_ms,
        });
        // The broker cannot answer before the whole request is written, so the
        // in-flight entry can be added after the write completes.
        if conn.sender.write(frame).await.is_err() {
            self.write_failed(li).await;
            return;
        }
        let books = &self.books;
        let c = &books.counters;
        ShardCounters::add(&c.requests_sent, 1);
        ShardCounters::add(&c.records_sent, records);
        for b in &link.pending {
            self.parts[b.part].queued = false;
        }
        if knobs.acks == Acks::None {
            // No response will come: a written record counts as acked.
            books.measuring(Instant::now());
            for b in &link.pending {
                ShardCounters::add(&c.records_acked, b.records);
                ShardCounters::add(&c.payload_bytes_acked, b.payload_bytes);
                ShardCounters::add(&c.record_bytes_acked, b.record_bytes);
                ShardCounters::add(&c.batches_acked, 1);
                books.note_acked(b);
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
            ShardCounters::set(&c.requests_in_flight, inf.requests.len() as u64);
        }
        link.pending.clear();
    }

    /// The request on link `li` could not be written: its connection is
    /// broken, and the request's batches, never acknowledged, go back in
    /// the queue.
    async fn write_failed(&mut self, li: usize) {
        if let Some(conn) = self.links[li].conn.as_mut() {
            if !conn.broken {
                self.books.count_error("CONNECTION_FAILED", 1);
            }
            conn.broken = true;
            if self.knobs.acks != Acks::None {
                conn.permits.signal(1);
            }
        }
        self.unqueue(li, Instant::now());
        self.retire(li).await;
    }
}
