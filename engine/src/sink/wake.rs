//! Waking long-polling fetches when data arrives.
//!
//! A Fetch that finds less than its min_bytes waits (up to its max_wait)
//! on its connection's task. Each executor has one slot of wakers; a
//! waiting fetch registers its task's waker there, re-checks its
//! partitions, and sleeps. A Produce, once its batches are appended, looks
//! at each executor's `armed` flag (a plain load, no lock, when nobody
//! waits) and wakes what is registered. Glommio wakes a task of another
//! executor by queueing the waker to it, so a produce on one executor wakes
//! a fetch on another.
//!
//! No wakeup is lost: the fetch arms the flag (under the slot's lock)
//! before it re-reads its partitions (under their locks), and the producer
//! appends (under a partition lock) before it reads the flag, so either the
//! fetch sees the new batches or the producer sees the flag. Wakeups may be
//! spurious (any append wakes every waiter of an executor): a woken fetch
//! re-checks and waits again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// One executor's waiting fetches, on its own cache line pair.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct WaitSlot {
    armed: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl WaitSlot {
    fn lock(&self) -> MutexGuard<'_, Vec<Waker>> {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `waker` (once: a task's waker is kept only once).
    pub(crate) fn register(&self, waker: &Waker) {
        let mut wakers = self.lock();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Wakes everything registered, if anything is.
    pub(crate) fn wake_all(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        let wakers = {
            let mut wakers = self.lock();
            self.armed.store(false, Ordering::SeqCst);
            std::mem::take(&mut *wakers)
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// Registers the current task's waker in `slot` and completes at once.
pub(crate) fn register(slot: &WaitSlot) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        slot.register(cx.waker());
        Poll::Ready(())
    })
}

/// Pending on its first poll, ready on the next: resolves once the task
/// is woken (by `WaitSlot::wake_all` or anything else).
#[derive(Default)]
pub(crate) struct Woken {
    polled: bool,
}

impl Future for Woken {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.polled {
            Poll::Ready(())
        } else {
            self.polled = true;
            Poll::Pending
        }
    }
}
