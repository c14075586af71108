//! Shared by the consume allocation tests (included with `#[path]`): one
//! consumer shard run on this thread under the counting allocator.

use datastorm_shards::consume::{
    consume_shard, prepare_consume, ConsumeCounts, ConsumePlan, ConsumeShardSetup,
};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// Runs `plan` on one shard on this thread: (counters, allocations this
/// thread made while the shard ran).
pub fn consume_counted(plan: ConsumePlan) -> (ConsumeCounts, u64) {
    let plan = Arc::new(plan);
    let ex = glommio::LocalExecutorBuilder::default()
        .make()
        .expect("executor");
    ex.run(async move {
        let prepared = prepare_consume(&plan).await.expect("prepare");
        let (tx, _rx) = mpsc::channel();
        let setup = ConsumeShardSetup {
            index: 0,
            cpu: 0,
            plan: plan.clone(),
            topic: prepared.topic.clone(),
            partitions: prepared.leaders.clone(),
            brokers: prepared.brokers.clone(),
            counters: Arc::default(),
            consumed: Arc::new(AtomicU64::new(0)),
            events: tx,
            stop: Arc::new(AtomicBool::new(false)),
            origin: Instant::now(),
        };
        let before = super::common::allocations();
        let r = consume_shard(setup).await;
        let allocs = super::common::allocations() - before;
        assert_eq!(r.failure, None);
        (r.counters, allocs)
    })
}
