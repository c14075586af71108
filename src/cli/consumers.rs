//! `produce --consumers N`: consumers reading what the run writes, beside
//! it, for end-to-end latency under load.
//!
//! The consumers start once the run's first second is in (the topic exists
//! by then, created or not), from the run's start time (ListOffsets by
//! timestamp), so they read every record of this run and none older. With
//! `--backlog SIZE` they start only once SIZE payload bytes were produced
//! (OMB's consumerBacklogSizeGB), and the drain is timed (one-second
//! resolution: the producers' progress) while the producers go on. When
//! the producers are done the consumers read on until they have as many
//! records as were acknowledged, or until the drain timeout. Their shards
//! are their own executors, pinned to the producers' CPUs.

use crate::metrics::ConsumeMetrics;
use crate::report::{BacklogResult, ConsumePoint, ConsumeResults};
use datastorm_engine::wire::fetch::FetchLimits;
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

/// The consumers of one produce run.
pub struct Consumers {
    backlog: Option<BacklogWatch>,
    plan: Option<ConsumePlan>,
    stop: Arc<AtomicBool>,
    /// Records read so far, and the lag (from the consumers' progress).
    read: Arc<AtomicU64>,
    lag: Arc<AtomicU64>,
    /// The consumers' last second, for the status line.
    line: Arc<Mutex<String>>,
    thread: Option<JoinHandle<Outcome>>,
    metrics: Option<ConsumeMetrics>,
}

impl Consumers {
    /// `n` consumer shards for the first stream's topic of `run`.
    pub fn new(
        run: &RunPlan,
        settings: &ConsumerSettings,
        started: SystemTime,
        metrics: Option<ConsumeMetrics>,
    ) -> Self {
        let n = settings.count;
        let topic = run
            .streams
            .first()
            .map_or_else(String::new, |s| s.topic.clone());
        let mut plan = ConsumePlan::new(run.bootstrap.clone(), topic);
        plan.cpus = (0..n.max(1))
            .map(|i| run.cpus[i % run.cpus.len().max(1)])
            .collect();
        plan.client_id = format!("{}-consumer", run.client_id);
        plan.security = run.security.clone();
        plan.connect_timeout = run.connect_timeout;
        plan.request_timeout = run.request_timeout;
        plan.instance = run.instance;
        plan.instances = run.instances;
        let since = started.duration_since(UNIX_EPOCH).unwrap_or_default();
        plan.from = StartFrom::Timestamp(since.as_millis() as i64);
        plan.fetch = FetchLimits::default();
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
            plan: Some(plan),
            stop: Arc::new(AtomicBool::new(false)),
            read: Arc::default(),
            lag: Arc::default(),
            line: Arc::default(),
            thread: None,
            metrics,
        }
    }

    /// Takes in a second of the producers' progress: starts the consumers
    /// (at once, or once the backlog is built) and watches the drain.
    pub fn observe(&mut self, acked_records: u64, acked_bytes: u64) {
        let (read, lag) = (self.read.load(Relaxed), self.lag.load(Relaxed));
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
        let Some(plan) = self.plan.take() else {
            return;
        };
        let (stop, read, line) = (self.stop.clone(), self.read.clone(), self.line.clone());
        let lag = self.lag.clone();
        let metrics = self.metrics.clone();
        self.thread = Some(std::thread::spawn(move || {
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

    /// The consumers' last status line.
    pub fn line(&self) -> String {
        self.line.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until `produced` records were read (or `drain` passed), stops
    /// the consumers and returns what they read.
    pub fn finish(
        mut self,
        produced: u64,
        drain: Duration,
    ) -> Option<Result<(ConsumeResults, Vec<ConsumePoint>), ConsumeError>> {
        if self.thread.is_none() {
            // The backlog was never built: read what there is anyway.
            self.start_once();
        }
        let thread = self.thread.take()?;
        let deadline = Instant::now() + drain;
        while self.read.load(Relaxed) < produced
            && Instant::now() < deadline
            && !thread.is_finished()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(w) = &mut self.backlog {
            let read = self.read.load(Relaxed);
            w.check(produced.saturating_sub(read), read, false);
        }
        self.stop.store(true, Relaxed);
        let backlog = self.backlog.map(|w| w.result);
        let joined = thread
            .join()
            .unwrap_or_else(|_| Err(ConsumeError::Setup("the consumers' thread panicked".into())));
        Some(joined.map(|(o, points)| {
            let mut results = ConsumeResults::from_outcome(&o);
            results.backlog = backlog;
            (results, points)
        }))
    }
}
