//! One compressor per shard for whichever codec the run uses, and one
//! decompressor per sink executor for whichever codec arrives.
//!
//! Each codec's state (LZ4 hash table, DEFLATE state, snappy table, zstd
//! context) is made the first time the codec is used and then reused for
//! every batch, so sealing allocates nothing in steady state (the zstd C
//! library keeps its workspace in memory it got once from `malloc`).

use super::gzip::{GzipDecoder, GzipEncoder};
use super::lz4::{Lz4FrameDecoder, Lz4FrameEncoder};
use super::snappy::{SnappyDecoder, SnappyEncoder};
use super::zstd::{ZstdDecoder, ZstdEncoder};
use super::Compression;
use crate::arena::WriteBuf;

/// Why compressed records could not be read back: the codec and what was
/// wrong, e.g. "gzip: CRC-32 mismatch".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecompressError(pub &'static str);

/// The compressor state of one shard.
#[derive(Default)]
pub struct Compressor {
    lz4: Option<Lz4FrameEncoder>,
    gzip: Option<GzipEncoder>,
    snappy: Option<SnappyEncoder>,
    zstd: Option<ZstdEncoder>,
}

impl Compressor {
    /// No codec state yet: each codec's is made on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A compressor with `compression`'s state made up front, so that even
    /// the first batch allocates nothing for it.
    pub fn for_codec(compression: Compression) -> Self {
        let mut c = Self::new();
        let mut scratch = WriteBuf::default();
        c.compress(compression, &[], &mut scratch);
        c
    }

    /// Appends `records` compressed with `compression` to `out` (or as they
    /// are, for `Compression::None`) and returns the number of bytes written.
    pub fn compress(
        &mut self,
        compression: Compression,
        records: &[u8],
        out: &mut WriteBuf,
    ) -> usize {
        let start = out.len();
        match compression {
            Compression::None => out.put_slice(records),
            Compression::Lz4 => {
                let lz4 = self.lz4.get_or_insert_with(Lz4FrameEncoder::new);
                let room = out.spare(Lz4FrameEncoder::max_frame_len(records.len()));
                let n = lz4.compress_frame(records, room);
                out.advance(n);
            }
            Compression::Gzip { level } => {
                let gzip = match &mut self.gzip {
                    Some(g) if g.level() == level => g,
                    slot => slot.insert(GzipEncoder::new(level)),
                };
                gzip.compress(records, out);
            }
            Compression::Snappy => self
                .snappy
                .get_or_insert_with(SnappyEncoder::new)
                .compress(records, out),
            Compression::Zstd { level } => {
                let zstd = match &mut self.zstd {
                    Some(z) if z.level() == level => z,
                    slot => slot.insert(ZstdEncoder::new(level)),
                };
                zstd.compress(records, out);
            }
        }
        out.len() - start
    }
}

/// The decompressor state of one reader (a sink executor, a test).
#[derive(Default)]
pub struct Decompressor {
    gzip: Option<GzipDecoder>,
    snappy: SnappyDecoder,
    lz4: Lz4FrameDecoder,
    zstd: Option<ZstdDecoder>,
}

/// Largest records section `Decompressor::decompress` produces from one
/// batch: DataStorm's largest `--batch-size` twice over, far above a
/// broker's `message.max.bytes`. A batch that inflates past it is refused.
pub const MAX_RECORDS_BYTES: usize = 128 << 20;

impl Decompressor {
    pub fn new() -> Self {
        Self::default()
    }

    /// The records section of a batch whose attributes name `codec` (bits
    /// 0-2): `data` itself when uncompressed, otherwise `data` decompressed
    /// into `scratch` (cleared first).
    pub fn decompress<'a>(
        &mut self,
        codec: i16,
        data: &'a [u8],
        scratch: &'a mut WriteBuf,
    ) -> Result<&'a [u8], DecompressError> {
        scratch.clear();
        let limit = MAX_RECORDS_BYTES;
        match codec {
            0 => return Ok(data),
            1 => self
                .gzip
                .get_or_insert_with(GzipDecoder::new)
                .decompress(data, scratch, limit)?,
            2 => self.snappy.decompress(data, scratch, limit)?,
            3 => self.lz4.decompress(data, scratch, limit)?,
            4 => self
                .zstd
                .get_or_insert_with(ZstdDecoder::new)
                .decompress(data, scratch, limit)?,
            _ => return Err(DecompressError("unknown compression codec id")),
        }
        Ok(scratch.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codecs() -> Vec<Compression> {
        vec![
            Compression::None,
            Compression::Gzip { level: 1 },
            Compression::Gzip { level: 9 },
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd { level: -1 },
            Compression::Zstd { level: 3 },
            Compression::Zstd { level: 19 },
        ]
    }

    #[test]
    fn every_codec_round_trips_through_the_decompressor() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"sku\":\"A-{}\"}}", i % 97).into_bytes())
            .take(400_000)
            .collect();
        let mut c = Compressor::new();
        let mut d = Decompressor::new();
        let mut out = WriteBuf::default();
        let mut scratch = WriteBuf::default();
        for codec in codecs() {
            for input in [&b"one"[..], &text[..]] {
                out.clear();
                let n = c.compress(codec, input, &mut out);
                assert_eq!(n, out.len());
                let back = d
                    .decompress(codec.attribute_bits(), out.as_slice(), &mut scratch)
                    .unwrap();
                assert_eq!(back, input, "{codec:?}");
            }
            if codec != Compression::None {
                assert!(out.len() * 3 < text.len(), "{codec:?} compresses text");
            }
        }
    }

    #[test]
    fn a_level_change_makes_a_new_context() {
        let mut c = Compressor::for_codec(Compression::Zstd { level: 1 });
        let text = vec![b'z'; 100_000];
        let mut fast = WriteBuf::default();
        c.compress(Compression::Zstd { level: 1 }, &text, &mut fast);
        let mut slow = WriteBuf::default();
        c.compress(Compression::Zstd { level: 19 }, &text, &mut slow);
        assert_eq!(c.zstd.as_ref().unwrap().level(), 19);
        assert_eq!(
            zstd::bulk::decompress(slow.as_slice(), 100_000).unwrap(),
            text
        );
    }

    #[test]
    fn unknown_codec_ids_are_refused() {
        let mut scratch = WriteBuf::default();
        assert_eq!(
            Decompressor::new().decompress(5, b"abc", &mut scratch),
            Err(DecompressError("unknown compression codec id"))
        );
    }
}
