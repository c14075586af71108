//! What one core does: generate records for its partitions, seal them into
//! batches, pipeline Produce requests to the partition leaders, and account
//! for the acks.
//!
//! The per-record loop is `generate` below: pick a partition, copy key and
//! value into its open batch. It neither allocates nor locks; sealing,
//! sending and ack handling happen once per batch.

use crate::pacer::{Pacer, Profile};
use crate::payload::{murmur2, value_source, Keys, ValueSource};
use crate::plan::{Acks, RunPlan, StreamPlan, SEQUENCE_HEADER};
use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{BatchBuilder, Lz4FrameEncoder, RecordHeader, BATCH_HEADER_LEN};
use datastorm_engine::cluster::Broker;
use datastorm_engine::conn::{Connection, PipeReader, PipeSender};
use datastorm_engine::metrics::{latency_histogram, record_batch_latency, Counters, ShardCounters};
use datastorm_engine::wire::codes;
use datastorm_engine::wire::produce::{self, read_produce_response, ProduceRequestBuilder};
use datastorm_engine::wire::varint::get_uvarint;
use glommio::sync::Semaphore;
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Records generated between checks of the clock, the stop flag and lingers.
const CHUNK: u64 = 256;
/// A request is sent (waiting for a free slot if needed) once it holds this much.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Everything a shard is given.
pub struct ShardSetup {
    pub index: usize,
    pub shards: usize,
    pub cpu: usize,
    pub plan: Arc<RunPlan>,
    /// This shard's part of each of the plan's streams.
    pub streams: Vec<StreamShare>,
    /// The run's common time origin: pacing, `--duration` and `--warmup`
    /// count from here on every shard.
    pub origin: Instant,
    pub events: mpsc::Sender<ShardEvent>,
    pub stop: Arc<AtomicBool>,
}

/// One shard's part of one stream.
pub struct StreamShare {
    /// Index into the plan's streams.
    pub stream: usize,
    /// The partitions this shard writes to, and their leaders.
    pub partitions: Vec<(i32, Broker)>,
    /// This shard's share of the stream's count.
    pub count: Option<u64>,
    /// The run's rate profile and this shard's share of it (unpaced: `None`).
    pub pace: Option<(Profile, f64)>,
    /// `--rate max`: the run's current target rate (f64 bits), set by the
    /// coordinator; read once per chunk of records.
    pub rate_control: Option<Arc<AtomicU64>>,
    pub counters: Arc<ShardCounters>,
}

/// One stream on one shard: the unit that owns connections, batches and a
/// generator.
struct StreamTask {
    index: usize,
    shards: usize,
    cpu: usize,
    origin: Instant,
    plan: Arc<RunPlan>,
    share: StreamShare,
    events: mpsc::Sender<ShardEvent>,
    stop: Arc<AtomicBool>,
}

/// Sent to the coordinator a few times a second.
pub enum ShardEvent {
    /// Latency of the records acked, and send delay of the records
    /// generated, since the last event.
    Interval {
        shard: usize,
        latency: Histogram<u64>,
        send_delay: Histogram<u64>,
    },
}

/// What one stream on one shard reports when it ends.
#[derive(Debug, Clone)]
pub struct ShardResult {
    pub index: usize,
    /// Index into the plan's streams.
    pub stream: usize,
    pub cpu: usize,
    pub partitions: Vec<i32>,
    pub brokers: Vec<String>,
    pub produce_version: Option<i16>,
    pub counters: Counters,
    /// Per-record latency in microseconds: from intended send time (paced) or
    /// from the record's creation (unpaced) to its ack. After the warm-up.
    pub latency: Histogram<u64>,
    /// Paced runs: microseconds from a record's intended send time to the
    /// moment the generator wrote it into its batch (generator stalls).
    pub send_delay: Histogram<u64>,
    /// Error responses by Kafka error name, and connection failures.
    pub errors: BTreeMap<String, u64>,
    /// Why the shard stopped early, if it did.
    pub failure: Option<String>,
    pub elapsed: Duration,
}

/// State shared by the shard's sender loop and its ack readers (same thread).
struct Shared {
    counters: Arc<ShardCounters>,
    total: RefCell<Histogram<u64>>,
    interval: RefCell<Histogram<u64>>,
    send_delay: RefCell<Histogram<u64>>,
    send_delay_interval: RefCell<Histogram<u64>>,
    /// The warm-up ends here; results count from here.
    measure_from: Instant,
    /// The counters when the warm-up ended (`None` while it lasts).
    warmup_end: Cell<Option<Counters>>,
    errors: RefCell<BTreeMap<String, u64>>,
    failure: RefCell<Option<String>>,
    closing: std::cell::Cell<bool>,
    /// Batches to send again after a retriable error, with their bytes.
    retry: RefCell<VecDeque<Retry>>,
}

