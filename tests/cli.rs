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
    assert_eq!(doc["config"]["topic"], "datastorm");
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
