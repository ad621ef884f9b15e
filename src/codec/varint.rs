//! A bounds-checked reader over Kafka's primitive types, for the hand-written
//! walkers on hot paths. Every read checks the remaining length first, so
//! malformed input is an error, never a panic or a large allocation.

use bytes::BufMut;

/// Malformed or truncated input; names what was being read.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("malformed or truncated {0}")]
pub struct ReadError(pub &'static str);

/// A cursor over a byte slice.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf` starting at `pos`.
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    /// The current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(ReadError("field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), ReadError> {
        self.take(n).map(|_| ())
    }

    /// A big-endian i16.
    pub fn i16(&mut self) -> Result<i16, ReadError> {
        let b = self.take(2).map_err(|_| ReadError("int16"))?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian i32.
    pub fn i32(&mut self) -> Result<i32, ReadError> {
        let b = self.take(4).map_err(|_| ReadError("int32"))?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned varint (at most 5 bytes).
    pub fn uvarint(&mut self) -> Result<u32, ReadError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.take(1).map_err(|_| ReadError("varint"))?[0];
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ReadError("varint"))
    }

    /// A nullable string with an i16 length.
    pub fn nullable_string(&mut self) -> Result<(), ReadError> {
        match self.i16()? {
            -1 => Ok(()),
            n if n >= 0 => self.skip(n as usize),
            _ => Err(ReadError("string length")),
        }
    }

    /// A compact nullable string (length + 1 as varint; 0 is null).
    pub fn nullable_string_compact(&mut self) -> Result<(), ReadError> {
        match self.uvarint()? {
            0 => Ok(()),
            n => self.skip(n as usize - 1),
        }
    }

    /// A string in the classic or compact encoding.
    pub fn string(&mut self, compact: bool) -> Result<(), ReadError> {
        if compact {
            self.nullable_string_compact()
        } else {
            self.nullable_string()
        }
    }

    /// Nullable bytes in the classic (i32 length) or compact encoding.
    pub fn bytes(&mut self, compact: bool) -> Result<(), ReadError> {
        if compact {
            return match self.uvarint()? {
                0 => Ok(()),
                n => self.skip(n as usize - 1),
            };
        }
        match self.i32()? {
            -1 => Ok(()),
            n if n >= 0 => self.skip(n as usize),
            _ => Err(ReadError("bytes length")),
        }
    }

    /// An array length; `None` for a null array.
    pub fn nullable_array_len(&mut self, compact: bool) -> Result<Option<u32>, ReadError> {
        if compact {
            return Ok(self.uvarint()?.checked_sub(1));
        }
        match self.i32()? {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(n as u32)),
            _ => Err(ReadError("array length")),
        }
    }

    /// A non-null array length.
    pub fn array_len(&mut self, compact: bool) -> Result<u32, ReadError> {
        self.nullable_array_len(compact)?
            .ok_or(ReadError("null array"))
    }

    /// Skips a tagged-field section.
    pub fn skip_tagged(&mut self) -> Result<(), ReadError> {
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Ok(())
    }
}

/// Appends an unsigned varint.
pub fn put_uvarint(out: &mut impl BufMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, 16383, 16384, u32::MAX] {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            assert_eq!(Reader::new(&out, 0).uvarint(), Ok(v));
        }
        assert!(Reader::new(&[0xff; 6], 0).uvarint().is_err());
    }

    #[test]
    fn reads_never_pass_the_end() {
        let mut r = Reader::new(&[0, 5, b'a'], 0);
        assert!(r.nullable_string().is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xf0], 0);
        assert!(r.array_len(false).is_err());
        let mut r = Reader::new(&[0x10], 0);
        assert!(r.bytes(true).is_err());
    }
}
