//! One broker connection: connect, negotiate versions, control-plane
//! request/response, and the pipelined Produce path.
//!
//! The socket is shared by two tasks of the same shard: the sender writes
//! requests, the reader task reads responses. Both run on one thread, and
//! each `poll_*` borrows the stream only for the duration of a non-blocking
//! syscall, so an `Rc<RefCell<_>>` is enough; glommio keeps separate wakers
//! for the read and write sides.
//!
//! The stream is plain TCP or TLS (`Transport`): an enum rather than a
//! boxed trait object, so the plaintext hot path is one predictable branch
//! and the request bytes go to the socket as before, without a copy. With
//! TLS, rustls' read side never writes (it only reads records and decrypts),
//! so the sender and the reader still use separate wakers. SASL runs once,
//! right after version negotiation, through ordinary requests
//! ([`crate::security::sasl`]).

use crate::security::tls::{explain, TlsFailure};
use crate::security::{
    sasl, SaslMechanism, SecurityConfig, SecurityProtocol, TlsConfig, PLAINTEXT,
};
use crate::wire::codes;
use crate::wire::control::{decode_response, encode_request};
use crate::wire::frame::{FrameReader, DEFAULT_FRAME_LIMIT};
use crate::wire::WireError;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use glommio::net::TcpStream;
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::protocol::{Request, StrBytes};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot resolve broker address '{addr}': {source}")]
    Resolve { addr: String, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("connection to {addr} failed: {source}")]
    Io { addr: String, source: io::Error },
    #[error("connection to {addr} closed by the broker")]
    Closed { addr: String },
    #[error("timed out after {timeout:?} waiting for {addr}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr}: {source}")]
    Wire { addr: String, source: WireError },
    #[error("{addr} does not support {api} in any version DataStorm speaks ({ours}); the broker offers {theirs}")]
    NoCommonVersion {
        addr: String,
        api: &'static str,
        ours: String,
        theirs: String,
    },
    #[error("{addr} answered {api} with {code}")]
    Broker {
        addr: String,
        api: &'static str,
        code: codes::KafkaCode,
    },
    #[error(
        "{addr} answered in TLS: that listener expects TLS clients. Use --security-protocol \
         ssl (or sasl_ssl) with --tls-ca, or the broker's PLAINTEXT port"
    )]
    TlsExpected { addr: String },
    #[error("{addr} closed the connection during {step}{hint}")]
    ClosedDuringSetup {
        addr: String,
        step: &'static str,
        hint: &'static str,
    },
    #[error(
        "the TLS certificate of broker {addr} is not trusted by {ca}: {reason}. \
         Pass the CA that signed the brokers' certificates with --tls-ca \
         (or, in a lab only, --tls-insecure)"
    )]
    TlsUntrusted {
        addr: String,
        ca: String,
        reason: String,
    },
    #[error(
        "the TLS certificate of broker {addr} is not valid for that address: {reason}. \
         The host the broker advertises must be in its certificate's subject \
         alternative names"
    )]
    TlsWrongName { addr: String, reason: String },
    #[error("broker {addr} rejected the TLS connection ({reason}): {hint}")]
    TlsRejected {
        addr: String,
        reason: String,
        hint: &'static str,
    },
    #[error("TLS with {addr} failed: {reason}")]
    TlsHandshake { addr: String, reason: String },
    #[error(
        "{addr} does not enable SASL mechanism {mechanism} (it offers: {offered}); \
         choose one of those with --sasl-mechanism"
    )]
    SaslMechanism {
        addr: String,
        mechanism: SaslMechanism,
        offered: String,
    },
    #[error(
        "SASL authentication failed for user '{username}' with mechanism {mechanism} at \
         {addr}: {detail}. Check --sasl-username and the password (--sasl-password, \
         --sasl-password-file or DATASTORM_SASL_PASSWORD), and that the user exists \
         on the cluster for this mechanism"
    )]
    SaslAuth {
        addr: String,
        username: String,
        mechanism: SaslMechanism,
        detail: String,
    },
    #[error("SASL {mechanism} exchange with {addr} failed: {detail}")]
    SaslProtocol {
        addr: String,
        mechanism: SaslMechanism,
        detail: String,
    },
}

