//! Executors, listeners and connections.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

use super::fetch::{self, Answer, ParkedFetch};
use super::handlers::{self, ConnInfo, FrameError, Reply, FIRST_PRODUCER_ID};
use super::pace::Pacing;
use super::registry::{Registry, TopicEntry};
use super::session::Sessions;
use super::stall::StallWindow;
use super::stats::{bump, ExecCounters};
use super::synthetic::Synthetic;
use super::wake::{self, WaitSlot, Woken};
use super::{SinkConfig, SinkError, SinkStats, TopicStats, MAX_FRAME_BYTES};

/// Milliseconds since the epoch (0 if the clock is before it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How often an executor looks at the stop flag while idle.
const STOP_POLL: Duration = Duration::from_millis(20);
/// How long an executor waits for its connections to close on stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// io_uring registered-buffer memory per executor: the sink does no file
/// I/O, so glommio's minimum rather than its 10 MiB default.
const IO_MEMORY: usize = 64 << 10;

/// Read buffer: at least this much free space is offered to each read.
const MIN_READ: usize = 32 << 10;
/// Read buffer: size of a fresh segment.
const SEGMENT: usize = 256 << 10;
/// A frame up to this size gets its whole buffer at once (no regrowth
/// copies); a larger one grows by doubling as its bytes arrive, so a client
/// that announces 100 MiB and sends nothing does not get 100 MiB.
const EAGER_FRAME: usize = 16 << 20;
/// Response buffer capacity kept between writes.
const KEEP_WRITE_CAPACITY: usize = 1 << 20;
/// A paced connection stops reading while it holds this many responses...
const MAX_PENDING_RESPONSES: usize = 4096;
/// ... or this many response bytes, until the due ones are written.
const MAX_PENDING_BYTES: usize = 8 << 20;

/// State shared by all executors and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub stop: AtomicBool,
    pub counters: Box<[ExecCounters]>,
    pub registry: Registry,
    pub next_producer_id: AtomicI64,
    pub node_id: i32,
    pub ack_delay: Duration,
    /// Each executor's share of `max_records_per_s`.
    pub executor_rate: Option<f64>,
    /// `SinkConfig::stall` as absolute instants, fixed here, before any
    /// executor starts, from one common start: every executor reads the same
    /// immutable window, so they stall and resume together without talking
    /// to each other.
    pub stall: Option<StallWindow>,
    /// `SinkConfig::keep_per_partition`.
    pub keep_per_partition: usize,
    /// The synthetic batch and which topics get it.
    pub synthetic: Synthetic,
    /// Each executor's long-polling fetches (see `wake`).
    pub waits: Box<[WaitSlot]>,
}

