//! Hostile input: the decoders that read bytes from the network never panic,
//! never allocate more than a bound proportional to their input, and return
//! errors for broken messages.
//!
//! Covered: the Produce response reader, the frame reader, the control-plane
//! response decoder (`wire::control::decode_response`, kafka-protocol behind
//! `wire::guard`) and the sink's request path (its `guard` module, included
//! here by path, then kafka-protocol, as `sink::handlers::handle_frame`
//! does), plus a live sink fed corrupted frames over TCP.
//!
//! Each property runs 10,000 cases (`PROPTEST_CASES` overrides). The same
//! targets run under cargo-fuzz: see `engine/fuzz` and `scripts/fuzz`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use datastorm_engine::wire::control::decode_response;
use datastorm_engine::wire::frame::FrameReader;
use datastorm_engine::wire::produce::read_produce_response;
use datastorm_engine::wire::varint::put_uvarint;
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
use proptest::prelude::*;

#[path = "../src/sink/guard.rs"]
#[allow(dead_code)]
mod sink_guard;

// ---------------------------------------------------------------------------
// Allocation accounting

/// Tracks the peak of live heap bytes on threads that opted in, and refuses
/// (aborting the test binary with "memory allocation of N bytes failed") any
/// single allocation over `MAX_ONE_ALLOCATION` while measuring, so that a
/// huge `Vec::with_capacity` fails here whatever the machine's overcommit.
struct Counting;

const MAX_ONE_ALLOCATION: usize = 256 << 20;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let live = LIVE.with(|l| {
        let v = l.get() + delta;
        l.set(v);
        v
    });
    PEAK.with(|p| p.set(p.get().max(live)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            if layout.size() > MAX_ONE_ALLOCATION {
                return std::ptr::null_mut();
            }
            track(layout.size() as isize);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            if layout.size() > MAX_ONE_ALLOCATION {
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
                return std::ptr::null_mut();
            }
            track(new_size as isize - layout.size() as isize);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result and the peak of heap bytes it held.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|o| o.set(true));
    let out = f();
    ON.with(|o| o.set(false));
    (out, PEAK.with(Cell::get).max(0) as usize)
}

