//! The two writers of a generated datum: Avro binary and JSON.
//!
//! The plan drives a [`Sink`] with one call per value; both sinks see the
//! same calls for the same random draws, so a seed gives the same data in
//! either encoding. Both are written by hand into a caller-owned `Vec<u8>`:
//! a general serializer (apache-avro's writer, serde_json over a `Value`)
//! costs an allocation per node and about 1 to 3 microseconds per record,
//! which would make the generator, not the cluster, the bottleneck.

use super::strpool::WINDOW;
use std::io::Write as _;

/// Receives one datum, value by value, in schema order.
pub trait Sink {
    fn null(&mut self);
    fn boolean(&mut self, v: bool);
    fn int(&mut self, v: i32);
    fn long(&mut self, v: i64);
    fn float(&mut self, v: f32);
    fn double(&mut self, v: f64);
    fn bytes(&mut self, v: &[u8]);
    /// `v` is valid UTF-8.
    fn string(&mut self, v: &[u8]);
    /// A string of `len` bytes that `fill` writes in place, saving the copy
    /// from a scratch buffer. The bytes must be valid UTF-8.
    fn string_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8]));
    fn fixed(&mut self, v: &[u8]);
    /// A pre-generated string: `avro` is its Avro encoding, `window` the
    /// [`WINDOW`] bytes from its start (readable past its end), `text` its
    /// text. Writers other than Avro write `text()`.
    #[inline]
    fn encoded_string<'t>(
        &mut self,
        avro: &[u8],
        window: &[u8; WINDOW],
        text: impl FnOnce() -> &'t [u8],
    ) {
        let _ = (avro, window);
        self.string(text());
    }
    /// A decimal's unscaled value; `size` is the fixed size, or `None` for bytes.
    fn decimal(&mut self, unscaled: i128, scale: u32, size: Option<usize>);
    fn enumeration(&mut self, index: u32, symbol: &str);
    fn record_start(&mut self);
    fn field(&mut self, name: &str, first: bool);
    fn record_end(&mut self);
    fn array_start(&mut self, len: usize);
    fn item(&mut self, first: bool);
    fn array_end(&mut self, len: usize);
    fn map_start(&mut self, len: usize);
    /// `key` is valid UTF-8.
    fn map_key(&mut self, key: &[u8], first: bool);
    fn map_end(&mut self, len: usize);
    fn union_branch(&mut self, index: u32);
}

/// Avro binary encoding (the spec's "binary encoding"), written at a cursor
/// into a buffer.
///
/// The buffer's length is how much of it is initialized, a high-water mark,
/// not where the datum ends: the sink writes at its position, grows the
/// buffer when a write would pass its end, and [`AvroSink::end`] says where
/// the datum ends. The position lives in the sink, which the walk holds by
/// `&mut`, so the compiler keeps it in a register; appending to a `Vec`
/// instead sends its length to memory and back on every value, chaining
/// each write to the one before (measured here: about 1.6 times slower per
/// value). Short values are written as whole words and the position moved
/// by their length, which needs room past the end: hence the slack.
///
/// The buffer is a [`Room`]: a `Vec` that grows as needed ([`AvroSink::at`])
/// or, faster, a slice already as long as the largest datum plus slack
/// ([`AvroSink::within`]). A slice's start and length live in the sink like
/// the position, so they stay in registers; a `Vec`'s live behind a second
/// pointer, and the compiler reloads them after every byte written (a byte
/// store may alias them), and checks for growth on every value.
pub struct AvroSink<B> {
    buf: B,
    pos: usize,
}

/// Where an [`AvroSink`] writes.
pub trait Room {
    /// `n` writable bytes from `at` on.
    fn room(&mut self, at: usize, n: usize) -> &mut [u8];
}

impl Room for &mut Vec<u8> {
    #[inline(always)]
    fn room(&mut self, at: usize, n: usize) -> &mut [u8] {
        if self.len() - at < n {
            grow(self, at + n);
        }
        &mut self[at..at + n]
    }
}

