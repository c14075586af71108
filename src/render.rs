//! What a person reads: the per-second status line and the final summary.
//! Plain text only, so it reads the same in a terminal and in a log file.

use datastorm_engine::sink::SinkStats;
use datastorm_shards::plan::{KeySpec, PayloadSpec, RunPlan, StreamPlan};
use datastorm_shards::run::{Progress, RunOutcome};
use hdrhistogram::Histogram;
use std::fmt::Write;
use std::time::Duration;

/// Thousands separators: 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as a short human latency: 850us, 12.3ms, 1.20s.
pub fn latency(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn pct(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// One line per second.
pub fn status_line(p: &Progress) -> String {
    let secs = p.interval.as_secs_f64().max(1e-9);
    let rate = p.delta.records_acked as f64 / secs;
    let mb = p.delta.payload_bytes_acked as f64 / secs / 1e6;
    let mut s = format!(
        "[{:>6.1}s]{} acked {:>11}/s",
        p.elapsed.as_secs_f64(),
        if p.warmup { " warmup" } else { "" },
        group(rate as u64)
    );
    if let Some(t) = p.target_rate {
        let _ = write!(s, " (target {})", group(t as u64));
    }
    let _ = write!(
        s,
        " {:>8.1} MB/s  in-flight {:>3}  errors {}  retries {}  latency p50 {} p99 {} max {}",
        mb,
        p.totals.requests_in_flight,
        p.totals.errors,
        p.totals.retries,
        latency(pct(&p.latency, 0.5)),
        latency(pct(&p.latency, 0.99)),
        latency(if p.latency.is_empty() {
            0
        } else {
            p.latency.max()
        }),
    );
    s
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

/// The end-of-run table.
pub fn summary(plan: &RunPlan, o: &RunOutcome) -> String {
    let t = &o.totals;
    let el = secs(o.elapsed);
    let mut s = String::new();
    let mut cpus: Vec<usize> = o.shards.iter().map(|r| r.cpu).collect();
    if cpus.is_empty() {
        // A run ended for a stalled shard has no shard results: the planned CPUs.
        cpus.clone_from(&plan.cpus);
    }
    cpus.dedup();
    let cpus: Vec<String> = cpus.iter().map(usize::to_string).collect();
    let topic = |i: usize| {
        o.prepared.topics.get(i).map_or(String::new(), |t| {
            format!(
                "topic '{}' ({} partitions{})",
                t.topic,
                t.partitions.len(),
                if t.created { ", created" } else { "" }
            )
        })
    };
    let what = if plan.streams.len() == 1 {
        topic(0)
    } else {
        format!("{} streams", plan.streams.len())
    };
    let _ = writeln!(
        s,
        "\nDataStorm produce summary: {what}, {} shard(s) on CPU {}",
        cpus.len(),
        cpus.join(","),
    );
    let _ = writeln!(
        s,
        "  settings        acks={} compression={} batch-size={} linger={:?} max-in-flight={}{}",
        match plan.acks {
            datastorm_shards::plan::Acks::None => "0",
            datastorm_shards::plan::Acks::Leader => "1",
            datastorm_shards::plan::Acks::All => "all",
        },
        plan.compression,
        plan.batch_size,
        plan.linger,
        plan.max_in_flight,
        if plan.streams.len() == 1 {
            format!(" payload={}", payload_label(plan.stream()))
        } else {
            String::new()
        },
    );
    if plan.streams.len() > 1 {
        let width = plan
            .streams
            .iter()
            .map(|st| st.name.len())
            .max()
            .unwrap_or(0);
        for (i, st) in plan.streams.iter().enumerate() {
            let t = o.stream_totals(i);
            let h = o.stream_latency(i);
            let _ = writeln!(
                s,
                "  stream {:<width$} {}: {} records = {} records/s, {:.1} MB/s{}; payload {}{}",
                st.name,
                topic(i),
                group(t.records_acked),
                group((t.records_acked as f64 / el) as u64),
                t.payload_bytes_acked as f64 / 1e6 / el,
                if h.is_empty() {
                    String::new()
                } else {
                    format!(", p99 {}", latency(pct(&h, 0.99)))
                },
                payload_label(st),
                key_label(&st.keys),
            );
        }
    }
    let _ = writeln!(
        s,
        "  records acked   {:>14}  in {:.2} s  = {} records/s",
        group(t.records_acked),
        el,
        group((t.records_acked as f64 / el) as u64)
    );
    let _ = writeln!(
        s,
        "  payload         {:>14.1} MB       = {:.1} MB/s (key+value bytes; MB = 10^6 bytes)",
        t.payload_bytes_acked as f64 / 1e6,
        t.payload_bytes_acked as f64 / 1e6 / el
    );
    let ratio = if t.batch_bytes_sent > 0 {
        t.record_bytes_acked as f64 / t.batch_bytes_sent as f64
    } else {
        0.0
    };
    let _ = writeln!(
        s,
        "  on the wire     {:>14.1} MB sent  ({}{}, compression ratio {:.2} = record bytes / batch bytes)",
        t.batch_bytes_sent as f64 / 1e6,
        plan.compression,
        plan.compression
            .level()
            .map_or(String::new(), |l| format!(" level {l}")),
        ratio
    );
    let _ = writeln!(
        s,
        "  requests        {:>14}  ({:.0} records/request, {} batches)",
        group(t.requests_acked),
        t.records_acked as f64 / (t.requests_acked.max(1) as f64),
        group(t.batches_acked)
    );
    if !o.warmup.is_zero() {
        let _ = writeln!(
            s,
            "  warm-up         {:?} before these figures, left out of them",
            o.warmup
        );
    }
    let h = &o.latency;
    if h.is_empty() {
        let _ = writeln!(
            s,
            "  latency         n/a{}",
            if plan.acks == datastorm_shards::plan::Acks::None {
                " (acks=0: brokers send no acknowledgements)"
            } else {
                " (nothing acknowledged)"
            }
        );
    } else {
        let _ = writeln!(
            s,
            "  latency         p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
            latency(pct(h, 0.5)),
            latency(pct(h, 0.9)),
            latency(pct(h, 0.99)),
            latency(pct(h, 0.999)),
            latency(pct(h, 0.9999)),
            latency(if h.is_empty() { 0 } else { h.max() }),
        );
    }
    let d = &o.send_delay;
    if !d.is_empty() {
        let _ = writeln!(
            s,
            "  send delay      p50 {}  p99 {}  p99.9 {}  max {}  (intended send time to generation)",
            latency(pct(d, 0.5)),
            latency(pct(d, 0.99)),
            latency(pct(d, 0.999)),
            latency(d.max()),
        );
    }
    if let Some(r) = &o.rate_search {
        let steps: Vec<String> = r
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
            match r.found_per_s {
                Some(f) => format!("{} records/s sustained", group(f as u64)),
                None => "no rate tried was sustained".into(),
            },
            if r.converged {
                ""
            } else {
                ", search not converged"
            },
            steps.join(", ")
        );
    }
    let errors = &o.errors;
    let err_text = if errors.is_empty() {
        "none".to_string()
    } else {
        errors
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(s, "  errors          {err_text}");
    if t.retries > 0 {
        let _ = writeln!(s, "  retried         {:>14} batches", group(t.retries));
    }
    if t.records_failed > 0 {
        let _ = writeln!(s, "  records failed  {:>14}", group(t.records_failed));
    }
    let lost: u64 = o.executor_sleeps.iter().map(|x| x.lost_wakeups).sum();
    if lost > 0 {
        let _ = writeln!(s, "{}", lost_wakeups_line(lost));
    }
    if o.interrupted {
        let _ = writeln!(s, "  stopped early by a signal");
    }
    s
}

/// The summary's line for executor wake-ups that only the bounded sleep
/// caught (docs/architecture.md, "How an executor sleeps and wakes").
pub fn lost_wakeups_line(lost: u64) -> String {
    format!(
        "  lost wake-ups   {:>14} (recovered within 10 ms each by the bounded sleep)",
        group(lost)
    )
}

fn payload_label(st: &StreamPlan) -> String {
    match &st.payload {
        PayloadSpec::Fixed { record_size, .. } => format!("{record_size} bytes"),
        PayloadSpec::Schema(s) => format!(
            "{} ({}{})",
            s.path,
            s.encoding,
            s.pool
                .map(|n| format!(", pool of {n}"))
                .unwrap_or_else(|| ", live".into())
        ),
    }
}

fn key_label(k: &KeySpec) -> String {
    match k {
        KeySpec::None => String::new(),
        KeySpec::Seq => ", key seq".into(),
        KeySpec::Random => ", key random".into(),
        KeySpec::Uniform { n } => format!(", key uniform:{n}"),
        KeySpec::Zipf { exponent, n } => format!(", key zipf:{exponent}:{n}"),
        KeySpec::Field { name } => format!(", key field:{name}"),
    }
}

/// What the sink received.
pub fn sink_summary(st: &SinkStats, elapsed: Duration) -> String {
    let el = secs(elapsed);
    let mut s = format!(
        "sink received: {} records in {} batches ({} requests, {} connections), {:.1} MB of batches = {} records/s; CRC errors {}, decode errors {}",
        group(st.records),
        group(st.batches),
        group(st.produce_requests),
        st.connections,
        st.batch_bytes as f64 / 1e6,
        group((st.records as f64 / el) as u64),
        st.crc_errors,
        st.decode_errors,
    );
    if let Some(ratio) = st.compression_ratio() {
        let codecs: Vec<String> = st
            .batches_by_codec
            .iter()
            .map(|(codec, n)| format!("{codec} x{}", group(*n)))
            .collect();
        let _ = write!(
            s,
            "\n  records decompressed: {:.1} MB, compression ratio {:.2} (batches: {}); malformed batches {}",
            st.record_bytes as f64 / 1e6,
            ratio,
            codecs.join(", "),
            st.malformed_batches,
        );
    }
    for (topic, t) in &st.topics {
        let _ = write!(
            s,
            "\n  topic {topic}: {} partitions, {} records, {} batches",
            t.partitions,
            group(t.records),
            group(t.batches)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_latency_units() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234), "1,234");
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(latency(850), "850us");
        assert_eq!(latency(12_345), "12.3ms");
        assert_eq!(latency(1_200_000), "1.20s");
    }
}
