//! One leader broker of a consumer shard: its connection, its fetch
//! session, and the loop that positions and fetches its partitions.
//!
//! One Fetch is in flight per connection, as in the Java consumer and
//! librdkafka: the broker answers a connection's requests in order, and a
//! second Fetch for the same partitions could only return the same records
//! again. Throughput comes from the size of each response (up to
//! fetch.max.bytes) and from one connection per leader, fetched concurrently.

use super::plan::{ConsumePlan, StartFrom};
use super::records::take_response;
use super::state::{ConsumeCounters, Need, Shared};
use datastorm_engine::conn::{ConnError, Connection};
use datastorm_engine::wire::codes;
use datastorm_engine::wire::fetch::{
    self, fetch_request, fetch_version, list_offsets, partition_fault, FetchSession, FetchTopicRef,
    PartitionFault, EARLIEST, LATEST,
};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a shard's tasks share: the plan, the topic, the state.
pub(crate) struct Ctx {
    pub plan: Arc<ConsumePlan>,
    pub topic: FetchTopicRef,
    pub shared: RefCell<Shared>,
    pub counters: Arc<ConsumeCounters>,
    /// Records consumed over all of this instance's shards (`--count`).
    pub consumed: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    /// This host's e2e origin id.
    pub host: u32,
}

impl Ctx {
    pub fn quitting(&self) -> bool {
        self.shared.borrow().quit || self.stop.load(Relaxed)
    }

    /// Counts a failure under `name` (the shard's books and its counter).
    pub fn error(&self, name: &str) {
        self.shared.borrow_mut().count_error(name);
        ConsumeCounters::add(&self.counters.errors, 1);
    }
}

/// Why a step of a link failed.
enum StepError {
    /// The connection or a request on it: reconnect (bounded).
    Conn(ConnError),
    /// The broker's answer cannot be consumed (a non-retriable partition
    /// error, a corrupt batch): the shard fails at once.
    Fatal(String),
}

impl From<ConnError> for StepError {
    fn from(e: ConnError) -> Self {
        StepError::Conn(e)
    }
}

/// A link's connection and session.
struct Link {
    broker: i32,
    conn: Option<Connection>,
    session: FetchSession,
    version: i16,
    /// Failed attempts in a row (connects and requests).
    failures: u32,
    /// The link has been connected before (a later connect is a reconnect).
    connected_once: bool,
}

/// Runs the link of `broker` until its partitions move away, the shard
/// ends, or it fails too often; records how it ended in the shared state.
pub(crate) async fn run_link(broker: i32, ctx: std::rc::Rc<Ctx>) {
    let r = link_loop(broker, &ctx).await;
    ctx.shared.borrow_mut().exited.push((broker, r));
}

