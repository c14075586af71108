//! Produce responses: matching them to requests, accounting for acked
//! batches, scheduling retries, and what happens when a connection dies.

use super::events::{ConnId, Event};
use super::state::{BatchAcct, Books, InFlight, Sent};
use datastorm_engine::conn::PipeReader;
use datastorm_engine::metrics::{record_batch_latency, ShardCounters};
use datastorm_engine::wire::codes;
use datastorm_engine::wire::produce::{read_produce_response, PartitionAck, ProduceRequestBuilder};
use datastorm_engine::wire::varint::get_uvarint;
use glommio::sync::Semaphore;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The broker end of one connection, as its responses are accounted.
pub(super) struct Peer {
    pub addr: String,
    pub conn: ConnId,
    /// The negotiated Produce version.
    pub version: i16,
    pub books: Rc<Books>,
}

/// Reads one connection's Produce responses, in order, and accounts for
/// them.
pub(super) struct AckReader {
    pub peer: Peer,
    pub reader: PipeReader,
    pub inflight: Rc<RefCell<InFlight>>,
    pub permits: Rc<Semaphore>,
}

impl AckReader {
    /// Until the connection ends. When it fails, moves every unanswered
    /// batch to the retry queue and tells the stream task.
    pub async fn run(mut self) {
        let peer = &self.peer;
        let books = &peer.books;
        let addr = &peer.addr;
        loop {
            let (corr, body) = match self.reader.next().await {
                Ok(r) => r,
                Err(e) => {
                    let quiet = books.closing.get() && self.inflight.borrow().requests.is_empty();
                    if !quiet {
                        tracing::debug!("connection to {addr} failed: {e}");
                        requeue_inflight(&self.inflight, books, Instant::now());
                        books.events.send(Event::ConnectionLost(peer.conn));
                    }
                    self.permits.close();
                    return;
                }
            };
            let now = Instant::now();
            let mut inf = self.inflight.borrow_mut();
            let Some(mut sent) = inf.requests.pop_front() else {
                return self.give_up(format!(
                    "{addr} sent a response (correlation id {corr}) to no request"
                ));
            };
            if corr != sent.correlation_id {
                return self.give_up(format!(
                    "{addr} answered correlation id {corr}, expected {}",
                    sent.correlation_id
                ));
            }
            // Response header v1: correlation id (read) + tagged fields.
            let Some(body) = skip_header_tags(body) else {
                return self.give_up(format!("{addr} sent a truncated response header"));
            };
            let n = sent.batches.min(inf.batches.len());
            // One slice (moving nothing when the queue has not wrapped).
            let batches = &inf.batches.make_contiguous()[..n];
            peer.settle(body, batches, &sent, now);
            inf.batches.drain(..n);
            sent.request.reset();
            inf.spare.push(sent.request);
            let c = &books.counters;
            ShardCounters::add(&c.requests_acked, 1);
            ShardCounters::set(&c.requests_in_flight, inf.requests.len() as u64);
            drop(inf);
            self.permits.signal(1);
        }
    }

    /// A broker that breaks the protocol fails the stream.
    fn give_up(&self, why: String) {
        self.peer.books.fail(why);
        self.peer.books.events.send(Event::Broken(self.peer.conn));
        self.permits.close();
    }
}