/// What decoding `len` bytes may hold at its peak: the decoders build
/// structs a few dozen times larger than their smallest wire form (see
/// `allocation_is_proportional_to_the_input`), plus fixed overhead (error
/// strings, small maps).
fn bound(len: usize) -> usize {
    64 * len + 16 * 1024
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// A small deterministic generator for message contents (proptest drives the
// seeds and the mutations, and shrinks those).

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn len(&mut self, max: u64) -> usize {
        self.below(max + 1) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        (0..self.len(max)).map(|_| self.next() as u8).collect()
    }
    fn text(&mut self, max: u64) -> String {
        (0..self.len(max))
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
    fn str(&mut self, max: u64) -> StrBytes {
        StrBytes::from_string(self.text(max))
    }
    fn opt_str(&mut self, max: u64) -> Option<StrBytes> {
        self.chance(80).then(|| self.str(max))
    }
    fn brokers(&mut self, max: u64) -> Vec<BrokerId> {
        (0..self.len(max))
            .map(|_| BrokerId(self.below(5) as i32))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Mutations

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    /// Inserts, or writes over, a huge count or length at a position.
    Huge {
        at: usize,
        which: usize,
        overwrite: bool,
    },
}

/// Counts and lengths that no message of these sizes can satisfy.
const HUGE: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff, 0x0f], // uvarint u32::MAX
    &[0x80, 0x80, 0x80, 0x80, 0x08], // uvarint 2^31
    &[0xfe, 0xff, 0xff, 0x7f],       // uvarint 2^28 - 2
    &[0x7f, 0xff, 0xff, 0xff],       // i32::MAX
    &[0x7f, 0xff],                   // i16::MAX
    &[0x80, 0x00, 0x00, 0x00],       // i32::MIN
    &[0xff, 0xff, 0xff, 0xfe],       // -2
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), any::<usize>(), any::<bool>()).prop_map(|(at, which, overwrite)| {
            Mutation::Huge {
                at,
                which,
                overwrite,
            }
        }),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| i % (len + 1);
    match m {
        Mutation::Flip(i, bit) if !buf.is_empty() => {
            let n = buf.len();
            buf[i % n] ^= 1 << bit;
        }
        Mutation::Set(i, v) if !buf.is_empty() => {
            let n = buf.len();
            buf[i % n] = *v;
        }
        Mutation::Truncate(i) => buf.truncate(at(*i, buf.len())),
        Mutation::Delete(i, n) => {
            let start = at(*i, buf.len());
            let end = (start + n).min(buf.len());
            buf.drain(start..end);
        }
        Mutation::Insert(i, b) => {
            let p = at(*i, buf.len());
            buf.splice(p..p, b.iter().copied());
        }
        Mutation::Huge {
            at: i,
            which,
            overwrite,
        } => {
            let h = HUGE[which % HUGE.len()];
            let p = at(*i, buf.len());
            let end = if *overwrite {
                (p + h.len()).min(buf.len())
            } else {
                p
            };
            buf.splice(p..end, h.iter().copied());
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Produce responses, encoded by hand so that every count and length field's
// position is known.

/// One partition's answer as `read_produce_response` reports it.
type Ack = (Vec<u8>, i32, i16, i64, Option<Vec<u8>>);

struct ProduceResp {
    bytes: Vec<u8>,
    /// (position, width) of every count, length and size varint.
    lengths: Vec<(usize, usize)>,
    acks: Vec<Ack>,
    throttle: i32,
}

impl ProduceResp {
    fn varint(&mut self, v: u32) {
        let at = self.bytes.len();
        put_uvarint(&mut self.bytes, v);
        self.lengths.push((at, self.bytes.len() - at));
    }
    fn compact_bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u32 + 1);
        self.bytes.extend_from_slice(b);
    }
    fn nullable(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.varint(0),
            Some(b) => self.compact_bytes(b),
        }
    }
    fn tags(&mut self, g: &mut Gen) {
        let n = g.below(3) as u32;
        self.varint(n);
        for _ in 0..n {
            let tag = g.below(300) as u32;
            put_uvarint(&mut self.bytes, tag);
            let data = g.bytes(6);
            self.compact_bytes_raw(&data);
        }
    }
    /// A tagged field's size (not +1) and data.
    fn compact_bytes_raw(&mut self, data: &[u8]) {
        self.varint(data.len() as u32);
        self.bytes.extend_from_slice(data);
    }
}

fn produce_response(g: &mut Gen) -> ProduceResp {
    let mut r = ProduceResp {
        bytes: Vec::new(),
        lengths: Vec::new(),
        acks: Vec::new(),
        throttle: g.next() as i32,
    };
    let topics = g.len(3);
    r.varint(topics as u32 + 1);
    for _ in 0..topics {
        let name = g.bytes(12);
        r.compact_bytes(&name);
        let parts = g.len(4);
        r.varint(parts as u32 + 1);
        for _ in 0..parts {
            let (partition, code, base) = (g.next() as i32, g.next() as i16, g.next() as i64);
            r.bytes.extend_from_slice(&partition.to_be_bytes());
            r.bytes.extend_from_slice(&code.to_be_bytes());
            r.bytes.extend_from_slice(&base.to_be_bytes());
            r.bytes.extend_from_slice(&g.next().to_be_bytes()); // log_append_time
            r.bytes.extend_from_slice(&g.next().to_be_bytes()); // log_start_offset
            let record_errors = g.len(2);
            r.varint(record_errors as u32 + 1);
            for _ in 0..record_errors {
                r.bytes.extend_from_slice(&(g.next() as i32).to_be_bytes());
                let msg = g.chance(50).then(|| g.bytes(10));
                r.nullable(msg.as_deref());
                r.tags(g);
            }
            let msg = g.chance(30).then(|| g.bytes(20));
            r.nullable(msg.as_deref());
            r.tags(g);
            r.acks.push((name.clone(), partition, code, base, msg));
        }
        r.tags(g);
    }
    r.bytes.extend_from_slice(&r.throttle.to_be_bytes());
    r.tags(g);
    r
}

