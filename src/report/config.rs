//! The report's `config`: the run plan as it was resolved from flags and
//! run files, in a form that can be read back.
//!
//! The plan itself (`datastorm_shards::plan::RunPlan`) only serializes;
//! [`Config::from_plan`] takes its JSON, so the two cannot drift apart
//! unnoticed: a test checks that a plan's JSON survives the trip whole.

use datastorm_shards::plan::RunPlan;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The run plan: every setting the run used, resolved from flags and run
/// files. Durations are `{"secs", "nanos"}` as serde writes a Rust Duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Config {
    /// The bootstrap brokers, host:port (empty against the embedded sink).
    pub bootstrap: Vec<String>,
    /// What was produced: one stream from flags, one or more from a run file.
    #[schemars(length(min = 1))]
    pub streams: Vec<Stream>,
    /// The CPUs the shards ran on, one shard each.
    pub cpus: Vec<usize>,
    /// When the run was to end (whichever came first; neither: until stopped).
    pub stop: Stop,
    /// How fast to produce, for the whole run (all shards and instances).
    pub rate: Rate,
    /// The first part of the run, left out of the results.
    pub warmup: Duration,
    /// This instance's index; null in a merged report (see merge.instances).
    pub instance: Option<u32>,
    /// How many instances ran the same plan (partitions and rate split between them).
    #[schemars(range(min = 1))]
    pub instances: u32,
    /// The producing host's id in end-to-end stamps (the `ds-t` header);
    /// 0 in reports written before it existed.
    #[serde(default)]
    pub host_id: u32,
    /// Testing aid: shard 0's executor blocked for the second duration, the
    /// first into the run.
    #[serde(default)]
    pub inject_stall: Option<(Duration, Duration)>,
    /// Which acknowledgement the producer waited for.
    pub acks: Acks,
    /// The codec: none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// `--compression-level` as given (null: the codec's default).
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// A partition's batch was sealed when it would pass this many bytes.
    pub batch_size: usize,
    /// ...or when its first record was this old.
    pub linger: Duration,
    /// Produce requests in flight per connection.
    #[schemars(range(min = 1))]
    pub max_in_flight: usize,
    /// How long a produce request could wait for its response.
    pub request_timeout: Duration,
    /// How long connecting to a broker could take.
    pub connect_timeout: Duration,
    /// Times a batch was sent again after a retriable error.
    pub retries: u32,
    /// Wait before the first retry; doubled per attempt up to 1 s.
    pub retry_backoff: Duration,
    /// A batch not acknowledged this long after its first record was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_timeout: Option<Duration>,
    /// Idempotent producer: a producer id per shard and stream, sequence
    /// numbers per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    /// A non-retriable error stopped the run (instead of only its partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on_error: Option<bool>,
    /// The seed of every random stream.
    pub seed: u64,
    /// The Kafka client id.
    pub client_id: String,
    /// How long the run waited for in-flight acks after generation stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<Duration>,
    /// How broker connections were secured. Never carries a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// The shards' glommio executors (produce --ring-depth,
    /// --spin-before-park, --preempt-timer). Absent in reports written
    /// before the tuning lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
    /// Socket options of every broker connection (produce --nodelay,
    /// --socket-send-buffer, --socket-receive-buffer, --busy-poll). Absent
    /// in reports written before the tuning lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<Socket>,
    /// Connections per shard to each leader (produce
    /// --connections-per-broker); absent before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub connections_per_broker: Option<usize>,
}

