//! The end-of-run summary, from a report: what `produce` prints when a run
//! ends and what `report show` prints for a report file.
//!
//! Both print the same figures the same way; the live run's heading names
//! the CPUs it ran on, a saved report's heading names the file, its version
//! and its host, and adds what only a finished report holds (process CPU,
//! timeline, what the sink received: the live run prints the sink's own
//! summary below).

use super::{Acks, Distribution, Percentiles, RunReport, SCHEMA_V1};
use crate::render::{group, latency, short_duration};
use std::fmt::Write;
use std::time::Duration;

/// The summary `produce` prints when its run ends.
pub fn live(r: &RunReport) -> String {
    let mut s = String::new();
    let mut cpus: Vec<usize> = r.shards.iter().map(|sh| sh.cpu).collect();
    if cpus.is_empty() {
        // A run ended for a stalled shard has no shard results: the planned CPUs.
        cpus.clone_from(&r.config.cpus);
    }
    cpus.dedup();
    let cpus: Vec<String> = cpus.iter().map(usize::to_string).collect();
    let _ = writeln!(
        s,
        "\nDataStorm produce summary: {}, {} shard(s) on CPU {}",
        what(r),
        cpus.len(),
        cpus.join(","),
    );
    settings(r, &mut s);
    figures(r, &mut s);
    if let Some(c) = &r.consume {
        s.push_str(&consume(c));
    }
    s
}

/// The summary `report show` prints for the report file `name`.
pub fn saved(r: &RunReport, name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "DataStorm run report {name} ({}, datastorm {}{})",
        r.schema,
        r.datastorm_version,
        r.started_at_unix_ms
            .map(|ms| format!(", started {}", crate::render::utc(ms)))
            .unwrap_or_default()
    );
    let c = &r.config;
    let instances = match &r.merge {
        Some(m) => format!(
            "; merged from instances {} of {}",
            m.instances
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            c.instances
        ),
        None if c.instances > 1 => format!(
            "; instance {} of {}",
            c.instance.map_or("null".into(), |i| i.to_string()),
            c.instances
        ),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "  run             {}, {} shard(s){instances}",
        what(r),
        r.shards.len()
    );
    settings(r, &mut s);
    host(r, &mut s);
    figures(r, &mut s);
    if let Some(c) = &r.consume {
        s.push_str(&consume(c));
    }
    saved_only(r, &mut s);
    s
}

/// The summary `report show` prints for a `datastorm consume` report.
pub fn consume_saved(r: &super::ConsumeReport, name: &str) -> String {
    let c = &r.config;
    let mut s = format!(
        "DataStorm consume report {name} ({}, datastorm {}{})\n  \
         settings        from={} isolation={} fetch-min-bytes={} fetch-max-wait={}ms \
         fetch-max-bytes={} max-partition-fetch-bytes={} check-crcs={}\n",
        r.schema,
        r.datastorm_version,
        r.started_at_unix_ms
            .map(|ms| format!(", started {}", crate::render::utc(ms)))
            .unwrap_or_default(),
        c.from,
        c.isolation,
        c.fetch_min_bytes,
        c.fetch_max_wait_ms,
        c.fetch_max_bytes,
        c.max_partition_fetch_bytes,
        c.check_crcs
    );
    s.push_str(&consume(&r.consume));
    s
}

/// The topic of a one-stream run, or how many streams.
fn what(r: &RunReport) -> String {
    match r.cluster.topics.as_slice() {
        [_] => topic(r, 0),
        _ => format!("{} streams", r.config.streams.len()),
    }
}

/// "topic 'T' (N partitions, created)", from the cluster as the run found it.
fn topic(r: &RunReport, i: usize) -> String {
    r.cluster.topics.get(i).map_or(String::new(), |t| {
        format!(
            "topic '{}' ({} partitions{})",
            t.topic,
            t.partitions.len(),
            if t.created { ", created" } else { "" }
        )
    })
}