impl Peer {
    /// Accounts for one Produce response `body` to `sent`, whose batches are
    /// `batches`: acked ones are counted, retriable failures queued again,
    /// the others given up. A batch the response leaves out (a broker
    /// answering some partitions of a request but not all) is resent,
    /// counted under MISSING_FROM_RESPONSE; a response naming no partition
    /// of the request at all fails the run, and a partition answered twice
    /// counts once.
    pub fn settle(&self, body: &[u8], batches: &[BatchAcct], sent: &Sent, now: Instant) {
        let (addr, books) = (&self.addr, &*self.books);
        let n = batches.len();
        let measuring = books.measuring(now);
        let c = &books.counters;
        let mut total = books.total.borrow_mut();
        let mut interval = books.interval.borrow_mut();
        let request = &sent.request;
        // Which of the request's batches the response answered. A request
        // holds at most one batch per partition, one per partition of the
        // shard's topic, so 128 bits cover all but the widest shards; past
        // those, the rest are looked up as before but not checked for
        // omission.
        let mut answered = 0u128;
        let mut answered_count = 0usize;
        let parsed = read_produce_response(body, self.version, |ack| {
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
            // DUPLICATE_SEQUENCE_NUMBER: the broker already has this batch
            // (an idempotent resend), so it counts as acked.
            if ack.error_code == codes::NONE || ack.error_code == codes::DUPLICATE_SEQUENCE_NUMBER {
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
                books.note_acked(b);
                return;
            }
            self.refused(&ack, b, request, now);
        });
        drop((total, interval));
        match parsed {
            Ok(throttle) => self.throttle(throttle, now),
            Err(e) => {
                books.fail(format!(
                    "{addr} sent a Produce response DataStorm cannot read: {e}"
                ));
                return;
            }
        }
        if answered_count == 0 && n > 0 {
            let missing: u64 = batches.iter().map(|b| b.records).sum();
            ShardCounters::add(&c.records_failed, missing);
            books.fail(format!(
                "{addr} answered a Produce request without any partition"
            ));
            return;
        }
        for (i, b) in batches.iter().enumerate().take(128) {
            if answered & (1 << i) == 0 {
                self.resend_missing(b, request, now);
            }
        }
    }

