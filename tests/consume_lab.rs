//! `datastorm consume` and `produce --consumers` against a real Apache Kafka
//! broker (scripts/kafka-lab; scripts/test sets DATASTORM_TEST_KAFKA and
//! DATASTORM_TEST_SINGLE).
#![cfg(feature = "lab-tests")]

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn consume(bootstrap: &str, topic: &str, extra: &[&str]) -> Command {
    let mut cmd = datastorm();
    cmd.args(["consume", "--bootstrap", bootstrap, "--topic", topic, "-q"])
        .args(extra);
    cmd
}

#[test]
fn produce_with_a_consumer_reads_every_record_and_times_each_end_to_end() {
    let kafka = env("DATASTORM_TEST_KAFKA");
    let topic = fresh_topic("consumers");
    let report = scratch("consumers-report").join("report.json");
    let mut cmd = datastorm();
    cmd.args(["produce", "--bootstrap", &kafka, "--topic", &topic])
        .args(["--create-topic", "--partitions", "4", "--cores", "1"])
        .args(["--rate", "5k", "--duration", "4s", "--acks", "1"])
        .args(["--consumers", "1", "-q", "--report"])
        .arg(&report);
    let stdout = run_ok(cmd, "produce --consumers 1");
    assert!(stdout.contains("end-to-end      p50"), "{stdout}");
    let r = read_json(&report);
    let acked = r["results"]["records_acked"].as_u64().expect("acked");
    let c = &r["consume"];
    assert!(acked >= 15_000, "{acked} acked in 4 s at 5k/s");
    assert_eq!(c["records"].as_u64(), Some(acked), "{c:#}");
    // Every record carried this host's stamp: every one is timed.
    assert_eq!(c["records_timed"].as_u64(), Some(acked));
    assert_eq!(c["e2e_latency"]["count"].as_u64(), Some(acked));
    let p50 = c["e2e_latency"]["p50"].as_u64().expect("p50");
    let p99 = c["e2e_latency"]["p99"].as_u64().expect("p99");
    // A real broker takes at least tens of microseconds, and a local one
    // well under a minute.
    assert!(p50 >= 10 && p50 <= p99 && p99 < 60_000_000, "{c:#}");
    assert!(!r["consume_timeline"]
        .as_array()
        .expect("timeline")
        .is_empty());
}

#[test]
fn consume_until_end_reads_exactly_what_was_produced_in_sequence() {
    let kafka = env("DATASTORM_TEST_KAFKA");
    let topic = fresh_topic("consume-seq");
    let mut produce = datastorm();
    produce
        .args(["produce", "--bootstrap", &kafka, "--topic", &topic])
        .args(["--create-topic", "--partitions", "6", "--cores", "2"])
        .args(["--count", "200k", "--sequence-header", "-q"])
        .args(["--compression", "zstd"]);
    run_ok(produce, "produce");
    let report = scratch("consume-seq").join("report.json");
    let mut cmd = consume(&kafka, &topic, &["--until-end", "--cores", "2"]);
    cmd.arg("--check-sequences").arg("--report").arg(&report);
    let stdout = run_ok(cmd, "consume --check-sequences");
    assert!(stdout.contains("exact"), "{stdout}");
    let r = read_json(&report);
    assert_eq!(r["schema"], "datastorm.consume/1");
    assert_eq!(r["consume"]["records"].as_u64(), Some(200_000));
    assert_eq!(r["consume"]["lag"].as_u64(), Some(0));
    assert_eq!(r["consume"]["partitions"].as_array().map(Vec::len), Some(6));
    // Records produced without --e2e-header are read but not timed.
    assert_eq!(r["consume"]["records_untimed"].as_u64(), Some(200_000));
    let shown = run_ok(
        {
            let mut c = datastorm();
            c.args(["report", "show"]).arg(&report);
            c
        },
        "report show",
    );
    assert!(shown.contains("200,000 records"), "{shown}");
}

