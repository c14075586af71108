//! The consume path under a counting allocator, against a real broker
//! (DATASTORM_TEST_KAFKA, as in consume_lab.rs): reading five times more
//! records costs allocations per Fetch (request building, the response's
//! decoded structure, glommio's poll sources), not per record.
#![cfg(feature = "lab-tests")]

use datastorm_engine::batch::Compression;
use datastorm_engine::cluster::TopicSpec;
use datastorm_engine::runtime::allowed_cpus;
use datastorm_shards::consume::{ConsumeCounts, ConsumePlan};
use datastorm_shards::plan::RunPlan;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

mod common;
#[path = "support/consume.rs"]
mod support;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

fn bootstrap() -> Vec<String> {
    std::env::var("DATASTORM_TEST_KAFKA")
        .unwrap_or_else(|_| "127.0.0.1:19092".to_owned())
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn produce(topic: &str, count: u64) {
    let mut plan = RunPlan::new(bootstrap(), topic);
    plan.cpus = vec![allowed_cpus()[0]];
    plan.compression = Compression::Lz4;
    plan.stop.count = Some(count);
    plan.stream_mut().create_topic = Some(TopicSpec {
        name: topic.to_owned(),
        partitions: 2,
        replication_factor: 1,
    });
    let out = datastorm_shards::run::run(plan, Arc::new(AtomicBool::new(false)), |_| {})
        .expect("produce runs");
    assert_eq!(out.totals.records_acked, count);
}

/// Reads `topic` to its end on one shard on this thread: (counters,
/// allocations this thread made while the shard ran).
fn consume(topic: &str) -> (ConsumeCounts, u64) {
    let mut plan = ConsumePlan::new(bootstrap(), topic);
    plan.stop.until_end = true;
    plan.stop.duration = Some(Duration::from_secs(60));
    support::consume_counted(plan)
}

#[test]
fn reading_allocates_per_fetch_not_per_record() {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (small, large) = (format!("alloc-s-{stamp}"), format!("alloc-l-{stamp}"));
    produce(&small, 100_000);
    produce(&large, 600_000);
    let (s, a_s) = consume(&small);
    let (l, a_l) = consume(&large);
    assert_eq!((s.records, l.records), (100_000, 600_000));
    let records = l.records - s.records;
    let fetches = l.fetch_responses.saturating_sub(s.fetch_responses).max(1);
    let allocs = a_l.saturating_sub(a_s);
    let per_record = allocs as f64 / records as f64;
    eprintln!(
        "{allocs} more allocations for {records} more records and {fetches} more fetches \
         ({per_record:.5} per record)"
    );
    assert!(per_record < 0.01, "{per_record:.5} allocations per record");
}
