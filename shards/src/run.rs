//! The coordinator: prepares the cluster, starts one shard per CPU, turns the
//! shards' counters into a once-a-second progress view, and collects results.

use crate::assign::assign;
use crate::plan::{split_evenly, RunPlan};
use crate::shard::{run_shard, ShardEvent, ShardResult, ShardSetup, StreamShare};
use datastorm_engine::cluster::{self, Broker, ClusterError, Created};
use datastorm_engine::metrics::{latency_histogram, Counters, ShardCounters};
use datastorm_engine::runtime::{run_pinned, RuntimeError};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("could not start the setup executor: {0}")]
    Setup(String),
}

/// What the cluster looked like when the run started.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    pub cluster_id: Option<String>,
    pub brokers: Vec<(i32, String)>,
    /// One per stream, in the plan's order.
    pub topics: Vec<PreparedTopic>,
}

/// A stream's topic when the run started.
#[derive(Debug, Clone, Serialize)]
pub struct PreparedTopic {
    pub stream: String,
    pub topic: String,
    pub partitions: Vec<i32>,
    /// This run created it.
    pub created: bool,
}

/// Partition leaders of each stream's topic, in the plan's order.
pub type Leaders = Vec<Vec<(i32, Broker)>>;

/// One second of a run, as the status line shows it.
#[derive(Debug, Clone)]
pub struct Progress {
    pub elapsed: Duration,
    /// Length of this interval.
    pub interval: Duration,
    /// Counter increase in this interval.
    pub delta: Counters,
    pub totals: Counters,
    /// Latency of records acked in (about) this interval, microseconds.
    pub latency: Histogram<u64>,
    pub target_rate: Option<f64>,
}

/// A per-second point for reports.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    pub elapsed_s: f64,
    pub records_acked: u64,
    pub records_per_s: f64,
    pub payload_mb_per_s: f64,
    pub requests_in_flight: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl TimelinePoint {
    pub fn from_progress(p: &Progress) -> Self {
        let secs = p.interval.as_secs_f64().max(1e-9);
        let pct = |q: f64| {
            if p.latency.is_empty() {
                0
            } else {
                p.latency.value_at_quantile(q)
            }
        };
        TimelinePoint {
            elapsed_s: p.elapsed.as_secs_f64(),
            records_acked: p.delta.records_acked,
            records_per_s: p.delta.records_acked as f64 / secs,
            payload_mb_per_s: p.delta.payload_bytes_acked as f64 / secs / 1e6,
            requests_in_flight: p.totals.requests_in_flight,
            errors: p.delta.errors,
            p50_us: pct(0.5),
            p99_us: pct(0.99),
            max_us: if p.latency.is_empty() {
                0
            } else {
                p.latency.max()
            },
        }
    }
}

/// Everything a finished (or failed midway) run measured.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub prepared: Prepared,
    pub shards: Vec<ShardResult>,
    pub totals: Counters,
    pub latency: Histogram<u64>,
    pub timeline: Vec<TimelinePoint>,
    /// From the shards' start to the last ack.
    pub elapsed: Duration,
    /// The first shard failure, if any.
    pub failure: Option<String>,
    /// True when the run was stopped from outside (signal) before its end.
    pub interrupted: bool,
}

impl RunOutcome {
    /// The counters of one stream, summed over its shards.
    pub fn stream_totals(&self, stream: usize) -> Counters {
        let mut t = self
            .shards
            .iter()
            .filter(|r| r.stream == stream)
            .fold(Counters::default(), |acc, r| acc.plus(&r.counters));
        t.requests_in_flight = 0;
        t
    }

    /// The latency of one stream's records, merged over its shards.
    pub fn stream_latency(&self, stream: usize) -> Histogram<u64> {
        let mut h = latency_histogram();
        for r in self.shards.iter().filter(|r| r.stream == stream) {
            let _ = h.add(&r.latency);
        }
        h
    }
}

