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
    /// Consumer shards (one pinned executor each), over all groups.
    pub consumers: usize,
    /// Independent groups, each reading every record (`--consumer-groups`,
    /// OMB's subscriptions); 0 in a report of one group.
    #[serde(skip_serializing_if = "is_zero")]
    pub groups: usize,
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
    /// `produce --backlog`: the backlog built before the consumers started,
    /// and how they drained it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<BacklogResult>,
}

/// OMB's backlog test: consumers hold back until the backlog is built,
/// then read while the producers go on at the run's rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct BacklogResult {
    /// `--backlog`: payload bytes produced and unread before consumers start.
    pub requested_bytes: u64,
    /// `--backlog-drain-ratio`: the share of the backlog that must be read
    /// for it to count as drained (what may remain: the larger of 1,000
    /// records and (1 - ratio) x the backlog).
    pub drain_ratio: f64,
    /// Seconds from the run's start until the backlog was built.
    pub built_after_s: f64,
    /// Records produced (acknowledged) when the consumers started.
    pub records: u64,
    /// Seconds from the consumers' start until the backlog was drained
    /// (one-second resolution); null if it never was.
    pub drain_s: Option<f64>,
    /// Records read per second while draining.
    pub drain_records_per_s: Option<f64>,
    /// Drained while the producers still ran (false: only after they stopped).
    pub drained_while_producing: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
    /// CPU time of the consuming process (with the embedded sink when one
    /// ran in it); per million records read.
    #[serde(default)]
    pub process_cpu: Option<super::ProcessCpu>,
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
            groups: 0,
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
            backlog: None,
        }
    }
}

impl ConsumePoint {
    /// Seconds of several groups as one: counts and rates summed, each
    /// percentile the highest (an upper bound: seconds keep no histogram).
    pub fn sum(points: &[&ConsumePoint]) -> ConsumePoint {
        let max = |f: fn(&ConsumePoint) -> u64| points.iter().map(|p| f(p)).max().unwrap_or(0);
        ConsumePoint {
            elapsed_s: points.iter().map(|p| p.elapsed_s).fold(0.0, f64::max),
            records: points.iter().map(|p| p.records).sum(),
            records_per_s: points.iter().map(|p| p.records_per_s).sum(),
            mb_per_s: points.iter().map(|p| p.mb_per_s).sum(),
            lag: points.iter().map(|p| p.lag).sum(),
            e2e: Percentiles {
                count: points.iter().map(|p| p.e2e.count).sum(),
                p50: max(|p| p.e2e.p50),
                p90: max(|p| p.e2e.p90),
                p99: max(|p| p.e2e.p99),
                p99_9: max(|p| p.e2e.p99_9),
                p99_99: max(|p| p.e2e.p99_99),
                max: max(|p| p.e2e.max),
                ..Percentiles::default()
            },
            fetch_p99_us: max(|p| p.fetch_p99_us),
        }
    }

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

/// Adds distributions exactly (their histograms), or says which lacks one.
fn add_distributions<'a>(
    parts: impl Iterator<Item = &'a Distribution>,
) -> Result<Distribution, String> {
    let mut sum = datastorm_engine::metrics::latency_histogram();
    for d in parts {
        d.add_into(&mut sum).map_err(|e| e.to_string())?;
    }
    Ok(distribution(&sum))
}

/// The consumers of several instances as one: counters summed, rates over
/// the longest instance's time, histograms added exactly.
pub fn merge_consume(parts: &[&ConsumeResults]) -> Result<ConsumeResults, String> {
    let first = parts.first().ok_or("nothing to merge")?;
    let sum = |f: fn(&ConsumeResults) -> u64| parts.iter().map(|c| f(c)).sum::<u64>();
    let elapsed = parts.iter().map(|c| c.elapsed_s).fold(0.0, f64::max);
    let records = sum(|c| c.records);
    let bytes = sum(|c| c.bytes);
    let mut errors = BTreeMap::new();
    for (k, n) in parts.iter().flat_map(|c| &c.errors_by_kind) {
        *errors.entry(k.clone()).or_insert(0) += n;
    }
    let mut partitions: Vec<ConsumePartition> =
        parts.iter().flat_map(|c| c.partitions.clone()).collect();
    partitions.sort_by_key(|p| p.partition);
    Ok(ConsumeResults {
        topic: first.topic.clone(),
        consumers: parts.iter().map(|c| c.consumers).sum(),
        // Instances split one group's partitions: as many groups as each.
        groups: parts.iter().map(|c| c.groups).max().unwrap_or(0),
        elapsed_s: elapsed,
        records,
        bytes,
        batches: sum(|c| c.batches),
        control_batches: sum(|c| c.control_batches),
        fetch_requests: sum(|c| c.fetch_requests),
        fetch_responses: sum(|c| c.fetch_responses),
        records_per_s: records as f64 / elapsed.max(1e-9),
        mb_per_s: bytes as f64 / elapsed.max(1e-9) / 1e6,
        records_timed: sum(|c| c.records_timed),
        records_untimed: sum(|c| c.records_untimed),
        e2e_latency: add_distributions(parts.iter().map(|c| &c.e2e_latency))?,
        fetch_latency: add_distributions(parts.iter().map(|c| &c.fetch_latency))?,
        lag: sum(|c| c.lag),
        reconnects: sum(|c| c.reconnects),
        errors_by_kind: errors,
        fetch_version: parts.iter().filter_map(|c| c.fetch_version).min(),
        partitions,
        failure: parts.iter().find_map(|c| c.failure.clone()),
        interrupted: parts.iter().any(|c| c.interrupted),
        // Each instance built and drained its own backlog: the slowest.
        backlog: parts
            .iter()
            .filter_map(|c| c.backlog.clone())
            .max_by(|a, b| {
                a.drain_s
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.drain_s.unwrap_or(f64::MAX))
            }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(records: u64, elapsed_s: f64, latencies: &[u64]) -> ConsumeResults {
        let mut h = datastorm_engine::metrics::latency_histogram();
        for &l in latencies {
            h.record(l).expect("in range");
        }
        ConsumeResults {
            records,
            bytes: records * 100,
            elapsed_s,
            records_timed: latencies.len() as u64,
            e2e_latency: distribution(&h),
            consumers: 1,
            ..ConsumeResults::default()
        }
    }

    #[test]
    fn merged_consumers_add_counts_and_histograms_exactly() {
        let a = part(1_000, 2.0, &[100, 200, 300]);
        let b = part(3_000, 4.0, &[10_000]);
        let m = merge_consume(&[&a, &b]).expect("merges");
        assert_eq!((m.records, m.consumers, m.records_timed), (4_000, 2, 4));
        assert_eq!(m.records_per_s, 1_000.0);
        assert_eq!(m.e2e_latency.percentiles.count, 4);
        // The max is the other instance's: read from the sum, not averaged.
        assert!(m.e2e_latency.percentiles.max >= 10_000);
        assert!(m.e2e_latency.percentiles.p50 < 400);
    }

    #[test]
    fn a_distribution_without_its_histogram_is_refused() {
        let mut a = part(10, 1.0, &[5]);
        a.e2e_latency.histogram = None;
        assert!(merge_consume(&[&a]).is_err());
    }
}
