//! The walker against batches written by an independent encoder
//! (kafka-protocol's), for every codec.

use super::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as Kp, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const CODECS: [Kp; 5] = [Kp::None, Kp::Gzip, Kp::Snappy, Kp::Lz4, Kp::Zstd];

fn record(offset: i64, i: usize) -> Record {
    let mut headers = kafka_protocol::indexmap::IndexMap::new();
    if i % 2 == 0 {
        headers.insert(
            StrBytes::from_static_str("ds-seq"),
            Some(Bytes::from(format!("s{i}"))),
        );
    }
    if i % 3 == 0 {
        headers.insert(StrBytes::from_static_str("nil"), None);
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: 7,
        producer_epoch: 1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: offset as i32,
        timestamp: 1_732_000_000_000 + i as i64,
        key: (i % 4 != 0).then(|| Bytes::from(format!("k{i}"))),
        value: (i % 5 != 4).then(|| Bytes::from(vec![b'a' + (i % 26) as u8; i % 300])),
        headers,
    }
}

/// One batch of `n` records from `base`, appended to `out`.
fn encode(out: &mut BytesMut, base: i64, n: usize, codec: Kp) {
    let records: Vec<Record> = (0..n).map(|i| record(base + i as i64, i)).collect();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(out, &records, &opts).expect("encodes");
}

/// Every record visited, as owned values to compare.
type Seen = Vec<(
    i64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(Vec<u8>, Option<Vec<u8>>)>,
)>;

fn walk_all(bytes: &[u8], opts: WalkOptions) -> (Result<Walked, ReadError>, Seen) {
    let mut seen = Vec::new();
    let r = BatchReader::new().walk(bytes, opts, |_, r| {
        let headers = r
            .headers()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        seen.push((
            r.offset,
            r.timestamp,
            r.key.map(<[u8]>::to_vec),
            r.value.map(<[u8]>::to_vec),
            headers,
        ));
    });
    (r, seen)
}

#[test]
fn every_codec_reads_back_what_an_independent_encoder_wrote() {
    for codec in CODECS {
        let mut buf = BytesMut::new();
        encode(&mut buf, 100, 37, codec);
        encode(&mut buf, 137, 5, codec);
        let (walked, seen) = walk_all(&buf, WalkOptions::default());
        let walked = walked.unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        assert_eq!(walked.batches, 2);
        assert_eq!(walked.records, 42);
        assert_eq!(walked.next_offset, Some(142));
        assert_eq!(walked.bytes, buf.len() as u64);
        assert!(!walked.truncated_tail);
        let expected: Vec<Record> = (0..37)
            .map(|i| record(100 + i as i64, i))
            .chain((0..5).map(|i| record(137 + i as i64, i)))
            .collect();
        for (got, want) in seen.iter().zip(&expected) {
            assert_eq!(got.0, want.offset, "{codec:?}");
            assert_eq!(got.1, want.timestamp);
            assert_eq!(got.2.as_deref(), want.key.as_deref());
            assert_eq!(got.3.as_deref(), want.value.as_deref());
            let headers: Vec<_> = want
                .headers
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_ref().map(|v| v.to_vec())))
                .collect();
            assert_eq!(got.4, headers);
        }
    }
}

#[test]
fn a_cut_inside_a_batch_is_a_truncated_tail_not_an_error() {
    let mut buf = BytesMut::new();
    encode(&mut buf, 0, 10, Kp::Lz4);
    let first = buf.len();
    encode(&mut buf, 10, 10, Kp::Lz4);
    for cut in (first..buf.len()).step_by(7) {
        let (walked, seen) = walk_all(&buf[..cut], WalkOptions::default());
        let walked = walked.expect("a cut tail is not an error");
        assert_eq!((walked.batches, seen.len()), (1, 10), "cut at {cut}");
        assert_eq!(walked.next_offset, Some(10));
        assert_eq!(walked.truncated_tail, cut > first);
    }
}

