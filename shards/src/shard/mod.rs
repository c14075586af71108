//! What one core does: generate records for its partitions, seal them into
//! batches, pipeline Produce requests to the partition leaders, and account
//! for the acks.
//!
//! The per-record loop is in `generate`: pick a partition, copy key and
//! value into its open batch. It neither allocates nor locks; sealing and
//! sending (`send`), ack handling (`acks`) and connection upkeep (`link`:
//! reconnects, leader moves, request timeouts) happen once per batch or on
//! the error path.

mod acks;
mod generate;
mod link;
mod send;
mod state;

use crate::pacer::{Pacer, Profile};
use crate::payload::{value_source, Keys};
use crate::plan::{RunPlan, StreamPlan};
use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{BatchBuilder, Compressor, RecordHeader};
use datastorm_engine::cluster::Broker;
use datastorm_engine::conn::Connection;
use datastorm_engine::metrics::{latency_histogram, Counters, ShardCounters};
use datastorm_engine::sleeps::SleepCounters;
use generate::{generate, Generation, Sealer};
use hdrhistogram::Histogram;
use link::{watch_request_timeouts, Link, Opener, Watched};
use send::{pump, seal_and_queue, Net};
use state::{Knobs, Part, Shared};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

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
    /// Where this shard's executor copies its sleep counts (lost wake-ups
    /// among them) for the coordinator.
    pub sleeps: Arc<SleepCounters>,
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
    /// Per partition, the acknowledged record numbers (those of the
    /// sequence header) as half-open ranges.
    pub acked: BTreeMap<i32, Vec<(u64, u64)>>,
    /// Partitions stopped by a non-retriable error, and why.
    pub stopped_partitions: BTreeMap<i32, String>,
    /// The idempotent producer id this shard's stream used.
    pub producer_id: Option<i64>,
    /// Why the shard stopped early, if it did.
    pub failure: Option<String>,
    pub elapsed: Duration,
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
        sleeps,
    } = setup;
    let tracker = glommio::spawn_local(datastorm_engine::sleeps::track(sleeps.clone()));
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
    tracker.cancel().await;
    sleeps.record();
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

