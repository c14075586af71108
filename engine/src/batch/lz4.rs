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
//!
//! `Lz4FrameDecoder` reads any frame Kafka's consumer reads (independent
//! blocks, optional content size, block and content checksums), for the
//! sink's validation; it decompresses each block straight into a reused
//! buffer, where lz4_flex's `FrameDecoder` would allocate per frame.

use lz4_flex::block::{
    compress_into_with_table, decompress_into, get_maximum_output_size, CompressTable,
};
use twox_hash::XxHash32;

use super::codec::DecompressError;
use crate::arena::WriteBuf;

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

/// Reads LZ4 frames. Stateless: blocks decompress into the caller's buffer.
#[derive(Debug, Default)]
pub struct Lz4FrameDecoder;

// FLG bits.
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_INDEPENDENT: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_RESERVED: u8 = 0b0000_0010;
const FLG_DICT_ID: u8 = 0b0000_0001;
/// Skippable frames: magic 0x184D2A50 to 0x184D2A5F.
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE: u32 = 0x184D_2A50;

impl Lz4FrameDecoder {
    pub fn new() -> Self {
        Self
    }

    /// Appends the contents of the LZ4 frames in `input` to `out`, checking
    /// header checksums and any block or content checksums; fails past
    /// `limit` bytes of output. Dependent blocks are refused, as Kafka's
    /// consumer refuses them.
    pub fn decompress(
        &mut self,
        mut input: &[u8],
        out: &mut WriteBuf,
        limit: usize,
    ) -> Result<(), DecompressError> {
        if input.is_empty() {
            return Err(DecompressError("lz4: no data"));
        }
        let start = out.len();
        while !input.is_empty() {
            let Some(header) = FrameHeader::read(&mut input)? else {
                continue;
            };
            let frame_start = out.len();
            header.read_blocks(&mut input, out, start, limit)?;
            header.check_content(&mut input, &out.as_slice()[frame_start..])?;
        }
        Ok(())
    }
}

/// An LZ4 frame's header: its flags, its descriptor (FLG, BD and any
/// content size) and its blocks' maximum size.
struct FrameHeader<'a> {
    flg: u8,
    descriptor: &'a [u8],
    block_max: usize,
}

impl<'a> FrameHeader<'a> {
    /// Reads a frame header from `input`; None for a skippable frame, which
    /// it skips.
    fn read(input: &mut &'a [u8]) -> Result<Option<Self>, DecompressError> {
        let err = DecompressError;
        let magic = u32_le(take(input, 4)?);
        if magic & SKIPPABLE_MASK == SKIPPABLE {
            let len = u32_le(take(input, 4)?) as usize;
            take(input, len)?;
            return Ok(None);
        }
        if magic != MAGIC {
            return Err(err("lz4: not an LZ4 frame"));
        }
        let flg = *input.first().ok_or(err("lz4: truncated frame"))?;
        if flg & FLG_VERSION_MASK != FLG_VERSION_01 || flg & FLG_RESERVED != 0 {
            return Err(err("lz4: unknown frame version or flags"));
        }
        if flg & FLG_INDEPENDENT == 0 {
            return Err(err(
                "lz4: dependent blocks (Kafka needs independent blocks)",
            ));
        }
        if flg & FLG_DICT_ID != 0 {
            return Err(err("lz4: frames with a dictionary are not supported"));
        }
        let descriptor_len = 2 + if flg & FLG_CONTENT_SIZE != 0 { 8 } else { 0 };
        let descriptor = take(input, descriptor_len)?;
        let bd = descriptor[1];
        let block_max = match (bd >> 4) & 0x7 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            _ => return Err(err("lz4: invalid block maximum size")),
        };
        if bd & 0b1000_1111 != 0 {
            return Err(err("lz4: reserved BD bits set"));
        }
        let checksum = take(input, 1)?[0];
        if (XxHash32::oneshot(0, descriptor) >> 8) as u8 != checksum {
            return Err(err("lz4: frame header checksum mismatch"));
        }
        Ok(Some(FrameHeader {
            flg,
            descriptor,
            block_max,
        }))
    }

    /// Appends the frame's blocks to `out`, up to its end mark; fails when
    /// `out` grows past `limit` bytes from `start`.
    fn read_blocks(
        &self,
        input: &mut &[u8],
        out: &mut WriteBuf,
        start: usize,
        limit: usize,
    ) -> Result<(), DecompressError> {
        let err = DecompressError;
        loop {
            let size = u32_le(take(input, 4)?);
            if size == 0 {
                return Ok(());
            }
            let len = (size & !UNCOMPRESSED_BIT) as usize;
            if len > self.block_max {
                return Err(err("lz4: block larger than the frame's block size"));
            }
            let data = take(input, len)?;
            if self.flg & FLG_BLOCK_CHECKSUM != 0
                && XxHash32::oneshot(0, data) != u32_le(take(input, 4)?)
            {
                return Err(err("lz4: block checksum mismatch"));
            }
            if size & UNCOMPRESSED_BIT != 0 {
                out.put_slice(data);
            } else {
                let n = decompress_into(data, out.spare(self.block_max))
                    .map_err(|_| err("lz4: invalid block"))?;
                out.advance(n);
            }
            if out.len() - start > limit {
                return Err(err("lz4: decompressed records past the size limit"));
            }
        }
    }

    /// Checks the frame's content size and content checksum, if it has them.
    fn check_content(&self, input: &mut &[u8], content: &[u8]) -> Result<(), DecompressError> {
        let err = DecompressError;
        if self.flg & FLG_CONTENT_SIZE != 0
            && u64::from_le_bytes(self.descriptor[2..10].try_into().unwrap())
                != content.len() as u64
        {
            return Err(err("lz4: content size mismatch"));
        }
        if self.flg & FLG_CONTENT_CHECKSUM != 0
            && XxHash32::oneshot(0, content) != u32_le(take(input, 4)?)
        {
            return Err(err("lz4: content checksum mismatch"));
        }
        Ok(())
    }
}

