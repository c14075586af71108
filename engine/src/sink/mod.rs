//! The sink: a Kafka-speaking blackhole broker.
//!
//! It accepts Kafka producers on one address, answers just enough of the
//! protocol for them to produce (ApiVersions, Metadata, CreateTopics,
//! InitProducerId, Produce), verifies and counts every record batch it
//! receives (CRC-32C, decompressed records, batch/record/byte counts, per topic) and throws the
//! data away. It runs one glommio executor (io_uring, thread-per-core) per
//! configured CPU; every executor listens on the same address through
//! `SO_REUSEPORT` (which glommio's `TcpListener::bind` always sets), so the
//! kernel spreads connections across them.
//!
//! Optionally it answers like a slow or quota-limited broker:
//! [`SinkConfig::ack_delay`] holds every Produce response for a while and
//! [`SinkConfig::max_records_per_s`] throttles acknowledged records (see
//! `pace` and `server::serve_paced`).
//!
//! Optionally it also plays a broker that hangs ([`SinkConfig::stall`], the
//! CLI's `datastorm sink --stall AFTER:FOR`, e.g. `--stall 5s:10s`): from
//! AFTER after the sink started, for FOR, it reads nothing more from its
//! connections and sends no response of any API, while keeping every
//! connection open (new ones are still accepted but get no answers); then it
//! resumes and answers what was waiting, in order, as a frozen broker that
//! was thawed would. It lets a producer's request-timeout path be tested
//! (see `stall`).
//!
//! The sink never prints; [`SinkHandle::stats`] and [`SinkHandle::stop`]
//! return what it saw.

mod batch;
mod fetch;
mod guard;
mod handlers;
mod list_offsets;
mod log;
mod pace;
mod registry;
mod server;
mod session;
mod stall;
mod stats;
mod synthetic;
#[cfg(test)]
mod tests;
mod wake;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

pub use pace::MAX_ACK_DELAY;
pub use registry::MAX_PARTITIONS;
pub use stall::{Stall, MAX_STALL_AFTER, MAX_STALL_LASTING};
pub use synthetic::{SyntheticConfig, SyntheticTopics, MAX_SYNTHETIC_BATCH, MAX_SYNTHETIC_RECORD};

use server::{ExecutorOutcome, Shared};

/// Largest request frame the sink accepts (the size prefix), in bytes.
pub const MAX_FRAME_BYTES: usize = 100 << 20;

/// Cluster id reported in Metadata responses.
pub const CLUSTER_ID: &str = "datastorm-sink";

/// Default of [`SinkConfig::keep_per_partition`].
pub const DEFAULT_KEEP_PER_PARTITION: usize = 16 << 20;
/// Largest [`SinkConfig::keep_per_partition`].
pub const MAX_KEEP_PER_PARTITION: usize = 1 << 40;

/// How long an executor thread may take to report that it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of a sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Address to listen on; port 0 picks an ephemeral port (shared by all
    /// executors).
    pub listen: SocketAddr,
    /// One glommio executor per CPU, pinned to it (`Placement::Fixed`).
    /// Empty: one unpinned executor.
    pub cpus: Vec<usize>,
    /// Partition count of a topic that nobody created explicitly (1..=MAX_PARTITIONS).
    pub default_partitions: i32,
    /// Broker id the sink reports for itself.
    pub node_id: i32,
    /// Every Produce response is sent this long after its request was read
    /// (zero: at once). The connection keeps reading and serving while
    /// responses wait; they go out in request order.
    pub ack_delay: Duration,
    /// The whole sink acknowledges at most this many records per second
    /// (split evenly between its executors): a Produce response is held until
    /// its records fit a token bucket (about 10 ms of burst), and the hold is
    /// reported in its `throttle_time_ms`. `None`: unlimited.
    pub max_records_per_s: Option<f64>,
    /// Hang for a while: from `after` after [`SinkHandle::start`], for
    /// `lasting`, read nothing and answer nothing (connections stay open),
    /// then answer what was waiting, in order. `None`: never.
    pub stall: Option<Stall>,
    /// Bytes of produced record batches each partition keeps for Fetch
    /// (the oldest go first; 0 keeps nothing).
    pub keep_per_partition: usize,
    /// What is served from partitions with no kept log.
    pub synthetic: SyntheticConfig,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            cpus: Vec::new(),
            default_partitions: 8,
            node_id: 0,
            ack_delay: Duration::ZERO,
            max_records_per_s: None,
            stall: None,
            keep_per_partition: DEFAULT_KEEP_PER_PARTITION,
            synthetic: SyntheticConfig::default(),
        }
    }
}

