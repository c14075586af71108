//! The JSON report: configuration, environment, results. Versioned by
//! `schema` so later tools can read old reports.

use datastorm_engine::sink::SinkStats;
use datastorm_shards::plan::RunPlan;
use datastorm_shards::run::RunOutcome;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::path::Path;
use std::time::SystemTime;

pub const SCHEMA: &str = "datastorm.run/1";

fn percentiles(h: &Histogram<u64>) -> Value {
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

pub fn build(
    plan: &RunPlan,
    o: &RunOutcome,
    sink: Option<&SinkStats>,
    started_at: SystemTime,
) -> Value {
    let t = &o.totals;
    let el = o.elapsed.as_secs_f64().max(1e-9);
    json!({
        "schema": SCHEMA,
        "datastorm_version": env!("CARGO_PKG_VERSION"),
        "started_at_unix_ms": started_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        "config": plan,
        "environment": environment(o),
        "cluster": o.prepared,
        "results": {
            "elapsed_s": el,
            "records_acked": t.records_acked,
            "records_sent": t.records_sent,
            "records_failed": t.records_failed,
            "records_per_s": t.records_acked as f64 / el,
            "payload_bytes_acked": t.payload_bytes_acked,
            "payload_mb_per_s": t.payload_bytes_acked as f64 / el / 1e6,
            "record_bytes_acked": t.record_bytes_acked,
            "batch_bytes_sent": t.batch_bytes_sent,
            "batches_acked": t.batches_acked,
            "requests_acked": t.requests_acked,
            "errors": t.errors,
            "throttle_ms": t.throttle_ms,
            "latency": percentiles(&o.latency),
            "failure": o.failure,
            "interrupted": o.interrupted,
            "streams": plan.streams.iter().enumerate().map(|(i, st)| {
                let t = o.stream_totals(i);
                json!({
                    "name": st.name,
                    "topic": st.topic,
                    "records_acked": t.records_acked,
                    "records_failed": t.records_failed,
                    "records_per_s": t.records_acked as f64 / el,
                    "payload_bytes_acked": t.payload_bytes_acked,
                    "payload_mb_per_s": t.payload_bytes_acked as f64 / el / 1e6,
                    "errors": t.errors,
                    "latency": percentiles(&o.stream_latency(i)),
                })
            }).collect::<Vec<_>>(),
        },
        "shards": o.shards.iter().map(|r| json!({
            "index": r.index,
            "stream": r.stream,
            "cpu": r.cpu,
            "partitions": r.partitions,
            "brokers": r.brokers,
            "produce_version": r.produce_version,
            "counters": r.counters,
            "elapsed_s": r.elapsed.as_secs_f64(),
            "latency": percentiles(&r.latency),
            "errors": r.errors,
            "failure": r.failure,
        })).collect::<Vec<_>>(),
        "timeline": o.timeline,
        "sink": sink,
    })
}

fn environment(o: &RunOutcome) -> Value {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let cpu_model = read("/proc/cpuinfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    json!({
        "kernel": read("/proc/sys/kernel/osrelease"),
        "os": read("/proc/sys/kernel/ostype"),
        "hostname": read("/proc/sys/kernel/hostname"),
        "cpu_model": cpu_model,
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpus_used": o.shards.iter().map(|r| r.cpu).collect::<std::collections::BTreeSet<_>>(),
        "crates": {
            "datastorm": env!("CARGO_PKG_VERSION"),
            "kafka-protocol": "0.18",
            "glommio": "0.9",
            "lz4_flex": "0.14",
        },
        "produce_api_versions": o.shards.iter().filter_map(|r| r.produce_version).collect::<std::collections::BTreeSet<_>>(),
    })
}

pub fn write(path: &Path, doc: &Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(doc).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
