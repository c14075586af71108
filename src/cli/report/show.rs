//! `datastorm report show`: a report as the end-of-run summary.

use super::{acks_label, payload_label, rate_label, short_duration, utc, Report};
use crate::render::{group, latency};
use clap::Args;
use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct ShowArgs {
    /// The report (`produce --report FILE`, or `report merge`).
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
}

pub fn main(args: ShowArgs) -> Result<(), String> {
    let r = Report::load(&args.report)?;
    outln!("{}", summary(&r));
    Ok(())
}

/// Latency percentiles of a distribution object, as the summary prints them.
fn latency_line(d: &Value, keys: &[(&str, &str)]) -> String {
    keys.iter()
        .map(|(k, label)| format!("{label} {}", latency(d[*k].as_u64().unwrap_or(0))))
        .collect::<Vec<_>>()
        .join("  ")
}

pub fn summary(r: &Report) -> String {
    let d = &r.doc;
    let c = &d["config"];
    let res = &d["results"];
    let el = r.f64("/results/elapsed_s").unwrap_or(0.0).max(1e-9);
    let mut s = String::new();

    let _ = writeln!(
        s,
        "DataStorm run report {} ({}, datastorm {}{})",
        r.name(),
        d["schema"].as_str().unwrap_or("?"),
        d["datastorm_version"].as_str().unwrap_or("?"),
        r.u64("/started_at_unix_ms")
            .map(|ms| format!(", started {}", utc(ms)))
            .unwrap_or_default()
    );
    let topics: Vec<String> = d["cluster"]["topics"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    format!(
                        "topic '{}' ({} partitions{})",
                        t["topic"].as_str().unwrap_or("?"),
                        t["partitions"].as_array().map_or(0, Vec::len),
                        if t["created"] == true {
                            ", created"
                        } else {
                            ""
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let shards = d["shards"].as_array().map_or(0, Vec::len);
    let instances = match d["merge"]["instances"].as_array() {
        Some(list) => format!(
            "; merged from instances {} of {}",
            list.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(","),
            c["instances"]
        ),
        None if c["instances"].as_u64().unwrap_or(1) > 1 => {
            format!("; instance {} of {}", c["instance"], c["instances"])
        }
        None => String::new(),
    };
    let what = if topics.len() == 1 {
        topics[0].clone()
    } else {
        format!("{} streams", topics.len())
    };
    let _ = writeln!(s, "  run             {what}, {shards} shard(s){instances}");
    let linger = super::duration(&c["linger"]);
    let _ = writeln!(
        s,
        "  settings        acks={} compression={} batch-size={} linger={} max-in-flight={} rate={}{}",
        acks_label(&c["acks"]),
        c["compression"].as_str().unwrap_or("?"),
        c["batch_size"],
        linger.map(short_duration).unwrap_or_else(|| "?".into()),
        c["max_in_flight"],
        rate_label(&c["rate"]),
        match c["streams"].as_array() {
            Some(st) if st.len() == 1 => format!(" payload={}", payload_label(&st[0]["payload"])),
            _ => String::new(),
        }
    );
    let env = &d["environment"];
    let _ = writeln!(
        s,
        "  host            {} (kernel {}), {} logical CPUs{}, CPUs used {}",
        env["hostname"].as_str().unwrap_or("?"),
        env["kernel"].as_str().unwrap_or("?"),
        env["logical_cpus"],
        env["cpu_model"]
            .as_str()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default(),
        env["cpus_used"]
            .as_array()
            .map(|a| a.iter().map(Value::to_string).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    );

    if let Some(streams) = res["streams"].as_array().filter(|s| s.len() > 1) {
        let width = streams
            .iter()
            .map(|st| st["name"].as_str().map_or(0, str::len))
            .max()
            .unwrap_or(0);
        for st in streams {
            let acked = st["records_acked"].as_u64().unwrap_or(0);
            let p99 = st["latency"]["p99"].as_u64().unwrap_or(0);
            let _ = writeln!(
                s,
                "  stream {:<width$} topic '{}': {} records = {} records/s, {:.1} MB/s{}",
                st["name"].as_str().unwrap_or("?"),
                st["topic"].as_str().unwrap_or("?"),
                group(acked),
                group((acked as f64 / el) as u64),
                st["payload_bytes_acked"].as_u64().unwrap_or(0) as f64 / 1e6 / el,
                if st["latency"]["count"].as_u64().unwrap_or(0) > 0 {
                    format!(", p99 {}", latency(p99))
                } else {
                    String::new()
                },
            );
        }
    }

    let acked = r.u64("/results/records_acked").unwrap_or(0);
    let _ = writeln!(
        s,
        "  records acked   {:>14}  in {:.2} s  = {} records/s",
        group(acked),
        el,
        group((acked as f64 / el) as u64)
    );
    let payload = r.u64("/results/payload_bytes_acked").unwrap_or(0) as f64;
    let _ = writeln!(
        s,
        "  payload         {:>14.1} MB       = {:.1} MB/s (key+value bytes; MB = 10^6 bytes)",
        payload / 1e6,
        payload / 1e6 / el
    );
    let batch = r.u64("/results/batch_bytes_sent").unwrap_or(0) as f64;
    let records = r.u64("/results/record_bytes_acked").unwrap_or(0) as f64;
    let _ = writeln!(
        s,
        "  on the wire     {:>14.1} MB sent  (batches/records ratio {:.2})",
        batch / 1e6,
        if records > 0.0 { batch / records } else { 0.0 }
    );
    let requests = r.u64("/results/requests_acked").unwrap_or(0);
    let _ = writeln!(
        s,
        "  requests        {:>14}  ({:.0} records/request, {} batches)",
        group(requests),
        acked as f64 / requests.max(1) as f64,
        group(r.u64("/results/batches_acked").unwrap_or(0))
    );
    if let Some(w) = r.f64("/results/warmup_s").filter(|w| *w > 0.0) {
        let _ = writeln!(
            s,
            "  warm-up         {}s before these figures, left out of them",
            super::trim_float(w, 3)
        );
    }
    let lat = &res["latency"];
    if lat["count"].as_u64().unwrap_or(0) == 0 {
        let _ = writeln!(
            s,
            "  latency         n/a{}",
            if c["acks"] == "None" {
                " (acks=0: brokers send no acknowledgements)"
            } else {
                " (nothing acknowledged)"
            }
        );
    } else {
        let _ = writeln!(
            s,
            "  latency         {}",
            latency_line(
                lat,
                &[
                    ("p50", "p50"),
                    ("p90", "p90"),
                    ("p99", "p99"),
                    ("p99_9", "p99.9"),
                    ("p99_99", "p99.99"),
                    ("max", "max")
                ]
            )
        );
    }
    let delay = &res["send_delay"];
    if delay["count"].as_u64().unwrap_or(0) > 0 {
        let _ = writeln!(
            s,
            "  send delay      {}  (intended send time to generation)",
            latency_line(
                delay,
                &[
                    ("p50", "p50"),
                    ("p99", "p99"),
                    ("p99_9", "p99.9"),
                    ("max", "max")
                ]
            )
        );
    }
    if let Some(rs) = r.get("/results/rate_search") {
        let steps: Vec<String> = rs["steps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|st| {
                        format!(
                            "{}{}",
                            group(st["target_per_s"].as_f64().unwrap_or(0.0) as u64),
                            if st["sustained"] == true { "" } else { "x" }
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  rate max        {}{}  (tried: {}; x = not sustained)",
            match rs["found_per_s"].as_f64() {
                Some(f) => format!("{} records/s sustained", group(f as u64)),
                None => "no rate tried was sustained".into(),
            },
            if rs["converged"] == true {
                ""
            } else {
                ", search not converged"
            },
            steps.join(", ")
        );
    }
    let by_kind = res["errors_by_kind"]
        .as_object()
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        });
    let errors = r.u64("/results/errors").unwrap_or(0);
    let _ = writeln!(
        s,
        "  errors          {}",
        match (by_kind, errors) {
            (Some(k), _) => k,
            (None, 0) => "none".into(),
            (None, n) => group(n),
        }
    );
    if let Some(n) = r.u64("/results/retries").filter(|n| *n > 0) {
        let _ = writeln!(s, "  retried         {:>14} batches", group(n));
    }
    if let Some(n) = r
        .u64("/results/executor_sleeps/lost_wakeups")
        .filter(|n| *n > 0)
    {
        let _ = writeln!(s, "{}", crate::render::lost_wakeups_line(n));
    }
    if let Some(n) = r.u64("/results/throttle_ms").filter(|n| *n > 0) {
        let _ = writeln!(
            s,
            "  throttled       {:>14} ms (sum of broker throttle times)",
            group(n)
        );
    }
    if let Some(n) = r.u64("/results/records_failed").filter(|n| *n > 0) {
        let _ = writeln!(s, "  records failed  {:>14}", group(n));
    }
    if let Some(cpu) = r.get("/results/process_cpu") {
        let _ = writeln!(
            s,
            "  process CPU     {:.2} s user + {:.2} s system = {:.2} cores busy{}",
            cpu["user_s"].as_f64().unwrap_or(0.0),
            cpu["system_s"].as_f64().unwrap_or(0.0),
            cpu["cores_busy"].as_f64().unwrap_or(0.0),
            if cpu["includes_embedded_sink"] == true {
                " (with the embedded sink)"
            } else {
                ""
            }
        );
    }
    if let Some(tl) = d["timeline"].as_array().filter(|t| !t.is_empty()) {
        let measured: Vec<f64> = tl
            .iter()
            .filter(|p| p["phase"] != "warmup")
            .filter_map(|p| p["records_per_s"].as_f64())
            .collect();
        if !measured.is_empty() {
            let min = measured.iter().copied().fold(f64::INFINITY, f64::min);
            let max = measured.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(
                s,
                "  timeline        {} per-second points; acked from {} to {} records/s",
                tl.len(),
                group(min as u64),
                group(max as u64)
            );
        }
    }
    if let Some(f) = r.str("/results/failure") {
        let _ = writeln!(s, "  failed          {f}");
    }
    if r.get("/results/interrupted") == Some(&Value::Bool(true)) {
        let _ = writeln!(s, "  stopped early by a signal");
    }
    if let Some(sink) = r.get("/sink") {
        let _ = writeln!(
            s,
            "  sink received   {} records in {} batches; CRC errors {}, decode errors {}",
            group(sink["records"].as_u64().unwrap_or(0)),
            group(sink["batches"].as_u64().unwrap_or(0)),
            sink["crc_errors"],
            sink["decode_errors"],
        );
    }
    if r.is_v1() {
        let _ = writeln!(
            s,
            "  (a datastorm.run/1 report: it has no histograms, send delay or environment details)"
        );
    }
    s
}