/// Totals of what the sink received.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests decoded and handled (all APIs).
    pub requests: u64,
    /// Produce requests handled.
    pub produce_requests: u64,
    /// Record batches accepted (CRC ok).
    pub batches: u64,
    /// Records in accepted batches (the batches' recordsCount fields).
    pub records: u64,
    /// Wire size of accepted record batches, in bytes.
    pub batch_bytes: u64,
    /// Size of their records sections once decompressed, in bytes.
    pub record_bytes: u64,
    /// Accepted batches by codec name ("none", "gzip", "snappy", "lz4",
    /// "zstd"); codecs not seen are left out.
    pub batches_by_codec: BTreeMap<String, u64>,
    /// Partitions rejected because a batch failed its CRC-32C check.
    pub crc_errors: u64,
    /// Frames that could not be decoded (bad size prefix, unknown API key,
    /// unsupported version, malformed request); each closes its connection.
    pub decode_errors: u64,
    /// Partitions rejected because a record batch was malformed (truncated,
    /// magic != 2, bad lengths, null/empty records).
    pub malformed_batches: u64,
    /// Partitions rejected because the topic or partition does not exist (or
    /// the topic name is invalid).
    pub unknown_partitions: u64,
    /// Fetch requests answered.
    pub fetch_requests: u64,
    /// Records in the batches Fetch responses carried.
    pub fetch_records: u64,
    /// Bytes of the batches Fetch responses carried.
    pub fetch_bytes: u64,
    /// ListOffsets requests answered.
    pub list_offsets_requests: u64,
    /// Per-topic totals; filled by [`SinkHandle::stop`], empty in live stats.
    pub topics: BTreeMap<String, TopicStats>,
}

impl SinkStats {
    /// Record bytes per batch byte (`record_bytes / batch_bytes`): how much
    /// the producers' compression saved, or just under 1 without it.
    pub fn compression_ratio(&self) -> Option<f64> {
        (self.batch_bytes > 0).then(|| self.record_bytes as f64 / self.batch_bytes as f64)
    }
}

/// Per-topic totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TopicStats {
    pub partitions: i32,
    pub batches: u64,
    pub records: u64,
    pub batch_bytes: u64,
    /// Records Fetch responses carried from this topic.
    pub fetch_records: u64,
    /// Bytes of batches Fetch responses carried from this topic.
    pub fetch_bytes: u64,
}

/// Why a sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid sink configuration: {0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("sink executor {index} (cpu {cpu:?}) failed to start: {message}")]
    Executor {
        index: usize,
        cpu: Option<usize>,
        message: String,
    },
    #[error("cannot spawn sink thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A running sink. Dropping it stops it too (without returning stats).
pub struct SinkHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<ExecutorOutcome>>,
}

