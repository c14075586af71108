//! `datastorm report merge`: one report from the reports of the instances
//! of one run (`--instance I --instances N` on several machines).
//!
//! The merge is exact where the reports allow it: counters are summed,
//! latency and send-delay histograms are added and their percentiles read
//! again from the sum (never averaged), per-second timelines are aligned by
//! second and summed. Per-second percentiles cannot be added (the timeline
//! keeps no histograms), so a merged second shows the highest of the
//! instances' p50 and p99: an upper bound.

use super::Report;
use crate::render::{group, latency};
use crate::report::{decode_histogram, distribution, SCHEMA};
use clap::Args;
use datastorm_engine::metrics::latency_histogram;
use datastorm_engine::sleeps::Sleeps;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Args)]
pub struct MergeArgs {
    /// The instances' reports (two or more).
    #[arg(value_name = "REPORT", num_args = 2.., required = true)]
    pub reports: Vec<PathBuf>,
    /// Where to write the merged report.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
}

/// Counters in `results` and in each stream's results that add up.
const ADDITIVE: &[&str] = &[
    "records_acked",
    "records_sent",
    "records_failed",
    "payload_bytes_acked",
    "record_bytes_acked",
    "batch_bytes_sent",
    "batches_acked",
    "requests_sent",
    "requests_acked",
    "errors",
    "retries",
    "throttle_ms",
];

pub fn main(args: MergeArgs) -> Result<(), String> {
    let reports = args
        .reports
        .iter()
        .map(|p| Report::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let doc = merge(&reports)?;
    crate::report::write(&args.output, &doc)
        .map_err(|e| format!("could not write {}: {e}", args.output.display()))?;
    let res = &doc["results"];
    outln!(
        "merged {} reports (instances {} of {}): {} records acked = {} records/s, latency p99 {} max {}",
        reports.len(),
        doc["merge"]["instances"]
            .as_array()
            .map(|a| a.iter().map(Value::to_string).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        doc["config"]["instances"],
        group(res["records_acked"].as_u64().unwrap_or(0)),
        group(res["records_per_s"].as_f64().unwrap_or(0.0) as u64),
        latency(res["latency"]["p99"].as_u64().unwrap_or(0)),
        latency(res["latency"]["max"].as_u64().unwrap_or(0)),
    );
    outln!("merged report written to {}", args.output.display());
    Ok(())
}

/// The instances a report covers: its own, or those it was merged from.
fn instances_of(r: &Report) -> Vec<u64> {
    match r.doc["merge"]["instances"].as_array() {
        Some(list) => list.iter().filter_map(Value::as_u64).collect(),
        None => r.u64("/config/instance").into_iter().collect(),
    }
}

/// The instances' executor sleeps: totals added, each shard's counts kept
/// with its instance. Reports written before the counts existed add none.
fn merged_sleeps(ordered: &[&Report]) -> Value {
    let mut per_shard = Vec::new();
    let mut total = Sleeps::default();
    for r in ordered {
        let instance = instances_of(r).first().copied().unwrap_or(0);
        let shards = r.doc["results"]["executor_sleeps"]["per_shard"].as_array();
        for s in shards.into_iter().flatten() {
            let counts: Sleeps = serde_json::from_value(s.clone()).unwrap_or_default();
            total = total.plus(&counts);
            let mut s = s.clone();
            s["instance"] = json!(instance);
            per_shard.push(s);
        }
    }
    json!({
        "sleeps": total.sleeps,
        "ended_by_bound": total.ended_by_bound,
        "lost_wakeups": total.lost_wakeups,
        "per_shard": per_shard,
    })
}

/// The first place where two JSON values differ, as a path under `path`.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<(String, Value, Value)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some((path.to_owned(), a.clone(), b.clone())),
    }
}

