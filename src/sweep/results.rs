//! A sweep's results: each point's figures read back from its reports
//! (the median over repeats), the table, the CSV and the best points.

use super::matrix::Point;
use crate::report::RunReport;
use std::fmt::Write as _;

/// One run of one point, from its `produce --report`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub records_per_s: f64,
    pub mb_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub errors: u64,
    pub records_failed: u64,
    pub cpu_s_per_million: Option<f64>,
    pub failure: Option<String>,
}

impl Run {
    /// The figures of a run report.
    pub fn from_report(doc: &RunReport) -> Run {
        let r = &doc.results;
        let lat = &r.latency.percentiles;
        Run {
            records_per_s: r.totals.records_per_s,
            mb_per_s: r.totals.payload_mb_per_s,
            p50_us: lat.p50,
            p99_us: lat.p99,
            p999_us: lat.p99_9,
            max_us: lat.max,
            errors: r.totals.errors,
            records_failed: r.totals.records_failed,
            cpu_s_per_million: r
                .process_cpu
                .as_ref()
                .and_then(|c| c.cpu_s_per_million_records),
            failure: r.failure.clone(),
        }
    }
}

/// A point's runs summarised: medians, and the throughput spread.
#[derive(Debug, Clone)]
pub struct Summary {
    pub point: Point,
    pub runs: usize,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub errors: u64,
    pub records_failed: u64,
    pub cpu_s_per_million: Option<f64>,
    /// (max - min) / median of records/s over the runs, in percent.
    pub spread_pct: f64,
    pub failure: Option<String>,
}

impl Summary {
    /// A point counts for "best" only when every record was acknowledged.
    pub fn clean(&self) -> bool {
        self.failure.is_none() && self.records_failed == 0 && self.records_per_s > 0.0
    }
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median_u(v: Vec<u64>) -> u64 {
    median_f(v.into_iter().map(|x| x as f64).collect()).round() as u64
}

/// Summarises one point's runs; `None` when it has none.
pub fn summarise(point: &Point, runs: &[Run]) -> Option<Summary> {
    if runs.is_empty() {
        return None;
    }
    let col = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let rates = col(|r| r.records_per_s);
    let median_rate = median_f(rates.clone());
    let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rates.iter().copied().fold(0.0, f64::max);
    let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_s_per_million).collect();
    Some(Summary {
        point: point.clone(),
        runs: runs.len(),
        records_per_s: median_rate,
        mb_per_s: median_f(col(|r| r.mb_per_s)),
        p50_us: median_u(runs.iter().map(|r| r.p50_us).collect()),
        p99_us: median_u(runs.iter().map(|r| r.p99_us).collect()),
        p999_us: median_u(runs.iter().map(|r| r.p999_us).collect()),
        max_us: runs.iter().map(|r| r.max_us).max().unwrap_or(0),
        errors: runs.iter().map(|r| r.errors).sum(),
        records_failed: runs.iter().map(|r| r.records_failed).sum(),
        cpu_s_per_million: (!cpu.is_empty()).then(|| median_f(cpu)),
        spread_pct: if median_rate > 0.0 {
            (hi - lo) / median_rate * 100.0
        } else {
            0.0
        },
        failure: runs.iter().find_map(|r| r.failure.clone()),
    })
}

/// The best clean point for throughput (highest records/s) and for
/// latency (lowest p99), as indexes into `rows`.
pub fn best(rows: &[Summary]) -> (Option<usize>, Option<usize>) {
    let clean = || rows.iter().enumerate().filter(|(_, s)| s.clean());
    let throughput = clean()
        .max_by(|a, b| a.1.records_per_s.total_cmp(&b.1.records_per_s))
        .map(|(i, _)| i);
    let p99 = clean()
        .min_by(|a, b| {
            a.1.p99_us
                .cmp(&b.1.p99_us)
                .then(b.1.records_per_s.total_cmp(&a.1.records_per_s))
        })
        .map(|(i, _)| i);
    (throughput, p99)
}

fn cpu_cell(x: Option<f64>) -> String {
    x.map_or("-".into(), |c| format!("{c:.3}"))
}

