//! End-to-end latency: the producer stamps each record with its intended
//! send time, a consumer subtracts it from the time it read the record.
//!
//! The stamp is the `ds-t` header ([`E2E_HEADER`]), 12 bytes: the
//! intended send time in microseconds since the UNIX epoch (u64, big
//! endian), then the producing host's id (u32, big endian). Paced records
//! carry the pacer's intended time, so a stalled generator shows as
//! latency (no coordinated omission); unpaced ones their creation time.
//! Clocks of two hosts never mix by default: a consumer times only records
//! whose host id is its own, unless told to trust the clocks across hosts.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use crate::plan::E2E_HEADER;

/// Bytes of the header's value.
pub const VALUE_LEN: usize = 12;

/// Writes a stamp's value.
#[inline]
pub fn encode(time_us: u64, origin: u32) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    v[..8].copy_from_slice(&time_us.to_be_bytes());
    v[8..].copy_from_slice(&origin.to_be_bytes());
    v
}

/// Reads a stamp's value: (time in µs since the epoch, host id).
#[inline]
pub fn decode(value: &[u8]) -> Option<(u64, u32)> {
    let v: &[u8; VALUE_LEN] = value.try_into().ok()?;
    let (time, origin) = v.split_at(8);
    Some((
        u64::from_be_bytes(time.try_into().ok()?),
        u32::from_be_bytes(origin.try_into().ok()?),
    ))
}

/// This host's id: FNV-1a of /etc/machine-id (or of the host name where
/// there is none). Two processes on one host agree; two hosts almost
/// never do.
pub fn host_id() -> u32 {
    let source = std::fs::read("/etc/machine-id")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::fs::read("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    source.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Microseconds since the UNIX epoch, now.
pub fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Turns `Instant`s (the pacer's) into wall-clock microseconds from one
/// anchor taken when the task starts: one clock read, then arithmetic per
/// record.
#[derive(Debug, Clone, Copy)]
pub struct UnixClock {
    anchor: Instant,
    anchor_us: u64,
}

impl UnixClock {
    pub fn new() -> Self {
        Self {
            anchor: Instant::now(),
            anchor_us: now_unix_us(),
        }
    }

    /// `t` in microseconds since the UNIX epoch.
    #[inline]
    pub fn unix_us(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.anchor) {
            Some(after) => self.anchor_us + after.as_micros() as u64,
            None => self
                .anchor_us
                .saturating_sub(self.anchor.duration_since(t).as_micros() as u64),
        }
    }
}

impl Default for UnixClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_round_trip_and_other_lengths_are_refused() {
        let v = encode(1_733_000_000_123_456, 0xdead_beef);
        assert_eq!(decode(&v), Some((1_733_000_000_123_456, 0xdead_beef)));
        assert_eq!(decode(&v[..11]), None);
        assert_eq!(decode(&[0; 13]), None);
    }

    #[test]
    fn the_clock_maps_instants_before_and_after_its_anchor() {
        let c = UnixClock::new();
        let later = c.anchor + Duration::from_millis(1500);
        assert_eq!(c.unix_us(later), c.anchor_us + 1_500_000);
        if let Some(earlier) = c.anchor.checked_sub(Duration::from_millis(2)) {
            assert_eq!(c.unix_us(earlier), c.anchor_us - 2_000);
        }
        // The anchor agrees with the wall clock to well within a second.
        assert!(now_unix_us().abs_diff(c.unix_us(Instant::now())) < 1_000_000);
    }

    #[test]
    fn the_host_id_is_stable() {
        assert_eq!(host_id(), host_id());
    }
}
