//! The run report's types: what `produce --report` and `report merge`
//! write, and what every reader of reports reads.
//!
//! Latencies are in microseconds, rates per second, MB = 10^6 bytes. Every
//! object may gain fields in later versions; readers ignore those they do
//! not know (no type here denies unknown fields).

use super::config::Config;
use super::environment::{Environment, Tuning};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What `datastorm produce --report FILE` and `datastorm report merge`
/// write. Latencies are in microseconds, rates per second, MB = 10^6 bytes.
/// Histograms are HdrHistogram's compact encoding: V2, DEFLATE, base64 (as
/// in HdrHistogram log files). Objects may gain fields in later versions of
/// this schema; readers ignore fields they do not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunReport {
    /// The format and its version.
    #[schemars(extend("const" = super::SCHEMA))]
    pub schema: String,
    /// The DataStorm that wrote the report.
    pub datastorm_version: String,
    /// When the run started (a merged report: the earliest instance).
    #[serde(default)]
    pub started_at_unix_ms: Option<u64>,
    pub config: Config,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
    pub cluster: Cluster,
    pub results: Results,
    pub shards: Vec<ShardReport>,
    /// One point per second of the run, warm-up included.
    pub timeline: Vec<TimelinePoint>,
    /// What the embedded sink broker received (null when producing to a real cluster).
    #[serde(default)]
    pub sink: Option<Sink>,
    /// Only in merged reports: the instances and the reports they came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<Merge>,
    /// `produce --verify`: each stream's topic read back, or why it could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Vec<Verified>>,
    /// `produce --consumers`: what the consumers read, end-to-end latency
    /// included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume: Option<super::ConsumeResults>,
    /// `produce --consumers`: the consumers' seconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consume_timeline: Vec<super::ConsumePoint>,
}

/// The cluster as the run found it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cluster {
    pub cluster_id: Option<String>,
    /// [node id, host:port] pairs.
    pub brokers: Vec<(i32, String)>,
    /// One per stream, in the plan's order.
    pub topics: Vec<ClusterTopic>,
    /// The bootstrap broker's supported versions, [min, max] by API name:
    /// the closest the protocol comes to a broker version.
    pub api_versions: BTreeMap<String, (i16, i16)>,
}

/// A stream's topic when the run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterTopic {
    pub stream: String,
    pub topic: String,
    pub partitions: Vec<i32>,
    /// This run created it.
    pub created: bool,
}

/// Counters that add up over shards, streams and instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Totals {
    /// Records the brokers acknowledged (acks=0: records written).
    pub records_acked: u64,
    /// Records handed to the socket.
    pub records_sent: u64,
    /// Records the brokers answered with an error (or never answered).
    pub records_failed: u64,
    /// records_acked over elapsed_s.
    #[schemars(range(min = 0.0))]
    pub records_per_s: f64,
    /// Key and value bytes of acknowledged records.
    pub payload_bytes_acked: u64,
    /// payload_bytes_acked over elapsed_s, in MB (10^6 bytes) per second.
    #[schemars(range(min = 0.0))]
    pub payload_mb_per_s: f64,
    /// Error responses and connection failures.
    pub errors: u64,
    /// Batches sent again after a retriable error.
    pub retries: u64,
}

