//! `produce --consumers N`: consumers reading what the run writes, beside
//! it, for end-to-end latency under load.
//!
//! The consumers start once the run's first second is in (the topic exists
//! by then, created or not), from the run's start time (ListOffsets by
//! timestamp), so they read every record of this run and none older. When
//! the producers are done they read on until they have as many records as
//! were acknowledged, or until the drain timeout. Their shards are their
//! own executors, pinned to the producers' CPUs.

use crate::metrics::ConsumeMetrics;
use crate::report::{ConsumePoint, ConsumeResults};
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

/// The consumers of one produce run.
pub struct Consumers {
    plan: Option<ConsumePlan>,
    stop: Arc<AtomicBool>,
    /// Records read so far (from the consumers' progress).
    read: Arc<AtomicU64>,
    /// The consumers' last second, for the status line.
    line: Arc<Mutex<String>>,
    thread: Option<JoinHandle<Outcome>>,
    metrics: Option<ConsumeMetrics>,
}

impl Consumers {
    /// `n` consumer shards for the first stream's topic of `run`.
    pub fn new(
        run: &RunPlan,
        n: usize,
        started: SystemTime,
        metrics: Option<ConsumeMetrics>,
    ) -> Self {
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
            plan: Some(plan),
            stop: Arc::new(AtomicBool::new(false)),
            read: Arc::default(),
            line: Arc::default(),
            thread: None,
            metrics,
        }
    }

    /// Starts the consumers (the first call only).
    pub fn start_once(&mut self) {
        let Some(plan) = self.plan.take() else {
            return;
        };
        let (stop, read, line) = (self.stop.clone(), self.read.clone(), self.line.clone());
        let metrics = self.metrics.clone();
        self.thread = Some(std::thread::spawn(move || {
            let mut points = Vec::new();
            let outcome = run_consume(plan, stop, |p| {
                read.store(p.totals.records, Relaxed);
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
        let thread = self.thread.take()?;
        let deadline = Instant::now() + drain;
        while self.read.load(Relaxed) < produced
            && Instant::now() < deadline
            && !thread.is_finished()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Relaxed);
        let joined = thread
            .join()
            .unwrap_or_else(|_| Err(ConsumeError::Setup("the consumers' thread panicked".into())));
        Some(joined.map(|(o, points)| (ConsumeResults::from_outcome(&o), points)))
    }
}
