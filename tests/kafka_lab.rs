//! End-to-end against real Apache Kafka brokers from scripts/kafka-lab, checked
//! with Kafka's own tools. scripts/test starts the clusters and sets:
//! DATASTORM_TEST_KAFKA (one broker), DATASTORM_TEST_KAFKA3 (three brokers),
//! DATASTORM_TEST_SINGLE / DATASTORM_TEST_TRIO (their lab names).
#![cfg(feature = "lab-tests")]

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// Tests that kill and restart brokers run alone: any other test would see
/// its cluster go away under it. The rest share the clusters freely.
static CLUSTERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    CLUSTERS.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    CLUSTERS.write().unwrap_or_else(|e| e.into_inner())
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

/// `datastorm produce` to a lab cluster into a topic it creates, with
/// `partitions` partitions, on 2 cores, `count` records, then `extra` flags.
fn produce_to(
    bootstrap: &str,
    topic: &str,
    partitions: &str,
    count: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--create-topic",
    ])
    .args([
        "--partitions",
        partitions,
        "--cores",
        "2",
        "--count",
        count,
        "--quiet",
    ])
    .args(extra);
    cmd
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
    let mut cmd = produce_to(
        &bootstrap,
        s.topic,
        "8",
        "1000000",
        &[
            "--replication-factor",
            s.replication,
            "--record-size",
            "100",
            "--compression",
            "lz4",
            "--acks",
            s.acks,
            "--report",
        ],
    );
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
    assert_eq!(doc["schema"], "datastorm.run/2");
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
    let _lab = shared();
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
    let _lab = shared();
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
    let _lab = shared();
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
    let _lab = shared();
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
    let _lab = shared();
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
    let _lab = shared();
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

#[test]
fn keys_headers_and_sequence_numbers_land_as_promised() {
    let _lab = shared();
    let cluster = env("DATASTORM_TEST_SINGLE");
    let topic = "e2e-keys-headers";
    let cmd = produce_to(
        &env("DATASTORM_TEST_KAFKA"),
        topic,
        "4",
        "20000",
        &[
            "--key",
            "uniform:50",
            "--header",
            "env=lab",
            "--sequence-header",
            "--acks",
            "all",
        ],
    );
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Read everything back with Kafka's console consumer:
    // Partition:P <TAB> headers <TAB> key <TAB> value
    let dump = lab(&[
        "consume",
        topic,
        "--name",
        &cluster,
        "--max",
        "20000",
        "--timeout-ms",
        "30000",
        "--details",
    ]);
    let mut key_partitions: std::collections::BTreeMap<String, std::collections::BTreeSet<i32>> =
        Default::default();
    let mut sequences: std::collections::BTreeMap<(u32, i32), Vec<u64>> = Default::default();
    let mut records = 0;
    for line in dump.lines() {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        assert_eq!(f.len(), 4, "line {line:?}");
        let partition: i32 = f[0]
            .trim_start_matches("Partition:")
            .parse()
            .expect("partition");
        let headers: Vec<&str> = f[1].split(',').collect();
        assert!(headers.contains(&"env:lab"), "static header in {line:?}");
        let seq = headers
            .iter()
            .find_map(|h| h.strip_prefix("ds-seq:"))
            .unwrap_or_else(|| panic!("sequence header in {line:?}"));
        let parts: Vec<u64> = seq.split('/').map(|x| x.parse().expect("number")).collect();
        assert_eq!(parts.len(), 5, "{seq}");
        assert_eq!((parts[0], parts[1]), (1, 0), "version and instance");
        assert_eq!(
            parts[3] as i32, partition,
            "the header names the partition it is in"
        );
        sequences
            .entry((parts[2] as u32, partition))
            .or_default()
            .push(parts[4]);
        key_partitions
            .entry(f[2].to_owned())
            .or_default()
            .insert(partition);
        assert_eq!(f[3].len(), 100);
        records += 1;
    }
    assert_eq!(records, 20_000);
    // uniform:50: at most 50 distinct keys, each always in the same partition.
    assert!(
        key_partitions.len() <= 50 && key_partitions.len() >= 45,
        "{} keys",
        key_partitions.len()
    );
    for (k, ps) in &key_partitions {
        assert_eq!(ps.len(), 1, "key {k} went to partitions {ps:?}");
    }
    // Per shard and partition, the sequence numbers are exactly 0..n: nothing lost or doubled.
    let mut total = 0;
    for ((shard, p), mut seqs) in sequences {
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert!(
            seqs.iter().copied().eq(0..n),
            "shard {shard} partition {p}: gaps or duplicates"
        );
        total += n;
    }
    assert_eq!(total, 20_000);
}

