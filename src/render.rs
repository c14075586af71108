//! What a person reads: the per-second status line, the sink's summary and
//! the number formats they and the report summary (`report::summary`)
//! share. Plain text only, so it reads the same in a terminal and in a log
//! file.

use datastorm_engine::sink::SinkStats;
use datastorm_shards::run::Progress;
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

/// A short human duration: 5ms, 1.5s, 2m30s.
pub fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        "0".into()
    } else if d < Duration::from_millis(1) {
        format!("{}us", d.as_micros())
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms < 60_000 {
        format!("{}s", trim_float(d.as_secs_f64(), 3))
    } else {
        format!(
            "{}m{}s",
            ms / 60_000,
            trim_float((ms % 60_000) as f64 / 1e3, 3)
        )
    }
}

/// `x` with at most `decimals` decimals and no trailing zeros.
pub fn trim_float(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A rate with a k/M suffix: 950, 12.5k, 1.25M.
pub fn short_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", trim_float(x / 1e6, 2))
    } else if x >= 1e4 {
        format!("{}k", trim_float(x / 1e3, 1))
    } else {
        group(x.round() as u64)
    }
}

/// A UTC timestamp, `2025-03-01 12:34:56 UTC`, from Unix milliseconds.
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_294_096_000), "2024-03-01 11:54:56 UTC");
        assert_eq!(short_duration(Duration::from_millis(5)), "5ms");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(short_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(short_rate(1_250_000.0), "1.25M");
        assert_eq!(short_rate(12_500.0), "12.5k");
        assert_eq!(short_rate(950.0), "950");
    }
}
