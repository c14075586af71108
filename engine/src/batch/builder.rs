//! The per-record hot path: appending one record to a partition's open batch.
//!
//! Record v2 layout (KIP-98): length varint, attributes i8, timestampDelta
//! varlong, offsetDelta varint, key (varint length, -1 = null), value, header
//! count varint, headers. Everything is written straight into the batch's
//! reused `records` vector; nothing is allocated per record.

use super::{Compression, Compressor};
use crate::arena::WriteBuf;
use crate::wire::varint::{put_varint, put_varlong, varint_len};

/// Bytes before the records in a v2 batch.
pub const BATCH_HEADER_LEN: usize = 61;
/// Offset of the attributes field: the CRC covers from here to the end.
const CRC_START: usize = 21;

/// A record header: key and value bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// What a sealed batch holds, for accounting when its ack comes back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealedBatch {
    pub records: i32,
    /// Uncompressed size of the records section.
    pub records_bytes: usize,
    /// Size of the batch on the wire (header + possibly compressed records).
    pub wire_bytes: usize,
}

/// One partition's open batch.
#[derive(Debug)]
pub struct BatchBuilder {
    records: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// `capacity` is the batch size the records section grows to; it is
    /// allocated once and reused.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            records: Vec::with_capacity(capacity),
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    #[inline]
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Size of the batch if it were sealed uncompressed.
    #[inline]
    pub fn uncompressed_size(&self) -> usize {
        BATCH_HEADER_LEN + self.records.len()
    }

    /// Appends one record created at `timestamp_ms` (epoch milliseconds).
    #[inline]
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[RecordHeader<'_>],
    ) {
        self.append_with(timestamp_ms, key, value, headers, &[]);
    }

    /// Appends one record with `headers` followed by per-record `extra`
    /// headers (a sequence header, an end-to-end stamp), which the caller
    /// builds on its stack.
    #[inline]
    pub fn append_with(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[RecordHeader<'_>],
        extra: &[RecordHeader<'_>],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        } else if timestamp_ms > self.max_timestamp {
            self.max_timestamp = timestamp_ms;
        }
        let ts_delta = timestamp_ms - self.base_timestamp;
        let offset_delta = self.count;
        let key_len = key.map_or(-1, |k| k.len() as i32);

        let mut body = 1
            + varlong_len(ts_delta)
            + varint_len(offset_delta)
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value.len() as i32)
            + value.len()
            + varint_len((headers.len() + extra.len()) as i32);
        for h in headers.iter().chain(extra) {
            body += varint_len(h.key.len() as i32)
                + h.key.len()
                + varint_len(h.value.len() as i32)
                + h.value.len();
        }

        let out = &mut self.records;
        out.reserve(body + 5);
        put_varint(out, body as i32);
        out.push(0); // attributes: unused in v2 records
        put_varlong(out, ts_delta);
        put_varint(out, offset_delta);
        put_varint(out, key_len);
        if let Some(k) = key {
            out.extend_from_slice(k);
        }
        put_varint(out, value.len() as i32);
        out.extend_from_slice(value);
        put_varint(out, (headers.len() + extra.len()) as i32);
        for h in headers.iter().chain(extra) {
            put_varint(out, h.key.len() as i32);
            out.extend_from_slice(h.key);
            put_varint(out, h.value.len() as i32);
            out.extend_from_slice(h.value);
        }
        self.count += 1;
    }

    /// Writes the whole batch (header, records compressed with
    /// `compression` by the shard's `compressor`, CRC) at the end of `out`
    /// and empties this builder for the next batch.
    pub fn seal(
        &mut self,
        compression: Compression,
        compressor: &mut Compressor,
        out: &mut WriteBuf,
    ) -> SealedBatch {
        self.seal_as(compression, compressor, out, Producer::NONE)
    }

    /// [`BatchBuilder::seal`] with the idempotent producer's fields in the
    /// header, written before the CRC (which covers them), so the batch is
    /// checksummed once.
    pub fn seal_as(
        &mut self,
        compression: Compression,
        compressor: &mut Compressor,
        out: &mut WriteBuf,
        producer: Producer,
    ) -> SealedBatch {
        let start = out.len();
        out.spare(BATCH_HEADER_LEN);
        out.advance(BATCH_HEADER_LEN);
        compressor.compress(compression, &self.records, out);
        let batch = &mut out.as_mut_slice()[start..];
        let wire_bytes = batch.len();
        let attributes = compression.attribute_bits();
        let h = &mut batch[..BATCH_HEADER_LEN];
        h[0..8].copy_from_slice(&0i64.to_be_bytes()); // base offset: the broker assigns
        h[8..12].copy_from_slice(&((wire_bytes - 12) as i32).to_be_bytes());
        h[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        h[16] = 2; // magic
        h[21..23].copy_from_slice(&attributes.to_be_bytes());
        h[23..27].copy_from_slice(&(self.count - 1).to_be_bytes()); // last offset delta
        h[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[43..51].copy_from_slice(&producer.id.to_be_bytes());
        h[51..53].copy_from_slice(&producer.epoch.to_be_bytes());
        h[53..57].copy_from_slice(&producer.base_sequence.to_be_bytes());
        h[57..61].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());

        let sealed = SealedBatch {
            records: self.count,
            records_bytes: self.records.len(),
            wire_bytes,
        };
        self.records.clear();
        self.count = 0;
        sealed
    }
}

#[inline]
fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

/// The producer fields of a batch header: the idempotent producer's id,
/// epoch and the batch's first sequence number, or [`Producer::NONE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

impl Producer {
    /// No idempotent producer: -1 in every field.
    pub const NONE: Producer = Producer {
        id: -1,
        epoch: -1,
        base_sequence: -1,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varlong_len_matches_encoder() {
        for v in [0i64, 1, -1, 63, 64, -65, 1 << 20, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "{v}");
        }
    }

    #[test]
    fn seal_resets_the_builder_and_reports_sizes() {
        let mut b = BatchBuilder::with_capacity(1024);
        let mut compressor = Compressor::new();
        let mut out = WriteBuf::default();
        b.append(1000, None, b"abc", &[]);
        b.append(1001, Some(b"k"), b"def", &[]);
        assert_eq!(b.record_count(), 2);
        let sealed = b.seal(Compression::None, &mut compressor, &mut out);
        assert_eq!(sealed.records, 2);
        assert_eq!(sealed.wire_bytes, out.len());
        assert_eq!(sealed.wire_bytes, BATCH_HEADER_LEN + sealed.records_bytes);
        assert!(b.is_empty());
    }
}
