//! STAND-IN until main's `datastorm_engine::batch::read` and the producer's
//! `ds-t` header land: the same names and signatures, built on
//! kafka-protocol's `RecordBatchDecoder` (which allocates per record: this
//! file is deleted at the merge, and the consume path then allocates
//! nothing per record).

#![allow(dead_code)] // the stand-in mirrors the full API; not every field is read yet

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

/// Options of one walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    pub check_crc: bool,
    pub from_offset: i64,
}

/// A batch's header fields.
#[derive(Debug, Clone, Copy)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub records: i32,
    pub control: bool,
    pub wire_len: usize,
}

/// One record, borrowed from the decoded batch.
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: &'a kafka_protocol::indexmap::IndexMap<StrBytes, Option<Bytes>>,
}

impl<'a> RecordView<'a> {
    /// The first header named `key`: None if absent, Some(None) if null.
    pub fn header(&self, key: &[u8]) -> Option<Option<&'a [u8]>> {
        self.headers
            .iter()
            .find(|(k, _)| k.as_bytes() == key)
            .map(|(_, v)| v.as_deref())
    }
}

/// What one walk covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct Walked {
    pub batches: u64,
    pub records: u64,
    pub next_offset: Option<i64>,
    pub bytes: u64,
    pub control_batches: u64,
    pub truncated_tail: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("malformed batch at offset {base_offset}: {reason}")]
    Malformed { base_offset: i64, reason: String },
}

#[derive(Default)]
pub struct BatchReader;

impl BatchReader {
    pub fn new() -> Self {
        BatchReader
    }

    /// Walks every complete batch in `records`, calling `visit` per record.
    pub fn walk<F: FnMut(&BatchInfo, &RecordView<'_>)>(
        &mut self,
        records: &[u8],
        opts: WalkOptions,
        mut visit: F,
    ) -> Result<Walked, ReadError> {
        let _ = opts.check_crc; // kafka-protocol always checks it
        let mut w = Walked::default();
        let mut rest = records;
        while !rest.is_empty() {
            if rest.len() < 61 {
                w.truncated_tail = true;
                break;
            }
            let base_offset = i64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
            let len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
            let bad = |reason: &str| ReadError::Malformed {
                base_offset,
                reason: reason.to_owned(),
            };
            if len < 49 {
                return Err(bad("batch length below the v2 header"));
            }
            let total = 12 + len as usize;
            if rest.len() < total {
                w.truncated_tail = true;
                break;
            }
            let attributes = i16::from_be_bytes(rest[21..23].try_into().expect("2 bytes"));
            let info = BatchInfo {
                base_offset,
                last_offset_delta: i32::from_be_bytes(rest[23..27].try_into().expect("4")),
                records: i32::from_be_bytes(rest[57..61].try_into().expect("4")),
                control: attributes & 0x20 != 0,
                wire_len: total,
            };
            let mut bytes = Bytes::copy_from_slice(&rest[..total]);
            let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| bad(&e.to_string()))?;
            if info.control {
                w.control_batches += 1;
            } else {
                for r in set.records.iter().filter(|r| r.offset >= opts.from_offset) {
                    visit(
                        &info,
                        &RecordView {
                            offset: r.offset,
                            timestamp: r.timestamp,
                            key: r.key.as_deref(),
                            value: r.value.as_deref(),
                            headers: &r.headers,
                        },
                    );
                    w.records += 1;
                }
            }
            w.batches += 1;
            w.bytes += total as u64;
            w.next_offset = Some(base_offset + i64::from(info.last_offset_delta) + 1);
            rest = &rest[total..];
        }
        Ok(w)
    }
}

/// STAND-IN for `datastorm_shards::plan::E2E_HEADER` and `datastorm_shards::e2e`.
pub mod e2e {
    /// The header carrying a record's intended send time and origin.
    pub const E2E_HEADER: &str = "ds-t";

    /// (time_us, origin) from a 12-byte `ds-t` value.
    pub fn decode(value: &[u8]) -> Option<(u64, u32)> {
        let v: &[u8; 12] = value.try_into().ok()?;
        let t = u64::from_be_bytes(v[..8].try_into().ok()?);
        let o = u32::from_be_bytes(v[8..].try_into().ok()?);
        Some((t, o))
    }

    /// This host's id: FNV-1a of the host name.
    pub fn host_id() -> u32 {
        static ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        *ID.get_or_init(|| {
            let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            name.trim().bytes().fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            })
        })
    }
}
