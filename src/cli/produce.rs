//! `datastorm produce`: flags to a run plan, the run, the output.

use super::consumers::{ConsumerSettings, Consumers};
use super::produce_error::ProduceError;
use super::settings;
use crate::metrics::{MetricsError, MetricsServer};
use crate::runfile::{self, RunFile, StreamEntry};
use crate::{exit, render, report, units};
use clap::Args;
use datastorm_engine::cluster::TopicSpec;
use datastorm_engine::runtime::{allowed_cpus, resolve_cpus, CpuSpec, RuntimeError};
use datastorm_engine::sink::{SinkConfig, SinkError, SinkHandle, SyntheticConfig, SyntheticTopics};
use datastorm_shards::consume::ConsumeError;
use datastorm_shards::pacer::Profile;
use datastorm_shards::payload::check_keys;
use datastorm_shards::payload::{avro, registry};
use datastorm_shards::plan::{
    Acks, Header, KeySpec, OnError, PayloadSpec, RateSpec, RunPlan, SchemaEncoding, SchemaPayload,
    StopAt, StreamPlan,
};
use datastorm_shards::run::{run, RunError, RunOutcome};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `produce`'s settings, from flags or from a run file's `[run]` table
/// (keys are the flags' long names; single-stream flags are skipped here
/// because a run file's `[[stream]]` tables hold them).
#[derive(Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProduceArgs {
    /// Produce the streams of this run file (TOML; see docs/run-files.md).
    /// Its `[run]` table sets flags; flags given here win.
    #[arg(long, short = 'f', value_name = "FILE")]
    #[serde(skip)]
    pub run_file: Option<PathBuf>,
    /// Brokers to bootstrap from (host:port, comma-separated). Without it, an
    /// embedded sink broker is started on loopback and used.
    #[arg(long, short = 'b', value_delimiter = ',', value_name = "HOST:PORT,...")]
    #[serde(deserialize_with = "settings::strings")]
    pub bootstrap: Vec<String>,
    /// Topic to produce to.
    #[arg(
        long,
        short = 't',
        default_value = "datastorm",
        conflicts_with = "run_file"
    )]
    #[serde(skip)]
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
    #[serde(deserialize_with = "settings::some_text")]
    pub cpus: Option<String>,
    /// Stop after this many records (split across shards), e.g. 1000000 or 1M.
    #[arg(long, short = 'n', value_parser = units::parse_count)]
    #[serde(deserialize_with = "settings::some_count")]
    pub count: Option<f64>,
    /// Stop after this long (after --warmup), e.g. 30s or 5m. Without
    /// --count or --duration: the length of --ramp or --steps, the end of a
    /// --rate max search, or else 10s.
    #[arg(long, short = 'd', value_parser = units::parse_duration)]
    #[serde(deserialize_with = "settings::some_duration")]
    pub duration: Option<Duration>,
    #[command(flatten)]
    #[serde(skip)]
    pub workload: super::workload::WorkloadArgs,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, value_enum, default_value = "all")]
    #[serde(deserialize_with = "settings::choice")]
    pub acks: Acks,
    /// Batch compression: none, gzip, snappy, lz4 or zstd (Kafka's codecs,
    /// written as Kafka's Java producer writes them).
    #[arg(long, value_enum, ignore_case = true, default_value = "lz4")]
    #[serde(deserialize_with = "settings::choice")]
    pub compression: super::codec::Codec,
    /// Level for codecs that have levels: gzip 1-9 (default 6), zstd 1-22 or
    /// negative for its fast modes (default 3). lz4 and snappy have none.
    #[arg(long, allow_negative_numbers = true)]
    pub compression_level: Option<i32>,
    /// Seal a partition's batch when it would exceed this size, e.g. 16384 or 64KiB.
    #[arg(long, default_value = "64KiB", value_parser = units::parse_bytes)]
    #[serde(deserialize_with = "settings::bytes")]
    pub batch_size: usize,
    /// ...or when its first record has waited this long.
    #[arg(long, default_value = "5ms", value_parser = units::parse_duration)]
    #[serde(deserialize_with = "settings::duration")]
    pub linger: Duration,
    /// Produce requests in flight per broker connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Value size of each record in bytes.
    #[arg(long, default_value_t = 100, conflicts_with = "run_file")]
    #[serde(skip)]
    pub record_size: usize,
    /// Distinct pre-generated values per shard (cycled), for --record-size.
    #[arg(long, default_value_t = 1000, conflicts_with = "run_file")]
    #[serde(skip)]
    pub payload_pool: usize,
    /// Generate records from this Avro schema (.avsc with generation hints,
    /// see docs/schema-hints.md) instead of fixed-size values. Schemas its
    /// `ref` hints name are loaded from the same folder.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["record_size", "payload_pool", "run_file"])]
    #[serde(skip)]
    pub schema: Option<PathBuf>,
    /// How schema records are written: avro (binary), confluent (magic byte
    /// and schema id, then Avro binary) or json.
    #[arg(long, value_enum, default_value = "avro", requires = "schema")]
    #[serde(skip)]
    pub encoding: SchemaEncoding,
    /// Schema id for --encoding confluent.
    #[arg(long, requires = "schema", conflicts_with = "schema_registry")]
    #[serde(skip)]
    pub schema_id: Option<u32>,
    /// Register the schema with this Confluent-compatible schema registry
    /// (subject TOPIC-value) and use the id it returns; implies --encoding
    /// confluent. With a run file, every schema stream is registered.
    #[arg(long, value_name = "URL")]
    pub schema_registry: Option<String>,
    /// Pre-generate this many schema records per shard and cycle them (the
    /// fastest path); without it, records are generated live.
    #[arg(long, value_name = "N", requires = "schema")]
    #[serde(skip)]
    pub pool: Option<usize>,
    /// Record keys: none, seq (unique sequence numbers), random,
    /// uniform:N (N distinct keys), zipf:EXPONENT:N (N keys, skewed) or
    /// field:NAME (a field of the schema's records; Kafka's partitioner).
    #[arg(
        long,
        alias = "keys",
        default_value = "none",
        conflicts_with = "run_file"
    )]
    #[serde(skip)]
    pub key: KeySpec,
    /// A header on every record, KEY=VALUE (repeatable).
    #[arg(long = "header", value_name = "KEY=VALUE", conflicts_with = "run_file")]
    #[serde(skip)]
    pub headers: Vec<Header>,
    /// Add a `ds-seq` header to every record: shard, partition and sequence
    /// number, so a consumer can prove nothing was lost or duplicated.
    #[arg(long, conflicts_with = "run_file")]
    #[serde(skip)]
    pub sequence_header: bool,
    /// Stamp every record with a `ds-t` header (its intended send time and
    /// this host's id), so a consumer (`datastorm consume`, or
    /// `--consumers`) can measure end-to-end latency.
    #[arg(long)]
    #[serde(default)]
    pub e2e_header: bool,
    /// Consumers reading the (first stream's) topic while the run writes
    /// it, one pinned executor each on the run's CPUs: consumed records/s
    /// and end-to-end latency (implies --e2e-header).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub consumers: usize,
    /// With --consumers: this many independent groups of them, each reading
    /// every record (OMB's subscriptions per topic).
    #[arg(long, default_value_t = 1, value_name = "K", requires = "consumers")]
    pub consumer_groups: usize,
    /// With --consumers: they hold back until this many payload bytes are
    /// produced and unread (OMB's consumerBacklogSizeGB), then drain the
    /// backlog while the run goes on; the report times the drain.
    #[arg(long, value_parser = units::parse_bytes, value_name = "SIZE", requires = "consumers")]
    #[serde(default, deserialize_with = "settings::some_bytes")]
    pub backlog: Option<usize>,
    /// The share of the backlog that counts as drained (OMB's
    /// backlogDrainRatio): at most max(1000, (1 - ratio) x backlog) records
    /// left.
    #[arg(long, default_value_t = 1.0, requires = "backlog")]
    pub backlog_drain_ratio: f64,
    /// Seed for generated data; the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Broker-side timeout for acks, and how long to wait for a response.
    #[arg(long, default_value = "30s", value_parser = units::parse_duration)]
    #[serde(deserialize_with = "settings::duration")]
    pub request_timeout: Duration,
    /// Times a batch is sent again after a retriable error (a lost
    /// connection, NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, ...), with a
    /// backoff from 100 ms doubling to 1 s; leaders are looked up again and
    /// lost connections re-established meanwhile.
    #[arg(long, default_value_t = 10)]
    pub retries: u32,
    /// Give up on a batch not acknowledged this long after its first record.
    #[arg(long, default_value = "120s", value_parser = units::parse_duration)]
    #[serde(deserialize_with = "settings::duration")]
    pub delivery_timeout: Duration,
    /// Idempotent producer (a producer id per shard, sequence numbers per
    /// partition): retries never duplicate. Default: on with --acks all.
    #[arg(long, overrides_with = "no_idempotent")]
    pub idempotent: bool,
    /// Turn the idempotent producer off.
    #[arg(long)]
    pub no_idempotent: bool,
    /// What a non-retriable error (or an exhausted batch) stops: its
    /// partition (the others go on), or the whole run.
    #[arg(long, value_enum, default_value = "partition")]
    #[serde(deserialize_with = "settings::choice")]
    pub on_error: OnError,
    /// After generation ends, how long to wait for outstanding acks.
    #[arg(long, default_value = "30s", value_parser = units::parse_duration)]
    #[serde(deserialize_with = "settings::duration")]
    pub drain_timeout: Duration,
    /// How long to keep trying to reach the bootstrap servers.
    #[arg(long, default_value = "10s", value_parser = units::parse_duration)]
    #[serde(deserialize_with = "settings::duration")]
    pub connect_timeout: Duration,
    /// Client id sent to the brokers.
    #[arg(long, default_value = datastorm_engine::DEFAULT_CLIENT_ID)]
    pub client_id: String,
    #[command(flatten)]
    #[serde(skip)]
    pub security: super::security::SecurityArgs,
    #[command(flatten)]
    #[serde(skip)]
    pub knobs: super::knobs::KnobArgs,
    /// Write a JSON report (configuration, environment, results) to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the per-second timeline as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Serve Prometheus metrics (text format) on this address while running,
    /// e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// After the run, read the topic(s) back and prove that every
    /// acknowledged record is there exactly once (turns on --sequence-header;
    /// see `datastorm verify`). Needs a real cluster (--bootstrap).
    #[arg(long)]
    pub verify: bool,
    /// No per-second status lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl Default for ProduceArgs {
    fn default() -> Self {
        settings::clap_defaults()
    }
}

