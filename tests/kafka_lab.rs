//! End-to-end against real Apache Kafka brokers from scripts/kafka-lab, checked
//! with Kafka's own tools. scripts/test starts the clusters and sets:
//! DATASTORM_TEST_KAFKA (one broker), DATASTORM_TEST_KAFKA3 (three brokers),
//! DATASTORM_TEST_SINGLE / DATASTORM_TEST_TRIO (their lab names).
#![cfg(feature = "lab-tests")]

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run these tests through scripts/test, which starts the Kafka lab"
        )
    })
}

fn lab(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka-lab");
    let mut cmd = Command::new(script);
    cmd.args(args);
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "kafka-lab {args:?} failed:\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// End offsets per partition, read with Kafka's GetOffsetShell.
fn end_offsets(cluster: &str, topic: &str) -> Vec<(i32, i64)> {
    lab(&["offsets", topic, "--name", cluster])
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

struct Scenario {
    cluster_env: &'static str,
    name_env: &'static str,
    topic: &'static str,
    acks: &'static str,
    replication: &'static str,
}

fn produce_a_million(s: Scenario) {
    let bootstrap = env(s.cluster_env);
    let cluster = env(s.name_env);
    let dir = scratch(s.topic);
    let report = dir.join("run.json");
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--bootstrap",
        &bootstrap,
        "--topic",
        s.topic,
        "--create-topic",
        "--partitions",
        "8",
        "--replication-factor",
        s.replication,
        "--cores",
        "2",
        "--count",
        "1000000",
        "--record-size",
        "100",
        "--compression",
        "lz4",
        "--acks",
        s.acks,
        "--quiet",
        "--report",
    ]);
    cmd.arg(&report);
    let (out, _) = run_bounded(cmd, Duration::from_secs(240));
    assert!(
        out.status.success(),
        "produce failed:\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // What DataStorm says it did.
    let doc = read_json(&report);
    assert_eq!(doc["schema"], "datastorm.run/1");
    assert_eq!(doc["results"]["records_acked"], 1_000_000);
    assert_eq!(doc["results"]["records_failed"], 0);
    assert_eq!(doc["shards"].as_array().unwrap().len(), 2);
    assert!(doc["results"]["latency"]["count"].as_u64().unwrap() >= 1_000_000);

    // What Kafka says landed.
    let offsets = end_offsets(&cluster, s.topic);
    assert_eq!(offsets.len(), 8, "8 partitions: {offsets:?}");
    let total: i64 = offsets.iter().map(|(_, o)| o).sum();
    assert_eq!(total, 1_000_000, "end offsets {offsets:?}");
    assert!(
        offsets.iter().all(|(_, o)| *o > 0),
        "every partition got records: {offsets:?}"
    );

    // And what a consumer reads back.
    let values = lab(&[
        "consume",
        s.topic,
        "--name",
        &cluster,
        "--max",
        "2000",
        "--timeout-ms",
        "30000",
    ]);
    let lines: Vec<&str> = values.lines().collect();
    assert_eq!(lines.len(), 2000, "consumed records");
    for v in lines {
        assert_eq!(v.len(), 100, "value {v:?}");
        assert!(v.bytes().all(|b| (b'!'..=b'~').contains(&b)));
    }
}

#[test]
fn a_million_records_acks_all_on_one_broker() {
    produce_a_million(Scenario {
        cluster_env: "DATASTORM_TEST_KAFKA",
        name_env: "DATASTORM_TEST_SINGLE",
        topic: "e2e-single-acks-all",
        acks: "all",
        replication: "1",
    });
}

#[test]
fn a_million_records_acks_1_on_one_broker() {
    produce_a_million(Scenario {
        cluster_env: "DATASTORM_TEST_KAFKA",
        name_env: "DATASTORM_TEST_SINGLE",
        topic: "e2e-single-acks-1",
        acks: "1",
        replication: "1",
    });
}

#[test]
fn a_million_records_acks_all_on_three_brokers_rf3() {
    produce_a_million(Scenario {
        cluster_env: "DATASTORM_TEST_KAFKA3",
        name_env: "DATASTORM_TEST_TRIO",
        topic: "e2e-trio-acks-all",
        acks: "all",
        replication: "3",
    });
}

#[test]
fn a_million_records_acks_1_on_three_brokers_rf3() {
    produce_a_million(Scenario {
        cluster_env: "DATASTORM_TEST_KAFKA3",
        name_env: "DATASTORM_TEST_TRIO",
        topic: "e2e-trio-acks-1",
        acks: "1",
        replication: "3",
    });
}

#[test]
fn a_missing_topic_says_how_to_create_it() {
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--bootstrap",
        &env("DATASTORM_TEST_KAFKA"),
        "--topic",
        "no-such-topic",
        "--count",
        "10",
    ]);
    let (out, _) = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("topic 'no-such-topic' does not exist"),
        "{err}"
    );
    assert!(err.contains("--create-topic"), "{err}");
}

#[test]
fn a_batch_over_the_broker_limit_is_named_and_still_reported() {
    let dir = scratch("too-large");
    let report = dir.join("run.json");
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--bootstrap",
        &env("DATASTORM_TEST_KAFKA"),
        "--topic",
        "e2e-too-large",
        "--create-topic",
        "--partitions",
        "1",
        "--cores",
        "1",
        "--count",
        "20000",
        "--record-size",
        "1000",
        "--compression",
        "none",
        "--batch-size",
        "4MiB",
        "--linger",
        "1s",
        "--quiet",
        "--report",
    ]);
    cmd.arg(&report);
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("MESSAGE_TOO_LARGE") || err.contains("RECORD_LIST_TOO_LARGE"),
        "{err}"
    );
    assert!(err.contains("--batch-size"), "{err}");
    // The summary and the report are still written.
    assert!(text(&out.stdout).contains("DataStorm produce summary"));
    let doc = read_json(&report);
    assert!(doc["results"]["failure"]
        .as_str()
        .unwrap()
        .contains("TOO_LARGE"));
    assert!(doc["results"]["records_failed"].as_u64().unwrap() > 0);
}
