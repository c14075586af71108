//! Rate control: when each record is due.
//!
//! A rate profile says how many records are due by time `t` (the integral
//! of the target rate): `N(t) = r·t` for a fixed rate, a quadratic for a
//! ramp, piecewise linear for steps. A shard's pacer is the global profile
//! scaled by the shard's share. Record `n` is due when `N(t)` passes `n`;
//! the shard generates every record that is due, however late it is, and
//! measures its latency from that intended time, so a stall shows up as
//! latency instead of as a quieter run (coordinated omission).
//!
//! Counts come from the closed form, never from summing intervals, so there
//! is no drift: the records due in any window are exact up to one record.

use crate::plan::RateSpec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shape of a rate over time, in records per second of the whole run.
#[derive(Debug, Clone)]
pub enum Profile {
    Fixed(f64),
    /// From `from` to `to` over `over` seconds, then `to`.
    Ramp {
        from: f64,
        to: f64,
        over: f64,
    },
    /// Each rate for `step` seconds, then the last one.
    Steps {
        rates: Arc<[f64]>,
        step: f64,
    },
}

impl Profile {
    /// The profile a rate spec asks for; `None` when unpaced. `--rate max`
    /// starts as a fixed rate that the coordinator moves.
    pub fn from_spec(spec: &RateSpec) -> Option<Profile> {
        match spec {
            RateSpec::Unlimited => None,
            RateSpec::Fixed { per_s } => Some(Profile::Fixed(*per_s)),
            RateSpec::Ramp { from, to, over } => Some(Profile::Ramp {
                from: *from,
                to: *to,
                over: over.as_secs_f64().max(1e-9),
            }),
            RateSpec::Steps { rates, step } => Some(Profile::Steps {
                rates: rates.clone().into(),
                step: step.as_secs_f64().max(1e-9),
            }),
            RateSpec::Max { start, .. } => Some(Profile::Fixed(*start)),
        }
    }

    /// The target rate at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        match self {
            Profile::Fixed(r) => *r,
            Profile::Ramp { from, to, over } => {
                if t >= *over {
                    *to
                } else {
                    from + (to - from) * t.max(0.0) / over
                }
            }
            Profile::Steps { rates, step } => {
                let i = ((t.max(0.0) / step) as usize).min(rates.len() - 1);
                rates[i]
            }
        }
    }

    /// Records due by `t` seconds (not rounded).
    pub fn count_at(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        match self {
            Profile::Fixed(r) => r * t,
            Profile::Ramp { from, to, over } => {
                let a = (to - from) / (2.0 * over);
                if t <= *over {
                    from * t + a * t * t
                } else {
                    from * over + a * over * over + to * (t - over)
                }
            }
            Profile::Steps { rates, step } => {
                let full = ((t / step) as usize).min(rates.len() - 1);
                let done: f64 = rates[..full].iter().sum::<f64>() * step;
                done + rates[full] * (t - full as f64 * step)
            }
        }
    }

    /// The mean rate over `(t0, t1]` seconds: records due in the window over
    /// its length, so a window across a step's change reads between the two
    /// steps, as the records acked in it do. Before 0 (a warm-up) the
    /// profile holds its first rate. The rate at `t1` for an empty window.
    pub fn mean_rate(&self, t0: f64, t1: f64) -> f64 {
        if t1 <= t0 || matches!(self, Profile::Fixed(_)) {
            return self.rate_at(t1);
        }
        let due = |t: f64| {
            if t < 0.0 {
                self.rate_at(0.0) * t
            } else {
                self.count_at(t)
            }
        };
        (due(t1) - due(t0)) / (t1 - t0)
    }

    /// The time (seconds) at which `n` records are due: the inverse of
    /// `count_at`. Infinite when the profile never gets there.
    pub fn time_of(&self, n: f64) -> f64 {
        if n <= 0.0 {
            return 0.0;
        }
        match self {
            Profile::Fixed(r) => {
                if *r > 0.0 {
                    n / r
                } else {
                    f64::INFINITY
                }
            }
            Profile::Ramp { from, to, over } => {
                let at_end = self.count_at(*over);
                if n > at_end {
                    return if *to > 0.0 {
                        over + (n - at_end) / to
                    } else {
                        f64::INFINITY
                    };
                }
                // from·t + a·t² = n on [0, over].
                let a = (to - from) / (2.0 * over);
                if a.abs() < 1e-12 {
                    return n / from;
                }
                let disc = (from * from + 4.0 * a * n).max(0.0);
                // The numerically stable root of the quadratic.
                2.0 * n / (from + disc.sqrt())
            }
            Profile::Steps { rates, step } => {
                let mut done = 0.0;
                for (i, r) in rates.iter().enumerate() {
                    let last = i == rates.len() - 1;
                    let this = r * step;
                    if n <= done + this || last {
                        return if *r > 0.0 {
                            i as f64 * step + (n - done) / r
                        } else {
                            f64::INFINITY
                        };
                    }
                    done += this;
                }
                f64::INFINITY
            }
        }
    }

    /// How long the profile runs before it holds its last rate (`None` for
    /// a fixed rate): the default run length of ramps and steps.
    pub fn length(&self) -> Option<Duration> {
        match self {
            Profile::Fixed(_) => None,
            Profile::Ramp { over, .. } => Some(Duration::from_secs_f64(*over)),
            Profile::Steps { rates, step } => {
                Some(Duration::from_secs_f64(step * rates.len() as f64))
            }
        }
    }
}

