//! The consume coordinator: finds the topic's partitions and leaders, deals
//! the partitions to this instance's shards, starts one pinned executor per
//! CPU, turns the shards' counters and interval histograms into a progress
//! view about once a second, and collects what the shards measured.

use super::plan::{assign_partitions, ConsumePlan};
use super::shard::{consume_shard, ConsumeEvent, ConsumeShardResult, ConsumeShardSetup};
use super::state::{ConsumeCounters, ConsumeCounts};
use crate::verify::{Producer, SeqCheck};
use datastorm_engine::cluster::{self, Broker, ClusterError};
use datastorm_engine::metrics::latency_histogram;
use datastorm_engine::runtime::{run_pinned_with, run_unpinned, RuntimeError};
use datastorm_engine::wire::fetch::{self, FetchTopicRef};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("could not start the consumer: {0}")]
    Setup(String),
}

/// About a second of a consume run, for the status line and the timeline.
#[derive(Debug, Clone)]
pub struct ConsumeProgress {
    pub elapsed: Duration,
    /// Length of this interval.
    pub interval: Duration,
    /// Counter increase in this interval (`lag` is the gauge's value now).
    pub delta: ConsumeCounts,
    pub totals: ConsumeCounts,
    /// End-to-end latency of the records read in (about) this interval, µs.
    pub e2e: Histogram<u64>,
    /// Fetch latency of (about) this interval, µs.
    pub fetch_latency: Histogram<u64>,
}

/// What the topic looked like when the run started.
#[derive(Debug, Clone)]
pub struct ConsumePrepared {
    pub topic: FetchTopicRef,
    pub brokers: Vec<Broker>,
    /// Every partition of the topic, with its leader.
    pub leaders: Vec<(i32, Broker)>,
}

/// Everything a finished (or failed) consume run measured.
#[derive(Debug, Clone)]
pub struct ConsumeOutcome {
    pub topic: String,
    /// This instance's partitions.
    pub partitions: Vec<i32>,
    pub shards: Vec<ConsumeShardResult>,
    pub totals: ConsumeCounts,
    pub e2e: Histogram<u64>,
    pub fetch_latency: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// `check_sequences`: per producing (instance, shard, partition).
    pub sequences: BTreeMap<Producer, SeqCheck>,
    pub elapsed: Duration,
    /// The first shard failure, if any.
    pub failure: Option<String>,
    /// Stopped from outside before its own end.
    pub interrupted: bool,
}

impl ConsumeOutcome {
    /// Sequence headers complete: nothing missing, doubled or misplaced.
    pub fn sequences_exact(&self) -> bool {
        self.sequences.values().all(SeqCheck::exact)
    }
}

/// Connects, finds the topic's leaders (waiting briefly for any being
/// elected) and its id.
pub async fn prepare_consume(plan: &ConsumePlan) -> Result<ConsumePrepared, ClusterError> {
    let mut conn = cluster::bootstrap_with(&plan.bootstrap, &plan.connect_options()).await?;
    let info = cluster::wait_for_leaders(&mut conn, &plan.topic, Duration::from_secs(10)).await?;
    let leaders = info.leaders(&plan.topic)?;
    let id = fetch::topic_id(&mut conn, &plan.topic).await?;
    Ok(ConsumePrepared {
        topic: FetchTopicRef {
            name: plan.topic.clone(),
            id,
        },
        brokers: info.brokers.clone(),
        leaders,
    })
}

/// Runs a consume plan to its end: `until_end`, `count`, `duration`, a
/// shard failure, or `stop` set from outside. `on_progress` is called
/// about once a second. The engine never prints.
pub fn run_consume(
    plan: ConsumePlan,
    stop: Arc<AtomicBool>,
    mut on_progress: impl FnMut(&ConsumeProgress),
) -> Result<ConsumeOutcome, ConsumeError> {
    let prepared = run_unpinned("datastorm-consume-setup", prepare_consume(&plan))
        .map_err(ConsumeError::Setup)??;
    let plan = Arc::new(plan);
    let ids: Vec<i32> = prepared.leaders.iter().map(|(p, _)| *p).collect();
    let layout = assign_partitions(&ids, plan.instance, plan.instances, plan.cpus.len());
    let counters: Vec<Arc<ConsumeCounters>> =
        (0..plan.cpus.len()).map(|_| Arc::default()).collect();
    let origin = Instant::now();
    let (tx, rx) = mpsc::channel();
    let thread = start(&plan, &prepared, &layout, &counters, tx, &stop, origin)?;
    let mut view = View::new(origin);
    while !thread.is_finished() {
        if let Ok(ev) = rx.recv_timeout(Duration::from_millis(100)) {
            view.take(ev);
        }
        if Instant::now() >= view.next_tick {
            on_progress(&view.progress(&counters, &rx));
        }
    }
    on_progress(&view.progress(&counters, &rx));
    let results = thread
        .join()
        .map_err(|_| ConsumeError::Setup("the consumer thread panicked".into()))??;
    Ok(outcome(&plan, layout.concat(), results, &stop))
}

