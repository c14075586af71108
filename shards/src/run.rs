//! The coordinator: prepares the cluster, starts one shard per CPU, turns the
//! shards' counters into a once-a-second progress view, and collects results.

use crate::assign::{assign, for_instance};
use crate::pacer::Profile;
use crate::plan::{split_evenly, RateSpec, RunPlan};
use crate::search::{MaxRateSearch, RateSearchResult};
use crate::shard::{run_shard, ShardEvent, ShardResult, ShardSetup, StreamShare};
use datastorm_engine::cluster::{self, Broker, ClusterError, Created};
use datastorm_engine::metrics::{latency_histogram, Counters, ShardCounters};
use datastorm_engine::runtime::{run_pinned_with, run_unpinned, RuntimeError};
use datastorm_engine::sleeps::{SleepCounters, Sleeps};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
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
    /// API version ranges the bootstrap broker advertised (min, max) by
    /// API name: the closest the protocol comes to a broker version.
    pub api_versions: BTreeMap<String, (i16, i16)>,
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
    /// Send delay of records generated in (about) this interval (paced runs).
    pub send_delay: Histogram<u64>,
    /// This instance's target rate (paced runs): a profile's mean over the
    /// interval, `--rate max`'s search target at its end.
    pub target_rate: Option<f64>,
    /// The interval is part of the warm-up (excluded from the results).
    pub warmup: bool,
}

/// Whether a second of the run was part of the warm-up (excluded from the
/// results) or measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Warmup,
    Measure,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
        })
    }
}

/// A per-second point for reports.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    pub elapsed_s: f64,
    pub phase: Phase,
    /// This instance's target rate (paced runs).
    pub target_per_s: Option<f64>,
    pub records_acked: u64,
    pub records_per_s: f64,
    pub payload_mb_per_s: f64,
    pub requests_in_flight: u64,
    pub errors: u64,
    pub retries: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Worst send delay in the interval (paced runs).
    pub send_delay_max_us: u64,
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
            phase: if p.warmup {
                Phase::Warmup
            } else {
                Phase::Measure
            },
            target_per_s: p.target_rate,
            records_acked: p.delta.records_acked,
            records_per_s: p.delta.records_acked as f64 / secs,
            payload_mb_per_s: p.delta.payload_bytes_acked as f64 / secs / 1e6,
            requests_in_flight: p.totals.requests_in_flight,
            errors: p.delta.errors,
            retries: p.delta.retries,
            send_delay_max_us: if p.send_delay.is_empty() {
                0
            } else {
                p.send_delay.max()
            },
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
    /// After the warm-up.
    pub totals: Counters,
    /// After the warm-up.
    pub latency: Histogram<u64>,
    /// Paced runs, after the warm-up: intended send time to generation.
    pub send_delay: Histogram<u64>,
    /// Excluded from `totals`, `latency`, `send_delay` and `elapsed`.
    pub warmup: Duration,
    /// Error responses and connection failures by Kafka error name.
    pub errors: BTreeMap<String, u64>,
    /// `--rate max`: the steps tried and the answer.
    pub rate_search: Option<RateSearchResult>,
    pub timeline: Vec<TimelinePoint>,
    /// From the end of the warm-up to the last ack.
    pub elapsed: Duration,
    /// The first shard failure, if any.
    pub failure: Option<String>,
    /// True when the run was stopped from outside (signal) before its end.
    pub interrupted: bool,
    /// How each shard's executor slept (in shard order): its sleeps, those
    /// the bound ended, and the lost wake-ups among them
    /// (`datastorm_engine::sleeps`).
    pub executor_sleeps: Vec<Sleeps>,
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
    let mut conn = cluster::bootstrap_with(&plan.bootstrap, &plan.connect_options()).await?;
    let api_versions = conn.versions().by_name();
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
                cluster::wait_until_leaders_agree_with(
                    &info,
                    &stream.topic,
                    &plan.connect_options(),
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
            api_versions,
        },
        leaders_by_stream,
    ))
}

