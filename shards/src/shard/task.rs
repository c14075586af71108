//! One stream on one shard as one owned state machine: [`StreamTask`] owns
//! the stream's partitions, broker links, settings and books, and runs
//! through its phases: open (connections, producer id), run (generate, in
//! `generate`), drain, close and finish. Its ack readers and connection
//! watchdogs report through the stream's [`Events`] queue, which
//! [`StreamTask::handle_events`] alone reads.

use super::error::StreamError;
use super::events::{ConnId, Event, Events};
use super::generate::{Input, Limits, RecordForm, Sealer};
use super::link::Link;
use super::state::{Books, Knobs, Part, RetryPolicy};
use super::{ShardEvent, ShardResult, StreamShare};
use crate::e2e::UnixClock;
use crate::pacer::Pacer;
use crate::payload::{value_source, Keys};
use crate::plan::RunPlan;
use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{BatchBuilder, Compressor, RecordHeader};
use datastorm_engine::conn::Connection;
use datastorm_engine::metrics::{latency_histogram, Counters, ShardCounters};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Attempts at each of a shard's first connections before the run fails.
const FIRST_CONNECT_ATTEMPTS: u32 = 3;

/// What one stream on one shard is given.
pub(super) struct StreamSetup {
    pub index: usize,
    pub shards: usize,
    pub cpu: usize,
    pub origin: Instant,
    pub plan: Arc<RunPlan>,
    pub share: StreamShare,
    pub events: mpsc::Sender<ShardEvent>,
    pub stop: Arc<AtomicBool>,
}

/// One stream on one shard: the unit that owns connections, batches and a
/// generator.
pub(super) struct StreamTask {
    /// The run's time origin (see `ShardSetup::origin`).
    pub origin: Instant,
    pub plan: Arc<RunPlan>,
    pub topic: String,
    pub knobs: Knobs,
    /// Paced runs: when each record is due. Batches take their records'
    /// intended times as their latency origin.
    pub pacer: Option<Pacer>,
    pub books: Rc<Books>,
    /// What the ack readers and watchdogs report (see `handle_events`).
    pub events: Events,
    pub parts: Vec<Part>,
    /// One per broker (and connection slot) that leads one of the parts.
    pub links: Vec<Link>,
    pub sealer: Sealer,
    pub limits: Limits,
    /// Partition leaders may have moved: refresh metadata before resending.
    pub metadata_stale: bool,
    /// No metadata refresh before this.
    pub next_metadata: Instant,
    /// The serial number of the next connection opened.
    pub next_serial: u64,
    /// Why each partition stopped by an error stopped, by partition id.
    pub stopped: BTreeMap<i32, String>,
}

/// Runs one stream of one shard to completion. Never panics on broker
/// behaviour: failures end the stream and are reported in its result.
pub(super) async fn run_stream(setup: StreamSetup) -> ShardResult {
    let mut result = ShardResult::empty(&setup);
    let plan = setup.plan.clone();
    let mut task = StreamTask::new(&setup);
    if setup.share.partitions.is_empty() {
        return result;
    }
    // Payload first: a key field the schema lacks fails before connecting.
    let stream = &plan.streams[setup.share.stream];
    let seed = stream_seed(plan.seed, setup.share.stream);
    let values = value_source(
        &stream.payload,
        &stream.keys,
        seed,
        setup.index,
        setup.shards,
    );
    let values = match values {
        Ok(v) => v,
        Err(e) => {
            task.books.fail(e.to_string());
            return task.finish(result);
        }
    };
    if let Err(e) = task.open(&setup.share, &mut result).await {
        result.failure = Some(e.to_string());
        return task.finish(result);
    }
    let headers: Vec<RecordHeader<'_>> = stream
        .headers
        .iter()
        .map(|h| RecordHeader {
            key: h.key.as_bytes(),
            value: h.value.as_bytes(),
        })
        .collect();
    let keys = Keys::new(
        &stream.keys,
        setup.index,
        setup.shards,
        crate::payload::shard_seed(seed, setup.index),
    );
    let mut input = Input {
        values,
        form: RecordForm {
            headers: &headers,
            keyed: keys.is_keyed(),
            field_keys: stream.keys.field().is_some(),
            sequence_header: stream
                .sequence_header
                .then_some((plan.instance as u16, setup.index as u16)),
            e2e: stream.e2e_header.then(|| (plan.host_id, UnixClock::new())),
        },
        keys,
    };
    let ticker = glommio::spawn_local(report_intervals(
        task.books.clone(),
        setup.index,
        setup.events.clone(),
    ));
    task.generate(&mut input).await;
    task.drain().await;
    task.close().await;
    ticker.cancel().await;
    task.finish(result)
}

