//! The consumer engine against a real Apache Kafka broker (scripts/kafka-lab).
//! DATASTORM_TEST_KAFKA names it (scripts/test's single-broker cluster,
//! 127.0.0.1:19092 when unset). Each test writes its own fresh topic with
//! the producer's library API (sequence headers on), then reads it back.
#![cfg(feature = "lab-tests")]

use datastorm_engine::batch::Compression;
use datastorm_engine::cluster::TopicSpec;
use datastorm_engine::runtime::allowed_cpus;
use datastorm_engine::wire::fetch::Isolation;
use datastorm_shards::consume::{run_consume, ConsumeOutcome, ConsumePlan, StartFrom};
use datastorm_shards::plan::{Acks, RunPlan};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bootstrap() -> String {
    std::env::var("DATASTORM_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".to_owned())
}

/// "a:1,b:2" as a list.
fn servers(bootstrap: &str) -> Vec<String> {
    bootstrap.split(',').map(str::to_owned).collect()
}

/// A topic name no earlier run used.
fn fresh_topic(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("consume-{what}-{}-{nanos}", std::process::id())
}

/// The tests that restart the broker run alone; the rest share it.
static BROKER: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    BROKER.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    BROKER.write().unwrap_or_else(|e| e.into_inner())
}

/// The lab cluster's name (DATASTORM_TEST_SINGLE, as scripts/test sets it).
fn cluster_name() -> String {
    std::env::var("DATASTORM_TEST_SINGLE").unwrap_or_else(|_| "ds-test-single".to_owned())
}

/// Runs scripts/kafka-lab (its commands bound their own waits).
fn lab(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-lab");
    let out = std::process::Command::new(script)
        .args(args)
        .output()
        .expect("kafka-lab runs");
    assert!(
        out.status.success(),
        "kafka-lab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `count` records with sequence headers to a new topic of
/// `partitions` partitions.
fn produce(topic: &str, partitions: i32, count: u64, codec: Compression) {
    produce_to(topic, Some(partitions), count, codec);
}

/// Writes `count` records with sequence headers to `topic`, creating it
/// with `partitions` partitions when given.
fn produce_to(topic: &str, partitions: Option<i32>, count: u64, codec: Compression) {
    produce_on(
        &bootstrap(),
        topic,
        partitions.map(|p| (p, 1)),
        count,
        codec,
    );
}

/// Writes `count` records with sequence headers to `topic` on `bootstrap`,
/// creating it with (partitions, replication factor) when given.
fn produce_on(
    bootstrap: &str,
    topic: &str,
    create: Option<(i32, i16)>,
    count: u64,
    codec: Compression,
) {
    let mut plan = RunPlan::new(servers(bootstrap), topic);
    plan.cpus = vec![allowed_cpus()[0]];
    plan.compression = codec;
    // Idempotent: a retried batch cannot land behind a later one, so the
    // sequence numbers read back must be in order too.
    plan.acks = Acks::All;
    plan.idempotent = true;
    plan.stop.count = Some(count);
    plan.stop.duration = Some(Duration::from_secs(60));
    let s = plan.stream_mut();
    s.sequence_header = true;
    s.create_topic = create.map(|(partitions, replication_factor)| TopicSpec {
        name: topic.to_owned(),
        partitions,
        replication_factor,
    });
    let out = datastorm_shards::run::run(plan, Arc::new(AtomicBool::new(false)), |_| {})
        .expect("produce runs");
    assert_eq!(out.failure, None);
    assert_eq!(out.totals.records_acked, count, "all records acknowledged");
}

/// Reads `topic` from `from` to the end it has at the start, on `cpus`.
fn consume(topic: &str, cpus: Vec<usize>, from: StartFrom) -> ConsumeOutcome {
    let mut plan = ConsumePlan::new(servers(&bootstrap()), topic);
    plan.cpus = cpus;
    plan.from = from;
    plan.stop.until_end = true;
    plan.stop.duration = Some(Duration::from_secs(60));
    plan.check_sequences = true;
    let started = Instant::now();
    let mut last = None;
    let out = run_consume(plan, Arc::new(AtomicBool::new(false)), |p| {
        last = Some(p.totals)
    })
    .expect("consume runs");
    let last = last.expect("at least the final progress point");
    assert_eq!(
        last.records, out.totals.records,
        "the last point has it all"
    );
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "until_end ended the run, not the duration"
    );
    out
}

/// Every record there exactly once, by count and by sequence header.
fn assert_exact(out: &ConsumeOutcome, count: u64, partitions: usize) {
    assert_eq!(out.failure, None, "errors: {:?}", out.errors);
    assert_eq!(out.totals.records, count, "records read");
    assert_eq!(out.partitions.len(), partitions);
    let distinct: u64 = out.sequences.values().map(|c| c.distinct).sum();
    assert_eq!(distinct, count, "distinct sequence numbers");
    for (producer, c) in &out.sequences {
        assert!(
            c.exact(),
            "{producer:?}: {} records, {} distinct, {} gaps, {} duplicates, {} out of order, {} \
             in another partition",
            c.records,
            c.distinct,
            c.gaps,
            c.duplicates,
            c.out_of_order,
            c.wrong_partition
        );
    }
    let ends: i64 = out
        .shards
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.next_offset)
        .sum();
    assert_eq!(
        ends, count as i64,
        "next offsets add up to what was written"
    );
    assert!(out.totals.fetch_requests >= partitions as u64 / 8);
    assert_eq!(
        out.totals.records_untimed, count,
        "written without the ds-t stamp"
    );
}

