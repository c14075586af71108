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
use crate::report::*;
use anyhow::{anyhow, bail};
use clap::Args;
use datastorm_engine::metrics::latency_histogram;
use serde_json::Value;
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

pub fn main(args: MergeArgs) -> anyhow::Result<()> {
    let reports = args
        .reports
        .iter()
        .map(|p| Report::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let doc = merge(&reports)?;
    crate::report::write(&args.output, &doc)?;
    let res = &doc.results;
    outln!(
        "merged {} reports (instances {} of {}): {} records acked = {} records/s, latency p99 {} max {}",
        reports.len(),
        doc.merge
            .as_ref()
            .map(|m| m.instances.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        doc.config.instances,
        group(res.totals.records_acked),
        group(res.totals.records_per_s as u64),
        latency(res.latency.percentiles.p99),
        latency(res.latency.percentiles.max),
    );
    outln!("merged report written to {}", args.output.display());
    Ok(())
}

/// The instances a report covers: its own, or those it was merged from.
fn instances_of(r: &Report) -> Vec<u32> {
    match &r.doc.merge {
        Some(m) => m.instances.iter().copied().collect(),
        None => r.doc.config.instance.into_iter().collect(),
    }
}

/// The first instance a report covers (0 when it names none).
fn first_instance(r: &Report) -> u32 {
    instances_of(r).first().copied().unwrap_or(0)
}

/// The instances' executor sleeps: totals added, each shard's counts kept
/// with its instance. Reports written before the counts existed add none.
fn merged_sleeps(ordered: &[&Report]) -> ExecutorSleeps {
    let mut out = ExecutorSleeps::default();
    for r in ordered {
        let Some(sleeps) = &r.doc.results.executor_sleeps else {
            continue;
        };
        for s in &sleeps.per_shard {
            out.counts = out.counts.plus(&s.counts);
            out.per_shard.push(ShardSleeps {
                instance: Some(first_instance(r)),
                ..s.clone()
            });
        }
    }
    out
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

/// Sum of the histograms of one distribution (`pick`, named `what`) of each report.
fn added(
    reports: &[&Report],
    what: &str,
    pick: impl Fn(&RunReport) -> Option<&Distribution>,
) -> anyhow::Result<Distribution> {
    let mut sum = latency_histogram();
    for r in reports {
        let Some(d) = pick(&r.doc) else { continue };
        let path = r.path.display();
        d.add_into(&mut sum).map_err(|e| match e {
            AddError::NoHistogram => {
                anyhow!("{path} has no histogram of {what}: it cannot be merged exactly")
            }
            AddError::Decode(e) => anyhow::Error::from(e).context(format!("{path} {what}")),
            AddError::Add(e) => anyhow!("{path} {what}: cannot add: {e}"),
        })?;
    }
    Ok(distribution(&sum))
}

/// Totals added, their rates taken again over `elapsed` seconds.
fn sum_totals<'a>(parts: impl Iterator<Item = &'a Totals>, elapsed: f64) -> Totals {
    let mut t = parts.fold(Totals::default(), |a, b| Totals {
        records_acked: a.records_acked + b.records_acked,
        records_sent: a.records_sent + b.records_sent,
        records_failed: a.records_failed + b.records_failed,
        payload_bytes_acked: a.payload_bytes_acked + b.payload_bytes_acked,
        errors: a.errors + b.errors,
        retries: a.retries + b.retries,
        ..a
    });
    t.records_per_s = t.records_acked as f64 / elapsed;
    t.payload_mb_per_s = t.payload_bytes_acked as f64 / elapsed / 1e6;
    t
}

/// What the instances' sinks received, added; `partitions` is a size that
/// every sink reports for itself, so the largest is kept.
fn sum_sinks<'a>(sinks: impl Iterator<Item = &'a Sink>) -> Option<Sink> {
    let add_maps = |a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
        for (k, v) in b {
            *a.entry(k.clone()).or_default() += v;
        }
    };
    sinks.fold(None, |acc: Option<Sink>, b| {
        let Some(mut a) = acc else {
            return Some(b.clone());
        };
        a.connections += b.connections;
        a.requests += b.requests;
        a.produce_requests += b.produce_requests;
        a.batches += b.batches;
        a.records += b.records;
        a.batch_bytes += b.batch_bytes;
        a.record_bytes += b.record_bytes;
        add_maps(&mut a.batches_by_codec, &b.batches_by_codec);
        a.crc_errors += b.crc_errors;
        a.decode_errors += b.decode_errors;
        a.malformed_batches += b.malformed_batches;
        a.unknown_partitions += b.unknown_partitions;
        for (name, t) in &b.topics {
            let mine = a.topics.entry(name.clone()).or_default();
            mine.partitions = mine.partitions.max(t.partitions);
            mine.batches += t.batches;
            mine.records += t.records;
            mine.batch_bytes += t.batch_bytes;
        }
        Some(a)
    })
}