impl Config {
    /// The plan's settings, through its JSON (see the module comment).
    pub fn from_plan(plan: &RunPlan) -> Result<Config, serde_json::Error> {
        let json = serde_json::to_value(plan)?;
        let config: Config = serde_json::from_value(json.clone())?;
        // A plan field this type does not know would be dropped from
        // reports: debug builds (and so the tests) refuse that.
        if cfg!(debug_assertions) {
            let back = serde_json::to_value(&config)?;
            let lost: Vec<&String> = json
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| back.get(k.as_str()) != Some(v))
                .map(|(k, _)| k)
                .collect();
            assert!(
                lost.is_empty(),
                "the report's Config does not hold the run plan's {lost:?}: add them to \
                 src/report/config.rs"
            );
        }
        Ok(config)
    }

    /// The acks setting as the flag spells it.
    pub fn acks_label(&self) -> &'static str {
        match self.acks {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// Which acknowledgement the producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Acks {
    /// acks=0: fire and forget.
    None,
    /// acks=1: the partition leader wrote the batch.
    Leader,
    /// acks=all: every in-sync replica has the batch.
    All,
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stop {
    /// After this many records (null: no count).
    pub count: Option<u64>,
    /// After this long (null: no time limit).
    pub duration: Option<Duration>,
}

/// How fast to produce, in records per second for the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Rate {
    /// As fast as the cluster acknowledges.
    Unlimited,
    /// A fixed rate.
    Fixed { per_s: f64 },
    /// Linearly from `from` to `to` over `over`, then `to`.
    Ramp { from: f64, to: f64, over: Duration },
    /// Each rate for `step`, then the last rate.
    Steps { rates: Vec<f64>, step: Duration },
    /// Search for the highest sustained rate from `start`, `step` per rate
    /// tried, bounded by `max_p99` latency when given.
    Max {
        start: f64,
        step: Duration,
        max_p99: Option<Duration>,
    },
}

impl Rate {
    /// As the flags spell it: `50k/s`, `ramp 1,000->100k/s over 10s`.
    pub fn label(&self) -> String {
        use crate::render::{short_duration, short_rate};
        match self {
            Rate::Unlimited => "unlimited".into(),
            Rate::Fixed { per_s } => format!("{}/s", short_rate(*per_s)),
            Rate::Ramp { from, to, over } => format!(
                "ramp {}->{}/s over {}",
                short_rate(*from),
                short_rate(*to),
                short_duration(*over)
            ),
            Rate::Steps { rates, step } => format!(
                "steps {} every {}",
                rates
                    .iter()
                    .map(|r| short_rate(*r))
                    .collect::<Vec<_>>()
                    .join(","),
                short_duration(*step)
            ),
            Rate::Max {
                start,
                step,
                max_p99,
            } => format!(
                "max from {}/s, {} steps{}",
                short_rate(*start),
                short_duration(*step),
                max_p99
                    .map(|p| format!(", p99 <= {}", short_duration(p)))
                    .unwrap_or_default()
            ),
        }
    }
}

/// One stream of records: a topic, what its records carry, and its share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stream {
    /// The stream's name (`ref` hints in other streams' schemas name it).
    pub name: String,
    /// The topic it produced to.
    pub topic: String,
    /// The topic was to be created (if missing) with these settings.
    #[serde(default)]
    pub create_topic: Option<TopicSpec>,
    /// What each record carried.
    pub payload: Payload,
    /// How record keys were made.
    pub keys: Keys,
    /// Static headers on every record.
    #[serde(default)]
    pub headers: Vec<Header>,
    /// Every record carried the `ds-seq` sequence header.
    #[serde(default)]
    pub sequence_header: bool,
    /// Every record carried the `ds-t` end-to-end stamp.
    #[serde(default)]
    pub e2e_header: bool,
    /// Relative weight: the stream got `share / sum of shares` of the rate and count.
    #[schemars(range(min = 0.0))]
    pub share: f64,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
}

/// What each record carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum Payload {
    /// Fixed-size values of printable random bytes, drawn in turn from a
    /// pool of `pool` pre-generated values per shard.
    Fixed { record_size: usize, pool: usize },
    /// Records generated from an Avro schema with generation hints.
    Schema(SchemaPayload),
}

impl Payload {
    /// `100 bytes`, `schemas/x.avsc (avro, live)`.
    pub fn label(&self) -> String {
        match self {
            Payload::Fixed { record_size, .. } => format!("{record_size} bytes"),
            Payload::Schema(s) => format!(
                "{} ({}{})",
                s.path,
                s.encoding,
                s.pool
                    .map(|n| format!(", pool of {n}"))
                    .unwrap_or_else(|| ", live".into())
            ),
        }
    }
}

