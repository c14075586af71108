//! `datastorm.run/2` reports and `datastorm report show|compare|plot|merge`,
//! on reports of short runs against sink brokers.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `datastorm` with `args`; panics with its output unless it succeeds.
fn ok(args: &[&str]) -> String {
    let mut cmd = datastorm();
    cmd.args(args);
    let (out, _) = run_bounded(cmd, LIMIT);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "datastorm {args:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    stdout
}

/// Runs `datastorm` with `args`, expecting the usage exit code; returns stderr.
fn refused(args: &[&str]) -> String {
    let mut cmd = datastorm();
    cmd.args(args);
    let (out, _) = run_bounded(cmd, LIMIT);
    assert_eq!(
        out.status.code(),
        Some(2),
        "datastorm {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Two reports of 200,000 records to the embedded sink, made once for all
/// tests: `a` as fast as it goes, `b` paced at 100k records/s (two seconds
/// of timeline, a target and a send delay) with a shorter linger.
fn reports() -> &'static (PathBuf, PathBuf) {
    static REPORTS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    REPORTS.get_or_init(|| {
        let dir = scratch("report-cmd-runs");
        let (a, b) = (dir.join("a.json"), dir.join("b.json"));
        ok(&[
            "produce",
            "--count",
            "200000",
            "--cores",
            "1",
            "--quiet",
            "--report",
            s(&a),
        ]);
        ok(&[
            "produce",
            "--count",
            "200000",
            "--cores",
            "1",
            "--quiet",
            "--linger",
            "1ms",
            "--rate",
            "100k",
            "--report",
            s(&b),
        ]);
        (a, b)
    })
}

/// Validates `doc` against docs/report.schema.json; panics listing the errors.
fn assert_valid(doc: &Value) {
    let schema: Value =
        serde_json::from_str(include_str!("../docs/report.schema.json")).expect("schema is JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report fails the schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn produce_writes_a_report_that_the_schema_accepts() {
    let (a, _) = reports();
    let doc = read_json(a);
    assert_eq!(doc["schema"], "datastorm.run/2");
    assert_valid(&doc);
    let lat = &doc["results"]["latency"];
    assert_eq!(lat["count"], 200_000);
    assert!(lat["histogram"].as_str().unwrap().starts_with("HISTF"));
    assert!(doc["environment"]["sysctl"]["net.core.rmem_max"].is_string());
    assert!(doc["environment"]["crates"]["glommio"].is_string());
    assert!(doc["cluster"]["api_versions"]["Produce"].is_array());
    assert_eq!(doc["results"]["streams"][0]["records_acked"], 200_000);
}

#[test]
fn show_prints_the_summary_from_the_json() {
    let (a, _) = reports();
    let out = ok(&["report", "show", s(a)]);
    let acked = out
        .lines()
        .find(|l| l.contains("records acked"))
        .unwrap_or_default();
    assert!(acked.contains(" 200,000 "), "{out}");
    for part in [
        "records/s",
        "MB/s",
        "latency         p50",
        "p99.9",
        "errors          none",
    ] {
        assert!(out.contains(part), "no {part:?} in\n{out}");
    }
}

/// The summary's figures: its lines from `settings` to `errors`, without
/// the host line only `report show` prints.
fn summary_figures(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("  settings"))
        .filter(|l| !l.starts_with("  host"))
        .collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with("  errors"))
        .map_or(0, |i| i + 1);
    lines.truncate(end);
    lines
}

#[test]
fn show_prints_the_figures_the_run_ended_with() {
    let dir = scratch("report-cmd-same-summary");
    let path = dir.join("run.json");
    let live = ok(&[
        "produce",
        "--count",
        "20000",
        "--cores",
        "1",
        "--quiet",
        "--report",
        s(&path),
    ]);
    let shown = ok(&["report", "show", s(&path)]);
    let figures = summary_figures(&live);
    assert!(figures.len() >= 6, "{live}");
    assert_eq!(figures, summary_figures(&shown), "{live}\n{shown}");
}