fn read_all(body: &[u8], version: i16) -> (Result<i32, WireError>, Vec<Ack>) {
    let mut acks = Vec::new();
    let r = read_produce_response(body, version, |a| {
        acks.push((
            a.topic.to_vec(),
            a.partition,
            a.error_code,
            a.base_offset,
            a.error_message.map(<[u8]>::to_vec),
        ))
    });
    (r, acks)
}

/// `read_produce_response` on hostile bytes: no panic, no allocation at all.
fn produce_allocation_free(body: &[u8], version: i16) -> Result<i32, WireError> {
    let (r, peak) = peak_during(|| read_produce_response(body, version, |_| {}));
    assert_eq!(peak, 0, "read_produce_response allocated");
    r
}

// ---------------------------------------------------------------------------
// Control-plane responses (client side)

#[derive(Debug, Clone, Copy)]
enum Control {
    ApiVersions,
    Metadata,
    CreateTopics,
    SaslHandshake,
    SaslAuthenticate,
    InitProducerId,
    ListOffsets,
    Fetch,
}

const CONTROLS: [Control; 8] = [
    Control::ApiVersions,
    Control::Metadata,
    Control::CreateTopics,
    Control::SaslHandshake,
    Control::SaslAuthenticate,
    Control::InitProducerId,
    Control::ListOffsets,
    Control::Fetch,
];

impl Control {
    fn key(self) -> ApiKey {
        match self {
            Control::ApiVersions => ApiKey::ApiVersions,
            Control::Metadata => ApiKey::Metadata,
            Control::CreateTopics => ApiKey::CreateTopics,
            Control::SaslHandshake => ApiKey::SaslHandshake,
            Control::SaslAuthenticate => ApiKey::SaslAuthenticate,
            Control::InitProducerId => ApiKey::InitProducerId,
            Control::ListOffsets => ApiKey::ListOffsets,
            Control::Fetch => ApiKey::Fetch,
        }
    }

    /// The versions kafka-protocol (and so the client) can decode.
    fn versions(self) -> (i16, i16) {
        match self {
            Control::ApiVersions => (0, 4),
            Control::Metadata => (0, 13),
            Control::CreateTopics => (2, 7),
            Control::SaslHandshake => (0, 1),
            Control::SaslAuthenticate => (0, 2),
            Control::InitProducerId => (0, 6),
            Control::ListOffsets => (1, 10),
            Control::Fetch => (4, 18),
        }
    }

    fn decode(self, frame: &[u8], version: i16, corr: i32) -> Result<(), WireError> {
        match self {
            Control::ApiVersions => decode_response::<ApiVersionsRequest>(frame, version, corr)
                .map(|r| assert!(r.api_keys.len() <= frame.len())),
            Control::Metadata => decode_response::<MetadataRequest>(frame, version, corr)
                .map(|r| assert!(r.topics.len() + r.brokers.len() <= frame.len())),
            Control::CreateTopics => decode_response::<CreateTopicsRequest>(frame, version, corr)
                .map(|r| assert!(r.topics.len() <= frame.len())),
            Control::SaslHandshake => decode_response::<SaslHandshakeRequest>(frame, version, corr)
                .map(|r| assert!(r.mechanisms.len() <= frame.len())),
            Control::SaslAuthenticate => {
                decode_response::<SaslAuthenticateRequest>(frame, version, corr).map(drop)
            }
            Control::InitProducerId => {
                decode_response::<InitProducerIdRequest>(frame, version, corr).map(drop)
            }
            Control::ListOffsets => decode_response::<ListOffsetsRequest>(frame, version, corr)
                .map(|r| assert!(r.topics.len() <= frame.len())),
            Control::Fetch => decode_response::<FetchRequest>(frame, version, corr)
                .map(|r| assert!(r.responses.len() <= frame.len())),
        }
    }

