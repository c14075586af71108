//! One broker connection: connect, negotiate versions, control-plane
//! request/response, and the pipelined Produce path.
//!
//! The socket is shared by two tasks of the same shard: the sender writes
//! requests, the reader task reads responses. Both run on one thread, and
//! each `poll_*` borrows the stream only for the duration of a non-blocking
//! syscall, so an `Rc<RefCell<_>>` is enough; glommio keeps separate wakers
//! for the read and write sides.

use crate::wire::codes;
use crate::wire::control::{decode_response, encode_request};
use crate::wire::frame::{FrameReader, DEFAULT_FRAME_LIMIT};
use crate::wire::WireError;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
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
use std::time::Duration;

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
}

/// A socket shared by the sender and reader tasks of one shard.
#[derive(Clone)]
pub struct SharedStream(Rc<RefCell<TcpStream>>);

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
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

/// A connected, version-negotiated broker connection.
pub struct Connection {
    stream: SharedStream,
    reader: FrameReader,
    addr: String,
    client_id: Rc<str>,
    next_correlation_id: i32,
    versions: ApiVersions,
    timeout: Duration,
}

impl Connection {
    /// Connects to `addr` ("host:port") and negotiates API versions, all
    /// within `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, ConnError> {
        let sock: SocketAddr = addr
            .to_socket_addrs()
            .map_err(|source| ConnError::Resolve {
                addr: addr.to_owned(),
                source,
            })?
            .next()
            .ok_or_else(|| ConnError::Resolve {
                addr: addr.to_owned(),
                source: io::Error::new(io::ErrorKind::NotFound, "no address"),
            })?;
        let stream = TcpStream::connect_timeout(sock, timeout)
            .await
            .map_err(|e| ConnError::Connect {
                addr: addr.to_owned(),
                source: e.into(),
            })?;
        stream.set_nodelay(true).map_err(|e| ConnError::Io {
            addr: addr.to_owned(),
            source: e.into(),
        })?;
        let mut conn = Connection {
            stream: SharedStream(Rc::new(RefCell::new(stream))),
            reader: FrameReader::new(64 * 1024, DEFAULT_FRAME_LIMIT),
            addr: addr.to_owned(),
            client_id: client_id.into(),
            next_correlation_id: 1,
            versions: ApiVersions::default(),
            timeout,
        };
        conn.negotiate().await?;
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
        let result = glommio::timer::timeout(timeout, async move {
            stream.write_all(&frame).await?;
            match reader.next(stream).await? {
                Some(body) => Ok(Ok(decode_response::<R>(body, version, corr))),
                None => Ok(Err(())),
            }
        })
        .await;
        match result {
            Ok(Ok(resp)) => resp.map_err(|source| ConnError::Wire { addr, source }),
            Ok(Err(())) => Err(ConnError::Closed { addr }),
            Err(glommio::GlommioError::IoError(e)) if e.kind() == io::ErrorKind::TimedOut => {
                Err(ConnError::Timeout { addr, timeout })
            }
            Err(e) => Err(ConnError::Io {
                addr,
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
            },
            PipeReader {
                stream: self.stream,
                reader: self.reader,
                addr: self.addr,
            },
        )
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The writing half of a pipelined connection.
pub struct PipeSender {
    stream: SharedStream,
    addr: String,
    next_correlation_id: i32,
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
        self.stream
            .write_all(frame)
            .await
            .map_err(|source| ConnError::Io {
                addr: self.addr.clone(),
                source,
            })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Shuts the socket down in both directions, which also ends the reader.
    pub fn shutdown(&self) {
        let s = self.stream.0.borrow();
        use std::os::fd::AsRawFd;
        // SAFETY: shutdown(2) on a file descriptor the stream owns and keeps open.
        unsafe {
            libc::shutdown(s.as_raw_fd(), libc::SHUT_RDWR);
        }
    }
}

/// The reading half of a pipelined connection.
pub struct PipeReader {
    stream: SharedStream,
    reader: FrameReader,
    addr: String,
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
            Err(source) => Err(ConnError::Io {
                addr: self.addr.clone(),
                source,
            }),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }
}
