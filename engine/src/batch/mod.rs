//! Kafka RecordBatch v2: records are appended uncompressed into a partition's
//! open batch, and sealed (header, optional LZ4 frame, CRC-32C) into a reused
//! output buffer.

mod builder;
pub mod lz4;

pub use builder::{BatchBuilder, RecordHeader, SealedBatch, BATCH_HEADER_LEN};
pub use lz4::Lz4FrameEncoder;

use std::fmt;
use std::str::FromStr;

/// Compression codecs DataStorm writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
}

impl Compression {
    /// The codec's id in the batch attributes (bits 0-2).
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 3,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        })
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            other => Err(format!(
                "unknown compression '{other}': DataStorm writes 'none' or 'lz4'"
            )),
        }
    }
}