#[test]
fn show_refuses_an_unknown_schema_and_reads_version_1() {
    let dir = scratch("report-cmd-schemas");
    let future = dir.join("future.json");
    std::fs::write(&future, r#"{"schema": "datastorm.run/9"}"#).unwrap();
    let err = refused(&["report", "show", s(&future)]);
    assert!(err.contains("'datastorm.run/9'"), "{err}");
    assert!(err.contains("datastorm.run/2"), "{err}");

    let other = dir.join("other.json");
    std::fs::write(&other, r#"{"records": 5}"#).unwrap();
    let err = refused(&["report", "show", s(&other)]);
    assert!(err.contains("not a DataStorm run report"), "{err}");

    // A version 1 report: no histograms, send delay or environment details.
    let (a, _) = reports();
    let mut doc = read_json(a);
    doc["schema"] = "datastorm.run/1".into();
    for k in ["send_delay", "errors_by_kind", "process_cpu", "warmup_s"] {
        doc["results"].as_object_mut().unwrap().remove(k);
    }
    doc["results"]["latency"]
        .as_object_mut()
        .unwrap()
        .remove("histogram");
    let v1 = dir.join("v1.json");
    std::fs::write(&v1, doc.to_string()).unwrap();
    let out = ok(&["report", "show", s(&v1)]);
    assert!(out.contains(" 200,000 "), "{out}");
    assert!(out.contains("datastorm.run/1 report"), "{out}");
}

#[test]
fn compare_puts_reports_side_by_side_with_ratios() {
    let (a, b) = reports();
    let out = ok(&["report", "compare", s(a), s(b)]);
    assert!(out.contains(&format!("[1] {}", a.display())), "{out}");
    assert!(out.contains(&format!("[2] {}", b.display())), "{out}");
    let records = out
        .lines()
        .find(|l| l.trim_start().starts_with("records acked"))
        .unwrap_or_default();
    // Both columns, and the second's ratio to the first.
    assert_eq!(records.matches("200,000").count(), 2, "{out}");
    assert!(records.trim_end().ends_with("1.00x"), "{out}");
    for row in [
        "records/s",
        "MB/s",
        "latency p99",
        "latency p99.9",
        "latency max",
        "errors",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(row)),
            "no {row} row in\n{out}"
        );
    }
    let linger = out
        .lines()
        .find(|l| l.trim_start().starts_with("linger"))
        .unwrap_or_default();
    assert!(linger.contains("5ms") && linger.contains("1ms"), "{out}");
}

#[test]
fn plot_draws_svg_and_png() {
    let (_, a) = reports();
    let dir = scratch("report-cmd-plot");
    let (svg, png) = (dir.join("run.svg"), dir.join("run.png"));
    ok(&["report", "plot", s(a), "-o", s(&svg)]);
    ok(&["report", "plot", s(a), "--output", s(&png)]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
    assert!(text.matches("<polyline").count() >= 3, "too few lines");
    for label in [
        "Throughput",
        "acked records/s",
        "target records/s",
        "Latency per second",
        "send delay",
        "99.9%",
    ] {
        assert!(text.contains(label), "no {label:?} in the SVG");
    }
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 20_000, "PNG of {} bytes", bytes.len());

    let err = refused(&["report", "plot", s(a), "-o", s(&dir.join("run.gif"))]);
    assert!(err.contains(".svg or .png"), "{err}");
}