/// What the coordinator last saw of one shard's stream: its (requests
/// sent, acknowledged), and when that last changed or it had nothing in
/// flight (past the stall limit: the run is ended).
#[derive(Clone)]
struct Watch {
    mark: (u64, u64),
    progressed: Instant,
    /// Errors counted so far, and when that count last changed (a shard
    /// retrying its first connections counts each failed attempt).
    errors: u64,
    errored: Instant,
}

impl Watch {
    fn new(now: Instant) -> Self {
        Watch {
            mark: (0, 0),
            progressed: now,
            errors: 0,
            errored: now,
        }
    }
}

/// How one stream is spread over this instance's shards.
#[derive(Clone)]
struct StreamLayout {
    /// Partitions per shard.
    assignment: Vec<Vec<i32>>,
    /// Per shard: its index among the shards with partitions (`None`: idle).
    active_index: Vec<Option<usize>>,
    active: usize,
    /// This instance's part of the stream's count.
    count: Option<u64>,
    /// The stream's part of the run's rate that falls to each active shard
    /// of this instance (0 when this instance has no partitions of it).
    scale: f64,
}

impl StreamLayout {
    fn new(plan: &RunPlan, stream: usize, leaders: &[(i32, Broker)], shards: usize) -> Self {
        let mut ids: Vec<i32> = leaders.iter().map(|(p, _)| *p).collect();
        ids.sort_unstable();
        let instances = plan.instances.max(1) as usize;
        let instance = plan.instance as usize;
        let field_keys = plan.streams[stream].keys.field().is_some();
        // Instances take disjoint partitions (round-robin over sorted ids),
        // except with field keys: Kafka's partitioner then decides, so every
        // shard of every instance writes to every partition.
        let (mine, active_instances, instance_active) = if field_keys {
            (ids, instances, true)
        } else {
            let n = instances.min(ids.len()).max(1);
            let mine = for_instance(&ids, plan.instance, plan.instances);
            (mine, n, instance < n)
        };
        let assignment = if field_keys {
            vec![mine; shards]
        } else {
            assign(&mine, shards)
        };
        let mut active_index = vec![None; shards];
        let mut k = 0;
        for (i, a) in assignment.iter().enumerate() {
            if !a.is_empty() {
                active_index[i] = Some(k);
                k += 1;
            }
        }
        let active = k.max(1);
        let share = plan.rate_by_share(1.0)[stream];
        StreamLayout {
            assignment,
            active_index,
            active,
            count: plan.stop.count.map(|c| {
                let stream_count = plan.split_by_share(c)[stream];
                if instance_active {
                    split_evenly(stream_count, active_instances, instance)
                } else {
                    0
                }
            }),
            scale: if instance_active {
                share / active_instances as f64 / active as f64
            } else {
                0.0
            },
        }
    }

    /// Shard `index`'s part of the stream's count; idle shards get none.
    fn count_for(&self, index: usize) -> Option<u64> {
        self.count.map(|c| match self.active_index[index] {
            Some(ai) => split_evenly(c, self.active, ai),
            None => 0,
        })
    }

    /// The partitions shard `index` writes to, and their leaders, by id.
    fn partitions_of(&self, index: usize, leaders: &[(i32, Broker)]) -> Vec<(i32, Broker)> {
        let owned = &self.assignment[index];
        let mut partitions: Vec<(i32, Broker)> = leaders
            .iter()
            .filter(|(p, _)| owned.contains(p))
            .cloned()
            .collect();
        partitions.sort_by_key(|(p, _)| *p);
        partitions
    }

    /// This instance's part of the run's rate, over all its shards.
    fn instance_share(&self) -> f64 {
        self.scale * self.active_index.iter().flatten().count() as f64
    }
}

