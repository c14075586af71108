//! `datastorm produce`: flags to a run plan, the run, the output.

use crate::{exit, render, report, units};
use clap::Args;
use datastorm_engine::batch::Compression;
use datastorm_engine::cluster::TopicSpec;
use datastorm_engine::runtime::{allowed_cpus, resolve_cpus, CpuSpec};
use datastorm_engine::sink::{SinkConfig, SinkHandle};
use datastorm_shards::payload::{avro, registry};
use datastorm_shards::plan::{Acks, Header, KeySpec, PayloadSpec, RunPlan, SchemaPayload, StopAt};
use datastorm_shards::run::{run, RunOutcome};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ProduceArgs {
    /// Brokers to bootstrap from (host:port, comma-separated). Without it, an
    /// embedded sink broker is started on loopback and used.
    #[arg(long, short = 'b', value_delimiter = ',', value_name = "HOST:PORT,...")]
    pub bootstrap: Vec<String>,
    /// Topic to produce to.
    #[arg(long, short = 't', default_value = "datastorm")]
    pub topic: String,
    /// Create the topic if it does not exist (with --partitions and --replication-factor).
    #[arg(long)]
    pub create_topic: bool,
    /// Partitions for --create-topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    /// Replication factor for --create-topic.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Number of cores to use, one shard each (default: all allowed, less the embedded sink's).
    #[arg(long, conflicts_with = "cpus")]
    pub cores: Option<usize>,
    /// Exact CPUs to use, e.g. `0-3,8` (intersected with the process's allowed CPUs).
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Stop after this many records (split across shards), e.g. 1000000 or 1M.
    #[arg(long, short = 'n', value_parser = units::parse_count)]
    pub count: Option<f64>,
    /// Stop after this long, e.g. 30s or 5m. Without --count or --duration: 10s.
    #[arg(long, short = 'd', value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// Target records per second across all shards, e.g. 500k (default: as fast as acked).
    #[arg(long, value_parser = units::parse_count)]
    pub rate: Option<f64>,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// Batch compression: none or lz4.
    #[arg(long, default_value = "lz4")]
    pub compression: Compression,
    /// Seal a partition's batch when it would exceed this size, e.g. 16384 or 64KiB.
    #[arg(long, default_value = "64KiB", value_parser = units::parse_bytes)]
    pub batch_size: usize,
    /// ...or when its first record has waited this long.
    #[arg(long, default_value = "5ms", value_parser = units::parse_duration)]
    pub linger: Duration,
    /// Produce requests in flight per broker connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Value size of each record in bytes.
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Distinct pre-generated values per shard (cycled), for --record-size.
    #[arg(long, default_value_t = 1000)]
    pub payload_pool: usize,
    /// Generate records from this Avro schema (.avsc with generation hints,
    /// see docs/schema-hints.md) instead of fixed-size values. Schemas its
    /// `ref` hints name are loaded from the same folder.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["record_size", "payload_pool"])]
    pub schema: Option<PathBuf>,
    /// How schema records are written: avro (binary), confluent (magic byte
    /// and schema id, then Avro binary) or json.
    #[arg(long, default_value = "avro", value_parser = ["avro", "confluent", "json"], requires = "schema")]
    pub encoding: String,
    /// Schema id for --encoding confluent.
    #[arg(long, requires = "schema", conflicts_with = "schema_registry")]
    pub schema_id: Option<u32>,
    /// Register the schema with this Confluent-compatible schema registry
    /// (subject TOPIC-value) and use the id it returns; implies --encoding confluent.
    #[arg(long, value_name = "URL", requires = "schema")]
    pub schema_registry: Option<String>,
    /// Pre-generate this many schema records per shard and cycle them (the
    /// fastest path); without it, records are generated live.
    #[arg(long, value_name = "N", requires = "schema")]
    pub pool: Option<usize>,
    /// Record keys: none, seq (unique sequence numbers), random,
    /// uniform:N (N distinct keys) or zipf:EXPONENT:N (N keys, skewed).
    #[arg(long, alias = "keys", default_value = "none")]
    pub key: KeySpec,
    /// A header on every record, KEY=VALUE (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<Header>,
    /// Add a `ds-seq` header to every record: shard, partition and sequence
    /// number, so a consumer can prove nothing was lost or duplicated.
    #[arg(long)]
    pub sequence_header: bool,
    /// Seed for generated data; the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Broker-side timeout for acks, and how long to wait for a response.
    #[arg(long, default_value = "30s", value_parser = units::parse_duration)]
    pub request_timeout: Duration,
    /// Times a batch is sent again after a retriable broker error
    /// (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, ...), with a backoff
    /// from 100 ms doubling to 1 s.
    #[arg(long, default_value_t = 10)]
    pub retries: u32,
    /// How long to keep trying to reach the bootstrap servers.
    #[arg(long, default_value = "10s", value_parser = units::parse_duration)]
    pub connect_timeout: Duration,
    /// Client id sent to the brokers.
    #[arg(long, default_value = datastorm_engine::DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// Write a JSON report (configuration, environment, results) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// No per-second status lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn main(args: ProduceArgs) -> u8 {
    if let Err(e) = validate(&args) {
        eprintln!("datastorm produce: {e}");
        return exit::USAGE;
    }
    let allowed = allowed_cpus();

    // No bootstrap: an embedded sink, on its own core where one is free.
    let mut sink = None;
    let mut reserved = Vec::new();
    let bootstrap = if args.bootstrap.is_empty() {
        let sink_cpu = (allowed.len() > 1).then(|| *allowed.last().expect("non-empty"));
        reserved.extend(sink_cpu);
        match SinkHandle::start(SinkConfig {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            cpus: sink_cpu.into_iter().collect(),
            default_partitions: args.partitions,
            node_id: 0,
        }) {
            Ok(h) => {
                let addr = h.local_addr();
                outln!(
                    "datastorm: no --bootstrap given: producing to an embedded sink broker on {addr} ({})",
                    match sink_cpu {
                        Some(c) => format!("pinned to CPU {c}"),
                        None => "sharing the only CPU".into(),
                    }
                );
                sink = Some(h);
                vec![addr.to_string()]
            }
            Err(e) => {
                eprintln!("datastorm produce: could not start the embedded sink: {e}");
                return exit::USAGE;
            }
        }
    } else {
        args.bootstrap.clone()
    };

    let spec = match (&args.cpus, args.cores) {
        (Some(list), _) => match list.parse::<CpuSpec>() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("datastorm produce: {e}");
                return exit::USAGE;
            }
        },
        (None, Some(n)) => CpuSpec::Count(n),
        (None, None) => CpuSpec::All,
    };
    let cpus = match resolve_cpus(&spec, &allowed, &reserved) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("datastorm produce: {e}");
            return exit::USAGE;
        }
    };

    let mut plan = to_plan(&args, bootstrap, cpus);
    if let Some(path) = &args.schema {
        match schema_payload(&args, path) {
            Ok(p) => plan.payload = PayloadSpec::Schema(p),
            Err(e) => {
                eprintln!("datastorm produce: {e}");
                return exit::USAGE;
            }
        }
    }
    let stop = super::stop_on_signals();
    let quiet = args.quiet;
    let started_at = std::time::SystemTime::now();
    let outcome = run(plan.clone(), stop, |p| {
        if !quiet {
            outln!("{}", render::status_line(p));
        }
    });
    let sink_stats = sink.map(SinkHandle::stop);
    match outcome {
        Ok(outcome) => finish(&args, &plan, &outcome, sink_stats.as_ref(), started_at),
        Err(e) => {
            eprintln!("datastorm produce: {e}");
            exit::USAGE
        }
    }
}

