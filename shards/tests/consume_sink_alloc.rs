//! The consume path under a counting allocator against the sink's
//! synthetic records (no broker needed): reading six times more records
//! costs allocations per Fetch (request building, the decoded response,
//! glommio's poll sources), not per record. consume_alloc.rs checks the
//! same against a real broker.

use datastorm_engine::sink::{SinkConfig, SinkHandle};
use datastorm_shards::consume::{ConsumeCounts, ConsumePlan};
use std::time::Duration;

mod common;
#[path = "support/consume.rs"]
mod support;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

/// Reads `count` synthetic records on one shard on this thread: (counters,
/// allocations this thread made while the shard ran).
fn consume(sink: &str, count: u64) -> (ConsumeCounts, u64) {
    let mut plan = ConsumePlan::new(vec![sink.to_owned()], "synthetic");
    plan.stop.count = Some(count);
    plan.stop.duration = Some(Duration::from_secs(60));
    support::consume_counted(plan)
}

#[test]
fn reading_synthetic_records_allocates_per_fetch_not_per_record() {
    let sink = SinkHandle::start(SinkConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cpus: vec![],
        default_partitions: 2,
        node_id: 0,
        ..SinkConfig::default()
    })
    .expect("sink starts");
    let addr = sink.local_addr().to_string();
    let (s, a_s) = consume(&addr, 200_000);
    let (l, a_l) = consume(&addr, 1_200_000);
    sink.stop();
    assert!(s.records >= 200_000 && l.records >= 1_200_000);
    let records = l.records - s.records;
    let fetches = l.fetch_responses.saturating_sub(s.fetch_responses).max(1);
    let allocs = a_l.saturating_sub(a_s);
    let per_record = allocs as f64 / records as f64;
    let per_fetch = allocs as f64 / fetches as f64;
    eprintln!(
        "{allocs} more allocations for {records} more records and {fetches} more fetches \
         ({per_record:.5} per record, {per_fetch:.1} per fetch)"
    );
    assert!(per_record < 0.01, "{per_record:.5} allocations per record");
}