#[cold]
#[inline(never)]
fn grow(buf: &mut Vec<u8>, need: usize) {
    let want = need.max(buf.len() * 2).max(256);
    buf.resize(want, 0);
}

/// A buffer sized for the largest datum up front: writing past its end is
/// a bug in [`super::Plan::max_avro_len`], and panics.
impl Room for &mut [u8] {
    #[inline(always)]
    fn room(&mut self, at: usize, n: usize) -> &mut [u8] {
        &mut self[at..at + n]
    }
}

/// Bytes an [`AvroSink`] may write past the end of a datum: its longest
/// whole-word write (a [`WINDOW`] of a pooled string), rounded up.
pub const SLACK: usize = 64;

/// Varint byte counts (1 to 8) and continuation bits by the number of
/// leading zero bits of a zig-zag value below 2^56 (or of 1 for 0).
const VARINT: [(usize, u64); 65] = {
    let mut t = [(0usize, 0u64); 65];
    let mut lz = 8;
    while lz <= 64 {
        let bits: usize = if lz == 64 { 1 } else { 64 - lz };
        let n = bits.div_ceil(7);
        t[lz] = (n, 0x8080_8080_8080_8080 & ((1u64 << (8 * (n - 1))) - 1));
        lz += 1;
    }
    t
};

impl<'a> AvroSink<&'a mut Vec<u8>> {
    /// Writes from `buf[pos..]` on, growing `buf` as needed.
    pub fn at(buf: &'a mut Vec<u8>, pos: usize) -> Self {
        if buf.len() < pos {
            buf.resize(pos, 0);
        }
        AvroSink { buf, pos }
    }
}

impl<'a> AvroSink<&'a mut [u8]> {
    /// Writes from `buf[pos..]` on; `buf` must hold the datum and [`SLACK`]
    /// bytes more.
    pub fn within(buf: &'a mut [u8], pos: usize) -> Self {
        AvroSink { buf, pos }
    }

    /// The buffer and the position.
    pub fn into_parts(self) -> (&'a mut [u8], usize) {
        (self.buf, self.pos)
    }
}

/// A slice whose room for a whole datum was checked once, up front, by
/// whoever made the sink ([`AvroSink::prechecked`]): its writes are not
/// bounds-checked one by one. Measured on live `orders.avsc` records: a
/// check per value (about 35 a record) and the register holding the
/// slice's length cost 9% of the record's time.
pub struct Prechecked<'a>(&'a mut [u8]);

impl Room for Prechecked<'_> {
    #[inline(always)]
    fn room(&mut self, at: usize, n: usize) -> &mut [u8] {
        debug_assert!(at <= self.0.len() && n <= self.0.len() - at);
        // SAFETY: `AvroSink::prechecked`'s caller guarantees that every
        // write through the sink ends within the slice.
        unsafe { self.0.get_unchecked_mut(at..at + n) }
    }
}

impl<'a> AvroSink<Prechecked<'a>> {
    /// Writes from `buf[pos..]` on without checking each write's bounds.
    ///
    /// # Safety
    ///
    /// Every write made through the sink (at its position, of at most
    /// [`SLACK`] bytes past where the datum ends) must end within `buf`:
    /// the caller bounds what it writes and checked `buf` has that room.
    #[inline(always)]
    pub unsafe fn prechecked(buf: &'a mut [u8], pos: usize) -> Self {
        AvroSink {
            buf: Prechecked(buf),
            pos,
        }
    }

    /// A bounds-checked sink at this one's position, for a writer the
    /// caller's bound does not cover; [`AvroSink::resume`] takes its end
    /// back. By value, so that this sink's position stays in a register.
    #[inline(always)]
    pub fn checked(&mut self) -> AvroSink<&mut [u8]> {
        AvroSink {
            buf: &mut *self.buf.0,
            pos: self.pos,
        }
    }

