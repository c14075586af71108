//! Consumers: thread-per-core fetch load with static partition assignment.
//!
//! Each shard (one pinned glommio executor) owns its partitions' fetch
//! positions and one connection per leader broker (`link`), each with its
//! own fetch session (KIP-227, `datastorm_engine::wire::fetch`) and one
//! Fetch in flight. Responses are walked in place (`records`): records are
//! counted, end-to-end latency is taken from the producer's `ds-t` header
//! (this host's records only, unless across hosts is asked for; the clock
//! is read once per response), and sequence headers can be checked. Leader
//! moves and lost connections refresh metadata and reconnect with backoff
//! (bounded); OFFSET_OUT_OF_RANGE resets by the start policy. Counters are
//! per-shard atomics; histograms reach the coordinator (`coord`) four times
//! a second over a channel.
//!
//! Not yet: consumer groups, offset commits, filtering of aborted
//! transactions under read_committed (the broker stops at the last stable
//! offset, but aborted records below it are counted as read).

mod coord;
mod link;
mod plan;
mod records;
mod shard;
mod state;

pub use coord::{
    prepare_consume, run_consume, ConsumeError, ConsumeOutcome, ConsumePrepared, ConsumeProgress,
};
pub use plan::{assign_partitions, ConsumePlan, ConsumeStop, StartFrom};
pub use shard::{consume_shard, ConsumeEvent, ConsumeShardResult, ConsumeShardSetup, PartitionEnd};
pub use state::{ConsumeCounters, ConsumeCounts};
