//! Reading record batches as a consumer does: the `records` bytes of one
//! partition in a Fetch response, walked batch by batch and record by
//! record without allocating per record.
//!
//! Each batch's CRC-32C is checked (Kafka's `check.crcs`, on by default),
//! its records section is decompressed into one reusable buffer, and each
//! record is handed to the caller as a [`RecordView`] borrowing from that
//! buffer. A Fetch response may end inside a batch (the broker cuts at
//! `max_bytes`); that tail is not an error, it is reported and left for the
//! next fetch. Control batches (transaction markers) are counted and
//! skipped. Hand-written, like the produce path, because kafka-protocol's
//! decoder allocates per record (a `Record` with owned headers).

use super::codec::{DecompressError, Decompressor};
use crate::arena::WriteBuf;
use crate::wire::varint::get_uvarint;

/// Bytes of a v2 batch header, up to and including recordsCount.
const HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the part of a batch batchLength does not count.
const LOG_OVERHEAD: usize = 12;
const CRC_FROM: usize = 21;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

/// Options of one walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    /// Check each batch's CRC-32C (Kafka's `check.crcs`).
    pub check_crc: bool,
    /// Records with an offset below this are not visited: a fetch returns
    /// whole batches, starting with the one that holds the fetch offset.
    pub from_offset: i64,
}

impl Default for WalkOptions {
    fn default() -> Self {
        Self {
            check_crc: true,
            from_offset: 0,
        }
    }
}

/// A batch's header fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: i32,
    /// Attributes bits 0-2: none, gzip, snappy, lz4, zstd.
    pub codec: u8,
    pub transactional: bool,
    pub control: bool,
    /// Bytes of the batch on the wire.
    pub wire_len: usize,
}

impl BatchInfo {
    /// The offset after the batch's last one.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta) + 1
    }
}

/// One record, borrowed from the (decompressed) batch.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
}

impl<'a> RecordView<'a> {
    /// The record's headers as (key, value), in order, without allocating.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            rest: self.headers,
            left: self.header_count,
        }
    }

    /// The first header named `key`: `None` if absent, `Some(None)` if its
    /// value is null.
    pub fn header(&self, key: &[u8]) -> Option<Option<&'a [u8]>> {
        self.headers().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Iterator over a record's headers (already validated by the walk).
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut c = Cursor(self.rest);
        let key = c.bytes().ok()??;
        let value = c.bytes().ok()?;
        self.rest = c.0;
        Some((key, value))
    }
}

/// What one walk covered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// Complete batches read (control batches included).
    pub batches: u64,
    /// Records visited (offset at or past `from_offset`, control batches
    /// excluded).
    pub records: u64,
    /// The offset after the last complete batch, if there was one.
    pub next_offset: Option<i64>,
    /// Bytes of the complete batches.
    pub bytes: u64,
    /// Control batches (transaction markers) skipped.
    pub control_batches: u64,
    /// The bytes ended inside a batch (normal at the end of a Fetch
    /// response: the broker cuts at `max_bytes`).
    pub truncated_tail: bool,
}

/// Why the records of a partition cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the batch at offset {base_offset} fails its CRC-32C check: corrupt in transit or on the broker")]
    Crc { base_offset: i64 },
    #[error("the batch at offset {base_offset} has magic {magic}; only record batch v2 (Kafka 0.11+) is read")]
    Magic { base_offset: i64, magic: i8 },
    #[error("the batch at offset {base_offset} is malformed: {reason}")]
    Malformed {
        base_offset: i64,
        reason: &'static str,
    },
    #[error("the batch at offset {base_offset} does not decompress: {reason}")]
    Decompress {
        base_offset: i64,
        reason: &'static str,
    },
}

/// A reader's reusable state: the decompressors and the buffer a batch's
/// records section is inflated into (it grows to the largest batch once).
#[derive(Default)]
pub struct BatchReader {
    decompressor: Decompressor,
    scratch: WriteBuf,
}