/// The seed of a stream's data: the run's seed for the first stream, an
/// uncorrelated one derived from it for the others.
fn stream_seed(seed: u64, stream: usize) -> u64 {
    if stream == 0 {
        seed
    } else {
        crate::payload::shard_seed(seed, usize::MAX - stream)
    }
}

impl ShardResult {
    /// A stream's result before it has done anything.
    fn empty(setup: &StreamSetup) -> Self {
        ShardResult {
            index: setup.index,
            stream: setup.share.stream,
            cpu: setup.cpu,
            partitions: setup.share.partitions.iter().map(|(p, _)| *p).collect(),
            brokers: Vec::new(),
            produce_version: None,
            counters: Counters::default(),
            latency: latency_histogram(),
            send_delay: latency_histogram(),
            errors: BTreeMap::new(),
            acked: BTreeMap::new(),
            stopped_partitions: BTreeMap::new(),
            producer_id: None,
            failure: None,
            elapsed: Duration::ZERO,
        }
    }
}

impl StreamTask {
    fn new(setup: &StreamSetup) -> Self {
        let plan = setup.plan.clone();
        let share = &setup.share;
        let start = setup.origin;
        let events = Events::default();
        let books = Rc::new(Books::new(
            share.counters.clone(),
            start + plan.warmup,
            RetryPolicy::of(&plan),
            plan.idempotent.then_some(share.partitions.len()),
            events.clone(),
        ));
        let limits = Limits {
            limit: share.count.unwrap_or(u64::MAX),
            // --duration is the measured part of the run, after the warm-up.
            deadline: plan.stop.duration.map(|d| start + plan.warmup + d),
            rate_control: share.rate_control.clone(),
            stall: plan
                .inject_stall
                .filter(|_| setup.index == 0 && share.stream == 0)
                .map(|(at, d)| (start + at, d)),
            stop: setup.stop.clone(),
        };
        StreamTask {
            origin: start,
            topic: plan.streams[share.stream].topic.clone(),
            knobs: Knobs::of(&plan),
            pacer: share.pace.clone().map(|(profile, scale)| {
                Pacer::with_profile(profile, scale, start).with_warmup(plan.warmup)
            }),
            books,
            events,
            parts: Vec::new(),
            links: Vec::new(),
            sealer: Sealer {
                compressor: Compressor::for_codec(plan.compression),
                scratch: WriteBuf::with_capacity(plan.batch_size + 1024),
            },
            limits,
            metadata_stale: false,
            next_metadata: Instant::now(),
            next_serial: 0,
            stopped: BTreeMap::new(),
            plan,
        }
    }

    /// Opens one link per broker that leads one of the share's partitions
    /// and, for the idempotent producer, gets a producer id. The first
    /// connections must succeed: a broker unreachable at the start is a
    /// setup problem, not an outage to ride out.
    async fn open(
        &mut self,
        share: &StreamShare,
        result: &mut ShardResult,
    ) -> Result<(), StreamError> {
        for (p, b) in &share.partitions {
            let slot = self.plan.connection_slot(*p);
            if !self
                .links
                .iter()
                .any(|l| l.addr == b.addr && l.slot == slot)
            {
                self.links.push(self.new_link(&b.addr, slot));
            }
        }
        for li in 0..self.links.len() {
            result.produce_version = Some(self.connect_first(li).await?);
        }
        result.brokers = self.links.iter().map(|l| l.addr.clone()).collect();
        result.brokers.sort();
        result.brokers.dedup();
        if self.plan.idempotent {
            let producer = init_producer_id(&self.links[0].addr, &self.plan).await?;
            self.knobs.producer = Some(producer);
            result.producer_id = Some(producer.0);
        }
        let start = self.origin;
        let plan = &self.plan;
        self.parts = share
            .partitions
            .iter()
            .map(|(id, b)| Part {
                id: *id,
                link: self
                    .links
                    .iter()
                    .position(|l| l.addr == b.addr && l.slot == plan.connection_slot(*id))
                    .expect("link exists"),
                builder: BatchBuilder::with_capacity(plan.batch_size),
                payload_bytes: 0,
                first: start,
                first_seq: 0,
                last: start,
                last_seq: 0,
                queued: false,
                next_seq: 0,
                batch_seq: 0,
                dead: false,
            })
            .collect();
        Ok(())
    }