/// The first `n` bytes of `input`, which moves past them.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecompressError> {
    let (head, tail) = input
        .split_at_checked(n)
        .ok_or(DecompressError("lz4: truncated frame"))?;
    *input = tail;
    Ok(head)
}

fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

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

    fn decode_here(frame: &[u8]) -> Result<Vec<u8>, DecompressError> {
        let mut out = WriteBuf::default();
        Lz4FrameDecoder::new().decompress(frame, &mut out, 1 << 30)?;
        Ok(out.as_slice().to_vec())
    }

    #[test]
    fn the_decoder_reads_our_frames() {
        let mut enc = Lz4FrameEncoder::new();
        let text: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for input in [&b""[..], b"x", &text[..]] {
            let mut out = vec![0u8; Lz4FrameEncoder::max_frame_len(input.len())];
            let n = enc.compress_frame(input, &mut out);
            assert_eq!(decode_here(&out[..n]).unwrap(), input);
        }
    }

    #[test]
    fn the_decoder_reads_checksums_content_sizes_and_bigger_blocks() {
        use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
        let text: Vec<u8> = (0..700_000u32)
            .map(|i| (i % 13) as u8 ^ (i >> 12) as u8)
            .collect();
        let mut info = FrameInfo::new();
        info.block_mode = BlockMode::Independent;
        info.block_size = BlockSize::Max256KB;
        info.block_checksums = true;
        info.content_checksum = true;
        info.content_size = Some(text.len() as u64);
        let mut w = FrameEncoder::with_frame_info(info, Vec::new());
        w.write_all(&text).unwrap();
        let mut frames = w.finish().unwrap();
        // A second, plain frame after it.
        let mut second = vec![0u8; Lz4FrameEncoder::max_frame_len(5)];
        let n = Lz4FrameEncoder::new().compress_frame(b"tail!", &mut second);
        frames.extend_from_slice(&second[..n]);
        let mut expected = text.clone();
        expected.extend_from_slice(b"tail!");
        assert_eq!(decode_here(&frames).unwrap(), expected);

        // Damage in a block is caught by its checksum.
        let mut bad = frames.clone();
        bad[100] ^= 1;
        assert!(decode_here(&bad).is_err());
    }

    #[test]
    fn the_decoder_refuses_what_kafka_refuses() {
        use lz4_flex::frame::{BlockMode, FrameEncoder, FrameInfo};
        let mut info = FrameInfo::new();
        info.block_mode = BlockMode::Linked;
        let mut w = FrameEncoder::with_frame_info(info, Vec::new());
        w.write_all(&[1u8; 200_000]).unwrap();
        let linked = w.finish().unwrap();
        assert_eq!(
            decode_here(&linked),
            Err(DecompressError(
                "lz4: dependent blocks (Kafka needs independent blocks)"
            ))
        );
        let mut out = vec![0u8; Lz4FrameEncoder::max_frame_len(3)];
        let n = Lz4FrameEncoder::new().compress_frame(b"abc", &mut out);
        let mut bad_header = out[..n].to_vec();
        bad_header[6] ^= 1;
        assert!(decode_here(&bad_header).is_err());
        assert!(decode_here(&out[..n - 1]).is_err());
        assert!(decode_here(b"nope").is_err());
    }
}
