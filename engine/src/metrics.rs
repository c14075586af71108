//! Per-shard counters and latency histograms.
//!
//! Counters are written by exactly one shard and read by the coordinator once
//! a second, so they are plain relaxed atomics in a cache-line-aligned block
//! per shard (no read-modify-write: the shard is the only writer). Latency
//! histograms stay shard-local; the shard hands a copy of the last interval's
//! histogram to the coordinator once a second.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Lowest and highest latency tracked, in microseconds, and precision.
const LATENCY_LOW_US: u64 = 1;
const LATENCY_HIGH_US: u64 = 3_600_000_000;
const LATENCY_SIGFIG: u8 = 3;

/// A latency histogram in microseconds (1 µs to 1 h, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_LOW_US, LATENCY_HIGH_US, LATENCY_SIGFIG)
        .expect("static histogram bounds are valid")
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// One shard's live counters.
        #[repr(align(128))]
        #[derive(Debug, Default)]
        pub struct ShardCounters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A point-in-time copy of `ShardCounters` (or a sum or difference of them).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl ShardCounters {
            pub fn snapshot(&self) -> Counters {
                Counters { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl Counters {
            /// Field-wise sum.
            pub fn plus(&self, o: &Counters) -> Counters {
                Counters { $($name: self.$name + o.$name,)* }
            }
            /// Field-wise difference (saturating), for per-interval rates.
            pub fn minus(&self, o: &Counters) -> Counters {
                Counters { $($name: self.$name.saturating_sub(o.$name),)* }
            }
        }
    };
}

counters! {
    /// Records handed to the socket.
    records_sent,
    /// Records the broker acknowledged (acks=0: records written).
    records_acked,
    /// Records the broker answered with an error.
    records_failed,
    /// Key and value bytes of acknowledged records.
    payload_bytes_acked,
    /// Uncompressed record-section bytes of acknowledged batches.
    record_bytes_acked,
    /// Batch bytes written to sockets (after compression).
    batch_bytes_sent,
    /// Batches acknowledged.
    batches_acked,
    /// Produce requests written.
    requests_sent,
    /// Produce responses received.
    requests_acked,
    /// Produce requests written but not yet answered (a gauge).
    requests_in_flight,
    /// Error responses and connection failures.
    errors,
    /// Batches sent again after a retriable error.
    retries,
    /// Sum of broker throttle times reported, in milliseconds.
    throttle_ms,
}

impl ShardCounters {
    /// Adds `n` to a counter this shard alone writes.
    #[inline]
    pub fn add(field: &AtomicU64, n: u64) {
        field.store(field.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets a gauge this shard alone writes.
    #[inline]
    pub fn set(field: &AtomicU64, v: u64) {
        field.store(v, Relaxed);
    }
}

/// Records a batch's latency spread over its records: the first record waited
/// longest, the last the least. Up to `POINTS` evenly spaced samples carry
/// the batch's record count between them, so a large batch costs a handful of
/// histogram updates, not one per record.
pub fn record_batch_latency(h: &mut Histogram<u64>, first_us: u64, last_us: u64, records: u64) {
    const POINTS: u64 = 8;
    if records == 0 {
        return;
    }
    let points = records.min(POINTS);
    let per = records / points;
    let extra = records % points;
    for i in 0..points {
        let lat = if points == 1 {
            first_us
        } else {
            first_us - (first_us.saturating_sub(last_us)) * i / (points - 1)
        };
        let n = per + u64::from(i < extra);
        h.saturating_record_n(lat.max(LATENCY_LOW_US), n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_latency_keeps_the_record_count_and_range() {
        let mut h = latency_histogram();
        record_batch_latency(&mut h, 900, 100, 1000);
        assert_eq!(h.len(), 1000);
        assert!(h.max() >= 899 && h.max() <= 901);
        assert!(h.min() >= 99 && h.min() <= 101);
        record_batch_latency(&mut h, 50, 50, 3);
        assert_eq!(h.len(), 1003);
    }

    #[test]
    fn counters_add_and_subtract() {
        let c = ShardCounters::default();
        ShardCounters::add(&c.records_acked, 5);
        let a = c.snapshot();
        ShardCounters::add(&c.records_acked, 7);
        let b = c.snapshot();
        assert_eq!(b.minus(&a).records_acked, 7);
        assert_eq!(a.plus(&b).records_acked, 17);
        assert_eq!(std::mem::align_of::<ShardCounters>(), 128);
    }
}
