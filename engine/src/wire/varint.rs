//! Kafka's variable-length integers, written into plain byte vectors.
//!
//! Hand-written because they sit on the per-record path: a record header is a
//! handful of varints, and going through a generic `BufMut` encoder costs more
//! than the record's payload copy.

/// Appends `v` as an unsigned LEB128 varint (Kafka's `UNSIGNED_VARINT`).
#[inline]
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zig-zag encoded (Kafka's `VARINT`).
#[inline]
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, ((v << 1) ^ (v >> 31)) as u32);
}

/// Appends `v` zig-zag encoded (Kafka's `VARLONG`).
#[inline]
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Number of bytes `put_varint(v)` writes.
#[inline]
pub fn varint_len(v: i32) -> usize {
    let z = ((v << 1) ^ (v >> 31)) as u32;
    uvarint_len(z)
}

/// Number of bytes `put_uvarint(v)` writes.
#[inline]
pub fn uvarint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

/// Reads an unsigned varint from the front of `buf`, returning the value and
/// the number of bytes consumed, or `None` when `buf` ends early or the value
/// is longer than five bytes.
pub fn get_uvarint(buf: &[u8]) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    for (i, &b) in buf.iter().take(5).enumerate() {
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Reads a zig-zag varint from the front of `buf`.
pub fn get_varint(buf: &[u8]) -> Option<(i32, usize)> {
    get_uvarint(buf).map(|(z, n)| (((z >> 1) as i32) ^ -((z & 1) as i32), n))
}

/// Writes `v` as an unsigned varint into `out` (5 bytes hold any `u32`)
/// and returns the number of bytes written.
#[inline]
pub fn encode_uvarint(out: &mut [u8; 5], v: u32) -> usize {
    encode_leb128(out, u64::from(v))
}

/// Writes `v` as an unsigned LEB128 varint into `out` and returns the number
/// of bytes written. `out` must be long enough for `v`: 10 bytes hold any
/// `u64` (a zig-zag Avro long, for one), 5 any `u32`.
#[inline]
pub fn encode_leb128<const N: usize>(out: &mut [u8; N], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    i + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_report_their_length() {
        for v in [0, 1, -1, 63, -64, 64, 300, -300, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "length of {v}");
            assert_eq!(get_varint(&out), Some((v, out.len())));
        }
    }

    #[test]
    fn zigzag_matches_kafka_examples() {
        let mut out = Vec::new();
        put_varint(&mut out, -1);
        assert_eq!(out, [0x01]);
        out.clear();
        put_varint(&mut out, 150);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        put_varlong(&mut out, -2);
        assert_eq!(out, [0x03]);
    }

    #[test]
    fn truncated_varint_is_rejected() {
        assert_eq!(get_uvarint(&[0x80, 0x80]), None);
        assert_eq!(get_uvarint(&[0xff; 6]), None);
    }
}
