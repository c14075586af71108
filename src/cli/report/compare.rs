//! `datastorm report compare`: reports side by side, for tuning experiments.
//!
//! One column per report; each figure of the second and later columns is
//! followed by its ratio to the first column's. Settings and host details
//! are listed only where the reports differ.

use super::{acks_label, payload_label, rate_label, short_duration, Report};
use crate::render::{group, latency};
use clap::Args;
use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// Two or more reports; ratios are to the first.
    #[arg(value_name = "REPORT", num_args = 2.., required = true)]
    pub reports: Vec<PathBuf>,
}

pub fn main(args: CompareArgs) -> Result<(), String> {
    let reports = args
        .reports
        .iter()
        .map(|p| Report::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    outln!("{}", table(&reports));
    Ok(())
}

/// One row of figures: the text shown and the number its ratio is taken of.
struct Row {
    label: String,
    cells: Vec<Option<(String, f64)>>,
    ratio: bool,
}

fn figure_row(
    label: &str,
    reports: &[Report],
    value: impl Fn(&Report) -> Option<f64>,
    show: impl Fn(f64) -> String,
) -> Row {
    Row {
        label: label.to_owned(),
        cells: reports
            .iter()
            .map(|r| value(r).map(|v| (show(v), v)))
            .collect(),
        ratio: true,
    }
}

fn text_row(label: &str, values: Vec<String>) -> Row {
    Row {
        label: label.to_owned(),
        cells: values.into_iter().map(|v| Some((v, 0.0))).collect(),
        ratio: false,
    }
}

fn us(v: f64) -> String {
    latency(v as u64)
}

fn count(v: f64) -> String {
    group(v.round() as u64)
}

/// The settings a tuning experiment varies, as (name, value) per report.
fn settings(r: &Report) -> Vec<(String, String)> {
    let c = &r.doc["config"];
    let mut out = vec![
        ("acks".to_owned(), acks_label(&c["acks"])),
        (
            "compression".to_owned(),
            c["compression"].as_str().unwrap_or("?").to_owned(),
        ),
        ("batch-size".to_owned(), c["batch_size"].to_string()),
        (
            "linger".to_owned(),
            super::duration(&c["linger"]).map_or("?".into(), short_duration),
        ),
        ("max-in-flight".to_owned(), c["max_in_flight"].to_string()),
        (
            "cores".to_owned(),
            c["cpus"].as_array().map_or(0, Vec::len).to_string(),
        ),
        ("rate".to_owned(), rate_label(&c["rate"])),
        (
            "warmup".to_owned(),
            super::duration(&c["warmup"]).map_or("?".into(), short_duration),
        ),
        ("instances".to_owned(), c["instances"].to_string()),
    ];
    if let Some(streams) = c["streams"].as_array() {
        for st in streams {
            let prefix = if streams.len() == 1 {
                String::new()
            } else {
                format!("{} ", st["name"].as_str().unwrap_or("?"))
            };
            out.push((
                format!("{prefix}topic"),
                st["topic"].as_str().unwrap_or("?").to_owned(),
            ));
            out.push((format!("{prefix}payload"), payload_label(&st["payload"])));
            out.push((
                format!("{prefix}keys"),
                st["keys"]["kind"].as_str().unwrap_or("?").to_owned(),
            ));
        }
    }
    if let Some(topics) = r.doc["cluster"]["topics"].as_array() {
        for t in topics {
            out.push((
                format!("partitions ({})", t["topic"].as_str().unwrap_or("?")),
                t["partitions"].as_array().map_or(0, Vec::len).to_string(),
            ));
        }
    }
    let env = &r.doc["environment"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    out.push(("host".to_owned(), text(&env["hostname"])));
    out.push(("kernel".to_owned(), text(&env["kernel"])));
    out.push(("cpu model".to_owned(), text(&env["cpu_model"])));
    out.push((
        "transparent hugepages".to_owned(),
        text(&env["transparent_hugepage"]["enabled"]),
    ));
    out.push((
        "memlock limit".to_owned(),
        text(&env["memlock_limit"]["soft_bytes"]),
    ));
    if let Some(m) = env["sysctl"].as_object() {
        for (k, v) in m {
            out.push((k.clone(), text(v)));
        }
    }
    // Engine knobs and the tuning snapshot: absent from reports written
    // before the tuning lab, which then show "-".
    let dur = |v: &Value| super::duration(v).map_or("-".into(), short_duration);
    let ex = &c["executor"];
    if ex.is_object() {
        out.push(("ring-depth".to_owned(), text(&ex["ring_depth"])));
        out.push(("spin-before-park".to_owned(), dur(&ex["spin_before_park"])));
        out.push(("preempt-timer".to_owned(), dur(&ex["preempt_timer"])));
    }
    let sock = &c["socket"];
    if sock.is_object() {
        let auto = |v: &Value| if v.is_null() { "auto".into() } else { text(v) };
        out.push(("nodelay".to_owned(), text(&sock["nodelay"])));
        out.push(("socket-send-buffer".to_owned(), auto(&sock["send_buffer"])));
        out.push((
            "socket-receive-buffer".to_owned(),
            auto(&sock["receive_buffer"]),
        ));
        let busy = &sock["busy_poll_us"];
        out.push((
            "busy-poll us".to_owned(),
            if busy.is_null() {
                "off".into()
            } else {
                text(busy)
            },
        ));
    }
    if let Some(m) = r.doc["tuning"]["settings"].as_object() {
        for (k, v) in m {
            if !out.iter().any(|(name, _)| name == k) {
                out.push((k.clone(), text(v)));
            }
        }
    }
    out
}

pub fn table(reports: &[Report]) -> String {
    let mut rows = vec![
        figure_row(
            "records acked",
            reports,
            |r| r.f64("/results/records_acked"),
            count,
        ),
        figure_row(
            "elapsed s",
            reports,
            |r| r.f64("/results/elapsed_s"),
            |v| format!("{v:.2}"),
        ),
        figure_row(
            "records/s",
            reports,
            |r| r.f64("/results/records_per_s"),
            count,
        ),
        figure_row(
            "MB/s",
            reports,
            |r| r.f64("/results/payload_mb_per_s"),
            |v| format!("{v:.1}"),
        ),
        figure_row(
            "latency p50",
            reports,
            |r| r.f64("/results/latency/p50"),
            us,
        ),
        figure_row(
            "latency p99",
            reports,
            |r| r.f64("/results/latency/p99"),
            us,
        ),
        figure_row(
            "latency p99.9",
            reports,
            |r| r.f64("/results/latency/p99_9"),
            us,
        ),
        figure_row(
            "latency max",
            reports,
            |r| r.f64("/results/latency/max"),
            us,
        ),
    ];
    let any = |p: &str| reports.iter().any(|r| r.f64(p).is_some_and(|v| v > 0.0));
    if any("/results/send_delay/count") {
        rows.push(figure_row(
            "send delay p99",
            reports,
            |r| r.f64("/results/send_delay/p99"),
            us,
        ));
    }
    rows.push(figure_row(
        "errors",
        reports,
        |r| r.f64("/results/errors"),
        count,
    ));
    rows.push(figure_row(
        "retries",
        reports,
        |r| r.f64("/results/retries"),
        count,
    ));
    if any("/results/records_failed") {
        rows.push(figure_row(
            "records failed",
            reports,
            |r| r.f64("/results/records_failed"),
            count,
        ));
    }
    if any("/results/throttle_ms") {
        rows.push(figure_row(
            "throttle ms",
            reports,
            |r| r.f64("/results/throttle_ms"),
            count,
        ));
    }
    if any("/results/process_cpu/cores_busy") {
        rows.push(figure_row(
            "client CPU cores",
            reports,
            |r| r.f64("/results/process_cpu/cores_busy"),
            |v| format!("{v:.2}"),
        ));
        rows.push(figure_row(
            "records/CPU-s",
            reports,
            |r| {
                let cpu = r.f64("/results/process_cpu/user_s")?
                    + r.f64("/results/process_cpu/system_s")?;
                Some(r.f64("/results/records_acked")? / cpu.max(1e-9))
            },
            count,
        ));
    }
    if reports
        .iter()
        .any(|r| r.get("/results/rate_search").is_some())
    {
        rows.push(figure_row(
            "rate max found",
            reports,
            |r| r.f64("/results/rate_search/found_per_s"),
            count,
        ));
    }

    // Settings: rows where the reports differ; the rest on one line.
    let all: Vec<Vec<(String, String)>> = reports.iter().map(settings).collect();
    let mut names: Vec<String> = Vec::new();
    for s in &all {
        for (k, _) in s {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let mut same = Vec::new();
    let mut differ = Vec::new();
    for name in &names {
        let values: Vec<String> = all
            .iter()
            .map(|s| {
                s.iter()
                    .find(|(k, _)| k == name)
                    .map_or("-".into(), |(_, v)| v.clone())
            })
            .collect();
        if values.iter().all(|v| *v == values[0]) {
            same.push((name.clone(), values[0].clone()));
        } else {
            differ.push(text_row(name, values));
        }
    }

    let headers: Vec<String> = (1..=reports.len()).map(|i| format!("[{i}]")).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DataStorm report compare ({} reports; Nx = that column's figure over the first's)",
        reports.len()
    );
    for (h, r) in headers.iter().zip(reports) {
        let _ = writeln!(
            out,
            "  {h} {}{}",
            r.path.display(),
            r.u64("/started_at_unix_ms")
                .map(|ms| format!("  (started {})", super::utc(ms)))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out);
    let render = |rows: &[Row], out: &mut String| {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                let first = row.cells[0].as_ref().map(|c| c.1);
                row.cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match c {
                        None => "-".to_owned(),
                        Some((text, v)) if i > 0 && row.ratio => match first {
                            Some(f) if f > 0.0 => format!("{text} {:>6}", format!("{:.2}x", v / f)),
                            _ => format!("{text} {:>6}", "-"),
                        },
                        Some((text, _)) => text.clone(),
                    })
                    .collect()
            })
            .collect();
        let label_w = rows
            .iter()
            .map(|r| r.label.len())
            .max()
            .unwrap_or(0)
            .max(16);
        let widths: Vec<usize> = (0..reports.len())
            .map(|i| {
                cells
                    .iter()
                    .map(|c| c[i].chars().count())
                    .chain([headers[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let _ = write!(out, "  {:<label_w$}", "");
        for (h, w) in headers.iter().zip(&widths) {
            let _ = write!(out, "  {h:>w$}");
        }
        let _ = writeln!(out);
        for (row, cells) in rows.iter().zip(&cells) {
            let _ = write!(out, "  {:<label_w$}", row.label);
            for (c, w) in cells.iter().zip(&widths) {
                let _ = write!(out, "  {c:>w$}");
            }
            let _ = writeln!(out);
        }
    };
    render(&rows, &mut out);
    if !differ.is_empty() {
        let _ = writeln!(out, "\n  settings that differ");
        render(&differ, &mut out);
    }
    let shown: Vec<String> = same
        .iter()
        .filter(|(k, _)| !k.starts_with("net.") && k != "cpu model")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(out, "\n  same in all: {}", shown.join(", "));
    }
    out
}