impl ConnError {
    /// A failure of TLS or SASL settings: asking another broker with the
    /// same settings would fail the same way.
    pub fn is_security(&self) -> bool {
        matches!(
            self,
            ConnError::TlsUntrusted { .. }
                | ConnError::TlsExpected { .. }
                | ConnError::TlsWrongName { .. }
                | ConnError::TlsRejected { .. }
                | ConnError::TlsHandshake { .. }
                | ConnError::SaslMechanism { .. }
                | ConnError::SaslAuth { .. }
                | ConnError::SaslProtocol { .. }
        )
    }

    /// An I/O error on `addr`'s stream, explained when TLS caused it.
    fn from_io(addr: &str, source: io::Error, tls: Option<&TlsConfig>) -> ConnError {
        let addr = addr.to_owned();
        match tls.and_then(|t| explain(&source, t)) {
            None => ConnError::Io { addr, source },
            Some(TlsFailure::Untrusted { ca, reason }) => {
                ConnError::TlsUntrusted { addr, ca, reason }
            }
            Some(TlsFailure::WrongName { reason }) => ConnError::TlsWrongName { addr, reason },
            Some(TlsFailure::Rejected { reason, hint }) => {
                ConnError::TlsRejected { addr, reason, hint }
            }
            Some(TlsFailure::Handshake { reason }) => ConnError::TlsHandshake { addr, reason },
        }
    }
}

/// Socket options set on every broker connection (`produce --nodelay`,
/// `--socket-send-buffer`, `--socket-receive-buffer`, `--busy-poll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SocketOptions {
    /// TCP_NODELAY: send each request at once instead of waiting for the
    /// previous segment's ACK (Nagle). Kafka's clients set it too.
    pub nodelay: bool,
    /// SO_SNDBUF in bytes (the kernel doubles it and caps it at
    /// net.core.wmem_max); `None` leaves send-buffer autotuning on.
    pub send_buffer: Option<usize>,
    /// SO_RCVBUF in bytes (capped at net.core.rmem_max); `None`: autotuned.
    pub receive_buffer: Option<usize>,
    /// SO_BUSY_POLL in microseconds: spin in the receive path for up to this
    /// long (needs a NIC driver with busy polling; root to raise it above
    /// net.core.busy_read). `None` leaves the socket's default.
    pub busy_poll_us: Option<u32>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            nodelay: true,
            send_buffer: None,
            receive_buffer: None,
            busy_poll_us: None,
        }
    }
}

impl SocketOptions {
    /// Sets the options on a connected socket.
    pub fn apply(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        let set = |level: i32, name: i32, value: i32| -> io::Result<()> {
            // SAFETY: setsockopt(2) on a socket this connection owns, with a
            // pointer to an int that outlives the call and its size.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    (&value as *const i32).cast(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let int = |bytes: usize| i32::try_from(bytes).unwrap_or(i32::MAX);
        set(
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            i32::from(self.nodelay),
        )?;
        if let Some(b) = self.send_buffer {
            set(libc::SOL_SOCKET, libc::SO_SNDBUF, int(b))?;
        }
        if let Some(b) = self.receive_buffer {
            set(libc::SOL_SOCKET, libc::SO_RCVBUF, int(b))?;
        }
        if let Some(us) = self.busy_poll_us {
            set(libc::SOL_SOCKET, libc::SO_BUSY_POLL, int(us as usize))?;
        }
        Ok(())
    }
}

/// How to open a broker connection: client id, time limit, security.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions<'a> {
    pub client_id: &'a str,
    /// For connecting, the TLS handshake, version negotiation and SASL
    /// together; later, for each control-plane request.
    pub timeout: Duration,
    pub security: &'a SecurityConfig,
    pub socket: SocketOptions,
}

impl<'a> ConnectOptions<'a> {
    pub fn new(client_id: &'a str, timeout: Duration, security: &'a SecurityConfig) -> Self {
        ConnectOptions {
            client_id,
            timeout,
            security,
            socket: SocketOptions::default(),
        }
    }

