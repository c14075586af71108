//! A consumer shard's state: its counters (shared with the coordinator),
//! its partitions' fetch positions, and its books (histograms, errors,
//! sequence checks), held in one `RefCell` that the shard's tasks borrow
//! only between awaits.

use crate::verify::{Producer, SeqCheck};
use datastorm_engine::batch::read::BatchReader;
use datastorm_engine::metrics::latency_histogram;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! consume_counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// One consumer shard's live counters: written by that shard alone
        /// (plain stores, no read-modify-write), read by the coordinator.
        #[repr(align(128))]
        #[derive(Debug, Default)]
        pub struct ConsumeCounters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of `ConsumeCounters`, or a sum or difference of copies.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct ConsumeCounts {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl ConsumeCounters {
            pub fn snapshot(&self) -> ConsumeCounts {
                ConsumeCounts { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl ConsumeCounts {
            /// Field-wise sum.
            pub fn plus(&self, o: &ConsumeCounts) -> ConsumeCounts {
                ConsumeCounts { $($name: self.$name + o.$name,)* }
            }
            /// Field-wise difference (saturating), for per-interval rates.
            pub fn minus(&self, o: &ConsumeCounts) -> ConsumeCounts {
                ConsumeCounts { $($name: self.$name.saturating_sub(o.$name),)* }
            }
        }
    };
}

consume_counters! {
    /// Records walked (control records excluded).
    records,
    /// Bytes of complete record batches read (as on the wire, compressed).
    bytes,
    /// Record batches read (control batches included).
    batches,
    /// Transaction markers skipped.
    control_batches,
    /// Fetch requests written.
    fetch_requests,
    /// Fetch responses read.
    fetch_responses,
    /// Records whose end-to-end latency was recorded.
    records_timed,
    /// Records without a `ds-t` header of this host (or any, across hosts).
    records_untimed,
    /// Error answers and connection failures.
    errors,
    /// Connections opened again after a failure.
    reconnects,
    /// Records between each partition's next offset and its high
    /// watermark, summed (a gauge).
    lag,
}

impl ConsumeCounters {
    /// Adds `n` to a counter this shard alone writes.
    #[inline]
    pub fn add(field: &AtomicU64, n: u64) {
        field.store(field.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// What a partition waits for before it can be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Its start offset (by the plan's `from`) and, for `until_end`, its end.
    Start,
    /// OFFSET_OUT_OF_RANGE: a new position by the reset policy.
    Reset,
    /// Nothing: fetch it.
    Ready,
}

/// One partition's fetch state.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub id: i32,
    /// The leader's broker id; -1 while unknown (metadata is refreshed).
    pub leader: i32,
    pub need: Need,
    /// The next offset to fetch.
    pub next: i64,
    /// Where reading started (-1 until known).
    pub start: i64,
    /// The high watermark last seen (-1 until seen).
    pub hw: i64,
    /// `until_end`: the end offset when the run started.
    pub end: Option<i64>,
    pub records: u64,
    pub resets: u32,
    /// The broker accepted the position: ListOffsets gave it, or a Fetch
    /// from it came back without OFFSET_OUT_OF_RANGE. An offset given by
    /// the plan is not done before that, however far it lies past the end.
    pub confirmed: bool,
}

impl Part {
    pub fn new(id: i32, leader: i32) -> Self {
        Part {
            id,
            leader,
            need: Need::Start,
            next: -1,
            start: -1,
            hw: -1,
            end: None,
            records: 0,
            resets: 0,
            confirmed: false,
        }
    }

    /// Reached the end it had at the start (`until_end`).
    pub fn done(&self) -> bool {
        self.need == Need::Ready && self.confirmed && self.end.is_some_and(|e| self.next >= e)
    }
}

/// A link's next work: partitions to fetch (id, next offset), and those
/// that need positioning first.
pub(crate) type Work = (Vec<(i32, i64)>, Vec<(i32, Need)>);

/// Everything the shard's main task and its link tasks share.
pub(crate) struct Shared {
    pub parts: Vec<Part>,
    /// Broker addresses by id, from the latest metadata.
    pub brokers: BTreeMap<i32, String>,
    /// A leader moved or a connection failed: refresh metadata.
    pub stale: bool,
    /// The shard is ending: links stop after their current request.
    pub quit: bool,
    /// Links that ended, with the error that failed them.
    pub exited: Vec<(i32, Result<(), String>)>,
    pub reader: BatchReader,
    /// End-to-end latency of this interval's records, microseconds.
    pub e2e: Histogram<u64>,
    /// Fetch latency (request written to response read) of this interval.
    pub fetch_latency: Histogram<u64>,
    /// Errors by Kafka error name ("connection" for lost connections).
    pub errors: BTreeMap<String, u64>,
    pub sequences: BTreeMap<Producer, SeqCheck>,
    pub fetch_version: Option<i16>,
    /// Brokers this shard has connected to (a later connection is a reconnect).
    pub connected: std::collections::BTreeSet<i32>,
}

impl Shared {
    pub fn new(parts: Vec<Part>, brokers: BTreeMap<i32, String>) -> Self {
        Shared {
            stale: parts.iter().any(|p| p.leader < 0),
            parts,
            brokers,
            quit: false,
            exited: Vec::new(),
            reader: BatchReader::new(),
            e2e: latency_histogram(),
            fetch_latency: latency_histogram(),
            errors: BTreeMap::new(),
            sequences: BTreeMap::new(),
            fetch_version: None,
            connected: Default::default(),
        }
    }

    /// Counts an error under its name.
    pub fn count_error(&mut self, name: &str) {
        match self.errors.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(name.to_owned(), 1);
            }
        }
    }

    /// What `broker` should do next: the partitions to fetch (id, next
    /// offset) and those that need positioning first.
    pub fn work_for(&self, broker: i32) -> Work {
        let mine = self.parts.iter().filter(|p| p.leader == broker);
        let mut fetch = Vec::new();
        let mut position = Vec::new();
        for p in mine {
            match p.need {
                Need::Ready if !p.done() => fetch.push((p.id, p.next)),
                Need::Ready => {}
                need => position.push((p.id, need)),
            }
        }
        (fetch, position)
    }

    /// Whether `broker` leads any partition of this shard.
    pub fn leads_any(&self, broker: i32) -> bool {
        self.parts.iter().any(|p| p.leader == broker)
    }

    pub fn part_mut(&mut self, id: i32) -> Option<&mut Part> {
        self.parts.iter_mut().find(|p| p.id == id)
    }

    /// Records behind the high watermarks, summed.
    pub fn lag(&self) -> u64 {
        self.parts
            .iter()
            .filter(|p| p.hw >= 0 && p.next >= 0)
            .map(|p| (p.hw - p.next).max(0) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_split_by_leader_and_need() {
        let mut parts = vec![
            Part::new(0, 1),
            Part::new(1, 2),
            Part::new(2, 1),
            Part::new(3, -1),
        ];
        parts[0].need = Need::Ready;
        parts[0].next = 5;
        parts[2].need = Need::Reset;
        let s = Shared::new(parts, BTreeMap::new());
        assert!(s.stale, "a partition without a leader asks for metadata");
        assert_eq!(s.work_for(1), (vec![(0, 5)], vec![(2, Need::Reset)]));
        assert_eq!(s.work_for(2), (vec![], vec![(1, Need::Start)]));
        assert!(!s.leads_any(3));
    }

    #[test]
    fn done_and_lag_follow_the_offsets() {
        let mut p = Part::new(0, 1);
        p.need = Need::Ready;
        p.confirmed = true;
        p.next = 10;
        p.hw = 15;
        p.end = Some(12);
        assert!(!p.done());
        p.next = 12;
        assert!(p.done());
        let mut s = Shared::new(vec![p.clone(), Part::new(1, 1)], BTreeMap::new());
        assert_eq!(s.lag(), 3);
        s.part_mut(0).unwrap().next = 20;
        assert_eq!(s.lag(), 0, "never negative");
        assert!(
            s.work_for(1).0.is_empty(),
            "a done partition is not fetched"
        );
    }
}