/// Attempts at each of a shard's first connections before the run fails.
const FIRST_CONNECT_ATTEMPTS: u32 = 3;

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
        closing: Cell::new(false),
        retry: RefCell::default(),
        retry_bytes: Cell::new(0),
        metadata_stale: Cell::new(false),
        stopped: RefCell::new(Vec::new()),
        stopped_reasons: RefCell::new(BTreeMap::new()),
        acked: RefCell::new(BTreeMap::new()),
        delivery_timeout: plan.delivery_timeout,
        max_retries: plan.retries,
        retry_backoff: plan.retry_backoff,
        stop_run_on_error: plan.on_error == crate::plan::OnError::Run,
        unconfirmed: plan.idempotent.then(|| {
            RefCell::new(vec![
                state::FirstBatch::Waiting;
                setup.share.partitions.len()
            ])
        }),
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
        acked: BTreeMap::new(),
        stopped_partitions: BTreeMap::new(),
        producer_id: None,
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
            shared.fail(e.to_string());
            return finish(result, &shared, start);
        }
    };

    // One link per broker that leads one of our partitions. The first
    // connections must succeed: a broker unreachable at the start is a
    // setup problem, not an outage to ride out.
    let watched: Watched = Rc::new(RefCell::new(Vec::new()));
    let opener = Opener {
        plan: plan.clone(),
        topic: stream.topic.clone(),
        shared: shared.clone(),
        watched: watched.clone(),
    };
    let mut links: Vec<Link> = Vec::new();
    for (p, b) in &setup.share.partitions {
        let slot = plan.connection_slot(*p);
        if !links.iter().any(|l| l.addr == b.addr && l.slot == slot) {
            links.push(opener.link(&b.addr, slot));
        }
    }
    for (li, link) in links.iter_mut().enumerate() {
        // A few attempts, with the reconnect backoff between them: the
        // broker answered the run's setup a moment ago, and one connect
        // has been seen to neither complete nor time out until the
        // executor's own timer ended it (see `Connection::connect_with`).
        let mut attempt = 1;
        loop {
            match opener.connect(li, link).await {
                Ok(v) => {
                    result.produce_version = Some(v);
                    break;
                }
                Err(_) if attempt < FIRST_CONNECT_ATTEMPTS && !shared.failed() => {
                    attempt += 1;
                    glommio::timer::sleep(link.next_try.saturating_duration_since(Instant::now()))
                        .await;
                }
                Err(e) => {
                    result.failure = Some(shared.failure.borrow().clone().unwrap_or(e));
                    return finish(result, &shared, start);
                }
            }
        }
    }
    result.brokers = links.iter().map(|l| l.addr.clone()).collect();
    result.brokers.sort();
    result.brokers.dedup();

    let producer = if plan.idempotent {
        match init_producer_id(&links[0].addr, &plan).await {
            Ok(p) => Some(p),
            Err(e) => {
                result.failure = Some(e);
                return finish(result, &shared, start);
            }
        }
    } else {
        None
    };
    result.producer_id = producer.map(|p| p.0);

    let mut parts: Vec<Part> = setup
        .share
        .partitions
        .iter()
        .map(|(id, b)| Part {
            id: *id,
            link: links
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

    let knobs = Knobs {
        acks: plan.acks,
        client_id: plan.client_id.clone(),
        timeout_ms: plan.request_timeout.as_millis().min(i32::MAX as u128) as i32,
        batch_size: plan.batch_size,
        linger: plan.linger,
        compression: plan.compression,
        pacer: RefCell::new(setup.share.pace.clone().map(|(profile, scale)| {
            Pacer::with_profile(profile, scale, start).with_warmup(plan.warmup)
        })),
        producer,
    };
    let watchdog = glommio::spawn_local(watch_request_timeouts(
        shared.clone(),
        watched.clone(),
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
        compressor: Compressor::for_codec(plan.compression),
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
    let mut net = Net {
        links: &mut links,
        opener: &opener,
        next_metadata: Instant::now(),
    };
    generate(
        &gen,
        &knobs,
        &shared,
        &mut parts,
        &mut net,
        &mut sealer,
        values.as_mut(),
        &mut keys,
    )
    .await;

    // Drain: seal what is open, send it, and wait until every batch is
    // acknowledged or given up (resending what failed, reconnecting), up to
    // the drain timeout.
    for i in 0..parts.len() {
        if !parts[i].builder.is_empty() && !shared.failed() {
            seal_and_queue(i, &knobs, &shared, &mut parts, &mut net, &mut sealer).await;
        }
    }
    let deadline = Instant::now() + plan.drain_timeout;
    loop {
        if shared.failed() {
            break;
        }
        pump(&knobs, &shared, &mut parts, &mut net).await;
        let waiting: usize = shared.retry.borrow().len()
            + net
                .links
                .iter()
                .map(|l| {
                    l.pending.len()
                        + l.conn
                            .as_ref()
                            .map_or(0, |c| c.inflight.borrow().requests.len())
                })
                .sum::<usize>();
        if waiting == 0 {
            break;
        }
        if Instant::now() >= deadline {
            shared.fail(format!(
                "{waiting} requests and batches were still unacknowledged {:?} after the run \
                 ended (see --drain-timeout)",
                plan.drain_timeout
            ));
            break;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    shared.closing.set(true);
    for link in net.links.iter_mut() {
        if let Some(c) = link.conn.as_mut() {
            c.sender.shutdown();
            if let Some(r) = c.reader.take() {
                r.await;
            }
        }
    }
    ticker.cancel().await;
    watchdog.cancel().await;
    // Whatever is still in flight or waiting for a retry now was never acked.
    let mut lost: u64 = shared.retry.borrow().iter().map(|r| r.acct.records).sum();
    for link in net.links.iter() {
        lost += link.pending.iter().map(|b| b.records).sum::<u64>();
        if let Some(c) = link.conn.as_ref() {
            lost += c
                .inflight
                .borrow()
                .batches
                .iter()
                .map(|b| b.records)
                .sum::<u64>();
        }
    }
    ShardCounters::add(&shared.counters.records_failed, lost);
    ShardCounters::set(&shared.counters.requests_in_flight, 0);
    finish(result, &shared, start)
}

/// Asks a broker for an idempotent producer id and epoch (InitProducerId
/// without a transactional id).
async fn init_producer_id(addr: &str, plan: &RunPlan) -> Result<(i64, i16), String> {
    use kafka_protocol::messages::InitProducerIdRequest;
    let mut conn = Connection::connect_with(addr, &plan.connect_options())
        .await
        .map_err(|e| e.to_string())?;
    let version = conn
        .version_for::<InitProducerIdRequest>((0, 4))
        .map_err(|e| e.to_string())?;
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
        let resp = conn
            .request(&req, version)
            .await
            .map_err(|e| e.to_string())?;
        let code = datastorm_engine::wire::codes::lookup(resp.error_code);
        if resp.error_code == 0 || !code.retriable || Instant::now() + wait > deadline {
            break resp;
        }
        glommio::timer::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    };
    if resp.error_code != 0 {
        return Err(format!(
            "{addr} refused an idempotent producer id: {} (see --idempotent)",
            datastorm_engine::wire::codes::lookup(resp.error_code)
        ));
    }
    Ok((resp.producer_id.0, resp.producer_epoch))
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
    result.acked = shared.acked.borrow().clone();
    result.stopped_partitions = shared.stopped_reasons.borrow().clone();
    if result.failure.is_none() {
        result.failure = shared.failure.borrow().clone();
    }
    result.elapsed = start
        .elapsed()
        .saturating_sub(shared.measure_from.saturating_duration_since(start));
    result
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
    use super::generate::sequence_header_value;

    #[test]
    fn sequence_header_is_readable_ascii() {
        let mut v = [0u8; 64];
        let n = sequence_header_value(&mut v, 0, 3, 17, 0);
        assert_eq!(&v[..n], b"1/0/3/17/0");
        let n = sequence_header_value(&mut v, 65535, 65535, i32::MAX, u64::MAX);
        assert_eq!(&v[..n], b"1/65535/65535/2147483647/18446744073709551615");
    }
}