    /// Continues from where a [`AvroSink::checked`] sink ended. Not past
    /// the end of the buffer; the caller's bound must still hold from
    /// there on.
    #[inline(always)]
    pub fn resume(&mut self, end: usize) {
        assert!(end <= self.buf.0.len(), "a sink resumed past its buffer");
        self.pos = end;
    }
}

impl<B: Room> AvroSink<B> {
    /// Where the datum written so far ends.
    pub fn end(&self) -> usize {
        self.pos
    }

    /// `n` writable bytes at the position (not moving it).
    #[inline(always)]
    fn room(&mut self, n: usize) -> &mut [u8] {
        self.buf.room(self.pos, n)
    }

    #[inline]
    fn put(&mut self, v: &[u8]) {
        self.room(v.len()).copy_from_slice(v);
        self.pos += v.len();
    }

    /// Writes all of `v` and keeps its first `keep` bytes: a fixed-size
    /// copy is a move or two, where a variable one calls `memcpy`.
    #[inline]
    pub(super) fn put_word<const N: usize>(&mut self, v: &[u8; N], keep: usize) {
        self.room(N).copy_from_slice(v);
        self.pos += keep;
    }

    /// `v` as an Avro long (zig-zag varint), without a branch on its
    /// length: the length of random numbers is random, and a mispredicted
    /// branch costs more than the arithmetic. The 7-bit groups are spread
    /// into the bytes of one word, continuation bits set on all but the
    /// last. The length comes from a table: it decides where the next value
    /// goes, so it is worth getting in few steps.
    #[inline(always)]
    pub fn put_long(&mut self, v: i64) {
        let z = ((v << 1) ^ (v >> 63)) as u64;
        if z < 1 << 14 {
            // One or two bytes, the common case (counts, small ranges):
            // the same without most of the spreading.
            let spread = (z & 0x7f) | (z & 0x3f80) << 1;
            let two = (z >= 0x80) as usize;
            self.put_word(
                &((spread | (two as u64) << 7) as u16).to_le_bytes(),
                1 + two,
            );
            return;
        }
        if z >> 56 != 0 {
            let (b, n) = varint_bytes(z);
            return self.put_word(&b, n);
        }
        let spread = (z & 0x7f)
            | (z & 0x7f << 7) << 1
            | (z & 0x7f << 14) << 2
            | (z & 0x7f << 21) << 3
            | (z & 0x7f << 28) << 4
            | (z & 0x7f << 35) << 5
            | (z & 0x7f << 42) << 6
            | (z & 0x7f << 49) << 7;
        let (n, more) = VARINT[(z | 1).leading_zeros() as usize];
        self.put_word(&(spread | more).to_le_bytes(), n);
    }

    /// A count or index that is nearly always below 64 (a length, an enum
    /// symbol, a union branch) as an Avro long.
    ///
    /// The rare others through a call that returns the bytes: a call that
    /// took the sink would take its address, and keep its position in
    /// memory rather than in a register in every caller.
    #[inline(always)]
    pub fn put_small(&mut self, v: i64) {
        if (0..64).contains(&v) {
            self.put_word(&[(v << 1) as u8], 1);
        } else {
            let (b, n) = varint_bytes(((v << 1) ^ (v >> 63)) as u64);
            self.put_word(&b, n);
        }
    }
}

/// The varint bytes of a zig-zag value `z`, and how many there are: for
/// the values [`AvroSink::put_long`] and [`AvroSink::put_small`] leave out
/// of their inlined cases.
#[cold]
#[inline(never)]
fn varint_bytes(z: u64) -> ([u8; 10], usize) {
    let mut b = [0u8; 10];
    let n = datastorm_engine::wire::varint::encode_leb128(&mut b, z);
    (b, n)
}

/// Appends `v` to `out` as an Avro long.
#[cfg(test)]
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    append_with(out, |s| s.put_long(v));
}