/// Sum of histograms stored under `pointer` in each report.
fn added(reports: &[&Report], pointer: &str) -> Result<Histogram<u64>, String> {
    let mut sum = latency_histogram();
    for r in reports {
        let Some(text) = r.str(pointer) else {
            if r.u64(&pointer.replace("/histogram", "/count")).unwrap_or(0) == 0 {
                continue;
            }
            return Err(format!(
                "{} has no histogram at {pointer}: it cannot be merged exactly",
                r.path.display()
            ));
        };
        let h =
            decode_histogram(text).map_err(|e| format!("{} {pointer}: {e}", r.path.display()))?;
        sum.add(&h)
            .map_err(|e| format!("{} {pointer}: cannot add: {e:?}", r.path.display()))?;
    }
    Ok(sum)
}

fn sum_u64(values: impl Iterator<Item = Option<u64>>) -> u64 {
    values.flatten().sum()
}

/// Adds the counters of several results objects (run or stream results).
fn sum_counters(parts: &[&Value], out: &mut Map<String, Value>, elapsed: f64) {
    for k in ADDITIVE {
        if parts.iter().any(|p| p.get(*k).is_some()) {
            out.insert(
                (*k).into(),
                json!(sum_u64(parts.iter().map(|p| p[*k].as_u64()))),
            );
        }
    }
    let acked = out
        .get("records_acked")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let payload = out
        .get("payload_bytes_acked")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    out.insert("records_per_s".into(), json!(acked as f64 / elapsed));
    out.insert(
        "payload_mb_per_s".into(),
        json!(payload as f64 / elapsed / 1e6),
    );
}

