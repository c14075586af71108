//! A structural pre-check of request bodies before kafka-protocol decodes
//! them.
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(n)`
//! with the length `n` read off the wire before decoding any element, so a
//! 20-byte request claiming 2^31 topics makes it allocate hundreds of GiB
//! and abort the process. This walks the same fields the same way (same
//! varint and length rules) without allocating and rejects any array whose
//! claimed length exceeds the bytes left (every element takes at least one
//! byte). It covers the requests the sink decodes that contain arrays:
//! Metadata, CreateTopics, Produce, Fetch and ListOffsets.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GuardError(pub &'static str);

type R<T> = Result<T, GuardError>;

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn skip(&mut self, n: usize) -> R<()> {
        if n > self.buf.len() {
            return Err(GuardError("truncated"));
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut out = [0u8; N];
        if N > self.buf.len() {
            return Err(GuardError("truncated"));
        }
        out.copy_from_slice(&self.buf[..N]);
        self.buf = &self.buf[N..];
        Ok(out)
    }

    fn i16(&mut self) -> R<i16> {
        Ok(i16::from_be_bytes(self.take()?))
    }

    fn i32(&mut self) -> R<i32> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    /// Same algorithm as kafka-protocol's `UnsignedVarInt`: at most 5 bytes,
    /// high bits past 32 silently dropped.
    fn uvarint(&mut self) -> R<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.take::<1>()?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A (nullable) string field: i16 length or compact.
    fn string(&mut self, compact: bool) -> R<()> {
        self.sized(compact, false)
    }

    /// A (nullable) bytes field: i32 length or compact.
    fn bytes(&mut self, compact: bool) -> R<()> {
        self.sized(compact, true)
    }

    fn sized(&mut self, compact: bool, wide: bool) -> R<()> {
        if compact {
            let n = self.uvarint()?;
            if n > 0 {
                self.skip((n - 1) as usize)?;
            }
            return Ok(());
        }
        let n = if wide {
            self.i32()?
        } else {
            i32::from(self.i16()?)
        };
        match n {
            -1 => Ok(()),
            n if n >= 0 => self.skip(n as usize),
            _ => Err(GuardError("negative length")),
        }
    }

    /// An array's element count (0 for null), bounded by the bytes left.
    fn array(&mut self, compact: bool) -> R<usize> {
        let n = if compact {
            match self.uvarint()? {
                0 => 0,
                n => (n - 1) as usize,
            }
        } else {
            match self.i32()? {
                -1 => 0,
                n if n >= 0 => n as usize,
                _ => return Err(GuardError("negative array length")),
            }
        };
        if n > self.remaining() {
            return Err(GuardError("array length exceeds request size"));
        }
        Ok(n)
    }

    fn tagged_fields(&mut self, flexible: bool) -> R<()> {
        if !flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        if n as usize > self.remaining() {
            return Err(GuardError("tagged field count exceeds request size"));
        }
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Ok(())
    }
}

/// Produce v3..=12.
pub(crate) fn produce(body: &[u8], version: i16) -> R<()> {
    let flex = version >= 9;
    let mut c = Cursor { buf: body };
    c.string(flex)?; // transactional_id
    c.skip(2 + 4)?; // acks, timeout_ms
    for _ in 0..c.array(flex)? {
        c.string(flex)?; // name
        for _ in 0..c.array(flex)? {
            c.skip(4)?; // index
            c.bytes(flex)?; // records
            c.tagged_fields(flex)?;
        }
        c.tagged_fields(flex)?;
    }
    Ok(())
}

/// Metadata v0..=12.
pub(crate) fn metadata(body: &[u8], version: i16) -> R<()> {
    let flex = version >= 9;
    let mut c = Cursor { buf: body };
    for _ in 0..c.array(flex)? {
        if version >= 10 {
            c.skip(16)?; // topic_id
        }
        c.string(flex)?; // name
        c.tagged_fields(flex)?;
    }
    Ok(())
}

/// CreateTopics v2..=7.
pub(crate) fn create_topics(body: &[u8], version: i16) -> R<()> {
    let flex = version >= 5;
    let mut c = Cursor { buf: body };
    for _ in 0..c.array(flex)? {
        c.string(flex)?; // name
        c.skip(4 + 2)?; // num_partitions, replication_factor
        for _ in 0..c.array(flex)? {
            c.skip(4)?; // partition_index
            let brokers = c.array(flex)?;
            c.skip(brokers.checked_mul(4).ok_or(GuardError("overflow"))?)?;
            c.tagged_fields(flex)?;
        }
        for _ in 0..c.array(flex)? {
            c.string(flex)?; // name
            c.string(flex)?; // value
            c.tagged_fields(flex)?;
        }
        c.tagged_fields(flex)?;
    }
    Ok(())
}

/// Fetch v4..=18.
pub(crate) fn fetch(body: &[u8], version: i16) -> R<()> {
    let flex = version >= 12;
    let mut c = Cursor { buf: body };
    if version <= 14 {
        c.skip(4)?; // replica_id
    }
    c.skip(4 + 4 + 4 + 1)?; // max_wait_ms, min_bytes, max_bytes, isolation_level
    if version >= 7 {
        c.skip(4 + 4)?; // session_id, session_epoch
    }
    for _ in 0..c.array(flex)? {
        fetch_topic_id(&mut c, version, flex)?;
        for _ in 0..c.array(flex)? {
            c.skip(4)?; // partition
            if version >= 9 {
                c.skip(4)?; // current_leader_epoch
            }
            c.skip(8)?; // fetch_offset
            if version >= 12 {
                c.skip(4)?; // last_fetched_epoch
            }
            if version >= 5 {
                c.skip(8)?; // log_start_offset
            }
            c.skip(4)?; // partition_max_bytes
            c.tagged_fields(flex)?;
        }
        c.tagged_fields(flex)?;
    }
    if version >= 7 {
        for _ in 0..c.array(flex)? {
            fetch_topic_id(&mut c, version, flex)?;
            let partitions = c.array(flex)?;
            c.skip(partitions.checked_mul(4).ok_or(GuardError("overflow"))?)?;
            c.tagged_fields(flex)?;
        }
    }
    if version >= 11 {
        c.string(flex)?; // rack_id
    }
    c.tagged_fields(flex)
}

/// A Fetch topic's name (v12 and before) or id (v13 and after).
fn fetch_topic_id(c: &mut Cursor<'_>, version: i16, flex: bool) -> R<()> {
    if version >= 13 {
        c.skip(16)
    } else {
        c.string(flex)
    }
}

/// ListOffsets v1..=10.
pub(crate) fn list_offsets(body: &[u8], version: i16) -> R<()> {
    let flex = version >= 6;
    let mut c = Cursor { buf: body };
    c.skip(4)?; // replica_id
    if version >= 2 {
        c.skip(1)?; // isolation_level
    }
    for _ in 0..c.array(flex)? {
        c.string(flex)?; // name
        for _ in 0..c.array(flex)? {
            c.skip(4)?; // partition_index
            if version >= 4 {
                c.skip(4)?; // current_leader_epoch
            }
            c.skip(8)?; // timestamp
            c.tagged_fields(flex)?;
        }
        c.tagged_fields(flex)?;
    }
    Ok(())
}