async fn link_loop(broker: i32, ctx: &Ctx) -> Result<(), String> {
    let mut link = Link {
        broker,
        conn: None,
        session: FetchSession::new(0),
        version: 0,
        failures: 0,
        connected_once: false,
    };
    loop {
        if ctx.quitting() {
            return Ok(());
        }
        let (wanted, position) = ctx.shared.borrow().work_for(broker);
        if wanted.is_empty() && position.is_empty() {
            if !ctx.shared.borrow().leads_any(broker) {
                return Ok(());
            }
            // Its partitions are done (until_end) or waiting: look again soon.
            glommio::timer::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let step = match link.connect(ctx).await {
            Ok(()) if !position.is_empty() => link.position(ctx, &position).await,
            Ok(()) => link.fetch(ctx, &wanted).await,
            Err(e) => Err(e.into()),
        };
        match step {
            Ok(()) => link.failures = 0,
            Err(StepError::Conn(e)) => link.failed(ctx, e).await?,
            Err(StepError::Fatal(why)) => return Err(why),
        }
    }
}

impl Link {
    /// Connects if not connected: versions, a fresh session, the fetch timeout.
    async fn connect(&mut self, ctx: &Ctx) -> Result<(), ConnError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let addr = ctx.shared.borrow().brokers.get(&self.broker).cloned();
        let Some(addr) = addr else {
            ctx.shared.borrow_mut().stale = true;
            return Err(ConnError::Closed {
                addr: format!("broker {} (not in the metadata)", self.broker),
            });
        };
        let mut conn = Connection::connect_with(&addr, &ctx.plan.connect_options()).await?;
        conn.set_timeout(ctx.plan.fetch_timeout());
        self.version = fetch_version(&conn, &ctx.topic)?;
        self.session = FetchSession::new(self.version);
        ctx.shared.borrow_mut().fetch_version = Some(self.version);
        if self.connected_once {
            ConsumeCounters::add(&ctx.counters.reconnects, 1);
        }
        self.connected_once = true;
        self.conn = Some(conn);
        Ok(())
    }

    /// A connection or request failed: drop the connection, ask for
    /// metadata (the leader may have moved), back off; give up after the
    /// plan's tries.
    async fn failed(&mut self, ctx: &Ctx, e: ConnError) -> Result<(), String> {
        self.conn = None;
        self.session.reset();
        self.failures += 1;
        ctx.error("connection");
        ctx.shared.borrow_mut().stale = true;
        if e.is_security() || matches!(e, ConnError::NoCommonVersion { .. }) {
            return Err(e.to_string());
        }
        if self.failures >= ctx.plan.reconnect_tries.max(1) {
            return Err(format!(
                "gave up on broker {} after {} failed attempts in a row: {e}",
                self.broker, self.failures
            ));
        }
        let backoff =
            Duration::from_millis(100 << self.failures.min(4)).min(Duration::from_secs(1));
        glommio::timer::sleep(backoff).await;
        Ok(())
    }

    fn conn(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connected before use")
    }

    /// Finds start (or reset) offsets with ListOffsets on the leader.
    async fn position(&mut self, ctx: &Ctx, parts: &[(i32, Need)]) -> Result<(), StepError> {
        let plan = &ctx.plan;
        let iso = plan.fetch.isolation;
        let ids: Vec<i32> = parts.iter().map(|(p, _)| *p).collect();
        let topic = ctx.topic.name.clone();
        let latest = list_offsets(self.conn(), &topic, &ids, LATEST, iso).await?;
        let earliest = list_offsets(self.conn(), &topic, &ids, EARLIEST, iso).await?;
        let at = match plan.from {
            StartFrom::Timestamp(ms) => {
                Some(list_offsets(self.conn(), &topic, &ids, ms, iso).await?)
            }
            _ => None,
        };
        let mut st = ctx.shared.borrow_mut();
        for &(id, need) in parts {
            let find = |v: &[fetch::ListedOffset]| v.iter().find(|o| o.partition == id).copied();
            let (Some(end), Some(start)) = (find(&latest), find(&earliest)) else {
                continue;
            };
            let err = if end.error != 0 {
                end.error
            } else {
                start.error
            };
            if err != 0 {
                drop(st);
                self.offsets_error(ctx, id, err)?;
                st = ctx.shared.borrow_mut();
                continue;
            }
            let next = match (need, plan.from) {
                (Need::Reset, f) if f.reset_to_latest() => end.offset,
                (Need::Reset, _) => start.offset,
                (_, StartFrom::Earliest) => start.offset,
                (_, StartFrom::Latest) => end.offset,
                (_, StartFrom::Timestamp(_)) => at
                    .as_deref()
                    .and_then(find)
                    .filter(|o| o.error == 0 && o.offset >= 0)
                    .map_or(end.offset, |o| o.offset),
                (_, StartFrom::Offset(o)) => o,
            };
            let Some(p) = st.part_mut(id) else { continue };
            if need == Need::Reset {
                p.resets += 1;
            } else {
                p.start = next;
            }
            if plan.stop.until_end && p.end.is_none() {
                p.end = Some(end.offset);
            }
            p.next = next;
            p.confirmed = need == Need::Reset || !matches!(plan.from, StartFrom::Offset(_));
            p.hw = p.hw.max(end.offset);
            p.need = Need::Ready;
        }
        Ok(())
    }

    /// A ListOffsets partition error: leader moves ask for metadata,
    /// retriable ones wait for the next round, others fail the shard.
    fn offsets_error(&self, ctx: &Ctx, id: i32, code: i16) -> Result<(), StepError> {
        let name = codes::lookup(code).name;
        ctx.error(name);
        match partition_fault(code) {
            PartitionFault::Leader => {
                let mut st = ctx.shared.borrow_mut();
                st.stale = true;
                if let Some(p) = st.part_mut(id) {
                    p.leader = -1;
                }
                Ok(())
            }
            PartitionFault::Retry | PartitionFault::OutOfRange => Ok(()),
            PartitionFault::Fatal => Err(StepError::Fatal(format!(
                "broker {} answered ListOffsets for {}-{id} with {}",
                self.broker,
                ctx.topic.name,
                codes::lookup(code)
            ))),
        }
    }

    /// One Fetch: request, wait, walk what came back.
    async fn fetch(&mut self, ctx: &Ctx, wanted: &[(i32, i64)]) -> Result<(), StepError> {
        let sreq = self.session.next_request(wanted);
        let req = fetch_request(self.version, &ctx.topic, &ctx.plan.fetch, &sreq);
        let version = self.version;
        ConsumeCounters::add(&ctx.counters.fetch_requests, 1);
        let sent = Instant::now();
        let resp = self.conn().request(&req, version).await?;
        let took = sent.elapsed().as_micros() as u64;
        ConsumeCounters::add(&ctx.counters.fetch_responses, 1);
        ctx.shared
            .borrow_mut()
            .fetch_latency
            .saturating_record(took.max(1));
        self.session.on_response(resp.error_code, resp.session_id);
        if resp.error_code != 0 {
            ctx.error(codes::lookup(resp.error_code).name);
            if !matches!(
                resp.error_code,
                fetch::FETCH_SESSION_ID_NOT_FOUND | fetch::INVALID_FETCH_SESSION_EPOCH
            ) {
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            return Ok(());
        }
        take_response(ctx, &resp, version)
            .map_err(|why| StepError::Fatal(format!("broker {}: {why}", self.broker)))?;
        if resp.throttle_time_ms > 0 {
            // KIP-219: the broker asks for quiet on this connection.
            glommio::timer::sleep(Duration::from_millis(resp.throttle_time_ms as u64)).await;
        }
        Ok(())
    }
}