impl ProduceArgs {
    settings::overlay_fields!(
        fields: bootstrap, create_topic, partitions, replication_factor, cores, cpus, count,
        duration, acks, compression, compression_level, batch_size, linger, max_in_flight,
        schema_registry, seed, request_timeout, retries, delivery_timeout, idempotent,
        no_idempotent, on_error, drain_timeout, connect_timeout, client_id, report, timeline,
        metrics_addr, verify, e2e_header, consumers, consumer_groups, backlog, backlog_drain_ratio, quiet;
        nested: workload, security, knobs
    );
}

/// Why a run did not start: one line each, exit code 2.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error(transparent)]
    RunFile(#[from] runfile::RunFileError),
    #[error(transparent)]
    Produce(#[from] ProduceError),
    #[error("could not start the embedded sink: {0}")]
    Sink(SinkError),
    /// `--cpus` or `--cores` that the allowed CPUs cannot give.
    #[error(transparent)]
    Cpus(#[from] RuntimeError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The run's own setup (the cluster, the executors).
    #[error(transparent)]
    Run(#[from] RunError),
}

/// `given` says which flags the command line gave: they win over a run
/// file's `[run]` table.
pub fn main(args: ProduceArgs, given: &dyn Fn(&str) -> bool) -> u8 {
    let code = settle(args, given).and_then(|(args, streams)| {
        let (plan, sink) = plan_run(&args, streams)?;
        execute(&args, plan, sink)
    });
    code.unwrap_or_else(|e| {
        eprintln!("datastorm produce: {e}");
        exit::USAGE
    })
}

/// The settings (the flags over a run file's `[run]`), checked, and the
/// streams they describe. Schemas, keys and registrations are settled
/// here, before anything starts.
fn settle(
    args: ProduceArgs,
    given: &dyn Fn(&str) -> bool,
) -> Result<(ProduceArgs, Vec<StreamPlan>), SetupError> {
    let (args, file) = match &args.run_file {
        None => (args, None),
        Some(path) => {
            let file = runfile::read(path)?;
            (file.settings(args, given)?, Some(file))
        }
    };
    validate(&args)?;
    let streams = streams(&args, file.as_ref())?;
    Ok((args, streams))
}

/// The run plan: its brokers (with no --bootstrap, an embedded sink's,
/// started here on its own core where one is free) and its CPUs.
fn plan_run(
    args: &ProduceArgs,
    streams: Vec<StreamPlan>,
) -> Result<(RunPlan, Option<SinkHandle>), SetupError> {
    let allowed = allowed_cpus();
    let mut sink = None;
    let mut reserved = Vec::new();
    let bootstrap = if args.bootstrap.is_empty() {
        let sink_cpu = super::sink::embedded_cpu(&allowed);
        reserved.extend(sink_cpu);
        let h = start_sink(args.partitions, sink_cpu, args.consumers > 0)?;
        let addr = h.local_addr();
        sink = Some(h);
        vec![addr.to_string()]
    } else {
        args.bootstrap.clone()
    };
    let spec = match (&args.cpus, args.cores) {
        (Some(list), _) => list.parse::<CpuSpec>()?,
        (None, Some(n)) => CpuSpec::Count(n),
        (None, None) => CpuSpec::All,
    };
    let cpus = resolve_cpus(&spec, &allowed, &reserved)?;
    let mut plan = to_plan(args, bootstrap, cpus)?;
    plan.streams = streams;
    Ok((plan, sink))
}

/// The embedded sink, pinned to `cpu` when there is one. With consumers
/// it serves no synthetic records: a consumer that fetches before the
/// first produce must see the topic empty, not made up.
fn start_sink(
    partitions: i32,
    cpu: Option<usize>,
    consumers: bool,
) -> Result<SinkHandle, SetupError> {
    let synthetic = SyntheticConfig {
        topics: if consumers {
            SyntheticTopics::Only(Vec::new())
        } else {
            SyntheticTopics::Unproduced
        },
        ..SyntheticConfig::default()
    };
    let config = SinkConfig {
        default_partitions: partitions,
        node_id: 0,
        synthetic,
        ..SinkConfig::default()
    };
    super::sink::start_embedded(config, cpu, "producing to").map_err(SetupError::Sink)
}

/// Runs the plan with its live outputs (status lines, --metrics-addr),
/// stops the embedded sink, then reports; the exit code is `finish`'s.
fn execute(args: &ProduceArgs, plan: RunPlan, sink: Option<SinkHandle>) -> Result<u8, SetupError> {
    let metrics = start_metrics(args, plan.instance)?;
    for note in args.knobs.capped_by_host() {
        eprintln!("datastorm produce: note: {note}");
    }
    let stop = super::stop_on_signals();
    let quiet = args.quiet;
    let started_at = std::time::SystemTime::now();
    let mut consumers = (args.consumers > 0).then(|| {
        let m = metrics.as_ref().map(MetricsServer::consumers);
        let settings = ConsumerSettings {
            count: args.consumers,
            groups: args.consumer_groups,
            backlog: args.backlog.map(|b| b as u64),
            drain_ratio: args.backlog_drain_ratio,
        };
        Consumers::new(&plan, &settings, started_at, m)
    });
    // Consumers start with the run (their setup waits for the topic), so
    // that its first records are not read late; with --backlog they wait.
    if let Some(c) = consumers.as_mut() {
        c.observe(0, 0);
    }
    let outcome = run(plan.clone(), stop, |p| {
        if let Some(m) = &metrics {
            m.update(p);
        }
        if let Some(c) = consumers.as_mut() {
            c.observe(p.totals.records_acked, p.totals.payload_bytes_acked);
        }
        if !quiet {
            match &consumers {
                Some(c) => outln!("{}\n  {}", render::status_line(p), c.line()),
                None => outln!("{}", render::status_line(p)),
            }
        }
    });
    if let Some(m) = metrics {
        m.stop();
    }
    let consumed = match &outcome {
        Ok(o) => consumers.and_then(|c| c.finish(o.totals.records_acked, args.drain_timeout)),
        Err(_) => consumers.and_then(|c| c.finish(0, Duration::ZERO)),
    };
    let sink = sink.map(SinkHandle::stop);
    let outcome = outcome?;
    Ok(finish(
        args,
        &plan,
        &outcome,
        sink.as_ref(),
        started_at,
        consumed,
    ))
}

/// The `--metrics-addr` endpoint, when asked for.
fn start_metrics(args: &ProduceArgs, instance: u32) -> Result<Option<MetricsServer>, MetricsError> {
    let Some(addr) = args.metrics_addr else {
        return Ok(None);
    };
    let m = MetricsServer::start(addr, instance)?;
    outln!(
        "datastorm: Prometheus metrics on http://{}/metrics",
        m.addr()
    );
    Ok(Some(m))
}

/// What `--consumers` read, with their seconds.
type Consumed = Result<(report::ConsumeResults, Vec<report::ConsumePoint>), ConsumeError>;

fn finish(
    args: &ProduceArgs,
    plan: &RunPlan,
    outcome: &RunOutcome,
    sink: Option<&datastorm_engine::sink::SinkStats>,
    started_at: std::time::SystemTime,
    consumed: Option<Consumed>,
) -> u8 {
    // The summary is the report's: the live run and `report show` print
    // one renderer's text.
    let mut report = match report::build(plan, outcome, sink, started_at) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("datastorm produce: {e}");
            return exit::RUN_FAILED;
        }
    };
    let mut code = exit::OK;
    match consumed {
        Some(Ok((results, points))) => {
            if results.failure.is_some() {
                code = exit::RUN_FAILED;
            }
            report.consume = Some(results);
            report.consume_timeline = points;
        }
        Some(Err(e)) => {
            eprintln!("datastorm produce: the consumers could not run: {e}");
            code = exit::RUN_FAILED;
        }
        None => {}
    }
    outln!("{}", report::summary::live(&report));
    if let Some(s) = sink {
        outln!(
            "{}",
            render::sink_summary(s, outcome.elapsed + outcome.warmup)
        );
    }
    if let Some(f) = &outcome.failure {
        eprintln!("datastorm produce: the run failed: {f}");
        code = exit::RUN_FAILED;
    } else if outcome.totals.records_failed > 0 {
        eprintln!(
            "datastorm produce: {} records were not acknowledged (see errors above)",
            render::group(outcome.totals.records_failed)
        );
        code = exit::RUN_FAILED;
    }
    if args.verify && !plan.bootstrap.is_empty() && sink.is_none() {
        let verified = verify_streams(plan, outcome);
        if verified
            .iter()
            .any(|(_, r)| r.as_ref().map_or(true, |r| !r.exact()))
        {
            code = code.max(exit::RUN_FAILED);
        }
        match report::verified(&verified) {
            Ok(v) => report.verify = v,
            Err(e) => {
                eprintln!("datastorm produce: {e}");
                code = code.max(exit::RUN_FAILED);
            }
        }
    } else if args.verify {
        outln!("verify: skipped on the embedded sink (it keeps only the last 16 MiB of each partition, and has stopped)");
    }
    if let Some(path) = &args.timeline {
        match crate::timeline::write_csv(path, &outcome.timeline) {
            Ok(()) => outln!("timeline written to {}", path.display()),
            Err(e) => {
                eprintln!(
                    "datastorm produce: could not write the timeline to {}: {e}",
                    path.display()
                );
                code = code.max(exit::RUN_FAILED);
            }
        }
    }
    if let Some(path) = &args.report {
        match report::write(path, &report) {
            Ok(()) => outln!("report written to {}", path.display()),
            Err(e) => {
                eprintln!("datastorm produce: {e}");
                code = code.max(exit::RUN_FAILED);
            }
        }
    }
    code
}

/// `--verify`: reads each stream's topic back and checks that every
/// acknowledged record is there once (sequence headers).
fn verify_streams(plan: &RunPlan, outcome: &RunOutcome) -> report::Verification {
    use datastorm_shards::verify::{verify, VerifyPlan};
    let mut jobs = Vec::new();
    for (si, stream) in plan.streams.iter().enumerate() {
        let vp = VerifyPlan {
            bootstrap: plan.bootstrap.clone(),
            topic: stream.topic.clone(),
            client_id: plan.client_id.clone(),
            connect_timeout: plan.connect_timeout,
            timeout: Duration::from_secs(300),
            security: plan.security.clone(),
        };
        let mut acked = std::collections::BTreeMap::new();
        for r in outcome.shards.iter().filter(|r| r.stream == si) {
            for (p, ranges) in &r.acked {
                acked.insert((plan.instance, r.index as u32, *p), ranges.clone());
            }
        }
        jobs.push((vp, acked));
    }
    // All streams are read back at once, each by its own consumer.
    let results: Vec<Result<_, String>> = std::thread::scope(|scope| {
        let readers: Vec<_> = jobs
            .iter()
            .map(|(vp, _)| scope.spawn(move || verify(vp)))
            .collect();
        readers
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err("the reader panicked".into()))
            })
            .collect()
    });
    // A run ended for a stalled shard has no shard results, so which
    // records were acknowledged is unknown: check the sequences alone.
    let acks_known = !outcome.shards.is_empty();
    let mut out = Vec::new();
    for ((vp, acked), result) in jobs.into_iter().zip(results) {
        if !acks_known {
            outln!(
                "--verify of {}: the shards' acknowledged ranges are unknown (the run ended \
                 without their results); checking the sequences alone",
                vp.topic
            );
        }
        let result = result.map(|mut v| {
            if acks_known {
                v.check_acked(&acked);
            }
            v
        });
        match &result {
            Ok(v) => outln!("{}", super::verify::summary(v, acks_known)),
            Err(e) => eprintln!("datastorm produce: --verify of {}: {e}", vp.topic),
        }
        out.push((vp.topic, result));
    }
    out
}

