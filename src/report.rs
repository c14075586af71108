//! The JSON run report, `datastorm.run/2`: configuration, environment,
//! results with full latency histograms, per-second timeline.
//!
//! The layout is documented in docs/reports.md and pinned by the JSON Schema
//! in docs/report.schema.json. `schema` names the version so that
//! `datastorm report` (and anyone else) can read old reports. Histograms are
//! stored in HdrHistogram's compact encoding (V2, DEFLATE, base64): the one
//! HdrHistogram's own log files use, so other HdrHistogram tools decode them,
//! and so reports of several instances can be merged exactly.

use base64::Engine as _;
use datastorm_engine::metrics::latency_histogram;
use datastorm_engine::sink::SinkStats;
use datastorm_engine::sleeps::Sleeps;
use datastorm_shards::plan::RunPlan;
use datastorm_shards::run::RunOutcome;
use datastorm_shards::shard::ShardResult;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::SystemTime;

/// The version this build writes.
pub const SCHEMA: &str = "datastorm.run/2";
/// The previous version: no histograms, no environment details. Still read.
pub const SCHEMA_V1: &str = "datastorm.run/1";

/// Networking sysctls that change what a producer can push.
const SYSCTLS: &[&str] = &[
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.somaxconn",
    "net.core.netdev_max_backlog",
    "net.core.busy_poll",
    "net.core.busy_read",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_autocorking",
    "net.ipv4.tcp_notsent_lowat",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.ip_local_port_range",
];

/// Crates whose exact versions go into the report (from Cargo.lock at build time).
const CRATES: &[&str] = &[
    "glommio",
    "kafka-protocol",
    "lz4_flex",
    "hdrhistogram",
    "apache-avro",
    "crc32c",
];

/// A histogram in HdrHistogram's compact form: V2 encoding, DEFLATE, base64.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec only fails for histograms that cannot be
    // encoded at all (none that DataStorm makes).
    if V2DeflateSerializer::new().serialize(h, &mut bytes).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`encode_histogram`]; an empty string is an empty histogram.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    if text.is_empty() {
        return Ok(latency_histogram());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("the histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| format!("the histogram does not decode: {e:?}"))
}

/// Percentiles of a histogram (microseconds), without the histogram itself.
pub fn percentiles(h: &Histogram<u64>) -> Value {
    let q = |x: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(x)
        }
    };
    json!({
        "unit": "microseconds",
        "count": h.len(),
        "min": if h.is_empty() { 0 } else { h.min() },
        "mean": if h.is_empty() { 0.0 } else { h.mean() },
        "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99_9": q(0.999), "p99_99": q(0.9999),
        "max": if h.is_empty() { 0 } else { h.max() },
    })
}

/// Percentiles plus the full histogram, so that readers can draw the
/// percentile curve and merge reports exactly.
pub fn distribution(h: &Histogram<u64>) -> Value {
    let mut v = percentiles(h);
    v["histogram"] = Value::String(encode_histogram(h));
    v
}

pub fn build(
    plan: &RunPlan,
    o: &RunOutcome,
    sink: Option<&SinkStats>,
    started_at: SystemTime,
) -> Value {
    json!({
        "schema": SCHEMA,
        "datastorm_version": env!("CARGO_PKG_VERSION"),
        "started_at_unix_ms": started_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        "config": plan,
        "environment": environment(o),
        // The host's tuning (tuning/profiles settings and their live
        // values), so that two runs can be compared with their settings.
        "tuning": crate::tune::snapshot(),
        "cluster": o.prepared,
        "results": results(plan, o, sink.is_some(), started_at),
        "shards": o.shards.iter().map(|r| shard(plan, r)).collect::<Vec<_>>(),
        "timeline": o.timeline,
        "sink": sink,
    })
}

/// One shard's figures.
fn shard(plan: &RunPlan, r: &ShardResult) -> Value {
    json!({
            "instance": plan.instance,
            "index": r.index,
            "stream": r.stream,
            "cpu": r.cpu,
            "partitions": r.partitions,
            "brokers": r.brokers,
            "produce_version": r.produce_version,
            "counters": r.counters,
            "elapsed_s": r.elapsed.as_secs_f64(),
            "latency": percentiles(&r.latency),
            "send_delay": percentiles(&r.send_delay),
            "errors": r.errors,
            "failure": r.failure,
            "producer_id": r.producer_id,
            "stopped_partitions": r.stopped_partitions,
            // Per partition, the acknowledged sequence-header numbers as
            // half-open [start, end) ranges: `datastorm verify --report`
            // checks each one is in the topic.
            "acked_sequences": r.acked.iter().map(|(p, ranges)| (p.to_string(), ranges)).collect::<std::collections::BTreeMap<_, _>>(),
    })
}

