//! The run plan: everything a run needs, resolved from flags by the CLI.

use datastorm_engine::batch::Compression;
use datastorm_engine::cluster::TopicSpec;
use serde::Serialize;
use std::time::Duration;

/// Which acknowledgement the producer waits for (`--acks 0|1|all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Acks {
    /// Fire and forget: no response; records count as acked when written.
    #[cfg_attr(feature = "clap", value(name = "0"))]
    None,
    /// The partition leader wrote the batch.
    #[cfg_attr(feature = "clap", value(name = "1"))]
    Leader,
    /// Every in-sync replica has the batch.
    #[cfg_attr(feature = "clap", value(name = "all", alias = "-1"))]
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// What a non-retriable error (or an exhausted batch) stops (`--on-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Its partition; the others go on.
    Partition,
    /// The whole run.
    Run,
}

/// How schema records are written (`--encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SchemaEncoding {
    /// Avro binary, nothing else.
    Avro,
    /// Confluent's framing (magic byte, schema id), then Avro binary.
    Confluent,
    /// The record as JSON.
    Json,
}

impl SchemaEncoding {
    pub fn name(self) -> &'static str {
        match self {
            SchemaEncoding::Avro => "avro",
            SchemaEncoding::Confluent => "confluent",
            SchemaEncoding::Json => "json",
        }
    }
}

impl std::fmt::Display for SchemaEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How record keys are made. Keys are 16 ASCII characters.
///
/// Each shard draws from its own slice of the key space (key ids `k` with
/// `k % shards == shard`), so a key is only ever produced by one shard and
/// always lands in the same partition (murmur2 of the key over that shard's
/// partitions). Rates are split evenly across shards, so `zipf` is exact
/// within a shard and stepped across shards (the `shards` hottest keys are
/// equally hot).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum KeySpec {
    /// No key: batches fill one partition at a time (sticky partitioning).
    None,
    /// 16 decimal digits, a sequence unique across shards.
    Seq,
    /// 16 hex digits from the shard's seeded random stream (all distinct in practice).
    Random,
    /// Uniform over `n` distinct keys.
    Uniform { n: u64 },
    /// Zipf-distributed over `n` distinct keys, with this exponent.
    Zipf { exponent: f64, n: u64 },
    /// The string form of a top-level field of the generated record (schema
    /// payloads only). Every shard writes to every partition of the topic and
    /// picks the partition as Kafka's default partitioner does
    /// (murmur2(key) mod partitions), so a key lands in the same partition
    /// whichever shard, instance or client produced it.
    Field { name: String },
}

impl KeySpec {
    /// Keys that come from the generated value rather than from the key generator.
    pub fn field(&self) -> Option<&str> {
        match self {
            KeySpec::Field { name } => Some(name),
            _ => None,
        }
    }
}

/// A `--key` or `--header` that cannot be parsed, with the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("--key takes none, seq, random, uniform:N, zipf:EXPONENT:N or field:NAME, not '{0}'")]
    KeyForm(String),
    #[error("'{count}' in --key {key} must be a whole number of keys, at least 1")]
    KeyCount { count: String, key: String },
    #[error("the zipf exponent in --key {0} must be a number above 0")]
    ZipfExponent(String),
    #[error("--header takes KEY=VALUE with a non-empty key, not '{0}'")]
    HeaderForm(String),
}

impl std::str::FromStr for KeySpec {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let count = |t: &str| -> Result<u64, PlanError> {
            match t.replace('_', "").parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(PlanError::KeyCount {
                    count: t.into(),
                    key: s.into(),
                }),
            }
        };
        match parts.as_slice() {
            ["none"] => Ok(KeySpec::None),
            ["seq" | "sequential"] => Ok(KeySpec::Seq),
            ["random"] => Ok(KeySpec::Random),
            ["field", name] if !name.is_empty() => Ok(KeySpec::Field {
                name: (*name).to_owned(),
            }),
            ["uniform", n] => Ok(KeySpec::Uniform { n: count(n)? }),
            ["zipf", e, n] => {
                let exponent: f64 = e
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| PlanError::ZipfExponent(s.into()))?;
                Ok(KeySpec::Zipf {
                    exponent,
                    n: count(n)?,
                })
            }
            _ => Err(PlanError::KeyForm(s.into())),
        }
    }
}

/// A static record header from `--header k=v`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Header {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(Header {
                key: k.to_owned(),
                value: v.to_owned(),
            }),
            _ => Err(PlanError::HeaderForm(s.into())),
        }
    }
}

