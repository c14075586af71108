//! Snappy as Kafka's Java clients write it: xerial snappy-java's stream
//! framing (`SnappyOutputStream`), not the official snappy frame format.
//!
//! ```text
//! header  "\x82SNAPPY\x00", version i32 = 1, compatible version i32 = 1
//! chunks  [compressed length i32][raw snappy block]...   (big-endian)
//! ```
//!
//! Each chunk is at most 32 KB of input, like snappy-java's default block
//! size. Kafka's consumer (snappy-java's `SnappyInputStream`) also reads a
//! bare raw snappy block with no header, as some non-Java producers write;
//! the decoder here does too. The blocks are `snap`'s raw format; its
//! `Encoder` keeps its hash table across batches.

use snap::raw::{decompress_len, max_compress_len, Decoder, Encoder};

use super::codec::DecompressError;
use crate::arena::WriteBuf;

/// Magic, version 1, compatible version 1.
pub const XERIAL_HEADER: [u8; 16] = *b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const MAGIC_LEN: usize = 8;
/// Input bytes per chunk: snappy-java's default block size.
pub const CHUNK_SIZE: usize = 32 * 1024;

/// Reusable snappy compressor (xerial framing). One per shard.
pub struct SnappyEncoder {
    raw: Encoder,
}

impl SnappyEncoder {
    pub fn new() -> Self {
        Self {
            raw: Encoder::new(),
        }
    }

    /// Appends `input` in xerial framing to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut WriteBuf) {
        out.put_slice(&XERIAL_HEADER);
        for chunk in input.chunks(CHUNK_SIZE) {
            let room = out.spare(4 + max_compress_len(chunk.len()));
            let n = self
                .raw
                .compress(chunk, &mut room[4..])
                .expect("output sized by max_compress_len");
            room[..4].copy_from_slice(&(n as u32).to_be_bytes());
            out.advance(4 + n);
        }
    }
}

/// Reusable snappy decompressor (xerial framing, or one raw block).
pub struct SnappyDecoder {
    raw: Decoder,
}

impl Default for SnappyEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for SnappyDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SnappyDecoder {
    pub fn new() -> Self {
        Self {
            raw: Decoder::new(),
        }
    }

    /// Appends the contents of `input` to `out`; fails past `limit` bytes of
    /// output.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut WriteBuf,
        limit: usize,
    ) -> Result<(), DecompressError> {
        let err = DecompressError;
        if input.is_empty() {
            return Err(err("snappy: no data"));
        }
        let start = out.len();
        if !input.starts_with(&XERIAL_HEADER[..MAGIC_LEN]) {
            return self.block(input, out, limit);
        }
        let mut chunks = input
            .get(XERIAL_HEADER.len()..)
            .ok_or(err("snappy: truncated xerial header"))?;
        while !chunks.is_empty() {
            let len = chunks
                .get(..4)
                .ok_or(err("snappy: truncated chunk length"))?;
            let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
            let block = chunks
                .get(4..4 + len)
                .ok_or(err("snappy: chunk past the end of the data"))?;
            self.block(block, out, limit.saturating_sub(out.len() - start))?;
            chunks = &chunks[4 + len..];
        }
        Ok(())
    }

    fn block(
        &mut self,
        block: &[u8],
        out: &mut WriteBuf,
        limit: usize,
    ) -> Result<(), DecompressError> {
        let err = DecompressError;
        let n = decompress_len(block).map_err(|_| err("snappy: invalid block header"))?;
        if n > limit {
            return Err(err("snappy: decompressed records past the size limit"));
        }
        let wrote = self
            .raw
            .decompress(block, out.spare(n))
            .map_err(|_| err("snappy: invalid block"))?;
        out.advance(wrote);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(input: &[u8]) -> Vec<u8> {
        let mut out = WriteBuf::default();
        SnappyEncoder::new().compress(input, &mut out);
        out.as_slice().to_vec()
    }

    fn decompress(input: &[u8]) -> Result<Vec<u8>, DecompressError> {
        let mut out = WriteBuf::default();
        SnappyDecoder::new().decompress(input, &mut out, 1 << 30)?;
        Ok(out.as_slice().to_vec())
    }

    #[test]
    fn xerial_frames_round_trip_chunk_by_chunk() {
        let text: Vec<u8> = (0..100_000u32)
            .map(|i| b"snappy "[(i % 7) as usize])
            .collect();
        for input in [&b""[..], b"x", &text[..], &text[..CHUNK_SIZE]] {
            let framed = compress(input);
            assert_eq!(&framed[..16], &XERIAL_HEADER);
            // Each chunk is an independent raw snappy block of <= 32 KB.
            let mut chunks = &framed[16..];
            let mut back = Vec::new();
            while !chunks.is_empty() {
                let len = u32::from_be_bytes(chunks[..4].try_into().unwrap()) as usize;
                let block = snap::raw::Decoder::new()
                    .decompress_vec(&chunks[4..4 + len])
                    .unwrap();
                assert!(block.len() <= CHUNK_SIZE);
                back.extend(block);
                chunks = &chunks[4 + len..];
            }
            assert_eq!(back, input);
            assert_eq!(decompress(&framed).unwrap(), input);
        }
    }

    #[test]
    fn a_raw_block_without_framing_is_read_too() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"raw snappy, as librdkafka once wrote it")
            .unwrap();
        assert_eq!(
            decompress(&raw).unwrap(),
            b"raw snappy, as librdkafka once wrote it"
        );
    }

    #[test]
    fn damage_is_reported() {
        let framed = compress(&[7u8; 70_000]);
        assert!(decompress(&framed[..framed.len() - 1]).is_err());
        assert!(decompress(&framed[..10]).is_err());
        assert!(decompress(&[]).is_err());
        let mut out = WriteBuf::default();
        assert!(SnappyDecoder::new()
            .decompress(&framed, &mut out, 1000)
            .is_err());
    }
}
