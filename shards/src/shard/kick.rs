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
    waker: Mutex<Option<(Waker, libc::pthread_t)>>,
}

impl Kick {
    /// Wakes the shard's executor (a no-op before it listens or after it
    /// ends): through its waker, and with a signal to its thread.
    ///
    /// The waker alone was not always enough. CI caught shards parked in
    /// `io_uring_enter` for a whole minute while woken every second, with
    /// their timers due: glommio sleeps in its main ring on a poll of its
    /// latency ring (where the timers and the eventfd that foreign wakes
    /// write are), and that poll did not fire. A signal with a handler ends
    /// any blocking system call with EINTR, which glommio takes as a
    /// wake-up: it then reads every ring, runs due timers and sleeps again.
    pub fn wake(&self) {
        // Under the lock, so that `close` (called on the thread before it
        // ends) cannot complete while the signal is sent.
        if let Some((w, thread)) = self.lock().as_ref() {
            w.wake_by_ref();
            interrupt(*thread);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Waker, libc::pthread_t)>> {
        self.waker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the waker: called when the shard's tasks end, so that no
    /// wake-up reaches an executor that is shutting down.
    pub fn close(&self) {
        self.lock().take();
    }
}

/// The signal [`Kick::wake`] sends; its handler does nothing.
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

/// Installs the no-op handler (once per process), without `SA_RESTART`, so
/// that the signal interrupts the system call the thread is blocked in.
fn install_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn nothing(_: libc::c_int) {}
    ONCE.call_once(|| {
        // SAFETY: a sigaction struct zeroed, then filled with a handler
        // that does nothing (async-signal-safe) and an empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Sends the kick signal to `thread`, which is alive: its [`Kick`] slot is
/// filled, and it empties the slot before it ends.
fn interrupt(thread: libc::pthread_t) {
    install_handler();
    // SAFETY: `thread` names a live thread of this process (see above).
    unsafe {
        libc::pthread_kill(thread, kick_signal());
    }
}

/// A task that never completes: each poll leaves its waker in the slot, so
/// the coordinator always holds a current one.
pub struct Listen(pub Arc<Kick>);

impl Future for Listen {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.0.lock();
        if !slot.as_ref().is_some_and(|(w, _)| w.will_wake(cx.waker())) {
            // Polled on the executor's own thread.
            // SAFETY: pthread_self has no preconditions.
            *slot = Some((cx.waker().clone(), unsafe { libc::pthread_self() }));
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

    /// A kick ends the system call the listening thread is blocked in
    /// (here a read of a pipe nobody writes) with EINTR, and does nothing
    /// once the slot is closed.
    #[test]
    fn a_kick_interrupts_the_listening_thread_in_a_system_call() {
        let kick = Arc::new(Kick::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let blocked = {
            let kick = kick.clone();
            std::thread::spawn(move || {
                let mut fds = [0; 2];
                // SAFETY: pipe(2) into a two-int array.
                assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
                let mut listen = std::pin::pin!(Listen(kick.clone()));
                let mut cx = Context::from_waker(Waker::noop());
                assert!(listen.as_mut().poll(&mut cx).is_pending());
                ready_tx.send(()).unwrap();
                let mut byte = 0u8;
                // SAFETY: a read of one byte into a local.
                let n = unsafe { libc::read(fds[0], (&mut byte as *mut u8).cast(), 1) };
                let err = std::io::Error::last_os_error();
                kick.close();
                // SAFETY: closing the pipe's two ends, opened above.
                unsafe {
                    libc::close(fds[0]);
                    libc::close(fds[1]);
                }
                (n, err.raw_os_error())
            })
        };
        ready_rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !blocked.is_finished() && Instant::now() < deadline {
            kick.wake();
            std::thread::sleep(Duration::from_millis(20));
        }
        let (n, errno) = blocked.join().unwrap();
        assert_eq!((n, errno), (-1, Some(libc::EINTR)));
        // Closed: a kick finds no thread to signal.
        kick.wake();
    }

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