/// The opt-in sequence header's key. Its value is ASCII,
/// `1/INSTANCE/SHARD/PARTITION/SEQUENCE`: format version 1, the producing
/// instance and shard, the partition, and the record's number within that
/// shard and partition (from 0, no gaps).
pub const SEQUENCE_HEADER: &str = "ds-seq";

/// The end-to-end stamp's key: the record's intended send time and the
/// producing host (see the `e2e` module).
pub const E2E_HEADER: &str = "ds-t";

/// What each record carries.
#[derive(Debug, Clone, Serialize)]
pub enum PayloadSpec {
    /// Fixed-size values of printable random bytes, drawn in turn from a
    /// pool of `pool` pre-generated values per shard.
    Fixed { record_size: usize, pool: usize },
    /// Records generated from an Avro schema with generation hints.
    Schema(SchemaPayload),
}

/// A schema-driven payload: the compiled schema and how to encode it.
#[derive(Clone, Serialize)]
pub struct SchemaPayload {
    /// The schema file, as given.
    pub path: String,
    pub encoding: SchemaEncoding,
    /// Confluent schema id: set when the encoding is confluent.
    pub schema_id: Option<u32>,
    /// Pre-generated records per shard (cycled); `None` generates live.
    pub pool: Option<usize>,
    #[serde(skip)]
    pub compiled: crate::payload::avro::CompiledSchema,
}

impl std::fmt::Debug for SchemaPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaPayload")
            .field("path", &self.path)
            .field("encoding", &self.encoding)
            .field("schema_id", &self.schema_id)
            .field("pool", &self.pool)
            .finish()
    }
}

impl SchemaPayload {
    /// The generator's encoding. The CLI refuses confluent without a schema
    /// id before a plan is built, so a plan without one is a bug.
    pub fn encoding(&self) -> crate::payload::avro::Encoding {
        use crate::payload::avro::Encoding;
        match self.encoding {
            SchemaEncoding::Avro => Encoding::Avro,
            SchemaEncoding::Json => Encoding::Json,
            SchemaEncoding::Confluent => Encoding::Confluent {
                schema_id: self
                    .schema_id
                    .expect("a confluent schema payload has a schema id"),
            },
        }
    }
}

/// How fast to produce, for the whole run (all shards and instances).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RateSpec {
    /// As fast as the cluster acknowledges.
    Unlimited,
    /// A fixed rate, records per second.
    Fixed { per_s: f64 },
    /// Linearly from `from` to `to` records per second over `over`, then `to`.
    Ramp { from: f64, to: f64, over: Duration },
    /// Each rate for `step`, then the last rate.
    Steps { rates: Vec<f64>, step: Duration },
    /// Search for the highest rate the cluster sustains: rates are tried for
    /// `step` each, from `start`, growing until acknowledgements stop
    /// following (or p99 latency passes `max_p99`), then bisected.
    Max {
        start: f64,
        step: Duration,
        max_p99: Option<Duration>,
    },
}

impl RateSpec {
    pub fn is_paced(&self) -> bool {
        !matches!(self, RateSpec::Unlimited)
    }
}

/// When a run ends (whichever comes first; neither = until stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct StopAt {
    pub count: Option<u64>,
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunPlan {
    pub bootstrap: Vec<String>,
    /// What to produce: one stream from flags, one or more from a run file.
    pub streams: Vec<StreamPlan>,
    /// CPUs to run shards on, one shard each.
    pub cpus: Vec<usize>,
    pub stop: StopAt,
    /// Records per second across all shards and instances.
    pub rate: RateSpec,
    /// Results exclude this first part of the run (reported separately).
    pub warmup: Duration,
    /// This instance's index among `instances` running the same plan:
    /// partitions and rate are split disjointly between them.
    pub instance: u32,
    pub instances: u32,
    /// This host's id in end-to-end stamps (`e2e::host_id`).
    pub host_id: u32,
    /// Testing aid: block shard 0's executor for `.1` once, `.0` into the
    /// run (a generator stall that must show up in latency and send delay).
    pub inject_stall: Option<(Duration, Duration)>,
    pub acks: Acks,
    /// The codec, carrying the level in use.
    pub compression: Compression,
    /// `--compression-level` as given (`None`: the codec's default). The
    /// level in use is `compression.level()`.
    pub compression_level: Option<i32>,
    /// A partition's batch is sealed when it would pass this many bytes.
    pub batch_size: usize,
    /// ...or when its first record is this old.
    pub linger: Duration,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Times a batch is sent again after a retriable error (NOT_LEADER_OR_FOLLOWER, ...).
    pub retries: u32,
    /// Wait before the first retry; doubles per attempt up to 1 s.
    pub retry_backoff: Duration,
    /// A batch not acknowledged this long after its first record is given up.
    pub delivery_timeout: Duration,
    /// Idempotent producer: a producer id per shard and stream, sequence
    /// numbers per partition, so resends never duplicate.
    pub idempotent: bool,
    /// What a non-retriable error stops: its partition or the run. Reports
    /// keep it as `stop_on_error` (true for the run).
    #[serde(rename = "stop_on_error", serialize_with = "stops_run")]
    pub on_error: OnError,
    pub seed: u64,
    pub client_id: String,
    /// How long to wait for in-flight acks after generation stops.
    pub drain_timeout: Duration,
    /// TLS and SASL for every broker connection (plaintext by default).
    /// Serializes without the password.
    pub security: datastorm_engine::SecurityConfig,
    /// The shards' glommio executors: ring depth, spin before park,
    /// preemption timer.
    pub executor: datastorm_engine::runtime::ExecutorTuning,
    /// Socket options of every broker connection (TCP_NODELAY, buffers).
    pub socket: datastorm_engine::conn::SocketOptions,
    /// Connections per shard to each leader; partition `p` uses connection
    /// `p % connections_per_broker`.
    pub connections_per_broker: usize,
}