/// Appends `v` to `out` as an Avro long, by [`AvroSink::put_small`].
pub fn put_small(out: &mut Vec<u8>, v: i64) {
    append_with(out, |s| s.put_small(v));
}

/// Appends what `write` puts into a sink (at most 10 bytes) to `out`.
///
/// Through a buffer on the stack: a sink on `out` itself would need its
/// slack past `out`'s end, and growing `out` by doubling and truncating it
/// back after every value zeroed the whole vector each time (quadratic in
/// a string pool's size: `datastorm sample schemas/clickstream.avsc` took
/// 0.10 s, now 0.01 s).
fn append_with(out: &mut Vec<u8>, write: impl FnOnce(&mut AvroSink<&mut [u8]>)) {
    let mut buf = [0u8; 10 + SLACK];
    let mut s = AvroSink::within(&mut buf[..], 0);
    write(&mut s);
    let end = s.end();
    out.extend_from_slice(&buf[..end]);
}

/// Two's complement big-endian bytes of `v`: the shortest form for
/// `size == None` (decimal as bytes), sign-extended to `size` for fixed.
pub fn decimal_bytes(v: i128, size: Option<usize>) -> ([u8; 16], usize) {
    let be = v.to_be_bytes();
    let n = match size {
        Some(s) => s,
        None => {
            // Drop leading bytes that only repeat the sign.
            let mut start = 0;
            while start < 15 {
                let (b, next) = (be[start], be[start + 1]);
                if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                    start += 1;
                } else {
                    break;
                }
            }
            16 - start
        }
    };
    (be, n)
}

impl<B: Room> Sink for AvroSink<B> {
    #[inline(always)]
    fn null(&mut self) {}
    #[inline(always)]
    fn boolean(&mut self, v: bool) {
        self.put_word(&[v as u8], 1);
    }
    #[inline(always)]
    fn int(&mut self, v: i32) {
        self.put_long(i64::from(v));
    }
    #[inline(always)]
    fn long(&mut self, v: i64) {
        self.put_long(v);
    }
    #[inline(always)]
    fn float(&mut self, v: f32) {
        self.put_word(&v.to_le_bytes(), 4);
    }
    #[inline(always)]
    fn double(&mut self, v: f64) {
        self.put_word(&v.to_le_bytes(), 8);
    }
    #[inline(always)]
    fn bytes(&mut self, v: &[u8]) {
        self.put_small(v.len() as i64);
        self.put(v);
    }
    #[inline(always)]
    fn string(&mut self, v: &[u8]) {
        self.bytes(v);
    }
    #[inline(always)]
    fn string_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        self.put_small(len as i64);
        fill(self.room(len));
        self.pos += len;
    }
    #[inline(always)]
    fn fixed(&mut self, v: &[u8]) {
        self.put(v);
    }
    #[inline(always)]
    fn encoded_string<'t>(
        &mut self,
        avro: &[u8],
        window: &[u8; WINDOW],
        _text: impl FnOnce() -> &'t [u8],
    ) {
        if avro.len() <= WINDOW {
            self.put_word(window, avro.len());
        } else {
            self.put(avro);
        }
    }
    fn decimal(&mut self, unscaled: i128, _scale: u32, size: Option<usize>) {
        let (be, n) = decimal_bytes(unscaled, size);
        if size.is_none() {
            self.put_long(n as i64);
        }
        if n > 16 {
            let pad = if unscaled < 0 { 0xff } else { 0 };
            self.room(n - 16).fill(pad);
            self.pos += n - 16;
            self.put(&be);
        } else {
            self.put(&be[16 - n..]);
        }
    }
    #[inline(always)]
    fn enumeration(&mut self, index: u32, _symbol: &str) {
        self.put_small(i64::from(index));
    }
    #[inline(always)]
    fn record_start(&mut self) {}
    #[inline(always)]
    fn field(&mut self, _name: &str, _first: bool) {}
    #[inline(always)]
    fn record_end(&mut self) {}
    #[inline(always)]
    fn array_start(&mut self, len: usize) {
        if len > 0 {
            self.put_small(len as i64);
        }
    }
    #[inline(always)]
    fn item(&mut self, _first: bool) {}
    #[inline(always)]
    fn array_end(&mut self, _len: usize) {
        self.put_word(&[0], 1);
    }
    #[inline(always)]
    fn map_start(&mut self, len: usize) {
        self.array_start(len);
    }
    #[inline(always)]
    fn map_key(&mut self, key: &[u8], _first: bool) {
        self.bytes(key);
    }
    #[inline(always)]
    fn map_end(&mut self, _len: usize) {
        self.put_word(&[0], 1);
    }
    #[inline(always)]
    fn union_branch(&mut self, index: u32) {
        self.put_small(i64::from(index));
    }
}