#[test]
fn every_codec_reads_back_exactly() {
    let _shared = shared();
    let codecs = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip { level: 6 }),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd { level: 3 }),
    ];
    for (name, codec) in codecs {
        let topic = fresh_topic(name);
        produce(&topic, 4, 20_000, codec);
        let out = consume(&topic, vec![allowed_cpus()[0]], StartFrom::Earliest);
        assert_exact(&out, 20_000, 4);
        let v = out.shards[0].fetch_version.expect("fetched");
        assert!(v >= 13, "Kafka 4 speaks Fetch v13+ (topic ids): v{v}");
    }
}

#[test]
fn two_shards_split_the_partitions() {
    let _shared = shared();
    let cpus: Vec<usize> = allowed_cpus().into_iter().take(2).collect();
    if cpus.len() < 2 {
        eprintln!("one CPU only: skipped");
        return;
    }
    let topic = fresh_topic("two-shards");
    produce(&topic, 6, 30_000, Compression::Lz4);
    let out = consume(&topic, cpus, StartFrom::Earliest);
    assert_exact(&out, 30_000, 6);
    assert_eq!(out.shards.len(), 2);
    let owned: Vec<Vec<i32>> = out
        .shards
        .iter()
        .map(|s| s.partitions.iter().map(|p| p.partition).collect())
        .collect();
    assert_eq!(owned, vec![vec![0, 2, 4], vec![1, 3, 5]]);
    assert!(out.shards.iter().all(|s| s.counters.records > 0));
}

#[test]
fn a_start_beyond_the_end_is_reset_to_the_earliest_offset() {
    let _shared = shared();
    let topic = fresh_topic("out-of-range");
    produce(&topic, 2, 5_000, Compression::Lz4);
    let out = consume(
        &topic,
        vec![allowed_cpus()[0]],
        StartFrom::Offset(1_000_000),
    );
    assert_exact(&out, 5_000, 2);
    assert!(
        out.errors
            .get("OFFSET_OUT_OF_RANGE")
            .is_some_and(|n| *n >= 2),
        "{:?}",
        out.errors
    );
    for p in out.shards.iter().flat_map(|s| &s.partitions) {
        assert!(p.resets >= 1, "partition {} was reset", p.partition);
        assert_eq!(p.lag(), 0);
    }
}

#[test]
fn latest_reads_nothing_of_the_past() {
    let _shared = shared();
    let topic = fresh_topic("latest");
    produce(&topic, 2, 1_000, Compression::None);
    let out = consume(&topic, vec![allowed_cpus()[0]], StartFrom::Latest);
    assert_eq!(out.failure, None);
    assert_eq!(out.totals.records, 0);
    let ends: i64 = out
        .shards
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.start_offset)
        .sum();
    assert_eq!(ends, 1_000, "started at the end");
}

