//! `datastorm sink`: a blackhole broker.

use crate::cli::codec::Codec;
use crate::exit;
use clap::Args;
use datastorm_engine::runtime::{allowed_cpus, resolve_cpus, CpuSpec, RuntimeError};
use datastorm_engine::sink::{
    SinkConfig, SinkError, SinkHandle, Stall, SyntheticConfig, SyntheticTopics, MAX_ACK_DELAY,
};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// CPUs to serve on, one pinned executor each (e.g. `1` or `2-3`).
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Partitions of a topic nobody created explicitly.
    #[arg(long, default_value_t = 8)]
    pub default_partitions: i32,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = crate::units::parse_duration)]
    pub duration: Option<Duration>,
    /// Send every Produce response this long after its request was read
    /// (e.g. `5ms`; at most 60s), to test a producer's latency measurement.
    /// Requests keep being read and served while responses wait, and
    /// responses still go out in request order; other APIs are answered at
    /// once.
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub delay: Option<Duration>,
    /// Acknowledge at most this many records per second in all (e.g. `100k`;
    /// split evenly between the --cpus executors), to test a producer's
    /// search for its max sustainable rate: a Produce response is held until
    /// its records fit a token bucket (10 ms of burst), and the hold is
    /// reported in the response's throttle_time_ms, like a Kafka quota.
    /// Records sent with acks=0 are not limited.
    #[arg(long, value_name = "RECORDS_PER_S", value_parser = crate::units::parse_count)]
    pub max_rate: Option<f64>,
    /// Hang for a while, to test a producer's request timeouts: starting
    /// AFTER after the sink starts, for FOR (e.g. `5s:10s`; FOR at most
    /// 10m), read nothing more from any connection and send no response of
    /// any API, keeping every connection open (new ones are accepted but get
    /// no answers); then resume and answer what was waiting, in order, like
    /// a frozen broker that was thawed.
    #[arg(long, value_name = "AFTER:FOR", value_parser = parse_stall)]
    pub stall: Option<Stall>,
    /// Bytes of produced batches each partition keeps in memory for
    /// consumers (e.g. `64MiB`; 0 keeps nothing). The oldest batches go
    /// first and the log start offset moves up; a fetch below it gets
    /// OFFSET_OUT_OF_RANGE.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::units::parse_bytes)]
    pub keep_per_partition: usize,
    /// Topics served synthetic batches to consumers, whatever is produced
    /// to them (comma-separated; `none` for no topic). Default: every topic
    /// nobody has produced to (or created with CreateTopics), so that a
    /// consumer's ceiling is measurable without a producer.
    #[arg(long, value_name = "LIST")]
    pub synthetic_topics: Option<String>,
    /// Value size of each synthetic record, in bytes.
    #[arg(long, value_name = "BYTES", default_value = "100", value_parser = crate::units::parse_bytes)]
    pub synthetic_record_size: usize,
    /// Records in each synthetic batch.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub synthetic_records_per_batch: i32,
    /// Codec of the synthetic batches.
    #[arg(long, value_name = "CODEC", value_enum, default_value_t = Codec::Lz4)]
    pub synthetic_compression: Codec,
}

/// What the sink serves consumers from partitions with no kept log.
fn synthetic(args: &SinkArgs) -> Result<SyntheticConfig, String> {
    let topics = match args.synthetic_topics.as_deref() {
        None => SyntheticTopics::Unproduced,
        Some("none") => SyntheticTopics::Only(Vec::new()),
        Some(list) => SyntheticTopics::Only(
            list.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
        ),
    };
    Ok(SyntheticConfig {
        topics,
        record_size: args.synthetic_record_size,
        records_per_batch: args.synthetic_records_per_batch,
        compression: args.synthetic_compression.with_level(None)?,
    })
}

const STALL_FORM: &str = "expected AFTER:FOR, two durations such as 5s:10s \
                          (stall 5s after the start, for 10s)";

/// A `--stall` the sink cannot take.
#[derive(Debug, thiserror::Error)]
enum StallFlagError {
    #[error("no ':' in '{0}': {STALL_FORM}")]
    NoColon(String),
    #[error("{half} in '{text}': {source}; {STALL_FORM}")]
    Half {
        half: &'static str,
        text: String,
        source: crate::units::UnitError,
    },
    /// The sink's own bounds on a stall (its words).
    #[error("{0}; {STALL_FORM}")]
    Bounds(String),
}

/// `AFTER:FOR`, each half a duration (`crate::units::parse_duration`).
fn parse_stall(s: &str) -> Result<Stall, StallFlagError> {
    let Some((after, lasting)) = s.split_once(':') else {
        return Err(StallFlagError::NoColon(s.into()));
    };
    let half = |half: &'static str, v: &str| {
        crate::units::parse_duration(v).map_err(|source| StallFlagError::Half {
            half,
            text: s.into(),
            source,
        })
    };
    let stall = Stall {
        after: half("AFTER", after)?,
        lasting: half("FOR", lasting)?,
    };
    stall.check().map_err(StallFlagError::Bounds)?;
    Ok(stall)
}

/// The CPU an embedded sink takes: the last allowed one, when there is
/// more than one (otherwise it shares the only one).
pub fn embedded_cpu(allowed: &[usize]) -> Option<usize> {
    (allowed.len() > 1).then(|| allowed[allowed.len() - 1])
}

