//! Rate control: when each record is due.
//!
//! Record `n` of a shard is due at `start + n / rate`. The shard generates
//! every record that is due, however late it is, and measures its latency
//! from that intended time, so a stall shows up as latency instead of as a
//! quieter run (coordinated omission).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start: Instant,
    nanos_per_record: f64,
}

impl Pacer {
    /// `rate` records per second from `start`.
    pub fn new(rate: f64, start: Instant) -> Self {
        assert!(rate > 0.0, "rate must be positive");
        Self {
            start,
            nanos_per_record: 1e9 / rate,
        }
    }

    /// How many records are due at `now` (record 0 is due at the start).
    #[inline]
    pub fn due(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos() as f64;
        (elapsed / self.nanos_per_record) as u64 + 1
    }

    /// When record `n` is due.
    #[inline]
    pub fn intended(&self, n: u64) -> Instant {
        self.start + Duration::from_nanos((n as f64 * self.nanos_per_record) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_counts_follow_the_rate() {
        let t0 = Instant::now();
        let p = Pacer::new(1000.0, t0);
        assert_eq!(p.due(t0), 1);
        assert_eq!(p.due(t0 + Duration::from_millis(10)), 11);
        assert_eq!(p.due(t0 + Duration::from_secs(1)), 1001);
        assert_eq!(p.intended(500), t0 + Duration::from_millis(500));
    }
}