/// The run's streams: one from flags, or those of the run file.
fn streams(a: &ProduceArgs, file: Option<&RunFile>) -> Result<Vec<StreamPlan>, ProduceError> {
    match file {
        None => Ok(vec![flag_stream(a)?]),
        Some(file) => file_streams(a, file),
    }
}

/// The one stream the flags describe.
fn flag_stream(a: &ProduceArgs) -> Result<StreamPlan, ProduceError> {
    validate_topic(&a.topic)?;
    if a.schema_registry.is_some() && a.schema.is_none() {
        return Err(ProduceError::RegistryWithoutSchema);
    }
    let mut s = StreamPlan::new(a.topic.clone());
    s.create_topic = a.create_topic.then(|| TopicSpec {
        name: a.topic.clone(),
        partitions: a.partitions,
        replication_factor: a.replication_factor,
    });
    s.payload = match &a.schema {
        Some(path) => {
            let compiled = avro::load_with_references(path)?;
            PayloadSpec::Schema(schema_payload(
                a,
                path,
                compiled,
                a.encoding,
                a.schema_id,
                a.pool,
                &a.topic,
            )?)
        }
        None => PayloadSpec::Fixed {
            record_size: a.record_size,
            pool: a.payload_pool.max(1),
        },
    };
    s.keys = a.key.clone();
    s.headers = a.headers.clone();
    s.sequence_header = a.sequence_header || a.verify;
    s.e2e_header = a.e2e_header || a.consumers > 0;
    check_keys(&s.payload, &s.keys)?;
    Ok(s)
}