fn finish(
    args: &ProduceArgs,
    plan: &RunPlan,
    outcome: &RunOutcome,
    sink: Option<&datastorm_engine::sink::SinkStats>,
    started_at: std::time::SystemTime,
) -> u8 {
    outln!("{}", render::summary(plan, outcome));
    if let Some(s) = sink {
        outln!("{}", render::sink_summary(s, outcome.elapsed));
    }
    let mut code = exit::OK;
    if let Some(f) = &outcome.failure {
        eprintln!("datastorm produce: the run failed: {f}");
        code = exit::RUN_FAILED;
    }
    if let Some(path) = &args.report {
        let doc = report::build(plan, outcome, sink, started_at);
        match report::write(path, &doc) {
            Ok(()) => outln!("report written to {}", path.display()),
            Err(e) => {
                eprintln!(
                    "datastorm produce: could not write the report to {}: {e}",
                    path.display()
                );
                code = code.max(exit::RUN_FAILED);
            }
        }
    }
    code
}

/// Compiles the schema (and what it references) and settles the encoding,
/// registering the schema first when a registry is given.
fn schema_payload(a: &ProduceArgs, path: &std::path::Path) -> Result<SchemaPayload, String> {
    let compiled = avro::load_with_references(path).map_err(|e| e.to_string())?;
    let mut encoding = a.encoding.clone();
    let mut schema_id = a.schema_id;
    if let Some(url) = &a.schema_registry {
        let subject = registry::value_subject(&a.topic);
        let id = registry::register(url, &subject, compiled.source(), Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        encoding = "confluent".into();
        schema_id = Some(id);
    }
    if encoding == "confluent" && schema_id.is_none() {
        return Err("--encoding confluent needs --schema-id N or --schema-registry URL".into());
    }
    Ok(SchemaPayload {
        path: path.display().to_string(),
        encoding,
        schema_id,
        pool: a.pool,
        compiled,
    })
}

fn validate(a: &ProduceArgs) -> Result<(), String> {
    if a.topic.is_empty()
        || a.topic.len() > 249
        || !a
            .topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "invalid topic name '{}': use letters, digits, '.', '_' and '-', at most 249 characters",
            a.topic
        ));
    }
    if a.partitions < 1 {
        return Err("--partitions must be at least 1".into());
    }
    if a.replication_factor < 1 {
        return Err("--replication-factor must be at least 1".into());
    }
    if a.max_in_flight == 0 {
        return Err("--max-in-flight must be at least 1".into());
    }
    if a.batch_size < 1024 || a.batch_size > 64 * 1024 * 1024 {
        return Err("--batch-size must be between 1KiB and 64MiB".into());
    }
    if a.record_size > 16 * 1024 * 1024 {
        return Err("--record-size must be at most 16MiB".into());
    }
    if a.rate.is_some_and(|r| r < 1.0) {
        return Err("--rate must be at least 1 record per second".into());
    }
    if a.count.is_some_and(|c| c < 1.0 || c.fract() != 0.0) {
        return Err("--count must be a whole number of records, at least 1".into());
    }
    Ok(())
}