/// Plain JSON, one object per record: unions are written as the bare
/// value, enums as their symbol, bytes and fixed as strings of code points
/// U+0000..U+00FF (the Avro JSON convention), decimals as JSON numbers with
/// `scale` fraction digits, logical dates and times as their numbers.
pub struct JsonSink<'a>(pub &'a mut Vec<u8>);

impl JsonSink<'_> {
    fn escaped(&mut self, s: &[u8]) {
        let out = &mut *self.0;
        out.reserve(s.len() + 2);
        out.push(b'"');
        // Most strings need no escape: copy up to the next byte that does
        // in one go, rather than looking at each byte as it is copied.
        let mut rest = s;
        while let Some(i) = first_to_escape(rest) {
            put(out, &rest[..i]);
            let (e, n) = escape(rest[i]);
            put(out, &e[..n]);
            rest = &rest[i + 1..];
        }
        put(out, rest);
        out.push(b'"');
    }

    fn latin1(&mut self, v: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let out = &mut *self.0;
        out.push(b'"');
        for &c in v {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x20..=0x7e => out.push(c),
                _ => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(c >> 4) as usize]);
                    out.push(HEX[(c & 0xf) as usize]);
                }
            }
        }
        out.push(b'"');
    }

    fn separator(&mut self, first: bool) {
        if !first {
            self.0.push(b',');
        }
    }
}

/// Appends `s` to `out`, as `extend_from_slice` does.
///
/// Hand-written for JSON's short pieces (field names, numbers, most
/// strings): up to 32 bytes are copied as two overlapping loads and stores
/// of a word, where `extend_from_slice` calls `memcpy`, whose call and size
/// dispatch cost more than the copy (a tenth of a JSON record's time).
#[inline(always)]
pub(super) fn put(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n > 32 {
        return out.extend_from_slice(s);
    }
    out.reserve(n);
    let len = out.len();
    // SAFETY: `reserve` made room for `n` bytes past `len`. Each copy below
    // reads within `s` and writes within those `n` bytes: two words of `w`
    // bytes, at 0 and at n - w, for w <= n <= 2w (they overlap when n < 2w,
    // writing the same bytes twice).
    unsafe {
        let (src, dst) = (s.as_ptr(), out.as_mut_ptr().add(len));
        macro_rules! two {
            ($t:ty, $w:expr) => {{
                let a = src.cast::<$t>().read_unaligned();
                let b = src.add(n - $w).cast::<$t>().read_unaligned();
                dst.cast::<$t>().write_unaligned(a);
                dst.add(n - $w).cast::<$t>().write_unaligned(b);
            }};
        }
        match n {
            16..=32 => two!(u128, 16),
            8..=15 => two!(u64, 8),
            4..=7 => two!(u32, 4),
            1..=3 => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            _ => {}
        }
        out.set_len(len + n);
    }
}