/// Connects, creates the streams' topics where asked, and finds the
/// partition leaders of each.
pub async fn prepare(plan: &RunPlan) -> Result<(Prepared, Leaders), ClusterError> {
    let mut conn =
        cluster::bootstrap(&plan.bootstrap, &plan.client_id, plan.connect_timeout).await?;
    let mut topics = Vec::with_capacity(plan.streams.len());
    let mut leaders_by_stream = Vec::with_capacity(plan.streams.len());
    let mut cluster_id = None;
    let mut brokers = Vec::new();
    for stream in &plan.streams {
        let mut created = false;
        let info = if let Some(spec) = &stream.create_topic {
            created = cluster::create_topic(&mut conn, spec).await? == Created::New;
            let info = cluster::wait_for_leaders(&mut conn, &stream.topic, Duration::from_secs(30))
                .await?;
            if created {
                cluster::wait_until_leaders_agree(
                    &info,
                    &stream.topic,
                    &plan.client_id,
                    Duration::from_secs(30),
                )
                .await?;
            }
            info
        } else {
            cluster::metadata(&mut conn, &[&stream.topic]).await?
        };
        let leaders = info.leaders(&stream.topic)?;
        cluster_id = info.cluster_id.clone();
        brokers = info
            .brokers
            .iter()
            .map(|b| (b.id, b.addr.clone()))
            .collect();
        topics.push(PreparedTopic {
            stream: stream.name.clone(),
            topic: stream.topic.clone(),
            partitions: leaders.iter().map(|(p, _)| *p).collect(),
            created,
        });
        leaders_by_stream.push(leaders);
    }
    Ok((
        Prepared {
            cluster_id,
            brokers,
            topics,
        },
        leaders_by_stream,
    ))
}

/// How one stream is spread over the shards.
#[derive(Clone)]
struct StreamLayout {
    /// Partitions per shard.
    assignment: Vec<Vec<i32>>,
    /// Per shard: its index among the shards with partitions (`None`: idle).
    active_index: Vec<Option<usize>>,
    active: usize,
    count: Option<u64>,
    rate: Option<f64>,
}

impl StreamLayout {
    fn new(plan: &RunPlan, stream: usize, leaders: &[(i32, Broker)], shards: usize) -> Self {
        let mut ids: Vec<i32> = leaders.iter().map(|(p, _)| *p).collect();
        ids.sort_unstable();
        // Field keys follow Kafka's default partitioner over all partitions,
        // so every shard writes to every partition.
        let assignment = if plan.streams[stream].keys.field().is_some() {
            vec![ids; shards]
        } else {
            assign(&ids, shards)
        };
        let mut active_index = vec![None; shards];
        let mut k = 0;
        for (i, a) in assignment.iter().enumerate() {
            if !a.is_empty() {
                active_index[i] = Some(k);
                k += 1;
            }
        }
        StreamLayout {
            assignment,
            active_index,
            active: k.max(1),
            count: plan.stop.count.map(|c| plan.split_by_share(c)[stream]),
            rate: plan.rate.map(|r| plan.rate_by_share(r)[stream]),
        }
    }

    /// Shard `index`'s part of the stream's count; idle shards get none.
    fn count_for(&self, index: usize) -> Option<u64> {
        self.count.map(|c| match self.active_index[index] {
            Some(ai) => split_evenly(c, self.active, ai),
            None => 0,
        })
    }
}