    /// A random valid response body in `version`.
    fn body(self, g: &mut Gen, version: i16) -> Vec<u8> {
        let mut out = BytesMut::new();
        match self {
            Control::ApiVersions => api_versions(g, version).encode(&mut out, version),
            Control::Metadata => metadata(g, version).encode(&mut out, version),
            Control::CreateTopics => create_topics(g, version).encode(&mut out, version),
            Control::SaslHandshake => SaslHandshakeResponse::default()
                .with_error_code(g.next() as i16)
                .with_mechanisms((0..g.len(4)).map(|_| g.str(12)).collect())
                .encode(&mut out, version),
            Control::SaslAuthenticate => SaslAuthenticateResponse::default()
                .with_error_code(g.next() as i16)
                .with_error_message(g.opt_str(20))
                .with_auth_bytes(Bytes::from(g.bytes(40)))
                .with_session_lifetime_ms(if version >= 1 { g.next() as i64 } else { 0 })
                .encode(&mut out, version),
            Control::InitProducerId => InitProducerIdResponse::default()
                .with_throttle_time_ms(g.next() as i32)
                .with_error_code(g.next() as i16)
                .with_producer_id(ProducerId(g.next() as i64))
                .with_producer_epoch(g.next() as i16)
                .encode(&mut out, version),
            Control::ListOffsets => list_offsets(g, version).encode(&mut out, version),
            Control::Fetch => fetch(g, version).encode(&mut out, version),
        }
        .expect("encode");
        out.to_vec()
    }

    /// Response header (correlation id, tagged fields when flexible) + body.
    fn frame(self, version: i16, corr: i32, body: &[u8]) -> Vec<u8> {
        let mut f = corr.to_be_bytes().to_vec();
        if self.key().response_header_version(version) >= 1 {
            f.push(0);
        }
        f.extend_from_slice(body);
        f
    }
}

