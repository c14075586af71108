//! Batches DataStorm seals decode with kafka-protocol's independent decoder
//! (which checks the CRC-32C and, for LZ4, uses the reference C library).

use bytes::Bytes;
use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{BatchBuilder, Compression, Lz4FrameEncoder, RecordHeader};
use kafka_protocol::records::{Compression as KpCompression, RecordBatchDecoder, TimestampType};

struct Spec {
    records: usize,
    value_len: usize,
}

fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| b'!' + ((i * 31 + j * 7) % 94) as u8)
        .collect()
}

fn header<'a>(r: &'a kafka_protocol::records::Record, key: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .and_then(|(_, v)| v.as_deref())
}

fn check(spec: Spec, compression: Compression) {
    let mut b = BatchBuilder::with_capacity(1024);
    let base_ts = 1_732_000_000_000i64;
    for i in 0..spec.records {
        let key = format!("key-{i}");
        let headers = [RecordHeader {
            key: b"seq",
            value: key.as_bytes(),
        }];
        let keyed = i % 3 != 0;
        let extra = (i % 5 == 0).then_some(RecordHeader {
            key: b"extra",
            value: b"x",
        });
        b.append_with(
            base_ts + (i as i64 % 50),
            keyed.then_some(key.as_bytes()),
            &value(i, spec.value_len),
            if i % 2 == 0 { &headers } else { &[] },
            extra,
        );
    }
    let mut out = WriteBuf::default();
    out.put_slice(b"junk-before");
    let sealed = b.seal(compression, &mut Lz4FrameEncoder::new(), &mut out);
    let bytes = &out.as_slice()[11..];
    assert_eq!(bytes.len(), sealed.wire_bytes);
    assert_eq!(sealed.records as usize, spec.records);

    let mut buf = Bytes::copy_from_slice(bytes);
    let set = RecordBatchDecoder::decode(&mut buf).expect("decodes, CRC ok");
    assert!(buf.is_empty(), "one batch, nothing after it");
    assert_eq!(set.version, 2);
    assert_eq!(
        set.compression,
        match compression {
            Compression::None => KpCompression::None,
            Compression::Lz4 => KpCompression::Lz4,
        }
    );
    assert_eq!(set.records.len(), spec.records);
    for (i, r) in set.records.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "offset delta");
        assert_eq!(r.timestamp, base_ts + (i as i64 % 50));
        assert_eq!(r.timestamp_type, TimestampType::Creation);
        assert_eq!(r.producer_id, -1);
        let key = format!("key-{i}");
        if i % 3 != 0 {
            assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        } else {
            assert!(r.key.is_none());
        }
        assert_eq!(r.value.as_deref(), Some(&value(i, spec.value_len)[..]));
        let expected = usize::from(i % 2 == 0) + usize::from(i % 5 == 0);
        assert_eq!(r.headers.len(), expected, "record {i}");
        if i % 2 == 0 {
            assert_eq!(header(r, "seq"), Some(key.as_bytes()));
        }
        if i % 5 == 0 {
            assert_eq!(header(r, "extra"), Some(&b"x"[..]));
        }
    }
    assert!(b.is_empty(), "builder reset after seal");
}

#[test]
fn one_record_round_trips() {
    for c in [Compression::None, Compression::Lz4] {
        check(
            Spec {
                records: 1,
                value_len: 100,
            },
            c,
        );
    }
}

#[test]
fn a_typical_batch_round_trips() {
    for c in [Compression::None, Compression::Lz4] {
        check(
            Spec {
                records: 600,
                value_len: 100,
            },
            c,
        );
    }
}

#[test]
fn empty_values_and_large_values_round_trip() {
    for c in [Compression::None, Compression::Lz4] {
        check(
            Spec {
                records: 50,
                value_len: 0,
            },
            c,
        );
        check(
            Spec {
                records: 3,
                value_len: 300_000,
            },
            c,
        );
    }
}

#[test]
fn multi_megabyte_batches_span_many_lz4_blocks() {
    for c in [Compression::None, Compression::Lz4] {
        // About 5 MB: 80 LZ4 blocks of 64 KB.
        check(
            Spec {
                records: 50_000,
                value_len: 100,
            },
            c,
        );
    }
}

#[test]
fn a_corrupted_byte_fails_the_crc() {
    let mut b = BatchBuilder::with_capacity(1024);
    b.append(1, None, b"hello", &[]);
    let mut out = WriteBuf::default();
    b.seal(Compression::None, &mut Lz4FrameEncoder::new(), &mut out);
    let mut bytes = out.as_slice().to_vec();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x40;
    let err = RecordBatchDecoder::decode(&mut Bytes::from(bytes)).unwrap_err();
    assert!(err.to_string().contains("Cyclic redundancy check"), "{err}");
}