#[test]
fn records_before_the_fetch_offset_are_not_visited() {
    let mut buf = BytesMut::new();
    encode(&mut buf, 0, 10, Kp::Snappy);
    encode(&mut buf, 10, 10, Kp::Snappy);
    let opts = WalkOptions {
        from_offset: 13,
        ..WalkOptions::default()
    };
    let (walked, seen) = walk_all(&buf, opts);
    assert_eq!(walked.expect("walks").records, 7);
    assert_eq!(seen.first().map(|s| s.0), Some(13));
}

#[test]
fn a_damaged_byte_fails_the_crc_unless_crcs_are_not_checked() {
    let mut buf = BytesMut::new();
    encode(&mut buf, 0, 3, Kp::None);
    let at = buf.len() - 2;
    buf[at] ^= 0x01;
    let (r, seen) = walk_all(&buf, WalkOptions::default());
    assert_eq!(r, Err(ReadError::Crc { base_offset: 0 }));
    assert!(seen.is_empty());
    let unchecked = WalkOptions {
        check_crc: false,
        ..WalkOptions::default()
    };
    assert_eq!(walk_all(&buf, unchecked).0.expect("walks").records, 3);
}

#[test]
fn control_batches_are_counted_not_visited() {
    let mut marker = record(5, 1);
    marker.control = true;
    marker.transactional = true;
    marker.key = Some(Bytes::from_static(&[0, 0, 0, 1]));
    marker.value = Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0]));
    let mut buf = BytesMut::new();
    encode(&mut buf, 0, 5, Kp::None);
    let opts = RecordEncodeOptions {
        version: 2,
        compression: Kp::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&marker], &opts).expect("encodes");
    let (walked, seen) = walk_all(&buf, WalkOptions::default());
    let walked = walked.expect("walks");
    assert_eq!((walked.batches, walked.control_batches), (2, 1));
    assert_eq!((walked.records, seen.len()), (5, 5));
    assert_eq!(walked.next_offset, Some(6));
}

#[test]
fn old_message_formats_are_refused_by_name() {
    let mut buf = BytesMut::new();
    encode(&mut buf, 0, 3, Kp::None);
    buf[16] = 1;
    let (r, _) = walk_all(&buf, WalkOptions::default());
    assert_eq!(
        r,
        Err(ReadError::Magic {
            base_offset: 0,
            magic: 1
        })
    );
}

#[test]
fn lies_about_lengths_and_counts_are_errors() {
    let mut buf = BytesMut::new();
    encode(&mut buf, 0, 3, Kp::None);
    let unchecked = WalkOptions {
        check_crc: false,
        ..WalkOptions::default()
    };
    // recordsCount says 4: the section runs out.
    let mut more = buf.clone();
    more[60] = 4;
    assert!(matches!(
        walk_all(&more, unchecked).0,
        Err(ReadError::Malformed { .. })
    ));
    // recordsCount says 2: bytes left over.
    let mut fewer = buf.clone();
    fewer[60] = 2;
    assert!(matches!(
        walk_all(&fewer, unchecked).0,
        Err(ReadError::Malformed { .. })
    ));
    // A batch length shorter than a header.
    let mut short = buf.clone();
    short[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(matches!(
        walk_all(&short, unchecked).0,
        Err(ReadError::Malformed { .. })
    ));
}

#[test]
fn the_header_lookup_finds_the_first_match_and_null_values() {
    let mut buf = BytesMut::new();
    encode(&mut buf, 0, 1, Kp::None);
    let mut found = None;
    BatchReader::new()
        .walk(&buf, WalkOptions::default(), |_, r| {
            let owned = |key: &[u8]| r.header(key).map(|v| v.map(<[u8]>::to_vec));
            found = Some((owned(b"ds-seq"), owned(b"nil"), owned(b"none")));
        })
        .expect("walks");
    let (seq, nil, none) = found.expect("one record");
    assert_eq!(seq, Some(Some(b"s0".to_vec())));
    assert_eq!(nil, Some(None));
    assert_eq!(none, None);
}