/// One shard's pacer: a profile scaled to the shard's share, from `start`,
/// after a warm-up `lead` at the profile's first rate.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    /// Records generated before `start` (after a rebase).
    offset: u64,
    scale: f64,
    /// Seconds of warm-up at the profile's first rate before it starts.
    lead: f64,
    profile: Profile,
}

impl Pacer {
    /// A fixed `rate` records per second from `start`.
    pub fn new(rate: f64, start: Instant) -> Self {
        Self::with_profile(Profile::Fixed(rate), 1.0, start)
    }

    /// `profile` scaled by `scale` (this shard's share of the run) from `start`.
    pub fn with_profile(profile: Profile, scale: f64, start: Instant) -> Self {
        assert!(scale > 0.0, "a pacer's share must be positive");
        Self {
            start,
            offset: 0,
            scale,
            lead: 0.0,
            profile,
        }
    }

    /// Holds the profile's first rate for `warmup` before the profile starts.
    pub fn with_warmup(mut self, warmup: Duration) -> Self {
        self.lead = warmup.as_secs_f64();
        self
    }

    /// Records due by `t` seconds from `start`, before scaling.
    fn count_at(&self, t: f64) -> f64 {
        if self.lead <= 0.0 {
            return self.profile.count_at(t);
        }
        let r0 = self.profile.rate_at(0.0);
        if t <= self.lead {
            r0 * t
        } else {
            r0 * self.lead + self.profile.count_at(t - self.lead)
        }
    }

    fn time_of(&self, n: f64) -> f64 {
        if self.lead <= 0.0 {
            return self.profile.time_of(n);
        }
        let r0 = self.profile.rate_at(0.0);
        let warm = r0 * self.lead;
        if n <= warm && r0 > 0.0 {
            n / r0
        } else {
            self.lead + self.profile.time_of(n - warm)
        }
    }

    /// How many records are due at `now` (record 0 is due at the start).
    #[inline]
    pub fn due(&self, now: Instant) -> u64 {
        let t = now.saturating_duration_since(self.start).as_secs_f64();
        self.offset + (self.count_at(t) * self.scale) as u64 + 1
    }

    /// When record `n` is due (far in the future if never).
    #[inline]
    pub fn intended(&self, n: u64) -> Instant {
        let k = n.saturating_sub(self.offset) as f64 / self.scale;
        let t = self.time_of(k);
        if t.is_finite() {
            self.start + Duration::from_secs_f64(t)
        } else {
            self.start + Duration::from_secs(365 * 24 * 3600)
        }
    }

