//! Fuzz targets for DataStorm's network decoders, as plain functions so that
//! both cargo-fuzz (libFuzzer, nightly) and the stable `fuzz-driver` run
//! them. Each returns whether some decoder accepted the input (the driver
//! keeps such inputs as seeds) and panics when a property breaks:
//!
//! * no panic in the decoder,
//! * heap held while decoding stays within [`bound`] of the input size
//!   (measured by [`Counting`], which the binaries install as their global
//!   allocator; any single allocation over 256 MiB is refused, the input is
//!   printed in hex and the process aborts),
//! * the frame reader returns exactly what a reference model says.
//!
//! Targets:
//! * [`produce_response`]: `read_produce_response`, directly and behind the
//!   response header the way a shard reads it,
//! * [`frame_reader`]: `FrameReader::next` over a stream cut into reads,
//! * [`control_response`]: `control::decode_response` for every response
//!   type the client decodes (kafka-protocol behind `wire::guard`),
//! * [`sink_request`]: the sink's request path (header checks, its
//!   `guard` module, kafka-protocol), as `sink::handlers::handle_frame` runs
//!   it up to the handlers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use datastorm_engine::wire::control::decode_response;
use datastorm_engine::wire::frame::FrameReader;
use datastorm_engine::wire::produce::read_produce_response;
use datastorm_engine::wire::varint::{get_uvarint, put_uvarint};
use kafka_protocol::messages::{
    api_versions_response, create_topics_request, create_topics_response, fetch_response,
    list_offsets_response, metadata_request, metadata_response, produce_request, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    TopicName,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};

/// The sink's pre-check, compiled here from its source (the module is
/// private to the engine).
#[path = "../../src/sink/guard.rs"]
#[allow(dead_code)]
mod sink_guard;

// ---------------------------------------------------------------------------
// Allocation accounting