fn settings(r: &RunReport, s: &mut String) {
    let c = &r.config;
    let _ = writeln!(
        s,
        "  settings        acks={} compression={} batch-size={} linger={} max-in-flight={} rate={}{}",
        c.acks_label(),
        c.compression,
        c.batch_size,
        short_duration(c.linger),
        c.max_in_flight,
        c.rate.label(),
        match c.streams.as_slice() {
            [one] => format!(" payload={}", one.payload.label()),
            _ => String::new(),
        },
    );
}

fn host(r: &RunReport, s: &mut String) {
    let env = &r.environment;
    let _ = writeln!(
        s,
        "  host            {} (kernel {}), {} logical CPUs{}, CPUs used {}",
        env.hostname.as_deref().unwrap_or("?"),
        env.kernel.as_deref().unwrap_or("?"),
        env.logical_cpus,
        env.cpu_model
            .as_ref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default(),
        env.cpus_used
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
}

/// The figures both summaries print, from the streams to the signal.
fn figures(r: &RunReport, s: &mut String) {
    let res = &r.results;
    let el = res.elapsed_s.max(1e-9);
    if r.config.streams.len() > 1 {
        streams(r, el, s);
    }
    let t = &res.totals;
    let _ = writeln!(
        s,
        "  records acked   {:>14}  in {:.2} s  = {} records/s",
        group(t.records_acked),
        el,
        group((t.records_acked as f64 / el) as u64)
    );
    let payload = t.payload_bytes_acked as f64 / 1e6;
    let _ = writeln!(
        s,
        "  payload         {:>14.1} MB       = {:.1} MB/s (key+value bytes; MB = 10^6 bytes)",
        payload,
        payload / el
    );
    wire(r, s);
    let _ = writeln!(
        s,
        "  requests        {:>14}  ({:.0} records/request, {} batches)",
        group(res.requests_acked),
        t.records_acked as f64 / (res.requests_acked.max(1) as f64),
        group(res.batches_acked)
    );
    if res.warmup_s > 0.0 {
        let _ = writeln!(
            s,
            "  warm-up         {} before these figures, left out of them",
            short_duration(Duration::from_secs_f64(res.warmup_s))
        );
    }
    latencies(r, s);
    rate_search(r, s);
    errors(r, s);
}

/// One line per stream of a run of several.
fn streams(r: &RunReport, el: f64, s: &mut String) {
    let width = r
        .config
        .streams
        .iter()
        .map(|st| st.name.len())
        .max()
        .unwrap_or(0);
    for (i, st) in r.config.streams.iter().enumerate() {
        let Some(res) = r.results.streams.get(i) else {
            continue;
        };
        let t = &res.totals;
        let lat = &res.latency.percentiles;
        let _ = writeln!(
            s,
            "  stream {:<width$} {}: {} records = {} records/s, {:.1} MB/s{}; payload {}{}",
            st.name,
            topic(r, i),
            group(t.records_acked),
            group((t.records_acked as f64 / el) as u64),
            t.payload_bytes_acked as f64 / 1e6 / el,
            if lat.count == 0 {
                String::new()
            } else {
                format!(", p99 {}", latency(lat.p99))
            },
            st.payload.label(),
            st.keys.label(),
        );
    }
}

/// Bytes on the wire and what compression saved.
fn wire(r: &RunReport, s: &mut String) {
    let res = &r.results;
    let ratio = if res.batch_bytes_sent > 0 {
        res.record_bytes_acked as f64 / res.batch_bytes_sent as f64
    } else {
        0.0
    };
    let level = res
        .compression
        .as_ref()
        .and_then(|c| c.level)
        .map_or(String::new(), |l| format!(" level {l}"));
    let _ = writeln!(
        s,
        "  on the wire     {:>14.1} MB sent  ({}{level}, compression ratio {:.2} = record bytes / batch bytes)",
        res.batch_bytes_sent as f64 / 1e6,
        r.config.compression,
        ratio
    );
}

/// A labelled percentile: its label and where it is in [`Percentiles`].
type Pick = (&'static str, fn(&Percentiles) -> u64);

/// Percentiles of a distribution, labelled.
fn latency_line(d: &Distribution, picks: &[Pick]) -> String {
    picks
        .iter()
        .map(|(label, pick)| format!("{label} {}", latency(pick(&d.percentiles))))
        .collect::<Vec<_>>()
        .join("  ")
}

fn latencies(r: &RunReport, s: &mut String) {
    let res = &r.results;
    if res.latency.percentiles.count == 0 {
        let _ = writeln!(
            s,
            "  latency         n/a{}",
            if r.config.acks == Acks::None {
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
                &res.latency,
                &[
                    ("p50", |p| p.p50),
                    ("p90", |p| p.p90),
                    ("p99", |p| p.p99),
                    ("p99.9", |p| p.p99_9),
                    ("p99.99", |p| p.p99_99),
                    ("max", |p| p.max),
                ]
            )
        );
    }
    if let Some(d) = res.send_delay.as_ref().filter(|d| d.percentiles.count > 0) {
        let _ = writeln!(
            s,
            "  send delay      {}  (intended send time to generation)",
            latency_line(
                d,
                &[
                    ("p50", |p| p.p50),
                    ("p99", |p| p.p99),
                    ("p99.9", |p| p.p99_9),
                    ("max", |p| p.max),
                ]
            )
        );
    }
}

fn rate_search(r: &RunReport, s: &mut String) {
    let Some(rs) = &r.results.rate_search else {
        return;
    };
    let steps: Vec<String> = rs
        .steps
        .iter()
        .map(|st| {
            format!(
                "{}{}",
                group(st.target_per_s as u64),
                if st.sustained { "" } else { "x" }
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "  rate max        {}{}  (tried: {}; x = not sustained)",
        match rs.found_per_s {
            Some(f) => format!("{} records/s sustained", group(f as u64)),
            None => "no rate tried was sustained".into(),
        },
        if rs.converged {
            ""
        } else {
            ", search not converged"
        },
        steps.join(", ")
    );
}

/// Errors by kind, retries, failed records, lost wake-ups, throttling and
/// an early stop.
fn errors(r: &RunReport, s: &mut String) {
    let res = &r.results;
    let text = match (&res.errors_by_kind, res.totals.errors) {
        (by_kind, _) if !by_kind.is_empty() => by_kind
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", "),
        (_, 0) => "none".into(),
        (_, n) => group(n),
    };
    let _ = writeln!(s, "  errors          {text}");
    if res.totals.retries > 0 {
        let _ = writeln!(
            s,
            "  retried         {:>14} batches",
            group(res.totals.retries)
        );
    }
    if res.totals.records_failed > 0 {
        let _ = writeln!(
            s,
            "  records failed  {:>14}",
            group(res.totals.records_failed)
        );
    }
    let lost = res
        .executor_sleeps
        .as_ref()
        .map_or(0, |e| e.counts.lost_wakeups);
    if lost > 0 {
        let _ = writeln!(
            s,
            "  lost wake-ups   {:>14} (recovered within 10 ms each by the bounded sleep)",
            group(lost)
        );
    }
    if res.throttle_ms > 0 {
        let _ = writeln!(
            s,
            "  throttled       {:>14} ms (sum of broker throttle times)",
            group(res.throttle_ms)
        );
    }
    if res.interrupted {
        let _ = writeln!(s, "  stopped early by a signal");
    }
}

/// What only a saved report shows: process CPU, the timeline's range, the
/// failure, the sink's totals, and what a version 1 report lacks.
fn saved_only(r: &RunReport, s: &mut String) {
    let res = &r.results;
    if let Some(cpu) = &res.process_cpu {
        let _ = writeln!(
            s,
            "  process CPU     {:.2} s user + {:.2} s system = {:.2} cores busy{}",
            cpu.user_s,
            cpu.system_s,
            cpu.cores_busy,
            if cpu.includes_embedded_sink {
                " (with the embedded sink)"
            } else {
                ""
            }
        );
    }
    let measured: Vec<f64> = r
        .timeline
        .iter()
        .filter(|p| p.phase != super::Phase::Warmup)
        .map(|p| p.records_per_s)
        .collect();
    if !measured.is_empty() {
        let min = measured.iter().copied().fold(f64::INFINITY, f64::min);
        let max = measured.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "  timeline        {} per-second points; acked from {} to {} records/s",
            r.timeline.len(),
            group(min as u64),
            group(max as u64)
        );
    }
    if let Some(f) = &res.failure {
        let _ = writeln!(s, "  failed          {f}");
    }
    if let Some(sink) = &r.sink {
        let _ = writeln!(
            s,
            "  sink received   {} records in {} batches; CRC errors {}, decode errors {}",
            group(sink.records),
            group(sink.batches),
            sink.crc_errors,
            sink.decode_errors,
        );
    }
    if r.schema == SCHEMA_V1 {
        let _ = writeln!(
            s,
            "  (a {SCHEMA_V1} report: it has no histograms, send delay or environment details)"
        );
    }
}

/// What consumers read: the lines `datastorm consume` prints at its end,
/// and that a produce run with consumers adds to its summary.
pub fn consume(c: &super::ConsumeResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  consumed        {:>14} records  {:>12} records/s  {:>8.1} MB/s  ({} consumer{}{} of {}, {:.1} s)",
        group(c.records),
        group(c.records_per_s as u64),
        c.mb_per_s,
        c.consumers,
        if c.consumers == 1 { "" } else { "s" },
        if c.groups > 1 {
            format!(" in {} groups", c.groups)
        } else {
            String::new()
        },
        c.topic,
        c.elapsed_s
    );
    let _ = writeln!(
        s,
        "  fetches         {:>14} requests  {} batches  lag at end {} records{}",
        group(c.fetch_requests),
        group(c.batches),
        group(c.lag),
        c.fetch_version
            .map_or(String::new(), |v| format!("  (Fetch v{v})"))
    );
    let picks: [Pick; 6] = [
        ("p50", |p| p.p50),
        ("p90", |p| p.p90),
        ("p99", |p| p.p99),
        ("p99.9", |p| p.p99_9),
        ("p99.99", |p| p.p99_99),
        ("max", |p| p.max),
    ];
    if c.e2e_latency.percentiles.count == 0 {
        let _ = writeln!(
            s,
            "  end-to-end      n/a (no record carried this host's ds-t stamp: produce with --e2e-header)"
        );
    } else {
        let _ = writeln!(
            s,
            "  end-to-end      {}  ({} records timed, {} not)",
            latency_line(&c.e2e_latency, &picks),
            group(c.records_timed),
            group(c.records_untimed)
        );
    }
    if c.fetch_latency.percentiles.count > 0 {
        let _ = writeln!(
            s,
            "  fetch latency   {}",
            latency_line(&c.fetch_latency, &picks[..3])
        );
    }
    if let Some(b) = &c.backlog {
        let _ = writeln!(s, "  backlog         {}", backlog(b));
    }
    for (kind, n) in &c.errors_by_kind {
        let _ = writeln!(s, "  consume errors  {kind}: {}", group(*n));
    }
    if let Some(f) = &c.failure {
        let _ = writeln!(s, "  consume failed  {f}");
    }
    s
}

/// The backlog line: built when, drained how fast.
fn backlog(b: &super::BacklogResult) -> String {
    let built = format!(
        "{:.1} MB ({} records) built in {:.1} s",
        b.requested_bytes as f64 / 1e6,
        group(b.records),
        b.built_after_s
    );
    match (b.drain_s, b.drain_records_per_s) {
        (Some(secs), Some(rate)) => format!(
            "{built}; drained to {:.0}% in {secs:.1} s at {} records/s{}",
            b.drain_ratio * 100.0,
            group(rate as u64),
            if b.drained_while_producing {
                " while producing"
            } else {
                " (only after the producers stopped)"
            }
        ),
        _ => format!("{built}; not drained"),
    }
}
