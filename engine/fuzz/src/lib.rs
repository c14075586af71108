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
//! * [`record_batches`]: the consumer's record walker
//!   (`batch::read::BatchReader::walk`) over a partition's records bytes,
//! * [`sink_request`]: the sink's request path (header checks, its
//!   `guard` module, kafka-protocol), as `sink::handlers::handle_frame` runs
//!   it up to the handlers.
//!
//! The allocator, the bound, the generator, the control and sink decode
//! paths, the frame reader's model and the valid control responses and
//! sink requests the seeds are made of are shared with the property tests
//! (`engine/tests/hostile_input.rs`) through `engine/tests/support/hostile.rs`.

use datastorm_engine::wire::produce::read_produce_response;
use datastorm_engine::wire::varint::{get_uvarint, put_uvarint};
use kafka_protocol::messages::ApiKey;

/// Support shared with the property tests in `engine/tests/hostile_input.rs`.
#[path = "../../tests/support/hostile.rs"]
mod hostile;

pub use hostile::{bound, Counting, Rng, CONTROLS, MAX_ONE_ALLOCATION};
use hostile::{
    check_frame_reader, control_bounded, control_frame, measure, sink_bounded, valid_control_body,
    valid_record_batches, valid_sink_request, walk_records, HUGE,
};

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
    check_frame_reader(data, stream, &chunks, capacity, limit).len() > 1
}

// ---------------------------------------------------------------------------
// Target: control-plane responses (client side)

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
    control_bounded(key, frame, version, corr).is_ok()
}

// ---------------------------------------------------------------------------
// Target: the sink's request path

/// Input: one request frame as the sink receives it (without the size
/// prefix).
pub fn sink_request(data: &[u8]) -> bool {
    sink_bounded(data).is_ok()
}

// ---------------------------------------------------------------------------
// Target: the consumer's record walker

/// Input: an options byte (bit 0: check CRCs; bits 1-7: the fetch
/// offset), then a partition's records bytes from a Fetch response.
pub fn record_batches(data: &[u8]) -> bool {
    walk_records(data).is_ok()
}

// ---------------------------------------------------------------------------
// Seeds: valid inputs for every target.

/// The targets by name.
pub const TARGETS: [(&str, fn(&[u8]) -> bool); 5] = [
    ("produce_response", produce_response),
    ("frame_reader", frame_reader),
    ("control_response", control_response),
    ("sink_request", sink_request),
    ("record_batches", record_batches),
];

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

fn control_seed(g: &mut Rng) -> Vec<u8> {
    let sel = g.next() as u8;
    let (key, version) = control_pick(sel);
    let mut out = vec![sel];
    let corr = g.next() as i32;
    let body = valid_control_body(g, key, version);
    out.extend(control_frame(key, version, corr, &body));
    out
}

/// `n` valid inputs for the target named `target`.
pub fn seeds(target: &str, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut g = Rng(seed);
    let make: fn(&mut Rng) -> Vec<u8> = match target {
        "produce_response" => produce_seed,
        "frame_reader" => frame_seed,
        "control_response" => control_seed,
        "sink_request" => valid_sink_request,
        "record_batches" => valid_record_batches,
        _ => panic!("unknown target {target}"),
    };
    (0..n).map(|_| make(&mut g)).collect()
}

// ---------------------------------------------------------------------------
// Mutations for the stable driver.

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