fn api_versions(g: &mut Gen, version: i16) -> ApiVersionsResponse {
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

fn metadata(g: &mut Gen, version: i16) -> MetadataResponse {
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

fn create_topics(g: &mut Gen, version: i16) -> CreateTopicsResponse {
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

fn list_offsets(g: &mut Gen, version: i16) -> ListOffsetsResponse {
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

fn fetch(g: &mut Gen, version: i16) -> FetchResponse {
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

/// `decode_response` on hostile bytes: no panic, bounded allocation.
fn control_bounded(c: Control, frame: &[u8], version: i16, corr: i32) -> Result<(), WireError> {
    let (r, peak) = peak_during(|| c.decode(frame, version, corr));
    assert!(
        peak <= bound(frame.len()),
        "{c:?} v{version}: {peak} bytes held decoding {} bytes",
        frame.len()
    );
    r
}

// ---------------------------------------------------------------------------
// The sink's request path: header checks, guard, kafka-protocol decode, the
// way `sink::handlers::handle_frame` runs them.

const SINK_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 5),
];

fn sink_decode(frame: &[u8]) -> Result<(), String> {
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

fn sink_bounded(frame: &[u8]) -> Result<(), String> {
    let (r, peak) = peak_during(|| sink_decode(frame));
    assert!(
        peak <= bound(frame.len()),
        "sink: {peak} bytes held decoding {} bytes",
        frame.len()
    );
    r
}

/// A random valid request frame body (header + request, no size prefix).
fn sink_request(g: &mut Gen) -> Vec<u8> {
    let (key, min, max) = SINK_APIS[g.below(SINK_APIS.len() as u64) as usize];
    let version = min + g.below((max - min + 1) as u64) as i16;
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
// The frame reader against a reference model.

/// Hands out `data` in chunks of the given sizes (cycled).
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

type FrameOutcome = Result<Option<Vec<u8>>, io::ErrorKind>;

/// What a correct reader returns, frame by frame, until it stops.
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
        let size = i32::from_be_bytes(data[..4].try_into().unwrap());
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

fn reader_frames(
    data: &[u8],
    chunks: &[usize],
    capacity: usize,
    limit: usize,
) -> (Vec<FrameOutcome>, usize) {
    let mut r = Chunked { data, chunks, i: 0 };
    let mut out = Vec::new();
    let (_, peak) = peak_during(|| {
        let mut fr = FrameReader::new(capacity, limit);
        futures_lite::future::block_on(async {
            loop {
                let next = fr.next(&mut r).await;
                // Recording the outcome is not the reader's allocation.
                ON.with(|o| o.set(false));
                let done = !matches!(next, Ok(Some(_)));
                out.push(match next {
                    Ok(f) => Ok(f.map(<[u8]>::to_vec)),
                    Err(e) => Err(e.kind()),
                });
                ON.with(|o| o.set(true));
                if done {
                    break;
                }
            }
        });
    });
    (out, peak)
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes through every decoder: the Produce reader, each
    /// control response (with the correlation id matched so that the body
    /// is decoded) and the sink's request path (raw, and behind a valid
    /// request header so that the body decoders see it).
    #[test]
    fn arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        pick in any::<u64>(),
    ) {
        for version in [9, 10, 11, 12, pick as i16] {
            let _ = produce_allocation_free(&bytes, version);
        }
        let corr = bytes.get(..4).map_or(0, |b| i32::from_be_bytes(b.try_into().unwrap()));
        let c = CONTROLS[pick as usize % CONTROLS.len()];
        let (min, max) = c.versions();
        let version = min + ((pick >> 8) % (max - min + 1) as u64) as i16;
        let _ = control_bounded(c, &bytes, version, corr);

        let _ = sink_bounded(&bytes);
        let (key, min, max) = SINK_APIS[(pick >> 16) as usize % SINK_APIS.len()];
        let version = min + ((pick >> 24) % (max - min + 1) as u64) as i16;
        let mut framed = Vec::with_capacity(bytes.len() + 11);
        framed.extend_from_slice(&(key as i16).to_be_bytes());
        framed.extend_from_slice(&version.to_be_bytes());
        framed.extend_from_slice(&7i32.to_be_bytes());
        framed.extend_from_slice(&[0xff, 0xff]); // null client id
        if key.request_header_version(version) >= 2 {
            framed.push(0);
        }
        framed.extend_from_slice(&bytes);
        let _ = sink_bounded(&framed);
    }

    /// Valid Produce responses decode exactly; corrupted ones never panic or
    /// allocate; every truncation and every huge count or length is an error.
    #[test]
    fn corrupted_produce_responses(
        seed in any::<u64>(),
        version in 9i16..=12,
        mutations in prop::collection::vec(mutation(), 1..4),
        cut in any::<usize>(),
        field in any::<usize>(),
        huge in any::<usize>(),
    ) {
        let r = produce_response(&mut Gen(seed));
        let (res, acks) = read_all(&r.bytes, version);
        prop_assert_eq!(res.ok(), Some(r.throttle));
        prop_assert_eq!(&acks, &r.acks);

        let mut bad = r.bytes.clone();
        for m in &mutations {
            apply(&mut bad, m);
        }
        let _ = produce_allocation_free(&bad, version);

        let cut = cut % r.bytes.len();
        prop_assert!(produce_allocation_free(&r.bytes[..cut], version).is_err());

        // A count or length replaced by one larger than the whole response.
        let (at, width) = r.lengths[field % r.lengths.len()];
        let h = [HUGE[0], HUGE[1], HUGE[2]][huge % 3];
        let mut bad = r.bytes.clone();
        bad.splice(at..at + width, h.iter().copied());
        prop_assert!(produce_allocation_free(&bad, version).is_err(), "field at {}", at);
    }

    /// Valid control responses decode; corrupted ones never panic and stay
    /// within the allocation bound; truncated ones are errors.
    #[test]
    fn corrupted_control_responses(
        seed in any::<u64>(),
        pick in any::<u64>(),
        mutations in prop::collection::vec(mutation(), 1..4),
        cut in any::<usize>(),
    ) {
        let mut g = Gen(seed);
        let c = CONTROLS[pick as usize % CONTROLS.len()];
        let (min, max) = c.versions();
        let version = min + ((pick >> 8) % (max - min + 1) as u64) as i16;
        let corr = g.next() as i32;
        let body = c.body(&mut g, version);
        let frame = c.frame(version, corr, &body);
        prop_assert!(control_bounded(c, &frame, version, corr).is_ok(), "{:?} v{}", c, version);

        let mut bad = frame.clone();
        for m in &mutations {
            apply(&mut bad, m);
        }
        let _ = control_bounded(c, &bad, version, corr);

        let cut = cut % frame.len();
        prop_assert!(control_bounded(c, &frame[..cut], version, corr).is_err());
    }

    /// The sink's decode path on valid and corrupted requests.
    #[test]
    fn corrupted_sink_requests(
        seed in any::<u64>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let frame = sink_request(&mut Gen(seed));
        prop_assert!(sink_bounded(&frame).is_ok());
        let mut bad = frame.clone();
        for m in &mutations {
            apply(&mut bad, m);
        }
        let _ = sink_bounded(&bad);
    }

    /// The frame reader returns exactly the model's frames and errors, for
    /// any byte stream cut into any reads, and holds at most about twice
    /// the bytes it has been sent.
    #[test]
    fn frame_reader_matches_the_model(
        segments in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| {
                    let mut f = (b.len() as i32).to_be_bytes().to_vec();
                    f.extend_from_slice(&b);
                    f
                }),
                prop::collection::vec(any::<u8>(), 0..6),
                any::<i32>().prop_map(|s| s.to_be_bytes().to_vec()),
            ],
            0..8,
        ),
        chunks in prop::collection::vec(1usize..100, 1..6),
        capacity in 0usize..200,
        limit in prop_oneof![Just(0usize), 1usize..400, Just(64 << 20)],
    ) {
        let data: Vec<u8> = segments.concat();
        let (got, peak) = reader_frames(&data, &chunks, capacity, limit);
        prop_assert_eq!(got, model_frames(&data, limit));
        prop_assert!(
            peak <= capacity.max(64) + 2 * data.len() + 1024,
            "{} bytes held for a {}-byte stream", peak, data.len()
        );
    }
}

// ---------------------------------------------------------------------------
// Fixed cases

/// Counts and lengths of 2^31 near the front of every response the client
/// decodes: no panic, no large allocation attempted (the counting allocator would
/// abort this binary on any single allocation over 256 MiB).
#[test]
fn huge_counts_never_allocate() {
    let huge_compact = [0x80, 0x80, 0x80, 0x80, 0x08];
    let huge_i32 = [0x7f, 0xff, 0xff, 0xff];
    for c in CONTROLS {
        let (min, max) = c.versions();
        for version in min..=max {
            for offset in 0..12 {
                for h in [&huge_compact[..], &huge_i32[..]] {
                    let mut body = vec![0u8; offset];
                    body.extend_from_slice(h);
                    body.extend_from_slice(&[1; 8]);
                    let frame = c.frame(version, 1, &body);
                    let _ = control_bounded(c, &frame, version, 1);
                }
            }
        }
    }
    // Produce: topic count, then a topic's partition count.
    assert!(produce_allocation_free(&[0xff, 0xff, 0xff, 0xff, 0x0f], 9).is_err());
    assert!(produce_allocation_free(&[2, 1, 0x80, 0x80, 0x80, 0x80, 0x08], 9).is_err());
    // Frames shorter than a response header.
    for len in 0..4 {
        for c in CONTROLS {
            assert!(control_bounded(c, &[0; 4][..len], c.versions().1, 0).is_err());
        }
        assert!(sink_bounded(&[0; 4][..len]).is_err());
    }
}

/// The worst cases for allocation per input byte: arrays of the smallest
/// possible elements (and unknown tagged fields), 100,000 of them, through
/// each decoder. Their peak stays under `bound`.
#[test]
fn allocation_is_proportional_to_the_input() {
    let n = 100_000usize;
    let mut worst = 0.0f64;
    let mut check = |what: &str, len: usize, peak: usize| {
        let ratio = peak as f64 / len as f64;
        worst = worst.max(ratio);
        assert!(
            peak <= bound(len),
            "{what}: {peak} bytes for {len} ({ratio:.1}x)"
        );
    };
    let compact = |n: usize| {
        let mut v = Vec::new();
        put_uvarint(&mut v, n as u32 + 1);
        v
    };

    // Metadata v12 responses: minimal brokers / topics / partitions.
    let mut body = vec![0, 0, 0, 0];
    body.extend(compact(n));
    for _ in 0..n {
        body.extend_from_slice(&[0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0]); // id, host, port, rack, tags
    }
    body.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0]); // cluster id, controller, no topics, tags
    let frame = Control::Metadata.frame(12, 1, &body);
    let (r, peak) = peak_during(|| Control::Metadata.decode(&frame, 12, 1));
    r.unwrap();
    check("metadata brokers", frame.len(), peak);

    let mut body = vec![0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
    body.extend(compact(1)); // one topic
    body.extend_from_slice(&[0, 0, 1]); // error, name ""
    body.extend_from_slice(&[0; 16]); // topic id
    body.push(0); // is_internal
    body.extend(compact(n));
    for _ in 0..n {
        body.extend_from_slice(&[0; 14]); // error, index, leader, epoch
        body.extend_from_slice(&[1, 1, 1, 0]); // three empty arrays, tags
    }
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // topic ops, tags, tags
    let frame = Control::Metadata.frame(12, 1, &body);
    let (r, peak) = peak_during(|| Control::Metadata.decode(&frame, 12, 1));
    r.unwrap();
    check("metadata partitions", frame.len(), peak);

    // ApiVersions v3: minimal api keys, then unknown tagged fields.
    let mut body = vec![0, 0];
    body.extend(compact(n));
    for _ in 0..n {
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
    }
    body.extend_from_slice(&[0, 0, 0, 0]);
    let tags = 20_000u32;
    put_uvarint(&mut body, tags);
    for t in 0..tags {
        put_uvarint(&mut body, t + 4);
        body.push(0);
    }
    let frame = Control::ApiVersions.frame(3, 1, &body);
    let (r, peak) = peak_during(|| Control::ApiVersions.decode(&frame, 3, 1));
    r.unwrap();
    check("api versions", frame.len(), peak);

    // Sink: Produce v9 with minimal topics, Metadata v9 with minimal topics.
    let header = |key: ApiKey, version: i16| {
        let mut h = Vec::new();
        h.extend_from_slice(&(key as i16).to_be_bytes());
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 1, 0xff, 0xff, 0]);
        h
    };
    let mut frame = header(ApiKey::Produce, 9);
    frame.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0]); // txn id, acks, timeout
    frame.extend(compact(n));
    for _ in 0..n {
        frame.extend_from_slice(&[1, 1, 0]); // name "", no partitions, tags
    }
    frame.push(0);
    let (r, peak) = peak_during(|| sink_decode(&frame));
    r.unwrap();
    check("sink produce topics", frame.len(), peak);

    let mut frame = header(ApiKey::Metadata, 9);
    frame.extend(compact(n));
    for _ in 0..n {
        frame.extend_from_slice(&[1, 0]); // name "", tags
    }
    frame.extend_from_slice(&[1, 0, 0, 0]); // three flags, tags
    let (r, peak) = peak_during(|| sink_decode(&frame));
    r.unwrap();
    check("sink metadata topics", frame.len(), peak);
    eprintln!("worst allocation per input byte: {worst:.1}x");
}

