//! rdkafka-perf: the librdkafka peer of `benches/peers/run`.
//!
//! Sends records of a fixed size as fast as librdkafka takes them (or at a
//! fixed rate) for a number of records or seconds, waits for every delivery
//! report, and prints one JSON object: counts, msgs/s, MB/s (10^6 bytes of
//! value) and latency percentiles in microseconds from an HdrHistogram.
//!
//! Latency is measured from the record's send time (its intended send time
//! with `--rate`, as DataStorm does) to its delivery report, which librdkafka
//! serves from `poll` on this thread after the broker's ack.
//!
//! The producer is a `BaseProducer` polled from the sending loop, so the
//! process is this thread plus librdkafka's own internal threads (one per
//! broker, plus main and internal): the CPU budget is set from outside
//! (`taskset`).
//!
//! `rdkafka-perf consume ...` is the consumer peer instead (see `consume`).

mod consume;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;

const USAGE: &str = "\
usage: rdkafka-perf --bootstrap HOST:PORT --topic TOPIC (--count N | --seconds S)
                    [--record-size BYTES] [--payload-file FILE] [--rate MSGS_PER_S]
                    [--acks 0|1|all] [--compression none|lz4|...] [--batch-size BYTES]
                    [--linger-ms MS] [--max-in-flight N] [--idempotence true|false]
                    [--set KEY=VALUE]...

Prints one JSON object (schema datastorm.peer/1) on stdout.
`rdkafka-perf consume --help`: the consumer.";

/// Largest latency the histogram tracks: 10 minutes, in microseconds.
const MAX_LATENCY_US: u64 = 600_000_000;
/// Delivery reports are served every this many sends (and whenever the
/// local queue is full).
const POLL_EVERY: u64 = 256;
/// How long the end of a run waits for outstanding delivery reports.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

struct Args {
    bootstrap: String,
    topic: String,
    count: Option<u64>,
    seconds: Option<f64>,
    record_size: usize,
    payload_file: Option<String>,
    rate: Option<f64>,
    acks: String,
    compression: String,
    batch_size: u64,
    linger_ms: f64,
    max_in_flight: u32,
    idempotence: bool,
    extra: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bootstrap: String::new(),
        topic: String::new(),
        count: None,
        seconds: None,
        record_size: 100,
        payload_file: None,
        rate: None,
        acks: "1".into(),
        compression: "lz4".into(),
        batch_size: 65536,
        linger_ms: 5.0,
        max_in_flight: 5,
        idempotence: false,
        extra: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_string());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |what: &str| format!("{flag}: '{value}' is not {what}");
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = value,
            "--topic" => args.topic = value,
            "--count" => args.count = Some(value.parse().map_err(|_| bad("a count"))?),
            "--seconds" => args.seconds = Some(value.parse().map_err(|_| bad("seconds"))?),
            "--record-size" => args.record_size = value.parse().map_err(|_| bad("a size"))?,
            "--payload-file" => args.payload_file = Some(value),
            "--rate" => args.rate = Some(value.parse().map_err(|_| bad("a rate"))?),
            "--acks" => args.acks = value,
            "--compression" => args.compression = value,
            "--batch-size" => args.batch_size = value.parse().map_err(|_| bad("a size"))?,
            "--linger-ms" => args.linger_ms = value.parse().map_err(|_| bad("milliseconds"))?,
            "--max-in-flight" => args.max_in_flight = value.parse().map_err(|_| bad("a number"))?,
            "--idempotence" => args.idempotence = value.parse().map_err(|_| bad("true|false"))?,
            "--set" => {
                let (k, v) = value.split_once('=').ok_or_else(|| bad("KEY=VALUE"))?;
                args.extra.push((k.to_string(), v.to_string()));
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if args.bootstrap.is_empty() || args.topic.is_empty() {
        return Err(format!("--bootstrap and --topic are required\n{USAGE}"));
    }
    if args.count.is_none() && args.seconds.is_none() {
        return Err(format!("give --count or --seconds\n{USAGE}"));
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err("--rate must be a positive number".to_string());
    }
    Ok(args)
}

