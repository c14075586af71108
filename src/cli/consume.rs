//! `datastorm consume`: read a topic from one pinned executor per core and
//! report what was read, end-to-end latency included.

use crate::metrics::MetricsServer;
use crate::report::{
    self, summary, ConsumeConfig, ConsumePoint, ConsumeReport, ConsumeResults, Environment,
    CONSUME_SCHEMA,
};
use crate::{exit, render, units};
use clap::{Args, ValueEnum};
use datastorm_engine::runtime::{allowed_cpus, resolve_cpus, CpuSpec};
use datastorm_engine::sink::{SinkConfig, SinkHandle};
use datastorm_engine::wire::fetch::Isolation;
use datastorm_shards::consume::{run_consume, ConsumePlan, ConsumeProgress, StartFrom};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ConsumeArgs {
    /// Brokers to bootstrap from (host:port, comma-separated). None: read
    /// synthetic records (100-byte LZ4) from an embedded sink broker on its
    /// own core, for 10 s unless told otherwise: the consumer's ceiling.
    #[arg(long, short = 'b', value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// The topic to read.
    #[arg(long, short = 't', default_value = "datastorm")]
    pub topic: String,
    /// Number of cores to use, one consumer shard each (default 1).
    #[arg(long, conflicts_with = "cpus")]
    pub cores: Option<usize>,
    /// Exact CPUs to use, e.g. `0-3,8`.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Where each partition starts: earliest, latest, a time in ms since
    /// the epoch, or offset:N.
    #[arg(long, default_value = "earliest", value_parser = parse_from)]
    pub from: StartFrom,
    /// Stop after this many records (over all shards), e.g. 1M.
    #[arg(long, short = 'n', value_parser = units::parse_count)]
    pub count: Option<f64>,
    /// Stop after this long.
    #[arg(long, short = 'd', value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop once every partition reached the end it had at the start.
    #[arg(long)]
    pub until_end: bool,
    #[arg(long, value_enum, default_value = "read-uncommitted")]
    pub isolation: IsolationArg,
    /// fetch.min.bytes: the broker answers once this much is there...
    #[arg(long, default_value = "1", value_parser = units::parse_bytes)]
    pub fetch_min_bytes: usize,
    /// ...or once this long has passed (fetch.max.wait.ms).
    #[arg(long, default_value = "500ms", value_parser = units::parse_duration)]
    pub fetch_max_wait: Duration,
    /// fetch.max.bytes: the most one response holds (one batch always comes).
    #[arg(long, default_value = "50MiB", value_parser = units::parse_bytes)]
    pub fetch_max_bytes: usize,
    /// max.partition.fetch.bytes: the most per partition in a response.
    #[arg(long, default_value = "1MiB", value_parser = units::parse_bytes)]
    pub max_partition_fetch_bytes: usize,
    /// Do not check batches' CRC-32C (Kafka's check.crcs=false).
    #[arg(long)]
    pub no_check_crcs: bool,
    /// Time records stamped on other hosts too: their clock skew goes
    /// straight into the end-to-end figures.
    #[arg(long)]
    pub e2e_across_hosts: bool,
    /// Check the `ds-seq` sequence headers: nothing missing, doubled or
    /// out of order (exit 1 if anything is).
    #[arg(long)]
    pub check_sequences: bool,
    /// This instance's index among --instances reading the same topic.
    #[arg(long, default_value_t = 0)]
    pub instance: u32,
    #[arg(long, default_value_t = 1)]
    pub instances: u32,
    #[arg(long, default_value = "10s", value_parser = units::parse_duration)]
    pub connect_timeout: Duration,
    #[arg(long, default_value = "30s", value_parser = units::parse_duration)]
    pub request_timeout: Duration,
    #[arg(long, default_value = datastorm_engine::DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// Serve Prometheus metrics on this address while running (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Write the JSON report (datastorm.consume/1) here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// No status line each second.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub security: super::security::SecurityArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum IsolationArg {
    ReadUncommitted,
    ReadCommitted,
}

