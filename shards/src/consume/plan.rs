//! What a consume run is asked to do.

use datastorm_engine::conn::SocketOptions;
use datastorm_engine::runtime::ExecutorTuning;
use datastorm_engine::wire::fetch::FetchLimits;
use datastorm_engine::SecurityConfig;
use serde::Serialize;
use std::time::Duration;

/// Where each partition starts (Kafka's seek, or auto.offset.reset for a
/// consumer without committed offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The log start offset.
    Earliest,
    /// The end of the log when the run starts: only new records.
    Latest,
    /// The first record with a timestamp at or after this (ms since the
    /// epoch); the end of the log where there is none.
    Timestamp(i64),
    /// This offset in every partition (tests, replays). Outside the log it
    /// is answered OFFSET_OUT_OF_RANGE and reset to the earliest offset.
    Offset(i64),
}

impl StartFrom {
    /// Where OFFSET_OUT_OF_RANGE sends a partition: the end for `Latest`,
    /// the start otherwise (the policy a consumer reading history wants).
    pub fn reset_to_latest(self) -> bool {
        self == StartFrom::Latest
    }
}

/// When a consume run ends (whichever comes first; none = until stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ConsumeStop {
    /// At least this many records over this instance's shards (a shard
    /// stops after the fetch response that reaches it).
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Stop when every assigned partition reached the end offset it had
    /// when the run started (the high watermark; the last stable offset
    /// under read_committed).
    pub until_end: bool,
}

/// A consume run: the topic, how to reach it, how to read it, and when to stop.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumePlan {
    pub bootstrap: Vec<String>,
    pub topic: String,
    pub client_id: String,
    /// TLS and SASL, as for producing.
    pub security: SecurityConfig,
    pub socket: SocketOptions,
    pub executor: ExecutorTuning,
    pub connect_timeout: Duration,
    /// A Fetch unanswered this long past its max wait fails its connection.
    pub request_timeout: Duration,
    /// One shard per CPU.
    pub cpus: Vec<usize>,
    /// This instance among `instances` reading the same topic: partitions
    /// are split disjointly, as for producing.
    pub instance: u32,
    pub instances: u32,
    pub from: StartFrom,
    /// fetch.min.bytes, fetch.max.wait.ms, fetch.max.bytes,
    /// max.partition.fetch.bytes and the isolation level. Under
    /// read_committed the broker stops at the last stable offset; records
    /// of aborted transactions below it are not filtered yet (counted as
    /// read).
    pub fetch: FetchLimits,
    /// Check each batch's CRC-32C (Kafka's check.crcs).
    pub check_crcs: bool,
    pub stop: ConsumeStop,
    /// Time records whose `ds-t` header names another host too (clock skew
    /// between hosts goes straight into the figures).
    pub e2e_across_hosts: bool,
    /// Track the `ds-seq` sequence headers (verify's gaps, duplicates and
    /// order), one bit per record.
    pub check_sequences: bool,
    /// Failed attempts in a row at a leader's connection (backoff from
    /// 100 ms doubling to 1 s) or at the metadata (250 ms to 1 s) before
    /// the shard fails: about half a minute by default, long enough for a
    /// broker restart or a leader election.
    pub reconnect_tries: u32,
}

impl ConsumePlan {
    /// A plan with the Java consumer's fetch defaults, from the earliest
    /// offset, on CPU 0.
    pub fn new(bootstrap: Vec<String>, topic: impl Into<String>) -> Self {
        ConsumePlan {
            bootstrap,
            topic: topic.into(),
            client_id: datastorm_engine::DEFAULT_CLIENT_ID.to_owned(),
            security: SecurityConfig::plaintext(),
            socket: SocketOptions::default(),
            executor: ExecutorTuning::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            cpus: vec![0],
            instance: 0,
            instances: 1,
            from: StartFrom::Earliest,
            fetch: FetchLimits::default(),
            check_crcs: true,
            stop: ConsumeStop::default(),
            e2e_across_hosts: false,
            check_sequences: false,
            reconnect_tries: 30,
        }
    }

