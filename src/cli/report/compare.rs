//! `datastorm report compare`: reports side by side, for tuning experiments.
//!
//! One column per report; each figure of the second and later columns is
//! followed by its ratio to the first column's. Settings and host details
//! are listed only where the reports differ.

use super::Report;
use crate::render::{group, latency, short_duration};
use crate::report::{Percentiles, RunReport};
use clap::Args;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// Two or more reports; ratios are to the first.
    #[arg(value_name = "REPORT", num_args = 2.., required = true)]
    pub reports: Vec<PathBuf>,
}

pub fn main(args: CompareArgs) -> anyhow::Result<()> {
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
    show: fn(f64) -> String,
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
    let c = &r.doc.config;
    let mut out = vec![
        ("acks".to_owned(), c.acks_label().to_owned()),
        ("compression".to_owned(), c.compression.clone()),
        ("batch-size".to_owned(), c.batch_size.to_string()),
        ("linger".to_owned(), short_duration(c.linger)),
        ("max-in-flight".to_owned(), c.max_in_flight.to_string()),
        ("cores".to_owned(), c.cpus.len().to_string()),
        ("rate".to_owned(), c.rate.label()),
        ("warmup".to_owned(), short_duration(c.warmup)),
        ("instances".to_owned(), c.instances.to_string()),
    ];
    for st in &c.streams {
        let prefix = if c.streams.len() == 1 {
            String::new()
        } else {
            format!("{} ", st.name)
        };
        out.push((format!("{prefix}topic"), st.topic.clone()));
        out.push((format!("{prefix}payload"), st.payload.label()));
        out.push((format!("{prefix}keys"), st.keys.kind().to_owned()));
    }
    for t in &r.doc.cluster.topics {
        out.push((
            format!("partitions ({})", t.topic),
            t.partitions.len().to_string(),
        ));
    }
    host_settings(r, &mut out);
    knob_settings(r, &mut out);
    out
}

/// A probed value; "-" where the host had none.
fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// The host's details and sysctls.
fn host_settings(r: &Report, out: &mut Vec<(String, String)>) {
    let env = &r.doc.environment;
    out.push(("host".to_owned(), text(&env.hostname)));
    out.push(("kernel".to_owned(), text(&env.kernel)));
    out.push(("cpu model".to_owned(), text(&env.cpu_model)));
    out.push((
        "transparent hugepages".to_owned(),
        text(&env.transparent_hugepage.enabled),
    ));
    out.push((
        "memlock limit".to_owned(),
        env.memlock_limit
            .map_or("-".into(), |m| m.soft_bytes.text()),
    ));
    for (k, v) in &env.sysctl {
        out.push((k.clone(), text(v)));
    }
}

/// Engine knobs and the tuning snapshot: absent from reports written
/// before the tuning lab, which then show "-".
fn knob_settings(r: &Report, out: &mut Vec<(String, String)>) {
    let c = &r.doc.config;
    if let Some(ex) = &c.executor {
        out.push(("ring-depth".to_owned(), ex.ring_depth.to_string()));
        out.push((
            "spin-before-park".to_owned(),
            short_duration(ex.spin_before_park),
        ));
        out.push(("preempt-timer".to_owned(), short_duration(ex.preempt_timer)));
    }
    if let Some(sock) = &c.socket {
        let auto = |v: Option<usize>| v.map_or("auto".into(), |b| b.to_string());
        out.push(("nodelay".to_owned(), sock.nodelay.to_string()));
        out.push(("socket-send-buffer".to_owned(), auto(sock.send_buffer)));
        out.push((
            "socket-receive-buffer".to_owned(),
            auto(sock.receive_buffer),
        ));
        out.push((
            "busy-poll us".to_owned(),
            sock.busy_poll_us.map_or("off".into(), |us| us.to_string()),
        ));
    }
    if let Some(t) = &r.doc.tuning {
        for (k, v) in &t.settings {
            if !out.iter().any(|(name, _)| name == k) {
                out.push((k.clone(), text(v)));
            }
        }
    }
}

/// A figure the table can show: its label, its value in a report, how it
/// is written, and when its row is shown (`None`: always).
struct Figure {
    label: &'static str,
    value: fn(&RunReport) -> Option<f64>,
    show: fn(f64) -> String,
    when: Option<fn(&RunReport) -> bool>,
}

fn two_decimals(v: f64) -> String {
    format!("{v:.2}")
}

fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