/// Runs tests/lab/avro_consume.py (librdkafka + fastavro) and returns its summary.
fn avro_consume(topic: &str, schema: &str, expect: u64, fields: &[&str]) -> serde_json::Value {
    avro_consume_keyed(topic, schema, expect, fields, None)
}

/// [`avro_consume`], also checking that keys are `key_field`'s string form
/// placed by Kafka's default partitioner.
fn avro_consume_keyed(
    topic: &str,
    schema: &str,
    expect: u64,
    fields: &[&str],
    key_field: Option<&str>,
) -> serde_json::Value {
    let mut cmd = Command::new(env("DATASTORM_TEST_PYTHON"));
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/lab/avro_consume.py"
    ))
    .args([
        "--bootstrap",
        &env("DATASTORM_TEST_KAFKA"),
        "--topic",
        topic,
        "--schema",
        schema,
    ])
    .args(["--expect", &expect.to_string()]);
    for f in fields {
        cmd.args(["--field", f]);
    }
    if let Some(k) = key_field {
        cmd.args(["--key-field", k]);
    }
    let (out, _) = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "consumer failed: {}",
        text(&out.stderr)
    );
    serde_json::from_str(text(&out.stdout).trim()).expect("summary JSON")
}

#[test]
fn avro_orders_and_users_decode_with_an_independent_client() {
    let _lab = shared();
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
    let produce = |topic: &str, schema: &str, count: &str, key: &str, id: &str| {
        let mut cmd = produce_to(
            &env("DATASTORM_TEST_KAFKA"),
            topic,
            "4",
            count,
            &[
                "--key",
                key,
                "--encoding",
                "confluent",
                "--schema-id",
                id,
                "--acks",
                "all",
                "--schema",
            ],
        );
        cmd.arg(format!("{schemas}/{schema}"));
        let (out, _) = run_bounded(cmd, Duration::from_secs(120));
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    produce("e2e-avro-users", "users.avsc", "2000", "none", "11");
    produce(
        "e2e-avro-orders",
        "orders.avsc",
        "20000",
        "uniform:100",
        "12",
    );

    let users = avro_consume(
        "e2e-avro-users",
        &format!("{schemas}/users.avsc"),
        2000,
        &["user_id"],
    );
    assert_eq!(users["count"], 2000, "{users}");
    assert_eq!(users["errors"], serde_json::json!([]), "{users}");
    assert_eq!(users["schema_ids"], serde_json::json!([11]));
    let user_ids: Vec<String> = serde_json::from_value(users["fields"]["user_id"].clone()).unwrap();
    assert!(
        user_ids.iter().all(|u| u.starts_with("user-")),
        "{user_ids:?}"
    );

    let orders = avro_consume(
        "e2e-avro-orders",
        &format!("{schemas}/orders.avsc"),
        20000,
        &["user_id"],
    );
    assert_eq!(orders["count"], 20000, "{orders}");
    assert_eq!(orders["errors"], serde_json::json!([]), "{orders}");
    assert_eq!(orders["schema_ids"], serde_json::json!([12]));
    // Keys: uniform over 100, each key in one partition.
    let keys = orders["distinct_keys"].as_u64().unwrap();
    assert!((90..=100).contains(&keys), "{keys} distinct keys");
    assert_eq!(
        orders["keys_in_more_than_one_partition"],
        serde_json::json!([])
    );
    // References: every order's user_id is a user id the users stream makes (user-1..user-1000).
    let order_users: Vec<String> =
        serde_json::from_value(orders["fields"]["user_id"].clone()).unwrap();
    assert!(
        order_users.len() > 100,
        "orders spread over many users: {}",
        order_users.len()
    );
    for u in &order_users {
        let n: u32 = u
            .strip_prefix("user-")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!((1..=1000).contains(&n), "order refers to unknown user {u}");
    }
}

/// A run file with two schema streams keyed by the same field: every key is
/// the record's user_id, every record sits where Kafka's partitioner puts its
/// key (so users and orders are co-partitioned), and orders refer to users.
/// `--verify` reads both topics back and finds every record once.
#[test]
fn a_run_file_streams_users_and_orders_keyed_by_user_id() {
    let _lab = shared();
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
    let dir = scratch("lab-run-file");
    let run = dir.join("shop.toml");
    let report = dir.join("run.json");
    std::fs::write(
        &run,
        format!(
            r#"
[run]
count = 30000
acks = "all"
create_topic = true
partitions = 6

[[stream]]
name = "users"
topic = "e2e-rf-users"
schema = "{schemas}/users.avsc"
encoding = "confluent"
schema_id = 21
key = "field:user_id"

[[stream]]
name = "orders"
topic = "e2e-rf-orders"
schema = "{schemas}/orders.avsc"
encoding = "confluent"
schema_id = 22
key = "field:user_id"
share = 2
"#
        ),
    )
    .expect("write run file");
    let mut cmd = datastorm();
    cmd.args([
        "produce",
        "--bootstrap",
        &env("DATASTORM_TEST_KAFKA"),
        "--cores",
        "2",
        "--quiet",
        "--verify",
        "--report",
    ])
    .arg(&report)
    .arg("--run-file")
    .arg(&run);
    let (out, _) = run_bounded(cmd, Duration::from_secs(180));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(
        stdout
            .matches("acknowledged records is there exactly once")
            .count(),
        2,
        "{stdout}"
    );
    let doc = read_json(&report);
    let verified = doc["verify"].as_array().expect("a verify entry per stream");
    let mut topics: Vec<(&str, u64, u64, u64)> = verified
        .iter()
        .map(|v| {
            (
                v["topic"].as_str().unwrap_or("?"),
                v["records_read"].as_u64().unwrap_or(0),
                v["acked_checked"].as_u64().unwrap_or(0),
                v["acked_missing"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        [
            ("e2e-rf-orders", 20_000, 20_000, 0),
            ("e2e-rf-users", 10_000, 10_000, 0)
        ],
        "{}",
        doc["verify"]
    );

    let users = avro_consume_keyed(
        "e2e-rf-users",
        &format!("{schemas}/users.avsc"),
        10_000,
        &["user_id"],
        Some("user_id"),
    );
    let orders = avro_consume_keyed(
        "e2e-rf-orders",
        &format!("{schemas}/orders.avsc"),
        20_000,
        &["user_id"],
        Some("user_id"),
    );
    for (name, s, count, id) in [
        ("users", &users, 10_000, 21),
        ("orders", &orders, 20_000, 22),
    ] {
        assert_eq!(s["count"], count, "{name}: {s}");
        assert_eq!(s["errors"], serde_json::json!([]), "{name}: {s}");
        assert_eq!(s["schema_ids"], serde_json::json!([id]), "{name}");
        assert_eq!(s["partitions"], 6, "{name}");
        assert_eq!(s["key_mismatches"], serde_json::json!([]), "{name}: {s}");
        assert_eq!(
            s["partitioner_mismatches"],
            serde_json::json!([]),
            "{name}: {s}"
        );
        assert_eq!(
            s["keys_in_more_than_one_partition"],
            serde_json::json!([]),
            "{name}"
        );
    }
    // Co-partitioned: a user's orders are in the partition of the user.
    let user_part = users["key_partitions"].as_object().expect("key partitions");
    let order_part = orders["key_partitions"]
        .as_object()
        .expect("key partitions");
    let mut shared = 0;
    for (user, p) in order_part {
        if let Some(q) = user_part.get(user) {
            assert_eq!(p, q, "user {user}");
            shared += 1;
        }
    }
    assert!(
        shared > 100,
        "orders name users the users stream produced ({shared})"
    );
    let users_ids: std::collections::BTreeSet<String> =
        serde_json::from_value(users["fields"]["user_id"].clone()).unwrap();
    let order_users: Vec<String> =
        serde_json::from_value(orders["fields"]["user_id"].clone()).unwrap();
    assert!(
        order_users.iter().all(|u| u.starts_with("user-")),
        "{order_users:?}"
    );
    // 10,000 draws from the 1000-user key set leave out almost none.
    assert!(users_ids.len() > 990, "{} users", users_ids.len());
    assert!(
        order_users.iter().all(|u| u
            .strip_prefix("user-")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=1000).contains(&n))),
        "every order refers to a user of the users key set"
    );
}

/// Three instances of one plan at once against one broker: each writes its
/// own partitions (read back from the records' sequence headers), and
/// together they produce at the global rate.
#[test]
fn three_instances_split_partitions_and_rate() {
    let _lab = shared();
    let cluster = env("DATASTORM_TEST_SINGLE");
    // A fresh topic each time, so the counts below are this run's.
    let topic = format!(
        "e2e-instances-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let topic = topic.as_str();
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = datastorm();
            cmd.args(["produce", "--bootstrap", &env("DATASTORM_TEST_KAFKA")])
                .args(["--topic", topic, "--create-topic", "--partitions", "6"])
                .args(["--cores", "1", "--rate", "30k", "--duration", "5s"])
                .args(["--sequence-header", "--acks", "all", "--quiet"])
                .args(["--instances", "3", "--instance", &i.to_string()]);
            std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(120)))
        })
        .collect();
    for c in children {
        let (out, _) = c.join().expect("instance thread");
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let total: i64 = end_offsets(&cluster, topic).iter().map(|(_, o)| o).sum();
    // 30k/s for 5 s, split three ways: 150,000 records in all.
    assert!(
        (149_250..=150_750).contains(&total),
        "{total} records, expected 150,000 within 0.5%"
    );
    let dump = lab(&[
        "consume",
        topic,
        "--name",
        &cluster,
        "--max",
        &total.to_string(),
        "--timeout-ms",
        "60000",
        "--details",
    ]);
    let mut writers: std::collections::BTreeMap<i32, std::collections::BTreeSet<u64>> =
        Default::default();
    let mut sequences: std::collections::BTreeMap<(u64, u64, i32), Vec<u64>> = Default::default();
    for line in dump.lines() {
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        let partition: i32 = f[0]
            .trim_start_matches("Partition:")
            .parse()
            .expect("partition");
        let seq = f[1]
            .split(',')
            .find_map(|h| h.strip_prefix("ds-seq:"))
            .unwrap_or_else(|| panic!("sequence header in {line:?}"));
        let p: Vec<u64> = seq.split('/').map(|x| x.parse().expect("number")).collect();
        writers.entry(partition).or_default().insert(p[1]);
        sequences
            .entry((p[1], p[2], partition))
            .or_default()
            .push(p[4]);
    }
    assert_eq!(writers.len(), 6, "every partition written: {writers:?}");
    for (partition, w) in &writers {
        assert_eq!(
            w.len(),
            1,
            "partition {partition} written by instances {w:?}"
        );
    }
    let mut per_instance = [0usize; 3];
    for w in writers.values() {
        per_instance[*w.iter().next().unwrap() as usize] += 1;
    }
    assert_eq!(per_instance, [2, 2, 2], "two partitions per instance");
    for ((i, s, p), mut seqs) in sequences {
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert!(
            seqs.iter().copied().eq(0..n),
            "instance {i} shard {s} partition {p}: gaps or duplicates"
        );
    }
}

