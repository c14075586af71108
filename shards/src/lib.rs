//! DataStorm shards: what one core does, and the coordinator that runs them.

pub mod assign;
pub mod pacer;
pub mod payload;
pub mod plan;
pub mod run;
pub mod search;
pub mod shard;
pub mod threads;
pub mod verify;
