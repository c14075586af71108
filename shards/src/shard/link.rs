//! Broker connections of one stream task: opening them, losing them,
//! reconnecting with capped exponential backoff, following partition
//! leaders through metadata refreshes, and each connection's
//! request-timeout watchdog.

use super::acks::{AckReader, Peer};
use super::error::StreamError;
use super::events::{ConnId, Event, Events};
use super::state::{BatchAcct, InFlight};
use super::task::StreamTask;
use crate::plan::Acks;
use datastorm_engine::cluster;
use datastorm_engine::conn::{ConnError, Connection, PipeSender};
use datastorm_engine::metrics::ShardCounters;
use datastorm_engine::wire::produce::{self, ProduceRequestBuilder};
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;
use glommio::Task;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest wait between reconnect attempts (Kafka's reconnect.backoff.max.ms).
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// One live connection of a link.
pub(super) struct LinkConn {
    pub id: ConnId,
    pub sender: PipeSender,
    /// Shared with this connection's ack reader and watchdog only.
    pub inflight: Rc<RefCell<InFlight>>,
    pub permits: Rc<Semaphore>,
    pub version: i16,
    /// Failed or timed out: retire it and reconnect.
    pub broken: bool,
    /// The broker asked (throttle time) not to be sent to before this.
    pub throttled_until: Option<Instant>,
    pub reader: Option<JoinHandle<()>>,
    pub watchdog: Option<Task<()>>,
}

/// One broker as the sender loop sees it: its current connection (if up)
/// and the request being filled for it.
pub(super) struct Link {
    pub addr: String,
    /// Which of the shard's connections to this broker (see
    /// `RunPlan::connection_slot`).
    pub slot: usize,
    pub conn: Option<LinkConn>,
    pub request: ProduceRequestBuilder,
    /// Batches in `request`, not yet sent.
    pub pending: Vec<BatchAcct>,
    /// Failed connection attempts since the last success.
    pub attempts: u32,
    pub next_try: Instant,
}

impl StreamTask {
    fn request_capacity(&self) -> usize {
        self.plan.batch_size * 2 + 4096
    }

    /// A link to `addr`, not connected yet.
    pub fn new_link(&self, addr: &str, slot: usize) -> Link {
        Link {
            addr: addr.to_owned(),
            slot,
            conn: None,
            request: ProduceRequestBuilder::new(
                &self.topic,
                &self.plan.client_id,
                self.request_capacity(),
            ),
            pending: Vec::with_capacity(64),
            attempts: 0,
            next_try: Instant::now(),
        }
    }

    /// Connects link `li`, negotiates the Produce version and starts its ack
    /// reader and watchdog. On failure, schedules the next attempt.
    pub async fn connect(&mut self, li: usize) -> Result<i16, StreamError> {
        let plan = self.plan.clone();
        let addr = self.links[li].addr.clone();
        let conn = match Connection::connect_with(&addr, &plan.connect_options()).await {
            Ok(c) => c,
            Err(e) => return Err(self.attempt_failed(li, e)),
        };
        let version = match conn.version_for::<kafka_protocol::messages::ProduceRequest>((
            produce::MIN_VERSION,
            produce::MAX_VERSION,
        )) {
            Ok(v) => v,
            Err(e) => {
                // Not a transient problem: no retry will fix the versions.
                self.books.fail(e.to_string());
                return Err(e.into());
            }
        };
        let (sender, reader) = conn.into_pipeline();
        let inflight = Rc::new(RefCell::new(self.new_inflight()));
        let permits = Rc::new(Semaphore::new(plan.max_in_flight as u64));
        let id = ConnId {
            link: li,
            serial: self.next_serial,
        };
        self.next_serial += 1;
        let acked = plan.acks != Acks::None;
        // acks=0: no response comes, so nothing is read and nothing times out.
        let reader = acked.then(|| {
            let peer = Peer {
                addr: addr.clone(),
                conn: id,
                version,
                books: self.books.clone(),
            };
            let reader = AckReader {
                peer,
                reader,
                inflight: inflight.clone(),
                permits: permits.clone(),
            };
            glommio::spawn_local(reader.run()).detach()
        });
        let watchdog = acked.then(|| {
            let dog = Watchdog {
                id,
                addr,
                inflight: inflight.clone(),
                permits: permits.clone(),
                events: self.events.clone(),
                timeout: plan.request_timeout,
            };
            glommio::spawn_local(dog.run())
        });
        let link = &mut self.links[li];
        link.conn = Some(LinkConn {
            id,
            sender,
            inflight,
            permits,
            version,
            broken: false,
            throttled_until: None,
            reader,
            watchdog,
        });
        link.attempts = 0;
        Ok(version)
    }

    /// A new connection's in-flight state, its request buffers allocated.
    fn new_inflight(&self) -> InFlight {
        let plan = &self.plan;
        InFlight {
            requests: VecDeque::with_capacity(plan.max_in_flight + 1),
            batches: VecDeque::with_capacity(256),
            // One buffer per in-flight slot; the link holds one more.
            spare: (0..plan.max_in_flight)
                .map(|_| {
                    ProduceRequestBuilder::new(
                        &self.topic,
                        &plan.client_id,
                        self.request_capacity(),
                    )
                })
                .collect(),
        }
    }

    fn attempt_failed(&mut self, li: usize, why: ConnError) -> StreamError {
        self.books.count_error("CONNECT_FAILED", 1);
        let link = &mut self.links[li];
        link.attempts += 1;
        let wait = Duration::from_millis(100)
            .saturating_mul(1 << link.attempts.min(10))
            .min(MAX_RECONNECT_BACKOFF);
        link.next_try = Instant::now() + wait;
        // The broker may be gone for good: its partitions may have new leaders.
        self.metadata_stale = true;
        why.into()
    }

    /// Retires a failed connection: shuts the socket so its reader ends,
    /// waits for the reader to move the unanswered batches to the retry
    /// queue, moves the unsent ones there too, and schedules a reconnect.
    pub async fn retire(&mut self, li: usize) {
        let Some(mut conn) = self.links[li].conn.take() else {
            return;
        };
        conn.sender.shutdown();
        conn.permits.close();
        // acks=0 has no reader: nothing is awaited, nothing is in flight.
        if let Some(reader) = conn.reader.take() {
            reader.await;
        }
        if let Some(watchdog) = conn.watchdog.take() {
            watchdog.cancel().await;
        }
        self.unqueue(li, Instant::now());
        let link = &mut self.links[li];
        link.attempts += 1;
        link.next_try = Instant::now()
            + Duration::from_millis(50)
                .saturating_mul(1 << link.attempts.min(10))
                .min(MAX_RECONNECT_BACKOFF);
        self.metadata_stale = true;
        ShardCounters::set(&self.books.counters.requests_in_flight, 0);
    }

    /// Whether connection upkeep is due: leaders may have moved, or a link
    /// is down.
    pub fn needs_care(&self) -> bool {
        self.metadata_stale
            || self
                .links
                .iter()
                .any(|l| l.conn.as_ref().is_none_or(|c| c.broken))
    }

    /// Connection upkeep between chunks: retire broken connections, refresh
    /// metadata when leaders may have moved, reconnect links that are due
    /// and needed.
    pub async fn maintain(&mut self) {
        for li in 0..self.links.len() {
            if self.links[li].conn.as_ref().is_some_and(|c| c.broken) {
                self.retire(li).await;
            }
        }
        if self.metadata_stale && Instant::now() >= self.next_metadata {
            let backoff = match self.refresh_leaders().await {
                Ok(()) => {
                    self.metadata_stale = false;
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::debug!("metadata refresh failed: {e}");
                    Duration::from_millis(250)
                }
            };
            self.next_metadata = Instant::now() + backoff.max(Duration::from_millis(100));
        }
        let now = Instant::now();
        for li in 0..self.links.len() {
            let needed = self.parts.iter().any(|p| p.link == li && !p.dead);
            let link = &self.links[li];
            if link.conn.is_none() && needed && now >= link.next_try {
                // A failure schedules the next attempt; nothing else to do here.
                let _ = self.connect(li).await;
            }
        }
    }

    /// Asks the cluster for the topic's leaders and points each partition at
    /// its leader's link (adding links for new brokers). Errors leave the
    /// metadata stale, to be tried again.
    async fn refresh_leaders(&mut self) -> Result<(), StreamError> {
        let plan = self.plan.clone();
        // Any broker will do: the known ones first, then the bootstrap list.
        let mut servers: Vec<String> = self.links.iter().map(|l| l.addr.clone()).collect();
        servers.extend(plan.bootstrap.iter().cloned());
        let mut conn = cluster::bootstrap_with(&servers, &plan.connect_options()).await?;
        let info = cluster::metadata(&mut conn, &[&self.topic]).await?;
        let topic = info
            .topic(&self.topic)
            .ok_or_else(|| StreamError::TopicMissing {
                topic: self.topic.clone(),
            })?;
        let mut complete = true;
        for pi in 0..self.parts.len() {
            let id = self.parts[pi].id;
            let leader = topic
                .partitions
                .iter()
                .find(|p| p.id == id)
                .filter(|p| p.error == 0 && p.leader >= 0)
                .and_then(|p| info.broker(p.leader));
            let Some(leader) = leader else {
                complete = false;
                continue;
            };
            self.follow_leader(pi, &leader.addr);
        }
        if complete {
            Ok(())
        } else {
            Err(StreamError::LeadersMissing)
        }
    }

    /// Points part `pi` at the link to `addr` (adding it if new).
    fn follow_leader(&mut self, pi: usize, addr: &str) {
        let slot = self.plan.connection_slot(self.parts[pi].id);
        let li = match self
            .links
            .iter()
            .position(|l| l.addr == addr && l.slot == slot)
        {
            Some(li) => li,
            None => {
                self.links.push(self.new_link(addr, slot));
                self.links.len() - 1
            }
        };
        if self.parts[pi].link != li {
            let old = self.parts[pi].link;
            if self.parts[pi].queued {
                // Its batch waits in the old leader's request: resend it via
                // the retry queue, in order, to the new leader.
                self.unqueue(old, Instant::now());
            }
            self.parts[pi].link = li;
        }
    }

    /// Moves link `li`'s unsent batches to the retry queue (its connection
    /// is gone, or a partition changed leader), in order, and empties its
    /// request.
    pub fn unqueue(&mut self, li: usize, now: Instant) {
        let link = &mut self.links[li];
        for b in link.pending.drain(..) {
            let range = b.start as usize..(b.start + b.len) as usize;
            let bytes = link.request.batch(range).to_vec();
            self.parts[b.part].queued = false;
            // Never sent: not an attempt.
            self.books.push_retry(b, bytes, now);
        }
        link.request.reset();
    }
}

/// Reports a connection whose oldest request has waited longer than the
/// request timeout, and closes its in-flight slots (waking a sender that
/// waits for one); the stream task then retires it and resends what it
/// carried. One timer per connection instead of one per request keeps the
/// send path free of allocations.
struct Watchdog {
    id: ConnId,
    addr: String,
    inflight: Rc<RefCell<InFlight>>,
    permits: Rc<Semaphore>,
    events: Events,
    timeout: Duration,
}

impl Watchdog {
    async fn run(self) {
        let timeout = self.timeout;
        loop {
            glommio::timer::sleep(Duration::from_millis(100).min(timeout)).await;
            let now = Instant::now();
            let oldest = self.inflight.borrow().requests.front().map(|r| r.sent_at);
            if oldest.is_some_and(|t| now.saturating_duration_since(t) > timeout) {
                tracing::debug!("no response from {} within {timeout:?}", self.addr);
                self.events.send(Event::TimedOut(self.id));
                self.permits.close();
                return;
            }
        }
    }
}
