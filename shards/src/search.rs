//! `--rate max`: find the highest rate the cluster sustains.
//!
//! The coordinator holds each target rate for one step. The first second of
//! a step settles (queues drain or fill) and is not judged; over the rest,
//! the step is *sustained* when the acknowledged rate follows the target
//! (at least 97% of it) and, with `--max-p99`, the p99 latency stays within
//! the bound. A step that fails is held once more before it counts: one
//! host hiccup (a paused broker, a busy load generator host) should not cut
//! the search short, and a rate the cluster cannot take fails twice anyway.
//! Rates grow by half each sustained step until one is not sustained, then
//! the gap between the best sustained and the first failed rate is bisected
//! until it is within 5%. The answer is the best sustained rate.

use datastorm_engine::metrics::latency_histogram;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Acked rate over target rate that counts as following.
const FOLLOWS: f64 = 0.97;
/// The search ends when the failed rate is within this factor of the best.
const RESOLUTION: f64 = 1.05;
/// Growth per sustained step before the first failure.
const GROWTH: f64 = 1.5;
/// At most this many steps.
const MAX_STEPS: usize = 24;
/// Not judged at the start of each step.
const SETTLE: Duration = Duration::from_secs(1);

/// One step of the search.
#[derive(Debug, Clone, Serialize)]
pub struct RateStep {
    pub target_per_s: f64,
    pub acked_per_s: f64,
    pub p99_us: u64,
    pub sustained: bool,
}

/// What the search found.
#[derive(Debug, Clone, Serialize)]
pub struct RateSearchResult {
    /// The highest sustained rate (none if even the lowest tried failed).
    pub found_per_s: Option<f64>,
    pub steps: Vec<RateStep>,
    /// The search converged (rather than running out of steps or time).
    pub converged: bool,
}

/// The search's state, fed once per progress interval.
#[derive(Debug)]
pub struct MaxRateSearch {
    target: f64,
    step: Duration,
    max_p99_us: Option<u64>,
    in_step: Duration,
    acked: u64,
    judged: Duration,
    latency: Histogram<u64>,
    best: Option<f64>,
    failed: Option<f64>,
    steps: Vec<RateStep>,
    /// The current target failed once and is being held again.
    confirming: bool,
    done: bool,
}

impl MaxRateSearch {
    pub fn new(start: f64, step: Duration, max_p99: Option<Duration>) -> Self {
        Self {
            target: start.max(1.0),
            step: step.max(SETTLE + Duration::from_secs(1)),
            max_p99_us: max_p99.map(|d| d.as_micros() as u64),
            in_step: Duration::ZERO,
            acked: 0,
            judged: Duration::ZERO,
            latency: latency_histogram(),
            best: None,
            failed: None,
            steps: Vec::new(),
            confirming: false,
            done: false,
        }
    }

    /// The rate to produce at now.
    pub fn target(&self) -> f64 {
        self.target
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Accounts for one interval of `length` in which `acked` records were
    /// acknowledged with these latencies. Returns the new target when a step
    /// ended and the search goes on.
    pub fn observe(
        &mut self,
        length: Duration,
        acked: u64,
        latency: &Histogram<u64>,
    ) -> Option<f64> {
        if self.done {
            return None;
        }
        let settled = self.in_step >= SETTLE;
        self.in_step += length;
        if settled {
            self.acked += acked;
            self.judged += length;
            let _ = self.latency.add(latency);
        }
        if self.in_step < self.step {
            return None;
        }
        let acked_per_s = self.acked as f64 / self.judged.as_secs_f64().max(1e-9);
        let p99_us = if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(0.99)
        };
        let sustained = acked_per_s >= FOLLOWS * self.target
            && self.max_p99_us.is_none_or(|bound| p99_us <= bound);
        self.steps.push(RateStep {
            target_per_s: self.target,
            acked_per_s,
            p99_us,
            sustained,
        });
        if !sustained && !self.confirming && self.steps.len() < MAX_STEPS {
            self.confirming = true;
            self.restart_step();
            return Some(self.target);
        }
        self.confirming = false;
        if sustained {
            self.best = Some(self.best.map_or(self.target, |b| b.max(self.target)));
        } else {
            self.failed = Some(self.failed.map_or(self.target, |f| f.min(self.target)));
        }
        self.target = match (self.best, self.failed) {
            (Some(b), None) => b * GROWTH,
            (None, Some(f)) => f / 2.0,
            (Some(b), Some(f)) => (b + f) / 2.0,
            (None, None) => unreachable!("a step was judged"),
        };
        let converged =
            matches!((self.best, self.failed), (Some(b), Some(f)) if f <= b * RESOLUTION);
        if converged || self.steps.len() >= MAX_STEPS || self.target < 1.0 {
            self.done = true;
            return None;
        }
        self.restart_step();
        Some(self.target)
    }