fn to_plan(a: &ProduceArgs, bootstrap: Vec<String>, cpus: Vec<usize>) -> RunPlan {
    let mut plan = RunPlan::new(bootstrap, a.topic.clone());
    plan.create_topic = a.create_topic.then(|| TopicSpec {
        name: a.topic.clone(),
        partitions: a.partitions,
        replication_factor: a.replication_factor,
    });
    plan.cpus = cpus;
    plan.stop = StopAt {
        count: a.count.map(|c| c as u64),
        duration: a.duration.or(if a.count.is_none() {
            Some(Duration::from_secs(10))
        } else {
            None
        }),
    };
    plan.rate = a.rate;
    plan.acks = a.acks;
    plan.compression = a.compression;
    plan.batch_size = a.batch_size;
    plan.linger = a.linger;
    plan.max_in_flight = a.max_in_flight;
    plan.request_timeout = a.request_timeout;
    plan.connect_timeout = a.connect_timeout;
    plan.retries = a.retries;
    plan.payload = PayloadSpec::Fixed {
        record_size: a.record_size,
        pool: a.payload_pool.max(1),
    };
    plan.keys = a.key;
    plan.headers = a.headers.clone();
    plan.sequence_header = a.sequence_header;
    plan.seed = a.seed;
    plan.client_id = a.client_id.clone();
    plan
}
