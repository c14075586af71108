//! Support shared by the two hostile-input harnesses: the property tests
//! (`engine/tests/hostile_input.rs`) and the fuzz targets
//! (`engine/fuzz/src/lib.rs`). Both include this file with
//! `#[path = "..."] mod hostile;`: the fuzz crate is its own workspace, so a
//! path include shares the code without a crate of its own. Every item here
//! is used by both.
//!
//! * [`Counting`]: the global allocator that measures the peak heap a decode
//!   holds ([`measure`]) and refuses any single allocation over
//!   [`MAX_ONE_ALLOCATION`]; [`bound`]: the most a decoder may hold.
//! * [`Rng`]: a small deterministic generator for message contents.
//! * [`HUGE`]: counts and lengths to write into messages.
//! * The client's control-plane response decoder ([`CONTROLS`],
//!   [`decode_control`], [`control_bounded`], [`control_frame`]).
//! * The sink's request path, with its `guard` module compiled here from its
//!   source ([`SINK_APIS`], [`sink_decode`], [`sink_bounded`]).
//! * The frame reader against a reference model ([`check_frame_reader`]).
//! * Random valid messages: control-plane responses
//!   ([`valid_control_body`]) and sink requests ([`valid_sink_request`]),
//!   which the properties corrupt and the fuzz targets take as seeds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use datastorm_engine::wire::control::decode_response;
use datastorm_engine::wire::frame::FrameReader;
use datastorm_engine::wire::WireError;
use kafka_protocol::messages::{
    api_versions_response, create_topics_request, create_topics_response, fetch_response,
    list_offsets_response, metadata_request, metadata_response, produce_request, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProducerId,
    RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};

/// The sink's pre-check, compiled here from its source (the module is
/// private to the engine).
#[path = "../../src/sink/guard.rs"]
#[allow(dead_code)]
mod sink_guard;

// ---------------------------------------------------------------------------
// Allocation accounting

/// Global allocator that tracks the peak of live heap bytes while
/// [`measure`] runs on a thread, and meanwhile refuses (printing the input
/// in hex, then aborting with "memory allocation of N bytes failed") any
/// single allocation over [`MAX_ONE_ALLOCATION`], so that a huge
/// `Vec::with_capacity` fails whatever the machine's overcommit.
pub struct Counting;