    fn restart_step(&mut self) {
        self.in_step = Duration::ZERO;
        self.acked = 0;
        self.judged = Duration::ZERO;
        self.latency.reset();
    }

    pub fn result(&self) -> RateSearchResult {
        RateSearchResult {
            found_per_s: self.best,
            steps: self.steps.clone(),
            converged: matches!((self.best, self.failed), (Some(b), Some(f)) if f <= b * RESOLUTION),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster that takes at most `cap` records/s; latency explodes past it.
    fn simulate(cap: f64, start: f64, max_p99: Option<Duration>) -> RateSearchResult {
        let mut s = MaxRateSearch::new(start, Duration::from_secs(4), max_p99);
        for _ in 0..10_000 {
            if s.is_done() {
                break;
            }
            let target = s.target();
            let acked = target.min(cap);
            let mut h = latency_histogram();
            let lat = if target <= cap * 0.8 {
                2_000
            } else if target <= cap {
                20_000
            } else {
                900_000
            };
            h.record(lat).unwrap();
            s.observe(Duration::from_secs(1), acked as u64, &h);
        }
        s.result()
    }

    #[test]
    fn finds_the_cap_within_ten_percent() {
        for (cap, start) in [
            (50_000.0, 1_000.0),
            (1_234_567.0, 10_000.0),
            (3_000.0, 100_000.0),
        ] {
            let r = simulate(cap, start, None);
            let found = r.found_per_s.expect("found");
            assert!(r.converged, "{r:?}");
            // Acks within 3% of the target count as following, so the
            // answer may pass the cap by that much.
            assert!(
                found <= cap / FOLLOWS && found >= 0.9 * cap,
                "cap {cap}: found {found}"
            );
            assert!(r.steps.iter().any(|s| !s.sustained));
        }
    }

    #[test]
    fn a_latency_bound_lowers_the_answer() {
        let r = simulate(100_000.0, 10_000.0, Some(Duration::from_millis(10)));
        let found = r.found_per_s.expect("found");
        assert!((72_000.0..=80_000.0).contains(&found), "{found}");
    }

    #[test]
    fn the_first_second_of_a_step_is_not_judged() {
        let mut s = MaxRateSearch::new(1_000.0, Duration::from_secs(3), None);
        let h = latency_histogram();
        // A slow first second (queues filling) does not fail the step.
        assert_eq!(s.observe(Duration::from_secs(1), 10, &h), None);
        assert_eq!(s.observe(Duration::from_secs(1), 1_000, &h), None);
        assert_eq!(s.observe(Duration::from_secs(1), 1_000, &h), Some(1_500.0));
        assert!(s.result().steps[0].sustained);
    }

    #[test]
    fn a_failed_step_is_held_again_before_it_counts() {
        let mut s = MaxRateSearch::new(1_000.0, Duration::from_secs(2), None);
        let h = latency_histogram();
        // A hiccup: the step misses its rate once, then follows it.
        assert_eq!(s.observe(Duration::from_secs(1), 1_000, &h), None);
        assert_eq!(s.observe(Duration::from_secs(1), 500, &h), Some(1_000.0));
        assert_eq!(s.observe(Duration::from_secs(1), 1_000, &h), None);
        assert_eq!(s.observe(Duration::from_secs(1), 1_000, &h), Some(1_500.0));
        let steps = s.result().steps;
        assert_eq!(steps.len(), 2);
        assert!(!steps[0].sustained && steps[1].sustained);
        assert_eq!(s.result().found_per_s, Some(1_000.0));
        // A rate that fails twice counts as failed: the search halves it.
        for _ in 0..2 {
            s.observe(Duration::from_secs(1), 0, &h);
            s.observe(Duration::from_secs(1), 0, &h);
        }
        assert_eq!(s.target(), 1_250.0);
        assert_eq!(s.result().steps.len(), 4);
    }
}