/// The run file's streams; a mistake in one names the file and the stream.
fn file_streams(a: &ProduceArgs, file: &RunFile) -> Result<Vec<StreamPlan>, ProduceError> {
    let shown = file_label(a);
    if a.schema_registry.is_some() && file.streams.iter().all(|e| e.schema.is_none()) {
        return Err(ProduceError::RegistryWithoutSchemaStreams(shown));
    }
    // Every schema of the run is compiled together: `ref` hints name streams.
    let schema_streams: Vec<(String, PathBuf)> = file
        .streams
        .iter()
        .filter_map(|e| {
            e.schema
                .as_ref()
                .map(|p| (e.name().to_owned(), file.dir.join(p)))
        })
        .collect();
    let mut compiled = avro::load_streams(&schema_streams)?.into_iter();
    let mut out = Vec::with_capacity(file.streams.len());
    for (i, e) in file.streams.iter().enumerate() {
        let s =
            file_stream(a, &file.dir, e, &mut compiled).map_err(|source| ProduceError::Stream {
                file: shown.clone(),
                number: i + 1,
                name: e.name().to_owned(),
                source: Box::new(source),
            })?;
        out.push(s);
    }
    Ok(out)
}

/// One `[[stream]]` table, with the flags' defaults for what it leaves
/// out; `compiled` yields the schema of each schema stream in turn.
fn file_stream(
    a: &ProduceArgs,
    dir: &Path,
    e: &StreamEntry,
    compiled: &mut impl Iterator<Item = avro::CompiledSchema>,
) -> Result<StreamPlan, ProduceError> {
    validate_topic(&e.topic)?;
    let mut s = StreamPlan::new(e.topic.clone());
    s.name = e.name().to_owned();
    let partitions = e.partitions.unwrap_or(a.partitions);
    let replication_factor = e.replication_factor.unwrap_or(a.replication_factor);
    if partitions < 1 || replication_factor < 1 {
        return Err(ProduceError::StreamTopicSpec);
    }
    s.create_topic = e.create_topic.unwrap_or(a.create_topic).then(|| TopicSpec {
        name: e.topic.clone(),
        partitions,
        replication_factor,
    });
    s.payload = file_payload(a, dir, e, compiled)?;
    if let Some(k) = &e.key {
        s.keys = k.parse()?;
    }
    s.headers = e
        .headers
        .iter()
        .map(|(k, v)| format!("{k}={v}").parse::<Header>())
        .collect::<Result<_, _>>()?;
    s.sequence_header = e.sequence_header || a.verify;
    s.e2e_header = a.e2e_header || a.consumers > 0;
    s.share = e.share.unwrap_or(1.0);
    check_keys(&s.payload, &s.keys)?;
    Ok(s)
}