/// Starts the sink of `config` embedded in this process, on 127.0.0.1 (a
/// port the kernel picks), pinned to `cpu` when there is one, and says so:
/// "no --bootstrap given: `doing` an embedded sink broker ...".
pub fn start_embedded(
    config: SinkConfig,
    cpu: Option<usize>,
    doing: &str,
) -> Result<SinkHandle, SinkError> {
    let h = SinkHandle::start(SinkConfig {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        cpus: cpu.into_iter().collect(),
        ..config
    })?;
    outln!(
        "datastorm: no --bootstrap given: {doing} an embedded sink broker on {} ({})",
        h.local_addr(),
        cpu.map_or("sharing the only CPU".into(), |c| format!(
            "pinned to CPU {c}"
        ))
    );
    Ok(h)
}

pub fn main(args: SinkArgs) -> u8 {
    let cpus = match cpus(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("datastorm sink: {e}");
            return exit::USAGE;
        }
    };
    if args.max_rate.is_some_and(|r| r < 1.0) {
        eprintln!("datastorm sink: --max-rate must be at least 1 record per second");
        return exit::USAGE;
    }
    if args.delay.is_some_and(|d| d > MAX_ACK_DELAY) {
        eprintln!(
            "datastorm sink: --delay must be at most {}s (a producer would time out anyway)",
            MAX_ACK_DELAY.as_secs()
        );
        return exit::USAGE;
    }
    let synthetic = match synthetic(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("datastorm sink: {e}");
            return exit::USAGE;
        }
    };
    let handle = match SinkHandle::start(SinkConfig {
        listen: args.listen,
        cpus: cpus.clone(),
        default_partitions: args.default_partitions,
        node_id: 0,
        ack_delay: args.delay.unwrap_or(Duration::ZERO),
        max_records_per_s: args.max_rate,
        stall: args.stall,
        keep_per_partition: args.keep_per_partition,
        synthetic,
    }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("datastorm sink: {e}");
            return exit::USAGE;
        }
    };
    outln!(
        "datastorm sink listening on {} ({}){}; Ctrl-C prints what it received",
        handle.local_addr(),
        if cpus.is_empty() {
            "unpinned".to_string()
        } else {
            format!("CPUs {cpus:?}")
        },
        pacing(&args, cpus.len().max(1))
    );
    let stop = super::stop_on_signals();
    let start = Instant::now();
    while !stop.load(Relaxed) && args.duration.is_none_or(|d| start.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = handle.stop();
    outln!("{}", crate::render::sink_summary(&stats, start.elapsed()));
    if stats.fetch_requests > 0 {
        outln!("{}", fetch_summary(&stats, start.elapsed()));
    }
    exit::OK
}

/// `--cpus` resolved against the allowed CPUs; none without it (unpinned).
fn cpus(args: &SinkArgs) -> Result<Vec<usize>, RuntimeError> {
    match args.cpus.as_deref() {
        None => Ok(Vec::new()),
        Some(list) => resolve_cpus(&list.parse::<CpuSpec>()?, &allowed_cpus(), &[]),
    }
}

/// How the sink holds back its answers (--delay, --max-rate, --stall), as
/// clauses for the line it starts with; empty when it does not.
fn pacing(args: &SinkArgs, executors: usize) -> String {
    let mut pacing = String::new();
    if let Some(d) = args.delay.filter(|d| !d.is_zero()) {
        pacing.push_str(&format!("; Produce responses delayed {d:?}"));
    }
    if let Some(r) = args.max_rate {
        pacing.push_str(&format!(
            "; at most {} records/s acknowledged",
            crate::render::group(r.round() as u64)
        ));
        if executors > 1 {
            pacing.push_str(&format!(
                " ({} per executor)",
                crate::render::group((r / executors as f64).round() as u64)
            ));
        }
    }
    if let Some(s) = args.stall {
        pacing.push_str(&format!(
            "; stalls (reads and answers nothing) {:?} after start, for {:?}",
            s.after, s.lasting
        ));
    }
    pacing
}

/// What consumers read from the sink.
fn fetch_summary(stats: &datastorm_engine::sink::SinkStats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "served {} fetch requests: {} records ({} records/s), {:.1} MB of batches ({:.1} MB/s)",
        crate::render::group(stats.fetch_requests),
        crate::render::group(stats.fetch_records),
        crate::render::group((stats.fetch_records as f64 / secs).round() as u64),
        stats.fetch_bytes as f64 / 1e6,
        stats.fetch_bytes as f64 / 1e6 / secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sink: SinkArgs,
    }

    fn parse(args: &[&str]) -> SinkArgs {
        let argv = std::iter::once("sink").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("flags parse").sink
    }

    #[test]
    fn read_side_flags_default_and_parse() {
        let args = parse(&[]);
        assert_eq!(args.keep_per_partition, 16 << 20);
        assert_eq!(synthetic(&args), Ok(SyntheticConfig::default()));
        let args = parse(&[
            "--keep-per-partition",
            "64MiB",
            "--synthetic-topics",
            "a, b",
            "--synthetic-record-size",
            "1k",
            "--synthetic-records-per-batch",
            "10",
            "--synthetic-compression",
            "zstd",
        ]);
        assert_eq!(args.keep_per_partition, 64 << 20);
        let s = synthetic(&args).expect("valid");
        assert_eq!(
            s.topics,
            SyntheticTopics::Only(vec!["a".into(), "b".into()])
        );
        assert_eq!((s.record_size, s.records_per_batch), (1024, 10));
        assert_eq!(s.compression.name(), "zstd");
        let none = synthetic(&parse(&["--synthetic-topics", "none"])).expect("valid");
        assert_eq!(none.topics, SyntheticTopics::Only(Vec::new()));
    }
}