/// The run's figures after the warm-up; rates are acked records over elapsed_s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Results {
    /// From the end of the warm-up to the last ack, in seconds (a merged
    /// report: the longest instance's).
    #[schemars(range(min = 0.0))]
    pub elapsed_s: f64,
    /// The warm-up left out of these figures, in seconds.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub warmup_s: f64,
    #[serde(flatten)]
    pub totals: Totals,
    /// Uncompressed record-section bytes of acknowledged batches.
    #[serde(default)]
    pub record_bytes_acked: u64,
    /// Batch bytes written to sockets (after compression).
    #[serde(default)]
    pub batch_bytes_sent: u64,
    #[serde(default)]
    pub batches_acked: u64,
    /// Produce requests written.
    #[serde(default)]
    pub requests_sent: u64,
    /// Produce responses received.
    #[serde(default)]
    pub requests_acked: u64,
    /// Error responses and connection failures by Kafka error name.
    #[serde(default)]
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Sum of broker throttle times reported, in milliseconds.
    #[serde(default)]
    pub throttle_ms: u64,
    /// Intended send time (paced runs) or record creation to ack.
    pub latency: Distribution,
    /// Paced runs: intended send time to generation (generator stalls).
    #[serde(default)]
    pub send_delay: Option<Distribution>,
    /// `--rate max`: the steps tried and the answer (a merged report: the
    /// lowest instance's answer).
    #[serde(default)]
    pub rate_search: Option<RateSearch>,
    /// CPU time of the client process (with the embedded sink when one ran in it).
    #[serde(default)]
    pub process_cpu: Option<ProcessCpu>,
    /// The codec and what it saved.
    #[serde(default)]
    pub compression: Option<CompressionResult>,
    /// The first shard failure, if any.
    #[serde(default)]
    pub failure: Option<String>,
    /// The run was stopped by a signal before its end.
    #[serde(default)]
    pub interrupted: bool,
    /// How the shards' executors slept in the kernel. Every sleep ends by
    /// the next timer's deadline or 10 ms (vendor/glommio/PATCHES.md);
    /// lost_wakeups counts the sleeps that bound ended while completions
    /// already waited unreported: wake-ups upstream glommio would have lost
    /// for good, each recovered within the bound (see docs/architecture.md).
    #[serde(default)]
    pub executor_sleeps: Option<ExecutorSleeps>,
    /// The same per stream, summed over its shards.
    #[serde(default)]
    pub streams: Vec<StreamResults>,
}

/// One stream's figures, summed over its shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamResults {
    pub name: String,
    pub topic: String,
    #[serde(flatten)]
    pub totals: Totals,
    /// Latency of the stream's records.
    pub latency: Distribution,
}

/// The unit of every latency figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Microseconds {
    #[default]
    #[serde(rename = "microseconds")]
    Microseconds,
}

/// A latency distribution in microseconds; all 0 when nothing was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Percentiles {
    pub unit: Microseconds,
    /// Values recorded.
    pub count: u64,
    pub min: u64,
    #[schemars(range(min = 0.0))]
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
}

/// Percentiles and the full histogram they were read from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Distribution {
    #[serde(flatten)]
    pub percentiles: Percentiles,
    /// HdrHistogram V2 + DEFLATE, base64 (values in microseconds, 1 us to
    /// 1 h, 3 significant digits). Null only in datastorm.run/1 reports.
    #[serde(default)]
    #[schemars(regex(pattern = r"^(HISTF[A-Za-z0-9+/]*={0,2})?$"))]
    pub histogram: Option<String>,
}

/// `--rate max`: what the search found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RateSearch {
    /// The highest sustained rate (null if even the lowest tried failed).
    pub found_per_s: Option<f64>,
    pub steps: Vec<RateStep>,
    /// The search converged (rather than running out of steps or time).
    pub converged: bool,
}

/// One rate the search tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RateStep {
    #[schemars(range(min = 0.0))]
    pub target_per_s: f64,
    #[schemars(range(min = 0.0))]
    pub acked_per_s: f64,
    pub p99_us: u64,
    pub sustained: bool,
}

/// CPU time of the client process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessCpu {
    #[schemars(range(min = 0.0))]
    pub user_s: f64,
    #[schemars(range(min = 0.0))]
    pub system_s: f64,
    /// Wall-clock seconds since the run started.
    #[schemars(range(min = 0.0))]
    pub wall_s: f64,
    /// (user_s + system_s) / wall_s.
    #[schemars(range(min = 0.0))]
    pub cores_busy: f64,
    /// CPU seconds per million acknowledged records (null before any).
    #[serde(default)]
    pub cpu_s_per_million_records: Option<f64>,
    /// An embedded sink broker ran in the process too.
    pub includes_embedded_sink: bool,
}