impl Shared {
    pub(crate) fn new(cfg: &SinkConfig, executors: usize) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            counters: (0..executors).map(|_| ExecCounters::default()).collect(),
            registry: Registry::new(cfg.default_partitions),
            next_producer_id: AtomicI64::new(FIRST_PRODUCER_ID),
            node_id: cfg.node_id,
            ack_delay: cfg.ack_delay,
            executor_rate: cfg.max_records_per_s.map(|r| r / executors.max(1) as f64),
            stall: cfg.stall.map(|s| s.window(Instant::now())),
            keep_per_partition: cfg.keep_per_partition,
            synthetic: Synthetic::build(&cfg.synthetic, now_ms()),
            waits: (0..executors).map(|_| WaitSlot::default()).collect(),
        }
    }

    /// Wakes the fetches waiting on any executor (after an append).
    pub(crate) fn wake_fetches(&self) {
        for slot in self.waits.iter() {
            slot.wake_all();
        }
    }

    pub(crate) fn totals(&self) -> SinkStats {
        let mut stats = SinkStats::default();
        for c in self.counters.iter() {
            c.add_to(&mut stats);
        }
        stats
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// A topic as one executor knows it: the shared entry (partition count,
/// offsets) plus this executor's counts.
#[derive(Debug)]
pub(crate) struct LocalTopic {
    pub entry: Arc<TopicEntry>,
    pub stats: TopicStats,
}

impl LocalTopic {
    pub(crate) fn new(entry: Arc<TopicEntry>) -> LocalTopic {
        let stats = TopicStats {
            partitions: entry.partitions,
            ..TopicStats::default()
        };
        LocalTopic { entry, stats }
    }
}

/// What an executor thread hands back when it ends.
#[derive(Debug, Default)]
pub(crate) struct ExecutorOutcome {
    pub topics: Vec<(String, TopicStats)>,
}

/// State of one executor, shared by its tasks.
pub(crate) struct ExecState {
    pub shared: Arc<Shared>,
    index: usize,
    pub topics: RefCell<HashMap<Box<str>, LocalTopic>>,
    /// This executor's fetch sessions.
    pub sessions: RefCell<Sessions>,
    /// Topics Fetch v13+ named by id, by id.
    pub topic_ids: RefCell<HashMap<[u8; 16], Arc<TopicEntry>>>,
    /// Open connections' sockets, so that stop can shut them down.
    conns: RefCell<HashMap<u64, RawFd>>,
    next_conn: Cell<u64>,
    stopping: Cell<bool>,
    /// Ack delay and record bucket; `None` when neither is configured.
    pub pacing: Option<Pacing>,
}

impl ExecState {
    pub(crate) fn counters(&self) -> &ExecCounters {
        &self.shared.counters[self.index]
    }
}

/// The body of executor thread `index`: makes the executor, binds, reports
/// readiness (or the error) on `ready`, serves until the stop flag is set.
pub(crate) fn run_executor(
    index: usize,
    cpu: Option<usize>,
    bind_addr: SocketAddr,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<SocketAddr, SinkError>>,
) -> ExecutorOutcome {
    let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
    let executor = LocalExecutorBuilder::new(placement)
        .name(&format!("ds-sink-{index}"))
        .io_memory(IO_MEMORY)
        .make();
    let executor = match executor {
        Ok(ex) => ex,
        Err(e) => {
            let _ = ready.send(Err(SinkError::Executor {
                index,
                cpu,
                message: e.to_string(),
            }));
            return ExecutorOutcome::default();
        }
    };
    executor.run(async move {
        let listener = match TcpListener::bind(bind_addr) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(SinkError::Bind {
                    addr: bind_addr,
                    source: e.into(),
                }));
                return ExecutorOutcome::default();
            }
        };
        let local_addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                let _ = ready.send(Err(SinkError::Bind {
                    addr: bind_addr,
                    source: e.into(),
                }));
                return ExecutorOutcome::default();
            }
        };
        if ready.send(Ok(local_addr)).is_err() {
            return ExecutorOutcome::default();
        }
        tracing::debug!(index, ?cpu, %local_addr, "sink executor listening");
        let pacing = Pacing::new(shared.ack_delay, shared.executor_rate);
        let state = Rc::new(ExecState {
            shared,
            pacing,
            index,
            topics: RefCell::new(HashMap::new()),
            topic_ids: RefCell::new(HashMap::new()),
            sessions: RefCell::new(Sessions::new(index)),
            conns: RefCell::new(HashMap::new()),
            next_conn: Cell::new(0),
            stopping: Cell::new(false),
        });
        serve(listener, state).await
    })
}

async fn wait_for_stop(shared: &Shared) {
    while !shared.stopping() {
        glommio::timer::sleep(STOP_POLL).await;
    }
}

async fn serve(listener: TcpListener, state: Rc<ExecState>) -> ExecutorOutcome {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            wait_for_stop(&state.shared).await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(connection(Rc::clone(&state), stream)).detach();
            }
            Some(Err(e)) => {
                // E.g. EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "sink accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    state.stopping.set(true);
    for &fd in state.conns.borrow().values() {
        // SAFETY: `fd` belongs to a live connection task's TcpStream (it is
        // removed from the map before the stream is dropped); shutdown only
        // wakes that task's pending read or write, which then ends it.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while !state.conns.borrow().is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    let open = state.conns.borrow().len();
    if open > 0 {
        tracing::warn!(open, "sink executor stopping with connections still open");
    }
    let topics = state
        .topics
        .borrow()
        .iter()
        .map(|(name, t)| (name.to_string(), t.stats.clone()))
        .collect();
    ExecutorOutcome { topics }
}

/// Removes a connection from its executor's table when the task ends.
struct ConnGuard {
    state: Rc<ExecState>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.state.conns.borrow_mut().remove(&self.id);
    }
}

