//! One consumer shard (one pinned executor): its partitions' links, the
//! metadata refreshes that follow leader moves, the stop conditions, and
//! the interval reports to the coordinator.

use super::link::{run_link, Ctx};
use super::plan::ConsumePlan;
use super::state::{ConsumeCounters, ConsumeCounts, Part, Shared};
use crate::e2e;
use crate::verify::{Producer, SeqCheck};
use datastorm_engine::cluster::{self, Broker};
use datastorm_engine::conn::Connection;
use datastorm_engine::metrics::latency_histogram;
use datastorm_engine::wire::fetch::FetchTopicRef;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How often a shard hands its interval histograms to the coordinator.
const EVENT_EVERY: Duration = Duration::from_millis(250);
/// How often the shard's main task looks at its links and stop conditions.
const TICK: Duration = Duration::from_millis(10);
/// Least time between two metadata refreshes.
const REFRESH_EVERY: Duration = Duration::from_millis(250);

/// Everything one consumer shard is given.
pub struct ConsumeShardSetup {
    pub index: usize,
    pub cpu: usize,
    pub plan: Arc<ConsumePlan>,
    pub topic: FetchTopicRef,
    /// This shard's partitions and their leaders when the run started.
    pub partitions: Vec<(i32, Broker)>,
    /// Every broker the metadata named.
    pub brokers: Vec<Broker>,
    pub counters: Arc<ConsumeCounters>,
    pub consumed: Arc<AtomicU64>,
    pub events: mpsc::Sender<ConsumeEvent>,
    pub stop: Arc<AtomicBool>,
    /// The run's start, common to every shard (`duration` counts from it).
    pub origin: Instant,
}

/// Sent to the coordinator a few times a second.
pub enum ConsumeEvent {
    /// End-to-end and fetch latency since the shard's last event.
    Interval {
        shard: usize,
        e2e: Histogram<u64>,
        fetch_latency: Histogram<u64>,
    },
}

/// Where a partition ended.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionEnd {
    pub partition: i32,
    /// The first offset read from (-1 if never positioned).
    pub start_offset: i64,
    pub next_offset: i64,
    pub high_watermark: i64,
    /// `until_end`: the end offset at the start.
    pub end_offset: Option<i64>,
    pub records: u64,
    /// OFFSET_OUT_OF_RANGE resets.
    pub resets: u32,
}

impl PartitionEnd {
    /// Records between the next offset and the high watermark.
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.next_offset).max(0)
    }
}

/// What one consumer shard measured.
#[derive(Debug, Clone)]
pub struct ConsumeShardResult {
    pub index: usize,
    pub cpu: usize,
    pub partitions: Vec<PartitionEnd>,
    pub counters: ConsumeCounts,
    /// End-to-end latency (intended send time to the fetch response), µs.
    pub e2e: Histogram<u64>,
    /// Fetch latency (request written to response read), µs.
    pub fetch_latency: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    pub sequences: BTreeMap<Producer, SeqCheck>,
    pub fetch_version: Option<i16>,
    pub failure: Option<String>,
    pub elapsed: Duration,
}

/// Runs one consumer shard to its end; never panics on broker behaviour.
pub async fn consume_shard(setup: ConsumeShardSetup) -> ConsumeShardResult {
    let parts = setup
        .partitions
        .iter()
        .map(|(p, b)| Part::new(*p, b.id))
        .collect();
    let brokers = setup
        .brokers
        .iter()
        .map(|b| (b.id, b.addr.clone()))
        .collect();
    let ctx = Rc::new(Ctx {
        plan: setup.plan.clone(),
        topic: setup.topic.clone(),
        shared: std::cell::RefCell::new(Shared::new(parts, brokers)),
        counters: setup.counters.clone(),
        consumed: setup.consumed.clone(),
        stop: setup.stop.clone(),
        host: e2e::host_id(),
    });
    let started = Instant::now();
    let mut main = MainLoop::new(&setup, ctx.clone());
    let failure = main.run().await;
    main.finish(failure, started.elapsed()).await
}

/// The shard's main task.
struct MainLoop {
    ctx: Rc<Ctx>,
    index: usize,
    cpu: usize,
    origin: Instant,
    events: mpsc::Sender<ConsumeEvent>,
    links: BTreeMap<i32, glommio::task::JoinHandle<()>>,
    meta: Option<Connection>,
    meta_failures: u32,
    last_refresh: Option<Instant>,
    next_event: Instant,
    e2e: Histogram<u64>,
    fetch_latency: Histogram<u64>,
}

impl MainLoop {
    fn new(setup: &ConsumeShardSetup, ctx: Rc<Ctx>) -> Self {
        MainLoop {
            ctx,
            index: setup.index,
            cpu: setup.cpu,
            origin: setup.origin,
            events: setup.events.clone(),
            links: BTreeMap::new(),
            meta: None,
            meta_failures: 0,
            last_refresh: None,
            next_event: Instant::now() + EVENT_EVERY,
            e2e: latency_histogram(),
            fetch_latency: latency_histogram(),
        }
    }

    /// Until a stop condition or a failure (returned).
    async fn run(&mut self) -> Option<String> {
        loop {
            let exited = std::mem::take(&mut self.ctx.shared.borrow_mut().exited);
            for (broker, r) in exited {
                self.links.remove(&broker);
                if let Err(why) = r {
                    return Some(why);
                }
            }
            if self.should_end() {
                return None;
            }
            if let Err(why) = self.refresh_if_stale().await {
                return Some(why);
            }
            self.spawn_links();
            if Instant::now() >= self.next_event {
                self.send_interval();
            }
            glommio::timer::sleep(TICK).await;
        }
    }