/// The run's figures after the warm-up.
fn results(plan: &RunPlan, o: &RunOutcome, with_sink: bool, started_at: SystemTime) -> Value {
    let t = &o.totals;
    let el = o.elapsed.as_secs_f64().max(1e-9);
    json!({
        "elapsed_s": el,
        "warmup_s": o.warmup.as_secs_f64(),
        "records_acked": t.records_acked,
        "records_sent": t.records_sent,
        "records_failed": t.records_failed,
        "records_per_s": t.records_acked as f64 / el,
        "payload_bytes_acked": t.payload_bytes_acked,
        "payload_mb_per_s": t.payload_bytes_acked as f64 / el / 1e6,
        "record_bytes_acked": t.record_bytes_acked,
        "batch_bytes_sent": t.batch_bytes_sent,
        "batches_acked": t.batches_acked,
        "requests_sent": t.requests_sent,
        "requests_acked": t.requests_acked,
        "errors": t.errors,
        "errors_by_kind": o.errors,
        "retries": t.retries,
        "throttle_ms": t.throttle_ms,
        "latency": distribution(&o.latency),
        "send_delay": distribution(&o.send_delay),
        "rate_search": o.rate_search,
        "process_cpu": process_cpu(started_at, with_sink, t.records_acked),
        "compression": compression(plan, t.record_bytes_acked, t.batch_bytes_sent),
        "failure": o.failure,
        "interrupted": o.interrupted,
        "executor_sleeps": executor_sleeps(plan, o),
        "streams": (0..plan.streams.len()).map(|i| stream_results(plan, o, i, el)).collect::<Vec<_>>(),
    })
}

/// How the shards' executors slept: totals, and per shard (its CPU, its
/// sleeps, those ended by the bound, and the lost wake-ups among them).
fn executor_sleeps(plan: &RunPlan, o: &RunOutcome) -> Value {
    let total = o
        .executor_sleeps
        .iter()
        .fold(Sleeps::default(), |a, s| a.plus(s));
    let per_shard: Vec<Value> = o
        .executor_sleeps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "shard": i,
                "cpu": plan.cpus.get(i),
                "sleeps": s.sleeps,
                "ended_by_bound": s.ended_by_bound,
                "lost_wakeups": s.lost_wakeups,
            })
        })
        .collect();
    json!({
        "sleeps": total.sleeps,
        "ended_by_bound": total.ended_by_bound,
        "lost_wakeups": total.lost_wakeups,
        "per_shard": per_shard,
    })
}

/// One stream's figures, summed over its shards.
fn stream_results(plan: &RunPlan, o: &RunOutcome, i: usize, el: f64) -> Value {
    let st = &plan.streams[i];
    let t = o.stream_totals(i);
    json!({
        "name": st.name,
        "topic": st.topic,
        "records_acked": t.records_acked,
        "records_sent": t.records_sent,
        "records_failed": t.records_failed,
        "records_per_s": t.records_acked as f64 / el,
        "payload_bytes_acked": t.payload_bytes_acked,
        "payload_mb_per_s": t.payload_bytes_acked as f64 / el / 1e6,
        "errors": t.errors,
        "retries": t.retries,
        "latency": distribution(&o.stream_latency(i)),
    })
}

/// The codec, its level (null for codecs without levels) and the ratio of
/// uncompressed record bytes to batch bytes on the wire (null before any).
fn compression(plan: &RunPlan, record_bytes: u64, batch_bytes: u64) -> Value {
    json!({
        "codec": plan.compression.name(),
        "level": plan.compression.level(),
        "ratio": (batch_bytes > 0).then(|| record_bytes as f64 / batch_bytes as f64),
    })
}

