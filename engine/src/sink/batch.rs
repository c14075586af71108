//! Walking and validating the record batches of one partition's `records`
//! bytes, as a broker would: CRC-32C, header fields, the records section
//! decompressed with the batch's codec (none, gzip, snappy, lz4, zstd), and
//! every record's length and offset delta walked so that the record count is
//! proven rather than read.
//!
//! Record batch v2 layout (big-endian):
//!
//! ```text
//! 0  baseOffset i64        8  batchLength i32      12 partitionLeaderEpoch i32
//! 16 magic i8              17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16        23 lastOffsetDelta i32  27 baseTimestamp i64
//! 35 maxTimestamp i64      43 producerId i64       51 producerEpoch i16
//! 53 baseSequence i32      57 recordsCount i32     61 records...
//! ```

use std::cell::RefCell;

use crate::arena::WriteBuf;
use crate::batch::Decompressor;
use crate::wire::varint::get_varint;

/// Bytes of a v2 batch header, up to and including recordsCount.
pub(crate) const BATCH_HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the part of a batch not counted by batchLength.
const LOG_OVERHEAD: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const RECORDS_COUNT_OFFSET: usize = 57;

/// What the batches of one partition hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchScan {
    pub batches: u64,
    /// Sum of the recordsCount fields.
    pub records: u64,
    /// Offsets the batches take (sum of lastOffsetDelta + 1).
    pub offsets: i64,
    /// Wire bytes of the batches.
    pub bytes: u64,
    /// Bytes of the batches' records sections once decompressed.
    pub record_bytes: u64,
    /// Batches by codec id (attributes bits 0-2): none, gzip, snappy, lz4, zstd.
    pub by_codec: [u64; 5],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchError {
    /// A batch's CRC-32C does not match its contents.
    Crc { batch: usize },
    /// Not a sequence of well-formed v2 batches.
    Malformed { batch: usize, reason: &'static str },
}

thread_local! {
    /// Each sink executor's decompressors and scratch buffer: per thread,
    /// so shared by no one, reused for every batch.
    static INFLATE: RefCell<(Decompressor, WriteBuf)> =
        RefCell::new((Decompressor::new(), WriteBuf::default()));
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(v)
}

/// Walks every batch in `data`, verifying each one's CRC-32C. All or
/// nothing: the first bad batch fails the whole partition, as in Kafka.
pub(crate) fn scan(data: &[u8]) -> Result<BatchScan, BatchError> {
    let mut scan = BatchScan::default();
    let mut rest = data;
    let mut index = 0usize;
    if rest.is_empty() {
        return Err(BatchError::Malformed {
            batch: 0,
            reason: "no record batch",
        });
    }
    while !rest.is_empty() {
        let malformed = |reason| BatchError::Malformed {
            batch: index,
            reason,
        };
        if rest.len() < BATCH_HEADER_LEN {
            return Err(malformed("truncated batch header"));
        }
        let batch_length = be_i32(rest, 8);
        let total = usize::try_from(batch_length)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .ok_or_else(|| malformed("negative batch length"))?;
        if total < BATCH_HEADER_LEN {
            return Err(malformed("batch length shorter than a batch header"));
        }
        if total > rest.len() {
            return Err(malformed("batch length past the end of the records"));
        }
        let (batch, tail) = rest.split_at(total);
        if batch[MAGIC_OFFSET] != 2 {
            return Err(malformed("magic is not 2"));
        }
        let expected = u32::from_be_bytes([
            batch[CRC_OFFSET],
            batch[CRC_OFFSET + 1],
            batch[CRC_OFFSET + 2],
            batch[CRC_OFFSET + 3],
        ]);
        if crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]) != expected {
            return Err(BatchError::Crc { batch: index });
        }
        let last_offset_delta = be_i32(batch, LAST_OFFSET_DELTA_OFFSET);
        let records_count = be_i32(batch, RECORDS_COUNT_OFFSET);
        if last_offset_delta < 0 || records_count < 0 {
            return Err(malformed("negative lastOffsetDelta or recordsCount"));
        }
        if records_count == 0 || i64::from(last_offset_delta) + 1 != i64::from(records_count) {
            return Err(malformed("lastOffsetDelta + 1 is not recordsCount"));
        }
        let codec =
            i16::from_be_bytes([batch[ATTRIBUTES_OFFSET], batch[ATTRIBUTES_OFFSET + 1]]) & 0x7;
        let record_bytes = INFLATE.with(|cell| {
            let (decompressor, scratch) = &mut *cell.borrow_mut();
            let records = decompressor
                .decompress(codec, &batch[BATCH_HEADER_LEN..], scratch)
                .map_err(|e| malformed(e.0))?;
            walk_records(records, records_count).map_err(malformed)?;
            Ok(records.len())
        })?;
        scan.batches += 1;
        scan.records += records_count as u64;
        scan.offsets += i64::from(last_offset_delta) + 1;
        scan.bytes += total as u64;
        scan.record_bytes += record_bytes as u64;
        scan.by_codec[codec as usize] += 1;
        rest = tail;
        index += 1;
    }
    Ok(scan)
}

/// Walks the records of a (decompressed) records section: each one's length
/// must fit, its offset delta must be its index, and there must be exactly
/// `count` of them, as Kafka's log validator demands of a Produce batch.
fn walk_records(mut records: &[u8], count: i32) -> Result<(), &'static str> {
    let mut index = 0i32;
    while !records.is_empty() {
        let (len, n) = get_varint(records).ok_or("bad record length varint")?;
        let body = usize::try_from(len)
            .ok()
            .and_then(|len| records.get(n..n + len))
            .ok_or("record length past the end of the records")?;
        // attributes i8, timestampDelta varlong, offsetDelta varint
        let ts_len = body
            .iter()
            .skip(1)
            .take(10)
            .position(|b| b & 0x80 == 0)
            .ok_or("bad record timestamp varint")?
            + 1;
        let (offset_delta, _) = body
            .get(1 + ts_len..)
            .and_then(get_varint)
            .ok_or("bad record offset delta varint")?;
        if offset_delta != index {
            return Err("record offset deltas are not 0, 1, 2, ...");
        }
        index += 1;
        records = &records[n + body.len()..];
    }
    if index != count {
        return Err("recordsCount does not match the records in the batch");
    }
    Ok(())
}