/// A batch waiting to be resent.
struct Retry {
    acct: BatchAcct,
    bytes: Vec<u8>,
    not_before: Instant,
}

impl Shared {
    fn fail(&self, why: String) {
        let mut f = self.failure.borrow_mut();
        if f.is_none() {
            *f = Some(why);
        }
    }

    fn failed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    fn count_error(&self, name: &str, n: u64) {
        *self.errors.borrow_mut().entry(name.to_owned()).or_default() += n;
        ShardCounters::add(&self.counters.errors, n);
    }

    /// Whether results count at `now`. The first call after the warm-up
    /// snapshots the counters, so the warm-up is subtracted exactly: every
    /// accounting site asks before it counts.
    #[inline]
    fn measuring(&self, now: Instant) -> bool {
        if self.warmup_end.get().is_some() {
            return true;
        }
        if now < self.measure_from {
            return false;
        }
        self.warmup_end.set(Some(self.counters.snapshot()));
        true
    }
}

/// Accounting for one batch between its seal and its ack.
#[derive(Debug, Clone, Copy)]
struct BatchAcct {
    part: usize,
    partition: i32,
    records: u64,
    payload_bytes: u64,
    record_bytes: u64,
    first: Instant,
    last: Instant,
    /// Where the batch's bytes lie in its request.
    start: u32,
    len: u32,
    /// 0 for the first send.
    attempt: u32,
}

/// A request awaiting its response. It keeps its buffer, so a batch the
/// broker answers with a retriable error can be sent again.
struct Sent {
    correlation_id: i32,
    sent_at: Instant,
    batches: usize,
    request: ProduceRequestBuilder,
}

/// Requests awaiting a response on one connection, oldest first.
struct InFlight {
    requests: VecDeque<Sent>,
    batches: VecDeque<BatchAcct>,
    /// Request buffers not in use, for the sender to take.
    spare: Vec<ProduceRequestBuilder>,
}

/// One broker connection as the sender loop sees it.
struct Link {
    sender: PipeSender,
    request: ProduceRequestBuilder,
    /// Batches in `request`, not yet sent.
    pending: Vec<BatchAcct>,
    inflight: Rc<RefCell<InFlight>>,
    permits: Rc<Semaphore>,
    version: i16,
}

/// One partition's open batch.
struct Part {
    id: i32,
    link: usize,
    builder: BatchBuilder,
    payload_bytes: u64,
    first: Instant,
    first_seq: u64,
    last: Instant,
    last_seq: u64,
    /// A sealed batch of this partition waits in its link's request.
    queued: bool,
    /// The next record's number in this partition (the sequence header).
    next_seq: u64,
}

/// Settings the hot loop reads.
struct Knobs {
    acks: Acks,
    client_id: String,
    timeout_ms: i32,
    batch_size: usize,
    linger: Duration,
    compression: datastorm_engine::batch::Compression,
    max_in_flight: u64,
    /// Paced runs: when each record is due. Batches take their records'
    /// intended times as their latency origin.
    pacer: RefCell<Option<Pacer>>,
}

