//! A whole shard (generator, sealing, pipelined requests, ack readers)
//! against the sink, under a counting allocator: once warmed up, nothing is
//! allocated per record. What remains is per request and comes from the
//! io_uring reactor (glommio allocates a poll source each time a read would
//! block), plus the once-a-quarter-second histogram hand-off.

use datastorm_engine::metrics::ShardCounters;
use datastorm_engine::sink::{SinkConfig, SinkHandle};
use datastorm_shards::plan::{Acks, RunPlan};
use datastorm_shards::run::prepare;
use datastorm_shards::shard::{run_shard, ShardSetup, StreamShare};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

mod common;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

#[test]
fn a_running_shard_allocates_per_request_not_per_record() {
    let sink = SinkHandle::start(SinkConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cpus: vec![],
        default_partitions: 4,
        node_id: 0,
        ..SinkConfig::default()
    })
    .expect("sink starts");
    let mut plan = RunPlan::new(vec![sink.local_addr().to_string()], "alloc-test");
    plan.acks = Acks::Leader;
    plan.stop.duration = Some(Duration::from_secs(3));
    let plan = Arc::new(plan);

    let ex = glommio::LocalExecutorBuilder::default()
        .make()
        .expect("executor");
    let (acked, requests, allocs) = ex.run(async move {
        let (_, leaders) = prepare(&plan).await.expect("prepare");
        let counters = Arc::new(ShardCounters::default());
        let (tx, _rx) = mpsc::channel();
        let setup = ShardSetup {
            index: 0,
            shards: 1,
            cpu: 0,
            plan: plan.clone(),
            streams: vec![StreamShare {
                stream: 0,
                partitions: leaders.into_iter().next().expect("one stream"),
                count: None,
                pace: None,
                rate_control: None,
                counters: counters.clone(),
            }],
            origin: std::time::Instant::now(),
            events: tx,
            stop: Arc::new(AtomicBool::new(false)),
            sleeps: Arc::default(),
        };
        let c = counters.clone();
        // Sample between 1 s (warmed up) and 2.5 s, on this same thread.
        let watcher = glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let sample = || {
                (
                    c.records_acked.load(Relaxed),
                    c.requests_acked.load(Relaxed),
                    common::allocations(),
                )
            };
            let (r0, q0, a0) = sample();
            glommio::timer::sleep(Duration::from_millis(1500)).await;
            let (r1, q1, a1) = sample();
            (r1 - r0, q1 - q0, a1 - a0)
        });
        let results = run_shard(setup).await;
        assert!(results[0].failure.is_none(), "{:?}", results[0].failure);
        watcher.await
    });
    let stats = sink.stop();
    assert!(
        acked > 100_000,
        "the shard produced ({acked} records in the window)"
    );
    assert!(stats.records >= acked);
    let per_request = allocs as f64 / requests.max(1) as f64;
    let per_record = allocs as f64 / acked as f64;
    eprintln!("steady state: {allocs} allocations for {requests} requests and {acked} records ({per_request:.2} per request, {per_record:.5} per record)");
    assert!(requests > 100, "requests were acked ({requests})");
    assert!(
        per_request < 3.0,
        "{per_request:.2} allocations per request"
    );
    assert!(per_record < 0.01, "{per_record:.5} allocations per record");
}