#[test]
fn merge_adds_the_instances_of_one_run_exactly() {
    let dir = scratch("report-cmd-merge");
    let sink = SinkProcess::start(&[]);
    let paths: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("i{i}.json"))).collect();
    // Both instances at once, as on two machines.
    std::thread::scope(|scope| {
        for (i, path) in paths.iter().enumerate() {
            let addr = sink.addr.clone();
            scope.spawn(move || {
                let instance = i.to_string();
                ok(&[
                    "produce",
                    "--bootstrap",
                    &addr,
                    "--instances",
                    "2",
                    "--instance",
                    &instance,
                    "--count",
                    "100000",
                    "--topic",
                    "m",
                    "--create-topic",
                    "--cores",
                    "1",
                    "--quiet",
                    "--report",
                    s(path),
                ]);
            });
        }
    });
    let merged = dir.join("merged.json");
    let out = ok(&[
        "report",
        "merge",
        s(&paths[1]),
        s(&paths[0]),
        "-o",
        s(&merged),
    ]);
    assert!(out.contains("instances 0,1 of 2"), "{out}");
    let doc = read_json(&merged);
    assert_valid(&doc);
    let parts: Vec<Value> = paths.iter().map(|p| read_json(p)).collect();
    let sum = |ptr: &str| -> u64 {
        parts
            .iter()
            .map(|d| d.pointer(ptr).unwrap().as_u64().unwrap())
            .sum()
    };
    assert_eq!(doc["results"]["records_acked"], 100_000);
    assert_eq!(sum("/results/records_acked"), 100_000);
    assert_eq!(
        doc["results"]["latency"]["count"].as_u64().unwrap(),
        sum("/results/latency/count")
    );
    assert_eq!(
        doc["results"]["streams"][0]["latency"]["count"]
            .as_u64()
            .unwrap(),
        sum("/results/latency/count")
    );
    // The percentiles come from the added histograms: within the parts' range.
    let p99 = |d: &Value| d["results"]["latency"]["p99"].as_u64().unwrap();
    let (lo, hi) = (
        p99(&parts[0]).min(p99(&parts[1])),
        p99(&parts[0]).max(p99(&parts[1])),
    );
    assert!(
        (lo..=hi).contains(&p99(&doc)),
        "merged p99 {} not in {lo}..={hi}",
        p99(&doc)
    );
    assert_eq!(
        doc["results"]["latency"]["max"],
        parts
            .iter()
            .map(|d| d["results"]["latency"]["max"].as_u64().unwrap())
            .max()
            .unwrap()
    );
    assert_eq!(doc["merge"]["instances"], serde_json::json!([0, 1]));
    assert!(doc["config"]["instance"].is_null());
    assert_eq!(doc["shards"].as_array().unwrap().len(), 2);
    let longest = parts
        .iter()
        .map(|d| d["results"]["elapsed_s"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(doc["results"]["elapsed_s"].as_f64().unwrap(), longest);
    let timeline_acked: u64 = doc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["records_acked"].as_u64().unwrap())
        .sum();
    let parts_timeline: u64 = parts
        .iter()
        .flat_map(|d| d["timeline"].as_array().unwrap().clone())
        .map(|p| p["records_acked"].as_u64().unwrap())
        .sum();
    assert_eq!(timeline_acked, parts_timeline);

    let shown = ok(&["report", "show", s(&merged)]);
    assert!(shown.contains(" 100,000 "), "{shown}");
    assert!(shown.contains("merged from instances 0,1 of 2"), "{shown}");

    // The same instance twice is refused.
    let err = refused(&[
        "report",
        "merge",
        s(&paths[0]),
        s(&paths[0]),
        "-o",
        s(&dir.join("x.json")),
    ]);
    assert!(err.contains("instance 0 is in both"), "{err}");
}

#[test]
fn merge_refuses_reports_of_different_runs_naming_the_field() {
    let (a, _) = reports();
    let dir = scratch("report-cmd-merge-refused");
    // "Instance 1" of the same run, but with another linger.
    let mut doc = read_json(a);
    doc["config"]["instance"] = 1.into();
    doc["config"]["instances"] = 2.into();
    let mut first = read_json(a);
    first["config"]["instances"] = 2.into();
    doc["config"]["linger"] = serde_json::json!({"secs": 0, "nanos": 1_000_000});
    let (p0, p1) = (dir.join("i0.json"), dir.join("i1.json"));
    std::fs::write(&p0, first.to_string()).unwrap();
    std::fs::write(&p1, doc.to_string()).unwrap();
    let out = dir.join("merged.json");
    let err = refused(&["report", "merge", s(&p0), s(&p1), "-o", s(&out)]);
    assert!(err.contains("differ in config.linger"), "{err}");
    assert!(
        err.contains("only the reports of the instances of one run"),
        "{err}"
    );
    assert!(!out.exists());

    // Without the difference they merge.
    doc["config"]["linger"] = first["config"]["linger"].clone();
    std::fs::write(&p1, doc.to_string()).unwrap();
    ok(&["report", "merge", s(&p0), s(&p1), "-o", s(&out)]);
    assert_eq!(read_json(&out)["results"]["records_acked"], 400_000);
}