/// Per-second points of all instances, aligned by the second they end at.
fn merge_timelines(reports: &[&Report]) -> Vec<TimelinePoint> {
    let mut by_second: BTreeMap<i64, Vec<&TimelinePoint>> = BTreeMap::new();
    for r in reports {
        for p in &r.doc.timeline {
            by_second
                .entry(p.elapsed_s.round() as i64)
                .or_default()
                .push(p);
        }
    }
    by_second
        .into_iter()
        .map(|(second, points)| {
            let sum_u = |f: fn(&TimelinePoint) -> u64| points.iter().map(|p| f(p)).sum::<u64>();
            let sum_f = |f: fn(&TimelinePoint) -> f64| points.iter().map(|p| f(p)).sum::<f64>();
            let max_u =
                |f: fn(&TimelinePoint) -> u64| points.iter().map(|p| f(p)).max().unwrap_or(0);
            let targets: Vec<f64> = points.iter().filter_map(|p| p.target_per_s).collect();
            TimelinePoint {
                elapsed_s: second as f64,
                phase: if points.iter().any(|p| p.phase == Phase::Warmup) {
                    Phase::Warmup
                } else {
                    Phase::Measure
                },
                target_per_s: (!targets.is_empty()).then(|| targets.iter().sum()),
                records_acked: sum_u(|p| p.records_acked),
                records_per_s: sum_f(|p| p.records_per_s),
                payload_mb_per_s: sum_f(|p| p.payload_mb_per_s),
                requests_in_flight: sum_u(|p| p.requests_in_flight),
                errors: sum_u(|p| p.errors),
                retries: sum_u(|p| p.retries),
                p50_us: max_u(|p| p.p50_us),
                p99_us: max_u(|p| p.p99_us),
                max_us: max_u(|p| p.max_us),
                send_delay_max_us: max_u(|p| p.send_delay_max_us),
                instances: Some(points.iter().map(|p| p.instances.unwrap_or(1)).sum()),
            }
        })
        .collect()
}

/// Refuses reports that are not the instances of one run, each once;
/// returns the instances seen. Same run: every config field but those that
/// describe where an instance ran (its index, its CPUs, the brokers it
/// bootstrapped from) must agree.
fn check_same_run(reports: &[Report]) -> anyhow::Result<BTreeSet<u32>> {
    if let Some(r) = reports.iter().find(|r| r.doc.is_v1()) {
        bail!(
            "{} is a {SCHEMA_V1} report: it has no latency histograms, so it cannot be \
             merged exactly. Run the instances again with this datastorm to get {SCHEMA} reports",
            r.path.display()
        );
    }
    let config = |r: &Report| -> anyhow::Result<Value> {
        let mut c = serde_json::to_value(&r.doc.config)?;
        if let Some(m) = c.as_object_mut() {
            for machine_local in ["instance", "cpus", "bootstrap"] {
                m.remove(machine_local);
            }
        }
        Ok(c)
    };
    let base = config(&reports[0])?;
    for r in &reports[1..] {
        if let Some((path, a, b)) = first_difference(&base, &config(r)?, "config") {
            bail!(
                "{} and {} differ in {path} ({a} vs {b}): only the reports of the instances of \
                 one run (the same flags but --instance) can be merged",
                reports[0].path.display(),
                r.path.display()
            );
        }
    }
    let mut seen: BTreeMap<u32, &Report> = BTreeMap::new();
    for r in reports {
        for i in instances_of(r) {
            if let Some(other) = seen.insert(i, r) {
                bail!(
                    "instance {i} is in both {} and {}: each instance's report can be merged once",
                    other.path.display(),
                    r.path.display()
                );
            }
        }
    }
    let total = reports[0].doc.config.instances;
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
    Ok(seen.into_keys().collect())
}

