//! The `datastorm` binary as a user meets it: the default run against the
//! embedded sink, and bad input.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn produce_with_no_bootstrap_uses_an_embedded_sink_and_reports() {
    let dir = scratch("embedded-sink");
    let report = dir.join("run.json");
    let mut cmd = datastorm();
    cmd.args(["produce", "--count", "300000", "--cores", "1", "--report"])
        .arg(&report);
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("embedded sink broker on 127.0.0.1:"),
        "first line: {first}"
    );
    let acked = stdout
        .lines()
        .find(|l| l.contains("records acked"))
        .unwrap_or_default();
    assert!(acked.contains(" 300,000 "), "{stdout}");
    assert!(
        stdout.contains("sink received: 300,000 records"),
        "{stdout}"
    );
    assert!(stdout.contains("CRC errors 0"), "{stdout}");

    let doc = read_json(&report);
    assert_eq!(doc["results"]["records_acked"], 300_000);
    assert_eq!(doc["sink"]["records"], 300_000);
    assert_eq!(doc["sink"]["crc_errors"], 0);
    assert_eq!(doc["config"]["streams"][0]["topic"], "datastorm");
    assert!(doc["environment"]["kernel"].is_string());
    assert!(doc["environment"]["logical_cpus"].as_u64().unwrap() >= 1);
    assert!(doc["results"]["latency"]["p99"].as_u64().unwrap() > 0);
}

#[test]
fn unreachable_bootstrap_fails_fast_with_exit_code_2() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--bootstrap",
        "127.0.0.1:1",
        "--connect-timeout",
        "3s",
        "--count",
        "10",
    ]);
    let (out, took) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no bootstrap server answered"), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["produce", "--acks", "2"][..],
        &["produce", "--cpus", "4000-4001"],
        &["produce", "--cpus", "3-1"],
        &["produce", "--batch-size", "10"],
        &["produce", "--duration", "10 parsecs"],
        &["produce", "--topic", "bad topic"],
        &["produce", "--compression", "zstd-ish"],
        &["produce", "--max-in-flight", "0"],
    ] {
        let mut cmd = datastorm();
        cmd.args(args);
        let (out, _) = run_bounded(cmd, Duration::from_secs(30));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).trim().is_empty(),
            "{args:?} explains itself"
        );
    }
}

#[test]
fn more_cores_than_available_is_explained() {
    let mut cmd = datastorm();
    cmd.args(["produce", "--cores", "4096", "--count", "1"]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--cores 4096"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sample_prints_json_records_that_follow_the_hints() {
    let mut cmd = datastorm();
    cmd.args([
        "sample",
        concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/orders.avsc"),
        "-n",
        "5",
    ]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record per line"))
        .collect();
    assert_eq!(lines.len(), 5);
    for r in &lines {
        // orders.user_id refers to users.user_id: user-1 .. user-1000.
        let uid = r["user_id"].as_str().expect("user_id");
        let n: u32 = uid
            .strip_prefix("user-")
            .expect("user- prefix")
            .parse()
            .unwrap();
        assert!((1..=1000).contains(&n), "{uid}");
        assert!(r["items"].as_array().is_some_and(|a| !a.is_empty()));
    }
}

#[test]
fn produce_from_a_schema_to_the_embedded_sink() {
    let dir = scratch("schema-produce");
    let report = dir.join("run.json");
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--schema",
        concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/payments.avsc"),
        "--encoding",
        "confluent",
        "--schema-id",
        "42",
        "--pool",
        "1000",
        "--count",
        "50000",
        "--cores",
        "1",
        "--quiet",
        "--report",
    ])
    .arg(&report);
    let (out, _) = run_bounded(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = read_json(&report);
    assert_eq!(doc["results"]["records_acked"], 50_000);
    assert_eq!(doc["sink"]["records"], 50_000);
    assert_eq!(
        doc["config"]["streams"][0]["payload"]["Schema"]["encoding"],
        "confluent"
    );
    assert_eq!(
        doc["config"]["streams"][0]["payload"]["Schema"]["schema_id"],
        42
    );
}

#[test]
fn a_bad_hint_is_reported_with_file_field_and_reason_before_anything_is_sent() {
    let dir = scratch("bad-hint");
    let schema = dir.join("bad.avsc");
    std::fs::write(
        &schema,
        r#"{"type":"record","name":"Bad","fields":[{"name":"price","type":"double","datastorm":{"range":{"min":5,"max":1}}}]}"#,
    )
    .unwrap();
    let mut cmd = datastorm();
    // An unreachable bootstrap: the schema must fail first.
    cmd.args(["produce", "--bootstrap", "127.0.0.1:1", "--schema"])
        .arg(&schema);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "datastorm produce: bad.avsc: price: range.min (5) is greater than range.max (1)"
    );
}

#[test]
fn confluent_encoding_needs_a_schema_id() {
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--schema",
        concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/users.avsc"),
        "--encoding",
        "confluent",
        "--count",
        "1",
    ]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--schema-id N or --schema-registry URL"),
        "{}",
        text(&out.stderr)
    );
}

/// `--connections-per-broker N`: the shard opens N connections to its one
/// broker (the embedded sink counts them) and every record still lands.
#[test]
fn connections_per_broker_opens_that_many_connections_per_shard() {
    let dir = scratch("connections-per-broker");
    let mut seen = Vec::new();
    for n in [1, 3] {
        let report = dir.join(format!("run-{n}.json"));
        let mut cmd = datastorm();
        cmd.args(["produce", "--count", "100000", "--cores", "1"])
            .args(["--connections-per-broker", &n.to_string(), "--report"])
            .arg(&report);
        let (out, _) = run_bounded(cmd, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "stdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let doc = read_json(&report);
        assert_eq!(doc["results"]["records_acked"], 100_000);
        assert_eq!(doc["sink"]["records"], 100_000);
        assert_eq!(doc["config"]["connections_per_broker"], n);
        seen.push(doc["sink"]["connections"].as_u64().expect("connections"));
    }
    // Bootstrap and metadata connections are the same in both runs.
    assert_eq!(seen[1] - seen[0], 2, "sink connections {seen:?}");
}

/// `datastorm sink --stall AFTER:FOR`: bad values are usage errors that name
/// the flag and its form; a good one is announced in the startup line.
#[test]
fn sink_stall_flag_is_validated_and_announced() {
    for bad in ["5s", "5s:", ":10s", "0s:10s", "5s:0s", "5s:11m", "5s:ten"] {
        let mut cmd = datastorm();
        // Should it be accepted after all, the sink stops by itself.
        cmd.args(["sink", "--listen", "127.0.0.1:0", "--duration", "1s"])
            .args(["--stall", bad]);
        let (out, _) = run_bounded(cmd, Duration::from_secs(30));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--stall {bad}: {err}");
        assert!(
            err.contains("--stall") && err.contains("AFTER:FOR"),
            "--stall {bad}: {err}"
        );
    }
    let mut cmd = datastorm();
    cmd.args(["sink", "--listen", "127.0.0.1:0", "--duration", "200ms"])
        .args(["--stall", "5s:10s"]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("stalls") && first.contains("5s after start, for 10s"),
        "{first}"
    );
}
