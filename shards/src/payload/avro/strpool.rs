//! Strings generated ahead of time (regex and fake values, string
//! `options`, cardinality sets of strings), kept ready to copy.
//!
//! Each value is stored Avro-encoded, length prefix included, back to back
//! in one buffer padded at the end, so the Avro writer copies a short value
//! as one fixed-size [`WINDOW`] (two vector moves, then the excess is cut
//! off) instead of encoding a length and calling `memcpy`; the other
//! writers take the text after the prefix.

use super::draw::Wy;
use super::write::{put_small, Sink};

/// Bytes the Avro writer copies at once for a short pooled value.
pub const WINDOW: usize = 32;

#[derive(Clone, Debug)]
pub struct StrPool {
    /// Every value's Avro encoding, then `WINDOW` bytes of padding.
    bytes: Box<[u8]>,
    /// Value `i` is `bytes[ends[i - 1]..ends[i]]` (from 0 for the first).
    ends: Box<[u32]>,
    /// The longest text (without its length prefix).
    max_len: usize,
}

impl StrPool {
    /// The pool of `values`, each with `prefix` before it.
    pub fn new<V: AsRef<[u8]>>(prefix: &[u8], values: impl IntoIterator<Item = V>) -> StrPool {
        let (mut bytes, mut ends, mut max_len) = (Vec::new(), Vec::new(), 0);
        for v in values {
            let v = v.as_ref();
            let len = prefix.len() + v.len();
            put_small(&mut bytes, len as i64);
            bytes.extend_from_slice(prefix);
            bytes.extend_from_slice(v);
            max_len = max_len.max(len);
            ends.push(u32::try_from(bytes.len()).expect("a string pool under 4 GiB"));
        }
        bytes.resize(bytes.len() + WINDOW, 0);
        StrPool {
            bytes: bytes.into(),
            ends: ends.into(),
            max_len,
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The longest value's text.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// A uniformly drawn value's index.
    #[inline]
    pub fn pick(&self, rng: &mut Wy) -> usize {
        rng.below(self.ends.len() as u64) as usize
    }

    #[inline]
    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize
        }
    }

    /// Value `i`'s text.
    #[inline]
    pub fn text(&self, i: usize) -> &[u8] {
        let avro = &self.bytes[self.start(i)..self.ends[i] as usize];
        // Skip the length prefix: its bytes with the top bit set, and one.
        let prefix = avro.iter().take_while(|b| **b & 0x80 != 0).count() + 1;
        &avro[prefix..]
    }

    /// Writes value `i` as a string.
    #[inline]
    pub fn write<S: Sink>(&self, i: usize, out: &mut S) {
        let (start, end) = (self.start(i), self.ends[i] as usize);
        let window: &[u8; WINDOW] = self.bytes[start..start + WINDOW]
            .try_into()
            .expect("the pool is padded");
        out.encoded_string(&self.bytes[start..end], window, || self.text(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::avro::write::AvroSink;

    #[test]
    fn pooled_strings_are_written_as_avro_strings() {
        let long = "x".repeat(200);
        let values = ["", "a", "hello", long.as_str()];
        let pool = StrPool::new(b"p-", values);
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.max_len(), 202);
        for (i, v) in values.iter().enumerate() {
            let want = format!("p-{v}");
            assert_eq!(pool.text(i), want.as_bytes());
            let mut out = vec![9];
            pool.write(i, &mut AvroSink(&mut out));
            let mut expect = vec![9];
            AvroSink(&mut expect).string(want.as_bytes());
            assert_eq!(out, expect);
        }
    }
}