/// The codec, its level and the ratio it achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompressionResult {
    pub codec: String,
    /// Null for codecs without levels.
    pub level: Option<i32>,
    /// Uncompressed record bytes over batch bytes on the wire (null before any).
    pub ratio: Option<f64>,
}

/// How the shards' executors slept: totals, and per shard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutorSleeps {
    #[serde(flatten)]
    pub counts: SleepCounts,
    pub per_shard: Vec<ShardSleeps>,
}

/// Sleep counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SleepCounts {
    /// Sleeps in the kernel.
    pub sleeps: u64,
    /// Sleeps ended by the bound rather than by a completion.
    pub ended_by_bound: u64,
    /// Sleeps the bound ended while completions already waited unreported.
    pub lost_wakeups: u64,
}

impl SleepCounts {
    pub fn plus(&self, o: &SleepCounts) -> SleepCounts {
        SleepCounts {
            sleeps: self.sleeps + o.sleeps,
            ended_by_bound: self.ended_by_bound + o.ended_by_bound,
            lost_wakeups: self.lost_wakeups + o.lost_wakeups,
        }
    }
}

/// One shard's executor sleeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShardSleeps {
    pub shard: usize,
    /// Merged reports: the instance the shard ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    #[serde(default)]
    pub cpu: Option<usize>,
    #[serde(flatten)]
    pub counts: SleepCounts,
}

/// One core's share of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShardReport {
    /// The instance the shard ran in.
    #[serde(default)]
    pub instance: u32,
    pub index: usize,
    /// The stream it produced (an index into config.streams).
    pub stream: usize,
    pub cpu: usize,
    pub partitions: Vec<i32>,
    /// The brokers it connected to.
    #[serde(default)]
    pub brokers: Vec<String>,
    /// The Produce API version its connections used.
    #[serde(default)]
    pub produce_version: Option<i16>,
    pub counters: Counters,
    /// Seconds it ran.
    #[schemars(range(min = 0.0))]
    pub elapsed_s: f64,
    pub latency: Percentiles,
    #[serde(default)]
    pub send_delay: Option<Percentiles>,
    /// Error responses and connection failures by Kafka error name.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    #[serde(default)]
    pub failure: Option<String>,
    /// The idempotent producer id, when idempotent.
    #[serde(default)]
    pub producer_id: Option<i64>,
    /// Partitions stopped by a non-retriable error, and why.
    #[serde(default)]
    pub stopped_partitions: BTreeMap<String, String>,
    /// Per partition (as a string), the acknowledged sequence-header
    /// numbers as half-open [start, end) ranges: `datastorm verify
    /// --report` checks each one is in the topic. Absent in reports
    /// written before sequence headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_sequences: Option<BTreeMap<String, Vec<(u64, u64)>>>,
}

/// A shard's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Counters {
    /// Records handed to the socket.
    pub records_sent: u64,
    /// Records the broker acknowledged (acks=0: records written).
    pub records_acked: u64,
    /// Records the broker answered with an error.
    pub records_failed: u64,
    /// Key and value bytes of acknowledged records.
    pub payload_bytes_acked: u64,
    /// Uncompressed record-section bytes of acknowledged batches.
    pub record_bytes_acked: u64,
    /// Batch bytes written to sockets (after compression).
    pub batch_bytes_sent: u64,
    pub batches_acked: u64,
    pub requests_sent: u64,
    pub requests_acked: u64,
    /// Produce requests written but not yet answered when the shard ended.
    pub requests_in_flight: u64,
    pub errors: u64,
    pub retries: u64,
    /// Sum of broker throttle times, in milliseconds.
    pub throttle_ms: u64,
}