    fn should_end(&self) -> bool {
        let plan = &self.ctx.plan;
        if self.ctx.stop.load(Relaxed) {
            return true;
        }
        if plan
            .stop
            .duration
            .is_some_and(|d| self.origin.elapsed() >= d)
        {
            return true;
        }
        if plan
            .stop
            .count
            .is_some_and(|c| self.ctx.consumed.load(Relaxed) >= c)
        {
            return true;
        }
        plan.stop.until_end && self.ctx.shared.borrow().parts.iter().all(Part::done)
    }

    /// One link task per broker that leads a partition of this shard.
    fn spawn_links(&mut self) {
        let leaders: Vec<i32> = {
            let st = self.ctx.shared.borrow();
            let mut l: Vec<i32> = st
                .parts
                .iter()
                .filter(|p| p.leader >= 0 && !p.done())
                .map(|p| p.leader)
                .collect();
            l.sort_unstable();
            l.dedup();
            l
        };
        for b in leaders {
            if !self.links.contains_key(&b) {
                let task = glommio::spawn_local(run_link(b, self.ctx.clone()));
                self.links.insert(b, task.detach());
            }
        }
    }

    /// Asks for the topic's leaders when a link or a response said they
    /// moved; gives up after the plan's tries in a row.
    async fn refresh_if_stale(&mut self) -> Result<(), String> {
        if !self.ctx.shared.borrow().stale {
            return Ok(());
        }
        // Failures in a row back off like connections (a broker restarting
        // refuses at once): 250 ms, then doubling to 1 s.
        let wait = (REFRESH_EVERY * (1 << self.meta_failures.min(2))).min(Duration::from_secs(1));
        if self.last_refresh.is_some_and(|t| t.elapsed() < wait) {
            return Ok(());
        }
        self.last_refresh = Some(Instant::now());
        match self.refresh().await {
            Ok(()) => self.meta_failures = 0,
            Err(e) => {
                self.meta = None;
                self.meta_failures += 1;
                self.ctx.error("metadata");
                if self.meta_failures >= self.ctx.plan.reconnect_tries.max(1) {
                    return Err(format!(
                        "could not refresh the metadata of '{}' after {} tries: {e}",
                        self.ctx.topic.name, self.meta_failures
                    ));
                }
            }
        }
        Ok(())
    }

    async fn refresh(&mut self) -> Result<(), cluster::ClusterError> {
        let plan = self.ctx.plan.clone();
        if self.meta.is_none() {
            self.meta =
                Some(cluster::bootstrap_with(&plan.bootstrap, &plan.connect_options()).await?);
        }
        let conn = self.meta.as_mut().expect("connected above");
        let info = cluster::metadata(conn, &[&plan.topic]).await?;
        let mut st = self.ctx.shared.borrow_mut();
        for b in &info.brokers {
            st.brokers.insert(b.id, b.addr.clone());
        }
        let mut leaderless = false;
        if let Some(t) = info.topic(&plan.topic) {
            for p in st.parts.iter_mut() {
                let found = t.partitions.iter().find(|i| i.id == p.id);
                p.leader = found
                    .filter(|i| i.leader >= 0 && info.broker(i.leader).is_some())
                    .map_or(-1, |i| i.leader);
                leaderless |= p.leader < 0;
            }
        } else {
            leaderless = true;
        }
        st.stale = leaderless;
        Ok(())
    }

    /// Hands the interval's histograms to the coordinator.
    fn send_interval(&mut self) {
        let (e2e, fetch) = {
            let mut st = self.ctx.shared.borrow_mut();
            (
                std::mem::replace(&mut st.e2e, latency_histogram()),
                std::mem::replace(&mut st.fetch_latency, latency_histogram()),
            )
        };
        let _ = self.e2e.add(&e2e);
        let _ = self.fetch_latency.add(&fetch);
        let _ = self.events.send(ConsumeEvent::Interval {
            shard: self.index,
            e2e,
            fetch_latency: fetch,
        });
        self.next_event += EVENT_EVERY;
        if self.next_event < Instant::now() {
            self.next_event = Instant::now() + EVENT_EVERY;
        }
    }

    /// Stops the links, hands over the last interval, and builds the result.
    async fn finish(mut self, failure: Option<String>, elapsed: Duration) -> ConsumeShardResult {
        self.ctx.shared.borrow_mut().quit = true;
        for (_, handle) in std::mem::take(&mut self.links) {
            // A link may be waiting on a Fetch the broker holds for its max
            // wait: cancel rather than wait for it.
            handle.cancel();
            let _ = handle.await;
        }
        self.send_interval();
        let st = self.ctx.shared.borrow();
        let mut sequences = st.sequences.clone();
        sequences.values_mut().for_each(SeqCheck::finish);
        ConsumeShardResult {
            index: self.index,
            cpu: self.cpu,
            partitions: st
                .parts
                .iter()
                .map(|p| PartitionEnd {
                    partition: p.id,
                    start_offset: p.start,
                    next_offset: p.next,
                    high_watermark: p.hw,
                    end_offset: p.end,
                    records: p.records,
                    resets: p.resets,
                })
                .collect(),
            counters: self.ctx.counters.snapshot(),
            e2e: self.e2e.clone(),
            fetch_latency: self.fetch_latency.clone(),
            errors: st.errors.clone(),
            sequences,
            fetch_version: st.fetch_version,
            failure,
            elapsed,
        }
    }
}