/// Runs one shard to completion: each of its streams as a task on this
/// executor, with its own connections. Never panics on broker behaviour:
/// failures end the stream (and the run) and are reported in the results,
/// one per stream in the plan's order.
pub async fn run_shard(setup: ShardSetup) -> Vec<ShardResult> {
    let ShardSetup {
        index,
        shards,
        cpu,
        plan,
        streams,
        origin,
        events,
        stop,
    } = setup;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|share| {
            let task = StreamTask {
                index,
                shards,
                cpu,
                origin,
                plan: plan.clone(),
                share,
                events: events.clone(),
                stop: stop.clone(),
            };
            let stop = stop.clone();
            glommio::spawn_local(async move {
                let r = run_stream(task).await;
                if r.failure.is_some() {
                    stop.store(true, Relaxed);
                }
                r
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await);
    }
    results
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

async fn run_stream(setup: StreamTask) -> ShardResult {
    let start = setup.origin;
    let plan = setup.plan.clone();
    let stream: &StreamPlan = &plan.streams[setup.share.stream];
    let shared = Rc::new(Shared {
        counters: setup.share.counters.clone(),
        total: RefCell::new(latency_histogram()),
        interval: RefCell::new(latency_histogram()),
        send_delay: RefCell::new(latency_histogram()),
        send_delay_interval: RefCell::new(latency_histogram()),
        measure_from: setup.origin + plan.warmup,
        warmup_end: Cell::new(None),
        errors: RefCell::new(BTreeMap::new()),
        failure: RefCell::new(None),
        closing: std::cell::Cell::new(false),
        retry: RefCell::new(VecDeque::new()),
    });
    let mut result = ShardResult {
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
        failure: None,
        elapsed: Duration::ZERO,
    };
    if setup.share.partitions.is_empty() {
        return result;
    }
    // Payload first: a key field the schema lacks fails before connecting.
    let seed = stream_seed(plan.seed, setup.share.stream);
    let mut values = match value_source(
        &stream.payload,
        &stream.keys,
        seed,
        setup.index,
        setup.shards,
    ) {
        Ok(v) => v,
        Err(e) => {
            shared.fail(e);
            return finish(result, &shared, start);
        }
    };

    // One connection per broker that leads one of our partitions.
    let mut broker_addrs: Vec<String> = Vec::new();
    for (_, b) in &setup.share.partitions {
        if !broker_addrs.contains(&b.addr) {
            broker_addrs.push(b.addr.clone());
        }
    }
    let acks = plan.acks;
    let mut links = Vec::with_capacity(broker_addrs.len());
    let mut readers = Vec::new();
    for addr in &broker_addrs {
        let conn = match Connection::connect(addr, &plan.client_id, plan.connect_timeout).await {
            Ok(c) => c,
            Err(e) => {
                shared.count_error("CONNECT_FAILED", 1);
                result.failure = Some(e.to_string());
                return finish(result, &shared, start);
            }
        };
        let version = match conn.version_for::<kafka_protocol::messages::ProduceRequest>((
            produce::MIN_VERSION,
            produce::MAX_VERSION,
        )) {
            Ok(v) => v,
            Err(e) => {
                result.failure = Some(e.to_string());
                return finish(result, &shared, start);
            }
        };
        result.produce_version = Some(version);
        let (sender, reader) = conn.into_pipeline();
        let request_capacity = plan.batch_size * 2 + 4096;
        let inflight = Rc::new(RefCell::new(InFlight {
            requests: VecDeque::with_capacity(plan.max_in_flight + 1),
            batches: VecDeque::with_capacity(256),
            // One buffer per in-flight slot; the link holds one more.
            spare: (0..plan.max_in_flight)
                .map(|_| {
                    ProduceRequestBuilder::new(&stream.topic, &plan.client_id, request_capacity)
                })
                .collect(),
        }));
        let permits = Rc::new(Semaphore::new(plan.max_in_flight as u64));
        if acks != Acks::None {
            readers.push(glommio::spawn_local(read_acks(
                reader,
                inflight.clone(),
                permits.clone(),
                shared.clone(),
                version,
                (plan.retries, plan.retry_backoff),
            )));
        }
        links.push(Link {
            sender,
            request: ProduceRequestBuilder::new(
                &stream.topic,
                &plan.client_id,
                plan.batch_size * 2 + 4096,
            ),
            pending: Vec::with_capacity(64),
            inflight,
            permits,
            version,
        });
    }
    result.brokers = broker_addrs.clone();

    let mut parts: Vec<Part> = setup
        .share
        .partitions
        .iter()
        .map(|(id, b)| Part {
            id: *id,
            link: broker_addrs
                .iter()
                .position(|a| *a == b.addr)
                .expect("link exists"),
            builder: BatchBuilder::with_capacity(plan.batch_size),
            payload_bytes: 0,
            first: start,
            first_seq: 0,
            last: start,
            last_seq: 0,
            queued: false,
            next_seq: 0,
        })
        .collect();

    let knobs = Knobs {
        acks,
        client_id: plan.client_id.clone(),
        timeout_ms: plan.request_timeout.as_millis().min(i32::MAX as u128) as i32,
        batch_size: plan.batch_size,
        linger: plan.linger,
        compression: plan.compression,
        max_in_flight: plan.max_in_flight as u64,
        pacer: RefCell::new(setup.share.pace.clone().map(|(profile, scale)| {
            Pacer::with_profile(profile, scale, start).with_warmup(plan.warmup)
        })),
    };
    let watchdog = glommio::spawn_local(watch_request_timeouts(
        shared.clone(),
        links
            .iter()
            .map(|l| {
                (
                    l.sender.addr().to_owned(),
                    l.inflight.clone(),
                    l.permits.clone(),
                )
            })
            .collect(),
        plan.request_timeout,
    ));
    let ticker = glommio::spawn_local(report_intervals(
        shared.clone(),
        setup.index,
        setup.events.clone(),
    ));

    let mut keys = Keys::new(
        &stream.keys,
        setup.index,
        setup.shards,
        crate::payload::shard_seed(seed, setup.index),
    );
    let mut sealer = Sealer {
        lz4: Lz4FrameEncoder::new(),
        scratch: WriteBuf::with_capacity(plan.batch_size + 1024),
    };
    let static_headers: Vec<RecordHeader<'_>> = stream
        .headers
        .iter()
        .map(|h| RecordHeader {
            key: h.key.as_bytes(),
            value: h.value.as_bytes(),
        })
        .collect();
    let gen = Generation {
        headers: &static_headers,
        field_keys: stream.keys.field().is_some(),
        sequence_header: stream
            .sequence_header
            .then_some((plan.instance as u16, setup.index as u16)),
        limit: setup.share.count.unwrap_or(u64::MAX),
        // --duration is the measured part of the run, after the warm-up.
        deadline: plan.stop.duration.map(|d| start + plan.warmup + d),
        rate_control: setup.share.rate_control.clone(),
        stall: plan
            .inject_stall
            .filter(|_| setup.index == 0 && setup.share.stream == 0)
            .map(|(at, d)| (start + at, d)),
        stop: setup.stop.clone(),
    };
    generate(
        &gen,
        &knobs,
        &shared,
        &mut parts,
        &mut links,
        &mut sealer,
        values.as_mut(),
        &mut keys,
    )
    .await;

    // Drain: seal what is open, send it, wait for every ack (and resend
    // what the brokers asked to be retried).
    for i in 0..parts.len() {
        if !parts[i].builder.is_empty() && !shared.failed() {
            seal_and_queue(i, &knobs, &shared, &mut parts, &mut links, &mut sealer).await;
        }
    }
    let deadline = Instant::now() + plan.drain_timeout;
    loop {
        if shared.failed() {
            break;
        }
        let due = shared.retry.borrow().iter().map(|r| r.not_before).min();
        if let Some(due) = due {
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                glommio::timer::sleep(wait).await;
            }
            requeue_retries(&knobs, &shared, &mut parts, &mut links).await;
        }
        for link in links.iter_mut() {
            if !shared.failed() {
                flush(link, &knobs, &shared, &mut parts, true).await;
            }
        }
        if acks == Acks::None {
            break;
        }
        // Holding every permit of a link means nothing is in flight on it.
        for link in &links {
            let left = deadline.saturating_duration_since(Instant::now());
            let all = knobs.max_in_flight;
            let drained = glommio::timer::timeout(left, async {
                link.permits.acquire(all).await.map_err(|e| {
                    glommio::GlommioError::IoError(std::io::Error::other(e.to_string()))
                })
            })
            .await;
            match drained {
                Ok(()) => link.permits.signal(all),
                Err(_) if !shared.failed() => {
                    let n = link.inflight.borrow().requests.len();
                    shared.fail(format!(
                        "{n} requests to {} were still unanswered {:?} after the run ended",
                        link.sender.addr(),
                        plan.drain_timeout
                    ));
                }
                Err(_) => {}
            }
        }
        if shared.retry.borrow().is_empty() {
            break;
        }
    }
    shared.closing.set(true);
    for link in &links {
        link.sender.shutdown();
    }
    for r in readers {
        r.await;
    }
    ticker.cancel().await;
    watchdog.cancel().await;
    // Whatever is still in flight or waiting for a retry now was never acked.
    let mut lost: u64 = shared.retry.borrow().iter().map(|r| r.acct.records).sum();
    for link in &links {
        lost += link
            .inflight
            .borrow()
            .batches
            .iter()
            .map(|b| b.records)
            .sum::<u64>();
    }
    ShardCounters::add(&shared.counters.records_failed, lost);
    ShardCounters::set(&shared.counters.requests_in_flight, 0);
    finish(result, &shared, start)
}

fn finish(mut result: ShardResult, shared: &Shared, start: Instant) -> ShardResult {
    // Results exclude the warm-up (all of the run, if it never ended).
    let now = shared.counters.snapshot();
    let warm = shared.warmup_end.get().unwrap_or(now);
    result.counters = now.minus(&warm);
    result.counters.requests_in_flight = 0;
    result.latency = shared.total.borrow().clone();
    result.send_delay = shared.send_delay.borrow().clone();
    result.errors = shared.errors.borrow().clone();
    if result.failure.is_none() {
        result.failure = shared.failure.borrow().clone();
    }
    result.elapsed = start
        .elapsed()
        .saturating_sub(shared.measure_from.saturating_duration_since(start));
    result
}

struct Generation<'a> {
    /// `--rate max`: the run's target rate, moved by the coordinator.
    rate_control: Option<Arc<AtomicU64>>,
    /// Testing aid: block the executor once, at this time, for this long.
    stall: Option<(Instant, Duration)>,
    headers: &'a [RecordHeader<'a>],
    /// Keys come from the value source (`--key field:NAME`).
    field_keys: bool,
    /// (instance, shard) for the sequence header, when it is on.
    sequence_header: Option<(u16, u16)>,
    limit: u64,
    deadline: Option<Instant>,
    stop: Arc<AtomicBool>,
}