/// Numbers added field by field (objects recursively), except
/// `partitions`, a size that every sink reports for itself.
fn sum_json(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Null, x) | (x, Value::Null) => x.clone(),
        (Value::Object(x), Value::Object(y)) => {
            let mut out = x.clone();
            for (k, v) in y {
                let merged = match x.get(k) {
                    Some(mine) if k == "partitions" => {
                        json!(mine.as_u64().max(v.as_u64()).unwrap_or(0))
                    }
                    Some(mine) => sum_json(mine, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_u64(), y.as_u64()) {
            (Some(p), Some(q)) => json!(p + q),
            _ => json!(x.as_f64().unwrap_or(0.0) + y.as_f64().unwrap_or(0.0)),
        },
        (x, _) => x.clone(),
    }
}

/// Per-second points of all instances, aligned by the second they end at.
fn merge_timelines(reports: &[&Report]) -> Vec<Value> {
    let mut by_second: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for r in reports {
        for p in r.doc["timeline"].as_array().into_iter().flatten() {
            let second = p["elapsed_s"].as_f64().unwrap_or(0.0).round() as i64;
            by_second.entry(second).or_default().push(p);
        }
    }
    by_second
        .into_iter()
        .map(|(second, points)| {
            let mut out = points[0].as_object().cloned().unwrap_or_default();
            let sum_f = |k: &str| points.iter().filter_map(|p| p[k].as_f64()).sum::<f64>();
            let sum_u = |k: &str| points.iter().filter_map(|p| p[k].as_u64()).sum::<u64>();
            let max_u = |k: &str| points.iter().filter_map(|p| p[k].as_u64()).max();
            out.insert("elapsed_s".into(), json!(second as f64));
            let warm = points.iter().any(|p| p["phase"] == "warmup");
            out.insert(
                "phase".into(),
                json!(if warm { "warmup" } else { "measure" }),
            );
            let targets: Vec<f64> = points
                .iter()
                .filter_map(|p| p["target_per_s"].as_f64())
                .collect();
            out.insert(
                "target_per_s".into(),
                if targets.is_empty() {
                    Value::Null
                } else {
                    json!(targets.iter().sum::<f64>())
                },
            );
            for k in ["records_acked", "requests_in_flight", "errors", "retries"] {
                out.insert(k.into(), json!(sum_u(k)));
            }
            for k in ["records_per_s", "payload_mb_per_s"] {
                out.insert(k.into(), json!(sum_f(k)));
            }
            for k in ["p50_us", "p99_us", "max_us", "send_delay_max_us"] {
                if let Some(v) = max_u(k) {
                    out.insert(k.into(), json!(v));
                }
            }
            let instances: u64 = points
                .iter()
                .map(|p| p["instances"].as_u64().unwrap_or(1))
                .sum();
            out.insert("instances".into(), json!(instances));
            Value::Object(out)
        })
        .collect()
}

pub fn merge(reports: &[Report]) -> Result<Value, String> {
    if let Some(r) = reports.iter().find(|r| r.is_v1()) {
        return Err(format!(
            "{} is a datastorm.run/1 report: it has no latency histograms, so it cannot be \
             merged exactly. Run the instances again with this datastorm to get {SCHEMA} reports",
            r.path.display()
        ));
    }
    // Same run: every config field but those that describe where an
    // instance ran (its index, its CPUs, the brokers it bootstrapped from)
    // must agree.
    let config = |r: &Report| {
        let mut c = r.doc["config"].clone();
        if let Some(m) = c.as_object_mut() {
            for machine_local in ["instance", "cpus", "bootstrap"] {
                m.remove(machine_local);
            }
        }
        c
    };
    let base = config(&reports[0]);
    for r in &reports[1..] {
        if let Some((path, a, b)) = first_difference(&base, &config(r), "config") {
            return Err(format!(
                "{} and {} differ in {path} ({a} vs {b}): only the reports of the instances of \
                 one run (the same flags but --instance) can be merged",
                reports[0].path.display(),
                r.path.display()
            ));
        }
    }
    let mut seen: BTreeMap<u64, &Report> = BTreeMap::new();
    for r in reports {
        for i in instances_of(r) {
            if let Some(other) = seen.insert(i, r) {
                return Err(format!(
                    "instance {i} is in both {} and {}: each instance's report can be merged once",
                    other.path.display(),
                    r.path.display()
                ));
            }
        }
    }
    let total = reports[0].u64("/config/instances").unwrap_or(1);
    let missing: Vec<String> = (0..total)
        .filter(|i| !seen.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "datastorm report merge: note: instance(s) {} of {total} are missing; the merged \
             figures cover only the reports given",
            missing.join(",")
        );
    }
    // In instance order, so the result does not depend on the argument order.
    let mut ordered: Vec<&Report> = reports.iter().collect();
    ordered.sort_by_key(|r| instances_of(r).first().copied().unwrap_or(0));
    let first = ordered[0];

    let elapsed = ordered
        .iter()
        .filter_map(|r| r.f64("/results/elapsed_s"))
        .fold(0.0, f64::max)
        .max(1e-9);
    let results: Vec<&Value> = ordered.iter().map(|r| &r.doc["results"]).collect();
    let mut res = Map::new();
    res.insert("elapsed_s".into(), json!(elapsed));
    res.insert(
        "warmup_s".into(),
        json!(ordered
            .iter()
            .filter_map(|r| r.f64("/results/warmup_s"))
            .fold(0.0, f64::max)),
    );
    sum_counters(&results, &mut res, elapsed);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for r in &results {
        for (k, v) in r["errors_by_kind"].as_object().into_iter().flatten() {
            *by_kind.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
    }
    res.insert("errors_by_kind".into(), json!(by_kind));
    res.insert(
        "latency".into(),
        distribution(&added(&ordered, "/results/latency/histogram")?),
    );
    res.insert(
        "send_delay".into(),
        distribution(&added(&ordered, "/results/send_delay/histogram")?),
    );
    // Each instance searches for the whole run's rate; the merged answer is
    // the lowest, the rate that every instance sustained.
    let search = ordered
        .iter()
        .filter_map(|r| r.get("/results/rate_search"))
        .min_by(|a, b| {
            let f = |v: &Value| v["found_per_s"].as_f64().unwrap_or(-1.0);
            f(a).total_cmp(&f(b))
        });
    res.insert("rate_search".into(), search.cloned().unwrap_or(Value::Null));
    let cpus: Vec<&Value> = ordered
        .iter()
        .filter_map(|r| r.get("/results/process_cpu"))
        .collect();
    res.insert(
        "process_cpu".into(),
        if cpus.is_empty() {
            Value::Null
        } else {
            let f = |k: &str| cpus.iter().filter_map(|c| c[k].as_f64()).sum::<f64>();
            json!({
                "user_s": f("user_s"),
                "system_s": f("system_s"),
                "wall_s": cpus.iter().filter_map(|c| c["wall_s"].as_f64()).fold(0.0, f64::max),
                "cores_busy": f("cores_busy"),
                "includes_embedded_sink": cpus.iter().any(|c| c["includes_embedded_sink"] == true),
            })
        },
    );
    res.insert(
        "failure".into(),
        ordered
            .iter()
            .find_map(|r| {
                r.str("/results/failure").map(|f| {
                    json!(format!(
                        "instance {}: {f}",
                        instances_of(r).first().copied().unwrap_or(0)
                    ))
                })
            })
            .unwrap_or(Value::Null),
    );
    res.insert(
        "interrupted".into(),
        json!(ordered
            .iter()
            .any(|r| r.get("/results/interrupted") == Some(&Value::Bool(true)))),
    );
    res.insert("executor_sleeps".into(), merged_sleeps(&ordered));
    let n_streams = first.doc["results"]["streams"]
        .as_array()
        .map_or(0, Vec::len);
    let mut streams = Vec::with_capacity(n_streams);
    for i in 0..n_streams {
        let parts: Vec<&Value> = ordered
            .iter()
            .map(|r| &r.doc["results"]["streams"][i])
            .collect();
        let mut st = Map::new();
        st.insert("name".into(), parts[0]["name"].clone());
        st.insert("topic".into(), parts[0]["topic"].clone());
        sum_counters(&parts, &mut st, elapsed);
        st.insert(
            "latency".into(),
            distribution(&added(
                &ordered,
                &format!("/results/streams/{i}/latency/histogram"),
            )?),
        );
        streams.push(Value::Object(st));
    }
    res.insert("streams".into(), json!(streams));

    let mut shards = Vec::new();
    for r in &ordered {
        let instance = instances_of(r).first().copied().unwrap_or(0);
        for s in r.doc["shards"].as_array().into_iter().flatten() {
            let mut s = s.clone();
            if s.get("instance").is_none() {
                s["instance"] = json!(instance);
            }
            shards.push(s);
        }
    }
    let sink = ordered
        .iter()
        .fold(Value::Null, |acc, r| sum_json(&acc, &r.doc["sink"]));
    let mut sources = Vec::new();
    for r in &ordered {
        match r.doc["merge"]["reports"].as_array() {
            Some(inner) => sources.extend(inner.iter().cloned()),
            None => sources.push(json!({
                "path": r.path.display().to_string(),
                "instance": r.doc["config"]["instance"],
                "started_at_unix_ms": r.doc["started_at_unix_ms"],
                "elapsed_s": r.doc["results"]["elapsed_s"],
                "records_acked": r.doc["results"]["records_acked"],
                "environment": r.doc["environment"],
            })),
        }
    }
    sources.sort_by_key(|s| s["instance"].as_u64());
    let mut config = first.doc["config"].clone();
    config["instance"] = Value::Null;
    Ok(json!({
        "schema": SCHEMA,
        "datastorm_version": env!("CARGO_PKG_VERSION"),
        "started_at_unix_ms": ordered.iter().filter_map(|r| r.u64("/started_at_unix_ms")).min(),
        "config": config,
        "environment": first.doc["environment"],
        "cluster": first.doc["cluster"],
        "results": res,
        "shards": shards,
        "timeline": merge_timelines(&ordered),
        "sink": sink,
        "merge": {
            "instances": seen.keys().collect::<Vec<_>>(),
            "reports": sources,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_named_by_path() {
        let a = json!({"acks": "Leader", "streams": [{"topic": "a"}]});
        let b = json!({"acks": "Leader", "streams": [{"topic": "b"}]});
        let (path, x, y) = first_difference(&a, &b, "config").unwrap();
        assert_eq!(path, "config.streams[0].topic");
        assert_eq!((x, y), (json!("a"), json!("b")));
        assert!(first_difference(&a, &a, "config").is_none());
    }

    #[test]
    fn sink_totals_add_but_partitions_do_not() {
        let a = json!({"records": 5, "topics": {"t": {"partitions": 8, "records": 5}}});
        let b = json!({"records": 7, "topics": {"t": {"partitions": 8, "records": 7}}});
        assert_eq!(
            sum_json(&a, &b),
            json!({"records": 12, "topics": {"t": {"partitions": 8, "records": 12}}})
        );
    }
}
