//! `produce --consumers N`: consumers reading what the run writes, beside
//! it, for end-to-end latency under load.
//!
//! The consumers start with the run (their setup waits up to 10 s for the
//! topic, which the run may be creating), from the run's start time
//! (ListOffsets by timestamp), so they read every record of this run and
//! none older, and none late. With
//! `--backlog SIZE` they start only once SIZE payload bytes were produced
//! (OMB's consumerBacklogSizeGB), and the drain is timed (one-second
//! resolution: the producers' progress) while the producers go on. When
//! the producers are done the consumers read on until they have as many
//! records as were acknowledged, or until the drain timeout. Their shards
//! are their own executors, pinned to the producers' CPUs.

use crate::metrics::ConsumeMetrics;
use crate::report::{merge_consume, BacklogResult, ConsumePoint, ConsumeResults};
use datastorm_shards::consume::{
    run_consume, ConsumeError, ConsumeOutcome, ConsumePlan, StartFrom,
};
use datastorm_shards::plan::RunPlan;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Outcome = Result<(ConsumeOutcome, Vec<ConsumePoint>), ConsumeError>;

/// `--consumers`, `--backlog`, `--backlog-drain-ratio`.
pub struct ConsumerSettings {
    pub count: usize,
    pub groups: usize,
    pub backlog: Option<u64>,
    pub drain_ratio: f64,
}

/// A backlog being built, then drained.
struct BacklogWatch {
    result: BacklogResult,
    run_start: Instant,
    /// When the consumers started, and the records read by then (none).
    draining_since: Option<Instant>,
}

impl BacklogWatch {
    /// Records that may remain for the backlog to count as drained.
    fn empty_level(&self) -> u64 {
        let left = (1.0 - self.result.drain_ratio) * self.result.records as f64;
        (left as u64).max(1_000)
    }

    /// Notes the drain's end when the consumers' lag (their own view: high
    /// watermarks less positions, sampled together) falls to the level.
    fn check(&mut self, lag: u64, read: u64, producing: bool) {
        let Some(since) = self.draining_since else {
            return;
        };
        if self.result.drain_s.is_some() || read == 0 || lag > self.empty_level() {
            return;
        }
        let secs = since.elapsed().as_secs_f64();
        self.result.drain_s = Some(secs);
        self.result.drain_records_per_s = Some(read as f64 / secs.max(1e-9));
        self.result.drained_while_producing = producing;
    }
}

/// The consumers of one produce run: `groups` independent sets (OMB's
/// subscriptions), each reading every record of the topic.
pub struct Consumers {
    backlog: Option<BacklogWatch>,
    plans: Vec<ConsumePlan>,
    stop: Arc<AtomicBool>,
    groups: Vec<Group>,
    metrics: Option<ConsumeMetrics>,
}

/// One set of consumers and what its progress said last.
#[derive(Default)]
struct Group {
    /// Records read so far, and the lag (from the consumers' progress).
    read: Arc<AtomicU64>,
    lag: Arc<AtomicU64>,
    /// The last status line.
    line: Arc<Mutex<String>>,
    thread: Option<JoinHandle<Outcome>>,
}