/// Runs a plan to completion. `stop` ends the run early (records in flight
/// are still awaited); `on_progress` is called about once a second.
pub fn run(
    plan: RunPlan,
    stop: Arc<AtomicBool>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<RunOutcome, RunError> {
    let ex = glommio::LocalExecutorBuilder::default()
        .name("datastorm-setup")
        .make()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let (prepared, leaders) = ex.run(prepare(&plan))?;
    drop(ex);

    let plan = Arc::new(plan);
    let shards = plan.cpus.len().max(1);
    let n_streams = plan.streams.len();
    let layouts: Vec<StreamLayout> = (0..n_streams)
        .map(|si| StreamLayout::new(&plan, si, &leaders[si], shards))
        .collect();
    // One set of counters per shard and stream: shard `i`, stream `s` at
    // `i * n_streams + s`.
    let counters: Vec<Arc<ShardCounters>> = (0..shards * n_streams)
        .map(|_| Arc::new(ShardCounters::default()))
        .collect();
    let (tx, rx) = mpsc::channel::<ShardEvent>();

    let shard_thread = {
        let plan = plan.clone();
        let counters = counters.clone();
        let stop = stop.clone();
        let cpus = plan.cpus.clone();
        std::thread::Builder::new()
            .name("datastorm-shards".into())
            .spawn(move || {
                run_pinned(&cpus, "datastorm-shard", move |index, cpu| {
                    let streams = layouts
                        .iter()
                        .enumerate()
                        .map(|(si, layout)| {
                            let owned = &layout.assignment[index];
                            let mut partitions: Vec<(i32, Broker)> = leaders[si]
                                .iter()
                                .filter(|(p, _)| owned.contains(p))
                                .cloned()
                                .collect();
                            partitions.sort_by_key(|(p, _)| *p);
                            StreamShare {
                                stream: si,
                                partitions,
                                count: layout.count_for(index),
                                rate: layout.rate.map(|r| r / layout.active as f64),
                                counters: counters[index * n_streams + si].clone(),
                            }
                        })
                        .collect();
                    run_shard(ShardSetup {
                        index,
                        shards,
                        cpu,
                        plan: plan.clone(),
                        streams,
                        events: tx.clone(),
                        stop: stop.clone(),
                    })
                })
            })
            .map_err(|e| RunError::Setup(e.to_string()))?
    };

    let started = Instant::now();
    let mut last_tick = started;
    let mut last_totals = Counters::default();
    let mut interval = latency_histogram();
    let mut timeline = Vec::new();
    let mut seen = latency_histogram();
    let tick = Duration::from_secs(1);
    // A shard whose requests stay unanswered well past the request timeout
    // has stopped running (its own watchdog would have failed it): end the
    // run with what was measured instead of waiting forever.
    let stall_limit = plan.request_timeout + Duration::from_secs(15);
    let mut progress: Vec<((u64, u64), Instant)> = vec![((0, 0), Instant::now()); counters.len()];
    let mut stalled: Option<String> = None;
    while !shard_thread.is_finished() {
        let wait = (last_tick + tick).saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait.min(Duration::from_millis(100))) {
            Ok(ShardEvent::Interval { latency, .. }) => {
                let _ = interval.add(&latency);
                let _ = seen.add(&latency);
            }
            Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let now = Instant::now();
        if now >= last_tick + tick {
            let totals = sum(&counters);
            let p = Progress {
                elapsed: now - started,
                interval: now - last_tick,
                delta: totals.minus(&last_totals),
                totals,
                latency: std::mem::replace(&mut interval, latency_histogram()),
                target_rate: plan.rate,
            };
            timeline.push(TimelinePoint::from_progress(&p));
            on_progress(&p);
            last_totals = totals;
            last_tick = now;
            for (i, c) in counters.iter().enumerate() {
                let snap = c.snapshot();
                let mark = (snap.requests_sent, snap.requests_acked);
                if mark != progress[i].0 || snap.requests_in_flight == 0 {
                    progress[i] = (mark, now);
                } else if now - progress[i].1 > stall_limit {
                    stalled = Some(format!(
                        "shard {} made no progress for {:?} with {} requests in flight; its executor \
                         stopped waking up (a glommio reactor stall). The run was ended with what it measured",
                        i / n_streams,
                        now - progress[i].1,
                        snap.requests_in_flight
                    ));
                }
            }
            if stalled.is_some() {
                break;
            }
        }
    }
    if let Some(failure) = stalled {
        // The shard threads cannot be joined; report from the counters and
        // the latency the shards handed over so far.
        stop.store(true, Relaxed);
        let mut totals = sum(&counters);
        totals.requests_in_flight = 0;
        return Ok(RunOutcome {
            prepared,
            shards: Vec::new(),
            totals,
            latency: seen,
            timeline,
            elapsed: started.elapsed(),
            failure: Some(failure),
            interrupted: false,
        });
    }
    let results: Vec<ShardResult> = shard_thread
        .join()
        .map_err(|_| RunError::Setup("the shard thread panicked".into()))??
        .into_iter()
        .flatten()
        .collect();
    let elapsed = results.iter().map(|r| r.elapsed).max().unwrap_or_default();
    let mut latency = latency_histogram();
    let mut totals = Counters::default();
    for r in &results {
        let _ = latency.add(&r.latency);
        totals = totals.plus(&r.counters);
    }
    totals.requests_in_flight = 0;
    let failure = results.iter().find_map(|r| r.failure.clone());
    let interrupted = failure.is_none() && stop.load(Relaxed);
    Ok(RunOutcome {
        prepared,
        shards: results,
        totals,
        latency,
        timeline,
        elapsed,
        failure,
        interrupted,
    })
}

fn sum(counters: &[Arc<ShardCounters>]) -> Counters {
    counters
        .iter()
        .fold(Counters::default(), |acc, c| acc.plus(&c.snapshot()))
}
