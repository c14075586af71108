//! What a stream's ack readers, connection watchdogs and accounting tell
//! the stream task: typed events in one shard-local queue, handled in one
//! place (`StreamTask::handle_events`) between chunks of records and before
//! each request goes out.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

/// Names one connection of one link: a link reconnects, and an event about
/// a connection it has since replaced is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConnId {
    /// Index of the link in the stream's links.
    pub link: usize,
    /// Which of the stream's connections (counted from 0, never reused).
    pub serial: u64,
}

#[derive(Debug)]
pub(super) enum Event {
    /// The connection failed (its ack reader saw it end): retire it and
    /// reconnect. Its unanswered batches are already in the retry queue.
    ConnectionLost(ConnId),
    /// The broker broke the protocol (and failed the stream): retire the
    /// connection, counting no error.
    Broken(ConnId),
    /// The connection's oldest request waited past the request timeout.
    TimedOut(ConnId),
    /// The broker asked (throttle time, KIP-219) not to be sent to before
    /// `until`.
    Throttled { conn: ConnId, until: Instant },
    /// A response said partition leaders may have moved.
    MetadataStale,
    /// A non-retriable error stopped the partition (by part index).
    PartitionStopped { part: usize, why: String },
}

/// The stream's event queue: every sender holds a clone; the stream task
/// alone takes events out. All on one thread, and events come once per
/// response at most (most responses send none), so a plain queue does;
/// once grown it does not allocate.
#[derive(Clone, Default)]
pub(super) struct Events(Rc<RefCell<VecDeque<Event>>>);

impl Events {
    pub fn send(&self, event: Event) {
        self.0.borrow_mut().push_back(event);
    }

    /// The oldest event not yet taken.
    pub fn next(&self) -> Option<Event> {
        self.0.borrow_mut().pop_front()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}
