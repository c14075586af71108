//! zstd frames, through the reference C library's bindings.
//!
//! One compression context per shard, reused for every batch (zstd keeps its
//! tables and window buffers between frames); each batch is one frame with
//! its content size, no checksum (the batch CRC covers it). Kafka's consumer
//! (zstd-jni's streaming decoder) reads any frame; the decoder here streams
//! too, so frames without a content size (as streaming writers make them)
//! and several frames back to back decode as well.

use zstd::zstd_safe::{self, DCtx, InBuffer, OutBuffer, ResetDirective};

use super::codec::DecompressError;
use crate::arena::WriteBuf;

/// Reusable zstd compressor at one level. One per shard.
pub struct ZstdEncoder {
    cctx: zstd::bulk::Compressor<'static>,
    level: i32,
}

impl ZstdEncoder {
    pub fn new(level: i32) -> Self {
        Self {
            cctx: zstd::bulk::Compressor::new(level).expect("zstd accepts its own levels"),
            level,
        }
    }

    pub fn level(&self) -> i32 {
        self.level
    }

    /// Appends one zstd frame holding `input` to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut WriteBuf) {
        let room = out.spare(zstd_safe::compress_bound(input.len()));
        let n = self
            .cctx
            .compress_to_buffer(input, room)
            .expect("output sized by compress_bound");
        out.advance(n);
    }
}

/// Reusable zstd decompressor.
pub struct ZstdDecoder {
    dctx: DCtx<'static>,
}

impl Default for ZstdDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ZstdDecoder {
    pub fn new() -> Self {
        Self {
            dctx: DCtx::create(),
        }
    }

    /// Appends the contents of the zstd frames in `input` to `out`; fails
    /// past `limit` bytes of output.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut WriteBuf,
        limit: usize,
    ) -> Result<(), DecompressError> {
        let err = DecompressError;
        if input.is_empty() {
            return Err(err("zstd: no data"));
        }
        let _ = self.dctx.reset(ResetDirective::SessionOnly);
        let start = out.len();
        let hint = match zstd_safe::get_frame_content_size(input) {
            Ok(Some(n)) => usize::try_from(n).unwrap_or(usize::MAX),
            Ok(None) => input.len() * 4,
            Err(_) => return Err(err("zstd: not a zstd frame")),
        };
        let mut room = hint.min(limit + 1).max(1024);
        let mut src = InBuffer::around(input);
        loop {
            let spare = out.spare(room);
            let mut dst = OutBuffer::around(spare);
            let before = src.pos();
            let left = self
                .dctx
                .decompress_stream(&mut dst, &mut src)
                .map_err(|_| err("zstd: invalid frame"))?;
            let wrote = dst.pos();
            out.advance(wrote);
            if out.len() - start > limit {
                return Err(err("zstd: decompressed records past the size limit"));
            }
            // 0: a frame ended; input left over is the next frame.
            if left == 0 && src.pos() == input.len() {
                return Ok(());
            }
            if wrote == room {
                room = room.saturating_mul(2);
            } else if wrote == 0 && src.pos() == before {
                return Err(err("zstd: truncated frame"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Vec<u8>> {
        let text: Vec<u8> = (0..300_000u32)
            .map(|i| b"zstandard "[(i % 10) as usize])
            .collect();
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        vec![Vec::new(), b"x".to_vec(), text, noise]
    }

    fn decompress(input: &[u8]) -> Result<Vec<u8>, DecompressError> {
        let mut out = WriteBuf::default();
        ZstdDecoder::new().decompress(input, &mut out, 1 << 30)?;
        Ok(out.as_slice().to_vec())
    }

    #[test]
    fn frames_round_trip_through_the_reference_decoder() {
        for level in [-5, 1, 3, 19] {
            let mut enc = ZstdEncoder::new(level);
            for input in samples() {
                for _ in 0..2 {
                    let mut out = WriteBuf::default();
                    out.put_slice(b"prefix");
                    enc.compress(&input, &mut out);
                    let frame = &out.as_slice()[6..];
                    assert_eq!(zstd::stream::decode_all(frame).unwrap(), input);
                    assert_eq!(decompress(frame).unwrap(), input, "level {level}");
                }
            }
        }
    }

    #[test]
    fn streamed_frames_and_several_frames_decode() {
        // No content size in a streamed frame; two frames back to back.
        let mut both = Vec::new();
        let mut w = zstd::stream::Encoder::new(&mut both, 3).unwrap();
        std::io::Write::write_all(&mut w, &[b'a'; 100_000]).unwrap();
        w.finish().unwrap();
        both.extend(zstd::bulk::compress(b"second", 1).unwrap());
        let mut expected = vec![b'a'; 100_000];
        expected.extend(b"second");
        assert_eq!(decompress(&both).unwrap(), expected);
    }

    #[test]
    fn damage_is_reported() {
        let frame = zstd::bulk::compress(&samples()[2], 3).unwrap();
        assert!(decompress(&frame[..frame.len() - 3]).is_err());
        assert!(decompress(b"not zstd").is_err());
        assert!(decompress(&[]).is_err());
        let mut out = WriteBuf::default();
        assert!(ZstdDecoder::new()
            .decompress(&frame, &mut out, 1000)
            .is_err());
    }
}
