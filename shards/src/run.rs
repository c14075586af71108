//! The coordinator: prepares the cluster, starts one shard per CPU, turns the
//! shards' counters into a once-a-second progress view, and collects results.

use crate::assign::assign;
use crate::plan::{split_evenly, RunPlan};
use crate::shard::{run_shard, ShardEvent, ShardResult, ShardSetup};
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
    pub partitions: Vec<i32>,
    pub topic_created: bool,
}

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

/// Connects, creates the topic if asked, and finds the partition leaders.
pub async fn prepare(plan: &RunPlan) -> Result<(Prepared, Vec<(i32, Broker)>), ClusterError> {
    let mut conn =
        cluster::bootstrap(&plan.bootstrap, &plan.client_id, plan.connect_timeout).await?;
    let mut created = false;
    let info = if let Some(spec) = &plan.create_topic {
        created = cluster::create_topic(&mut conn, spec).await? == Created::New;
        let info =
            cluster::wait_for_leaders(&mut conn, &plan.topic, Duration::from_secs(30)).await?;
        if created {
            cluster::wait_until_leaders_agree(
                &info,
                &plan.topic,
                &plan.client_id,
                Duration::from_secs(30),
            )
            .await?;
        }
        info
    } else {
        cluster::metadata(&mut conn, &[&plan.topic]).await?
    };
    let leaders = info.leaders(&plan.topic)?;
    Ok((
        Prepared {
            cluster_id: info.cluster_id.clone(),
            brokers: info
                .brokers
                .iter()
                .map(|b| (b.id, b.addr.clone()))
                .collect(),
            partitions: leaders.iter().map(|(p, _)| *p).collect(),
            topic_created: created,
        },
        leaders,
    ))
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
    let ids: Vec<i32> = leaders.iter().map(|(p, _)| *p).collect();
    let assignment = assign(&ids, shards);
    let counters: Vec<Arc<ShardCounters>> = (0..shards)
        .map(|_| Arc::new(ShardCounters::default()))
        .collect();
    let (tx, rx) = mpsc::channel::<ShardEvent>();
    // Shards without partitions get no share of count or rate.
    let active = assignment.iter().filter(|a| !a.is_empty()).count().max(1);
    let mut active_index = vec![usize::MAX; shards];
    let mut k = 0;
    for (i, a) in assignment.iter().enumerate() {
        if !a.is_empty() {
            active_index[i] = k;
            k += 1;
        }
    }

    let shard_thread = {
        let plan = plan.clone();
        let counters = counters.clone();
        let stop = stop.clone();
        let cpus = plan.cpus.clone();
        std::thread::Builder::new()
            .name("datastorm-shards".into())
            .spawn(move || {
                run_pinned(&cpus, "datastorm-shard", move |index, cpu| {
                    let ai = active_index[index];
                    let owned = assignment[index].clone();
                    let setup = ShardSetup {
                        index,
                        shards,
                        cpu,
                        plan: plan.clone(),
                        partitions: leaders
                            .iter()
                            .filter(|(p, _)| owned.contains(p))
                            .cloned()
                            .collect(),
                        count: plan.stop.count.map(|c| {
                            if ai == usize::MAX {
                                0
                            } else {
                                split_evenly(c, active, ai)
                            }
                        }),
                        rate: plan.rate.map(|r| r / active as f64),
                        counters: counters[index].clone(),
                        events: tx.clone(),
                        stop: stop.clone(),
                    };
                    let stop = stop.clone();
                    async move {
                        let r = run_shard(setup).await;
                        if r.failure.is_some() {
                            stop.store(true, Relaxed);
                        }
                        r
                    }
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
    let mut progress: Vec<((u64, u64), Instant)> = vec![((0, 0), Instant::now()); shards];
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
                        "shard {i} made no progress for {:?} with {} requests in flight; its executor \
                         stopped waking up (a glommio reactor stall). The run was ended with what it measured",
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
    let results = shard_thread
        .join()
        .map_err(|_| RunError::Setup("the shard thread panicked".into()))??;
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