/// The values to send, cycled: the lines of `--payload-file`, or 1,000
/// values of printable random bytes (as DataStorm's `--payload-pool 1000`).
fn payloads(args: &Args) -> Result<Vec<Vec<u8>>, String> {
    if let Some(path) = &args.payload_file {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let lines: Vec<Vec<u8>> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if lines.is_empty() {
            return Err(format!("{path} holds no payload lines"));
        }
        return Ok(lines);
    }
    // xorshift64*: any fixed sequence of printable bytes will do.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    Ok((0..1000)
        .map(|_| {
            (0..args.record_size)
                .map(|_| b'!' + (next() % 94) as u8)
                .collect()
        })
        .collect())
}

/// Delivery reports: latency histogram and counts. Reports are served by
/// `poll` on the sending thread, so the mutex is never contended.
struct Context {
    start: Instant,
    histogram: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    failed: AtomicU64,
    acked_bytes: AtomicU64,
    last_ack_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Context {
    /// librdkafka's log lines (warnings, errors, `--set debug=...`) to stderr.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        eprintln!("rdkafka-perf: librdkafka {level:?} {fac}: {log_message}");
    }
}

impl ProducerContext for Context {
    /// The record's (intended) send time, in nanoseconds since `start`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now_ns = self.start.elapsed().as_nanos() as u64;
        match result {
            Ok(message) => {
                let micros = now_ns.saturating_sub(sent_ns as u64) / 1000;
                if let Ok(mut h) = self.histogram.lock() {
                    h.saturating_record(micros.max(1));
                }
                self.acked.fetch_add(1, Ordering::Relaxed);
                let bytes = message.payload_len() as u64;
                self.acked_bytes.fetch_add(bytes, Ordering::Relaxed);
                self.last_ack_ns.store(now_ns, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("consume") {
        return consume_main();
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("rdkafka-perf: {msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(report) => {
            println!("{report}");
            let failed = report["results"]["records_failed"].as_u64().unwrap_or(0);
            if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(msg) => {
            eprintln!("rdkafka-perf: {msg}");
            ExitCode::from(1)
        }
    }
}

/// `rdkafka-perf consume`: exit 1 unless exactly `--count` records were
/// read with no offset gap.
fn consume_main() -> ExitCode {
    let result = consume::parse_args(std::env::args().skip(2)).and_then(|a| consume::run(&a));
    match result {
        Ok(report) => {
            println!("{report}");
            if report["results"]["offset_gaps"].as_u64() == Some(0) {
                ExitCode::SUCCESS
            } else {
                eprintln!("rdkafka-perf: offsets skipped or repeated (offset_gaps > 0)");
                ExitCode::from(1)
            }
        }
        Err(msg) => {
            eprintln!("rdkafka-perf: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<serde_json::Value, String> {
    let values = payloads(args)?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "rdkafka-perf")
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("batch.size", args.batch_size.to_string())
        .set("linger.ms", args.linger_ms.to_string())
        .set(
            "max.in.flight.requests.per.connection",
            args.max_in_flight.to_string(),
        )
        .set("enable.idempotence", args.idempotence.to_string());
    for (k, v) in &args.extra {
        config.set(k, v);
    }
    // The crate takes its log level from the `log` crate, which this binary
    // does not set up: warnings by default, everything with `--set debug=...`.
    let debug = args.extra.iter().any(|(k, _)| k == "debug");
    config.set_log_level(if debug {
        rdkafka::config::RDKafkaLogLevel::Debug
    } else {
        rdkafka::config::RDKafkaLogLevel::Warning
    });
    let context = Context {
        start: Instant::now(),
        histogram: Mutex::new(
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| e.to_string())?,
        ),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        acked_bytes: AtomicU64::new(0),
        last_ack_ns: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: BaseProducer<Context> = config
        .create_with_context(context)
        .map_err(|e| format!("cannot create the producer: {e}"))?;
    // Connect and learn the topic's partitions before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(&args.topic), Duration::from_secs(30))
        .map_err(|e| format!("metadata for topic '{}': {e}", args.topic))?;

    let start = Instant::now();
    let start_ns = producer.context().start.elapsed().as_nanos() as u64;
    let deadline = args.seconds.map(|s| start + Duration::from_secs_f64(s));
    let count = args.count.unwrap_or(u64::MAX);
    let mut sent: u64 = 0;
    let mut queue_full: u64 = 0;
    let mut check_clock = 0u32;
    while sent < count {
        // Reading the clock costs about as much as a send: every 64 sends.
        check_clock += 1;
        if check_clock == 64 || args.rate.is_some() {
            check_clock = 0;
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if let Some(rate) = args.rate {
                let due = start + Duration::from_secs_f64(sent as f64 / rate);
                if now < due {
                    producer.poll((due - now).min(Duration::from_millis(1)));
                    continue;
                }
            }
        }
        let sent_ns = match args.rate {
            Some(rate) => start_ns + (sent as f64 * 1e9 / rate) as u64,
            None => producer.context().start.elapsed().as_nanos() as u64,
        };
        let value = &values[(sent % values.len() as u64) as usize];
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&args.topic, sent_ns as usize)
            .payload(value.as_slice());
        match producer.send(record) {
            Ok(()) => {
                sent += 1;
                if sent.is_multiple_of(POLL_EVERY) {
                    producer.poll(Duration::ZERO);
                }
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                queue_full += 1;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(format!("send failed: {e}")),
        }
    }
    let sending_s = start.elapsed().as_secs_f64();
    producer
        .flush(Timeout::After(FLUSH_TIMEOUT))
        .map_err(|e| format!("flush: {e}"))?;
    let ctx = producer.context();
    let acked = ctx.acked.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let acked_bytes = ctx.acked_bytes.load(Ordering::Relaxed);
    let elapsed_s = (ctx
        .last_ack_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns)) as f64
        / 1e9;
    let elapsed_s = elapsed_s.max(sending_s);
    let h = ctx
        .histogram
        .lock()
        .map_err(|_| "histogram lock poisoned")?;
    let q = |p: f64| h.value_at_quantile(p);
    let first_error = ctx.first_error.lock().ok().and_then(|e| e.clone());
    let (_, version) = rdkafka::util::get_rdkafka_version();
    Ok(serde_json::json!({
        "schema": "datastorm.peer/1",
        "client": "librdkafka",
        "client_version": version,
        "config": {
            "bootstrap": args.bootstrap,
            "topic": args.topic,
            "record_size": args.record_size,
            "payload_values": values.len(),
            "acks": args.acks,
            "compression": args.compression,
            "batch_size": args.batch_size,
            "linger_ms": args.linger_ms,
            "max_in_flight": args.max_in_flight,
            "idempotence": args.idempotence,
            "rate": args.rate,
            "count": args.count,
            "seconds": args.seconds,
        },
        "results": {
            "records_sent": sent,
            "records_acked": acked,
            "records_failed": failed,
            "payload_bytes_acked": acked_bytes,
            "sending_s": sending_s,
            "elapsed_s": elapsed_s,
            "records_per_s": acked as f64 / elapsed_s,
            "payload_mb_per_s": acked_bytes as f64 / elapsed_s / 1e6,
            "queue_full_waits": queue_full,
            "first_error": first_error,
            "latency": {
                "count": h.len(),
                "min": h.min(),
                "mean": h.mean(),
                "p50": q(0.50),
                "p90": q(0.90),
                "p99": q(0.99),
                "p99_9": q(0.999),
                "max": h.max(),
                "unit": "microseconds",
            },
        },
    }))
}