/// `--from`'s values.
pub fn parse_from(s: &str) -> Result<StartFrom, String> {
    match s {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        _ => match s.strip_prefix("offset:") {
            Some(o) => o
                .parse()
                .map(StartFrom::Offset)
                .map_err(|_| format!("'{o}' is not an offset")),
            None => s.parse().map(StartFrom::Timestamp).map_err(|_| {
                format!("'{s}': use earliest, latest, a time in ms since the epoch, or offset:N")
            }),
        },
    }
}

pub fn main(args: ConsumeArgs) -> u8 {
    let (plan, sink) = match to_plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("datastorm consume: {e}");
            return exit::USAGE;
        }
    };
    let metrics = match args
        .metrics_addr
        .map(|a| MetricsServer::start(a, plan.instance))
    {
        None => None,
        Some(Ok(m)) => {
            outln!(
                "datastorm: Prometheus metrics on http://{}/metrics",
                m.addr()
            );
            Some(m)
        }
        Some(Err(e)) => {
            eprintln!("datastorm consume: {e}");
            return exit::USAGE;
        }
    };
    let feed = metrics.as_ref().map(MetricsServer::consumers);
    let stop = super::stop_on_signals();
    let started_at = std::time::SystemTime::now();
    let mut timeline = Vec::new();
    let quiet = args.quiet;
    let outcome = run_consume(plan.clone(), stop, |p| {
        // The last call may close an interval of a few milliseconds.
        if !quiet && p.interval >= Duration::from_millis(200) {
            outln!("{}", status_line(p));
        }
        if let Some(m) = &feed {
            m.update(p);
        }
        timeline.push(ConsumePoint::from_progress(p));
    });
    if let Some(m) = metrics {
        m.stop();
    }
    let sink = sink.map(SinkHandle::stop);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("datastorm consume: {e}");
            return exit::USAGE;
        }
    };
    let results = ConsumeResults::from_outcome(&outcome);
    outln!("{}", summary::consume(&results));
    if let Some(s) = &sink {
        outln!("{}", render::sink_summary(s, outcome.elapsed));
    }
    let mut code = exit::OK;
    if let Some(f) = &outcome.failure {
        eprintln!("datastorm consume: the run failed: {f}");
        code = exit::RUN_FAILED;
    }
    if plan.check_sequences {
        code = code.max(sequences(&outcome));
    }
    let report = ConsumeReport {
        schema: CONSUME_SCHEMA.into(),
        datastorm_version: env!("CARGO_PKG_VERSION").into(),
        started_at_unix_ms: started_at
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as u64),
        config: ConsumeConfig::from_plan(&plan),
        environment: Environment::of_host(outcome.shards.iter().map(|s| s.cpu)),
        process_cpu: report::process_cpu(started_at, sink.is_some(), results.records),
        consume: results,
        timeline,
    };
    if let Some(path) = &args.report {
        match report::write(path, &report) {
            Ok(()) => outln!("report written to {}", path.display()),
            Err(e) => {
                eprintln!("datastorm consume: {e}");
                code = code.max(exit::RUN_FAILED);
            }
        }
    }
    code
}

/// `--check-sequences`: a line per producer shard and partition that is
/// not exact; the exit code.
fn sequences(o: &datastorm_shards::consume::ConsumeOutcome) -> u8 {
    if o.sequences.is_empty() {
        eprintln!("datastorm consume: no record carried a ds-seq sequence header");
        return exit::RUN_FAILED;
    }
    let mut bad = 0;
    for ((instance, shard, partition), c) in &o.sequences {
        if !c.exact() {
            bad += 1;
            eprintln!(
                "datastorm consume: instance {instance} shard {shard} partition {partition}: \
                 {} gaps, {} duplicates, {} out of order, {} in the wrong partition",
                c.gaps, c.duplicates, c.out_of_order, c.wrong_partition
            );
        }
    }
    outln!(
        "  sequences       {} producer partitions checked, {} exact",
        o.sequences.len(),
        o.sequences.len() - bad
    );
    if bad == 0 {
        exit::OK
    } else {
        exit::RUN_FAILED
    }
}

