//! `--timeline FILE.csv`: the per-second timeline as CSV, one row a second.

use datastorm_shards::run::TimelinePoint;
use std::fmt::Write as _;
use std::path::Path;

/// The CSV header; the columns follow the report's timeline fields.
pub const HEADER: &str = "elapsed_s,phase,target_per_s,records_acked,records_per_s,\
payload_mb_per_s,requests_in_flight,errors,retries,p50_us,p99_us,max_us,send_delay_max_us";

pub fn to_csv(points: &[TimelinePoint]) -> String {
    let mut out = String::with_capacity(64 * (points.len() + 1));
    out.push_str(HEADER);
    out.push('\n');
    for p in points {
        let _ = writeln!(
            out,
            "{:.3},{},{},{},{:.1},{:.3},{},{},{},{},{},{},{}",
            p.elapsed_s,
            p.phase,
            p.target_per_s
                .map(|t| format!("{t:.1}"))
                .unwrap_or_default(),
            p.records_acked,
            p.records_per_s,
            p.payload_mb_per_s,
            p.requests_in_flight,
            p.errors,
            p.retries,
            p.p50_us,
            p.p99_us,
            p.max_us,
            p.send_delay_max_us,
        );
    }
    out
}

pub fn write_csv(path: &Path, points: &[TimelinePoint]) -> std::io::Result<()> {
    std::fs::write(path, to_csv(points))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_point_with_every_column() {
        let p = TimelinePoint {
            elapsed_s: 1.0,
            phase: datastorm_shards::run::Phase::Warmup,
            target_per_s: Some(1000.0),
            records_acked: 990,
            records_per_s: 990.0,
            payload_mb_per_s: 0.1,
            requests_in_flight: 2,
            errors: 0,
            retries: 0,
            p50_us: 800,
            p99_us: 2000,
            max_us: 3000,
            send_delay_max_us: 40,
        };
        let csv = to_csv(&[
            p.clone(),
            TimelinePoint {
                target_per_s: None,
                ..p
            },
        ]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        let cols = HEADER.split(',').count();
        assert!(lines.iter().all(|l| l.split(',').count() == cols), "{csv}");
        assert_eq!(
            lines[1],
            "1.000,warmup,1000.0,990,990.0,0.100,2,0,0,800,2000,3000,40"
        );
        assert!(lines[2].starts_with("1.000,warmup,,990,"));
    }
}
