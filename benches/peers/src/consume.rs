//! `rdkafka-perf consume`: the librdkafka consumer peer of
//! `benches/peers/consume`.
//!
//! Assigns every partition of the topic at its beginning (no group
//! membership, no commits: pure fetch-path load, as DataStorm's static
//! assignment), reads exactly `--count` records, touches every record's
//! value (a byte sum, printed so that the work is not optimised away) and
//! prints one JSON object. CRCs are checked (`check.crcs=true`, off by
//! default in librdkafka, on in Kafka's Java client and DataStorm).
//!
//! Each partition's offsets are followed: a record whose offset is not the
//! partition's next expected one counts as a gap (the bench topic is fresh,
//! starts at offset 0 and is not compacted, so a faithful read has none).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const USAGE: &str = "\
usage: rdkafka-perf consume --bootstrap HOST:PORT --topic TOPIC --count N
                            [--timeout-s S] [--set KEY=VALUE]...

Reads N records from the beginning of every partition; prints one JSON object
(schema datastorm.peer/1) on stdout.";

/// A run fails when no record arrives for this long (default).
const IDLE_TIMEOUT_S: f64 = 60.0;
/// One poll waits at most this long, so the idle timeout is checked.
const POLL_WAIT: Duration = Duration::from_millis(100);

pub struct Args {
    bootstrap: String,
    topic: String,
    count: u64,
    idle_timeout_s: f64,
    extra: Vec<(String, String)>,
}

pub fn parse_args(argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        bootstrap: String::new(),
        topic: String::new(),
        count: 0,
        idle_timeout_s: IDLE_TIMEOUT_S,
        extra: Vec::new(),
    };
    let mut it = argv;
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
            "--count" => args.count = value.parse().map_err(|_| bad("a count"))?,
            "--timeout-s" => args.idle_timeout_s = value.parse().map_err(|_| bad("seconds"))?,
            "--set" => {
                let (k, v) = value.split_once('=').ok_or_else(|| bad("KEY=VALUE"))?;
                args.extra.push((k.to_string(), v.to_string()));
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if args.bootstrap.is_empty() || args.topic.is_empty() || args.count == 0 {
        return Err(format!(
            "--bootstrap, --topic and a positive --count are required\n{USAGE}"
        ));
    }
    Ok(args)
}

fn consumer(args: &Args) -> Result<BaseConsumer, String> {
    let mut config = ClientConfig::new();
    // librdkafka's assign() needs a group.id; nothing joins it (no
    // subscribe) and nothing is committed.
    let group = format!("rdkafka-perf-{}", std::process::id());
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "rdkafka-perf")
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("check.crcs", "true")
        // librdkafka 2.x postpones a partition's next fetch by this much
        // (default 1 s) whenever its fetch queue passed its thresholds;
        // reading a backlog as fast as it can, that left the consumer idle
        // most of the time (measured here: 0.44M records/s by default,
        // 1.49M/s with 0, at the same CPU per record). 0 is its best.
        .set("fetch.queue.backoff.ms", "0");
    for (k, v) in &args.extra {
        config.set(k, v);
    }
    let debug = args.extra.iter().any(|(k, _)| k == "debug");
    config.set_log_level(if debug {
        rdkafka::config::RDKafkaLogLevel::Debug
    } else {
        rdkafka::config::RDKafkaLogLevel::Warning
    });
    config
        .create()
        .map_err(|e| format!("cannot create the consumer: {e}"))
}

/// Assigns every partition of the topic at its beginning; returns how
/// many partitions there are.
fn assign_all(consumer: &BaseConsumer, topic: &str) -> Result<usize, String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| format!("metadata for topic '{topic}': {e}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        return Err(format!(
            "topic '{topic}' has no partitions (does it exist?)"
        ));
    }
    let mut list = TopicPartitionList::with_capacity(partitions);
    for p in 0..partitions as i32 {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| format!("partition {p}: {e}"))?;
    }
    consumer.assign(&list).map_err(|e| format!("assign: {e}"))?;
    Ok(partitions)
}

/// What one read covered.
#[derive(Default)]
struct Tally {
    records: u64,
    bytes: u64,
    byte_sum: u64,
    gaps: u64,
    first_record_s: Option<f64>,
}

/// Polls until `count` records are read. `next` holds each partition's
/// next expected offset.
fn read(
    consumer: &BaseConsumer,
    args: &Args,
    partitions: usize,
    start: Instant,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let mut next = vec![0i64; partitions];
    let mut last_record = Instant::now();
    while tally.records < args.count {
        let message = match consumer.poll(POLL_WAIT) {
            None => {
                if last_record.elapsed().as_secs_f64() > args.idle_timeout_s {
                    return Err(format!(
                        "no record for {} s after {} of {} records",
                        args.idle_timeout_s, tally.records, args.count
                    ));
                }
                continue;
            }
            Some(Err(e)) => {
                return Err(format!(
                    "consume error after {} records: {e}",
                    tally.records
                ))
            }
            Some(Ok(m)) => m,
        };
        last_record = Instant::now();
        tally
            .first_record_s
            .get_or_insert_with(|| start.elapsed().as_secs_f64());
        let value = message.payload().unwrap_or(&[]);
        // Touch every byte of the value: what an application reading it does.
        tally.byte_sum = tally
            .byte_sum
            .wrapping_add(value.iter().map(|&b| u64::from(b)).sum::<u64>());
        tally.bytes += value.len() as u64;
        tally.records += 1;
        let slot = next
            .get_mut(message.partition() as usize)
            .ok_or_else(|| format!("record from unknown partition {}", message.partition()))?;
        if message.offset() != *slot {
            tally.gaps += 1;
        }
        *slot = message.offset() + 1;
    }
    Ok(tally)
}

pub fn run(args: &Args) -> Result<serde_json::Value, String> {
    let consumer = consumer(args)?;
    let start = Instant::now();
    let partitions = assign_all(&consumer, &args.topic)?;
    let tally = read(&consumer, args, partitions, start)?;
    let elapsed_s = start.elapsed().as_secs_f64();
    let (_, version) = rdkafka::util::get_rdkafka_version();
    Ok(serde_json::json!({
        "schema": "datastorm.peer/1",
        "client": "librdkafka",
        "mode": "consume",
        "client_version": version,
        "config": {
            "bootstrap": args.bootstrap,
            "topic": args.topic,
            "count": args.count,
            "check_crcs": true,
            "extra": args.extra.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        },
        "results": {
            "partitions": partitions,
            "records_read": tally.records,
            "payload_bytes_read": tally.bytes,
            "offset_gaps": tally.gaps,
            "value_byte_sum": tally.byte_sum,
            "first_record_s": tally.first_record_s,
            "elapsed_s": elapsed_s,
            "records_per_s": tally.records as f64 / elapsed_s,
            "payload_mb_per_s": tally.bytes as f64 / elapsed_s / 1e6,
        },
    }))
}
