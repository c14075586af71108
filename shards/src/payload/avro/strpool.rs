//! Strings generated ahead of time (regex and fake values, string
//! `options`, cardinality sets of strings), kept ready to copy.
//!
//! Each value is stored Avro-encoded, length prefix included, in one buffer
//! padded at the end, so the Avro writer copies a short value as one
//! fixed-size [`WINDOW`] (two vector moves, then the excess is cut off)
//! instead of encoding a length and calling `memcpy`; the other writers take
//! the text after the prefix. Short values sit in fixed-size slots, so a
//! pick reads one cache line (a table of where each value ends would be a
//! second, dependent, read: pools are too big for the L1 cache, and these
//! reads are a large part of a record's cost).

use super::draw::Wy;
use super::write::{put_small, Sink};

/// Bytes the Avro writer copies at once for a short pooled value.
pub const WINDOW: usize = 32;

/// Starts fetching the cache line at `p` (a hint; nothing where the target
/// has no such instruction).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of x86_64, and a prefetch is a hint: it never
        // faults or changes memory, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[derive(Clone, Debug)]
pub struct StrPool {
    /// Every value's Avro encoding, then `WINDOW` bytes of padding.
    bytes: Box<[u8]>,
    layout: Layout,
    /// The longest text (without its length prefix).
    max_len: usize,
    /// This pool's entry in [`super::plan::Cx::lag`], set by
    /// [`StrPool::set_slot`] (`u32::MAX`: none).
    slot: u32,
}

#[derive(Clone, Debug)]
enum Layout {
    /// Value `i` starts at `i << shift`; every text is under 64 bytes, so
    /// its length prefix is one byte (twice the length).
    Slots { shift: u32, count: usize },
    /// Value `i` is `bytes[ends[i - 1]..ends[i]]` (from 0 for the first).
    Packed { ends: Box<[u32]> },
}

impl StrPool {
    /// The pool of `values`, each with `prefix` before it.
    pub fn new<V: AsRef<[u8]>>(prefix: &[u8], values: impl IntoIterator<Item = V>) -> StrPool {
        let texts: Vec<Vec<u8>> = values
            .into_iter()
            .map(|v| [prefix, v.as_ref()].concat())
            .collect();
        let max_len = texts.iter().map(Vec::len).max().unwrap_or(0);
        let mut bytes = Vec::new();
        let layout = if max_len < WINDOW {
            // Prefix byte and text; slots of 2, 4, ... 32 bytes.
            let slot = (max_len + 1).next_power_of_two();
            for t in &texts {
                let at = bytes.len();
                put_small(&mut bytes, t.len() as i64);
                bytes.extend_from_slice(t);
                bytes.resize(at + slot, 0);
            }
            Layout::Slots {
                shift: slot.trailing_zeros(),
                count: texts.len(),
            }
        } else {
            let mut ends = Vec::with_capacity(texts.len());
            for t in &texts {
                put_small(&mut bytes, t.len() as i64);
                bytes.extend_from_slice(t);
                ends.push(u32::try_from(bytes.len()).expect("a string pool under 4 GiB"));
            }
            Layout::Packed { ends: ends.into() }
        };
        bytes.resize(bytes.len() + WINDOW, 0);
        StrPool {
            bytes: bytes.into(),
            layout,
            max_len,
            slot: u32::MAX,
        }
    }

    /// The longest value's text.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// This pool's entry in [`super::plan::Cx::lag`].
    #[inline(always)]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Bytes the pool takes.
    pub fn footprint(&self) -> usize {
        self.bytes.len()
            + match &self.layout {
                Layout::Slots { .. } => 0,
                Layout::Packed { ends } => 4 * ends.len(),
            }
    }

    pub fn set_slot(&mut self, slot: u32) {
        self.slot = slot;
    }

    /// Starts fetching value `i` into the cache.
    #[inline(always)]
    pub fn prefetch(&self, i: usize) {
        let at = match &self.layout {
            Layout::Slots { shift, .. } => i << shift,
            // Reading `ends` may itself miss the cache, but nothing waits
            // for it but the prefetch.
            Layout::Packed { ends } => i.checked_sub(1).map_or(0, |j| ends[j] as usize),
        };
        prefetch(self.bytes.as_ptr().wrapping_add(at));
    }

