//! How a shard's executor slept: glommio's sleep counts (the bounded sleep
//! of vendor/glommio/PATCHES.md), copied where the coordinator can read
//! them.
//!
//! Every sleep of a patched executor in the kernel ends by the next timer's
//! deadline or 10 ms. One that the bound ended while completions already
//! waited on glommio's latency ring is a wake-up that upstream glommio
//! would have lost for good (the executor asleep with timers due, a shard
//! stalled until something rescued it); here it costs at most the bound,
//! and each one is counted, per shard, in every report.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// How often [`track`] copies its executor's counts.
const EVERY: Duration = Duration::from_millis(250);

/// A copy of one executor's sleep counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Sleeps {
    /// Sleeps in the kernel.
    pub sleeps: u64,
    /// Of those, the ones ended by the bound (a timer's deadline or the cap)
    /// rather than by a completion.
    pub ended_by_bound: u64,
    /// Of those, the ones that ended with completions already waiting and
    /// unreported: lost wake-ups, each recovered within the bound.
    pub lost_wakeups: u64,
}

impl Sleeps {
    /// Field-wise sum.
    pub fn plus(&self, o: &Sleeps) -> Sleeps {
        Sleeps {
            sleeps: self.sleeps + o.sleeps,
            ended_by_bound: self.ended_by_bound + o.ended_by_bound,
            lost_wakeups: self.lost_wakeups + o.lost_wakeups,
        }
    }

    /// The counts of the executor this is called on.
    pub fn of_this_executor() -> Sleeps {
        let s = glommio::executor().sleep_stats();
        Sleeps {
            sleeps: s.sleeps,
            ended_by_bound: s.ended_by_bound,
            lost_wakeups: s.lost_wakeups,
        }
    }
}

/// One executor's counts, written by that executor, read by any thread.
#[derive(Debug, Default)]
pub struct SleepCounters {
    sleeps: AtomicU64,
    ended_by_bound: AtomicU64,
    lost_wakeups: AtomicU64,
}

impl SleepCounters {
    /// Copies the counts of the executor this is called on.
    pub fn record(&self) {
        let s = Sleeps::of_this_executor();
        self.sleeps.store(s.sleeps, Relaxed);
        self.ended_by_bound.store(s.ended_by_bound, Relaxed);
        self.lost_wakeups.store(s.lost_wakeups, Relaxed);
    }

    pub fn snapshot(&self) -> Sleeps {
        Sleeps {
            sleeps: self.sleeps.load(Relaxed),
            ended_by_bound: self.ended_by_bound.load(Relaxed),
            lost_wakeups: self.lost_wakeups.load(Relaxed),
        }
    }
}

/// Copies this executor's counts into `to` four times a second, for as
/// long as it runs (a task to spawn beside the shard's work, and cancel
/// after a last [`SleepCounters::record`]).
pub async fn track(to: Arc<SleepCounters>) {
    loop {
        to.record();
        glommio::timer::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An executor with nothing to do but wait for a 400 ms timer sleeps
    /// in pieces of at most 10 ms, each ended by the bound: upstream
    /// glommio would sleep once, until the timer. (The piece count is
    /// judged loosely: a busy host stretches the pieces, never adds any.)
    #[test]
    fn an_idle_executor_sleeps_in_bounded_pieces() {
        let (took, s) = crate::runtime::run_unpinned("sleeps-test", async {
            let t = Instant::now();
            glommio::timer::sleep(Duration::from_millis(400)).await;
            (t.elapsed(), Sleeps::of_this_executor())
        })
        .unwrap();
        assert!(took >= Duration::from_millis(400), "{took:?}");
        assert!(s.ended_by_bound >= 10, "{s:?}");
        assert!(s.sleeps >= s.ended_by_bound, "{s:?}");
        assert!(s.ended_by_bound >= s.lost_wakeups, "{s:?}");
        // Not many more pieces than 10 ms each allows.
        let most = took.as_millis() as u64 / 10 + 5;
        assert!(s.ended_by_bound <= most, "{s:?} in {took:?}");
    }

    #[test]
    fn counters_copy_what_the_executor_counted() {
        let c = Arc::new(SleepCounters::default());
        let c2 = c.clone();
        let s = crate::runtime::run_unpinned("sleeps-copy", async move {
            let tracker = glommio::spawn_local(track(c2.clone()));
            glommio::timer::sleep(Duration::from_millis(300)).await;
            c2.record();
            let s = Sleeps::of_this_executor();
            tracker.cancel().await;
            s
        })
        .unwrap();
        assert_eq!(c.snapshot(), s);
        assert!(s.sleeps > 0, "{s:?}");
        let twice = s.plus(&s);
        assert_eq!(twice.sleeps, 2 * s.sleeps);
        assert_eq!(twice.lost_wakeups, 2 * s.lost_wakeups);
    }
}
