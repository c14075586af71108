//! The run plan: everything a run needs, resolved from flags by the CLI.

use datastorm_engine::batch::Compression;
use datastorm_engine::cluster::TopicSpec;
use serde::Serialize;
use std::time::Duration;

/// Which acknowledgement the producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Acks {
    /// Fire and forget: no response; records count as acked when written.
    None,
    /// The partition leader wrote the batch.
    Leader,
    /// Every in-sync replica has the batch.
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("--acks takes 0, 1 or all, not '{s}'")),
        }
    }
}

/// How record keys are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySpec {
    /// No key: batches fill one partition at a time (sticky partitioning).
    None,
    /// 16 decimal digits, a sequence unique across shards.
    Seq,
    /// 16 hex digits from the shard's seeded random stream.
    Random,
}

impl std::str::FromStr for KeySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(KeySpec::None),
            "seq" | "sequential" => Ok(KeySpec::Seq),
            "random" => Ok(KeySpec::Random),
            _ => Err(format!("--keys takes none, seq or random, not '{s}'")),
        }
    }
}

/// What each record carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PayloadSpec {
    /// Fixed-size values of printable random bytes, drawn in turn from a
    /// pool of `pool` pre-generated values per shard.
    Fixed { record_size: usize, pool: usize },
}

/// When a run ends (whichever comes first; neither = until stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct StopAt {
    pub count: Option<u64>,
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunPlan {
    pub bootstrap: Vec<String>,
    pub topic: String,
    /// Create the topic (if missing) with these settings.
    pub create_topic: Option<TopicSpec>,
    /// CPUs to run shards on, one shard each.
    pub cpus: Vec<usize>,
    pub stop: StopAt,
    /// Records per second across all shards; `None` = as fast as acked.
    pub rate: Option<f64>,
    pub acks: Acks,
    pub compression: Compression,
    /// A partition's batch is sealed when it would pass this many bytes.
    pub batch_size: usize,
    /// ...or when its first record is this old.
    pub linger: Duration,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Times a batch is sent again after a retriable error (NOT_LEADER_OR_FOLLOWER, ...).
    pub retries: u32,
    /// Wait before the first retry; doubles per attempt up to 1 s.
    pub retry_backoff: Duration,
    pub payload: PayloadSpec,
    pub keys: KeySpec,
    pub seed: u64,
    pub client_id: String,
    /// How long to wait for in-flight acks after generation stops.
    pub drain_timeout: Duration,
}

impl RunPlan {
    /// A plan with DataStorm's defaults for the given brokers and topic.
    pub fn new(bootstrap: Vec<String>, topic: impl Into<String>) -> Self {
        RunPlan {
            bootstrap,
            topic: topic.into(),
            create_topic: None,
            cpus: vec![0],
            stop: StopAt::default(),
            rate: None,
            acks: Acks::Leader,
            compression: Compression::Lz4,
            batch_size: 64 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight: 5,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retries: 10,
            retry_backoff: Duration::from_millis(100),
            payload: PayloadSpec::Fixed {
                record_size: 100,
                pool: 1000,
            },
            keys: KeySpec::None,
            seed: 1,
            client_id: datastorm_engine::DEFAULT_CLIENT_ID.to_owned(),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Splits `total` into `parts` shares that differ by at most one, the larger first.
pub fn split_evenly(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sums_to_total() {
        for (total, parts) in [(1_000_000u64, 2usize), (7, 3), (2, 5), (0, 4)] {
            let sum: u64 = (0..parts).map(|i| split_evenly(total, parts, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(split_evenly(7, 3, 0), 3);
        assert_eq!(split_evenly(7, 3, 2), 2);
    }

    #[test]
    fn acks_parse() {
        assert_eq!("all".parse::<Acks>().unwrap().wire(), -1);
        assert_eq!("1".parse::<Acks>().unwrap().wire(), 1);
        assert!("2".parse::<Acks>().is_err());
    }
}