    /// A batch the broker answered with an error: sent again when a retry
    /// can help, given up otherwise.
    fn refused(
        &self,
        ack: &PartitionAck<'_>,
        b: &BatchAcct,
        request: &ProduceRequestBuilder,
        now: Instant,
    ) {
        let books = &*self.books;
        let code = codes::lookup(ack.error_code);
        books.count_error(code.name, 1);
        if codes::STALE_METADATA.contains(&ack.error_code) {
            books.events.send(Event::MetadataStale);
        }
        // OUT_OF_ORDER_SEQUENCE_NUMBER: an earlier batch of the partition
        // is missing (idempotent producer); resend in order.
        let retriable = code.retriable || ack.error_code == codes::OUT_OF_ORDER_SEQUENCE_NUMBER;
        if retriable && !books.failed() {
            let range = b.start as usize..(b.start + b.len) as usize;
            schedule_retry(books, b, request.batch(range).to_vec(), now, code.name);
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
        books.give_up(
            b,
            "REJECTED",
            format!(
                "{} rejected a batch for partition {} with {code}{detail}{retried}{hint}",
                self.addr, ack.partition
            ),
        );
    }

    /// Counts the broker's throttle time; KIP-219: the client waits it out
    /// before sending again.
    fn throttle(&self, throttle_ms: i32, now: Instant) {
        let ms = throttle_ms.max(0) as u64;
        ShardCounters::add(&self.books.counters.throttle_ms, ms);
        if ms > 0 {
            self.books.events.send(Event::Throttled {
                conn: self.conn,
                until: now + Duration::from_millis(ms),
            });
        }
    }

    /// A batch its response did not mention is not known to be written:
    /// send it again (a duplicate at worst, which the idempotent producer
    /// prevents).
    fn resend_missing(&self, b: &BatchAcct, request: &ProduceRequestBuilder, now: Instant) {
        let books = &*self.books;
        if books.failed() {
            // Counted (once) by give_up.
            books.give_up(
                b,
                MISSING_FROM_RESPONSE,
                format!(
                    "{} left partition {} out of its Produce response",
                    self.addr, b.partition
                ),
            );
        } else {
            books.count_error(MISSING_FROM_RESPONSE, 1);
            let range = b.start as usize..(b.start + b.len) as usize;
            let bytes = request.batch(range).to_vec();
            schedule_retry(books, b, bytes, now, MISSING_FROM_RESPONSE);
        }
    }
}

/// The error counted for a batch its Produce response did not mention.
const MISSING_FROM_RESPONSE: &str = "MISSING_FROM_RESPONSE";

/// Queues `b` (whose bytes are `bytes`) for another attempt, unless it has
/// run out of attempts or of time: then it is given up.
pub(super) fn schedule_retry(
    books: &Books,
    b: &BatchAcct,
    bytes: Vec<u8>,
    now: Instant,
    why: &str,
) {
    let attempt = b.attempt + 1;
    if attempt > books.policy.max_retries {
        books.give_up(
            b,
            "RETRIES_EXHAUSTED",
            format!(
                "a batch for partition {} failed {} times (last: {why}); see --retries",
                b.partition, attempt
            ),
        );
        return;
    }
    if now.saturating_duration_since(b.first) > books.policy.delivery_timeout {
        books.give_up(
            b,
            "DELIVERY_TIMEOUT",
            format!(
                "a batch for partition {} was not acknowledged within the delivery timeout \
                 ({:?}; last error: {why}); see --delivery-timeout",
                b.partition, books.policy.delivery_timeout
            ),
        );
        return;
    }
    let wait = books.backoff(attempt);
    books.push_retry(BatchAcct { attempt, ..*b }, bytes, now + wait);
}

/// Moves every batch awaiting a response on a failed connection to the
/// retry queue, oldest first, and empties the connection's in-flight state.
pub(super) fn requeue_inflight(inflight: &RefCell<InFlight>, books: &Books, now: Instant) {
    let mut inf = inflight.borrow_mut();
    while let Some(mut sent) = inf.requests.pop_front() {
        let n = sent.batches.min(inf.batches.len());
        for b in inf.batches.drain(..n) {
            let range = b.start as usize..(b.start + b.len) as usize;
            let bytes = sent.request.batch(range).to_vec();
            schedule_retry(books, &b, bytes, now, "CONNECTION_FAILED");
        }
        sent.request.reset();
        inf.spare.push(sent.request);
    }
    inf.batches.clear();
    ShardCounters::set(&books.counters.requests_in_flight, 0);
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
    use crate::shard::state::tests::{acct, test_books};
    use datastorm_engine::wire::produce::ProduceRequestBuilder;
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

    fn settle_with(books: &Rc<Books>, parts: &[(i32, i16)]) {
        let (sent, accts) = two_batches();
        let body = response(parts);
        let peer = Peer {
            addr: "b:9092".into(),
            conn: ConnId { link: 0, serial: 0 },
            version: 9,
            books: books.clone(),
        };
        peer.settle(&body, &accts, &sent, Instant::now());
    }

    #[test]
    fn a_batch_left_out_of_a_response_is_sent_again() {
        let books = Rc::new(test_books());
        settle_with(&books, &[(0, 0)]);
        assert_eq!(books.counters.records_acked.load(Relaxed), 10);
        assert_eq!(books.errors.borrow().get(MISSING_FROM_RESPONSE), Some(&1));
        let retry = books.retry.borrow();
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].acct.partition, 1);
        assert_eq!(retry[0].acct.attempt, 1);
        assert_eq!(retry[0].bytes, b"one!");
        assert!(books.failure.borrow().is_none());
    }

    #[test]
    fn a_partition_answered_twice_counts_once() {
        let books = Rc::new(test_books());
        settle_with(&books, &[(0, 0), (0, 0), (1, 0)]);
        assert_eq!(books.counters.records_acked.load(Relaxed), 20);
        assert_eq!(books.counters.batches_acked.load(Relaxed), 2);
        assert!(books.retry.borrow().is_empty());
        assert!(books.errors.borrow().is_empty());
    }

    #[test]
    fn a_response_without_the_requests_partitions_fails_the_run() {
        let books = Rc::new(test_books());
        settle_with(&books, &[(5, 0)]);
        assert_eq!(books.counters.records_failed.load(Relaxed), 20);
        let failure = books.failure.borrow().clone().expect("failed");
        assert_eq!(
            failure,
            "b:9092 answered a Produce request without any partition"
        );
    }

    #[test]
    fn a_retriable_error_queues_the_batch_and_acks_the_other() {
        let books = Rc::new(test_books());
        settle_with(&books, &[(0, 6), (1, 0)]);
        assert_eq!(books.counters.records_acked.load(Relaxed), 10);
        assert_eq!(
            books.errors.borrow().get("NOT_LEADER_OR_FOLLOWER"),
            Some(&1)
        );
        assert_eq!(books.retry.borrow()[0].acct.partition, 0);
        assert!(matches!(books.events.next(), Some(Event::MetadataStale)));
        assert!(books.events.is_empty());
    }
}