#[test]
fn every_codec_is_accepted_by_kafka_and_read_back_by_its_consumer() {
    let _lab = shared();
    let cluster = env("DATASTORM_TEST_SINGLE");
    let topic = "e2e-codecs";
    // One value size per codec, so the consumer's output tells them apart.
    let codecs: [(&[&str], usize); 6] = [
        (&["--compression", "none"], 100),
        (&["--compression", "gzip", "--compression-level", "1"], 101),
        (&["--compression", "snappy"], 102),
        (&["--compression", "lz4"], 103),
        (&["--compression", "zstd"], 104),
        (&["--compression", "zstd", "--compression-level", "12"], 105),
    ];
    let dir = scratch(topic);
    for (flags, size) in codecs {
        let report = dir.join(format!("{size}.json"));
        let size_text = size.to_string();
        let mut extra = vec!["--record-size", &size_text, "--acks", "all"];
        extra.extend_from_slice(flags);
        let mut cmd = produce_to(&env("DATASTORM_TEST_KAFKA"), topic, "2", "100000", &extra);
        cmd.arg("--report").arg(&report);
        let (out, _) = run_bounded(cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{flags:?}:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let doc = read_json(&report);
        let r = &doc["results"];
        assert_eq!(r["records_acked"], 100_000, "{flags:?}");
        assert_eq!(r["compression"]["codec"], flags[1]);
        let ratio = r["compression"]["ratio"].as_f64().unwrap();
        assert!(ratio > 0.9, "{flags:?}: ratio {ratio}");
        if flags.len() == 4 {
            assert_eq!(r["compression"]["level"].to_string(), flags[3]);
        }
    }
    let total: i64 = end_offsets(&cluster, topic).iter().map(|(_, o)| o).sum();
    assert_eq!(total, 600_000);

    // Kafka's console consumer decompresses every batch.
    let values = lab(&[
        "consume",
        topic,
        "--name",
        &cluster,
        "--max",
        "600000",
        "--timeout-ms",
        "60000",
    ]);
    let mut by_size = std::collections::BTreeMap::<usize, usize>::new();
    for v in values.lines() {
        assert!(v.bytes().all(|b| (b'!'..=b'~').contains(&b)), "{v:?}");
        *by_size.entry(v.len()).or_default() += 1;
    }
    let expected: std::collections::BTreeMap<usize, usize> =
        codecs.iter().map(|(_, size)| (*size, 100_000)).collect();
    assert_eq!(by_size, expected, "records read back, by value size");
}

/// Runs `produce` in the background while `fault` runs on this thread;
/// returns produce's output.
fn produce_through(cmd: Command, fault: impl FnOnce()) -> std::process::Output {
    let runner = std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(240)));
    fault();
    let (out, _) = runner.join().expect("produce thread");
    out
}