/// Where the first byte of `s` that a JSON string escapes is (a control
/// character, `"` or `\`), looking at 8 bytes at a time.
///
/// Per 8-byte word, each test sets the top bit of the bytes it matches:
/// `(x - k) & !x & 0x80..` for bytes below `k` (a byte of 0x80 or more has
/// its top bit in `x` and is masked off), and equality as "below 1" after
/// an xor. A borrow can mark bytes after a true match, never before one,
/// so the lowest marked byte is the first to escape.
#[inline]
fn first_to_escape(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, k: u64| x.wrapping_sub(k * ONES) & !x & TOPS;
    let mut words = s.chunks_exact(8);
    for (w, word) in words.by_ref().enumerate() {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let m = below(x, 0x20)
            | below(x ^ (b'"' as u64 * ONES), 1)
            | below(x ^ (b'\\' as u64 * ONES), 1);
        if m != 0 {
            return Some(w * 8 + (m.trailing_zeros() / 8) as usize);
        }
    }
    let tail = words.remainder();
    let at = s.len() - tail.len();
    tail.iter()
        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
        .map(|i| at + i)
}

/// The JSON string escape of byte `c` (itself when it needs none), and
/// its length.
fn escape(c: u8) -> ([u8; 6], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match c {
        b'"' => (*b"\\\"    ", 2),
        b'\\' => (*b"\\\\    ", 2),
        b'\n' => (*b"\\n    ", 2),
        b'\r' => (*b"\\r    ", 2),
        b'\t' => (*b"\\t    ", 2),
        0..=0x1f => (
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 0xf) as usize],
            ],
            6,
        ),
        _ => ([c, 0, 0, 0, 0, 0], 1),
    }
}

/// Escapes `out[from..]` for a JSON string, in place: grows the buffer by
/// what the escapes add and moves the text back to front. Generated strings
/// rarely need it (only a `prefix` with quotes or control characters).
fn escape_in_place(out: &mut Vec<u8>, from: usize) {
    let extra: usize = out[from..].iter().map(|&c| escape(c).1 - 1).sum();
    if extra == 0 {
        return;
    }
    let old = out.len();
    out.resize(old + extra, 0);
    let mut w = out.len();
    for r in (from..old).rev() {
        let (e, n) = escape(out[r]);
        w -= n;
        out[w..w + n].copy_from_slice(&e[..n]);
    }
}

/// Writes a finite double as `Display` does (the shortest form that
/// round-trips, never an exponent); JSON has no NaN or infinities, so those
/// become null.
///
/// Through ryu, which finds the same shortest digits several times faster
/// than `core::fmt` (floats were a third of a JSON orders record). ryu
/// writes `35.0` where `Display` writes `35`, and an exponent outside
/// 1e-5..1e16, where this falls back to `Display`.
fn json_double(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v).as_bytes();
    if text.contains(&b'e') {
        let _ = write!(out, "{v}");
    } else {
        put(out, text.strip_suffix(b".0").unwrap_or(text));
    }
}

/// Writes an integer as `Display` does, without `core::fmt`.
fn json_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    put(out, itoa::Buffer::new().format(v).as_bytes());
}