/// CPU time this process used, which is the client's unless an embedded
/// sink broker ran in it too; per million acked records, the cost of the
/// codec (and everything else) in CPU seconds.
fn process_cpu(started_at: SystemTime, includes_sink: bool, records: u64) -> Value {
    // SAFETY: getrusage writes into the zeroed struct we pass it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Value::Null;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (user, system) = (secs(ru.ru_utime), secs(ru.ru_stime));
    let wall = started_at.elapsed().map_or(0.0, |d| d.as_secs_f64());
    json!({
        "user_s": user,
        "system_s": system,
        "wall_s": wall,
        "cores_busy": if wall > 0.0 { (user + system) / wall } else { 0.0 },
        "cpu_s_per_million_records": (records > 0).then(|| (user + system) / (records as f64 / 1e6)),
        "includes_embedded_sink": includes_sink,
    })
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn environment(o: &RunOutcome) -> Value {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    let cpus_used: std::collections::BTreeSet<usize> = o.shards.iter().map(|r| r.cpu).collect();
    let sysctl: Map<String, Value> = SYSCTLS
        .iter()
        .map(|name| {
            let path = format!("/proc/sys/{}", name.replace('.', "/"));
            (name.to_string(), json!(read_trimmed(&path)))
        })
        .collect();
    // "always [madvise] never": the bracketed word is the setting.
    let thp = |file: &str| {
        read_trimmed(&format!("/sys/kernel/mm/transparent_hugepage/{file}")).map(|s| {
            s.split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(['[', ']']).to_owned())
                .unwrap_or(s)
        })
    };
    let mut crates = Map::new();
    crates.insert("datastorm".into(), json!(env!("CARGO_PKG_VERSION")));
    for (name, version) in locked_versions() {
        crates.insert(name.into(), json!(version));
    }
    json!({
        "kernel": read_trimmed("/proc/sys/kernel/osrelease"),
        "os": read_trimmed("/proc/sys/kernel/ostype"),
        "hostname": read_trimmed("/proc/sys/kernel/hostname"),
        "cpu_model": cpu_model,
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpus_used": cpus_used,
        "cores_used": cpus_used.len(),
        "sysctl": sysctl,
        "memlock_limit": memlock(),
        "transparent_hugepage": { "enabled": thp("enabled"), "defrag": thp("defrag") },
        "crates": crates,
        "produce_api_versions_used": o.shards.iter().filter_map(|r| r.produce_version).collect::<std::collections::BTreeSet<_>>(),
    })
}

/// RLIMIT_MEMLOCK in bytes ("unlimited" for no limit): io_uring needs some.
fn memlock() -> Value {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass it.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Value::Null;
    }
    let v = |x: libc::rlim_t| {
        if x == libc::RLIM_INFINITY {
            json!("unlimited")
        } else {
            json!(x)
        }
    };
    json!({ "soft_bytes": v(lim.rlim_cur), "hard_bytes": v(lim.rlim_max) })
}

/// Exact versions of [`CRATES`] from the Cargo.lock this binary was built with.
fn locked_versions() -> Vec<(&'static str, String)> {
    const LOCK: &str = include_str!("../Cargo.lock");
    let mut out = Vec::new();
    let mut name = None;
    for line in LOCK.lines() {
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = line.strip_prefix("name = ") {
            name = CRATES.iter().find(|c| n.trim_matches('"') == **c).copied();
        } else if let (Some(n), Some(v)) = (name, line.strip_prefix("version = ")) {
            out.push((n, v.trim_matches('"').to_owned()));
            name = None;
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

pub fn write(path: &Path, doc: &Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(doc).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Reads a report, refusing files that are not DataStorm run reports of a
/// version this build understands.
pub fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read {}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not JSON ({e}): not a DataStorm run report",
            path.display()
        )
    })?;
    match doc.get("schema").and_then(Value::as_str) {
        Some(SCHEMA | SCHEMA_V1) => Ok(doc),
        Some(other) => Err(format!(
            "{} is a '{other}' report; this datastorm {} reads {SCHEMA} and {SCHEMA_V1} \
             reports. A report from a newer DataStorm needs that version's `datastorm report`.",
            path.display(),
            env!("CARGO_PKG_VERSION"),
        )),
        None => Err(format!(
            "{} has no \"schema\" field: not a DataStorm run report \
             (those start with \"schema\": \"{SCHEMA}\")",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_encoding() {
        let mut h = latency_histogram();
        for v in [1u64, 5, 900, 12_345, 3_000_000] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        let text = encode_histogram(&h);
        assert!(text.starts_with("HISTF"), "{text}");
        let back = decode_histogram(&text).unwrap();
        assert_eq!(back, h);
        assert!(decode_histogram("").unwrap().is_empty());
        assert!(decode_histogram("not base64!").is_err());
    }

    #[test]
    fn locked_versions_are_found() {
        let v = locked_versions();
        assert!(v.iter().any(|(n, _)| *n == "glommio"), "{v:?}");
        assert!(v.iter().all(|(_, ver)| ver.contains('.')), "{v:?}");
    }
}