async fn connection(state: Rc<ExecState>, mut stream: TcpStream) {
    let id = state.next_conn.get();
    state.next_conn.set(id + 1);
    state.conns.borrow_mut().insert(id, stream.as_raw_fd());
    // Declared after `stream`, so dropped before it: the fd leaves the table
    // before it is closed.
    let _guard = ConnGuard {
        state: Rc::clone(&state),
        id,
    };
    if state.stopping.get() {
        return;
    }
    bump(&state.counters().connections, 1);
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let peer = stream.peer_addr().ok();
    let local_addr = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read a connection's local address");
            return;
        }
    };
    let conn = ConnInfo { local_addr };
    match serve_connection(&state, &conn, &mut stream).await {
        Ok(()) => tracing::trace!(?peer, "sink connection closed"),
        Err(ConnError::Io(e)) => tracing::debug!(?peer, error = %e, "sink connection I/O error"),
        Err(ConnError::Frame(e)) => {
            bump(&state.counters().decode_errors, 1);
            tracing::warn!(?peer, error = %e, "closing sink connection on a bad request");
        }
    }
}

enum ConnError {
    Io(std::io::Error),
    Frame(FrameError),
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        ConnError::Io(e)
    }
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> Self {
        ConnError::Frame(e)
    }
}

async fn serve_connection(
    state: &ExecState,
    conn: &ConnInfo,
    stream: &mut TcpStream,
) -> Result<(), ConnError> {
    match &state.pacing {
        None => serve_unpaced(state, conn, stream).await,
        Some(pacing) => serve_paced(state, pacing, conn, stream).await,
    }
}

/// Responses go out as soon as they are made.
async fn serve_unpaced(
    state: &ExecState,
    conn: &ConnInfo,
    stream: &mut TcpStream,
) -> Result<(), ConnError> {
    let mut frames = FrameBuf::default();
    let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
    loop {
        // Nothing is handled or written inside a stall: what was read stays
        // in `frames` until it ends.
        sit_out_stall(state).await;
        if state.stopping.get() {
            return Ok(());
        }
        // Answer every complete request in the buffer (in order), then send
        // all the responses with one write.
        while let Some(frame) = frames.next_frame()? {
            if let Reply::FetchWait(parked) =
                handlers::handle_frame(state, conn, frame, &mut out, None)?
            {
                // What was answered before it goes out first; then the
                // fetch waits, and later requests wait behind it.
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    out.clear();
                }
                long_poll(state, &parked, &mut out).await?;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
            if out.capacity() > KEEP_WRITE_CAPACITY {
                out.shrink_to(16 << 10);
            }
        }
        let Some(n) = read_until_stall(state, stream, frames.read_buf()).await? else {
            // The stall began: sit it out before reading again.
            continue;
        };
        if n == 0 || state.stopping.get() {
            return Ok(());
        }
        frames.filled(n);
    }
}

/// While the sink is stalled (`Shared::stall`), waits for the stall to end;
/// returns at once outside it. Called before a connection handles, writes or
/// reads anything, so a stalled connection does none of these: it stays
/// open, unread (the kernel's buffers fill and then the peer's writes
/// block, as with a frozen broker), and resumes where it was. The wait is a
/// plain timer sleep on this executor, cut into `STOP_POLL` steps so that a
/// stop (which only wakes pending reads and writes) is still noticed.
async fn sit_out_stall(state: &ExecState) {
    let Some(window) = state.shared.stall else {
        return;
    };
    while !state.stopping.get() {
        let Some(left) = window.remaining(Instant::now()) else {
            return;
        };
        glommio::timer::sleep(left.min(STOP_POLL)).await;
    }
}