/// A `[[stream]]` table's payload: its schema, or fixed-size values.
fn file_payload(
    a: &ProduceArgs,
    dir: &Path,
    e: &StreamEntry,
    compiled: &mut impl Iterator<Item = avro::CompiledSchema>,
) -> Result<PayloadSpec, ProduceError> {
    if let Some(path) = &e.schema {
        let c = compiled
            .next()
            .expect("one compiled schema per schema stream");
        return Ok(PayloadSpec::Schema(schema_payload(
            a,
            &dir.join(path),
            c,
            e.encoding.unwrap_or(SchemaEncoding::Avro),
            e.schema_id,
            e.pool,
            &e.topic,
        )?));
    }
    let record_size = e.record_size.unwrap_or(100);
    if record_size > 16 * 1024 * 1024 {
        return Err(ProduceError::StreamRecordSize);
    }
    Ok(PayloadSpec::Fixed {
        record_size,
        pool: e.payload_pool.unwrap_or(1000).max(1),
    })
}

fn file_label(a: &ProduceArgs) -> String {
    a.run_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Settles a schema stream's encoding, registering the schema first when a
/// registry is given.
fn schema_payload(
    a: &ProduceArgs,
    path: &Path,
    compiled: avro::CompiledSchema,
    encoding: SchemaEncoding,
    schema_id: Option<u32>,
    pool: Option<usize>,
    topic: &str,
) -> Result<SchemaPayload, ProduceError> {
    let mut encoding = encoding;
    let mut schema_id = schema_id;
    if let Some(url) = &a.schema_registry {
        if encoding != SchemaEncoding::Json && schema_id.is_none() {
            let subject = registry::value_subject(topic);
            let id = registry::register(url, &subject, compiled.source(), Duration::from_secs(10))?;
            encoding = SchemaEncoding::Confluent;
            schema_id = Some(id);
        }
    }
    if encoding == SchemaEncoding::Confluent && schema_id.is_none() {
        return Err(ProduceError::ConfluentWithoutId);
    }
    Ok(SchemaPayload {
        path: path.display().to_string(),
        encoding,
        schema_id,
        pool,
        compiled,
    })
}

fn validate_topic(topic: &str) -> Result<(), ProduceError> {
    if topic.is_empty()
        || topic.len() > 249
        || !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ProduceError::Topic(topic.to_owned()));
    }
    Ok(())
}