fn stops_run<S: serde::Serializer>(on_error: &OnError, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*on_error == OnError::Run)
}

/// One stream of records: a topic, what its records carry, and its share of
/// the run's rate and count.
#[derive(Debug, Clone, Serialize)]
pub struct StreamPlan {
    /// The stream's name: `ref` hints in other streams' schemas name it.
    pub name: String,
    pub topic: String,
    /// Create the topic (if missing) with these settings.
    pub create_topic: Option<TopicSpec>,
    pub payload: PayloadSpec,
    pub keys: KeySpec,
    /// Static headers on every record.
    pub headers: Vec<Header>,
    /// Add the `ds-seq` header (see `SEQUENCE_HEADER`) to every record.
    pub sequence_header: bool,
    /// Add the `ds-t` end-to-end stamp (see `E2E_HEADER`) to every record.
    pub e2e_header: bool,
    /// Relative weight: the stream gets `share / sum of shares` of the run's
    /// `--rate` and `--count`.
    pub share: f64,
}

impl StreamPlan {
    /// A stream of 100-byte fixed values without keys or headers.
    pub fn new(topic: impl Into<String>) -> Self {
        let topic = topic.into();
        StreamPlan {
            name: topic.clone(),
            topic,
            create_topic: None,
            payload: PayloadSpec::Fixed {
                record_size: 100,
                pool: 1000,
            },
            keys: KeySpec::None,
            headers: Vec::new(),
            sequence_header: false,
            e2e_header: false,
            share: 1.0,
        }
    }
}

impl RunPlan {
    /// How every broker connection of this run is opened: client id,
    /// connect timeout, TLS and SASL.
    pub fn connect_options(&self) -> datastorm_engine::conn::ConnectOptions<'_> {
        datastorm_engine::conn::ConnectOptions::new(
            &self.client_id,
            self.connect_timeout,
            &self.security,
        )
        .with_socket(self.socket)
    }

    /// Which of a shard's connections to its leader partition `partition`
    /// uses: fixed per partition, so its batches stay in order.
    pub fn connection_slot(&self, partition: i32) -> usize {
        partition.unsigned_abs() as usize % self.connections_per_broker.max(1)
    }

    /// A plan with DataStorm's defaults for the given brokers and one topic.
    pub fn new(bootstrap: Vec<String>, topic: impl Into<String>) -> Self {
        RunPlan {
            bootstrap,
            streams: vec![StreamPlan::new(topic)],
            cpus: vec![0],
            stop: StopAt::default(),
            rate: RateSpec::Unlimited,
            warmup: Duration::ZERO,
            instance: 0,
            instances: 1,
            host_id: crate::e2e::host_id(),
            inject_stall: None,
            acks: Acks::Leader,
            compression: Compression::Lz4,
            compression_level: None,
            batch_size: 64 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight: 5,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            idempotent: false,
            on_error: OnError::Partition,
            seed: 1,
            client_id: datastorm_engine::DEFAULT_CLIENT_ID.to_owned(),
            drain_timeout: Duration::from_secs(30),
            security: datastorm_engine::SecurityConfig::plaintext(),
            executor: datastorm_engine::runtime::ExecutorTuning::default(),
            socket: datastorm_engine::conn::SocketOptions::default(),
            connections_per_broker: 1,
        }
    }
}

