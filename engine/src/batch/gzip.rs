//! gzip as Kafka reads it: one gzip member (RFC 1952) around raw DEFLATE,
//! which is what the Java producer's `GZIPOutputStream` writes and its
//! consumer's `GZIPInputStream` reads.
//!
//! The 10-byte header and the 8-byte trailer (CRC-32, length) are written
//! here around flate2's raw `Compress`, because flate2's `GzEncoder` owns its
//! writer and starts a fresh DEFLATE state (about 300 KB at level 6) per
//! stream; this keeps one state per shard, `reset` between batches, and
//! compresses straight into the caller's buffer.

use flate2::{Compress, Crc, Decompress, FlushCompress, FlushDecompress, Status};

use super::codec::DecompressError;
use crate::arena::WriteBuf;

const ID: [u8; 2] = [0x1f, 0x8b];
const DEFLATE: u8 = 8;
/// Unix, as Java writes 0 (FAT) and zlib 3: readers ignore it.
const OS_UNIX: u8 = 3;
const HEADER_LEN: usize = 10;
const TRAILER_LEN: usize = 8;

// Header flags (FLG).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// Reusable gzip compressor at one level. One per shard.
pub struct GzipEncoder {
    deflate: Compress,
    level: u32,
}

impl GzipEncoder {
    /// `level` 1 (fastest) to 9 (smallest).
    pub fn new(level: u32) -> Self {
        Self {
            deflate: Compress::new(flate2::Compression::new(level), false),
            level,
        }
    }

    pub fn level(&self) -> u32 {
        self.level
    }

    /// Appends one gzip member holding `input` to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut WriteBuf) {
        let xfl = match self.level {
            1 => 4, // fastest
            9 => 2, // slowest, smallest
            _ => 0,
        };
        out.put_slice(&[ID[0], ID[1], DEFLATE, 0, 0, 0, 0, 0, xfl, OS_UNIX]);
        self.deflate.reset();
        // DEFLATE's worst case (stored blocks) is 5 bytes per 16 KB block plus
        // a few; if a backend needs more, the loop asks for more room.
        let mut room = input.len() + input.len() / 1024 + 64;
        let mut consumed = 0;
        loop {
            let (in0, out0) = (self.deflate.total_in(), self.deflate.total_out());
            let status = self
                .deflate
                .compress(&input[consumed..], out.spare(room), FlushCompress::Finish)
                .expect("DEFLATE accepts any input");
            consumed += (self.deflate.total_in() - in0) as usize;
            out.advance((self.deflate.total_out() - out0) as usize);
            if status == Status::StreamEnd {
                break;
            }
            room = room.max(4096) * 2;
        }
        let mut crc = Crc::new();
        crc.update(input);
        out.put_slice(&crc.sum().to_le_bytes());
        out.put_slice(&(input.len() as u32).to_le_bytes());
    }
}

/// Reusable gzip decompressor.
pub struct GzipDecoder {
    inflate: Decompress,
}

impl Default for GzipDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl GzipDecoder {
    pub fn new() -> Self {
        Self {
            inflate: Decompress::new(false),
        }
    }

    /// Appends the contents of the gzip members in `input` (one, or several
    /// concatenated, as `GZIPInputStream` reads them) to `out`, checking each
    /// member's CRC-32 and length. Fails past `limit` bytes of output.
    pub fn decompress(
        &mut self,
        mut input: &[u8],
        out: &mut WriteBuf,
        limit: usize,
    ) -> Result<(), DecompressError> {
        let err = DecompressError;
        if input.is_empty() {
            return Err(err("gzip: no data"));
        }
        let start = out.len();
        while !input.is_empty() {
            let body = &input[header_len(input)?..];
            // The last member's ISIZE is a good first guess of the output size.
            let hint = if input.len() >= TRAILER_LEN {
                u32::from_le_bytes(input[input.len() - 4..].try_into().unwrap()) as usize
            } else {
                0
            };
            let member_start = out.len();
            let mut room = hint
                .min(limit.saturating_sub(member_start - start) + 1)
                .max(1024);
            let mut consumed = 0;
            self.inflate.reset(false);
            loop {
                let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
                let status = self
                    .inflate
                    .decompress(&body[consumed..], out.spare(room), FlushDecompress::None)
                    .map_err(|_| err("gzip: invalid DEFLATE data"))?;
                let read = (self.inflate.total_in() - in0) as usize;
                let wrote = (self.inflate.total_out() - out0) as usize;
                consumed += read;
                out.advance(wrote);
                if out.len() - start > limit {
                    return Err(err("gzip: decompressed records past the size limit"));
                }
                if status == Status::StreamEnd {
                    break;
                }
                if wrote == room {
                    room = room.saturating_mul(2);
                } else if read == 0 && wrote == 0 {
                    return Err(err("gzip: truncated DEFLATE data"));
                }
            }
            let trailer = body
                .get(consumed..consumed + TRAILER_LEN)
                .ok_or(err("gzip: truncated trailer"))?;
            let member = &out.as_slice()[member_start..];
            let mut crc = Crc::new();
            crc.update(member);
            if trailer[0..4] != crc.sum().to_le_bytes() {
                return Err(err("gzip: CRC-32 mismatch"));
            }
            if trailer[4..8] != (member.len() as u32).to_le_bytes() {
                return Err(err("gzip: length mismatch"));
            }
            input = &body[consumed + TRAILER_LEN..];
        }
        Ok(())
    }
}

