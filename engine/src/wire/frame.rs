//! Length-prefixed frames read from a socket through one reused buffer.

use futures_lite::{AsyncRead, AsyncReadExt};
use std::io;

/// Largest response DataStorm accepts. Produce, Metadata and ApiVersions
/// answers are small; anything near this is a corrupt or hostile length.
pub const DEFAULT_FRAME_LIMIT: usize = 64 * 1024 * 1024;

/// Reads Kafka frames (big-endian i32 size, then that many bytes).
///
/// Several responses usually arrive in one read; they are handed out one by
/// one from the same buffer, which is compacted rather than reallocated.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    limit: usize,
}

impl FrameReader {
    pub fn new(capacity: usize, limit: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
            limit,
        }
    }

    /// The next frame's body (without the size prefix), or `None` when the
    /// peer closed the connection between frames.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<Option<&[u8]>> {
        loop {
            let avail = self.end - self.start;
            if avail >= 4 {
                let size = self.prefix();
                if size < 0 || size as usize > self.limit {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("frame size {size} outside 0..={}", self.limit),
                    ));
                }
                let need = 4 + size as usize;
                if avail >= need {
                    let body = self.start + 4..self.start + need;
                    self.start += need;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                    }
                    return Ok(Some(&self.buf[body]));
                }
            }
            if self.end == self.buf.len() {
                self.compact();
                if self.end == self.buf.len() {
                    // Full of one incomplete frame (so `avail >= 4`). Grow
                    // with the bytes that actually arrived, not with what the
                    // size prefix claims: a 4-byte header announcing a
                    // limit-sized frame costs nothing until its body comes.
                    let need = 4 + self.prefix() as usize;
                    let grown = (self.buf.len() * 2).min(need.next_power_of_two());
                    self.buf.resize(grown, 0);
                }
            }
            let n = r.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                if self.end == self.start {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a response",
                ));
            }
            self.end += n;
        }
    }

    /// The size prefix at `start` (at least 4 bytes must be buffered).
    fn prefix(&self) -> i32 {
        let size_bytes: [u8; 4] = self.buf[self.start..self.start + 4]
            .try_into()
            .expect("4 bytes");
        i32::from_be_bytes(size_bytes)
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn reads_consecutive_frames_through_a_small_buffer() {
        let big = vec![7u8; 1000];
        let bytes = framed(&[b"one", &big, b"", b"three"]);
        let mut r = futures_lite::io::Cursor::new(bytes);
        let mut fr = FrameReader::new(16, 1 << 20);
        block_on(async {
            assert_eq!(fr.next(&mut r).await.unwrap().unwrap(), b"one");
            assert_eq!(fr.next(&mut r).await.unwrap().unwrap(), &big[..]);
            assert_eq!(fr.next(&mut r).await.unwrap().unwrap(), b"");
            assert_eq!(fr.next(&mut r).await.unwrap().unwrap(), b"three");
            assert!(fr.next(&mut r).await.unwrap().is_none());
        });
    }

    #[test]
    fn oversized_and_negative_sizes_are_rejected_without_allocating() {
        for size in [i32::MAX, -5] {
            let mut r = futures_lite::io::Cursor::new(size.to_be_bytes().to_vec());
            let mut fr = FrameReader::new(64, 1 << 20);
            let err = block_on(fr.next(&mut r)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(fr.buf.len() <= 64);
        }
    }

    #[test]
    fn a_claimed_size_is_not_allocated_before_its_bytes_arrive() {
        let limit = 1 << 20;
        // A limit-sized frame announced, 100 bytes of it sent.
        let mut bytes = (limit as i32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1; 100]);
        let mut r = futures_lite::io::Cursor::new(bytes);
        let mut fr = FrameReader::new(64, limit);
        let err = block_on(fr.next(&mut r)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(fr.buf.len() <= 256, "grew to {}", fr.buf.len());
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        let mut bytes = framed(&[b"complete"]);
        bytes.truncate(6);
        let mut r = futures_lite::io::Cursor::new(bytes);
        let err = block_on(FrameReader::new(64, 1024).next(&mut r)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