/// The table printed at the end of a sweep.
pub fn table(rows: &[Summary]) -> String {
    use crate::render::latency;
    let (bt, bl) = best(rows);
    let head = [
        "point",
        "records/s",
        "MB/s",
        "p50",
        "p99",
        "p99.9",
        "cpu s/M",
        "runs",
        "spread",
        "",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut note = Vec::new();
            if Some(i) == bt {
                note.push("best throughput".to_owned());
            }
            if Some(i) == bl {
                note.push("best p99".to_owned());
            }
            if let Some(f) = &s.failure {
                note.push(format!("FAILED: {f}"));
            } else if s.records_failed > 0 {
                note.push(format!("{} records failed", s.records_failed));
            }
            [
                s.point.label(),
                crate::render::group(s.records_per_s.round() as u64),
                format!("{:.1}", s.mb_per_s),
                latency(s.p50_us),
                latency(s.p99_us),
                latency(s.p999_us),
                cpu_cell(s.cpu_s_per_million),
                s.runs.to_string(),
                if s.runs > 1 {
                    format!("{:.0}%", s.spread_pct)
                } else {
                    "-".into()
                },
                note.join(", "),
            ]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let mut out = String::new();
    let mut line = |row: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in row.iter().enumerate() {
            let w = widths[i];
            // The point is left-aligned, figures right-aligned, notes last.
            let _ = match i {
                0 | 9 => write!(l, "{c:<w$}  "),
                _ => write!(l, "{c:>w$}  "),
            };
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head.to_vec());
    for c in &cells {
        line(c.iter().map(String::as_str).collect());
    }
    out.trim_end().to_owned()
}

/// The CSV: one column per swept flag, then the figures.
pub fn csv(flags: &[String], rows: &[Summary]) -> String {
    let mut out = flags.join(",");
    out.push_str(
        ",runs,records_per_s,payload_mb_per_s,p50_us,p99_us,p99_9_us,max_us,errors,\
         records_failed,cpu_s_per_million_records,spread_pct,failure\n",
    );
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    for s in rows {
        for (_, v) in &s.point.values {
            out.push_str(&quote(v));
            out.push(',');
        }
        let _ = writeln!(
            out,
            "{},{:.1},{:.3},{},{},{},{},{},{},{},{:.1},{}",
            s.runs,
            s.records_per_s,
            s.mb_per_s,
            s.p50_us,
            s.p99_us,
            s.p999_us,
            s.max_us,
            s.errors,
            s.records_failed,
            s.cpu_s_per_million
                .map_or(String::new(), |c| format!("{c:.4}")),
            s.spread_pct,
            quote(s.failure.as_deref().unwrap_or("")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::matrix::{points, Axis};

    fn run(rate: f64, p99: u64) -> Run {
        Run {
            records_per_s: rate,
            mb_per_s: rate / 1e4,
            p50_us: p99 / 2,
            p99_us: p99,
            p999_us: p99 * 2,
            max_us: p99 * 3,
            errors: 0,
            records_failed: 0,
            cpu_s_per_million: Some(0.5),
            failure: None,
        }
    }

    #[test]
    fn medians_spread_and_best() {
        let pts = points(&[Axis::new("linger", "0ms,5ms,9ms").unwrap()]);
        let a = summarise(
            &pts[0],
            &[run(100.0, 900), run(300.0, 100), run(200.0, 500)],
        )
        .unwrap();
        assert_eq!((a.records_per_s, a.p99_us, a.runs), (200.0, 500, 3));
        assert_eq!(a.spread_pct, 100.0);
        let b = summarise(&pts[1], &[run(150.0, 50)]).unwrap();
        let mut failed = run(999.0, 1);
        failed.failure = Some("broker gone".into());
        let c = summarise(&pts[2], &[failed]).unwrap();
        assert!(summarise(&pts[0], &[]).is_none());
        let rows = vec![a, b, c];
        // The failed point is fastest and lowest, but never "best".
        assert_eq!(best(&rows), (Some(0), Some(1)));
        let t = table(&rows);
        assert!(t.contains("best throughput"), "{t}");
        assert!(t.contains("FAILED: broker gone"), "{t}");
        let csv = csv(&["linger".into()], &rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("linger,runs,records_per_s,"), "{csv}");
        assert!(lines[1].starts_with("0ms,3,200.0,"), "{csv}");
        assert!(lines[3].ends_with(",broker gone"), "{csv}");
    }
}