#[test]
fn a_broker_restart_is_ridden_out() {
    let _alone = exclusive();
    let name = cluster_name();
    let topic = fresh_topic("restart");
    produce(&topic, 4, 1_000, Compression::Lz4);
    let mut plan = ConsumePlan::new(servers(&bootstrap()), topic.as_str());
    plan.cpus = vec![allowed_cpus()[0]];
    plan.from = StartFrom::Latest;
    plan.stop.count = Some(10_000);
    plan.stop.duration = Some(Duration::from_secs(120));
    plan.check_sequences = true;
    let consumer = std::thread::spawn(move || {
        run_consume(plan, Arc::new(AtomicBool::new(false)), |_| {}).expect("consume runs")
    });
    // Positioned and fetching (held by the broker for max wait) by now.
    std::thread::sleep(Duration::from_secs(2));
    lab(&["kill-node", "--node", "1", "--name", &name]);
    std::thread::sleep(Duration::from_secs(1));
    lab(&["start-node", "--node", "1", "--name", &name]);
    lab(&["wait-healthy", "--name", &name, "--timeout", "90"]);
    produce_to(&topic, None, 10_000, Compression::Lz4);
    let out = consumer.join().expect("consumer thread");
    assert_eq!(out.failure, None, "errors: {:?}", out.errors);
    assert_eq!(
        out.totals.records, 10_000,
        "only what was written after the start"
    );
    assert!(
        out.errors.get("connection").is_some_and(|n| *n >= 1),
        "{:?}",
        out.errors
    );
    assert!(out.totals.reconnects >= 1);
    let distinct: u64 = out.sequences.values().map(|c| c.distinct).sum();
    assert_eq!(distinct, 10_000);
    assert!(out.sequences_exact());
}

#[test]
fn read_committed_reads_plain_records_to_the_end() {
    let _shared = shared();
    let topic = fresh_topic("committed");
    produce(&topic, 3, 6_000, Compression::Zstd { level: 3 });
    let mut plan = ConsumePlan::new(servers(&bootstrap()), topic.as_str());
    plan.cpus = vec![allowed_cpus()[0]];
    plan.fetch.isolation = Isolation::ReadCommitted;
    plan.stop.until_end = true;
    plan.stop.duration = Some(Duration::from_secs(60));
    plan.check_sequences = true;
    let out = run_consume(plan, Arc::new(AtomicBool::new(false)), |_| {}).expect("consume runs");
    // No transactions: the last stable offset is the high watermark.
    assert_exact(&out, 6_000, 3);
}

#[test]
fn a_timestamp_start_skips_what_came_before() {
    let _shared = shared();
    let topic = fresh_topic("timestamp");
    produce(&topic, 2, 1_000, Compression::Snappy);
    std::thread::sleep(Duration::from_millis(50));
    let from_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    std::thread::sleep(Duration::from_millis(50));
    produce_to(&topic, None, 3_000, Compression::Snappy);
    let out = consume(
        &topic,
        vec![allowed_cpus()[0]],
        StartFrom::Timestamp(from_ms),
    );
    assert_eq!(out.failure, None, "{:?}", out.errors);
    assert_eq!(
        out.totals.records, 3_000,
        "only the records after the timestamp"
    );
    let starts: i64 = out
        .shards
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| p.start_offset)
        .sum();
    assert_eq!(starts, 1_000, "started where the second run began");
}

/// The three-broker cluster (DATASTORM_TEST_KAFKA3 and DATASTORM_TEST_TRIO,
/// as scripts/test sets them).
fn trio() -> (String, String) {
    (
        std::env::var("DATASTORM_TEST_KAFKA3").unwrap_or_else(|_| "127.0.0.1:19192".to_owned()),
        std::env::var("DATASTORM_TEST_TRIO").unwrap_or_else(|_| "ds-test-trio".to_owned()),
    )
}