impl Sink for JsonSink<'_> {
    fn null(&mut self) {
        self.0.extend_from_slice(b"null");
    }
    fn boolean(&mut self, v: bool) {
        self.0
            .extend_from_slice(if v { b"true" as &[u8] } else { b"false" });
    }
    fn int(&mut self, v: i32) {
        json_int(self.0, v);
    }
    fn long(&mut self, v: i64) {
        json_int(self.0, v);
    }
    fn float(&mut self, v: f32) {
        // Through `Display`: where two shortest forms are as near, ryu and
        // `Display` pick different ones (`509344.625f32`: `509344.62` and
        // `509344.63`), and with a float's fewer digits that is common.
        if v.is_finite() {
            let _ = write!(self.0, "{v}");
        } else {
            self.0.extend_from_slice(b"null");
        }
    }
    fn double(&mut self, v: f64) {
        json_double(self.0, v);
    }
    fn bytes(&mut self, v: &[u8]) {
        self.latin1(v);
    }
    fn string(&mut self, v: &[u8]) {
        self.escaped(v);
    }
    fn string_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        let out = &mut *self.0;
        out.push(b'"');
        let at = out.len();
        out.resize(at + len, 0);
        fill(&mut out[at..]);
        escape_in_place(out, at);
        out.push(b'"');
    }
    fn fixed(&mut self, v: &[u8]) {
        self.latin1(v);
    }
    fn decimal(&mut self, unscaled: i128, scale: u32, _size: Option<usize>) {
        let out = &mut *self.0;
        if unscaled < 0 {
            out.push(b'-');
        }
        let mag = unscaled.unsigned_abs();
        if scale == 0 {
            let _ = write!(out, "{mag}");
            return;
        }
        let p = 10u128.pow(scale);
        let _ = write!(
            out,
            "{}.{:0width$}",
            mag / p,
            mag % p,
            width = scale as usize
        );
    }
    fn enumeration(&mut self, _index: u32, symbol: &str) {
        self.escaped(symbol.as_bytes());
    }
    fn record_start(&mut self) {
        self.0.push(b'{');
    }
    fn field(&mut self, name: &str, first: bool) {
        self.separator(first);
        self.0.push(b'"');
        put(self.0, name.as_bytes());
        put(self.0, b"\":");
    }
    fn record_end(&mut self) {
        self.0.push(b'}');
    }
    fn array_start(&mut self, _len: usize) {
        self.0.push(b'[');
    }
    fn item(&mut self, first: bool) {
        self.separator(first);
    }
    fn array_end(&mut self, _len: usize) {
        self.0.push(b']');
    }
    fn map_start(&mut self, _len: usize) {
        self.0.push(b'{');
    }
    fn map_key(&mut self, key: &[u8], first: bool) {
        self.separator(first);
        self.escaped(key);
        self.0.push(b':');
    }
    fn map_end(&mut self, _len: usize) {
        self.0.push(b'}');
    }
    fn union_branch(&mut self, _index: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The word-at-a-time scan finds the same first byte to escape as a
    /// byte-at-a-time one, wherever it is and whatever comes around it.
    #[test]
    fn the_first_byte_to_escape_is_found_as_one_byte_at_a_time_would() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let pick = [
            b'a', b' ', b'"', b'\\', 0x1f, 0x00, 0x7f, 0x80, 0xa0, 0xff, 0x21, 0x5d,
        ];
        for _ in 0..50_000 {
            let n = rng.random_range(0..40);
            let s: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.9) {
                        pick[rng.random_range(6..pick.len())].max(b' ')
                    } else {
                        pick[rng.random_range(0..pick.len())]
                    }
                })
                .collect();
            let want = s.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\');
            assert_eq!(first_to_escape(&s), want, "{s:?}");
        }
    }

    /// JSON doubles and ints are written as `Display` writes them, through
    /// ryu and itoa, for random bit patterns and the values around where
    /// ryu switches to an exponent: the same text, or where two shortest
    /// forms are as near, the same length and the same value read back.
    #[test]
    fn json_numbers_read_as_display_writes_them() {
        fn double(v: f64) {
            let mut out = Vec::new();
            json_double(&mut out, v);
            let got = String::from_utf8(out).unwrap();
            if !v.is_finite() {
                return assert_eq!(got, "null");
            }
            let want = v.to_string();
            if got != want {
                assert_eq!(got.len(), want.len(), "{got} against {want}");
                assert!(got.parse::<f64>().ok() == Some(v), "{got} against {want}");
            }
        }
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        let edges = [
            0.0,
            -0.0,
            1.0,
            35.0,
            0.1,
            1e-5,
            9.9e-6,
            1e15,
            1e16,
            9.999_999_999_999_998e15,
            123_456_789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
        ];
        for v in edges {
            double(v);
        }
        for _ in 0..20_000 {
            double(f64::from_bits(rng.random()));
            double(rng.random_range(-1e6..1e6));
        }
        for v in [0, 1, -1, i64::MIN, i64::MAX, rng.random()] {
            let mut out = Vec::new();
            json_int(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }
}
