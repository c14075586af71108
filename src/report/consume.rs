//! Consumers in reports: what `datastorm consume` and `produce --consumers`
//! read, with end-to-end and fetch latency histograms.
//!
//! A produce run with consumers carries [`ConsumeResults`] in its
//! `datastorm.run/2` report (`consume`); `datastorm consume` writes a
//! [`ConsumeReport`] (`datastorm.consume/1`): the settings, the same
//! results and one timeline point per second.

use super::histogram::{distribution, percentiles};
use super::{Distribution, Environment, Percentiles};
use datastorm_engine::wire::fetch::Isolation;
use datastorm_shards::consume::{ConsumeOutcome, ConsumePlan, ConsumeProgress, StartFrom};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version `datastorm consume --report` writes.
pub const CONSUME_SCHEMA: &str = "datastorm.consume/1";

/// What the consumers read; rates are records over elapsed_s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ConsumeResults {
    pub topic: String,
    /// Consumer shards (one pinned executor each).
    pub consumers: usize,
    #[schemars(range(min = 0.0))]
    pub elapsed_s: f64,
    /// Records walked (transaction markers excluded).
    pub records: u64,
    /// Bytes of the record batches read, as on the wire.
    pub bytes: u64,
    pub batches: u64,
    pub control_batches: u64,
    pub fetch_requests: u64,
    pub fetch_responses: u64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    /// Records with this host's `ds-t` stamp (or any, across hosts): timed.
    pub records_timed: u64,
    /// Records read but not timed (no stamp, or another host's).
    pub records_untimed: u64,
    /// Intended send time (the producer's pacer) to the fetch response that
    /// brought the record.
    pub e2e_latency: Distribution,
    /// Fetch request written to response read (includes the broker's wait
    /// for fetch.min.bytes, up to fetch.max.wait).
    pub fetch_latency: Distribution,
    /// Records between each partition's next offset and its high
    /// watermark, summed, at the end.
    pub lag: u64,
    pub reconnects: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The Fetch version the brokers and DataStorm agreed on.
    pub fetch_version: Option<i16>,
    pub partitions: Vec<ConsumePartition>,
    pub failure: Option<String>,
    pub interrupted: bool,
}

/// One partition at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConsumePartition {
    pub partition: i32,
    pub start_offset: i64,
    pub next_offset: i64,
    pub high_watermark: i64,
    pub lag: i64,
    pub records: u64,
    /// OFFSET_OUT_OF_RANGE resets.
    pub resets: u32,
}

/// `datastorm consume --report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConsumeReport {
    #[schemars(extend("const" = CONSUME_SCHEMA))]
    pub schema: String,
    pub datastorm_version: String,
    pub started_at_unix_ms: Option<u64>,
    pub config: ConsumeConfig,
    #[serde(default)]
    pub environment: Environment,
    pub consume: ConsumeResults,
    pub timeline: Vec<ConsumePoint>,
}

/// The consume settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ConsumeConfig {
    pub bootstrap: Vec<String>,
    pub topic: String,
    pub cpus: Vec<usize>,
    pub instance: u32,
    pub instances: u32,
    /// earliest, latest, timestamp:MS or offset:N.
    pub from: String,
    pub isolation: String,
    pub fetch_min_bytes: i32,
    pub fetch_max_wait_ms: u64,
    pub fetch_max_bytes: i32,
    pub max_partition_fetch_bytes: i32,
    pub check_crcs: bool,
    pub count: Option<u64>,
    pub duration_s: Option<f64>,
    pub until_end: bool,
    pub e2e_across_hosts: bool,
}

/// One second of a consume run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ConsumePoint {
    pub elapsed_s: f64,
    pub records: u64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    pub lag: u64,
    /// End-to-end latency of the records read in this second.
    pub e2e: Percentiles,
    pub fetch_p99_us: u64,
}

impl ConsumeConfig {
    pub fn from_plan(p: &ConsumePlan) -> Self {
        ConsumeConfig {
            bootstrap: p.bootstrap.clone(),
            topic: p.topic.clone(),
            cpus: p.cpus.clone(),
            instance: p.instance,
            instances: p.instances,
            from: match p.from {
                StartFrom::Earliest => "earliest".into(),
                StartFrom::Latest => "latest".into(),
                StartFrom::Timestamp(ms) => format!("timestamp:{ms}"),
                StartFrom::Offset(o) => format!("offset:{o}"),
            },
            isolation: match p.fetch.isolation {
                Isolation::ReadUncommitted => "read_uncommitted".into(),
                Isolation::ReadCommitted => "read_committed".into(),
            },
            fetch_min_bytes: p.fetch.min_bytes,
            fetch_max_wait_ms: p.fetch.max_wait.as_millis() as u64,
            fetch_max_bytes: p.fetch.max_bytes,
            max_partition_fetch_bytes: p.fetch.partition_max_bytes,
            check_crcs: p.check_crcs,
            count: p.stop.count,
            duration_s: p.stop.duration.map(|d| d.as_secs_f64()),
            until_end: p.stop.until_end,
            e2e_across_hosts: p.e2e_across_hosts,
        }
    }
}

impl ConsumeResults {
    pub fn from_outcome(o: &ConsumeOutcome) -> Self {
        let t = &o.totals;
        let el = o.elapsed.as_secs_f64().max(1e-9);
        let partitions: Vec<ConsumePartition> = o
            .shards
            .iter()
            .flat_map(|s| &s.partitions)
            .map(|p| ConsumePartition {
                partition: p.partition,
                start_offset: p.start_offset,
                next_offset: p.next_offset,
                high_watermark: p.high_watermark,
                lag: p.lag(),
                records: p.records,
                resets: p.resets,
            })
            .collect();
        ConsumeResults {
            topic: o.topic.clone(),
            consumers: o.shards.len(),
            elapsed_s: o.elapsed.as_secs_f64(),
            records: t.records,
            bytes: t.bytes,
            batches: t.batches,
            control_batches: t.control_batches,
            fetch_requests: t.fetch_requests,
            fetch_responses: t.fetch_responses,
            records_per_s: t.records as f64 / el,
            mb_per_s: t.bytes as f64 / el / 1e6,
            records_timed: t.records_timed,
            records_untimed: t.records_untimed,
            e2e_latency: distribution(&o.e2e),
            fetch_latency: distribution(&o.fetch_latency),
            lag: partitions.iter().map(|p| p.lag.max(0) as u64).sum(),
            reconnects: t.reconnects,
            errors_by_kind: o.errors.clone(),
            fetch_version: o.shards.iter().find_map(|s| s.fetch_version),
            partitions,
            failure: o.failure.clone(),
            interrupted: o.interrupted,
        }
    }
}

impl ConsumePoint {
    pub fn from_progress(p: &ConsumeProgress) -> Self {
        let secs = p.interval.as_secs_f64().max(1e-9);
        ConsumePoint {
            elapsed_s: p.elapsed.as_secs_f64(),
            records: p.delta.records,
            records_per_s: p.delta.records as f64 / secs,
            mb_per_s: p.delta.bytes as f64 / secs / 1e6,
            lag: p.totals.lag,
            e2e: percentiles(&p.e2e),
            fetch_p99_us: if p.fetch_latency.is_empty() {
                0
            } else {
                p.fetch_latency.value_at_quantile(0.99)
            },
        }
    }
}