    /// How every broker connection of this run is opened.
    pub fn connect_options(&self) -> datastorm_engine::conn::ConnectOptions<'_> {
        datastorm_engine::conn::ConnectOptions::new(
            &self.client_id,
            self.connect_timeout,
            &self.security,
        )
        .with_socket(self.socket)
    }

    /// Refuses limits the client cannot honour, naming the flag to change.
    pub fn check(&self) -> Result<(), String> {
        let limit = datastorm_engine::wire::frame::DEFAULT_FRAME_LIMIT;
        let f = &self.fetch;
        if f.max_bytes <= 0 || f.max_bytes as usize > limit - 1024 * 1024 {
            return Err(format!(
                "--fetch-max-bytes {} is outside 1..={}: a response must fit the client's \
                 {limit}-byte frame limit",
                f.max_bytes,
                limit - 1024 * 1024
            ));
        }
        if f.partition_max_bytes <= 0 || f.min_bytes < 0 {
            return Err(format!(
                "--max-partition-fetch-bytes ({}) must be positive and --fetch-min-bytes ({}) \
                 not negative",
                f.partition_max_bytes, f.min_bytes
            ));
        }
        if self.cpus.is_empty() || self.instances == 0 || self.instance >= self.instances {
            return Err(format!(
                "instance {} of {} on {} CPUs: --instance must be below --instances, with at \
                 least one CPU",
                self.instance,
                self.instances,
                self.cpus.len()
            ));
        }
        Ok(())
    }

    /// The time limit of one Fetch: the broker may hold it for its max wait.
    pub fn fetch_timeout(&self) -> Duration {
        self.request_timeout + self.fetch.max_wait
    }
}

/// This instance's partitions, dealt to its shards: sorted partitions
/// round-robin to instances, then round-robin to shards (as the producer
/// deals them, so a consumer shard reads what the same-numbered producer
/// shard wrote when both run with the same layout).
pub fn assign_partitions(
    partitions: &[i32],
    instance: u32,
    instances: u32,
    shards: usize,
) -> Vec<Vec<i32>> {
    let mine = crate::assign::for_instance(partitions, instance, instances);
    crate::assign::assign(&mine, shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_java_consumers() {
        let p = ConsumePlan::new(vec!["b:9092".into()], "t");
        assert_eq!(p.fetch.min_bytes, 1);
        assert_eq!(p.fetch.max_wait, Duration::from_millis(500));
        assert_eq!(p.fetch.max_bytes, 52_428_800);
        assert_eq!(p.fetch.partition_max_bytes, 1_048_576);
        assert!(p.check_crcs);
        assert_eq!(p.fetch_timeout(), Duration::from_millis(30_500));
        assert_eq!(p.check(), Ok(()));
    }

    #[test]
    fn limits_past_the_frame_limit_are_refused() {
        let mut p = ConsumePlan::new(vec!["b:9092".into()], "t");
        p.fetch.max_bytes = 100 * 1024 * 1024;
        assert!(p.check().unwrap_err().contains("--fetch-max-bytes"));
        let mut p = ConsumePlan::new(vec!["b:9092".into()], "t");
        p.instance = 2;
        p.instances = 2;
        assert!(p.check().is_err());
    }

    #[test]
    fn partitions_split_over_instances_then_shards() {
        let parts: Vec<i32> = (0..10).rev().collect();
        let a = assign_partitions(&parts, 0, 2, 2);
        let b = assign_partitions(&parts, 1, 2, 2);
        assert_eq!(a, vec![vec![0, 4, 8], vec![2, 6]]);
        assert_eq!(b, vec![vec![1, 5, 9], vec![3, 7]]);
        let mut all: Vec<i32> = a.concat().into_iter().chain(b.concat()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>(), "disjoint and complete");
        // More shards than partitions: some idle, none doubled.
        let c = assign_partitions(&[0, 1], 0, 1, 4);
        assert_eq!(c.iter().filter(|s| s.is_empty()).count(), 2);
        assert_eq!(assign_partitions(&parts, 1, 2, 2), b, "deterministic");
    }
}
