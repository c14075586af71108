//! A way for the coordinator thread to wake a shard's executor.
//!
//! glommio 0.9 has been seen to leave a parked executor asleep although a
//! completion or a timer is due (under load, after a broker dies): the shard
//! then stops making progress with requests in flight, and even its 100 ms
//! request-timeout watchdog never runs. A waker called from another thread
//! takes glommio's foreign-wake path, which writes to the executor's eventfd
//! and so unparks it; once awake it polls its rings and runs due timers.
//! The coordinator calls [`Kick::wake`] for a shard that has sent and
//! acknowledged nothing for a second (requests in flight, or a connection
//! being set up: a TLS/SASL setup once sat out its whole connect timeout),
//! which costs nothing while shards run normally.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often [`run_awake`] wakes its executor.
const KICK_EVERY: Duration = Duration::from_secs(1);

/// One shard's wake-up slot, shared with the coordinator.
#[derive(Default)]
pub struct Kick {
    waker: Mutex<Option<Waker>>,
}

impl Kick {
    /// Wakes the shard's executor (a no-op before it listens or after it ends).
    pub fn wake(&self) {
        if let Some(w) = self.lock().as_ref() {
            w.wake_by_ref();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.waker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the waker: called when the shard's tasks end, so that no
    /// wake-up reaches an executor that is shutting down.
    pub fn close(&self) {
        self.lock().take();
    }
}

/// A task that never completes: each poll leaves its waker in the slot, so
/// the coordinator always holds a current one.
pub struct Listen(pub Arc<Kick>);

impl Future for Listen {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.0.lock();
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Runs `work` to completion on a new unpinned executor named `name`, with
/// a thread that wakes the executor every second until it is done: the
/// shards' defence ([`Kick`]) for the short jobs outside them (a run's
/// setup: bootstrap, CreateTopics, waiting for leaders; reading a topic back
/// to verify it). Those wait on sockets and timers like a shard does, and a
/// missed wake-up there would hang the command with nothing to end it.
/// `Err` if the executor or the thread cannot be started.
pub fn run_awake<T>(name: &str, work: impl Future<Output = T>) -> Result<T, String> {
    let ex = glommio::LocalExecutorBuilder::default()
        .name(name)
        .make()
        .map_err(|e| e.to_string())?;
    let kick = Arc::new(Kick::default());
    let done = Arc::new(AtomicBool::new(false));
    let kicker = {
        let (kick, done) = (kick.clone(), done.clone());
        std::thread::Builder::new()
            .name(format!("{name}-kick"))
            .spawn(move || {
                while !done.load(Ordering::Acquire) {
                    std::thread::park_timeout(KICK_EVERY);
                    kick.wake();
                }
            })
            .map_err(|e| e.to_string())?
    };
    let out = ex.run(async {
        let listener = glommio::spawn_local(Listen(kick.clone()));
        let out = work.await;
        kick.close();
        listener.cancel().await;
        out
    });
    done.store(true, Ordering::Release);
    kicker.thread().unpark();
    let _ = kicker.join();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn run_awake_runs_its_work_and_stops_its_kicker() {
        let t = Instant::now();
        let v = run_awake("kick-test", async {
            glommio::timer::sleep(Duration::from_millis(1500)).await;
            7
        })
        .unwrap();
        assert_eq!(v, 7);
        // The kicker is joined as soon as the work ends, not a whole
        // period later.
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(1500), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}