fn lab_node(action: &str, cluster: &str, node: &str) {
    lab(&[action, "--name", cluster, "--node", node]);
}

/// Runs `produce` (`cmd`) while broker `node` of `cluster` is killed
/// (SIGKILL) after `after_s` seconds and started again `down_s` seconds
/// later; returns produce's output.
fn produce_through_outage(
    cmd: Command,
    cluster: &str,
    node: &str,
    after_s: u64,
    down_s: u64,
) -> std::process::Output {
    produce_through(cmd, || {
        std::thread::sleep(Duration::from_secs(after_s));
        lab_node("kill-node", cluster, node);
        std::thread::sleep(Duration::from_secs(down_s));
        lab_node("start-node", cluster, node);
    })
}

/// One broker restarted mid-run: records acknowledged before the restart
/// are there afterwards, and the run resumes and finishes.
#[test]
fn a_restarted_single_broker_keeps_acked_records_and_the_run_resumes() {
    let _lab = exclusive();
    let cluster = env("DATASTORM_TEST_SINGLE");
    let topic = fresh_topic("e2e-restart");
    let mut cmd = datastorm();
    cmd.args(["produce", "--bootstrap", &env("DATASTORM_TEST_KAFKA")])
        .args(["--topic", &topic, "--create-topic", "--partitions", "4"])
        .args(["--acks", "all", "--cores", "1", "--rate", "10k"])
        .args(["--duration", "20s", "--quiet", "--verify"]);
    let out = produce_through_outage(cmd, &cluster, "1", 6, 3);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("acknowledged records is there exactly once"),
        "{stdout}"
    );
    let acked: u64 = stdout
        .lines()
        .find(|l| l.contains("records acked"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.replace(',', "").parse().ok())
        .expect("records acked line");
    assert!(acked >= 150_000, "the run resumed: {acked} records");
}