/// Reads into `buf`, but gives up with `None` when a stall begins while the
/// read waits, so that nothing is read during the stall even on a
/// connection that was idle when it began. A glommio read is
/// readiness-based: dropping it when the timer wins loses no data. With no
/// stall ahead (none configured, or already over) it is a plain read.
async fn read_until_stall(
    state: &ExecState,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> std::io::Result<Option<usize>> {
    let ahead = state.shared.stall.and_then(|w| w.ahead(Instant::now()));
    match ahead {
        None => stream.read(buf).await.map(Some),
        Some(wait) => futures_lite::future::or(async { Some(stream.read(buf).await) }, async {
            glommio::timer::sleep(wait).await;
            None
        })
        .await
        .transpose(),
    }
}

/// Responses wait until they are due (Produce: ack delay plus record-bucket
/// hold; anything else: at once) in a queue, while the connection keeps
/// reading and serving requests; the due head of the queue is written in
/// request order. The queue is bounded: when it is full the connection stops
/// reading until due responses have been written (backpressure).
async fn serve_paced(
    state: &ExecState,
    pacing: &Pacing,
    conn: &ConnInfo,
    stream: &mut TcpStream,
) -> Result<(), ConnError> {
    let mut frames = FrameBuf::default();
    let mut queue = ResponseQueue::default();
    let mut eof = false;
    loop {
        // Inside a stall nothing below runs: no request is handled, no
        // response is written (those due meanwhile wait for its end, then go
        // out in order), no read is made.
        sit_out_stall(state).await;
        if state.stopping.get() {
            return Ok(());
        }
        let now = Instant::now();
        while !queue.full() {
            let Some(frame) = frames.next_frame()? else {
                break;
            };
            let hold = match handlers::handle_frame(state, conn, frame, &mut queue.out, Some(now))?
            {
                Reply::None => continue,
                Reply::Control => Duration::ZERO,
                Reply::Produce { throttle } => throttle + pacing.ack_delay,
                Reply::FetchWait(parked) => {
                    // Held responses go out (when due) before the fetch
                    // waits; its answer is due at once.
                    queue.write_all(state, stream).await?;
                    long_poll(state, &parked, &mut queue.out).await?;
                    Duration::ZERO
                }
            };
            queue.pending.push_back((now + hold, queue.out.len()));
        }
        let now = Instant::now();
        if queue.write_due(stream, now).await? {
            continue;
        }
        // Wait for the next request, the head's due time or the start of a
        // stall; timer waits are capped so that a stop is noticed (a stop
        // also wakes a pending read).
        let next_due = queue.next_due(now);
        if !eof && !queue.full() {
            let stall_ahead = state.shared.stall.and_then(|w| w.ahead(now));
            let wake = match (next_due, stall_ahead) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match read_until(stream, &mut frames, wake).await {
                Some(Ok(0)) => eof = true,
                Some(Ok(n)) => frames.filled(n),
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        } else if let Some(wait) = next_due {
            glommio::timer::sleep(wait).await;
        } else {
            // End of stream and every response written.
            return Ok(());
        }
    }
}

/// Encoded responses not yet written, in request order; `pending` holds
/// each one's due time and end offset in `out`.
struct ResponseQueue {
    out: Vec<u8>,
    pending: VecDeque<(Instant, usize)>,
}

impl Default for ResponseQueue {
    fn default() -> Self {
        ResponseQueue {
            out: Vec::with_capacity(16 << 10),
            pending: VecDeque::new(),
        }
    }
}

impl ResponseQueue {
    /// Past its bounds: the connection stops reading requests.
    fn full(&self) -> bool {
        self.pending.len() >= MAX_PENDING_RESPONSES || self.out.len() >= MAX_PENDING_BYTES
    }

    /// How long until the head is due, capped so that a stop is noticed.
    fn next_due(&self, now: Instant) -> Option<Duration> {
        self.pending
            .front()
            .map(|(due, _)| due.saturating_duration_since(now).min(STOP_POLL))
    }

    /// Writes the responses due by `now`, in one write; false when none was.
    async fn write_due(&mut self, stream: &mut TcpStream, now: Instant) -> io::Result<bool> {
        let ready = self
            .pending
            .iter()
            .take_while(|(due, _)| *due <= now)
            .count();
        if ready == 0 {
            return Ok(false);
        }
        let end = self.pending[ready - 1].1;
        stream.write_all(&self.out[..end]).await?;
        self.out.drain(..end);
        self.pending.drain(..ready);
        for p in self.pending.iter_mut() {
            p.1 -= end;
        }
        if self.out.capacity() > KEEP_WRITE_CAPACITY && self.out.len() <= 16 << 10 {
            self.out.shrink_to(16 << 10);
        }
        Ok(true)
    }
}

impl ResponseQueue {
    /// Writes every held response, each when it is due (or at once when
    /// the sink stops).
    async fn write_all(&mut self, state: &ExecState, stream: &mut TcpStream) -> io::Result<()> {
        while !self.pending.is_empty() {
            let now = Instant::now();
            if state.stopping.get() || state.shared.stopping() {
                let end = self.out.len();
                stream.write_all(&self.out[..end]).await?;
                self.out.clear();
                self.pending.clear();
                return Ok(());
            }
            if !self.write_due(stream, now).await? {
                if let Some(wait) = self.next_due(now) {
                    glommio::timer::sleep(wait).await;
                }
            }
        }
        Ok(())
    }
}

/// Waits until `parked` can be answered (enough data, an error, max_wait
/// over, or the sink stopping) and appends its response to `out`. The wait
/// is woken by appends (`wake`) and by a timer cut into `STOP_POLL` steps,
/// so that a stop is prompt.
async fn long_poll(
    state: &ExecState,
    parked: &ParkedFetch,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let slot = &state.shared.waits[state.index];
    loop {
        // Registered before the partitions are read again: an append after
        // that read wakes this task (see `wake`).
        wake::register(slot).await;
        let now = Instant::now();
        let last = now >= parked.deadline || state.stopping.get() || state.shared.stopping();
        let visible = match fetch::try_answer(state, parked, last, out)? {
            Answer::Sent => {
                // An answer made as a stall begins waits for its end, like
                // every other response.
                sit_out_stall(state).await;
                return Ok(());
            }
            Answer::Wait(visible) => visible,
        };
        // Wake at max_wait, when held batches become visible, or at the
        // stop poll, whichever is first.
        let mut left = parked
            .deadline
            .saturating_duration_since(now)
            .min(STOP_POLL);
        if let Some(t) = visible {
            left = left.min(t.saturating_duration_since(now));
        }
        futures_lite::future::or(Woken::default(), glommio::timer::sleep(left)).await;
    }
}

/// Reads into `frames`, giving up after `wake` (None: when the timer won).
async fn read_until(
    stream: &mut TcpStream,
    frames: &mut FrameBuf,
    wake: Option<Duration>,
) -> Option<io::Result<usize>> {
    match wake {
        None => Some(stream.read(frames.read_buf()).await),
        Some(wait) => {
            // A glommio read is readiness-based: dropping it when the timer
            // wins loses no data.
            futures_lite::future::or(
                async { Some(stream.read(frames.read_buf()).await) },
                async {
                    glommio::timer::sleep(wait).await;
                    None
                },
            )
            .await
        }
    }
}

/// Splits the byte stream into frames. `buf[..filled]` holds received bytes
/// not yet consumed; `buf[filled..]` is zeroed/stale scratch space that reads
/// go into, so reads need no per-read initialisation. A complete frame is
/// split off the front as `Bytes` (no copy); decoded record bytes are slices
/// of it.
#[derive(Default)]
pub(crate) struct FrameBuf {
    buf: BytesMut,
    filled: usize,
}

impl FrameBuf {
    /// The size prefix of the first frame, validated.
    fn frame_size(&self) -> Result<Option<usize>, FrameError> {
        if self.filled < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        match usize::try_from(size) {
            Ok(n) if n <= MAX_FRAME_BYTES => Ok(Some(n)),
            _ => Err(FrameError(format!(
                "request size {size} outside 0..={MAX_FRAME_BYTES}"
            ))),
        }
    }

    /// The next complete frame (without its size prefix), if any.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.frame_size()? else {
            return Ok(None);
        };
        let total = 4 + size;
        if self.filled < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        self.filled -= total;
        frame.advance(4);
        Ok(Some(frame.freeze()))
    }

    /// Space to read into. Call only after `next_frame` returned `Ok(None)`.
    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        let needed = match self.frame_size() {
            Ok(Some(size)) => 4 + size,
            _ => 4,
        };
        let missing = needed.saturating_sub(self.filled).max(1);
        let space = self.buf.len() - self.filled;
        if space < missing.min(MIN_READ) {
            let extra = if missing <= SEGMENT {
                SEGMENT
            } else if needed <= EAGER_FRAME {
                missing
            } else {
                missing.min(self.filled.max(SEGMENT))
            };
            // Keep the unconsumed bytes; once the frames split off earlier
            // are dropped, `reserve` reuses the allocation.
            self.buf.truncate(self.filled);
            self.buf.reserve(extra);
            self.buf.resize(self.filled + extra, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Records that a read put `n` bytes into `read_buf()`.
    pub(crate) fn filled(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.buf.len());
    }
}