    /// Connects link `li` for the first time: a few attempts, with the
    /// reconnect backoff between them (the broker answered the run's setup
    /// a moment ago, and one connect has been seen to neither complete nor
    /// time out until the executor's own timer ended it; see
    /// `Connection::connect_with`).
    async fn connect_first(&mut self, li: usize) -> Result<i16, StreamError> {
        let mut attempt = 1;
        loop {
            match self.connect(li).await {
                Ok(v) => return Ok(v),
                Err(_) if attempt < FIRST_CONNECT_ATTEMPTS && !self.books.failed() => {
                    attempt += 1;
                    let next = self.links[li].next_try;
                    glommio::timer::sleep(next.saturating_duration_since(Instant::now())).await;
                }
                Err(e) => {
                    let failure = self.books.failure.borrow().clone();
                    return Err(failure.map_or(e, StreamError::Failed));
                }
            }
        }
    }

    /// Seals what is open, sends it, and waits until every batch is
    /// acknowledged or given up (resending what failed, reconnecting), up
    /// to the drain timeout.
    async fn drain(&mut self) {
        for i in 0..self.parts.len() {
            if !self.parts[i].builder.is_empty() && !self.books.failed() {
                self.seal(i).await;
            }
        }
        let deadline = Instant::now() + self.plan.drain_timeout;
        while !self.books.failed() {
            self.pump().await;
            let waiting = self.unacknowledged();
            if waiting == 0 {
                break;
            }
            if Instant::now() >= deadline {
                self.books.fail(format!(
                    "{waiting} requests and batches were still unacknowledged {:?} after the run \
                     ended (see --drain-timeout)",
                    self.plan.drain_timeout
                ));
                break;
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Batches waiting for a retry or a request, and requests in flight.
    fn unacknowledged(&self) -> usize {
        let links = self.links.iter().map(|l| {
            l.pending.len()
                + l.conn
                    .as_ref()
                    .map_or(0, |c| c.inflight.borrow().requests.len())
        });
        self.books.retry.borrow().len() + links.sum::<usize>()
    }

    /// Shuts every connection and waits for its reader; whatever is still
    /// in flight or waiting for a retry then was never acked.
    async fn close(&mut self) {
        self.books.closing.set(true);
        for link in self.links.iter_mut() {
            if let Some(c) = link.conn.as_mut() {
                c.sender.shutdown();
                if let Some(r) = c.reader.take() {
                    r.await;
                }
                if let Some(w) = c.watchdog.take() {
                    w.cancel().await;
                }
            }
        }
        // A connection that failed during the drain is still counted.
        self.handle_events();
        let mut lost: u64 = self
            .books
            .retry
            .borrow()
            .iter()
            .map(|r| r.acct.records)
            .sum();
        for link in &self.links {
            lost += link.pending.iter().map(|b| b.records).sum::<u64>();
            if let Some(c) = link.conn.as_ref() {
                let inflight = c.inflight.borrow();
                lost += inflight.batches.iter().map(|b| b.records).sum::<u64>();
            }
        }
        let counters = &self.books.counters;
        ShardCounters::add(&counters.records_failed, lost);
        ShardCounters::set(&counters.requests_in_flight, 0);
    }

    /// The stream's result: its books, after the warm-up (all of the run,
    /// if it never ended).
    fn finish(&self, mut result: ShardResult) -> ShardResult {
        let (books, start) = (&self.books, self.origin);
        let now = books.counters.snapshot();
        let warm = books.warmup_end.get().unwrap_or(now);
        result.counters = now.minus(&warm);
        result.counters.requests_in_flight = 0;
        result.latency = books.total.borrow().clone();
        result.send_delay = books.send_delay.borrow().clone();
        result.errors = books.errors.borrow().clone();
        result.acked = books.acked.borrow().clone();
        result.stopped_partitions = self.stopped.clone();
        if result.failure.is_none() {
            result.failure = books.failure.borrow().clone();
        }
        result.elapsed = start
            .elapsed()
            .saturating_sub(books.measure_from.saturating_duration_since(start));
        result
    }

    /// Applies what the ack readers and watchdogs reported: the one place
    /// events are handled. Called between chunks of records, before a
    /// request goes out, and when a wait for an in-flight slot fails.
    pub fn handle_events(&mut self) {
        let mut stopped_any = false;
        while let Some(event) = self.events.next() {
            match event {
                Event::ConnectionLost(id) => self.mark_broken(id, Some("CONNECTION_FAILED")),
                Event::TimedOut(id) => self.mark_broken(id, Some("REQUEST_TIMED_OUT")),
                Event::Broken(id) => self.mark_broken(id, None),
                Event::Throttled { conn, until } => {
                    if let Some(c) = self.current(conn) {
                        c.throttled_until = Some(until);
                    }
                }
                Event::MetadataStale => self.metadata_stale = true,
                // Once the connections close, no batch is sent any more:
                // a stop reported then comes too late to act on.
                Event::PartitionStopped { .. } if self.books.closing.get() => {}
                Event::PartitionStopped { part, why } => {
                    self.stop_partition(part, why);
                    stopped_any = true;
                }
            }
        }
        if stopped_any && self.parts.iter().all(|p| p.dead) {
            let first = self.stopped.values().next().cloned().unwrap_or_default();
            self.books.fail(format!(
                "every partition of the stream was stopped by errors; the first: {first}"
            ));
        }
    }

    /// The connection `id` names, if it is still its link's current one.
    fn current(&mut self, id: ConnId) -> Option<&mut super::link::LinkConn> {
        self.links[id.link].conn.as_mut().filter(|c| c.id == id)
    }

    /// Marks connection `id` broken (the next pump retires it), counting
    /// `error` unless it was already broken.
    pub fn mark_broken(&mut self, id: ConnId, error: Option<&str>) {
        let books = self.books.clone();
        let Some(c) = self.current(id) else { return };
        if !c.broken {
            if let Some(e) = error {
                books.count_error(e, 1);
            }
            c.broken = true;
        }
        c.permits.close();
    }

    fn stop_partition(&mut self, pi: usize, why: String) {
        let part = &mut self.parts[pi];
        if !part.dead {
            part.dead = true;
            tracing::warn!("partition {} stopped: {why}", part.id);
            self.stopped.insert(part.id, why);
        }
    }
}

/// Asks a broker for an idempotent producer id and epoch (InitProducerId
/// without a transactional id).
async fn init_producer_id(addr: &str, plan: &RunPlan) -> Result<(i64, i16), StreamError> {
    use kafka_protocol::messages::InitProducerIdRequest;
    let mut conn = Connection::connect_with(addr, &plan.connect_options()).await?;
    let version = conn.version_for::<InitProducerIdRequest>((0, 4))?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1);
    // A broker answers "loading" or "not available" while its producer id
    // manager starts (right after a cluster starts): retry those, as Kafka's
    // producer does.
    let deadline = Instant::now() + plan.connect_timeout.max(Duration::from_secs(30));
    let mut wait = Duration::from_millis(100);
    let resp = loop {
        let resp = conn.request(&req, version).await?;
        let code = datastorm_engine::wire::codes::lookup(resp.error_code);
        if resp.error_code == 0 || !code.retriable || Instant::now() + wait > deadline {
            break resp;
        }
        glommio::timer::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    };
    if resp.error_code != 0 {
        return Err(StreamError::ProducerIdRefused {
            addr: addr.to_owned(),
            code: datastorm_engine::wire::codes::lookup(resp.error_code),
        });
    }
    Ok((resp.producer_id.0, resp.producer_epoch))
}

/// Hands the latency histogram of the records acked lately to the
/// coordinator, four times a second (it merges them into its one-second view).
async fn report_intervals(books: Rc<Books>, shard: usize, events: mpsc::Sender<ShardEvent>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let latency = std::mem::replace(&mut *books.interval.borrow_mut(), latency_histogram());
        let send_delay = std::mem::replace(
            &mut *books.send_delay_interval.borrow_mut(),
            latency_histogram(),
        );
        if events
            .send(ShardEvent::Interval {
                shard,
                latency,
                send_delay,
            })
            .is_err()
        {
            return;
        }
    }
}
