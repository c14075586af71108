//! Kafka RecordBatch v2: records are appended uncompressed into a partition's
//! open batch, and sealed (header, records compressed with the run's codec,
//! CRC-32C) into a reused output buffer.
//!
//! Every codec Kafka knows is here, each written the way Apache Kafka's own
//! producer writes it and read back the way its consumers read it: gzip
//! (`gzip`), snappy in xerial framing (`snappy`), LZ4 frames (`lz4`) and zstd
//! frames (`zstd`). `codec` holds the per-shard compressor and the
//! decompressor the sink and the tests use.

mod builder;
pub mod codec;
pub mod gzip;
pub mod lz4;
pub mod read;
pub mod snappy;
pub mod zstd;

pub use builder::{BatchBuilder, Producer, RecordHeader, SealedBatch, BATCH_HEADER_LEN};
pub use codec::{Compressor, DecompressError, Decompressor};
pub use lz4::Lz4FrameEncoder;

use std::fmt;
use std::str::FromStr;

/// Compression codecs DataStorm writes, with the level where the codec has
/// levels. Kafka's batch attributes carry the codec (bits 0-2), never the
/// level: a consumer needs no level to decompress.
///
/// Serialized (run plans, reports) as the codec's name alone; the level is
/// reported beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// DEFLATE in a gzip member, level 1 (fastest) to 9 (smallest).
    Gzip {
        level: u32,
    },
    /// Snappy in the xerial framing Kafka's Java producer writes.
    Snappy,
    /// LZ4 frames of independent 64 KB blocks, lz4_flex's one (fast) level.
    Lz4,
    /// A zstd frame, level 1 to 22 or negative (faster, larger).
    Zstd {
        level: i32,
    },
}

/// Kafka's default gzip level (`compression.gzip.level`): zlib's 6.
pub const GZIP_DEFAULT_LEVEL: u32 = 6;
/// Kafka's default zstd level (`compression.zstd.level`): zstd's 3.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;
/// The fastest zstd level (zstd's `ZSTD_minCLevel()`, which Kafka accepts
/// too); negative levels trade ratio for speed.
pub const ZSTD_MIN_LEVEL: i32 = -131_072;
/// The smallest (and slowest) zstd level.
pub const ZSTD_MAX_LEVEL: i32 = 22;

/// Every codec, in Kafka's id order.
pub const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

impl Compression {
    /// The codec's id in the batch attributes (bits 0-2): none 0, gzip 1,
    /// snappy 2, lz4 3, zstd 4. Brokers accept zstd from Produce v7; DataStorm
    /// speaks v9 and up.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip { .. } => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd { .. } => 4,
        }
    }

    /// The codec's name, as `--compression` takes it and Kafka's
    /// `compression.type` spells it.
    pub fn name(self) -> &'static str {
        CODECS[self.attribute_bits() as usize]
    }

    /// The level in use, for codecs that have levels.
    pub fn level(self) -> Option<i32> {
        match self {
            Compression::Gzip { level } => Some(level as i32),
            Compression::Zstd { level } => Some(level),
            _ => None,
        }
    }

    /// This codec at `level` (`None`: the codec's default). Codecs without
    /// levels reject one, saying why, rather than ignore it.
    pub fn with_level(self, level: Option<i32>) -> Result<Compression, String> {
        let Some(level) = level else {
            return Ok(self);
        };
        match self {
            Compression::Gzip { .. } if (1..=9).contains(&level) => Ok(Compression::Gzip {
                level: level as u32,
            }),
            Compression::Gzip { .. } => Err(format!(
                "--compression-level {level} is out of range for gzip: use 1 (fastest) to 9 (smallest); Kafka's default is {GZIP_DEFAULT_LEVEL}"
            )),
            Compression::Zstd { .. } if (ZSTD_MIN_LEVEL..=ZSTD_MAX_LEVEL).contains(&level) && level != 0 => {
                Ok(Compression::Zstd { level })
            }
            Compression::Zstd { .. } => Err(format!(
                "--compression-level {level} is out of range for zstd: use 1 to {ZSTD_MAX_LEVEL}, or {ZSTD_MIN_LEVEL} to -1 for zstd's fast modes (0, zstd's 'default', is spelled {ZSTD_DEFAULT_LEVEL} here); Kafka's default is {ZSTD_DEFAULT_LEVEL}"
            )),
            Compression::Lz4 => Err(
                "--compression-level does not apply to lz4: DataStorm writes LZ4 at lz4_flex's one fast level (every LZ4 level decodes alike); drop the flag, or use gzip or zstd for levels"
                    .into(),
            ),
            Compression::Snappy | Compression::None => Err(format!(
                "--compression-level does not apply to {}: only gzip (1-9) and zstd (1-22) have levels",
                self.name()
            )),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compression {
    type Err = String;
    /// A codec name at its default level.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip {
                level: GZIP_DEFAULT_LEVEL,
            }),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            }),
            other => Err(format!(
                "unknown compression '{other}': DataStorm writes none, gzip, snappy, lz4 or zstd"
            )),
        }
    }
}

impl serde::Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_levels() {
        for (id, name) in CODECS.iter().enumerate() {
            let c: Compression = name.parse().unwrap();
            assert_eq!(c.attribute_bits(), id as i16);
            assert_eq!(c.to_string(), *name);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{name}\""));
        }
        assert_eq!("GZIP".parse::<Compression>().unwrap().level(), Some(6));
        assert_eq!("zstd".parse::<Compression>().unwrap().level(), Some(3));
        assert_eq!("lz4".parse::<Compression>().unwrap().level(), None);
        assert!("zstd-ish".parse::<Compression>().is_err());
    }

    #[test]
    fn levels_are_checked_per_codec() {
        let gzip: Compression = "gzip".parse().unwrap();
        let zstd: Compression = "zstd".parse().unwrap();
        assert_eq!(gzip.with_level(Some(1)), Ok(Compression::Gzip { level: 1 }));
        assert_eq!(gzip.with_level(None), Ok(gzip));
        assert!(gzip
            .with_level(Some(0))
            .unwrap_err()
            .contains("1 (fastest) to 9"));
        assert!(gzip.with_level(Some(10)).is_err());
        assert_eq!(
            zstd.with_level(Some(22)),
            Ok(Compression::Zstd { level: 22 })
        );
        assert_eq!(
            zstd.with_level(Some(-5)),
            Ok(Compression::Zstd { level: -5 })
        );
        assert!(zstd.with_level(Some(23)).is_err());
        assert!(zstd.with_level(Some(0)).is_err());
        let lz4 = Compression::Lz4.with_level(Some(9)).unwrap_err();
        assert!(lz4.contains("does not apply to lz4"), "{lz4}");
        assert!(Compression::Snappy.with_level(Some(1)).is_err());
        assert!(Compression::None.with_level(Some(1)).is_err());
        assert_eq!(Compression::Lz4.with_level(None), Ok(Compression::Lz4));
    }
}
