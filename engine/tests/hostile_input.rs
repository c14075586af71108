//! Hostile input: the decoders that read bytes from the network never panic,
//! never allocate more than a bound proportional to their input, and return
//! errors for broken messages.
//!
//! Covered: the Produce response reader, the frame reader, the control-plane
//! response decoder (`wire::control::decode_response`, kafka-protocol behind
//! `wire::guard`) and the sink's request path (its `guard` module, then
//! kafka-protocol, as `sink::handlers::handle_frame` does), plus a live sink
//! fed corrupted frames over TCP, and the consumer's record walker
//! (`batch::read`). What the fuzz targets use too (allocator,
//! decode paths, generators) is in `support/hostile.rs`.
//!
//! Each property runs 10,000 cases (`PROPTEST_CASES` overrides). The same
//! targets run under cargo-fuzz: see `engine/fuzz` and `scripts/fuzz`.

use std::io::{self, Read, Write};
use std::time::Duration;

use datastorm_engine::wire::produce::read_produce_response;
use datastorm_engine::wire::varint::put_uvarint;
use datastorm_engine::wire::WireError;
use kafka_protocol::messages::ApiKey;
use proptest::prelude::*;

/// Support shared with the fuzz targets (`engine/fuzz`): the counting
/// allocator, the generator and the valid messages, the control and sink
/// decode paths, the frame reader's model.
#[path = "support/hostile.rs"]
mod hostile;

use hostile::{
    bound, check_frame_reader, control_bounded, control_frame, decode_control, measure,
    sink_bounded, sink_decode, valid_control_body, valid_record_batches, valid_sink_request,
    walk_records, Counting, Rng, CONTROLS, HUGE, SINK_APIS,
};

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    fn tags(&mut self, g: &mut Rng) {
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

fn produce_response(g: &mut Rng) -> ProduceResp {
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
    let (r, peak) = measure(body, || read_produce_response(body, version, |_| {}));
    assert_eq!(peak, 0, "read_produce_response allocated");
    r
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
        let (key, min, max) = CONTROLS[pick as usize % CONTROLS.len()];
        let version = min + ((pick >> 8) % (max - min + 1) as u64) as i16;
        let _ = control_bounded(key, &bytes, version, corr);

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
        let r = produce_response(&mut Rng(seed));
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
        let mut g = Rng(seed);
        let (key, min, max) = CONTROLS[pick as usize % CONTROLS.len()];
        let version = min + ((pick >> 8) % (max - min + 1) as u64) as i16;
        let corr = g.next() as i32;
        let body = valid_control_body(&mut g, key, version);
        let frame = control_frame(key, version, corr, &body);
        prop_assert!(control_bounded(key, &frame, version, corr).is_ok(), "{:?} v{}", key, version);

        let mut bad = frame.clone();
        for m in &mutations {
            apply(&mut bad, m);
        }
        let _ = control_bounded(key, &bad, version, corr);

        let cut = cut % frame.len();
        prop_assert!(control_bounded(key, &frame[..cut], version, corr).is_err());
    }

    /// The consumer's record walker: valid batches (every codec, a cut
    /// tail) walk; corrupted ones never panic, and uncompressed ones are
    /// walked without allocating; arbitrary bytes likewise.
    #[test]
    fn corrupted_record_batches(
        seed in any::<u64>(),
        mutations in prop::collection::vec(mutation(), 1..4),
        junk in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let valid = valid_record_batches(&mut Rng(seed));
        prop_assert!(walk_records(&valid).is_ok());
        let mut bad = valid.clone();
        for m in &mutations {
            apply(&mut bad, m);
        }
        let _ = walk_records(&bad);
        let _ = walk_records(&junk);
    }

    /// The sink's decode path on valid and corrupted requests.
    #[test]
    fn corrupted_sink_requests(
        seed in any::<u64>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let frame = valid_sink_request(&mut Rng(seed));
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
        check_frame_reader(&data, &data, &chunks, capacity, limit);
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
    for (key, min, max) in CONTROLS {
        for version in min..=max {
            for offset in 0..12 {
                for h in [&huge_compact[..], &huge_i32[..]] {
                    let mut body = vec![0u8; offset];
                    body.extend_from_slice(h);
                    body.extend_from_slice(&[1; 8]);
                    let frame = control_frame(key, version, 1, &body);
                    let _ = control_bounded(key, &frame, version, 1);
                }
            }
        }
    }
    // Produce: topic count, then a topic's partition count.
    assert!(produce_allocation_free(&[0xff, 0xff, 0xff, 0xff, 0x0f], 9).is_err());
    assert!(produce_allocation_free(&[2, 1, 0x80, 0x80, 0x80, 0x80, 0x08], 9).is_err());
    // Frames shorter than a response header.
    for len in 0..4 {
        for (key, _, max) in CONTROLS {
            assert!(control_bounded(key, &[0; 4][..len], max, 0).is_err());
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
    let frame = control_frame(ApiKey::Metadata, 12, 1, &body);
    let (r, peak) = measure(&frame, || decode_control(ApiKey::Metadata, &frame, 12, 1));
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
    let frame = control_frame(ApiKey::Metadata, 12, 1, &body);
    let (r, peak) = measure(&frame, || decode_control(ApiKey::Metadata, &frame, 12, 1));
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
    let frame = control_frame(ApiKey::ApiVersions, 3, 1, &body);
    let (r, peak) = measure(&frame, || decode_control(ApiKey::ApiVersions, &frame, 3, 1));
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
    let (r, peak) = measure(&frame, || sink_decode(&frame));
    r.unwrap();
    check("sink produce topics", frame.len(), peak);

    let mut frame = header(ApiKey::Metadata, 9);
    frame.extend(compact(n));
    for _ in 0..n {
        frame.extend_from_slice(&[1, 0]); // name "", tags
    }
    frame.extend_from_slice(&[1, 0, 0, 0]); // three flags, tags
    let (r, peak) = measure(&frame, || sink_decode(&frame));
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
    let mut g = Rng(0x5eed);
    for i in 0..300u64 {
        let mut frame = valid_sink_request(&mut g);
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