impl BatchReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Walks every complete batch in `records`, calling `visit` once per
    /// record. All or nothing per batch: an error ends the walk, and
    /// records of batches before it have been visited.
    pub fn walk<F>(
        &mut self,
        records: &[u8],
        opts: WalkOptions,
        mut visit: F,
    ) -> Result<Walked, ReadError>
    where
        F: FnMut(&BatchInfo, &RecordView<'_>),
    {
        let mut walked = Walked::default();
        let mut rest = records;
        while !rest.is_empty() {
            let Some(total) = complete_batch_len(rest)? else {
                walked.truncated_tail = true;
                break;
            };
            let (batch, tail) = rest.split_at(total);
            let info = self.batch(batch, opts, &mut walked, &mut visit)?;
            walked.batches += 1;
            walked.bytes += total as u64;
            walked.next_offset = Some(info.next_offset());
            rest = tail;
        }
        Ok(walked)
    }

    /// Checks one complete batch and visits its records.
    fn batch<F>(
        &mut self,
        batch: &[u8],
        opts: WalkOptions,
        walked: &mut Walked,
        visit: &mut F,
    ) -> Result<BatchInfo, ReadError>
    where
        F: FnMut(&BatchInfo, &RecordView<'_>),
    {
        let info = header(batch)?;
        let malformed = |reason| ReadError::Malformed {
            base_offset: info.base_offset,
            reason,
        };
        if opts.check_crc && crc32c::crc32c(&batch[CRC_FROM..]) != be_u32(batch, 17) {
            return Err(ReadError::Crc {
                base_offset: info.base_offset,
            });
        }
        if info.control {
            walked.control_batches += 1;
            return Ok(info);
        }
        if info.next_offset() <= opts.from_offset {
            return Ok(info);
        }
        let section = self
            .decompressor
            .decompress(
                i16::from(info.codec),
                &batch[HEADER_LEN..],
                &mut self.scratch,
            )
            .map_err(|DecompressError(reason)| ReadError::Decompress {
                base_offset: info.base_offset,
                reason,
            })?;
        let mut c = Cursor(section);
        for _ in 0..info.records {
            let record = c.record(&info).map_err(malformed)?;
            if record.offset >= opts.from_offset {
                walked.records += 1;
                visit(&info, &record);
            }
        }
        if !c.0.is_empty() {
            return Err(malformed("bytes after the batch's last record"));
        }
        Ok(info)
    }
}

/// The length of the batch at the front of `rest`, or `None` when `rest`
/// ends inside it.
fn complete_batch_len(rest: &[u8]) -> Result<Option<usize>, ReadError> {
    if rest.len() < LOG_OVERHEAD {
        return Ok(None);
    }
    let base_offset = be_i64(rest, 0);
    let total = usize::try_from(be_i32(rest, 8))
        .ok()
        .map(|l| l + LOG_OVERHEAD)
        .filter(|&t| t >= HEADER_LEN)
        .ok_or(ReadError::Malformed {
            base_offset,
            reason: "batch length shorter than a batch header",
        })?;
    if rest.len() < 17 {
        return Ok(None);
    }
    let magic = rest[16] as i8;
    if magic != 2 {
        return Err(ReadError::Magic { base_offset, magic });
    }
    Ok((total <= rest.len()).then_some(total))
}

/// The header of a complete v2 batch (at least `HEADER_LEN` bytes).
fn header(b: &[u8]) -> Result<BatchInfo, ReadError> {
    let attributes = be_i16(b, 21);
    let info = BatchInfo {
        base_offset: be_i64(b, 0),
        last_offset_delta: be_i32(b, 23),
        base_timestamp: be_i64(b, 27),
        max_timestamp: be_i64(b, 35),
        producer_id: be_i64(b, 43),
        producer_epoch: be_i16(b, 51),
        base_sequence: be_i32(b, 53),
        records: be_i32(b, 57),
        codec: (attributes & 0x7) as u8,
        transactional: attributes & TRANSACTIONAL != 0,
        control: attributes & CONTROL != 0,
        wire_len: b.len(),
    };
    if info.last_offset_delta < 0 || info.records < 0 {
        return Err(ReadError::Malformed {
            base_offset: info.base_offset,
            reason: "negative lastOffsetDelta or recordsCount",
        });
    }
    Ok(info)
}

/// A reader over a records section; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn uvarint(&mut self) -> Result<u32, &'static str> {
        let (v, n) = get_uvarint(self.0).ok_or("bad varint")?;
        self.0 = &self.0[n..];
        Ok(v)
    }

    fn varint(&mut self) -> Result<i32, &'static str> {
        let z = self.uvarint()?;
        Ok(((z >> 1) as i32) ^ -((z & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, &'static str> {
        let mut z = 0u64;
        for (i, &b) in self.0.iter().take(10).enumerate() {
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err("bad varlong")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.0.len() {
            return Err("a length past the end of the record");
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    /// A varint length then that many bytes; -1 is null.
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, &'static str> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err("a negative length"),
            n => self.take(n as usize).map(Some),
        }
    }

    /// One record of `batch`, its headers walked once to bound them.
    fn record(&mut self, batch: &BatchInfo) -> Result<RecordView<'a>, &'static str> {
        let len = self.varint()?;
        let body = self.take(usize::try_from(len).map_err(|_| "a negative record length")?)?;
        let mut r = Cursor(body);
        r.take(1)?; // attributes: unused in v2
        let timestamp = batch.base_timestamp.wrapping_add(r.varlong()?);
        let offset = batch.base_offset + i64::from(r.varint()?);
        let key = r.bytes()?;
        let value = r.bytes()?;
        let header_count = u32::try_from(r.varint()?).map_err(|_| "a negative header count")?;
        let headers = r.0;
        for _ in 0..header_count {
            r.bytes()?.ok_or("a null header key")?;
            r.bytes()?;
        }
        if !r.0.is_empty() {
            return Err("bytes after a record's headers");
        }
        Ok(RecordView {
            offset,
            timestamp,
            key,
            value,
            headers,
            header_count,
        })
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    be_i32(b, at) as u32
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(v)
}

#[cfg(test)]
mod tests;