/// Whether a second was part of the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Warmup,
    Measure,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelinePoint {
    /// Seconds from the start of the run to the end of this point.
    #[schemars(range(min = 0.0))]
    pub elapsed_s: f64,
    pub phase: Phase,
    /// The target rate (paced runs): this instance's, or the sum in a merged report.
    pub target_per_s: Option<f64>,
    /// Records acknowledged in this second.
    pub records_acked: u64,
    #[schemars(range(min = 0.0))]
    pub records_per_s: f64,
    #[schemars(range(min = 0.0))]
    pub payload_mb_per_s: f64,
    pub requests_in_flight: u64,
    pub errors: u64,
    pub retries: u64,
    /// A merged report: the highest instance's (an upper bound).
    pub p50_us: u64,
    /// A merged report: the highest instance's (an upper bound).
    pub p99_us: u64,
    pub max_us: u64,
    /// The worst send delay of the second (paced runs).
    pub send_delay_max_us: u64,
    /// Only in merged reports: how many instances this second adds up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub instances: Option<u64>,
}

/// What the embedded sink broker received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Sink {
    /// Connections accepted.
    pub connections: u64,
    /// Requests handled (all APIs).
    pub requests: u64,
    pub produce_requests: u64,
    /// Record batches accepted (CRC ok).
    pub batches: u64,
    /// Records in accepted batches.
    pub records: u64,
    /// Wire size of accepted record batches, in bytes.
    pub batch_bytes: u64,
    /// Their records sections once decompressed, in bytes.
    pub record_bytes: u64,
    /// Accepted batches by codec name.
    pub batches_by_codec: BTreeMap<String, u64>,
    /// Partitions rejected because a batch failed its CRC-32C check.
    pub crc_errors: u64,
    /// Frames that could not be decoded.
    pub decode_errors: u64,
    /// Partitions rejected because a record batch was malformed.
    pub malformed_batches: u64,
    /// Partitions rejected because the topic or partition does not exist.
    pub unknown_partitions: u64,
    /// Per-topic totals.
    pub topics: BTreeMap<String, SinkTopic>,
}

/// One topic's totals at the sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SinkTopic {
    pub partitions: i32,
    pub batches: u64,
    pub records: u64,
    pub batch_bytes: u64,
}

/// Merged reports: the instances and the reports they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Merge {
    pub instances: std::collections::BTreeSet<u32>,
    pub reports: Vec<MergedReport>,
}

/// One instance's report in a merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MergedReport {
    pub path: String,
    pub instance: Option<u32>,
    #[serde(default)]
    pub started_at_unix_ms: Option<u64>,
    #[schemars(range(min = 0.0))]
    pub elapsed_s: f64,
    pub records_acked: u64,
    #[serde(default)]
    pub environment: Option<Environment>,
}

/// One stream's topic read back by `produce --verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Verified {
    Checked(VerifyReport),
    /// The topic could not be read back.
    Failed {
        topic: String,
        error: String,
    },
}

/// A topic read back: the records of each producer shard and partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VerifyReport {
    pub topic: String,
    /// Per partition: (first offset, end offset) when reading started.
    pub offsets: BTreeMap<String, (i64, i64)>,
    pub records_read: u64,
    /// Records without a `ds-seq` header.
    pub without_header: u64,
    pub producers: Vec<ProducerCheck>,
    /// Acknowledged records checked against the topic.
    pub acked_checked: u64,
    /// ...and those missing from it.
    pub acked_missing: u64,
}

/// The records of one producer shard in one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProducerCheck {
    pub instance: u32,
    pub shard: u32,
    pub partition: i32,
    pub records: u64,
    pub distinct: u64,
    /// The highest record number seen.
    pub max_seq: Option<u64>,
    /// Numbers below the highest that are missing.
    pub gaps: u64,
    pub duplicates: u64,
    /// Records whose number is below one read before them in the partition.
    pub out_of_order: u64,
    /// The header names another partition than the one the record is in.
    pub wrong_partition: u64,
    /// Acknowledged numbers that are missing.
    pub acked_missing: u64,
    /// Acknowledged numbers checked.
    pub acked: u64,
}