/// Length of the member header at the front of `input` (RFC 1952 2.3.1).
fn header_len(input: &[u8]) -> Result<usize, DecompressError> {
    let err = DecompressError;
    if input.len() < HEADER_LEN || input[0..2] != ID || input[2] != DEFLATE {
        return Err(err("gzip: not a gzip member"));
    }
    let flags = input[3];
    if flags & FRESERVED != 0 {
        return Err(err("gzip: reserved header flags set"));
    }
    let mut at = HEADER_LEN;
    if flags & FEXTRA != 0 {
        let len = input.get(at..at + 2).ok_or(err("gzip: truncated header"))?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let zero = input
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
                .ok_or(err("gzip: truncated header"))?;
            at += zero + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > input.len() {
        return Err(err("gzip: truncated header"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn compress(level: u32, input: &[u8]) -> Vec<u8> {
        let mut out = WriteBuf::default();
        GzipEncoder::new(level).compress(input, &mut out);
        out.as_slice().to_vec()
    }

    fn decompress(input: &[u8]) -> Result<Vec<u8>, DecompressError> {
        let mut out = WriteBuf::default();
        GzipDecoder::new().decompress(input, &mut out, 1 << 30)?;
        Ok(out.as_slice().to_vec())
    }

    fn samples() -> Vec<Vec<u8>> {
        let text: Vec<u8> = (0..300_000u32)
            .map(|i| b"kafka-gzip "[(i % 11) as usize])
            .collect();
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        vec![Vec::new(), b"x".to_vec(), text, noise]
    }

    #[test]
    fn members_round_trip_through_flate2s_gzip_reader() {
        for level in [1, 6, 9] {
            let mut reused = GzipEncoder::new(level);
            let mut out = WriteBuf::default();
            for input in samples() {
                let member = compress(level, &input);
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&member[..])
                    .read_to_end(&mut back)
                    .expect("valid gzip");
                assert_eq!(back, input, "level {level}");
                assert_eq!(decompress(&member).unwrap(), input);
                // A reused encoder writes the very same bytes as a fresh one.
                out.clear();
                reused.compress(&input, &mut out);
                assert_eq!(out.as_slice(), &member[..]);
            }
        }
    }

    #[test]
    fn reads_what_other_writers_write() {
        // flate2's own GzBuilder with a file name, a comment, extra field and
        // a header CRC, and two members back to back.
        let mut first = flate2::GzBuilder::new()
            .filename("records")
            .comment("from a test")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::best());
        first.write_all(b"first member, ").unwrap();
        let mut both = first.finish().unwrap();
        both.extend(compress(1, b"second member"));
        assert_eq!(decompress(&both).unwrap(), b"first member, second member");
    }

    #[test]
    fn damage_is_reported() {
        let member = compress(6, &samples()[2]);
        let mut bad_crc = member.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 1;
        assert_eq!(
            decompress(&bad_crc),
            Err(DecompressError("gzip: CRC-32 mismatch"))
        );
        assert!(decompress(&member[..member.len() - 20]).is_err());
        assert!(decompress(&member[..5]).is_err());
        assert!(decompress(b"not gzip at all").is_err());
        let mut out = WriteBuf::default();
        assert!(GzipDecoder::new()
            .decompress(&member, &mut out, 1000)
            .is_err());
    }
}