/// The merged results; `ordered` is in instance order.
fn merged_results(ordered: &[&Report]) -> anyhow::Result<Results> {
    let results: Vec<&Results> = ordered.iter().map(|r| &r.doc.results).collect();
    let elapsed = results
        .iter()
        .map(|r| r.elapsed_s)
        .fold(0.0, f64::max)
        .max(1e-9);
    let sum = |f: fn(&Results) -> u64| results.iter().map(|r| f(r)).sum::<u64>();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for r in &results {
        for (k, v) in &r.errors_by_kind {
            *by_kind.entry(k.clone()).or_default() += v;
        }
    }
    Ok(Results {
        elapsed_s: elapsed,
        warmup_s: results.iter().map(|r| r.warmup_s).fold(0.0, f64::max),
        totals: sum_totals(results.iter().map(|r| &r.totals), elapsed),
        record_bytes_acked: sum(|r| r.record_bytes_acked),
        batch_bytes_sent: sum(|r| r.batch_bytes_sent),
        batches_acked: sum(|r| r.batches_acked),
        requests_sent: sum(|r| r.requests_sent),
        requests_acked: sum(|r| r.requests_acked),
        errors_by_kind: by_kind,
        throttle_ms: sum(|r| r.throttle_ms),
        latency: added(ordered, "results.latency", |d| Some(&d.results.latency))?,
        send_delay: Some(added(ordered, "results.send_delay", |d| {
            d.results.send_delay.as_ref()
        })?),
        // Each instance searches for the whole run's rate; the merged answer
        // is the lowest, the rate that every instance sustained.
        rate_search: results
            .iter()
            .filter_map(|r| r.rate_search.as_ref())
            .min_by(|a, b| {
                let f = |s: &RateSearch| s.found_per_s.unwrap_or(-1.0);
                f(a).total_cmp(&f(b))
            })
            .cloned(),
        process_cpu: merged_cpu(&results, sum(|r| r.totals.records_acked)),
        compression: results[0].compression.clone().map(|mut c| {
            let (records, batches) = (sum(|r| r.record_bytes_acked), sum(|r| r.batch_bytes_sent));
            c.ratio = (batches > 0).then(|| records as f64 / batches as f64);
            c
        }),
        failure: ordered.iter().find_map(|r| {
            let f = r.doc.results.failure.as_ref()?;
            Some(format!("instance {}: {f}", first_instance(r)))
        }),
        interrupted: results.iter().any(|r| r.interrupted),
        executor_sleeps: Some(merged_sleeps(ordered)),
        streams: merged_streams(ordered, elapsed)?,
    })
}

/// The instances' process CPU: times and cores added, the longest wall
/// time, the cost per million of all `records`.
fn merged_cpu(results: &[&Results], records: u64) -> Option<ProcessCpu> {
    let cpus: Vec<&ProcessCpu> = results
        .iter()
        .filter_map(|r| r.process_cpu.as_ref())
        .collect();
    if cpus.is_empty() {
        return None;
    }
    let f = |g: fn(&ProcessCpu) -> f64| cpus.iter().map(|c| g(c)).sum::<f64>();
    let (user, system) = (f(|c| c.user_s), f(|c| c.system_s));
    Some(ProcessCpu {
        user_s: user,
        system_s: system,
        wall_s: cpus.iter().map(|c| c.wall_s).fold(0.0, f64::max),
        cores_busy: f(|c| c.cores_busy),
        cpu_s_per_million_records: (records > 0).then(|| (user + system) / (records as f64 / 1e6)),
        includes_embedded_sink: cpus.iter().any(|c| c.includes_embedded_sink),
    })
}