/// With acks=1, a killed leader can take acknowledged records with it; the
/// tool says how many (it may be none), instead of hiding it.
#[test]
fn acks_1_with_a_killed_leader_states_how_many_acked_records_were_lost() {
    let _lab = exclusive();
    let cluster = env("DATASTORM_TEST_TRIO");
    let topic = fresh_topic("e2e-acks1-kill");
    let dir = scratch("lab-acks1-kill");
    let report = dir.join("run.json");
    let mut cmd = datastorm();
    cmd.args(["produce", "--bootstrap", &env("DATASTORM_TEST_KAFKA3")])
        .args(["--topic", &topic, "--create-topic", "--partitions", "3"])
        .args(["--replication-factor", "3", "--acks", "1"])
        .args(["--cores", "1", "--rate", "20k", "--duration", "15s"])
        .args([
            "--request-timeout",
            "10s",
            "--quiet",
            "--verify",
            "--report",
        ])
        .arg(&report);
    let out = produce_through_outage(cmd, &cluster, "3", 5, 5);
    let stdout = text(&out.stdout);
    let doc = read_json(&report);
    let v = &doc["verify"][0];
    let lost = v["acked_missing"]
        .as_u64()
        .expect("a count of lost records");
    let checked = v["acked_checked"].as_u64().expect("acked records checked");
    assert_eq!(checked, doc["results"]["records_acked"].as_u64().unwrap());
    if lost == 0 {
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("exactly once"), "{stdout}");
    } else {
        assert_eq!(
            out.status.code(),
            Some(1),
            "lost acked records fail the run"
        );
        assert!(stdout.contains("missing (lost)"), "{lost} lost:\n{stdout}");
    }
}
