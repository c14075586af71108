//! `datastorm report`: read JSON run reports (`datastorm.run/2`, and
//! `datastorm.run/1` where the older format has what is asked for).
//!
//! Every subcommand works from the JSON alone, so reports can be read on
//! another machine, long after the run.

mod compare;
mod merge;
pub(crate) mod plot;
mod show;

use crate::exit;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Print a run report as the end-of-run summary.
    Show(show::ShowArgs),
    /// Put several reports side by side, with each one's ratio to the first.
    Compare(compare::CompareArgs),
    /// Draw throughput and latency over time and the latency percentile
    /// curve, as SVG or PNG (by the output's extension).
    Plot(plot::PlotArgs),
    /// Combine the reports of the instances of one run (`--instance I
    /// --instances N`) into one: totals summed, histograms added.
    Merge(merge::MergeArgs),
}

pub fn main(args: ReportArgs) -> u8 {
    let (name, result) = match args.command {
        ReportCommand::Show(a) => ("show", show::main(a)),
        ReportCommand::Compare(a) => ("compare", compare::main(a)),
        ReportCommand::Plot(a) => ("plot", plot::main(a)),
        ReportCommand::Merge(a) => ("merge", merge::main(a)),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("datastorm report {name}: {e}");
            exit::USAGE
        }
    }
}

/// A report read from a file.
pub(crate) struct Report {
    pub path: PathBuf,
    pub doc: Value,
}

impl Report {
    pub fn load(path: &Path) -> Result<Report, String> {
        Ok(Report {
            path: path.to_owned(),
            doc: crate::report::read(path)?,
        })
    }

    /// The file name, for headings.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(
            || self.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    pub fn is_v1(&self) -> bool {
        self.doc["schema"] == crate::report::SCHEMA_V1
    }

    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.doc.pointer(pointer).filter(|v| !v.is_null())
    }

    pub fn u64(&self, pointer: &str) -> Option<u64> {
        self.get(pointer).and_then(Value::as_u64)
    }

    pub fn f64(&self, pointer: &str) -> Option<f64> {
        self.get(pointer).and_then(Value::as_f64)
    }

    pub fn str(&self, pointer: &str) -> Option<&str> {
        self.get(pointer).and_then(Value::as_str)
    }

    /// A stored histogram (v2 reports), decoded.
    pub fn histogram(&self, pointer: &str) -> Option<hdrhistogram::Histogram<u64>> {
        self.str(pointer)
            .and_then(|s| crate::report::decode_histogram(s).ok())
    }
}

/// A `Duration` as serde writes it: `{"secs": S, "nanos": N}`.
pub(crate) fn duration(v: &Value) -> Option<Duration> {
    Some(Duration::new(
        v.get("secs")?.as_u64()?,
        v.get("nanos")?.as_u64()? as u32,
    ))
}

/// A short human duration: 5ms, 1.5s, 2m30s.
pub(crate) fn short_duration(d: Duration) -> String {
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
pub(crate) fn trim_float(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A rate with a k/M suffix: 950, 12.5k, 1.25M.
pub(crate) fn short_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", trim_float(x / 1e6, 2))
    } else if x >= 1e4 {
        format!("{}k", trim_float(x / 1e3, 1))
    } else {
        crate::render::group(x.round() as u64)
    }
}

/// The plan's `acks` as the flag spells it.
pub(crate) fn acks_label(v: &Value) -> String {
    match v.as_str() {
        Some("None") => "0".into(),
        Some("Leader") => "1".into(),
        Some("All") => "all".into(),
        Some(other) => other.to_owned(),
        None => "?".into(),
    }
}

/// The plan's `rate` as the flags spell it.
pub(crate) fn rate_label(v: &Value) -> String {
    let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let d = |k: &str| v.get(k).and_then(duration).map(short_duration);
    match v.get("kind").and_then(Value::as_str) {
        Some("unlimited") => "unlimited".into(),
        Some("fixed") => format!("{}/s", short_rate(f("per_s"))),
        Some("ramp") => format!(
            "ramp {}->{}/s over {}",
            short_rate(f("from")),
            short_rate(f("to")),
            d("over").unwrap_or_default()
        ),
        Some("steps") => format!(
            "steps {} every {}",
            v["rates"]
                .as_array()
                .map(|r| r
                    .iter()
                    .map(|x| short_rate(x.as_f64().unwrap_or(0.0)))
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            d("step").unwrap_or_default()
        ),
        Some("max") => format!(
            "max from {}/s, {} steps{}",
            short_rate(f("start")),
            d("step").unwrap_or_default(),
            d("max_p99")
                .map(|p| format!(", p99 <= {p}"))
                .unwrap_or_default()
        ),
        _ => v.to_string(),
    }
}

/// A stream's payload: `100 bytes`, `schemas/x.avsc (avro, live)`.
pub(crate) fn payload_label(v: &Value) -> String {
    if let Some(f) = v.get("Fixed") {
        format!("{} bytes", f["record_size"].as_u64().unwrap_or(0))
    } else if let Some(s) = v.get("Schema") {
        format!(
            "{} ({}{})",
            s["path"].as_str().unwrap_or("?"),
            s["encoding"].as_str().unwrap_or("?"),
            s["pool"]
                .as_u64()
                .map(|n| format!(", pool of {n}"))
                .unwrap_or_else(|| ", live".into())
        )
    } else {
        v.to_string()
    }
}

/// A UTC timestamp, `2025-03-01 12:34:56 UTC`, from Unix milliseconds.
pub(crate) fn utc(unix_ms: u64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_294_096_000), "2024-03-01 11:54:56 UTC");
        assert_eq!(short_duration(Duration::from_millis(5)), "5ms");
        assert_eq!(short_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(short_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(short_rate(1_250_000.0), "1.25M");
        assert_eq!(short_rate(12_500.0), "12.5k");
        assert_eq!(short_rate(950.0), "950");
        assert_eq!(
            rate_label(&json!({"kind": "fixed", "per_s": 50000.0})),
            "50k/s"
        );
        assert_eq!(
            rate_label(&json!({"kind": "ramp", "from": 1000.0, "to": 100000.0,
                "over": {"secs": 10, "nanos": 0}})),
            "ramp 1,000->100k/s over 10s"
        );
        assert_eq!(acks_label(&json!("All")), "all");
        assert_eq!(
            payload_label(&json!({"Fixed": {"record_size": 100, "pool": 1000}})),
            "100 bytes"
        );
    }
}