/// Each stream's results, added over the instances.
fn merged_streams(ordered: &[&Report], elapsed: f64) -> anyhow::Result<Vec<StreamResults>> {
    let first = &ordered[0].doc.results.streams;
    let mut streams = Vec::with_capacity(first.len());
    for (i, st) in first.iter().enumerate() {
        let parts = ordered.iter().filter_map(|r| r.doc.results.streams.get(i));
        streams.push(StreamResults {
            name: st.name.clone(),
            topic: st.topic.clone(),
            totals: sum_totals(parts.map(|s| &s.totals), elapsed),
            latency: added(ordered, &format!("results.streams[{i}].latency"), |d| {
                d.results.streams.get(i).map(|s| &s.latency)
            })?,
        });
    }
    Ok(streams)
}

/// The reports a merged report came from, in instance order.
fn sources(ordered: &[&Report]) -> Vec<MergedReport> {
    let mut out = Vec::new();
    for r in ordered {
        match &r.doc.merge {
            Some(m) => out.extend(m.reports.iter().cloned()),
            None => out.push(MergedReport {
                path: r.path.display().to_string(),
                instance: r.doc.config.instance,
                started_at_unix_ms: r.doc.started_at_unix_ms,
                elapsed_s: r.doc.results.elapsed_s,
                records_acked: r.doc.results.totals.records_acked,
                environment: Some(r.doc.environment.clone()),
            }),
        }
    }
    out.sort_by_key(|s| s.instance);
    out
}

pub fn merge(reports: &[Report]) -> anyhow::Result<RunReport> {
    let instances = check_same_run(reports)?;
    // In instance order, so the result does not depend on the argument order.
    let mut ordered: Vec<&Report> = reports.iter().collect();
    ordered.sort_by_key(|r| first_instance(r));
    let first = &ordered[0].doc;
    let mut shards = Vec::new();
    for r in &ordered {
        for s in &r.doc.shards {
            let mut s = s.clone();
            // A merged report's shards already name their instances.
            if r.doc.merge.is_none() {
                s.instance = first_instance(r);
            }
            shards.push(s);
        }
    }
    let mut config = first.config.clone();
    config.instance = None;
    Ok(RunReport {
        schema: SCHEMA.into(),
        datastorm_version: env!("CARGO_PKG_VERSION").into(),
        started_at_unix_ms: ordered
            .iter()
            .filter_map(|r| r.doc.started_at_unix_ms)
            .min(),
        config,
        environment: first.environment.clone(),
        tuning: first.tuning.clone(),
        cluster: first.cluster.clone(),
        results: merged_results(&ordered)?,
        shards,
        timeline: merge_timelines(&ordered),
        sink: sum_sinks(ordered.iter().filter_map(|r| r.doc.sink.as_ref())),
        merge: Some(Merge {
            instances,
            reports: sources(&ordered),
        }),
        verify: None,
        consume: merged_consume(&ordered)?,
        consume_timeline: Vec::new(),
    })
}

/// The instances' consumers as one (none when no instance had any).
fn merged_consume(ordered: &[&Report]) -> anyhow::Result<Option<ConsumeResults>> {
    let parts: Vec<&ConsumeResults> = ordered
        .iter()
        .filter_map(|r| r.doc.consume.as_ref())
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    merge_consume(&parts)
        .map(Some)
        .map_err(|e| anyhow!("consumers: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let sink = |records: u64| Sink {
            records,
            topics: [(
                "t".to_owned(),
                SinkTopic {
                    partitions: 8,
                    records,
                    ..SinkTopic::default()
                },
            )]
            .into(),
            ..Sink::default()
        };
        let sum = sum_sinks([sink(5), sink(7)].iter()).unwrap();
        assert_eq!(sum, sink(12));
    }
}
