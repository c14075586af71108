//! DataStorm's engine: the thread-per-core runtime and the Kafka wire.
//!
//! Nothing in this crate prints; results come back as values.

// A library never writes to the terminal: results come back as values and
// the CLI decides what to print (tests may print).
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod arena;
pub mod batch;
pub mod cluster;
pub mod conn;
pub mod metrics;
pub mod runtime;
pub mod security;
pub mod sink;
pub mod sleeps;
pub mod wire;

pub use security::SecurityConfig;

/// The client id DataStorm sends unless told otherwise.
pub const DEFAULT_CLIENT_ID: &str = "datastorm";