struct Sealer {
    lz4: Lz4FrameEncoder,
    scratch: WriteBuf,
}

/// The generator loop. Per record: choose the partition, seal its batch if
/// the record would overflow it, append key and value.
#[allow(clippy::too_many_arguments)]
async fn generate(
    gen: &Generation<'_>,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    links: &mut [Link],
    sealer: &mut Sealer,
    values: &mut dyn ValueSource,
    keys: &mut Keys,
) {
    let keyed = keys.is_keyed();
    let field_keys = gen.field_keys;
    let paced = knobs.pacer.borrow().is_some();
    let n_parts = parts.len();
    let mut cur = 0usize;
    let mut sticky_bytes = 0usize;
    let mut seq = 0u64;
    let mut now = Instant::now();
    let mut now_ms = epoch_ms();
    let mut next_linger_check = now;
    let mut stall = gen.stall;
    let mut rate_bits = gen.rate_control.as_ref().map(|c| c.load(Relaxed));
    loop {
        if gen.stop.load(Relaxed) || shared.failed() || seq >= gen.limit {
            break;
        }
        if gen.deadline.is_some_and(|d| now >= d) {
            break;
        }
        if let Some((at, d)) = stall.filter(|(at, _)| now >= *at) {
            // Deliberately blocks the executor (tests of stall reporting).
            let _ = at;
            std::thread::sleep(d);
            stall = None;
            now = Instant::now();
        }
        if let (Some(ctl), Some(bits)) = (&gen.rate_control, rate_bits.as_mut()) {
            let b = ctl.load(Relaxed);
            if b != *bits {
                *bits = b;
                if let Some(p) = knobs.pacer.borrow_mut().as_mut() {
                    p.rebase(now, seq, f64::from_bits(b));
                }
            }
        }
        let mut budget = CHUNK.min(gen.limit - seq);
        if paced {
            let (due, next) = {
                let p = knobs.pacer.borrow();
                let p = p.as_ref().expect("paced");
                (p.due(now).min(gen.limit), p.intended(seq))
            };
            if due <= seq {
                pump(links, knobs, shared, parts).await;
                linger_check(now, knobs, shared, parts, links, sealer).await;
                let mut wake = next;
                if let Some(d) = gen.deadline {
                    wake = wake.min(d);
                }
                if let Some(l) = earliest_linger(parts, knobs.linger) {
                    wake = wake.min(l);
                }
                let wait = wake.saturating_duration_since(Instant::now());
                if wait > Duration::from_micros(50) {
                    glommio::timer::sleep(wait.min(Duration::from_millis(100))).await;
                } else {
                    glommio::yield_if_needed().await;
                }
                now = Instant::now();
                now_ms = epoch_ms();
                continue;
            }
            budget = budget.min(due - seq);
        }

        let chunk_start = seq;
        for _ in 0..budget {
            let record = values.record(seq);
            let value = record.value;
            let key = if field_keys {
                record.key
            } else {
                keys.key(seq)
            };
            let mut pi = match key {
                Some(k) if keyed => (murmur2(k) & 0x7fff_ffff) as usize % n_parts,
                _ => cur,
            };
            let need = value.len() + key.map_or(0, <[u8]>::len) + 24;
            if !parts[pi].builder.is_empty()
                && parts[pi].builder.uncompressed_size() + need > knobs.batch_size
            {
                seal_and_queue(pi, knobs, shared, parts, links, sealer).await;
                if shared.failed() {
                    return;
                }
                if !keyed {
                    cur = (cur + 1) % n_parts;
                    pi = cur;
                    sticky_bytes = 0;
                }
            }
            let part = &mut parts[pi];
            if part.builder.is_empty() {
                // Paced: latency counts from the record's intended send time.
                part.first = match knobs.pacer.borrow().as_ref() {
                    Some(p) => p.intended(seq),
                    None => now,
                };
                part.first_seq = seq;
                part.payload_bytes = 0;
            }
            part.last = now;
            part.last_seq = seq;
            part.payload_bytes += need as u64 - 24;
            if !keyed {
                // Unkeyed records stick to one partition for a batch's worth
                // of bytes, then move on (Kafka's uniform sticky partitioner,
                // KIP-794): lingers seal batches before they fill, so
                // switching only on a full batch would starve partitions at
                // low rates.
                sticky_bytes += need;
                if sticky_bytes >= knobs.batch_size {
                    cur = (cur + 1) % n_parts;
                    sticky_bytes = 0;
                }
            }
            match gen.sequence_header {
                None => part.builder.append(now_ms, key, value, gen.headers),
                Some((instance, shard)) => {
                    let mut v = [0u8; 64];
                    let n = sequence_header_value(&mut v, instance, shard, part.id, part.next_seq);
                    part.next_seq += 1;
                    let extra = RecordHeader {
                        key: SEQUENCE_HEADER.as_bytes(),
                        value: &v[..n],
                    };
                    part.builder
                        .append_with(now_ms, key, value, gen.headers, Some(extra));
                }
            }
            seq += 1;
        }
        if paced && seq > chunk_start {
            record_send_delay(knobs, shared, now, chunk_start, seq - 1);
        }

        now = Instant::now();
        if now >= next_linger_check {
            now_ms = epoch_ms();
            linger_check(now, knobs, shared, parts, links, sealer).await;
            next_linger_check = now + Duration::from_micros(500);
        }
        pump(links, knobs, shared, parts).await;
        glommio::yield_if_needed().await;
    }
}

