//! Walking the record batches of one partition's `records` bytes without
//! decompressing or copying them.
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchError {
    /// A batch's CRC-32C does not match its contents.
    Crc { batch: usize },
    /// Not a sequence of well-formed v2 batches.
    Malformed { batch: usize, reason: &'static str },
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
        scan.batches += 1;
        scan.records += records_count as u64;
        scan.offsets += i64::from(last_offset_delta) + 1;
        scan.bytes += total as u64;
        rest = tail;
        index += 1;
    }
    Ok(scan)
}