    /// The same options with these socket options.
    pub fn with_socket(self, socket: SocketOptions) -> Self {
        ConnectOptions { socket, ..self }
    }

    /// Plain TCP, no authentication.
    pub fn plaintext(client_id: &'a str, timeout: Duration) -> Self {
        Self::new(client_id, timeout, &PLAINTEXT)
    }
}

/// The byte stream under a connection.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => s.get_ref().0,
        }
    }
}

/// A socket shared by the sender and reader tasks of one shard.
#[derive(Clone)]
pub struct SharedStream {
    inner: Rc<RefCell<Transport>>,
    tls: bool,
}

impl SharedStream {
    fn new(transport: Transport) -> Self {
        SharedStream {
            tls: matches!(transport, Transport::Tls(_)),
            inner: Rc::new(RefCell::new(transport)),
        }
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match &mut *self.inner.borrow_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut *self.inner.borrow_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.inner.borrow_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.inner.borrow_mut() {
            Transport::Plain(s) => Pin::new(s).poll_close(cx),
            Transport::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}

/// Writes one whole frame. rustls may keep the tail of a write in its own
/// buffer when the socket is full, so TLS frames are flushed; plain TCP
/// writes go straight to the socket and need no flush.
async fn write_frame(stream: &mut SharedStream, frame: &[u8]) -> io::Result<()> {
    stream.write_all(frame).await?;
    if stream.tls {
        stream.flush().await?;
    }
    Ok(())
}

/// The API version ranges a broker advertised.
#[derive(Debug, Clone, Default)]
pub struct ApiVersions(HashMap<i16, (i16, i16)>);

impl ApiVersions {
    /// The highest version in both the broker's range and `ours`.
    pub fn pick(&self, key: i16, ours: (i16, i16)) -> Option<i16> {
        let &(min, max) = self.0.get(&key)?;
        let hi = max.min(ours.1);
        (hi >= min.max(ours.0)).then_some(hi)
    }

    pub fn range(&self, key: i16) -> Option<(i16, i16)> {
        self.0.get(&key).copied()
    }

    /// Every advertised range by API name (`Produce`, `Fetch`, ...; the
    /// numeric key for APIs kafka-protocol does not know), for reports.
    pub fn by_name(&self) -> std::collections::BTreeMap<String, (i16, i16)> {
        self.0
            .iter()
            .map(|(&k, &r)| {
                let name = kafka_protocol::messages::ApiKey::try_from(k)
                    .map(|a| format!("{a:?}").trim_end_matches("Key").to_owned())
                    .unwrap_or_else(|_| format!("api{k}"));
                (name, r)
            })
            .collect()
    }
}

/// A connected, version-negotiated (and, where configured, TLS-wrapped and
/// SASL-authenticated) broker connection.
pub struct Connection {
    stream: SharedStream,
    reader: FrameReader,
    addr: String,
    client_id: Rc<str>,
    next_correlation_id: i32,
    versions: ApiVersions,
    timeout: Duration,
    tls: Option<TlsConfig>,
    /// Without SASL, until a request past ApiVersions is answered: a SASL
    /// listener answers ApiVersions, then closes on the next request, and
    /// that close deserves a hint rather than "closed by the broker".
    unproven: bool,
}

impl Connection {
    /// Connects to `addr` ("host:port") over plain TCP and negotiates API
    /// versions, all within `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, ConnError> {
        Self::connect_with(addr, &ConnectOptions::plaintext(client_id, timeout)).await
    }

    /// Connects to `addr` ("host:port"), runs the TLS handshake where the
    /// security protocol asks for it, negotiates API versions, and
    /// authenticates with SASL where asked, all within `opts.timeout`.
    pub async fn connect_with(addr: &str, opts: &ConnectOptions<'_>) -> Result<Self, ConnError> {
        let deadline = Instant::now() + opts.timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let stream = tcp_connect(addr, opts).await?;
        let security = opts.security;
        let tls = security.tls().cloned();
        let transport = match &tls {
            None => Transport::Plain(stream),
            Some(tls) => Transport::Tls(Box::new(tls_handshake(addr, stream, tls, left()).await?)),
        };
        let mut conn = Connection {
            stream: SharedStream::new(transport),
            reader: FrameReader::new(64 * 1024, DEFAULT_FRAME_LIMIT),
            addr: addr.to_owned(),
            client_id: opts.client_id.into(),
            next_correlation_id: 1,
            versions: ApiVersions::default(),
            timeout: left().max(Duration::from_millis(1)),
            tls,
            unproven: security.sasl().is_none(),
        };
        conn.negotiate()
            .await
            .map_err(|e| explain_negotiate_error(e, security.protocol()))?;
        if let Some(sasl) = security.sasl() {
            conn.timeout = left().max(Duration::from_millis(1));
            sasl::authenticate(&mut conn, sasl)
                .await
                .map_err(|e| match e {
                    ConnError::Closed { addr } => ConnError::ClosedDuringSetup {
                        addr,
                        step: "SASL authentication",
                        hint: ". Is this a SASL listener? Check --security-protocol and the port",
                    },
                    other => other,
                })?;
        }
        conn.timeout = opts.timeout;
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn versions(&self) -> &ApiVersions {
        &self.versions
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Sets the time limit of each later request: a consumer's Fetch may be
    /// held by the broker for its max wait, longer than a connect timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Picks the version to use for `R`, given the range this code speaks.
    pub fn version_for<R: Request>(&self, ours: (i16, i16)) -> Result<i16, ConnError> {
        self.versions
            .pick(R::KEY, ours)
            .ok_or_else(|| ConnError::NoCommonVersion {
                addr: self.addr.clone(),
                api: crate::wire::control::api_name(R::KEY),
                ours: format!("v{}..v{}", ours.0, ours.1),
                theirs: match self.versions.range(R::KEY) {
                    Some((a, b)) => format!("v{a}..v{b}"),
                    None => "none".to_owned(),
                },
            })
    }

    async fn negotiate(&mut self) -> Result<(), ConnError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("datastorm"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut resp = self.request(&req, 3).await?;
        if resp.error_code == 35 {
            // UNSUPPORTED_VERSION: the broker answers in v0 with its ranges.
            resp = self.request(&ApiVersionsRequest::default(), 0).await?;
        }
        if resp.error_code != 0 {
            return Err(ConnError::Broker {
                addr: self.addr.clone(),
                api: "ApiVersions",
                code: codes::lookup(resp.error_code),
            });
        }
        self.versions = ApiVersions(
            resp.api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect(),
        );
        Ok(())
    }

    /// Sends one control-plane request and waits for its response.
    pub async fn request<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ConnError> {
        let corr = self.take_correlation_id();
        let frame = encode_request(req, version, corr, &self.client_id).map_err(|source| {
            ConnError::Wire {
                addr: self.addr.clone(),
                source,
            }
        })?;
        let timeout = self.timeout;
        let addr = self.addr.clone();
        let stream = &mut self.stream;
        let reader = &mut self.reader;
        let tls = self.tls.as_ref();
        let result = glommio::timer::timeout(timeout, async move {
            let exchange = async {
                write_frame(stream, &frame).await?;
                reader.next(stream).await
            };
            Ok(match exchange.await {
                Ok(Some(body)) => decode_response::<R>(body, version, corr)
                    .map_err(|source| ConnError::Wire { addr, source }),
                Ok(None) => Err(ConnError::Closed { addr }),
                Err(e) => Err(ConnError::from_io(&addr, e, tls)),
            })
        })
        .await;
        match result {
            Ok(Err(ConnError::Closed { addr }))
                if self.unproven && R::KEY != ApiVersionsRequest::KEY =>
            {
                Err(ConnError::ClosedDuringSetup {
                    addr,
                    step: crate::wire::control::api_name(R::KEY),
                    hint: ", its first request after ApiVersions. If this listener uses SASL, set \
                           --security-protocol sasl_plaintext or sasl_ssl, with --sasl-mechanism, \
                           --sasl-username and a password",
                })
            }
            Ok(resp) => {
                if resp.is_ok() && R::KEY != ApiVersionsRequest::KEY {
                    self.unproven = false;
                }
                resp
            }
            Err(glommio::GlommioError::IoError(e)) if e.kind() == io::ErrorKind::TimedOut => {
                Err(ConnError::Timeout {
                    addr: self.addr.clone(),
                    timeout,
                })
            }
            Err(e) => Err(ConnError::Io {
                addr: self.addr.clone(),
                source: io::Error::other(e.to_string()),
            }),
        }
    }

    fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        id
    }

    /// Turns the connection into a pipelined Produce channel: a sender and a
    /// reader that must be polled by its own task.
    pub fn into_pipeline(self) -> (PipeSender, PipeReader) {
        (
            PipeSender {
                stream: self.stream.clone(),
                addr: self.addr.clone(),
                next_correlation_id: self.next_correlation_id,
                tls: self.tls.clone(),
            },
            PipeReader {
                stream: self.stream,
                reader: self.reader,
                addr: self.addr,
                tls: self.tls,
            },
        )
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("tls", &self.stream.tls)
            .finish()
    }
}

/// The writing half of a pipelined connection.
pub struct PipeSender {
    stream: SharedStream,
    addr: String,
    next_correlation_id: i32,
    tls: Option<TlsConfig>,
}

impl PipeSender {
    /// The correlation id the next request must carry.
    pub fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        id
    }

    /// Writes one complete request frame.
    pub async fn write(&mut self, frame: &[u8]) -> Result<(), ConnError> {
        write_frame(&mut self.stream, frame)
            .await
            .map_err(|source| ConnError::from_io(&self.addr, source, self.tls.as_ref()))
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Shuts the socket down in both directions, which also ends the reader.
    pub fn shutdown(&self) {
        let s = self.stream.inner.borrow();
        use std::os::fd::AsRawFd;
        // SAFETY: shutdown(2) on a file descriptor the stream owns and keeps open.
        // Under TLS this skips close_notify: the run is over and the broker
        // treats an abrupt close like any other disconnect.
        unsafe {
            libc::shutdown(s.tcp().as_raw_fd(), libc::SHUT_RDWR);
        }
    }
}

/// The reading half of a pipelined connection.
pub struct PipeReader {
    stream: SharedStream,
    reader: FrameReader,
    addr: String,
    tls: Option<TlsConfig>,
}

impl PipeReader {
    /// The next response: its correlation id and the body after the
    /// correlation id (flexible responses still carry header tagged fields).
    pub async fn next(&mut self) -> Result<(i32, &[u8]), ConnError> {
        match self.reader.next(&mut self.stream).await {
            Ok(Some(frame)) => {
                if frame.len() < 4 {
                    return Err(ConnError::Wire {
                        addr: self.addr.clone(),
                        source: WireError::Truncated,
                    });
                }
                let corr = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
                Ok((corr, &frame[4..]))
            }
            Ok(None) => Err(ConnError::Closed {
                addr: self.addr.clone(),
            }),
            Err(source) => Err(ConnError::from_io(&self.addr, source, self.tls.as_ref())),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// Whether a plaintext read failed on a frame size that is really the
/// header of a TLS record (content type 21 or 22, version 3.x): a TLS
/// listener answering a plaintext request with an alert.
fn tls_record_as_frame(e: &io::Error) -> bool {
    let text = e.to_string();
    let Some(rest) = text.strip_prefix("frame size ") else {
        return false;
    };
    let Some(Ok(size)) = rest.split_whitespace().next().map(str::parse::<i64>) else {
        return false;
    };
    matches!(size >> 16, 0x1503 | 0x1603)
}

/// Resolves `addr` ("host:port") to its first socket address.
fn resolve(addr: &str) -> Result<SocketAddr, ConnError> {
    addr.to_socket_addrs()
        .map_err(|source| ConnError::Resolve {
            addr: addr.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| ConnError::Resolve {
            addr: addr.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        })
}

/// Resolves `addr`, connects to it within `opts.timeout` and sets
/// `opts.socket` on the socket.
async fn tcp_connect(addr: &str, opts: &ConnectOptions<'_>) -> Result<TcpStream, ConnError> {
    let sock = resolve(addr)?;
    // glommio bounds the connect with an io_uring timeout linked to it;
    // the executor's own timer bounds it too. A connect seen neither
    // completing nor timing out for a whole run (with the executor
    // woken every second) left a shard that never sent anything: a
    // timer is checked on every wake-up, whatever the ring does.
    let connect = TcpStream::connect_timeout(sock, opts.timeout);
    let stream = match glommio::timer::timeout(opts.timeout + CONNECT_TIMER_GRACE, async {
        Ok(connect.await)
    })
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(ConnError::Connect {
                addr: addr.to_owned(),
                source: e.into(),
            })
        }
        Err(_) => {
            return Err(ConnError::Timeout {
                addr: addr.to_owned(),
                timeout: opts.timeout,
            })
        }
    };
    {
        use std::os::fd::AsRawFd as _;
        opts.socket
            .apply(stream.as_raw_fd())
            .map_err(|source| ConnError::Io {
                addr: addr.to_owned(),
                source,
            })?;
    }
    Ok(stream)
}

/// Turns a version-negotiation failure that a listener of another
/// security protocol causes into an error that says so.
fn explain_negotiate_error(e: ConnError, protocol: SecurityProtocol) -> ConnError {
    match e {
        ConnError::Io { addr, source } if tls_record_as_frame(&source) => {
            ConnError::TlsExpected { addr }
        }
        ConnError::Closed { addr } => ConnError::ClosedDuringSetup {
            addr,
            step: "ApiVersions",
            hint: match protocol {
                SecurityProtocol::Plaintext => {
                    ". If this listener uses TLS or SASL, set --security-protocol \
                     (ssl, sasl_plaintext or sasl_ssl)"
                }
                SecurityProtocol::SaslPlaintext => {
                    ". If this listener uses TLS, use --security-protocol sasl_ssl"
                }
                _ => "",
            },
        },
        other => other,
    }
}

/// How long past its own timeout a connect is given before the executor's
/// timer gives up on it (the ring's timeout normally ends it first, with
/// the kernel's error).
const CONNECT_TIMER_GRACE: Duration = Duration::from_millis(200);

/// Runs the TLS handshake on a connected socket within `timeout`.
async fn tls_handshake(
    addr: &str,
    stream: TcpStream,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ConnError> {
    let name = TlsConfig::server_name(addr).ok_or_else(|| ConnError::TlsHandshake {
        addr: addr.to_owned(),
        reason: "the host part is neither an IP address nor a valid DNS name".to_owned(),
    })?;
    let connect = tls.connector().connect(name, stream);
    match glommio::timer::timeout(timeout, async { Ok(connect.await) }).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(ConnError::from_io(addr, e, Some(tls))),
        Err(_) => Err(ConnError::Timeout {
            addr: addr.to_owned(),
            timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::SocketOptions;
    use std::os::fd::AsRawFd as _;

    fn get(fd: i32, level: i32, name: i32) -> i32 {
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: getsockopt(2) on a live socket, into an int of the size given.
        let rc =
            unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        v
    }

    #[test]
    fn socket_options_reach_the_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let fd = s.as_raw_fd();
        let opts = SocketOptions {
            nodelay: false,
            send_buffer: Some(64 * 1024),
            receive_buffer: Some(64 * 1024),
            busy_poll_us: None,
        };
        opts.apply(fd).unwrap();
        assert_eq!(get(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY), 0);
        // Linux doubles the size asked for (bookkeeping overhead).
        assert_eq!(get(fd, libc::SOL_SOCKET, libc::SO_SNDBUF), 128 * 1024);
        assert_eq!(get(fd, libc::SOL_SOCKET, libc::SO_RCVBUF), 128 * 1024);
        SocketOptions::default().apply(fd).unwrap();
        assert_ne!(get(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY), 0);
    }
}
