//! Broker connections of one stream task: opening them, losing them,
//! reconnecting with capped exponential backoff, following partition
//! leaders through metadata refreshes, and the request-timeout watchdog.

use super::acks::read_acks;
use super::send::unqueue_pending;
use super::state::{InFlight, Knobs, Part, Shared};
use crate::plan::{Acks, RunPlan};
use datastorm_engine::cluster;
use datastorm_engine::conn::{Connection, PipeSender};
use datastorm_engine::metrics::ShardCounters;
use datastorm_engine::wire::produce::{self, ProduceRequestBuilder};
use glommio::sync::Semaphore;
use glommio::task::JoinHandle;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest wait between reconnect attempts (Kafka's reconnect.backoff.max.ms).
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// What the ack reader and the watchdog tell the sender loop about a
/// connection.
#[derive(Debug)]
pub(super) struct Health {
    /// The connection failed (or timed out): retire it and reconnect.
    pub broken: Cell<bool>,
    /// The broker asked (throttle time) not to be sent to before this.
    pub throttled_until: Cell<Option<Instant>>,
}

/// One live connection of a link.
pub(super) struct LinkConn {
    pub sender: PipeSender,
    pub inflight: Rc<RefCell<InFlight>>,
    pub permits: Rc<Semaphore>,
    pub version: i16,
    pub health: Rc<Health>,
    pub reader: Option<JoinHandle<()>>,
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
    pub pending: Vec<super::state::BatchAcct>,
    /// Failed connection attempts since the last success.
    pub attempts: u32,
    pub next_try: Instant,
}

/// What the watchdog watches: per link, the current connection's state.
pub(super) type Watched =
    Rc<RefCell<Vec<Option<(String, Rc<RefCell<InFlight>>, Rc<Semaphore>, Rc<Health>)>>>>;

/// Everything needed to open a stream's connections.
pub(super) struct Opener {
    pub plan: std::sync::Arc<RunPlan>,
    pub topic: String,
    pub shared: Rc<Shared>,
    pub watched: Watched,
}

impl Opener {
    fn request_capacity(&self) -> usize {
        self.plan.batch_size * 2 + 4096
    }

    /// A link to `addr`, not connected yet.
    pub fn link(&self, addr: &str, slot: usize) -> Link {
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
    /// reader. On failure, schedules the next attempt.
    pub async fn connect(&self, li: usize, link: &mut Link) -> Result<i16, String> {
        let plan = &self.plan;
        let conn = match Connection::connect_with(&link.addr, &plan.connect_options()).await {
            Ok(c) => c,
            Err(e) => return Err(self.attempt_failed(link, e.to_string())),
        };
        let version = match conn.version_for::<kafka_protocol::messages::ProduceRequest>((
            produce::MIN_VERSION,
            produce::MAX_VERSION,
        )) {
            Ok(v) => v,
            Err(e) => {
                // Not a transient problem: no retry will fix the versions.
                self.shared.fail(e.to_string());
                return Err(e.to_string());
            }
        };
        let (sender, reader) = conn.into_pipeline();
        let inflight = Rc::new(RefCell::new(InFlight {
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
        }));
        let permits = Rc::new(Semaphore::new(plan.max_in_flight as u64));
        let health = Rc::new(Health {
            broken: Cell::new(false),
            throttled_until: Cell::new(None),
        });
        let reader = (plan.acks != Acks::None).then(|| {
            glommio::spawn_local(read_acks(
                reader,
                inflight.clone(),
                permits.clone(),
                health.clone(),
                self.shared.clone(),
                version,
            ))
            .detach()
        });
        {
            let mut w = self.watched.borrow_mut();
            if w.len() <= li {
                w.resize(li + 1, None);
            }
            w[li] = Some((
                link.addr.clone(),
                inflight.clone(),
                permits.clone(),
                health.clone(),
            ));
        }
        link.conn = Some(LinkConn {
            sender,
            inflight,
            permits,
            version,
            health,
            reader,
        });
        link.attempts = 0;
        Ok(version)
    }

    fn attempt_failed(&self, link: &mut Link, why: String) -> String {
        self.shared.count_error("CONNECT_FAILED", 1);
        link.attempts += 1;
        let wait = Duration::from_millis(100)
            .saturating_mul(1 << link.attempts.min(10))
            .min(MAX_RECONNECT_BACKOFF);
        link.next_try = Instant::now() + wait;
        // The broker may be gone for good: its partitions may have new leaders.
        self.shared.metadata_stale.set(true);
        why
    }
}

/// Retires a failed connection: shuts the socket so its reader ends, waits
/// for the reader to move the unanswered batches to the retry queue, moves
/// the unsent ones there too, and schedules a reconnect.
pub(super) async fn retire(li: usize, links: &mut [Link], parts: &mut [Part], opener: &Opener) {
    let Some(mut conn) = links[li].conn.take() else {
        return;
    };
    conn.sender.shutdown();
    conn.permits.close();
    if let Some(reader) = conn.reader.take() {
        reader.await;
    }
    // acks=0 has no reader: nothing is awaited, nothing is in flight.
    if let Some(w) = opener.watched.borrow_mut().get_mut(li) {
        *w = None;
    }
    unqueue_pending(&mut links[li], parts, &opener.shared, Instant::now());
    let link = &mut links[li];
    link.attempts += 1;
    link.next_try = Instant::now()
        + Duration::from_millis(50)
            .saturating_mul(1 << link.attempts.min(10))
            .min(MAX_RECONNECT_BACKOFF);
    opener.shared.metadata_stale.set(true);
    ShardCounters::set(&opener.shared.counters.requests_in_flight, 0);
}

/// Maintenance between chunks: retire broken connections, refresh metadata
/// when leaders may have moved, reconnect links that are due and needed.
pub(super) async fn maintain(
    links: &mut Vec<Link>,
    parts: &mut [Part],
    knobs: &Knobs,
    opener: &Opener,
    next_metadata: &mut Instant,
) {
    let _ = knobs;
    for li in 0..links.len() {
        if links[li]
            .conn
            .as_ref()
            .is_some_and(|c| c.health.broken.get())
        {
            retire(li, links, parts, opener).await;
        }
    }
    let now = Instant::now();
    if opener.shared.metadata_stale.get() && now >= *next_metadata {
        let backoff = match refresh_leaders(links, parts, opener).await {
            Ok(()) => {
                opener.shared.metadata_stale.set(false);
                Duration::ZERO
            }
            Err(e) => {
                tracing::debug!("metadata refresh failed: {e}");
                Duration::from_millis(250)
            }
        };
        *next_metadata = Instant::now() + backoff.max(Duration::from_millis(100));
    }
    let now = Instant::now();
    for (li, link) in links.iter_mut().enumerate() {
        let needed = parts.iter().any(|p| p.link == li && !p.dead);
        if link.conn.is_none() && needed && now >= link.next_try {
            // A failure schedules the next attempt; nothing else to do here.
            let _ = opener.connect(li, link).await;
        }
    }
}

/// Asks the cluster for the topic's leaders and points each partition at
/// its leader's link (adding links for new brokers). Errors leave the
/// metadata stale, to be tried again.
async fn refresh_leaders(
    links: &mut Vec<Link>,
    parts: &mut [Part],
    opener: &Opener,
) -> Result<(), String> {
    let plan = &opener.plan;
    // Any broker will do: the known ones first, then the bootstrap list.
    let mut servers: Vec<String> = links.iter().map(|l| l.addr.clone()).collect();
    servers.extend(plan.bootstrap.iter().cloned());
    let mut conn = cluster::bootstrap_with(&servers, &plan.connect_options())
        .await
        .map_err(|e| e.to_string())?;
    let info = cluster::metadata(&mut conn, &[&opener.topic])
        .await
        .map_err(|e| e.to_string())?;
    let topic = info
        .topic(&opener.topic)
        .ok_or_else(|| format!("topic {} missing from metadata", opener.topic))?;
    let mut complete = true;
    for pi in 0..parts.len() {
        let id = parts[pi].id;
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
        let slot = opener.plan.connection_slot(id);
        let li = match links
            .iter()
            .position(|l| l.addr == leader.addr && l.slot == slot)
        {
            Some(li) => li,
            None => {
                links.push(opener.link(&leader.addr, slot));
                links.len() - 1
            }
        };
        if parts[pi].link != li {
            let old = parts[pi].link;
            if parts[pi].queued {
                // Its batch waits in the old leader's request: resend it via
                // the retry queue, in order, to the new leader.
                unqueue_pending(&mut links[old], parts, &opener.shared, Instant::now());
            }
            parts[pi].link = li;
        }
    }
    if complete {
        Ok(())
    } else {
        Err("some partitions have no leader yet".into())
    }
}

/// Marks a link's connection broken when its oldest request has waited
/// longer than the request timeout; the sender loop then retires it and
/// resends what it carried. One timer for the stream instead of one per
/// request keeps the send path free of allocations.
pub(super) async fn watch_request_timeouts(
    shared: Rc<Shared>,
    watched: Watched,
    timeout: Duration,
) {
    loop {
        glommio::timer::sleep(Duration::from_millis(100).min(timeout)).await;
        let now = Instant::now();
        for (addr, inflight, permits, health) in watched.borrow().iter().flatten() {
            let oldest = inflight.borrow().requests.front().map(|r| r.sent_at);
            if !health.broken.get()
                && oldest.is_some_and(|t| now.saturating_duration_since(t) > timeout)
            {
                shared.count_error("REQUEST_TIMED_OUT", 1);
                tracing::debug!("no response from {addr} within {timeout:?}");
                health.broken.set(true);
                permits.close();
            }
        }
    }
}