/// Partition leaders of `topic` (kafka-lab leaders: "PARTITION LEADER").
fn leaders(topic: &str, name: &str) -> Vec<(i32, i32)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-lab");
    let out = std::process::Command::new(script)
        .args(["leaders", topic, "--name", name])
        .output()
        .expect("kafka-lab runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_dead_leader_is_replaced() {
    let _alone = exclusive();
    let (boot, name) = trio();
    let topic = fresh_topic("dead-leader");
    produce_on(&boot, &topic, Some((6, 3)), 600, Compression::Lz4);
    let mut plan = ConsumePlan::new(servers(&boot), topic.as_str());
    plan.cpus = vec![allowed_cpus()[0]];
    plan.from = StartFrom::Latest;
    plan.stop.count = Some(30_000);
    plan.stop.duration = Some(Duration::from_secs(150));
    plan.check_sequences = true;
    let consumer = std::thread::spawn(move || {
        run_consume(plan, Arc::new(AtomicBool::new(false)), |_| {}).expect("consume runs")
    });
    std::thread::sleep(Duration::from_secs(2));
    let node1 = leaders(&topic, &name)
        .iter()
        .filter(|(_, l)| *l == 1)
        .count();
    assert!(
        node1 > 0,
        "node 1 leads a partition: {:?}",
        leaders(&topic, &name)
    );
    lab(&["kill-node", "--node", "1", "--name", &name]);
    // Until the controller has fenced node 1 and moved its partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    while leaders(&topic, &name)
        .iter()
        .any(|(_, l)| *l == 1 || *l < 0)
    {
        assert!(Instant::now() < deadline, "leaders never moved");
        std::thread::sleep(Duration::from_millis(500));
    }
    produce_on(&boot, &topic, None, 30_000, Compression::Lz4);
    let out = consumer.join().expect("consumer thread");
    lab(&["start-node", "--node", "1", "--name", &name]);
    lab(&["wait-healthy", "--name", &name, "--timeout", "90"]);
    assert_eq!(out.failure, None, "errors: {:?}", out.errors);
    assert_eq!(out.totals.records, 30_000);
    assert!(out.sequences_exact());
    let distinct: u64 = out.sequences.values().map(|c| c.distinct).sum();
    assert_eq!(distinct, 30_000);
    assert!(
        out.errors.get("connection").is_some_and(|n| *n >= 1),
        "{:?}",
        out.errors
    );
}

#[test]
fn an_idle_consumer_waits_max_wait_per_fetch_and_ends_on_time() {
    let _shared = shared();
    let topic = fresh_topic("idle");
    produce(&topic, 1, 10, Compression::None);
    let mut plan = ConsumePlan::new(servers(&bootstrap()), topic.as_str());
    plan.cpus = vec![allowed_cpus()[0]];
    plan.from = StartFrom::Latest;
    plan.fetch.max_wait = Duration::from_millis(200);
    plan.stop.duration = Some(Duration::from_secs(2));
    let started = Instant::now();
    let out = run_consume(plan, Arc::new(AtomicBool::new(false)), |_| {}).expect("consume runs");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "ended on time: {took:?}");
    assert_eq!(out.failure, None);
    assert_eq!(out.totals.records, 0);
    // About one Fetch per max wait: held by the broker, not spinning.
    let fetches = out.totals.fetch_responses;
    assert!((4..=12).contains(&fetches), "{fetches} fetches in 2 s");
    let p50 = out.fetch_latency.value_at_quantile(0.5);
    assert!((150_000..400_000).contains(&p50), "fetch p50 {p50} µs");
}

#[test]
fn stamped_records_are_timed_end_to_end() {
    let _shared = shared();
    let topic = fresh_topic("e2e");
    let mut plan = RunPlan::new(servers(&bootstrap()), topic.as_str());
    plan.cpus = vec![allowed_cpus()[0]];
    plan.stop.count = Some(8_000);
    let s = plan.stream_mut();
    s.e2e_header = true;
    s.create_topic = Some(TopicSpec {
        name: topic.clone(),
        partitions: 2,
        replication_factor: 1,
    });
    let produced = datastorm_shards::run::run(plan, Arc::new(AtomicBool::new(false)), |_| {})
        .expect("produce runs");
    assert_eq!(produced.totals.records_acked, 8_000);
    let out = consume(&topic, vec![allowed_cpus()[0]], StartFrom::Earliest);
    assert_eq!(out.failure, None);
    assert_eq!(out.totals.records, 8_000);
    assert_eq!(
        out.totals.records_timed, 8_000,
        "this host's stamps are timed"
    );
    assert_eq!(out.totals.records_untimed, 0);
    assert_eq!(out.e2e.len(), 8_000);
    // Written a moment ago: read after it, and well within a minute.
    assert!(
        out.e2e.min() >= 1 && out.e2e.max() < 60_000_000,
        "{}..{} µs",
        out.e2e.min(),
        out.e2e.max()
    );
}
