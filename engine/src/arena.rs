//! Shard-local buffers that are reused for the life of a run.
//!
//! Nothing here is shared across threads: a shard owns its buffers, writes
//! records into them, and hands them to its sockets. After the first batches
//! have grown every buffer to its working size, steady state allocates
//! nothing (see the counting-allocator test in `tests/no_alloc.rs`).

use crate::wire::varint;

/// A byte buffer reused without clearing.
///
/// `Vec::resize` zero-fills on every reuse; this keeps the vector at its
/// high-water length and tracks the written length separately, so writers
/// that need an initialised `&mut [u8]` (the LZ4 block compressor, length
/// prefixes filled in afterwards) get one without a memset per batch.
#[derive(Debug, Default)]
pub struct WriteBuf {
    data: Vec<u8>,
    len: usize,
}

impl WriteBuf {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            data: vec![0; capacity],
            len: 0,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Drops everything after the first `len` bytes.
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.len]
    }

    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }

    /// The `n` bytes after the written part, initialised (possibly stale).
    /// Grows the buffer only past its high-water mark.
    #[inline]
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.data.len() < end {
            self.data.resize(end.next_power_of_two(), 0);
        }
        &mut self.data[self.len..end]
    }

    /// Marks `n` bytes of `spare` as written.
    #[inline]
    pub fn advance(&mut self, n: usize) {
        assert!(self.len + n <= self.data.len(), "advance past spare room");
        self.len += n;
    }

    #[inline]
    pub fn put_slice(&mut self, s: &[u8]) {
        self.spare(s.len()).copy_from_slice(s);
        self.len += s.len();
    }

    #[inline]
    pub fn put_u8(&mut self, v: u8) {
        self.put_slice(&[v]);
    }

    #[inline]
    pub fn put_i16(&mut self, v: i16) {
        self.put_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn put_i32(&mut self, v: i32) {
        self.put_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn put_i64(&mut self, v: i64) {
        self.put_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn put_uvarint(&mut self, v: u32) {
        let mut tmp = [0u8; 5];
        let n = varint::encode_uvarint(&mut tmp, v);
        self.put_slice(&tmp[..n]);
    }

    /// Capacity kept for reuse, in bytes.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_keeps_capacity_and_overwrites_stale_bytes() {
        let mut b = WriteBuf::with_capacity(4);
        b.put_slice(b"hello world");
        let cap = b.capacity();
        assert!(cap >= 11);
        b.clear();
        b.put_i32(7);
        assert_eq!(b.as_slice(), &[0, 0, 0, 7]);
        assert_eq!(b.capacity(), cap);
    }

    #[test]
    fn spare_then_advance_commits_bytes() {
        let mut b = WriteBuf::default();
        b.spare(3).copy_from_slice(b"abc");
        assert!(b.is_empty());
        b.advance(2);
        assert_eq!(b.as_slice(), b"ab");
        b.put_uvarint(300);
        assert_eq!(b.as_slice(), &[b'a', b'b', 0xac, 0x02]);
    }
}