fn validate(a: &ProduceArgs) -> Result<(), ProduceError> {
    a.workload.rate_spec()?;
    a.compression
        .with_level(a.compression_level)
        .map_err(ProduceError::Compression)?;
    a.workload.instance()?;
    if !(0.0..=1.0).contains(&a.backlog_drain_ratio) {
        return Err(ProduceError::DrainRatio(a.backlog_drain_ratio));
    }
    if a.idempotent && a.acks != Acks::All {
        return Err(ProduceError::IdempotentWithoutAcksAll);
    }
    if (a.idempotent || (a.acks == Acks::All && !a.no_idempotent)) && a.max_in_flight > 5 {
        return Err(ProduceError::IdempotentInFlight(a.max_in_flight));
    }
    if a.partitions < 1 {
        return Err(ProduceError::Partitions);
    }
    if a.replication_factor < 1 {
        return Err(ProduceError::ReplicationFactor);
    }
    if a.max_in_flight == 0 {
        return Err(ProduceError::MaxInFlight);
    }
    if a.batch_size < 1024 || a.batch_size > 64 * 1024 * 1024 {
        return Err(ProduceError::BatchSize);
    }
    if a.record_size > 16 * 1024 * 1024 {
        return Err(ProduceError::RecordSize);
    }
    if a.count.is_some_and(|c| c < 1.0 || c.fract() != 0.0) {
        return Err(ProduceError::Count);
    }
    Ok(())
}