/// Runs a plan to completion. `stop` ends the run early (records in flight
/// are still awaited); `on_progress` is called about once a second.
///
/// The phases: prepare the cluster, lay the streams out over the shards,
/// start the shards, watch them (progress, rate search, stalls), collect
/// what they measured, and build the outcome.
pub fn run(
    plan: RunPlan,
    stop: Arc<AtomicBool>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<RunOutcome, RunError> {
    let (prepared, leaders) =
        run_unpinned("datastorm-setup", prepare(&plan)).map_err(RunError::Setup)??;
    let mut coordinator = Coordinator::new(Arc::new(plan), &leaders, stop);
    let (tx, rx) = mpsc::channel::<ShardEvent>();
    let shard_thread = coordinator.start(leaders, tx)?;
    let watched = coordinator.monitor(&shard_thread, &rx, &mut on_progress);
    let collected = match &watched.stalled {
        // The shard threads cannot be joined: report from the counters and
        // the latency the shards handed over so far.
        Some(_) => coordinator.abandon(&watched),
        None => coordinator.collect(shard_thread)?,
    };
    Ok(coordinator.outcome(prepared, watched, collected))
}

/// The shards' thread: one result per shard, each one per stream.
type ShardThread = std::thread::JoinHandle<Result<Vec<Vec<ShardResult>>, RuntimeError>>;

/// The coordinator of one run: how the streams are laid out over the
/// shards, the counters the shards share with it, and the rate search.
struct Coordinator {
    plan: Arc<RunPlan>,
    stop: Arc<AtomicBool>,
    shards: usize,
    n_streams: usize,
    layouts: Vec<StreamLayout>,
    /// This instance's part of the run's rate, over all its shards.
    instance_share: f64,
    profile: Option<Profile>,
    search: Option<MaxRateSearch>,
    rate_control: Option<Arc<AtomicU64>>,
    /// One set of counters per shard and stream: shard `i`, stream `s` at
    /// `i * n_streams + s`.
    counters: Vec<Arc<ShardCounters>>,
    /// Per shard and stream (as `counters`), whether the shard owns any of
    /// the stream's partitions (one that owns none sends nothing).
    owns: Vec<bool>,
    sleeps: Vec<Arc<SleepCounters>>,
    origin: Instant,
}

/// What watching the shards produced.
struct Watched {
    timeline: Vec<TimelinePoint>,
    /// Latency of every record the shards reported while running.
    seen: Histogram<u64>,
    /// Why the run was ended without waiting for the shards, if it was.
    stalled: Option<String>,
}

/// What the shards measured, summed.
struct Collected {
    shards: Vec<ShardResult>,
    totals: Counters,
    latency: Histogram<u64>,
    send_delay: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
    failure: Option<String>,
}

impl Coordinator {
    /// Lays the streams out over the shards and sets up the shared counters.
    fn new(plan: Arc<RunPlan>, leaders: &Leaders, stop: Arc<AtomicBool>) -> Self {
        let shards = plan.cpus.len().max(1);
        let n_streams = plan.streams.len();
        let layouts: Vec<StreamLayout> = (0..n_streams)
            .map(|si| StreamLayout::new(&plan, si, &leaders[si], shards))
            .collect();
        let instance_share = layouts.iter().map(StreamLayout::instance_share).sum();
        let search = match &plan.rate {
            RateSpec::Max {
                start,
                step,
                max_p99,
            } => Some(MaxRateSearch::new(*start, *step, *max_p99)),
            _ => None,
        };
        let rate_control = search
            .as_ref()
            .map(|s| Arc::new(AtomicU64::new(s.target().to_bits())));
        let owns = (0..shards * n_streams)
            .map(|i| !layouts[i % n_streams].assignment[i / n_streams].is_empty())
            .collect();
        Coordinator {
            profile: Profile::from_spec(&plan.rate),
            counters: (0..shards * n_streams)
                .map(|_| Arc::new(ShardCounters::default()))
                .collect(),
            sleeps: (0..shards).map(|_| Arc::default()).collect(),
            origin: Instant::now(),
            plan,
            stop,
            shards,
            n_streams,
            layouts,
            instance_share,
            search,
            rate_control,
            owns,
        }
    }

    /// Starts one shard per CPU on a thread of their own.
    fn start(
        &self,
        leaders: Leaders,
        tx: mpsc::Sender<ShardEvent>,
    ) -> Result<ShardThread, RunError> {
        let plan = self.plan.clone();
        let layouts = self.layouts.clone();
        let counters = self.counters.clone();
        let sleeps = self.sleeps.clone();
        let stop = self.stop.clone();
        let rate_control = self.rate_control.clone();
        let (shards, n_streams, origin) = (self.shards, self.n_streams, self.origin);
        std::thread::Builder::new()
            .name("datastorm-shards".into())
            .spawn(move || {
                let cpus = plan.cpus.clone();
                let executor = plan.executor;
                run_pinned_with(&cpus, "datastorm-shard", &executor, move |index, cpu| {
                    let streams = layouts
                        .iter()
                        .enumerate()
                        .map(|(si, layout)| StreamShare {
                            stream: si,
                            partitions: layout.partitions_of(index, &leaders[si]),
                            count: layout.count_for(index),
                            pace: Profile::from_spec(&plan.rate)
                                .filter(|_| layout.scale > 0.0)
                                .map(|p| (p, layout.scale)),
                            rate_control: rate_control.clone(),
                            counters: counters[index * n_streams + si].clone(),
                        })
                        .collect();
                    run_shard(ShardSetup {
                        index,
                        shards,
                        cpu,
                        plan: plan.clone(),
                        streams,
                        origin,
                        events: tx.clone(),
                        stop: stop.clone(),
                        sleeps: sleeps[index].clone(),
                    })
                })
            })
            .map_err(|e| RunError::Setup(e.to_string()))
    }

    /// Watches the shards until they finish (or stall): a progress point
    /// about once a second, the rate search's steps, and the stall checks.
    fn monitor(
        &mut self,
        shard_thread: &ShardThread,
        rx: &mpsc::Receiver<ShardEvent>,
        on_progress: &mut impl FnMut(&Progress),
    ) -> Watched {
        let mut view = View::new(self.origin);
        let mut stalls = StallCheck::new(
            &self.plan,
            self.profile.as_ref(),
            self.origin,
            self.counters.len(),
        );
        while !shard_thread.is_finished() {
            let wait = view.next_tick.saturating_duration_since(Instant::now());
            if let Ok(event) = rx.recv_timeout(wait.min(Duration::from_millis(100))) {
                view.take(event);
            }
            let now = Instant::now();
            // The last, partial interval is reported too, so the timeline adds
            // up to the run.
            let last = shard_thread.is_finished();
            if now < view.next_tick && !(last && now > view.last_tick + Duration::from_millis(50)) {
                continue;
            }
            while let Ok(event) = rx.try_recv() {
                view.take(event);
            }
            let p = self.progress(&mut view, now);
            view.timeline.push(TimelinePoint::from_progress(&p));
            on_progress(&p);
            self.steer(&p);
            view.advance(now, p.totals);
            if let Some(why) = stalls.check(self, now) {
                return view.into_watched(Some(why));
            }
        }
        view.into_watched(None)
    }

    /// The interval since the last progress point, ending at `now`.
    fn progress(&self, view: &mut View, now: Instant) -> Progress {
        let started = self.origin;
        let totals = sum(&self.counters);
        let in_warmup = view.last_tick < started + self.plan.warmup;
        let elapsed = now - started;
        let target_rate = match (&self.search, &self.profile) {
            (Some(s), _) => Some(s.target() * self.instance_share),
            (None, Some(p)) => {
                let warmup = self.plan.warmup.as_secs_f64();
                let t0 = (view.last_tick - started).as_secs_f64() - warmup;
                let t1 = elapsed.as_secs_f64() - warmup;
                Some(p.mean_rate(t0, t1) * self.instance_share)
            }
            (None, None) => None,
        };
        Progress {
            elapsed,
            interval: now - view.last_tick,
            delta: totals.minus(&view.last_totals),
            totals,
            latency: std::mem::replace(&mut view.interval, latency_histogram()),
            send_delay: std::mem::replace(&mut view.interval_delay, latency_histogram()),
            target_rate,
            warmup: in_warmup,
        }
    }

    /// `--rate max`: feeds the interval to the search, moves the shards'
    /// target rate, and stops the run when the search is done.
    fn steer(&mut self, p: &Progress) {
        let Some(s) = self.search.as_mut().filter(|_| !p.warmup) else {
            return;
        };
        // The search judges the whole run's rate: this instance's acks
        // scaled up by its share.
        let acked = (p.delta.records_acked as f64 / self.instance_share.max(1e-9)) as u64;
        if let Some(next) = s.observe(p.interval, acked, &p.latency) {
            if let Some(ctl) = &self.rate_control {
                ctl.store(next.to_bits(), Relaxed);
            }
        }
        if s.is_done() {
            self.stop.store(true, Relaxed);
        }
    }

    /// Joins the shards and sums their results.
    fn collect(&self, shard_thread: ShardThread) -> Result<Collected, RunError> {
        let results: Vec<ShardResult> = shard_thread
            .join()
            .map_err(|_| RunError::Setup("the shard thread panicked".into()))??
            .into_iter()
            .flatten()
            .collect();
        let mut latency = latency_histogram();
        let mut send_delay = latency_histogram();
        let mut totals = Counters::default();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for r in &results {
            let _ = latency.add(&r.latency);
            let _ = send_delay.add(&r.send_delay);
            totals = totals.plus(&r.counters);
            for (k, v) in &r.errors {
                *errors.entry(k.clone()).or_default() += v;
            }
        }
        totals.requests_in_flight = 0;
        Ok(Collected {
            elapsed: results.iter().map(|r| r.elapsed).max().unwrap_or_default(),
            failure: results.iter().find_map(|r| r.failure.clone()),
            shards: results,
            totals,
            latency,
            send_delay,
            errors,
        })
    }

    /// Gives up on stalled shards: what the counters and the handed-over
    /// latency say, and the stall as the failure.
    fn abandon(&self, watched: &Watched) -> Collected {
        self.stop.store(true, Relaxed);
        let mut totals = sum(&self.counters);
        totals.requests_in_flight = 0;
        Collected {
            shards: Vec::new(),
            totals,
            latency: watched.seen.clone(),
            send_delay: latency_histogram(),
            errors: BTreeMap::new(),
            elapsed: self.origin.elapsed().saturating_sub(self.plan.warmup),
            failure: watched.stalled.clone(),
        }
    }

    fn outcome(self, prepared: Prepared, watched: Watched, c: Collected) -> RunOutcome {
        let rate_search = self.search.as_ref().map(MaxRateSearch::result);
        // A finished --rate max search stops the run itself: not an interruption.
        let searched = self.search.as_ref().is_some_and(MaxRateSearch::is_done);
        let interrupted = c.failure.is_none() && self.stop.load(Relaxed) && !searched;
        RunOutcome {
            prepared,
            shards: c.shards,
            totals: c.totals,
            latency: c.latency,
            send_delay: c.send_delay,
            warmup: self.plan.warmup,
            errors: c.errors,
            rate_search,
            timeline: watched.timeline,
            elapsed: c.elapsed,
            failure: c.failure,
            interrupted,
            executor_sleeps: self.sleeps.iter().map(|s| s.snapshot()).collect(),
        }
    }
}

/// The coordinator's running view: the open interval's histograms and the
/// points so far.
struct View {
    last_tick: Instant,
    /// Windows end on a fixed grid (start + k seconds), so a late wake-up
    /// delays one row's end instead of shifting every later one.
    next_tick: Instant,
    last_totals: Counters,
    interval: Histogram<u64>,
    interval_delay: Histogram<u64>,
    seen: Histogram<u64>,
    timeline: Vec<TimelinePoint>,
}

impl View {
    const TICK: Duration = Duration::from_secs(1);

    fn new(started: Instant) -> Self {
        View {
            last_tick: started,
            next_tick: started + Self::TICK,
            last_totals: Counters::default(),
            interval: latency_histogram(),
            interval_delay: latency_histogram(),
            seen: latency_histogram(),
            timeline: Vec::new(),
        }
    }

    fn take(&mut self, event: ShardEvent) {
        let ShardEvent::Interval {
            latency,
            send_delay,
            ..
        } = event;
        let _ = self.interval.add(&latency);
        let _ = self.interval_delay.add(&send_delay);
        let _ = self.seen.add(&latency);
    }

    fn advance(&mut self, now: Instant, totals: Counters) {
        self.last_totals = totals;
        self.last_tick = now;
        while self.next_tick <= now {
            self.next_tick += Self::TICK;
        }
    }

    fn into_watched(self, stalled: Option<String>) -> Watched {
        Watched {
            timeline: self.timeline,
            seen: self.seen,
            stalled,
        }
    }
}

/// Ends a run whose shards stopped making progress instead of waiting for
/// them forever.
struct StallCheck {
    watches: Vec<Watch>,
    /// A shard whose requests stay unanswered well past the request timeout
    /// has stopped running (its own watchdog would have failed it).
    stall_limit: Duration,
    /// The same for a shard that never sends: each attempt at its first
    /// connections has the connect timeout to succeed or fail (and counts
    /// an error when it fails).
    first_send_limit: Duration,
    sends_from_the_start: bool,
    /// A run with a duration: its shards are done by its end plus the drain.
    overdue: Option<Instant>,
}

impl StallCheck {
    fn new(plan: &RunPlan, profile: Option<&Profile>, started: Instant, streams: usize) -> Self {
        let stall_limit = plan.request_timeout + Duration::from_secs(15);
        StallCheck {
            watches: vec![Watch::new(Instant::now()); streams],
            stall_limit,
            first_send_limit: plan.connect_timeout + stall_limit,
            sends_from_the_start: profile.is_none_or(|p| p.rate_at(0.0) > 0.0),
            overdue: plan
                .stop
                .duration
                .map(|d| started + plan.warmup + d + plan.drain_timeout + stall_limit),
        }
    }

    /// Why the run must end now, if it must.
    fn check(&mut self, co: &Coordinator, now: Instant) -> Option<String> {
        let mut stalled = None;
        for (i, c) in co.counters.iter().enumerate() {
            if let Some(why) = self.check_one(co, i, &c.snapshot(), now) {
                stalled = Some(why);
            }
        }
        if let Some(end) = self.overdue.filter(|end| stalled.is_none() && now > *end) {
            stalled = Some(format!(
                "the shards were still running {:.1?} after the run's end and drain; an \
                 executor stopped waking up (a glommio reactor stall). The run was ended with \
                 what it measured",
                now - (end - self.stall_limit)
            ));
        }
        let mut why = stalled?;
        // Where each thread was, for a stall that is rare to see.
        why.push_str("\nthreads at the stall:\n");
        why.push_str(&crate::threads::describe());
        Some(why)
    }

    /// Shard and stream `i` (see `Coordinator::counters`), now at `snap`.
    fn check_one(
        &mut self,
        co: &Coordinator,
        i: usize,
        snap: &Counters,
        now: Instant,
    ) -> Option<String> {
        let mark = (snap.requests_sent, snap.requests_acked);
        let w = &mut self.watches[i];
        let changed = mark != w.mark;
        if snap.errors != w.errors {
            w.errors = snap.errors;
            w.errored = now;
        }
        if changed {
            w.mark = mark;
        }
        let shard = i / co.n_streams;
        if co.owns[i]
            && self.sends_from_the_start
            && snap.requests_sent == 0
            && now - w.errored > self.first_send_limit
        {
            return Some(format!(
                "shard {shard} sent no request in {:.1?}, and counted no failed attempt for \
                 {:.1?}, though each connection attempt has the connect timeout ({:?}) to \
                 succeed or fail: its executor stopped making progress (a glommio reactor \
                 stall). The run was ended with what it measured",
                now - co.origin,
                now - w.errored,
                co.plan.connect_timeout
            ));
        }
        if changed || snap.requests_in_flight == 0 {
            w.progressed = now;
        } else if now - w.progressed > self.stall_limit {
            return Some(format!(
                "shard {shard} made no progress for {:?} with {} requests in flight; its executor \
                 stopped waking up (a glommio reactor stall). The run was ended with what it measured",
                now - w.progressed,
                snap.requests_in_flight
            ));
        }
        None
    }
}

fn sum(counters: &[Arc<ShardCounters>]) -> Counters {
    counters
        .iter()
        .fold(Counters::default(), |acc, c| acc.plus(&c.snapshot()))
}