/// A schema-driven payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SchemaPayload {
    /// The schema file, as given.
    pub path: String,
    /// avro, confluent or json.
    pub encoding: String,
    /// The Confluent schema id, when the encoding is confluent.
    #[serde(default)]
    pub schema_id: Option<u32>,
    /// Pre-generated records per shard (cycled); null: generated live.
    #[serde(default)]
    pub pool: Option<usize>,
}

/// How record keys are made (keys are 16 ASCII characters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Keys {
    /// No key (sticky partitioning).
    None,
    /// 16 decimal digits, a sequence unique across shards.
    Seq,
    /// 16 hex digits from the shard's seeded random stream.
    Random,
    /// Uniform over `n` distinct keys.
    Uniform { n: u64 },
    /// Zipf-distributed over `n` distinct keys, with this exponent.
    Zipf { exponent: f64, n: u64 },
    /// The string form of a top-level field of the generated record.
    Field { name: String },
}

impl Keys {
    /// The kind's name: none, seq, random, uniform, zipf or field.
    pub fn kind(&self) -> &'static str {
        match self {
            Keys::None => "none",
            Keys::Seq => "seq",
            Keys::Random => "random",
            Keys::Uniform { .. } => "uniform",
            Keys::Zipf { .. } => "zipf",
            Keys::Field { .. } => "field",
        }
    }

    /// As `--key` spells it, after ", key " (empty without keys).
    pub fn label(&self) -> String {
        match self {
            Keys::None => String::new(),
            Keys::Seq => ", key seq".into(),
            Keys::Random => ", key random".into(),
            Keys::Uniform { n } => format!(", key uniform:{n}"),
            Keys::Zipf { exponent, n } => format!(", key zipf:{exponent}:{n}"),
            Keys::Field { name } => format!(", key field:{name}"),
        }
    }
}

/// A static record header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Header {
    pub key: String,
    pub value: String,
}

/// The shards' glommio executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Executor {
    /// io_uring submission queue entries per ring.
    #[schemars(range(min = 1))]
    pub ring_depth: usize,
    /// How long an idle executor polled before it parked.
    pub spin_before_park: Duration,
    /// Time slice after which a running task was asked to yield.
    pub preempt_timer: Duration,
}

/// Socket options of every broker connection; null buffers are autotuned
/// by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Socket {
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// SO_SNDBUF in bytes (null: autotuned).
    pub send_buffer: Option<usize>,
    /// SO_RCVBUF in bytes (null: autotuned).
    pub receive_buffer: Option<usize>,
    /// SO_BUSY_POLL in microseconds (null: the socket's default).
    pub busy_poll_us: Option<u32>,
}

/// How broker connections were secured. Never carries a password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Security {
    /// Kafka's security.protocol.
    pub protocol: SecurityProtocol,
    /// The TLS files as given (ssl and sasl_ssl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Who authenticated, and how (sasl_plaintext and sasl_ssl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<Sasl>,
}

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

/// TLS settings: the files as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Tls {
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// Certificates were not checked.
    pub insecure: bool,
}

/// The SASL identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let rate: Rate = serde_json::from_str(r#"{"kind": "fixed", "per_s": 50000.0}"#).unwrap();
        assert_eq!(rate.label(), "50k/s");
        let ramp: Rate = serde_json::from_str(
            r#"{"kind": "ramp", "from": 1000.0, "to": 100000.0, "over": {"secs": 10, "nanos": 0}}"#,
        )
        .unwrap();
        assert_eq!(ramp.label(), "ramp 1,000->100k/s over 10s");
        let payload: Payload =
            serde_json::from_str(r#"{"Fixed": {"record_size": 100, "pool": 1000}}"#).unwrap();
        assert_eq!(payload.label(), "100 bytes");
        let keys: Keys =
            serde_json::from_str(r#"{"kind": "zipf", "exponent": 1.1, "n": 5}"#).unwrap();
        assert_eq!(
            (keys.kind(), keys.label().as_str()),
            ("zipf", ", key zipf:1.1:5")
        );
    }
}
