//! `--compression`: Kafka's codecs as a closed choice of names.

use clap::ValueEnum;
use datastorm_engine::batch::{Compression, GZIP_DEFAULT_LEVEL, ZSTD_DEFAULT_LEVEL};

/// A codec by name, before `--compression-level` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec at `level`, or at its default level when `None`.
    pub fn with_level(self, level: Option<i32>) -> Result<Compression, String> {
        let codec = match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip {
                level: GZIP_DEFAULT_LEVEL,
            },
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd {
                level: ZSTD_DEFAULT_LEVEL,
            },
        };
        codec.with_level(level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_name_is_the_engines() {
        for c in Codec::value_variants() {
            let name = c.to_possible_value().expect("named").get_name().to_owned();
            assert_eq!(c.with_level(None).unwrap().name(), name);
        }
    }
}