pub const MAX_ONE_ALLOCATION: usize = 256 << 20;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static INPUT: Cell<(*const u8, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

fn track(delta: isize) {
    let live = LIVE.with(|l| {
        let v = l.get() + delta;
        l.set(v);
        v
    });
    PEAK.with(|p| p.set(p.get().max(live)));
}

/// Prints the input being decoded (hex) before the refused allocation
/// aborts the process.
#[cold]
fn oversized(size: usize) {
    ON.with(|o| o.set(false));
    let (ptr, len) = INPUT.with(Cell::get);
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "refused an allocation of {size} bytes; input ({len} bytes, hex):"
    );
    if !ptr.is_null() {
        // SAFETY: set by `measure` from a slice that outlives the call
        // this allocation happens in.
        let input = unsafe { std::slice::from_raw_parts(ptr, len) };
        for chunk in input.chunks(32) {
            let mut line = [0u8; 65];
            for (i, b) in chunk.iter().enumerate() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                line[2 * i] = HEX[usize::from(b >> 4)];
                line[2 * i + 1] = HEX[usize::from(b & 15)];
            }
            line[2 * chunk.len()] = b'\n';
            let _ = err.write_all(&line[..2 * chunk.len() + 1]);
        }
    }
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments; counting touches only thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            if layout.size() > MAX_ONE_ALLOCATION {
                oversized(layout.size());
                return std::ptr::null_mut();
            }
            track(layout.size() as isize);
        }
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            if layout.size() > MAX_ONE_ALLOCATION {
                oversized(layout.size());
                return std::ptr::null_mut();
            }
            track(layout.size() as isize);
        }
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.with(Cell::get) {
            track(-(layout.size() as isize));
        }
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            if new_size > MAX_ONE_ALLOCATION {
                oversized(new_size);
                return std::ptr::null_mut();
            }
            track(new_size as isize - layout.size() as isize);
        }
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` on `input` and returns its result and the peak of heap bytes
/// it held (0 when [`Counting`] is not the global allocator). `input` is
/// what gets printed if an allocation is refused meanwhile.
pub fn measure<T>(input: &[u8], f: impl FnOnce() -> T) -> (T, usize) {
    INPUT.with(|i| i.set((input.as_ptr(), input.len())));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|o| o.set(true));
    let out = f();
    ON.with(|o| o.set(false));
    INPUT.with(|i| i.set((std::ptr::null(), 0)));
    (out, PEAK.with(Cell::get).max(0) as usize)
}

/// Runs `f` without counting what it allocates (a harness's own
/// bookkeeping inside a measured closure).
fn untracked<T>(f: impl FnOnce() -> T) -> T {
    let was = ON.replace(false);
    let out = f();
    ON.set(was);
    out
}

/// The most heap a decoder may hold for `len` input bytes: decoded structs
/// run up to a few dozen times their smallest wire form (see the test
/// `allocation_is_proportional_to_the_input`), plus fixed overhead for
/// error strings and small maps.
pub fn bound(len: usize) -> usize {
    64 * len + 16 * 1024
}

// ---------------------------------------------------------------------------
// Generated contents and hostile values

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// A length from 0 to `max`.
    pub fn len(&mut self, max: usize) -> usize {
        self.below(max + 1)
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        (0..self.len(max)).map(|_| self.next() as u8).collect()
    }
    /// Lowercase letters, up to `max` of them.
    pub fn str(&mut self, max: usize) -> StrBytes {
        let s: String = (0..self.len(max))
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect();
        StrBytes::from_string(s)
    }
    pub fn opt_str(&mut self, max: usize) -> Option<StrBytes> {
        self.chance(80).then(|| self.str(max))
    }
    pub fn brokers(&mut self, max: usize) -> Vec<BrokerId> {
        (0..self.len(max))
            .map(|_| BrokerId(self.below(5) as i32))
            .collect()
    }
}

/// Counts and lengths at the edges. The first three are uvarints larger
/// than any message these harnesses build; the rest are large, negative
/// and zero fixed-width values.
pub const HUGE: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff, 0x0f], // uvarint u32::MAX
    &[0x80, 0x80, 0x80, 0x80, 0x08], // uvarint 2^31
    &[0xfe, 0xff, 0xff, 0x7f],       // uvarint 2^28 - 2
    &[0x7f, 0xff, 0xff, 0xff],       // i32::MAX
    &[0x7f, 0xff],                   // i16::MAX
    &[0x80, 0x00, 0x00, 0x00],       // i32::MIN
    &[0xff, 0xff, 0xff, 0xfe],       // -2
    &[0x00, 0x00, 0x00, 0x00],       // 0
    &[0xff, 0xff],                   // i16 -1
];

// ---------------------------------------------------------------------------
// Control-plane responses (client side)

/// The response types the client decodes, with the lowest and highest
/// versions kafka-protocol reads.
pub const CONTROLS: [(ApiKey, i16, i16); 8] = [
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::InitProducerId, 0, 6),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Fetch, 4, 18),
];

/// `decode_response` for a `key` response (one of [`CONTROLS`]), panicking
/// if a decoded array has more elements than the frame has bytes.
pub fn decode_control(key: ApiKey, frame: &[u8], version: i16, corr: i32) -> Result<(), WireError> {
    let limit = frame.len();
    match key {
        ApiKey::ApiVersions => decode_response::<ApiVersionsRequest>(frame, version, corr)
            .map(|r| assert!(r.api_keys.len() <= limit)),
        ApiKey::Metadata => decode_response::<MetadataRequest>(frame, version, corr)
            .map(|r| assert!(r.brokers.len() + r.topics.len() <= limit)),
        ApiKey::CreateTopics => decode_response::<CreateTopicsRequest>(frame, version, corr)
            .map(|r| assert!(r.topics.len() <= limit)),
        ApiKey::SaslHandshake => decode_response::<SaslHandshakeRequest>(frame, version, corr)
            .map(|r| assert!(r.mechanisms.len() <= limit)),
        ApiKey::SaslAuthenticate => {
            decode_response::<SaslAuthenticateRequest>(frame, version, corr).map(drop)
        }
        ApiKey::InitProducerId => {
            decode_response::<InitProducerIdRequest>(frame, version, corr).map(drop)
        }
        ApiKey::ListOffsets => decode_response::<ListOffsetsRequest>(frame, version, corr)
            .map(|r| assert!(r.topics.len() <= limit)),
        ApiKey::Fetch => decode_response::<FetchRequest>(frame, version, corr)
            .map(|r| assert!(r.responses.len() <= limit)),
        _ => unreachable!("{key:?} is not a control response"),
    }
}

/// [`decode_control`] on hostile bytes: no panic, and the heap it holds
/// stays within [`bound`] (panics otherwise).
pub fn control_bounded(
    key: ApiKey,
    frame: &[u8],
    version: i16,
    corr: i32,
) -> Result<(), WireError> {
    let (r, peak) = measure(frame, || decode_control(key, frame, version, corr));
    assert!(
        peak <= bound(frame.len()),
        "{key:?} v{version}: {peak} bytes held decoding {} bytes",
        frame.len()
    );
    r
}

/// A response frame as the connection's reader hands it out: correlation
/// id, the header's tagged fields when it is flexible, then `body`.
pub fn control_frame(key: ApiKey, version: i16, corr: i32, body: &[u8]) -> Vec<u8> {
    let mut f = corr.to_be_bytes().to_vec();
    if key.response_header_version(version) >= 1 {
        f.push(0);
    }
    f.extend_from_slice(body);
    f
}

// ---------------------------------------------------------------------------
// The sink's request path: header checks, guard, kafka-protocol decode, the
// way `sink::handlers::handle_frame` runs them.

/// The requests the sink serves, with the lowest and highest versions.
pub const SINK_APIS: [(ApiKey, i16, i16); 5] = [
    (ApiKey::Produce, 3, 12),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 5),
];

/// Decodes one request frame (without the size prefix) as the sink does up
/// to its handlers.
pub fn sink_decode(frame: &[u8]) -> Result<(), String> {
    if frame.len() < 8 {
        return Err("short".into());
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(key).map_err(|_| "unknown key".to_string())?;
    let &(_, min, max) = SINK_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .ok_or("unsupported api")?;
    if !(min..=max).contains(&version) {
        return Err("unsupported version".into());
    }
    let mut buf = Bytes::copy_from_slice(frame);
    decode_request_header_from_buffer(&mut buf).map_err(|e| e.to_string())?;
    let guard_err = |e: sink_guard::GuardError| e.0.to_string();
    let decode_err = |e: anyhow::Error| e.to_string();
    match key {
        ApiKey::Produce => {
            sink_guard::produce(&buf, version).map_err(guard_err)?;
            let r = ProduceRequest::decode(&mut buf, version).map_err(decode_err)?;
            assert!(r.topic_data.len() <= frame.len());
        }
        ApiKey::Metadata => {
            sink_guard::metadata(&buf, version).map_err(guard_err)?;
            MetadataRequest::decode(&mut buf, version).map_err(decode_err)?;
        }
        ApiKey::CreateTopics => {
            sink_guard::create_topics(&buf, version).map_err(guard_err)?;
            CreateTopicsRequest::decode(&mut buf, version).map_err(decode_err)?;
        }
        ApiKey::ApiVersions => {
            ApiVersionsRequest::decode(&mut buf, version).map_err(decode_err)?;
        }
        ApiKey::InitProducerId => {
            InitProducerIdRequest::decode(&mut buf, version).map_err(decode_err)?;
        }
        _ => unreachable!(),
    }
    Ok(())
}

/// [`sink_decode`] on hostile bytes: no panic, and the heap it holds stays
/// within [`bound`] (panics otherwise).
pub fn sink_bounded(frame: &[u8]) -> Result<(), String> {
    let (r, peak) = measure(frame, || sink_decode(frame));
    assert!(
        peak <= bound(frame.len()),
        "sink: {peak} bytes held decoding {} bytes",
        frame.len()
    );
    r
}

// ---------------------------------------------------------------------------
// The frame reader against a reference model

/// Hands out `data` in reads of the sizes given (cycled).
struct Chunked<'a> {
    data: &'a [u8],
    chunks: &'a [usize],
    i: usize,
}

impl futures_lite::AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let want = self.chunks[self.i % self.chunks.len()];
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

/// One call of `FrameReader::next`: a frame, the end of the stream, or an
/// error.
pub type FrameOutcome = Result<Option<Vec<u8>>, io::ErrorKind>;

/// What a correct frame reader returns, frame by frame, until it stops.
fn model_frames(mut data: &[u8], limit: usize) -> Vec<FrameOutcome> {
    let mut out = Vec::new();
    loop {
        if data.is_empty() {
            out.push(Ok(None));
            return out;
        }
        if data.len() < 4 {
            out.push(Err(io::ErrorKind::UnexpectedEof));
            return out;
        }
        let size = i32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
        if size < 0 || size as usize > limit {
            out.push(Err(io::ErrorKind::InvalidData));
            return out;
        }
        let need = 4 + size as usize;
        if data.len() < need {
            out.push(Err(io::ErrorKind::UnexpectedEof));
            return out;
        }
        out.push(Ok(Some(data[4..need].to_vec())));
        data = &data[need..];
    }
}

/// Runs `FrameReader::new(capacity, limit)` over `stream`, handed out in
/// reads of the sizes in `chunks` (cycled, none 0), until it stops, and
/// returns what it read. Panics unless that is exactly what
/// [`model_frames`] says and the reader held at most about twice the bytes
/// it was sent. `input` is what gets printed if an allocation is refused
/// (the fuzz input the stream was cut from).
pub fn check_frame_reader(
    input: &[u8],
    stream: &[u8],
    chunks: &[usize],
    capacity: usize,
    limit: usize,
) -> Vec<FrameOutcome> {
    let mut r = Chunked {
        data: stream,
        chunks,
        i: 0,
    };
    let mut got = Vec::new();
    let (_, peak) = measure(input, || {
        let mut fr = FrameReader::new(capacity, limit);
        futures_lite::future::block_on(async {
            loop {
                let next = fr.next(&mut r).await;
                let done = !matches!(next, Ok(Some(_)));
                // Recording the outcome is not the reader's allocation.
                untracked(|| {
                    got.push(match next {
                        Ok(f) => Ok(f.map(<[u8]>::to_vec)),
                        Err(e) => Err(e.kind()),
                    })
                });
                if done {
                    break;
                }
            }
        })
    });
    assert_eq!(got, model_frames(stream, limit));
    assert!(
        peak <= capacity.max(64) + 2 * stream.len() + 1024,
        "frame reader held {peak} bytes for a {}-byte stream",
        stream.len()
    );
    got
}

// ---------------------------------------------------------------------------
// Valid messages (what the properties corrupt and the fuzz targets start from)

/// A random valid `key` response body (one of [`CONTROLS`]) in `version`.
pub fn valid_control_body(g: &mut Rng, key: ApiKey, version: i16) -> Vec<u8> {
    let mut out = BytesMut::new();
    match key {
        ApiKey::ApiVersions => api_versions(g, version).encode(&mut out, version),
        ApiKey::Metadata => metadata(g, version).encode(&mut out, version),
        ApiKey::CreateTopics => create_topics(g, version).encode(&mut out, version),
        ApiKey::SaslHandshake => SaslHandshakeResponse::default()
            .with_error_code(g.next() as i16)
            .with_mechanisms((0..g.len(4)).map(|_| g.str(12)).collect())
            .encode(&mut out, version),
        ApiKey::SaslAuthenticate => SaslAuthenticateResponse::default()
            .with_error_code(g.next() as i16)
            .with_error_message(g.opt_str(20))
            .with_auth_bytes(Bytes::from(g.bytes(40)))
            .with_session_lifetime_ms(if version >= 1 { g.next() as i64 } else { 0 })
            .encode(&mut out, version),
        ApiKey::InitProducerId => InitProducerIdResponse::default()
            .with_throttle_time_ms(g.next() as i32)
            .with_error_code(g.next() as i16)
            .with_producer_id(ProducerId(g.next() as i64))
            .with_producer_epoch(g.next() as i16)
            .encode(&mut out, version),
        ApiKey::ListOffsets => list_offsets(g, version).encode(&mut out, version),
        ApiKey::Fetch => fetch(g, version).encode(&mut out, version),
        _ => unreachable!("{key:?} is not a control response"),
    }
    .expect("encode");
    out.to_vec()
}

fn api_versions(g: &mut Rng, version: i16) -> ApiVersionsResponse {
    use api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
    // Not 35 (UNSUPPORTED_VERSION): that answer is also read as v0.
    let mut r = ApiVersionsResponse::default()
        .with_error_code(g.below(35) as i16)
        .with_api_keys(
            (0..g.len(8))
                .map(|_| {
                    ApiVersion::default()
                        .with_api_key(g.below(80) as i16)
                        .with_min_version(g.below(3) as i16)
                        .with_max_version(g.below(20) as i16)
                })
                .collect(),
        );
    if version >= 1 {
        r.throttle_time_ms = g.next() as i32;
    }
    if version >= 3 {
        r.supported_features = (0..g.len(2))
            .map(|_| {
                SupportedFeatureKey::default()
                    .with_name(g.str(16))
                    .with_max_version(g.next() as i16)
            })
            .collect();
        r.finalized_features = (0..g.len(2))
            .map(|_| {
                FinalizedFeatureKey::default()
                    .with_name(g.str(16))
                    .with_max_version_level(g.next() as i16)
            })
            .collect();
        r.finalized_features_epoch = g.next() as i64;
        r.zk_migration_ready = g.chance(50);
    }
    r
}

fn metadata(g: &mut Rng, version: i16) -> MetadataResponse {
    use metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    let brokers = (0..g.len(3))
        .map(|_| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(g.below(5) as i32))
                .with_host(g.str(15))
                .with_port(g.next() as i32)
                .with_rack(if version >= 1 { g.opt_str(4) } else { None })
        })
        .collect();
    let topics = (0..g.len(3))
        .map(|_| {
            let partitions = (0..g.len(4))
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_error_code(g.below(3) as i16)
                        .with_partition_index(p as i32)
                        .with_leader_id(BrokerId(g.below(5) as i32))
                        .with_leader_epoch(if version >= 7 { g.below(9) as i32 } else { -1 })
                        .with_replica_nodes(g.brokers(3))
                        .with_isr_nodes(g.brokers(3))
                        .with_offline_replicas(if version >= 5 {
                            g.brokers(2)
                        } else {
                            Vec::new()
                        })
                })
                .collect();
            let mut t = MetadataResponseTopic::default()
                .with_error_code(g.below(3) as i16)
                .with_name(Some(TopicName(g.str(12))))
                .with_is_internal(version >= 1 && g.chance(10))
                .with_partitions(partitions);
            if version >= 8 {
                t.topic_authorized_operations = g.next() as i32;
            }
            t
        })
        .collect();
    let mut r = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 3 {
        r.throttle_time_ms = g.next() as i32;
    }
    if version >= 2 {
        r.cluster_id = g.opt_str(10);
    }
    if version >= 1 {
        r.controller_id = BrokerId(g.below(5) as i32);
    }
    if (8..=10).contains(&version) {
        r.cluster_authorized_operations = g.next() as i32;
    }
    if version >= 13 {
        r.error_code = g.next() as i16;
    }
    r
}

fn create_topics(g: &mut Rng, version: i16) -> CreateTopicsResponse {
    use create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
    let topics = (0..g.len(3))
        .map(|_| {
            let mut t = CreatableTopicResult::default()
                .with_name(TopicName(g.str(12)))
                .with_error_code(g.below(40) as i16)
                .with_error_message(g.opt_str(20));
            if version >= 5 {
                t.num_partitions = g.below(100) as i32;
                t.replication_factor = g.below(4) as i16;
                t.topic_config_error_code = g.next() as i16;
                t.configs = g.chance(80).then(|| {
                    (0..g.len(3))
                        .map(|_| {
                            CreatableTopicConfigs::default()
                                .with_name(g.str(12))
                                .with_value(g.opt_str(8))
                                .with_read_only(g.chance(50))
                                .with_config_source(g.below(6) as i8)
                        })
                        .collect()
                });
            } else {
                t.configs = None;
            }
            t
        })
        .collect();
    CreateTopicsResponse::default()
        .with_throttle_time_ms(g.next() as i32)
        .with_topics(topics)
}

fn list_offsets(g: &mut Rng, version: i16) -> ListOffsetsResponse {
    use list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
    let topics = (0..g.len(3))
        .map(|_| {
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(g.str(12)))
                .with_partitions(
                    (0..g.len(4))
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p as i32)
                                .with_error_code(g.below(3) as i16)
                                .with_timestamp(g.next() as i64)
                                .with_offset(g.next() as i64)
                                .with_leader_epoch(if version >= 4 {
                                    g.below(9) as i32
                                } else {
                                    -1
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    let mut r = ListOffsetsResponse::default().with_topics(topics);
    if version >= 2 {
        r.throttle_time_ms = g.next() as i32;
    }
    r
}

fn fetch(g: &mut Rng, version: i16) -> FetchResponse {
    use fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
        PartitionData, SnapshotId,
    };
    let responses = (0..g.len(2))
        .map(|_| {
            let partitions = (0..g.len(3))
                .map(|p| {
                    let mut d = PartitionData::default()
                        .with_partition_index(p as i32)
                        .with_error_code(g.below(3) as i16)
                        .with_high_watermark(g.next() as i64)
                        .with_last_stable_offset(g.next() as i64)
                        .with_aborted_transactions(g.chance(70).then(|| {
                            (0..g.len(2))
                                .map(|_| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(g.next() as i64))
                                        .with_first_offset(g.next() as i64)
                                })
                                .collect()
                        }))
                        .with_records(g.chance(80).then(|| Bytes::from(g.bytes(60))));
                    if version >= 5 {
                        d.log_start_offset = g.next() as i64;
                    }
                    if version >= 11 {
                        d.preferred_read_replica = BrokerId(g.below(4) as i32);
                    }
                    if version >= 12 {
                        if g.chance(50) {
                            d.diverging_epoch = EpochEndOffset::default()
                                .with_epoch(g.below(9) as i32)
                                .with_end_offset(g.next() as i64);
                        }
                        if g.chance(50) {
                            d.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(g.below(4) as i32))
                                .with_leader_epoch(g.below(9) as i32);
                        }
                        if g.chance(50) {
                            d.snapshot_id = SnapshotId::default()
                                .with_end_offset(g.next() as i64)
                                .with_epoch(g.below(9) as i32);
                        }
                    }
                    d
                })
                .collect();
            let mut t = FetchableTopicResponse::default().with_partitions(partitions);
            if version <= 12 {
                t.topic = TopicName(g.str(12));
            } else {
                t.topic_id = format!("{:016x}{:016x}", g.next(), g.next())
                    .parse()
                    .expect("a topic id");
            }
            t
        })
        .collect();
    let mut r = FetchResponse::default()
        .with_throttle_time_ms(g.next() as i32)
        .with_responses(responses);
    if version >= 7 {
        r.error_code = g.below(3) as i16;
        r.session_id = g.next() as i32;
    }
    if version >= 16 {
        r.node_endpoints = (0..g.len(2))
            .map(|n| {
                NodeEndpoint::default()
                    .with_node_id(BrokerId(n as i32))
                    .with_host(g.str(12))
                    .with_port(9092)
                    .with_rack(g.opt_str(4))
            })
            .collect();
    }
    r
}

/// A random valid request frame body (header + request, no size prefix).
pub fn valid_sink_request(g: &mut Rng) -> Vec<u8> {
    let (key, min, max) = SINK_APIS[g.below(SINK_APIS.len())];
    let version = min + g.below((max - min + 1) as usize) as i16;
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(g.next() as i32)
        .with_client_id(g.opt_str(10))
        .encode(&mut out, key.request_header_version(version))
        .expect("header");
    let r = match key {
        ApiKey::Produce => {
            use produce_request::{PartitionProduceData, TopicProduceData};
            let topics = (0..g.len(3))
                .map(|_| {
                    TopicProduceData::default()
                        .with_name(TopicName(g.str(12)))
                        .with_partition_data(
                            (0..g.len(3))
                                .map(|p| {
                                    PartitionProduceData::default()
                                        .with_index(p as i32)
                                        .with_records(Some(Bytes::from(g.bytes(80))))
                                })
                                .collect(),
                        )
                })
                .collect();
            ProduceRequest::default()
                .with_transactional_id(g.opt_str(8).map(Into::into))
                .with_acks(g.below(3) as i16 - 1)
                .with_timeout_ms(g.next() as i32)
                .with_topic_data(topics)
                .encode(&mut out, version)
        }
        ApiKey::Metadata => {
            let topics = (0..g.len(4))
                .map(|_| {
                    metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(g.str(12))))
                })
                .collect::<Vec<_>>();
            MetadataRequest::default()
                .with_topics(if version >= 1 && g.chance(20) {
                    None
                } else {
                    Some(topics)
                })
                .encode(&mut out, version)
        }
        ApiKey::CreateTopics => {
            use create_topics_request::{
                CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
            };
            let topics = (0..g.len(3))
                .map(|_| {
                    CreatableTopic::default()
                        .with_name(TopicName(g.str(12)))
                        .with_num_partitions(g.below(10) as i32)
                        .with_replication_factor(1)
                        .with_assignments(
                            (0..g.len(2))
                                .map(|p| {
                                    CreatableReplicaAssignment::default()
                                        .with_partition_index(p as i32)
                                        .with_broker_ids(g.brokers(3))
                                })
                                .collect(),
                        )
                        .with_configs(
                            (0..g.len(2))
                                .map(|_| {
                                    CreatableTopicConfig::default()
                                        .with_name(g.str(10))
                                        .with_value(g.opt_str(6))
                                })
                                .collect(),
                        )
                })
                .collect();
            CreateTopicsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(g.next() as i32)
                .encode(&mut out, version)
        }
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsRequest::default();
            if version >= 3 {
                r.client_software_name = g.str(10);
                r.client_software_version = g.str(6);
            }
            r.encode(&mut out, version)
        }
        _ => InitProducerIdRequest::default()
            .with_transactional_id(g.opt_str(8).map(Into::into))
            .with_transaction_timeout_ms(g.next() as i32)
            .encode(&mut out, version),
    };
    r.expect("encode request");
    out.to_vec()
}

// ---------------------------------------------------------------------------
// The consumer's record walker (`batch::read::BatchReader`)

/// Walks a partition's records bytes as a consumer does. Input: an options
/// byte (bit 0: check CRCs; bits 1-7: the fetch offset), then the records.
/// Checks that the walk counts what it visits and never claims more bytes
/// than it was given; uncompressed batches are walked without allocating.
pub fn walk_records(data: &[u8]) -> Result<u64, String> {
    use datastorm_engine::batch::read::{BatchReader, WalkOptions};
    let Some((&opt, records)) = data.split_first() else {
        return Err("empty".into());
    };
    let opts = WalkOptions {
        check_crc: opt & 1 == 1,
        from_offset: i64::from(opt >> 1),
    };
    let mut reader = BatchReader::new();
    let mut visited = 0u64;
    let (walked, peak) = measure(records, || {
        reader.walk(records, opts, |_, r| {
            visited += 1;
            std::hint::black_box(r.headers().count());
        })
    });
    let compressed = any_compressed(records);
    assert!(
        compressed || peak == 0,
        "walk: {peak} bytes allocated walking {} bytes",
        records.len()
    );
    let walked = walked.map_err(|e| e.to_string())?;
    assert_eq!(walked.records, visited, "walk: counted what it visited");
    assert!(walked.bytes as usize <= records.len());
    Ok(visited)
}

/// Whether a batch the walk may decompress names a codec (only those may
/// allocate: the records section is inflated into the reader's buffer).
fn any_compressed(mut rest: &[u8]) -> bool {
    while rest.len() > 22 {
        if rest[22] & 0x7 != 0 {
            return true;
        }
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let Some(total) = usize::try_from(len).ok().and_then(|l| l.checked_add(12)) else {
            return false;
        };
        rest = rest.get(total..).unwrap_or_default();
    }
    false
}

/// An options byte, then one to four valid batches (each codec, keys,
/// headers, consecutive base offsets), sometimes cut inside the last.
pub fn valid_record_batches(g: &mut Rng) -> Vec<u8> {
    use datastorm_engine::arena::WriteBuf;
    use datastorm_engine::batch::{BatchBuilder, Compression, Compressor, RecordHeader};
    let codecs = [
        Compression::None,
        Compression::Gzip { level: 1 },
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd { level: 1 },
    ];
    let mut out = WriteBuf::default();
    out.put_u8(g.next() as u8);
    let mut builder = BatchBuilder::with_capacity(1024);
    let mut compressor = Compressor::new();
    let mut base = 0i64;
    for _ in 0..1 + g.below(4) {
        let records = 1 + g.below(20);
        for i in 0..records {
            let key = g.bytes(12);
            let header = RecordHeader {
                key: b"ds-seq",
                value: &key,
            };
            let headers: &[RecordHeader<'_>] = if i % 2 == 0 { &[header] } else { &[] };
            builder.append(
                1_700_000_000_000 + i as i64,
                (i % 3 != 0).then_some(&key[..]),
                &g.bytes(60),
                headers,
            );
        }
        let start = out.len();
        builder.seal(codecs[g.below(codecs.len())], &mut compressor, &mut out);
        out.as_mut_slice()[start..start + 8].copy_from_slice(&base.to_be_bytes());
        base += records as i64;
    }
    let mut bytes = out.as_slice().to_vec();
    if g.below(4) == 0 {
        let cut = 1 + g.below(bytes.len() - 1);
        bytes.truncate(cut);
    }
    bytes
}