fn to_plan(
    a: &ProduceArgs,
    bootstrap: Vec<String>,
    cpus: Vec<usize>,
) -> Result<RunPlan, ProduceError> {
    let mut plan = RunPlan::new(bootstrap, a.topic.clone());
    plan.cpus = cpus;
    plan.rate = a.workload.rate_spec()?;
    (plan.instance, plan.instances) = a.workload.instance()?;
    plan.warmup = a.workload.warmup;
    plan.inject_stall = a.workload.inject_stall;
    let profile_length = Profile::from_spec(&plan.rate).and_then(|p| p.length());
    let searching = matches!(plan.rate, RateSpec::Max { .. });
    plan.stop = StopAt {
        count: a.count.map(|c| c as u64),
        duration: a.duration.or(match (a.count, profile_length) {
            (Some(_), _) => None,
            (None, Some(len)) => Some(len),
            (None, None) if searching => None,
            (None, None) => Some(Duration::from_secs(10)),
        }),
    };
    plan.acks = a.acks;
    plan.compression = a
        .compression
        .with_level(a.compression_level)
        .map_err(ProduceError::Compression)?;
    plan.compression_level = a.compression_level;
    plan.batch_size = a.batch_size;
    plan.linger = a.linger;
    plan.max_in_flight = a.max_in_flight;
    plan.request_timeout = a.request_timeout;
    plan.connect_timeout = a.connect_timeout;
    plan.retries = a.retries;
    plan.delivery_timeout = a.delivery_timeout;
    plan.drain_timeout = a.drain_timeout;
    plan.idempotent = if a.no_idempotent {
        false
    } else {
        a.idempotent || a.acks == Acks::All
    };
    plan.on_error = a.on_error;
    plan.seed = a.seed;
    plan.client_id = a.client_id.clone();
    plan.security = a.security.to_config()?;
    plan.executor = a.knobs.executor();
    plan.socket = a.knobs.socket();
    plan.connections_per_broker = a.knobs.connections_per_broker as usize;
    Ok(plan)
}