/// Global allocator that tracks the peak of live heap bytes while a target
/// measures, and refuses single allocations over [`MAX_ONE_ALLOCATION`].
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
        "fuzz: refused an allocation of {size} bytes; input ({len} bytes, hex):"
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

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            if layout.size() > MAX_ONE_ALLOCATION {
                oversized(layout.size());
                return std::ptr::null_mut();
            }
            track(layout.size() as isize);
        }
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
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.with(Cell::get) {
            track(-(layout.size() as isize));
        }
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
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` on `input` and returns its result and the peak of heap bytes
/// it held (0 when [`Counting`] is not the global allocator).
fn measure<T>(input: &[u8], f: impl FnOnce() -> T) -> (T, usize) {
    INPUT.with(|i| i.set((input.as_ptr(), input.len())));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|o| o.set(true));
    let out = f();
    ON.with(|o| o.set(false));
    INPUT.with(|i| i.set((std::ptr::null(), 0)));
    (out, PEAK.with(Cell::get).max(0) as usize)
}

/// The most heap a decoder may hold for `len` input bytes: decoded structs
/// run up to a few dozen times their smallest wire form, plus fixed
/// overhead for error strings and small maps.
pub fn bound(len: usize) -> usize {
    64 * len + 16 * 1024
}

// ---------------------------------------------------------------------------
// Target: Produce responses

/// Response header v1 after the correlation id: tagged fields. The same
/// walk as `skip_header_tags` in shards/src/shard.rs (private there).
fn skip_header_tags(body: &[u8]) -> Option<&[u8]> {
    let (fields, mut pos) = get_uvarint(body)?;
    for _ in 0..fields {
        let (_tag, n) = get_uvarint(body.get(pos..)?)?;
        pos += n;
        let (len, n) = get_uvarint(body.get(pos..)?)?;
        pos += n + len as usize;
    }
    body.get(pos..)
}

fn produce_body(body: &[u8], version: i16) -> bool {
    let mut partitions = 0usize;
    let (r, peak) = measure(body, || {
        read_produce_response(body, version, |ack| {
            partitions += 1;
            let within = |s: &[u8]| {
                let b = body.as_ptr_range();
                let s = s.as_ptr_range();
                b.start <= s.start && s.end <= b.end
            };
            assert!(within(ack.topic));
            assert!(ack.error_message.is_none_or(within));
        })
    });
    assert_eq!(peak, 0, "read_produce_response allocated {peak} bytes");
    // A partition takes at least 33 bytes on the wire.
    assert!(partitions * 33 <= body.len());
    if !(9..=12).contains(&version) {
        assert!(r.is_err());
    }
    r.is_ok()
}

/// Input: a version selector byte, then a response frame body as the
/// connection's reader hands it out (correlation id, header tagged fields,
/// Produce response), also decoded as a bare Produce response body.
pub fn produce_response(data: &[u8]) -> bool {
    let Some((&sel, frame)) = data.split_first() else {
        return false;
    };
    let version = if sel < 0xf0 {
        9 + i16::from(sel % 4)
    } else {
        i16::from(sel as i8) * 3
    };
    let mut ok = produce_body(frame, version);
    if let Some(body) = frame.get(4..).and_then(skip_header_tags) {
        ok |= produce_body(body, version);
    }
    ok
}

// ---------------------------------------------------------------------------
// Target: the frame reader

/// Hands out `data` in reads of the sizes given (cycled).
struct Chunked<'a> {
    data: &'a [u8],
    chunks: [usize; 3],
    i: usize,
}

impl futures_lite::AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let want = self.chunks[self.i % 3];
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

type FrameOutcome = Result<Option<Vec<u8>>, io::ErrorKind>;

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

/// Input: capacity byte, limit byte, three read-size bytes, then the byte
/// stream.
pub fn frame_reader(data: &[u8]) -> bool {
    let Some((head, stream)) = data.split_first_chunk::<5>() else {
        return false;
    };
    let capacity = usize::from(head[0]);
    let limit = match head[1] {
        0xff => 64 << 20,
        l => usize::from(l) * 8,
    };
    let chunks = [head[2], head[3], head[4]].map(|c| usize::from(c).max(1));
    let mut r = Chunked {
        data: stream,
        chunks,
        i: 0,
    };
    let mut got = Vec::new();
    let (_, peak) = measure(data, || {
        let mut fr = FrameReader::new(capacity, limit);
        futures_lite::future::block_on(async {
            loop {
                let next = fr.next(&mut r).await;
                // Recording the outcome is not the reader's allocation.
                ON.with(|o| o.set(false));
                let done = !matches!(next, Ok(Some(_)));
                got.push(match next {
                    Ok(f) => Ok(f.map(<[u8]>::to_vec)),
                    Err(e) => Err(e.kind()),
                });
                ON.with(|o| o.set(true));
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
    got.len() > 1
}

// ---------------------------------------------------------------------------
// Target: control-plane responses (client side)

/// The response types the client decodes, with the versions kafka-protocol
/// reads.
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

fn decode_control(key: ApiKey, frame: &[u8], version: i16, corr: i32) -> bool {
    let limit = frame.len();
    match key {
        ApiKey::ApiVersions => decode_response::<ApiVersionsRequest>(frame, version, corr)
            .map(|r| assert!(r.api_keys.len() <= limit))
            .is_ok(),
        ApiKey::Metadata => decode_response::<MetadataRequest>(frame, version, corr)
            .map(|r| assert!(r.brokers.len() + r.topics.len() <= limit))
            .is_ok(),
        ApiKey::CreateTopics => decode_response::<CreateTopicsRequest>(frame, version, corr)
            .map(|r| assert!(r.topics.len() <= limit))
            .is_ok(),
        ApiKey::SaslHandshake => decode_response::<SaslHandshakeRequest>(frame, version, corr)
            .map(|r| assert!(r.mechanisms.len() <= limit))
            .is_ok(),
        ApiKey::SaslAuthenticate => {
            decode_response::<SaslAuthenticateRequest>(frame, version, corr).is_ok()
        }
        ApiKey::ListOffsets => decode_response::<ListOffsetsRequest>(frame, version, corr)
            .map(|r| assert!(r.topics.len() <= limit))
            .is_ok(),
        ApiKey::Fetch => decode_response::<FetchRequest>(frame, version, corr)
            .map(|r| assert!(r.responses.len() <= limit))
            .is_ok(),
        _ => decode_response::<InitProducerIdRequest>(frame, version, corr).is_ok(),
    }
}

fn control_pick(sel: u8) -> (ApiKey, i16) {
    let (key, min, max) = CONTROLS[usize::from(sel) % CONTROLS.len()];
    let version = min + (i16::from(sel / CONTROLS.len() as u8) % (max - min + 1));
    (key, version)
}

/// Input: a selector byte (API and version), then a response frame body
/// (correlation id, header, body); the expected correlation id is the
/// frame's own so that the body gets decoded.
pub fn control_response(data: &[u8]) -> bool {
    let Some((&sel, frame)) = data.split_first() else {
        return false;
    };
    let (key, version) = control_pick(sel);
    let corr = frame
        .first_chunk::<4>()
        .map_or(0, |c| i32::from_be_bytes(*c));
    let (ok, peak) = measure(frame, || decode_control(key, frame, version, corr));
    assert!(
        peak <= bound(frame.len()),
        "{key:?} v{version}: {peak} bytes held decoding {} bytes",
        frame.len()
    );
    ok
}

// ---------------------------------------------------------------------------
// Target: the sink's request path

const SINK_APIS: [(ApiKey, i16, i16); 5] = [
    (ApiKey::Produce, 3, 12),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 5),
];

fn sink_decode(frame: &[u8]) -> bool {
    if frame.len() < 8 {
        return false;
    }
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Ok(key) = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])) else {
        return false;
    };
    let Some(_) = SINK_APIS
        .iter()
        .find(|(k, min, max)| *k == key && (*min..=*max).contains(&version))
    else {
        return false;
    };
    let mut buf = Bytes::copy_from_slice(frame);
    if decode_request_header_from_buffer(&mut buf).is_err() {
        return false;
    }
    match key {
        ApiKey::Produce => {
            sink_guard::produce(&buf, version).is_ok()
                && ProduceRequest::decode(&mut buf, version).is_ok()
        }
        ApiKey::Metadata => {
            sink_guard::metadata(&buf, version).is_ok()
                && MetadataRequest::decode(&mut buf, version).is_ok()
        }
        ApiKey::CreateTopics => {
            sink_guard::create_topics(&buf, version).is_ok()
                && CreateTopicsRequest::decode(&mut buf, version).is_ok()
        }
        ApiKey::ApiVersions => ApiVersionsRequest::decode(&mut buf, version).is_ok(),
        _ => InitProducerIdRequest::decode(&mut buf, version).is_ok(),
    }
}

/// Input: one request frame as the sink receives it (without the size
/// prefix).
pub fn sink_request(data: &[u8]) -> bool {
    let (ok, peak) = measure(data, || sink_decode(data));
    assert!(
        peak <= bound(data.len()),
        "sink: {peak} bytes held decoding {} bytes",
        data.len()
    );
    ok
}

// ---------------------------------------------------------------------------
// Seeds: valid inputs for every target.

/// The targets by name.
pub const TARGETS: [(&str, fn(&[u8]) -> bool); 4] = [
    ("produce_response", produce_response),
    ("frame_reader", frame_reader),
    ("control_response", control_response),
    ("sink_request", sink_request),
];

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
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        (0..self.below(max + 1))
            .map(|_| self.next() as u8)
            .collect()
    }
    fn str(&mut self, max: usize) -> StrBytes {
        let s: String = (0..self.below(max + 1))
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect();
        StrBytes::from_string(s)
    }
    fn brokers(&mut self, max: usize) -> Vec<BrokerId> {
        (0..self.below(max + 1))
            .map(|_| BrokerId(self.below(4) as i32))
            .collect()
    }
}

fn produce_seed(g: &mut Rng) -> Vec<u8> {
    let mut out = vec![g.below(4) as u8];
    out.extend_from_slice(&(g.next() as i32).to_be_bytes());
    out.push(0); // header tagged fields
    let topics = g.below(3);
    put_uvarint(&mut out, topics as u32 + 1);
    for _ in 0..topics {
        let name = g.bytes(10);
        put_uvarint(&mut out, name.len() as u32 + 1);
        out.extend_from_slice(&name);
        let parts = g.below(4);
        put_uvarint(&mut out, parts as u32 + 1);
        for p in 0..parts {
            out.extend_from_slice(&(p as i32).to_be_bytes());
            out.extend_from_slice(&(g.below(3) as i16).to_be_bytes());
            for _ in 0..3 {
                out.extend_from_slice(&g.next().to_be_bytes());
            }
            out.push(1); // no record errors
            match g.below(2) {
                0 => out.push(0),
                _ => {
                    let msg = g.bytes(12);
                    put_uvarint(&mut out, msg.len() as u32 + 1);
                    out.extend_from_slice(&msg);
                }
            }
            out.push(0);
        }
        out.push(0);
    }
    out.extend_from_slice(&(g.next() as i32).to_be_bytes());
    out.push(0);
    out
}

fn frame_seed(g: &mut Rng) -> Vec<u8> {
    let mut out = vec![g.next() as u8, 0xff, 1 + g.below(9) as u8, 7, 200];
    for _ in 0..1 + g.below(4) {
        let body = g.bytes(100);
        out.extend_from_slice(&(body.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out
}

fn control_body(g: &mut Rng, key: ApiKey, version: i16) -> Vec<u8> {
    use api_versions_response::{ApiVersion, SupportedFeatureKey};
    use create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
    use metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    let mut out = BytesMut::new();
    let r = match key {
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsResponse::default().with_api_keys(
                (0..g.below(6))
                    .map(|k| {
                        ApiVersion::default()
                            .with_api_key(k as i16)
                            .with_max_version(9)
                    })
                    .collect(),
            );
            if version >= 3 {
                r.supported_features = vec![SupportedFeatureKey::default()
                    .with_name(g.str(16))
                    .with_max_version(3)];
                r.finalized_features_epoch = 1;
            }
            r.encode(&mut out, version)
        }
        ApiKey::Metadata => {
            let topics = (0..g.below(3))
                .map(|_| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(g.str(10))))
                        .with_partitions(
                            (0..g.below(3))
                                .map(|p| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(p as i32)
                                        .with_replica_nodes(g.brokers(3))
                                        .with_isr_nodes(g.brokers(3))
                                })
                                .collect(),
                        )
                })
                .collect();
            MetadataResponse::default()
                .with_brokers(
                    (0..g.below(3))
                        .map(|n| {
                            MetadataResponseBroker::default()
                                .with_node_id(BrokerId(n as i32))
                                .with_host(g.str(12))
                                .with_port(9092)
                        })
                        .collect(),
                )
                .with_topics(topics)
                .encode(&mut out, version)
        }
        ApiKey::CreateTopics => {
            let topics = (0..g.below(3))
                .map(|_| {
                    let t = CreatableTopicResult::default()
                        .with_name(TopicName(g.str(10)))
                        .with_error_message(Some(g.str(12)));
                    if version >= 5 {
                        t.with_num_partitions(3).with_configs(Some(vec![
                            CreatableTopicConfigs::default()
                                .with_name(g.str(8))
                                .with_value(Some(g.str(4))),
                        ]))
                    } else {
                        t.with_configs(None)
                    }
                })
                .collect();
            CreateTopicsResponse::default()
                .with_topics(topics)
                .encode(&mut out, version)
        }
        ApiKey::SaslHandshake => SaslHandshakeResponse::default()
            .with_mechanisms((0..g.below(3)).map(|_| g.str(12)).collect())
            .encode(&mut out, version),
        ApiKey::SaslAuthenticate => SaslAuthenticateResponse::default()
            .with_error_message(Some(g.str(10)))
            .with_auth_bytes(Bytes::from(g.bytes(30)))
            .encode(&mut out, version),
        ApiKey::ListOffsets => {
            use list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
            ListOffsetsResponse::default()
                .with_topics(
                    (0..g.below(3))
                        .map(|_| {
                            ListOffsetsTopicResponse::default()
                                .with_name(TopicName(g.str(10)))
                                .with_partitions(
                                    (0..g.below(3))
                                        .map(|p| {
                                            ListOffsetsPartitionResponse::default()
                                                .with_partition_index(p as i32)
                                                .with_offset(g.next() as i64)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
                .encode(&mut out, version)
        }
        ApiKey::Fetch => {
            use fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
            let responses = (0..g.below(3))
                .map(|_| {
                    let mut t = FetchableTopicResponse::default().with_partitions(
                        (0..g.below(3))
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p as i32)
                                    .with_aborted_transactions(Some(vec![
                                        AbortedTransaction::default().with_first_offset(1),
                                    ]))
                                    .with_records(Some(Bytes::from(g.bytes(40))))
                            })
                            .collect(),
                    );
                    if version <= 12 {
                        t.topic = TopicName(g.str(10));
                    }
                    t
                })
                .collect();
            FetchResponse::default()
                .with_responses(responses)
                .encode(&mut out, version)
        }
        _ => InitProducerIdResponse::default().encode(&mut out, version),
    };
    r.expect("encode a seed response");
    out.to_vec()
}

fn control_seed(g: &mut Rng) -> Vec<u8> {
    let sel = g.next() as u8;
    let (key, version) = control_pick(sel);
    let mut out = vec![sel];
    out.extend_from_slice(&(g.next() as i32).to_be_bytes());
    if key.response_header_version(version) >= 1 {
        out.push(0);
    }
    out.extend(control_body(g, key, version));
    out
}

fn sink_seed(g: &mut Rng) -> Vec<u8> {
    let (key, min, max) = SINK_APIS[g.below(SINK_APIS.len())];
    let version = min + g.below((max - min + 1) as usize) as i16;
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(g.next() as i32)
        .with_client_id(Some(g.str(8)))
        .encode(&mut out, key.request_header_version(version))
        .expect("encode a header");
    let r = match key {
        ApiKey::Produce => {
            use produce_request::{PartitionProduceData, TopicProduceData};
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(
                    (0..g.below(3))
                        .map(|_| {
                            TopicProduceData::default()
                                .with_name(TopicName(g.str(10)))
                                .with_partition_data(
                                    (0..g.below(3))
                                        .map(|p| {
                                            PartitionProduceData::default()
                                                .with_index(p as i32)
                                                .with_records(Some(Bytes::from(g.bytes(70))))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
                .encode(&mut out, version)
        }
        ApiKey::Metadata => MetadataRequest::default()
            .with_topics(Some(
                (0..g.below(3))
                    .map(|_| {
                        metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(TopicName(g.str(10))))
                    })
                    .collect(),
            ))
            .encode(&mut out, version),
        ApiKey::CreateTopics => {
            use create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
            CreateTopicsRequest::default()
                .with_topics(
                    (0..g.below(3))
                        .map(|_| {
                            CreatableTopic::default()
                                .with_name(TopicName(g.str(10)))
                                .with_num_partitions(-1)
                                .with_assignments(vec![CreatableReplicaAssignment::default()
                                    .with_broker_ids(g.brokers(3))])
                        })
                        .collect(),
                )
                .encode(&mut out, version)
        }
        ApiKey::ApiVersions => ApiVersionsRequest::default().encode(&mut out, version),
        _ => InitProducerIdRequest::default().encode(&mut out, version),
    };
    r.expect("encode a seed request");
    out.to_vec()
}

/// `n` valid inputs for the target named `target`.
pub fn seeds(target: &str, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut g = Rng(seed);
    let make: fn(&mut Rng) -> Vec<u8> = match target {
        "produce_response" => produce_seed,
        "frame_reader" => frame_seed,
        "control_response" => control_seed,
        "sink_request" => sink_seed,
        _ => panic!("unknown target {target}"),
    };
    (0..n).map(|_| make(&mut g)).collect()
}

// ---------------------------------------------------------------------------
// Mutations for the stable driver.

/// Counts and lengths no small input can satisfy.
const HUGE: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x80, 0x80, 0x80, 0x80, 0x08],
    &[0xfe, 0xff, 0xff, 0x7f],
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x7f, 0xff],
    &[0x80, 0, 0, 0],
    &[0xff, 0xff, 0xff, 0xfe],
    &[0, 0, 0, 0],
    &[0xff, 0xff],
];

/// Applies one to six random edits to `input`: bit flips, byte sets,
/// inserts, deletes, truncation, huge counts, copies within the input and
/// splices from `other`.
pub fn mutate(g: &mut Rng, input: &mut Vec<u8>, other: &[u8], max_len: usize) {
    for _ in 0..1 + g.below(6) {
        let len = input.len();
        let at = g.below(len + 1);
        match g.below(9) {
            0 if len > 0 => input[at.min(len - 1)] ^= 1 << g.below(8),
            1 if len > 0 => input[at.min(len - 1)] = g.next() as u8,
            2 => {
                let b = g.bytes(8);
                input.splice(at..at, b);
            }
            3 => {
                let end = (at + 1 + g.below(16)).min(len);
                input.drain(at.min(end)..end);
            }
            4 => input.truncate(at),
            5 | 6 => {
                let h = HUGE[g.below(HUGE.len())];
                let end = if g.below(2) == 0 {
                    (at + h.len()).min(len)
                } else {
                    at
                };
                input.splice(at..end, h.iter().copied());
            }
            7 if len > 0 => {
                let from = g.below(len);
                let n = g.below(len - from + 1).min(64);
                let chunk = input[from..from + n].to_vec();
                input.splice(at..at, chunk);
            }
            8 if !other.is_empty() => {
                let from = g.below(other.len());
                let n = g.below(other.len() - from + 1);
                input.splice(at..len, other[from..from + n].iter().copied());
            }
            _ => input.push(g.next() as u8),
        }
    }
    input.truncate(max_len);
}
