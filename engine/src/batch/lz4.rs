//! The LZ4 frame format as Kafka reads it, written around `lz4_flex`'s block
//! compressor.
//!
//! Hand-written rather than `lz4_flex::frame::FrameEncoder` because the frame
//! encoder owns its writer and allocates its block buffers and hash table per
//! frame; a producer seals thousands of batches per second, so the hash table
//! lives here and is reused, and blocks are compressed straight into the
//! caller's buffer.
//!
//! Frame layout (LZ4 frame spec v1.6.1): magic, FLG, BD, header checksum, then
//! blocks (little-endian u32 size, high bit = stored uncompressed), then a zero
//! end mark. Kafka requires independent blocks and reads no content size; we
//! write neither block nor content checksums.

use lz4_flex::block::{compress_into_with_table, get_maximum_output_size, CompressTable};

const MAGIC: u32 = 0x184D_2204;
/// Version 01, independent blocks, no checksums, no content size.
const FLG: u8 = 0b0110_0000;
/// Block maximum size 64 KB (code 4).
const BD: u8 = 0b0100_0000;
/// Uncompressed bytes per block: the 64 KB the BD byte promises.
pub const BLOCK_SIZE: usize = 64 * 1024;
const UNCOMPRESSED_BIT: u32 = 0x8000_0000;

/// The frame header's checksum byte: `(xxh32(FLG, BD) >> 8) & 0xff`, fixed
/// for our FLG and BD (the frame decoder in the tests checks it).
const HEADER_CHECKSUM: u8 = 0x82;

/// Reusable LZ4 frame compressor. One per shard.
pub struct Lz4FrameEncoder {
    table: CompressTable,
}

impl Default for Lz4FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Lz4FrameEncoder {
    pub fn new() -> Self {
        Self {
            table: CompressTable::large(),
        }
    }

    /// Largest number of bytes `compress_frame` can append for `input_len`.
    pub fn max_frame_len(input_len: usize) -> usize {
        let blocks = input_len.div_ceil(BLOCK_SIZE).max(1);
        7 + blocks * (4 + get_maximum_output_size(BLOCK_SIZE)) + 4
    }

    /// Writes one complete LZ4 frame holding `input` to the front of `out`
    /// and returns its length.
    ///
    /// `out` must be at least `max_frame_len(input.len())` long; callers pass
    /// the spare room of a reused buffer, so nothing is allocated or cleared.
    pub fn compress_frame(&mut self, input: &[u8], out: &mut [u8]) -> usize {
        assert!(
            out.len() >= Self::max_frame_len(input.len()),
            "LZ4 output buffer too small"
        );
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4] = FLG;
        out[5] = BD;
        out[6] = HEADER_CHECKSUM;
        let mut pos = 7;
        for block in input.chunks(BLOCK_SIZE) {
            let body = &mut out[pos + 4..];
            let n = compress_into_with_table(block, body, &mut self.table)
                .expect("output sized by get_maximum_output_size");
            let size = if n < block.len() {
                n as u32
            } else {
                body[..block.len()].copy_from_slice(block);
                block.len() as u32 | UNCOMPRESSED_BIT
            };
            out[pos..pos + 4].copy_from_slice(&size.to_le_bytes());
            pos += 4 + (size & !UNCOMPRESSED_BIT) as usize;
        }
        out[pos..pos + 4].copy_from_slice(&0u32.to_le_bytes());
        pos + 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(frame)
            .read_to_end(&mut out)
            .expect("valid frame");
        out
    }

    #[test]
    fn frames_round_trip_through_an_independent_decoder() {
        let mut enc = Lz4FrameEncoder::new();
        let text: Vec<u8> = (0..300_000u32)
            .map(|i| b"kafka-"[(i % 6) as usize])
            .collect();
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for input in [&b""[..], b"x", &text[..], &noise[..], &text[..BLOCK_SIZE]] {
            let mut out = vec![9u8; 3 + Lz4FrameEncoder::max_frame_len(input.len())];
            let n = enc.compress_frame(input, &mut out[3..]);
            assert_eq!(&out[..3], &[9, 9, 9], "prefix untouched");
            assert_eq!(decode(&out[3..3 + n]), input);
        }
    }

    #[test]
    fn header_checksum_matches_xxh32() {
        // lz4_flex's decoder verifies the header checksum byte.
        let mut out = vec![0; Lz4FrameEncoder::max_frame_len(3)];
        let n = Lz4FrameEncoder::new().compress_frame(b"abc", &mut out);
        assert_eq!(&out[4..7], &[FLG, BD, HEADER_CHECKSUM]);
        assert_eq!(decode(&out[..n]), b"abc");
    }

    #[test]
    fn incompressible_blocks_are_stored_raw() {
        let noise: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        let mut out = vec![0; Lz4FrameEncoder::max_frame_len(noise.len())];
        let n = Lz4FrameEncoder::new().compress_frame(&noise, &mut out);
        out.truncate(n);
        let size = u32::from_le_bytes(out[7..11].try_into().unwrap());
        if size & UNCOMPRESSED_BIT != 0 {
            assert_eq!((size & !UNCOMPRESSED_BIT) as usize, noise.len());
        }
        assert_eq!(decode(&out), noise);
    }
}
