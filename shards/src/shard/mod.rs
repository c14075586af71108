//! What one core does: generate records for its partitions, seal them into
//! batches, pipeline Produce requests to the partition leaders, and account
//! for the acks.
//!
//! Each of a shard's streams runs as one `task::StreamTask`, a state
//! machine that owns its partitions, links and books. The per-record loop
//! is `StreamTask::chunk` (in `generate`): pick a partition, copy key and
//! value into its open batch. It neither allocates nor locks; sealing and
//! sending (`send`), ack handling (`acks`) and connection upkeep (`link`:
//! reconnects, leader moves, request timeouts) happen once per batch or on
//! the error path, and ack readers and watchdogs report to the task through
//! its queue of typed events (`events`).

mod acks;
mod error;
mod events;
mod generate;
mod link;
mod send;
mod state;
mod task;

use crate::pacer::Profile;
use crate::plan::RunPlan;
use datastorm_engine::cluster::Broker;
use datastorm_engine::metrics::{Counters, ShardCounters};
use datastorm_engine::sleeps::SleepCounters;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use task::{run_stream, StreamSetup};

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
            let task = StreamSetup {
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