type ShardThread = std::thread::JoinHandle<Result<Vec<ConsumeShardResult>, RuntimeError>>;

/// Starts one shard per CPU on a thread of their own.
fn start(
    plan: &Arc<ConsumePlan>,
    prepared: &ConsumePrepared,
    layout: &[Vec<i32>],
    counters: &[Arc<ConsumeCounters>],
    tx: mpsc::Sender<ConsumeEvent>,
    stop: &Arc<AtomicBool>,
    origin: Instant,
) -> Result<ShardThread, ConsumeError> {
    let (plan, prepared) = (plan.clone(), prepared.clone());
    let (layout, counters, stop) = (layout.to_vec(), counters.to_vec(), stop.clone());
    let consumed = Arc::new(AtomicU64::new(0));
    std::thread::Builder::new()
        .name("datastorm-consumers".into())
        .spawn(move || {
            let (cpus, executor) = (plan.cpus.clone(), plan.executor);
            run_pinned_with(&cpus, "datastorm-consumer", &executor, move |index, cpu| {
                consume_shard(ConsumeShardSetup {
                    index,
                    cpu,
                    plan: plan.clone(),
                    topic: prepared.topic.clone(),
                    partitions: prepared
                        .leaders
                        .iter()
                        .filter(|(p, _)| layout[index].contains(p))
                        .cloned()
                        .collect(),
                    brokers: prepared.brokers.clone(),
                    counters: counters[index].clone(),
                    consumed: consumed.clone(),
                    events: tx.clone(),
                    stop: stop.clone(),
                    origin,
                })
            })
        })
        .map_err(|e| ConsumeError::Setup(e.to_string()))
}

/// The coordinator's running view: the open interval's histograms.
struct View {
    origin: Instant,
    last_tick: Instant,
    next_tick: Instant,
    last_totals: ConsumeCounts,
    e2e: Histogram<u64>,
    fetch_latency: Histogram<u64>,
}

impl View {
    const TICK: Duration = Duration::from_secs(1);

    fn new(origin: Instant) -> Self {
        View {
            origin,
            last_tick: origin,
            next_tick: origin + Self::TICK,
            last_totals: ConsumeCounts::default(),
            e2e: latency_histogram(),
            fetch_latency: latency_histogram(),
        }
    }

    fn take(&mut self, ev: ConsumeEvent) {
        let ConsumeEvent::Interval {
            e2e, fetch_latency, ..
        } = ev;
        let _ = self.e2e.add(&e2e);
        let _ = self.fetch_latency.add(&fetch_latency);
    }

    /// The interval since the last progress point, ending now.
    fn progress(
        &mut self,
        counters: &[Arc<ConsumeCounters>],
        rx: &mpsc::Receiver<ConsumeEvent>,
    ) -> ConsumeProgress {
        while let Ok(ev) = rx.try_recv() {
            self.take(ev);
        }
        let now = Instant::now();
        let totals = counters
            .iter()
            .fold(ConsumeCounts::default(), |a, c| a.plus(&c.snapshot()));
        let mut delta = totals.minus(&self.last_totals);
        delta.lag = totals.lag;
        let p = ConsumeProgress {
            elapsed: now - self.origin,
            interval: now - self.last_tick,
            delta,
            totals,
            e2e: std::mem::replace(&mut self.e2e, latency_histogram()),
            fetch_latency: std::mem::replace(&mut self.fetch_latency, latency_histogram()),
        };
        self.last_totals = totals;
        self.last_tick = now;
        while self.next_tick <= now {
            self.next_tick += Self::TICK;
        }
        p
    }
}

/// Sums the shards' results.
fn outcome(
    plan: &ConsumePlan,
    mut partitions: Vec<i32>,
    shards: Vec<ConsumeShardResult>,
    stop: &AtomicBool,
) -> ConsumeOutcome {
    partitions.sort_unstable();
    let mut e2e = latency_histogram();
    let mut fetch_latency = latency_histogram();
    let mut totals = ConsumeCounts::default();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut sequences = BTreeMap::new();
    for r in &shards {
        let _ = e2e.add(&r.e2e);
        let _ = fetch_latency.add(&r.fetch_latency);
        totals = totals.plus(&r.counters);
        for (k, v) in &r.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        // A partition is read by one shard, so producers never overlap.
        sequences.extend(r.sequences.iter().map(|(k, v)| (*k, v.clone())));
    }
    let failure = shards.iter().find_map(|r| r.failure.clone());
    ConsumeOutcome {
        topic: plan.topic.clone(),
        partitions,
        elapsed: shards.iter().map(|r| r.elapsed).max().unwrap_or_default(),
        interrupted: failure.is_none() && stop.load(Relaxed),
        failure,
        shards,
        totals,
        e2e,
        fetch_latency,
        errors,
        sequences,
    }
}