impl RunPlan {
    /// The single stream of a plan built from flags (the first stream otherwise).
    pub fn stream(&self) -> &StreamPlan {
        &self.streams[0]
    }

    /// Mutable [`RunPlan::stream`].
    pub fn stream_mut(&mut self) -> &mut StreamPlan {
        &mut self.streams[0]
    }

    /// Each stream's part of `total` by its share: exact (largest remainders),
    /// so the parts add up to `total`.
    pub fn split_by_share(&self, total: u64) -> Vec<u64> {
        let sum: f64 = self.streams.iter().map(|s| s.share).sum();
        let exact: Vec<f64> = self
            .streams
            .iter()
            .map(|s| total as f64 * s.share / sum)
            .collect();
        let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
        let mut left = total.saturating_sub(parts.iter().sum());
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
            rb.total_cmp(&ra).then(a.cmp(&b))
        });
        for i in order.into_iter().cycle().take(parts.len() * 2) {
            if left == 0 {
                break;
            }
            parts[i] += 1;
            left -= 1;
        }
        parts
    }

    /// Each stream's part of a rate by its share.
    pub fn rate_by_share(&self, rate: f64) -> Vec<f64> {
        let sum: f64 = self.streams.iter().map(|s| s.share).sum();
        self.streams.iter().map(|s| rate * s.share / sum).collect()
    }
}

/// Splits `total` into `parts` shares that differ by at most one, the larger first.
pub fn split_evenly(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sums_to_total() {
        for (total, parts) in [(1_000_000u64, 2usize), (7, 3), (2, 5), (0, 4)] {
            let sum: u64 = (0..parts).map(|i| split_evenly(total, parts, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(split_evenly(7, 3, 0), 3);
        assert_eq!(split_evenly(7, 3, 2), 2);
    }

    #[test]
    fn key_specs_parse() {
        assert_eq!("seq".parse::<KeySpec>().unwrap(), KeySpec::Seq);
        assert_eq!(
            "uniform:1000".parse::<KeySpec>().unwrap(),
            KeySpec::Uniform { n: 1000 }
        );
        assert_eq!(
            "zipf:1.2:10_000".parse::<KeySpec>().unwrap(),
            KeySpec::Zipf {
                exponent: 1.2,
                n: 10_000
            }
        );
        for bad in [
            "uniform",
            "uniform:0",
            "zipf:0:10",
            "zipf:x:10",
            "zipf:1:-3",
            "field",
        ] {
            assert!(bad.parse::<KeySpec>().is_err(), "{bad}");
        }
        assert_eq!(
            "zipf:-1:10".parse::<KeySpec>().unwrap_err().to_string(),
            "the zipf exponent in --key zipf:-1:10 must be a number above 0"
        );
    }

    #[test]
    fn field_keys_parse() {
        assert_eq!(
            "field:user_id".parse::<KeySpec>().unwrap(),
            KeySpec::Field {
                name: "user_id".into()
            }
        );
        assert!("field:".parse::<KeySpec>().is_err());
    }

    #[test]
    fn shares_split_count_and_rate_exactly() {
        let mut plan = RunPlan::new(vec![], "a");
        let mut b = StreamPlan::new("b");
        b.share = 2.0;
        let mut c = StreamPlan::new("c");
        c.share = 0.5;
        plan.streams.push(b);
        plan.streams.push(c);
        assert_eq!(plan.split_by_share(350), vec![100, 200, 50]);
        let odd = plan.split_by_share(1001);
        assert_eq!(odd.iter().sum::<u64>(), 1001);
        assert_eq!(plan.split_by_share(1), vec![0, 1, 0]);
        let r = plan.rate_by_share(3500.0);
        assert_eq!(r, vec![1000.0, 2000.0, 500.0]);
    }

    #[test]
    fn headers_parse() {
        let h: Header = "env=lab=1".parse().unwrap();
        assert_eq!((h.key.as_str(), h.value.as_str()), ("env", "lab=1"));
        assert!("=v".parse::<Header>().is_err());
        assert!("novalue".parse::<Header>().is_err());
    }

    #[cfg(feature = "clap")]
    #[test]
    fn acks_parse() {
        use clap::ValueEnum;
        assert_eq!(Acks::from_str("all", false).unwrap().wire(), -1);
        assert_eq!(Acks::from_str("-1", false).unwrap().wire(), -1);
        assert_eq!(Acks::from_str("1", false).unwrap().wire(), 1);
        assert!(Acks::from_str("2", false).is_err());
    }
}