impl SinkHandle {
    /// Binds (so `local_addr` is known when this returns; bind errors come
    /// back as `Err`), then serves in background threads.
    pub fn start(cfg: SinkConfig) -> Result<SinkHandle, SinkError> {
        validate_config(&cfg)?;
        let executors = cfg.cpus.len().max(1);
        let shared = Arc::new(Shared::new(&cfg, executors));
        let mut handle = SinkHandle {
            local_addr: cfg.listen,
            shared,
            threads: Vec::with_capacity(executors),
        };
        let mut bind_addr = cfg.listen;
        for index in 0..executors {
            let cpu = cfg.cpus.get(index).copied();
            let (tx, rx) = mpsc::channel();
            let shared = Arc::clone(&handle.shared);
            let thread = std::thread::Builder::new()
                .name(format!("ds-sink-{index}"))
                .spawn(move || server::run_executor(index, cpu, bind_addr, shared, tx))
                .map_err(SinkError::Thread)?;
            handle.threads.push(thread);
            let ready = rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
                Err(SinkError::Executor {
                    index,
                    cpu,
                    message: "did not report readiness".to_string(),
                })
            });
            // On error `handle` is dropped here, which stops and joins the
            // executors already started.
            let addr = ready?;
            if index == 0 {
                handle.local_addr = addr;
                // Every other executor binds the very same port.
                bind_addr = addr;
            }
        }
        Ok(handle)
    }

    /// The address the sink listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Live totals (relaxed atomics), callable any time from any thread.
    /// `topics` is left empty.
    pub fn stats(&self) -> SinkStats {
        self.shared.totals()
    }

    /// Stops accepting and serving, joins the executor threads and returns
    /// the final stats, per topic included.
    pub fn stop(mut self) -> SinkStats {
        let per_executor = self.shutdown();
        let mut stats = self.shared.totals();
        for topic in self.shared.registry.all() {
            stats.topics.insert(
                topic.name.clone(),
                TopicStats {
                    partitions: topic.partitions,
                    ..TopicStats::default()
                },
            );
        }
        for outcome in per_executor {
            for (name, local) in outcome.topics {
                let entry = stats.topics.entry(name).or_default();
                entry.partitions = local.partitions;
                entry.batches += local.batches;
                entry.records += local.records;
                entry.batch_bytes += local.batch_bytes;
                entry.fetch_records += local.fetch_records;
                entry.fetch_bytes += local.fetch_bytes;
            }
        }
        stats
    }

    fn shutdown(&mut self) -> Vec<ExecutorOutcome> {
        self.shared.stop.store(true, Ordering::Release);
        let mut outcomes = Vec::with_capacity(self.threads.len());
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(outcome) => outcomes.push(outcome),
                Err(_) => tracing::error!("sink executor thread panicked"),
            }
        }
        outcomes
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
        }
    }
}

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkHandle")
            .field("local_addr", &self.local_addr)
            .field("executors", &self.threads.len())
            .finish()
    }
}

fn validate_config(cfg: &SinkConfig) -> Result<(), SinkError> {
    if cfg.default_partitions < 1 || cfg.default_partitions > MAX_PARTITIONS {
        return Err(SinkError::Config(format!(
            "default_partitions must be in 1..={MAX_PARTITIONS}, got {}",
            cfg.default_partitions
        )));
    }
    if cfg.node_id < 0 {
        return Err(SinkError::Config(format!(
            "node_id must be >= 0, got {}",
            cfg.node_id
        )));
    }
    if cfg.ack_delay > pace::MAX_ACK_DELAY {
        return Err(SinkError::Config(format!(
            "ack_delay must be at most {:?}, got {:?}",
            pace::MAX_ACK_DELAY,
            cfg.ack_delay
        )));
    }
    if let Some(rate) = cfg.max_records_per_s {
        if !rate.is_finite() || rate < 1.0 {
            return Err(SinkError::Config(format!(
                "max_records_per_s must be a finite number >= 1, got {rate}"
            )));
        }
    }
    if cfg.keep_per_partition > MAX_KEEP_PER_PARTITION {
        return Err(SinkError::Config(format!(
            "keep_per_partition must be at most {MAX_KEEP_PER_PARTITION}, got {}",
            cfg.keep_per_partition
        )));
    }
    cfg.synthetic.check().map_err(SinkError::Config)?;
    if let Some(stall) = &cfg.stall {
        stall.check().map_err(SinkError::Config)?;
    }
    if !cfg.cpus.is_empty() {
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        for (i, cpu) in cfg.cpus.iter().enumerate() {
            if !available.contains(cpu) {
                return Err(SinkError::Config(format!(
                    "cpu {cpu} is not available to this process (available: {available:?})"
                )));
            }
            if cfg.cpus[..i].contains(cpu) {
                return Err(SinkError::Config(format!("cpu {cpu} is listed twice")));
            }
        }
    }
    Ok(())
}