fn to_plan(a: &ConsumeArgs) -> Result<(ConsumePlan, Option<SinkHandle>), String> {
    let spec = match (&a.cpus, a.cores) {
        (Some(list), _) => list.parse::<CpuSpec>().map_err(|e| e.to_string())?,
        (None, Some(n)) => CpuSpec::Count(n),
        (None, None) => CpuSpec::Count(1),
    };
    if a.instance >= a.instances {
        return Err(format!(
            "--instance {} is not below --instances {}",
            a.instance, a.instances
        ));
    }
    let int =
        |n: usize, flag: &str| i32::try_from(n).map_err(|_| format!("--{flag} {n} is over 2 GiB"));
    let allowed = allowed_cpus();
    let (bootstrap, sink, reserved) = if a.bootstrap.is_empty() {
        let cpu = super::sink::embedded_cpu(&allowed);
        let h = super::sink::start_embedded(
            SinkConfig::default(),
            cpu,
            "reading synthetic records from",
        )
        .map_err(|e| e.to_string())?;
        (
            vec![h.local_addr().to_string()],
            Some(h),
            cpu.into_iter().collect(),
        )
    } else {
        (a.bootstrap.clone(), None, Vec::new())
    };
    let mut plan = ConsumePlan::new(bootstrap, a.topic.clone());
    plan.cpus = resolve_cpus(&spec, &allowed, &reserved).map_err(|e| e.to_string())?;
    plan.client_id = a.client_id.clone();
    plan.security = a.security.to_config().map_err(|e| e.to_string())?;
    plan.connect_timeout = a.connect_timeout;
    plan.request_timeout = a.request_timeout;
    plan.instance = a.instance;
    plan.instances = a.instances;
    plan.from = a.from;
    plan.fetch.min_bytes = int(a.fetch_min_bytes, "fetch-min-bytes")?;
    plan.fetch.max_wait = a.fetch_max_wait;
    plan.fetch.max_bytes = int(a.fetch_max_bytes, "fetch-max-bytes")?;
    plan.fetch.partition_max_bytes = int(a.max_partition_fetch_bytes, "max-partition-fetch-bytes")?;
    plan.fetch.isolation = match a.isolation {
        IsolationArg::ReadUncommitted => Isolation::ReadUncommitted,
        IsolationArg::ReadCommitted => Isolation::ReadCommitted,
    };
    plan.check_crcs = !a.no_check_crcs;
    plan.e2e_across_hosts = a.e2e_across_hosts;
    plan.check_sequences = a.check_sequences;
    plan.stop.count = a.count.map(|c| c as u64);
    plan.stop.duration = a.duration;
    plan.stop.until_end = a.until_end;
    let endless = plan.stop.count.is_none() && plan.stop.duration.is_none() && !a.until_end;
    if sink.is_some() && endless {
        plan.stop.duration = Some(Duration::from_secs(10));
    }
    Ok((plan, sink))
}

/// One second of a consume run, for people.
pub fn status_line(p: &ConsumeProgress) -> String {
    let secs = p.interval.as_secs_f64().max(1e-9);
    let e2e = if p.e2e.is_empty() {
        "e2e n/a".to_owned()
    } else {
        format!(
            "e2e p50 {} p99 {}",
            render::latency(p.e2e.value_at_quantile(0.5)),
            render::latency(p.e2e.value_at_quantile(0.99))
        )
    };
    format!(
        "consume {:>6.1}s  {:>12} records/s  {:>7.1} MB/s  lag {}  {e2e}",
        p.elapsed.as_secs_f64(),
        render::group((p.delta.records as f64 / secs) as u64),
        p.delta.bytes as f64 / secs / 1e6,
        render::group(p.totals.lag)
    )
}
