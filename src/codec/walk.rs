//! The bounds-checked walker every client request parser is built on, and
//! the one error they return.
//!
//! Client requests are walked by hand with the bounds-checked [`Reader`]: any
//! input, however corrupt, is an error and never a panic, and no allocation is
//! sized by a count read from the input.

use std::ops::Range;

use bytes::BufMut;
use kafka_protocol::messages::ApiKey;

use super::varint::{put_uvarint, Reader};

/// Why a client request body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The API key or version is not one these parsers handle.
    #[error("api key {api} version {version} is not handled by the failover parsers")]
    Unsupported {
        /// Raw API key.
        api: i16,
        /// Version the client used.
        version: i16,
    },
    /// The body ends early or holds an impossible value.
    #[error("request body is malformed or truncated at {0}")]
    Malformed(&'static str),
    /// A record batch in a format other than magic 2.
    #[error("record batch has magic {0}; only magic 2 batches are supported")]
    Magic(i8),
}

pub(super) fn unsupported(api: ApiKey, version: i16) -> ParseError {
    ParseError::Unsupported {
        api: api as i16,
        version,
    }
}

/// A [`Reader`] that knows whether the message uses the flexible (compact)
/// encodings, and names the field in its errors.
pub(super) struct Walk<'a> {
    r: Reader<'a>,
    flexible: bool,
}

impl<'a> Walk<'a> {
    pub(super) fn new(buf: &'a [u8], flexible: bool) -> Self {
        Self::at(buf, 0, flexible)
    }

    pub(super) fn at(buf: &'a [u8], pos: usize, flexible: bool) -> Self {
        Walk {
            r: Reader::new(buf, pos),
            flexible,
        }
    }

    pub(super) fn pos(&self) -> usize {
        self.r.pos()
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        self.r.take(n).map_err(|_| ParseError::Malformed(what))
    }

    pub(super) fn skip(&mut self, n: usize, what: &'static str) -> Result<(), ParseError> {
        self.take(n, what).map(|_| ())
    }

    pub(super) fn i16(&mut self, what: &'static str) -> Result<i16, ParseError> {
        self.r.i16().map_err(|_| ParseError::Malformed(what))
    }

    pub(super) fn i32(&mut self, what: &'static str) -> Result<i32, ParseError> {
        self.r.i32().map_err(|_| ParseError::Malformed(what))
    }

    pub(super) fn i64(&mut self, what: &'static str) -> Result<i64, ParseError> {
        let b = self.take(8, what)?;
        let b: [u8; 8] = b.try_into().map_err(|_| ParseError::Malformed(what))?;
        Ok(i64::from_be_bytes(b))
    }

    /// The length of a nullable string or byte array; `None` for null.
    /// Classic strings have an i16 length, classic bytes an i32 one.
    pub(super) fn len(
        &mut self,
        wide: bool,
        what: &'static str,
    ) -> Result<Option<usize>, ParseError> {
        let bad = |_| ParseError::Malformed(what);
        if self.flexible {
            return Ok(self
                .r
                .uvarint()
                .map_err(bad)?
                .checked_sub(1)
                .map(|n| n as usize));
        }
        let n = if wide {
            self.r.i32().map_err(bad)?
        } else {
            self.r.i16().map_err(bad)?.into()
        };
        match n {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| ParseError::Malformed(what)),
        }
    }

    /// A nullable string.
    pub(super) fn str_opt(&mut self, what: &'static str) -> Result<Option<String>, ParseError> {
        let Some(n) = self.len(false, what)? else {
            return Ok(None);
        };
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| ParseError::Malformed(what))
    }

    /// A string that may not be null.
    pub(super) fn str(&mut self, what: &'static str) -> Result<String, ParseError> {
        self.str_opt(what)?.ok_or(ParseError::Malformed(what))
    }

    /// A string that may not be null, borrowed from the buffer.
    pub(super) fn str_ref(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        let n = self.len(false, what)?.ok_or(ParseError::Malformed(what))?;
        let b = self.take(n, what)?;
        std::str::from_utf8(b).map_err(|_| ParseError::Malformed(what))
    }

    /// Skips a nullable string without decoding it.
    pub(super) fn skip_str(&mut self, what: &'static str) -> Result<(), ParseError> {
        if let Some(n) = self.len(false, what)? {
            self.skip(n, what)?;
        }
        Ok(())
    }

    /// Nullable bytes; returns where they lie in the buffer.
    pub(super) fn bytes(&mut self, what: &'static str) -> Result<Option<Range<usize>>, ParseError> {
        let Some(n) = self.len(true, what)? else {
            return Ok(None);
        };
        let start = self.pos();
        self.skip(n, what)?;
        Ok(Some(start..self.pos()))
    }

    /// A non-null array's element count. Callers loop over it reading at
    /// least one byte per element, so a huge count just runs out of input.
    pub(super) fn array(&mut self, what: &'static str) -> Result<u32, ParseError> {
        self.r
            .array_len(self.flexible)
            .map_err(|_| ParseError::Malformed(what))
    }

    /// Skips a tagged-field section, in flexible versions only.
    pub(super) fn tags(&mut self, what: &'static str) -> Result<(), ParseError> {
        if self.flexible {
            self.r
                .skip_tagged()
                .map_err(|_| ParseError::Malformed(what))?;
        }
        Ok(())
    }
}

/// Appends a nullable string in the classic or compact encoding.
pub(super) fn put_str(out: &mut Vec<u8>, flexible: bool, s: Option<&str>) {
    match (s, flexible) {
        (None, true) => out.put_u8(0),
        (None, false) => out.put_i16(-1),
        (Some(s), true) => {
            put_uvarint(out, s.len() as u32 + 1);
            out.put_slice(s.as_bytes());
        }
        (Some(s), false) => {
            out.put_i16(s.len() as i16);
            out.put_slice(s.as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------
// Group membership: Heartbeat, SyncGroup, OffsetCommit
// ---------------------------------------------------------------------------