impl Consumers {
    /// `settings.count` consumer shards per group for the first stream's
    /// topic of `run`.
    pub fn new(
        run: &RunPlan,
        settings: &ConsumerSettings,
        started: SystemTime,
        metrics: Option<ConsumeMetrics>,
    ) -> Self {
        let plans = (0..settings.groups.max(1))
            .map(|g| group_plan(run, settings.count, g, started))
            .collect::<Vec<_>>();
        Consumers {
            backlog: settings.backlog.map(|bytes| BacklogWatch {
                result: BacklogResult {
                    requested_bytes: bytes,
                    drain_ratio: settings.drain_ratio,
                    ..BacklogResult::default()
                },
                run_start: Instant::now(),
                draining_since: None,
            }),
            groups: plans.iter().map(|_| Group::default()).collect(),
            plans,
            stop: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    /// Records every group has read, and the lag of all groups together.
    fn read_and_lag(&self) -> (u64, u64) {
        let read = self.groups.iter().map(|g| g.read.load(Relaxed)).min();
        let lag = self.groups.iter().map(|g| g.lag.load(Relaxed)).sum();
        (read.unwrap_or(0), lag)
    }

    /// Takes in a second of the producers' progress: starts the consumers
    /// (at once, or once the backlog is built) and watches the drain.
    pub fn observe(&mut self, acked_records: u64, acked_bytes: u64) {
        let (read, lag) = self.read_and_lag();
        match &mut self.backlog {
            None => self.start_once(),
            Some(w) if w.draining_since.is_none() => {
                if acked_bytes >= w.result.requested_bytes {
                    w.result.built_after_s = w.run_start.elapsed().as_secs_f64();
                    w.result.records = acked_records;
                    w.draining_since = Some(Instant::now());
                    self.start_once();
                }
            }
            Some(w) => w.check(lag, read, true),
        }
    }

    /// Starts the consumers (the first call only).
    fn start_once(&mut self) {
        for (g, (plan, group)) in self.plans.drain(..).zip(&mut self.groups).enumerate() {
            let (read, lag, line) = (group.read.clone(), group.lag.clone(), group.line.clone());
            let stop = self.stop.clone();
            let metrics = self.metrics.as_ref().map(|m| m.for_group(g));
            group.thread = Some(std::thread::spawn(move || {
                let mut points = Vec::new();
                let outcome = run_consume(plan, stop, |p| {
                    read.store(p.totals.records, Relaxed);
                    lag.store(p.totals.lag, Relaxed);
                    if let Some(m) = &metrics {
                        m.update(p);
                    }
                    if let Ok(mut l) = line.lock() {
                        *l = super::consume::status_line(p);
                    }
                    points.push(ConsumePoint::from_progress(p));
                })?;
                Ok((outcome, points))
            }));
        }
    }

    /// The consumers' last status lines, one per group.
    pub fn line(&self) -> String {
        let lines: Vec<String> = self
            .groups
            .iter()
            .map(|g| g.line.lock().map(|l| l.clone()).unwrap_or_default())
            .collect();
        lines.join("\n  ")
    }

    /// Waits until every group read `produced` records (or `drain`
    /// passed), stops the consumers and returns what they read, the groups
    /// added together.
    pub fn finish(
        mut self,
        produced: u64,
        drain: Duration,
    ) -> Option<Result<(ConsumeResults, Vec<ConsumePoint>), ConsumeError>> {
        // A backlog never built: read what there is anyway.
        self.start_once();
        let deadline = Instant::now() + drain;
        while self.read_and_lag().0 < produced
            && Instant::now() < deadline
            && self
                .groups
                .iter()
                .any(|g| g.thread.as_ref().is_some_and(|t| !t.is_finished()))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (read, _) = self.read_and_lag();
        if let Some(w) = &mut self.backlog {
            w.check(produced.saturating_sub(read), read, false);
        }
        self.stop.store(true, Relaxed);
        let mut outcomes = Vec::new();
        for g in &mut self.groups {
            let joined = g.thread.take()?.join().unwrap_or_else(|_| {
                Err(ConsumeError::Setup("a consumers' thread panicked".into()))
            });
            match joined {
                Ok(o) => outcomes.push(o),
                Err(e) => return Some(Err(e)),
            }
        }
        let backlog = self.backlog.map(|w| w.result);
        Some(added(&outcomes).map(|(mut results, points)| {
            results.backlog = backlog;
            (results, points)
        }))
    }
}

/// One group's plan: its consumers on the run's CPUs, from the run's start.
fn group_plan(run: &RunPlan, n: usize, group: usize, started: SystemTime) -> ConsumePlan {
    let topic = run
        .streams
        .first()
        .map_or_else(String::new, |s| s.topic.clone());
    let mut plan = ConsumePlan::new(run.bootstrap.clone(), topic);
    plan.cpus = (0..n.max(1))
        .map(|i| run.cpus[(group * n + i) % run.cpus.len().max(1)])
        .collect();
    plan.client_id = format!("{}-consumer-{group}", run.client_id);
    plan.security = run.security.clone();
    plan.connect_timeout = run.connect_timeout;
    plan.request_timeout = run.request_timeout;
    plan.instance = run.instance;
    plan.instances = run.instances;
    let since = started.duration_since(UNIX_EPOCH).unwrap_or_default();
    plan.from = StartFrom::Timestamp(since.as_millis() as i64);
    plan
}

/// The groups' results added (histograms exactly) and their seconds
/// summed by index (a second's percentiles: the highest group's).
fn added(
    outcomes: &[(ConsumeOutcome, Vec<ConsumePoint>)],
) -> Result<(ConsumeResults, Vec<ConsumePoint>), ConsumeError> {
    let results: Vec<ConsumeResults> = outcomes
        .iter()
        .map(|(o, _)| ConsumeResults::from_outcome(o))
        .collect();
    let refs: Vec<&ConsumeResults> = results.iter().collect();
    let mut merged = merge_consume(&refs).map_err(ConsumeError::Setup)?;
    merged.groups = outcomes.len();
    let len = outcomes.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
    let points = (0..len)
        .map(|i| {
            let seconds: Vec<&ConsumePoint> =
                outcomes.iter().filter_map(|(_, p)| p.get(i)).collect();
            ConsumePoint::sum(&seconds)
        })
        .collect();
    Ok((merged, points))
}