/// Send delay of records `first..=last`, written at `now`: how late the
/// generator was against their intended times. Once per chunk.
fn record_send_delay(knobs: &Knobs, shared: &Shared, now: Instant, first: u64, last: u64) {
    let p = knobs.pacer.borrow();
    let Some(p) = p.as_ref() else { return };
    let d_first = now.saturating_duration_since(p.intended(first)).as_micros() as u64;
    let d_last = now.saturating_duration_since(p.intended(last)).as_micros() as u64;
    let n = last - first + 1;
    record_batch_latency(
        &mut shared.send_delay_interval.borrow_mut(),
        d_first,
        d_last,
        n,
    );
    if shared.measuring(now) {
        record_batch_latency(&mut shared.send_delay.borrow_mut(), d_first, d_last, n);
    }
}

/// Writes `1/INSTANCE/SHARD/PARTITION/SEQUENCE` in ASCII (readable by any
/// consumer tool) into `out` and returns its length. No allocation.
fn sequence_header_value(
    out: &mut [u8; 64],
    instance: u16,
    shard: u16,
    partition: i32,
    seq: u64,
) -> usize {
    fn put(out: &mut [u8; 64], pos: usize, n: u64) -> usize {
        let mut tmp = [0u8; 20];
        let digits = crate::payload::decimal(n, &mut tmp);
        out[pos..pos + digits.len()].copy_from_slice(digits);
        pos + digits.len()
    }
    out[0] = b'1';
    let mut pos = 1;
    for n in [
        u64::from(instance),
        u64::from(shard),
        partition.max(0) as u64,
        seq,
    ] {
        out[pos] = b'/';
        pos = put(out, pos + 1, n);
    }
    pos
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn earliest_linger(parts: &[Part], linger: Duration) -> Option<Instant> {
    parts
        .iter()
        .filter(|p| !p.builder.is_empty() && !p.queued)
        .map(|p| p.first + linger)
        .min()
}

/// Seals batches whose first record has waited `linger`.
async fn linger_check(
    now: Instant,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    links: &mut [Link],
    sealer: &mut Sealer,
) {
    for i in 0..parts.len() {
        let p = &parts[i];
        if !p.builder.is_empty() && now.saturating_duration_since(p.first) >= knobs.linger {
            seal_and_queue(i, knobs, shared, parts, links, sealer).await;
        }
    }
}

/// Seals partition `pi`'s batch into its broker's next request, and sends
/// that request now if a slot is free.
async fn seal_and_queue(
    pi: usize,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    links: &mut [Link],
    sealer: &mut Sealer,
) {
    let li = parts[pi].link;
    if !make_room(pi, knobs, shared, parts, links).await {
        return;
    }
    let part = &mut parts[pi];
    sealer.scratch.clear();
    let sealed = part
        .builder
        .seal(knobs.compression, &mut sealer.lz4, &mut sealer.scratch);
    debug_assert!(sealed.wire_bytes >= BATCH_HEADER_LEN);
    let link = &mut links[li];
    let range = link.request.add_batch(part.id, sealer.scratch.as_slice());
    let last = match knobs.pacer.borrow().as_ref() {
        Some(p) => p.intended(part.last_seq),
        None => part.last,
    };
    link.pending.push(BatchAcct {
        part: pi,
        partition: part.id,
        records: sealed.records as u64,
        payload_bytes: part.payload_bytes,
        record_bytes: sealed.records_bytes as u64,
        first: part.first,
        last,
        start: range.start as u32,
        len: range.len() as u32,
        attempt: 0,
    });
    ShardCounters::add(&shared.counters.batch_bytes_sent, sealed.wire_bytes as u64);
    part.queued = true;
    let full = link.request.body_len() >= MAX_REQUEST_BYTES;
    flush(link, knobs, shared, parts, full).await;
}

/// A partition appears once per request: if partition `pi` already has a
/// batch in its broker's pending request, sends that request first. False
/// when the shard has failed.
async fn make_room(
    pi: usize,
    knobs: &Knobs,
    shared: &Shared,
    parts: &mut [Part],
    links: &mut [Link],
) -> bool {
    if parts[pi].queued {
        let li = parts[pi].link;
        flush(&mut links[li], knobs, shared, parts, true).await;
    }
    !shared.failed()
}

/// Puts batches whose retry backoff has passed back into their broker's
/// next request.
async fn requeue_retries(knobs: &Knobs, shared: &Shared, parts: &mut [Part], links: &mut [Link]) {
    let now = Instant::now();
    loop {
        let next = {
            let mut q = shared.retry.borrow_mut();
            match q.iter().position(|r| r.not_before <= now) {
                Some(i) => q.remove(i),
                None => None,
            }
        };
        let Some(r) = next else { return };
        let pi = r.acct.part;
        if !make_room(pi, knobs, shared, parts, links).await {
            return;
        }
        let link = &mut links[parts[pi].link];
        let range = link.request.add_batch(r.acct.partition, &r.bytes);
        link.pending.push(BatchAcct {
            start: range.start as u32,
            len: range.len() as u32,
            ..r.acct
        });
        parts[pi].queued = true;
        ShardCounters::add(&shared.counters.retries, 1);
        ShardCounters::add(&shared.counters.batch_bytes_sent, r.bytes.len() as u64);
    }
}

/// Sends every link's waiting request for which a slot is free, after
/// requeueing due retries.
async fn pump(links: &mut [Link], knobs: &Knobs, shared: &Shared, parts: &mut [Part]) {
    if !shared.retry.borrow().is_empty() {
        requeue_retries(knobs, shared, parts, links).await;
    }
    for link in links.iter_mut() {
        if !link.pending.is_empty() {
            flush(link, knobs, shared, parts, false).await;
        }
    }
}

/// Sends the link's waiting request. With `wait`, waits for an in-flight
/// slot (up to the request timeout); without, sends only if one is free.
async fn flush(link: &mut Link, knobs: &Knobs, shared: &Shared, parts: &mut [Part], wait: bool) {
    if link.pending.is_empty() {
        return;
    }
    if knobs.acks != Acks::None {
        let got = if wait {
            // A closed semaphore means the connection failed or the
            // watchdog timed a request out; the failure is recorded.
            link.permits.acquire(1).await.is_ok()
        } else {
            link.permits.try_acquire(1).unwrap_or(false)
        };
        if !got {
            return;
        }
    }
    let corr = link.sender.take_correlation_id();
    let records: u64 = link.pending.iter().map(|b| b.records).sum();
    let frame = link.request.finish(
        link.version,
        corr,
        &knobs.client_id,
        knobs.acks.wire(),
        knobs.timeout_ms,
    );
    // The broker cannot answer before the whole request is written, so the
    // in-flight entry can be added after the write completes.
    let written = link.sender.write(frame).await;
    ShardCounters::add(&shared.counters.requests_sent, 1);
    ShardCounters::add(&shared.counters.records_sent, records);
    for b in &link.pending {
        parts[b.part].queued = false;
    }
    if let Err(e) = written {
        shared.count_error("CONNECTION_FAILED", 1);
        shared.fail(e.to_string());
        link.pending.clear();
        link.request.reset();
        return;
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
        }
        ShardCounters::add(&c.requests_acked, 1);
        link.request.reset();
    } else {
        let mut inf = link.inflight.borrow_mut();
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

/// Reads a connection's Produce responses, in order, and accounts for them.
async fn read_acks(
    mut reader: PipeReader,
    inflight: Rc<RefCell<InFlight>>,
    permits: Rc<Semaphore>,
    shared: Rc<Shared>,
    version: i16,
    retry: (u32, Duration),
) {
    let (max_retries, backoff) = retry;
    let addr = reader.addr().to_owned();
    loop {
        let (corr, body) = match reader.next().await {
            Ok(r) => r,
            Err(e) => {
                if !(shared.closing.get() && inflight.borrow().requests.is_empty()) {
                    shared.count_error("CONNECTION_FAILED", 1);
                    shared.fail(e.to_string());
                }
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
            permits.close();
            return;
        };
        if corr != sent.correlation_id {
            shared.fail(format!(
                "{addr} answered correlation id {corr}, expected {}",
                sent.correlation_id
            ));
            permits.close();
            return;
        }
        // Response header v1: correlation id (read) + tagged fields.
        let Some(body) = skip_header_tags(body) else {
            shared.fail(format!("{addr} sent a truncated response header"));
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
            if ack.error_code == 0 {
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
                return;
            }
            let code = codes::lookup(ack.error_code);
            shared.count_error(code.name, 1);
            if code.retriable && b.attempt < max_retries && !shared.failed() {
                // Resent by the sender loop after a backoff (error path: the
                // copy of the batch is allocated here, not per record).
                let range = b.start as usize..(b.start + b.len) as usize;
                let wait = backoff
                    .saturating_mul(1 << b.attempt.min(10))
                    .min(Duration::from_secs(1));
                shared.retry.borrow_mut().push_back(Retry {
                    acct: BatchAcct {
                        attempt: b.attempt + 1,
                        ..*b
                    },
                    bytes: request.batch(range).to_vec(),
                    not_before: now + wait,
                });
                return;
            }
            ShardCounters::add(&c.records_failed, b.records);
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
            shared.fail(format!(
                "{addr} rejected a batch for partition {} with {code}{detail}{retried}{hint}",
                ack.partition
            ));
        });
        match &parsed {
            Ok(throttle) => ShardCounters::add(&c.throttle_ms, (*throttle).max(0) as u64),
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

fn skip_header_tags(body: &[u8]) -> Option<&[u8]> {
    let (fields, mut pos) = get_uvarint(body)?;
    for _ in 0..fields {
        let (_tag, n) = get_uvarint(body.get(pos..)?)?;
        pos += n;
        let (len, n) = get_uvarint(body.get(pos..)?)?;
        pos += n + len as usize;
    }
    body.get(pos..)
}

/// Fails the shard when a link's oldest request has waited longer than the
/// request timeout. One timer for the shard instead of one per request keeps
/// the send path free of allocations.
async fn watch_request_timeouts(
    shared: Rc<Shared>,
    links: Vec<(String, Rc<RefCell<InFlight>>, Rc<Semaphore>)>,
    timeout: Duration,
) {
    loop {
        glommio::timer::sleep(Duration::from_millis(100).min(timeout)).await;
        let now = Instant::now();
        for (addr, inflight, permits) in &links {
            let oldest = inflight.borrow().requests.front().map(|r| r.sent_at);
            if oldest.is_some_and(|t| now.saturating_duration_since(t) > timeout) {
                shared.count_error("REQUEST_TIMED_OUT", 1);
                shared.fail(format!(
                    "no response from {addr} within the request timeout ({timeout:?})"
                ));
                permits.close();
            }
        }
    }
}

/// Hands the latency histogram of the records acked lately to the
/// coordinator, four times a second (it merges them into its one-second view).
async fn report_intervals(shared: Rc<Shared>, shard: usize, events: mpsc::Sender<ShardEvent>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let latency = std::mem::replace(&mut *shared.interval.borrow_mut(), latency_histogram());
        let send_delay = std::mem::replace(
            &mut *shared.send_delay_interval.borrow_mut(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_header_is_readable_ascii() {
        let mut v = [0u8; 64];
        let n = sequence_header_value(&mut v, 0, 3, 17, 0);
        assert_eq!(&v[..n], b"1/0/3/17/0");
        let n = sequence_header_value(&mut v, 65535, 65535, i32::MAX, u64::MAX);
        assert_eq!(&v[..n], b"1/65535/65535/2147483647/18446744073709551615");
    }
}