#[test]
fn consume_reads_a_topic_written_by_kafkas_console_producer() {
    let kafka = env("DATASTORM_TEST_KAFKA");
    let cluster = env("DATASTORM_TEST_SINGLE");
    let topic = fresh_topic("console");
    lab(&[
        "create-topic",
        &topic,
        "--name",
        &cluster,
        "--partitions",
        "3",
    ]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka-lab");
    let mut child = Command::new(script)
        .args(["produce", &topic, "--name", &cluster])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kafka-lab produce");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for i in 0..500 {
            writeln!(stdin, "console record {i}").expect("write");
        }
    }
    let out = child.wait_with_output().expect("console producer");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = scratch("console").join("report.json");
    let mut cmd = consume(&kafka, &topic, &["--until-end", "--report"]);
    cmd.arg(&report);
    run_ok(cmd, "consume");
    let r = read_json(&report);
    assert_eq!(r["consume"]["records"].as_u64(), Some(500));
    assert_eq!(r["consume"]["records_timed"].as_u64(), Some(0));
}

#[test]
fn read_committed_is_accepted() {
    let kafka = env("DATASTORM_TEST_KAFKA");
    let topic = fresh_topic("committed");
    let mut produce = datastorm();
    produce
        .args(["produce", "--bootstrap", &kafka, "--topic", &topic])
        .args([
            "--create-topic",
            "--partitions",
            "2",
            "--count",
            "10k",
            "-q",
        ]);
    run_ok(produce, "produce");
    let report = scratch("committed").join("report.json");
    let mut cmd = consume(&kafka, &topic, &["--until-end"]);
    cmd.args(["--isolation", "read-committed", "--report"])
        .arg(&report);
    run_ok(cmd, "consume --isolation read-committed");
    let r = read_json(&report);
    assert_eq!(r["config"]["isolation"], "read_committed");
    assert_eq!(r["consume"]["records"].as_u64(), Some(10_000));
}

#[test]
fn a_bad_start_position_is_a_usage_error() {
    let (out, _) = run_bounded(
        consume("127.0.0.1:1", "t", &["--from", "yesterday"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("earliest, latest"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_backlog_is_built_then_drained_while_the_run_goes_on() {
    let kafka = env("DATASTORM_TEST_KAFKA");
    let topic = fresh_topic("backlog");
    let report = scratch("backlog").join("report.json");
    let mut cmd = datastorm();
    cmd.args(["produce", "--bootstrap", &kafka, "--topic", &topic])
        .args(["--create-topic", "--partitions", "4", "--cores", "1"])
        .args(["--rate", "10k", "--duration", "8s", "--acks", "1"])
        .args(["--consumers", "1", "--backlog", "1MiB", "-q", "--report"])
        .arg(&report);
    let stdout = run_ok(cmd, "produce --backlog");
    assert!(stdout.contains("backlog "), "{stdout}");
    let r = read_json(&report);
    let acked = r["results"]["records_acked"].as_u64().expect("acked");
    let c = &r["consume"];
    assert_eq!(c["records"].as_u64(), Some(acked), "{c:#}");
    let b = &c["backlog"];
    assert_eq!(b["requested_bytes"].as_u64(), Some(1_048_576));
    // 1 MiB of 100-byte payloads: at least 10,000 records waited.
    assert!(b["records"].as_u64().expect("records") >= 10_000, "{b:#}");
    assert!(b["built_after_s"].as_f64().expect("built") >= 0.5, "{b:#}");
    // The consumer reads far faster than 10k/s: drained well before the end.
    assert!(b["drain_s"].as_f64().is_some(), "{b:#}");
    assert_eq!(b["drained_while_producing"], true, "{b:#}");
}

#[test]
fn each_consumer_group_reads_every_record() {
    let kafka = env("DATASTORM_TEST_KAFKA");
    let topic = fresh_topic("groups");
    let report = scratch("groups").join("report.json");
    let mut cmd = datastorm();
    cmd.args(["produce", "--bootstrap", &kafka, "--topic", &topic])
        .args(["--create-topic", "--partitions", "4", "--cores", "1"])
        .args(["--rate", "5k", "--duration", "3s", "--acks", "1"])
        .args([
            "--consumers",
            "2",
            "--consumer-groups",
            "2",
            "-q",
            "--report",
        ])
        .arg(&report);
    run_ok(cmd, "produce --consumer-groups 2");
    let r = read_json(&report);
    let acked = r["results"]["records_acked"].as_u64().expect("acked");
    let c = &r["consume"];
    assert_eq!(c["records"].as_u64(), Some(2 * acked), "{c:#}");
    assert_eq!(c["groups"].as_u64(), Some(2));
    assert_eq!(c["consumers"].as_u64(), Some(4));
    assert_eq!(c["e2e_latency"]["count"].as_u64(), Some(2 * acked));
}
