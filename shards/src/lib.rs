//! DataStorm shards: what one core does, and the coordinator that runs them.

// A library never writes to the terminal: results come back as values and
// the CLI decides what to print (tests may print).
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod assign;
pub mod consume;
pub mod e2e;
pub mod pacer;
pub mod payload;
pub mod plan;
pub mod run;
pub mod search;
pub mod shard;
pub mod threads;
pub mod verify;