    /// How many values the pool holds.
    pub fn count(&self) -> usize {
        match &self.layout {
            Layout::Slots { count, .. } => *count,
            Layout::Packed { ends } => ends.len(),
        }
    }

    /// A uniformly drawn value's index.
    #[inline(always)]
    pub fn pick(&self, rng: &mut Wy) -> usize {
        rng.below(self.count() as u64) as usize
    }

    /// Where value `i`'s Avro encoding starts and ends.
    #[inline(always)]
    fn span(&self, i: usize) -> (usize, usize) {
        match &self.layout {
            Layout::Slots { shift, .. } => {
                let start = i << shift;
                (start, start + 1 + usize::from(self.bytes[start] >> 1))
            }
            Layout::Packed { ends } => {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                (start, ends[i] as usize)
            }
        }
    }

    /// Value `i`'s text.
    #[inline]
    pub fn text(&self, i: usize) -> &[u8] {
        let (start, end) = self.span(i);
        let avro = &self.bytes[start..end];
        // Skip the length prefix: its bytes with the top bit set, and one.
        let prefix = avro.iter().take_while(|b| **b & 0x80 != 0).count() + 1;
        &avro[prefix..]
    }

    /// The size of a value's slot as a shift (value `i` starts at
    /// `i << shift`), if the values are in slots.
    pub fn slot_shift(&self) -> Option<u32> {
        match &self.layout {
            Layout::Slots { shift, .. } => Some(*shift),
            Layout::Packed { .. } => None,
        }
    }

    /// Starts fetching value `i` of a pool in slots of `1 << shift` bytes
    /// ([`StrPool::slot_shift`]).
    #[inline(always)]
    pub fn prefetch_slot(&self, i: usize, shift: u32) {
        prefetch(self.bytes.as_ptr().wrapping_add(i << shift));
    }

    /// Writes value `i` of a pool in slots of `1 << shift` bytes
    /// ([`StrPool::slot_shift`]), in one bounds check: the window holds the
    /// whole encoding, whose one-byte length prefix says its length.
    #[inline(always)]
    pub fn write_slot<S: Sink>(&self, i: usize, shift: u32, out: &mut S) {
        let start = i << shift;
        let window: &[u8; WINDOW] = self.bytes[start..start + WINDOW]
            .try_into()
            .expect("the pool is padded");
        let end = 1 + usize::from(window[0] >> 1);
        out.encoded_string(&window[..end], window, || &window[1..end]);
    }

    /// Writes value `i` as a string.
    #[inline(always)]
    pub fn write<S: Sink>(&self, i: usize, out: &mut S) {
        if let Layout::Slots { shift, .. } = &self.layout {
            return self.write_slot(i, *shift, out);
        }
        let (start, end) = self.span(i);
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
    use rand::SeedableRng;

    #[test]
    fn pooled_strings_are_written_as_avro_strings() {
        let (short, long) = ("y".repeat(29), "x".repeat(200));
        for (values, max) in [
            (vec!["", "a", "hello", short.as_str()], 31),
            (vec!["", "a", "hello", long.as_str()], 202),
            (vec![""], 2),
        ] {
            check(&values, max);
        }
    }

    fn check(values: &[&str], max: usize) {
        let pool = StrPool::new(b"p-", values);
        assert_eq!(pool.max_len(), max);
        let mut rng = Wy::seed_from_u64(1);
        assert!((0..100).all(|_| pool.pick(&mut rng) < values.len()));
        for (i, v) in values.iter().enumerate() {
            let want = format!("p-{v}");
            assert_eq!(pool.text(i), want.as_bytes());
            let mut out = vec![9];
            let mut sink = AvroSink::at(&mut out, 1);
            pool.write(i, &mut sink);
            let end = sink.end();
            let mut expect = vec![9];
            let mut sink = AvroSink::at(&mut expect, 1);
            sink.string(want.as_bytes());
            let end2 = sink.end();
            assert_eq!(out[..end], expect[..end2]);
        }
    }
}
