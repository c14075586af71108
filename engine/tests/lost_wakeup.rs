//! A lost wake-up, made on purpose, is recovered by the bounded sleep and
//! counted.
//!
//! `GLOMMIO_TEST_UNLINKED_SLEEP=1` (a test switch of the vendored glommio,
//! vendor/glommio/PATCHES.md, 4) makes every executor created afterwards
//! sleep without the poll that tells its main ring about the latency ring:
//! every completion there (foreign wake-ups, connects, accepts) is then a
//! lost wake-up, the failure that released glommio 0.9.0 never recovers
//! from. Its own test binary, so that no other test's executor sees the
//! switch.

use std::time::{Duration, Instant};

#[test]
fn foreign_wakes_are_recovered_within_the_bound_when_unlinked() {
    std::env::set_var("GLOMMIO_TEST_UNLINKED_SLEEP", "1");
    let (waits, s) = datastorm_engine::runtime::run_unpinned("lost-wakeup", async move {
        let mut waits = Vec::new();
        for _ in 0..3 {
            // Woken from another thread once this executor sleeps: the
            // eventfd that glommio's foreign-wake path writes completes on
            // the latency ring, which nothing tells the main ring about.
            let (tx, rx) = one_shot();
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                tx.send();
            });
            let t = Instant::now();
            rx.await;
            waits.push(t.elapsed());
            sender.join().unwrap();
        }
        (waits, datastorm_engine::sleeps::Sleeps::of_this_executor())
    })
    .expect("executor");
    // Each wait ended: the bound caught what the missing link did not
    // report (upstream would sleep here for good). Generous limits: a busy
    // host stretches waits, but not to seconds.
    for w in &waits {
        assert!(*w >= Duration::from_millis(150), "{waits:?}");
        assert!(*w < Duration::from_secs(5), "{waits:?}");
    }
    assert!(s.lost_wakeups >= 3, "{s:?}");
    assert!(s.ended_by_bound >= s.lost_wakeups, "{s:?}");
}

/// A one-shot signal whose sender works from any thread and wakes the
/// receiving task through its waker (glommio's foreign-wake path).
fn one_shot() -> (OneShotTx, OneShotRx) {
    let slot = std::sync::Arc::new(std::sync::Mutex::new((false, None)));
    (OneShotTx(slot.clone()), OneShotRx(slot))
}

type Slot = std::sync::Arc<std::sync::Mutex<(bool, Option<std::task::Waker>)>>;

struct OneShotTx(Slot);

impl OneShotTx {
    fn send(self) {
        let mut s = self.0.lock().unwrap();
        s.0 = true;
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }
}

struct OneShotRx(Slot);

impl std::future::Future for OneShotRx {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let mut s = self.0.lock().unwrap();
        if s.0 {
            std::task::Poll::Ready(())
        } else {
            s.1 = Some(cx.waker().clone());
            std::task::Poll::Pending
        }
    }
}
