//! Batches DataStorm seals decode with kafka-protocol's independent decoder,
//! which checks the CRC-32C and decompresses with other implementations:
//! the reference C library for LZ4 and zstd, flate2's `GzDecoder` for gzip,
//! and its own reading of xerial snappy framing.

use bytes::Bytes;
use datastorm_engine::arena::WriteBuf;
use datastorm_engine::batch::{BatchBuilder, Compression, Compressor, Producer, RecordHeader};
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

/// Every codec, and a couple of levels of those that have levels.
fn codecs() -> Vec<Compression> {
    vec![
        Compression::None,
        Compression::Gzip { level: 1 },
        Compression::Gzip { level: 6 },
        Compression::Gzip { level: 9 },
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd { level: -3 },
        Compression::Zstd { level: 1 },
        Compression::Zstd { level: 3 },
        Compression::Zstd { level: 12 },
    ]
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
            extra.as_slice(),
        );
    }
    let mut out = WriteBuf::default();
    out.put_slice(b"junk-before");
    let sealed = b.seal(compression, &mut Compressor::new(), &mut out);
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
            Compression::Gzip { .. } => KpCompression::Gzip,
            Compression::Snappy => KpCompression::Snappy,
            Compression::Lz4 => KpCompression::Lz4,
            Compression::Zstd { .. } => KpCompression::Zstd,
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
    for c in codecs() {
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
    for c in codecs() {
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
    for c in codecs() {
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
fn multi_megabyte_batches_span_many_blocks_and_chunks() {
    for c in codecs() {
        // About 5 MB: 80 LZ4 blocks of 64 KB, 160 snappy chunks of 32 KB.
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
    b.seal(Compression::None, &mut Compressor::new(), &mut out);
    let mut bytes = out.as_slice().to_vec();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x40;
    let err = RecordBatchDecoder::decode(&mut Bytes::from(bytes)).unwrap_err();
    assert!(err.to_string().contains("Cyclic redundancy check"), "{err}");
}

/// Random bytes: nothing to find for any codec.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn incompressible_batches_still_work_with_a_ratio_near_one() {
    for c in codecs() {
        let mut b = BatchBuilder::with_capacity(64 * 1024);
        let bytes = noise(600 * 100);
        let values: Vec<&[u8]> = bytes.chunks(100).collect();
        for v in &values {
            b.append(1_732_000_000_000, None, v, &[]);
        }
        let mut out = WriteBuf::default();
        let sealed = b.seal(c, &mut Compressor::new(), &mut out);
        // Random values; only the records' own headers (8 of 108 bytes,
        // mostly constant) leave a codec something to save.
        let ratio = sealed.records_bytes as f64 / sealed.wire_bytes as f64;
        assert!(
            (0.97..=1.07).contains(&ratio),
            "{c:?}: record bytes / batch bytes = {ratio:.4}"
        );
        let set = RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(out.as_slice()))
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert_eq!(set.records.len(), 600);
        for (r, v) in set.records.iter().zip(&values) {
            assert_eq!(r.value.as_deref(), Some(*v));
        }
    }
}

#[test]
fn compressible_batches_shrink_and_levels_order_the_sizes() {
    // JSON-like values: what most Kafka topics carry.
    let size = |c: Compression| {
        let mut b = BatchBuilder::with_capacity(64 * 1024);
        for i in 0..600u32 {
            let v = format!(
                "{{\"order_id\":{},\"customer\":\"c-{}\",\"status\":\"{}\",\"amount\":{}.{:02}}}",
                1_000_000 + i,
                i % 97,
                ["NEW", "PAID", "SHIPPED"][(i % 3) as usize],
                i % 500,
                i % 100
            );
            b.append(1_732_000_000_000 + i64::from(i), None, v.as_bytes(), &[]);
        }
        let mut out = WriteBuf::default();
        let sealed = b.seal(c, &mut Compressor::new(), &mut out);
        assert!(RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(out.as_slice())).is_ok());
        sealed.wire_bytes
    };
    let none = size(Compression::None);
    for c in codecs().into_iter().skip(1) {
        assert!(size(c) * 2 < none, "{c:?} halves JSON at least");
    }
    assert!(size(Compression::Gzip { level: 9 }) <= size(Compression::Gzip { level: 1 }));
    assert!(size(Compression::Zstd { level: 12 }) <= size(Compression::Zstd { level: -3 }));
}

#[test]
fn idempotent_producer_fields_are_in_the_header_under_a_valid_crc() {
    let mut b = BatchBuilder::with_capacity(4096);
    for i in 0..5i64 {
        b.append(1_700_000_000_000 + i, None, b"value", &[]);
    }
    let producer = Producer {
        id: 77,
        epoch: 3,
        base_sequence: 1000,
    };
    let mut out = WriteBuf::default();
    b.seal_as(Compression::Lz4, &mut Compressor::new(), &mut out, producer);
    let set = RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(out.as_slice()))
        .expect("decodes, CRC ok");
    assert_eq!(set.records.len(), 5);
    for (i, r) in set.records.iter().enumerate() {
        assert_eq!(r.producer_id, 77);
        assert_eq!(r.producer_epoch, 3);
        assert_eq!(r.sequence, 1000 + i as i32);
    }
}