/// The table's figures, in order.
const FIGURES: &[Figure] = &[
    Figure {
        label: "records acked",
        value: |r| Some(r.results.totals.records_acked as f64),
        show: count,
        when: None,
    },
    Figure {
        label: "elapsed s",
        value: |r| Some(r.results.elapsed_s),
        show: two_decimals,
        when: None,
    },
    Figure {
        label: "records/s",
        value: |r| Some(r.results.totals.records_per_s),
        show: count,
        when: None,
    },
    Figure {
        label: "MB/s",
        value: |r| Some(r.results.totals.payload_mb_per_s),
        show: one_decimal,
        when: None,
    },
    Figure {
        label: "latency p50",
        value: |r| Some(r.results.latency.percentiles.p50 as f64),
        show: us,
        when: None,
    },
    Figure {
        label: "latency p99",
        value: |r| Some(r.results.latency.percentiles.p99 as f64),
        show: us,
        when: None,
    },
    Figure {
        label: "latency p99.9",
        value: |r| Some(r.results.latency.percentiles.p99_9 as f64),
        show: us,
        when: None,
    },
    Figure {
        label: "latency max",
        value: |r| Some(r.results.latency.percentiles.max as f64),
        show: us,
        when: None,
    },
    Figure {
        label: "send delay p99",
        value: |r| Some(send_delay(r)?.p99 as f64),
        show: us,
        when: Some(|r| send_delay(r).is_some_and(|d| d.count > 0)),
    },
    Figure {
        label: "errors",
        value: |r| Some(r.results.totals.errors as f64),
        show: count,
        when: None,
    },
    Figure {
        label: "retries",
        value: |r| Some(r.results.totals.retries as f64),
        show: count,
        when: None,
    },
    Figure {
        label: "records failed",
        value: |r| Some(r.results.totals.records_failed as f64),
        show: count,
        when: Some(|r| r.results.totals.records_failed > 0),
    },
    Figure {
        label: "throttle ms",
        value: |r| Some(r.results.throttle_ms as f64),
        show: count,
        when: Some(|r| r.results.throttle_ms > 0),
    },
    Figure {
        label: "client CPU cores",
        value: |r| Some(r.results.process_cpu.as_ref()?.cores_busy),
        show: two_decimals,
        when: Some(client_cpu_known),
    },
    Figure {
        label: "records/CPU-s",
        value: |r| {
            let c = r.results.process_cpu.as_ref()?;
            Some(r.results.totals.records_acked as f64 / (c.user_s + c.system_s).max(1e-9))
        },
        show: count,
        when: Some(client_cpu_known),
    },
    Figure {
        label: "rate max found",
        value: |r| r.results.rate_search.as_ref()?.found_per_s,
        show: count,
        when: Some(|r| r.results.rate_search.is_some()),
    },
];

fn send_delay(r: &RunReport) -> Option<&Percentiles> {
    r.results.send_delay.as_ref().map(|d| &d.percentiles)
}

fn client_cpu_known(r: &RunReport) -> bool {
    r.results
        .process_cpu
        .as_ref()
        .is_some_and(|c| c.cores_busy > 0.0)
}

/// The rows of the figures that any report has.
fn figures(reports: &[Report]) -> Vec<Row> {
    FIGURES
        .iter()
        .filter(|f| {
            f.when
                .is_none_or(|when| reports.iter().any(|r| when(&r.doc)))
        })
        .map(|f| figure_row(f.label, reports, |r| (f.value)(&r.doc), f.show))
        .collect()
}

/// The settings as rows where the reports differ, and as (name, value)
/// where they agree.
fn split_settings(reports: &[Report]) -> (Vec<Row>, Vec<(String, String)>) {
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
    (differ, same)
}

/// A row's cells as text; the second and later figures with their ratio to the first.
fn cell_texts(row: &Row) -> Vec<String> {
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
}

/// Rows as an aligned table under the column headers.
fn render(rows: &[Row], headers: &[String], out: &mut String) {
    let cells: Vec<Vec<String>> = rows.iter().map(cell_texts).collect();
    let label_w = rows
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(0)
        .max(16);
    let widths: Vec<usize> = (0..headers.len())
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
}

pub fn table(reports: &[Report]) -> String {
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
            r.doc
                .started_at_unix_ms
                .map(|ms| format!("  (started {})", crate::render::utc(ms)))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out);
    render(&figures(reports), &headers, &mut out);
    // Settings: rows where the reports differ; the rest on one line.
    let (differ, same) = split_settings(reports);
    if !differ.is_empty() {
        let _ = writeln!(out, "\n  settings that differ");
        render(&differ, &headers, &mut out);
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
