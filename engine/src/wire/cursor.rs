//! A bounds-checked reader over a response body: every read returns an error
//! instead of panicking when the bytes run out.

use super::varint::get_uvarint;
use super::WireError;

pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn uvarint(&mut self) -> Result<u32, WireError> {
        let (v, n) = get_uvarint(&self.buf[self.pos..]).ok_or(WireError::Truncated)?;
        self.pos += n;
        Ok(v)
    }

    /// A compact array's element count (`N + 1` on the wire; 0 = null, read
    /// as empty). Counts larger than the remaining bytes are rejected.
    pub fn compact_len(&mut self) -> Result<usize, WireError> {
        let n = self.uvarint()?.saturating_sub(1) as usize;
        if n > self.remaining() {
            return Err(WireError::Malformed("array longer than the response"));
        }
        Ok(n)
    }

    pub fn compact_bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.compact_len()?;
        self.take(n)
    }

    pub fn compact_nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        match self.uvarint()? {
            0 => Ok(None),
            n => self.take(n as usize - 1).map(Some),
        }
    }

    pub fn skip_tagged_fields(&mut self) -> Result<(), WireError> {
        let fields = self.uvarint()?;
        for _ in 0..fields {
            let _tag = self.uvarint()?;
            let len = self.uvarint()? as usize;
            self.take(len)?;
        }
        Ok(())
    }
}
