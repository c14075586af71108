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
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

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
