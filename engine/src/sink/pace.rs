//! Response pacing: the ack delay and the record-rate token bucket.
//!
//! Both only decide *when* a response is due; the connection loop in
//! `server` keeps a per-connection queue of (due time, encoded response)
//! and writes its due head in request order while it keeps reading.

use std::time::{Duration, Instant};

/// Largest accepted `SinkConfig::ack_delay`.
pub const MAX_ACK_DELAY: Duration = Duration::from_secs(60);

/// Burst of the record-rate bucket, as time at the bucket's rate: an idle
/// bucket lets this much worth of records through at once.
pub(crate) const BURST: Duration = Duration::from_millis(10);

/// Longest hold one Produce response can get from the bucket (a guard
/// against a tiny rate and a huge request overflowing `Instant`).
const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

/// A token bucket over records, kept as a virtual clock ("paid until"): a
/// request for `n` records advances it by `n / rate`; the clock never lags
/// `now` by more than the burst; a response is due when the clock it
/// advanced to is reached. Reservations are first come, first served, so the
/// due times it hands out never decrease.
#[derive(Debug)]
pub(crate) struct RecordBucket {
    /// Records per second.
    rate: f64,
    burst: Duration,
    paid_until: Option<Instant>,
}

impl RecordBucket {
    pub(crate) fn new(rate: f64) -> RecordBucket {
        RecordBucket {
            rate,
            burst: BURST,
            paid_until: None,
        }
    }

    /// Reserves `records` at `now`; returns how long the response must be
    /// held (zero while the burst lasts).
    pub(crate) fn reserve(&mut self, now: Instant, records: u64) -> Duration {
        let floor = now.checked_sub(self.burst).unwrap_or(now);
        let start = match self.paid_until {
            Some(t) if t > floor => t,
            _ => floor,
        };
        let cost = Duration::try_from_secs_f64(records as f64 / self.rate)
            .unwrap_or(MAX_HOLD)
            .min(MAX_HOLD);
        let end = (start + cost).min(now + MAX_HOLD);
        self.paid_until = Some(end);
        end.saturating_duration_since(now)
    }
}

/// A hold as Kafka's `throttle_time_ms`, rounded to the nearest millisecond.
pub(crate) fn throttle_ms(hold: Duration) -> i32 {
    let ms = (hold.as_micros() + 500) / 1000;
    i32::try_from(ms).unwrap_or(i32::MAX)
}

/// How one executor paces its responses; absent when neither option is set
/// (then responses are written as soon as they are made).
#[derive(Debug)]
pub(crate) struct Pacing {
    pub ack_delay: Duration,
    /// This executor's share of the record rate.
    pub bucket: Option<std::cell::RefCell<RecordBucket>>,
}

impl Pacing {
    /// `rate` is this executor's share of `max_records_per_s`.
    pub(crate) fn new(ack_delay: Duration, rate: Option<f64>) -> Option<Pacing> {
        if ack_delay.is_zero() && rate.is_none() {
            return None;
        }
        Some(Pacing {
            ack_delay,
            bucket: rate.map(|r| std::cell::RefCell::new(RecordBucket::new(r))),
        })
    }
}