    /// This shard's target rate at `now`, records per second.
    pub fn rate(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.start).as_secs_f64() - self.lead;
        self.profile.rate_at(t) * self.scale
    }

    /// Starts a fixed `rate` (the whole run's) at `now`, with record
    /// `generated` due at once: records that were due but not generated are
    /// dropped, so an overload at one rate does not spill into the next
    /// (`--rate max`).
    pub fn rebase(&mut self, now: Instant, generated: u64, rate: f64) {
        self.start = now;
        self.offset = generated;
        self.lead = 0.0;
        self.profile = Profile::Fixed(rate);
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
        let at = p.intended(500);
        let want = t0 + Duration::from_millis(500);
        assert!(at.max(want) - at.min(want) < Duration::from_micros(1));
    }

    /// Records due in each one-second window, with a fake clock: within 1%
    /// of the target (and of one record) for every window.
    fn check_windows(p: &Pacer, t0: Instant, seconds: u64, want: impl Fn(f64) -> f64) {
        for w in 0..seconds {
            let a = p.due(t0 + Duration::from_secs(w));
            let b = p.due(t0 + Duration::from_secs(w + 1));
            let got = (b - a) as f64;
            let target = want(w as f64);
            assert!(
                (got - target).abs() <= (target * 0.01).max(1.0),
                "window {w}: {got} records, target {target}"
            );
        }
    }

    #[test]
    fn fixed_rates_from_1k_to_10m_hold_in_every_window() {
        let t0 = Instant::now();
        for rate in [1e3, 1.5e3, 1e4, 2e5, 1e6, 3.3e6, 1e7] {
            for shards in [1.0, 3.0, 16.0] {
                let p = Pacer::with_profile(Profile::Fixed(rate), 1.0 / shards, t0);
                check_windows(&p, t0, 60, |_| rate / shards);
            }
        }
    }

    #[test]
    fn ramps_follow_their_profile_then_hold() {
        let t0 = Instant::now();
        let prof = Profile::Ramp {
            from: 100_000.0,
            to: 1_000_000.0,
            over: 60.0,
        };
        let p = Pacer::with_profile(prof.clone(), 1.0, t0);
        // The mean rate over window w is the rate at its middle (linear ramp).
        check_windows(&p, t0, 90, |w| prof.rate_at(w + 0.5));
        assert_eq!(prof.length(), Some(Duration::from_secs(60)));
        // Down-ramps too, and the inverse agrees with the count.
        let down = Profile::Ramp {
            from: 50_000.0,
            to: 1_000.0,
            over: 10.0,
        };
        for n in [1.0, 10.0, 1e4, 2e5, 2.5e5, 3e5] {
            let t = down.time_of(n);
            assert!((down.count_at(t) - n).abs() < 1e-6 * n.max(1.0), "{n}");
        }
    }

    #[test]
    fn steps_follow_their_profile_then_hold_the_last() {
        let t0 = Instant::now();
        let prof = Profile::Steps {
            rates: vec![100_000.0, 200_000.0, 400_000.0].into(),
            step: 30.0,
        };
        let p = Pacer::with_profile(prof.clone(), 0.5, t0);
        check_windows(&p, t0, 120, |w| prof.rate_at(w) * 0.5);
        for n in [1.0, 2.9e6, 3.0e6, 3.1e6, 9e6, 3e7] {
            let t = prof.time_of(n);
            assert!((prof.count_at(t) - n).abs() < 1e-6 * n, "{n}");
        }
        assert_eq!(prof.length(), Some(Duration::from_secs(90)));
    }

    #[test]
    fn mean_rates_average_the_profile_over_a_window() {
        let steps = Profile::Steps {
            rates: vec![20_000.0, 60_000.0].into(),
            step: 3.0,
        };
        assert_eq!(steps.mean_rate(1.0, 2.0), 20_000.0);
        assert_eq!(steps.mean_rate(2.0, 3.0), 20_000.0);
        // 16 ms of the second step in a late window.
        let late = steps.mean_rate(2.016, 3.016);
        assert!((late - 20_640.0).abs() < 1e-6, "{late}");
        assert_eq!(steps.mean_rate(3.0, 4.0), 60_000.0);
        // A warm-up (before 0) holds the first rate.
        assert_eq!(steps.mean_rate(-2.0, -1.0), 20_000.0);
        assert_eq!(steps.mean_rate(-0.5, 0.5), 20_000.0);
        assert_eq!(steps.mean_rate(7.0, 7.0), 60_000.0);
        let ramp = Profile::Ramp {
            from: 10_000.0,
            to: 50_000.0,
            over: 4.0,
        };
        // Linear: the mean is the rate at the middle; after it, flat.
        assert!((ramp.mean_rate(1.0, 2.0) - 25_000.0).abs() < 1e-6);
        assert!((ramp.mean_rate(3.5, 4.5) - 48_750.0).abs() < 1e-6);
        assert_eq!(ramp.mean_rate(5.0, 6.0), 50_000.0);
    }

    #[test]
    fn intended_times_invert_due_counts() {
        let t0 = Instant::now();
        let p = Pacer::with_profile(
            Profile::Ramp {
                from: 1_000.0,
                to: 20_000.0,
                over: 5.0,
            },
            1.0,
            t0,
        );
        for n in [0u64, 1, 999, 5_000, 52_000, 60_000] {
            let at = p.intended(n);
            // Just after its intended time, record n is due; just before, not.
            assert!(p.due(at + Duration::from_micros(2)) > n, "{n}");
            if n > 0 {
                assert!(p.due(at - Duration::from_micros(60)) <= n, "{n}");
            }
        }
    }

    #[test]
    fn warmup_holds_the_first_rate_before_the_profile() {
        let t0 = Instant::now();
        let prof = Profile::Steps {
            rates: vec![1_000.0, 5_000.0].into(),
            step: 10.0,
        };
        let p = Pacer::with_profile(prof, 1.0, t0).with_warmup(Duration::from_secs(5));
        let at = |s: u64| p.due(t0 + Duration::from_secs(s));
        assert_eq!(at(5) - at(4), 1_000, "warm-up at the first rate");
        assert_eq!(at(14) - at(13), 1_000, "first step");
        assert_eq!(at(16) - at(15), 5_000, "second step");
        assert!(p.due(p.intended(12_345) + Duration::from_micros(2)) > 12_345);
        assert_eq!(p.rate(t0 + Duration::from_secs(16)), 5_000.0);
    }

    #[test]
    fn rebase_drops_the_backlog_and_starts_the_new_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000.0, t0);
        // 10 s in, only 3000 of 10001 due records were generated.
        let t1 = t0 + Duration::from_secs(10);
        p.rebase(t1, 3_000, 500.0);
        assert_eq!(p.due(t1), 3_001);
        assert_eq!(p.due(t1 + Duration::from_secs(2)), 4_001);
        assert_eq!(p.rate(t1), 500.0);
    }
}
