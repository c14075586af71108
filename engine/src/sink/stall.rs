//! The stall: a window during which the whole sink neither reads nor
//! answers, like a broker process that was frozen (SIGSTOP, a long GC pause,
//! a hung disk) and later thawed, while its TCP connections stay open.
//!
//! The window is fixed once, in absolute [`Instant`]s, when the sink starts
//! (`server::Shared`), and is read-only afterwards: every executor and every
//! connection compares the clock with the same two instants, so there is no
//! lock, no message and no shared write on the hot path. The connection
//! loops in `server` apply it (see `server::sit_out_stall`).

use std::time::{Duration, Instant};

/// Longest accepted [`Stall::lasting`].
pub const MAX_STALL_LASTING: Duration = Duration::from_secs(10 * 60);
/// Latest accepted [`Stall::after`].
pub const MAX_STALL_AFTER: Duration = Duration::from_secs(24 * 3600);

/// When, counted from the sink's start, and for how long it stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// The stall begins this long after [`super::SinkHandle::start`] was
    /// called (0 < after <= [`MAX_STALL_AFTER`]).
    pub after: Duration,
    /// It lasts this long (0 < lasting <= [`MAX_STALL_LASTING`]).
    pub lasting: Duration,
}

impl Stall {
    /// Checks both durations against their bounds; the message names the
    /// offending half.
    pub fn check(&self) -> Result<(), String> {
        if self.after.is_zero() || self.after > MAX_STALL_AFTER {
            return Err(format!(
                "the stall's start (AFTER) must be more than 0 and at most {}h after the sink starts, got {:?}",
                MAX_STALL_AFTER.as_secs() / 3600,
                self.after
            ));
        }
        if self.lasting.is_zero() || self.lasting > MAX_STALL_LASTING {
            return Err(format!(
                "the stall's length (FOR) must be more than 0 and at most {}m, got {:?}",
                MAX_STALL_LASTING.as_secs() / 60,
                self.lasting
            ));
        }
        Ok(())
    }

    /// The window in absolute time, for a sink that started at `start`.
    pub(crate) fn window(&self, start: Instant) -> StallWindow {
        let from = start + self.after;
        StallWindow {
            from,
            until: from + self.lasting,
        }
    }
}

/// A stall in absolute time: `from..until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StallWindow {
    pub from: Instant,
    pub until: Instant,
}

impl StallWindow {
    /// How long the stall still lasts, if `now` is inside it.
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        (self.from <= now && now < self.until).then(|| self.until - now)
    }

    /// How long until the stall begins, if it is still ahead.
    pub(crate) fn ahead(&self, now: Instant) -> Option<Duration> {
        (now < self.from).then(|| self.from - now)
    }
}