/// A live sink fed corrupted requests over TCP, one connection each, keeps
/// serving: afterwards it still answers ApiVersions.
#[test]
fn live_sink_survives_corrupted_requests() {
    use datastorm_engine::sink::{SinkConfig, SinkHandle};
    use std::net::{SocketAddr, TcpStream};

    let sink = SinkHandle::start(SinkConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..SinkConfig::default()
    })
    .expect("sink starts");
    let addr = sink.local_addr();
    let send = |frame: &[u8]| -> io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut out = (frame.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(frame);
        s.write_all(&out)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        Ok(answer)
    };
    let mut g = Gen(0x5eed);
    for i in 0..300u64 {
        let mut frame = sink_request(&mut g);
        for _ in 0..1 + g.below(3) {
            let at = g.next() as usize;
            let m = match g.below(4) {
                0 => Mutation::Flip(at, g.below(8) as u8),
                1 => Mutation::Truncate(at),
                2 => Mutation::Huge {
                    at,
                    which: g.next() as usize,
                    overwrite: g.chance(50),
                },
                _ => Mutation::Set(at, g.next() as u8),
            };
            apply(&mut frame, &m);
        }
        // A reset or a timeout is the sink closing a bad connection; only
        // the sink staying up matters here.
        let _ = send(&frame).map_err(|e| eprintln!("frame {i}: {e}"));
    }
    let mut req = Vec::new();
    req.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&42i32.to_be_bytes());
    req.extend_from_slice(&[0xff, 0xff]);
    let answer = send(&req).expect("sink still answers");
    assert!(answer.len() > 8, "ApiVersions answered");
    assert_eq!(&answer[4..8], &42i32.to_be_bytes());
    let stats = sink.stop();
    assert!(stats.decode_errors > 0, "corrupted requests were seen");
}
