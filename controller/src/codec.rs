//! The byte-level helpers shared by the record, snapshot and message codecs: big-endian fixed-width
//! integers, length-prefixed strings and lists with a bound on every length. The reader never panics:
//! every read checks the remaining bytes and every length its limit.

use thiserror::Error;

/// Why some bytes could not be decoded. The same error serves records, snapshots and node messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated input: needed {needed_bytes} more bytes for {field}")]
    Truncated {
        /// What was being read.
        field: &'static str,
        /// How many bytes were missing.
        needed_bytes: usize,
    },
    /// A length prefix is above the field's limit.
    #[error("{field} length {len} is above its limit {max}")]
    TooLong {
        /// What was being read.
        field: &'static str,
        /// The length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A version byte this build does not know.
    #[error("unknown {what} version {version}")]
    UnknownVersion {
        /// What was being read.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// A tag byte (record type, option flag) that has no meaning.
    #[error("invalid {field} tag {tag}")]
    InvalidTag {
        /// What was being read.
        field: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A string is not UTF-8.
    #[error("{field} is not utf-8")]
    NotUtf8 {
        /// What was being read.
        field: &'static str,
    },
    /// Bytes left over after a complete value: a framing bug or a corrupted input.
    #[error("{len} trailing bytes after {what}")]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// How many bytes were left.
        len: usize,
    },
    /// A decoded value breaks a rule of its type (for example a snapshot's broken cross references).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was decoded.
        what: &'static str,
        /// Which rule.
        reason: String,
    },
    /// The raft-rs protobuf decoder refused a message.
    #[error("invalid raft message: {reason}")]
    RaftMessage {
        /// The protobuf decoder's message.
        reason: String,
    },
}

/// Appends fields to a byte vector.
pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bytes16(&mut self, v: &[u8; 16]) {
        self.out.extend_from_slice(v);
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    /// A string with a `u16` length prefix.
    ///
    /// # Panics
    ///
    /// Panics if the string is longer than `max`: encoders only see values that were validated on
    /// their way in, so an over-long one is a programmer error, and writing it would produce bytes
    /// that no decoder accepts.
    pub(crate) fn str(&mut self, v: &str, max: usize) {
        assert!(
            v.len() <= max && max <= usize::from(u16::MAX),
            "string of {} bytes above {max}",
            v.len()
        );
        self.u16(v.len() as u16);
        self.out.extend_from_slice(v.as_bytes());
    }

    /// A list count with a `u16` prefix, with the same contract as [`Writer::str`].
    pub(crate) fn count(&mut self, len: usize, max: usize) {
        assert!(
            len <= max && max <= usize::from(u16::MAX),
            "list of {len} above {max}"
        );
        self.u16(len as u16);
    }

    /// A count with a `u32` prefix, for the few lists (snapshot sections) above `u16::MAX`.
    pub(crate) fn count32(&mut self, len: usize, max: usize) {
        assert!(
            len <= max && max <= u32::MAX as usize,
            "list of {len} above {max}"
        );
        self.u32(len as u32);
    }
}

/// Reads fields from a byte slice, refusing short input and over-long lengths.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed_bytes: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }
    pub(crate) fn bytes16(&mut self, field: &'static str) -> Result<[u8; 16], DecodeError> {
        self.array(field)
    }
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::InvalidTag { field, tag }),
        }
    }

    pub(crate) fn str(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        let raw = self.take(len, field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::NotUtf8 { field })
    }

    pub(crate) fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(len)
    }

    pub(crate) fn count32(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<usize, DecodeError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        Ok(len)
    }

    /// Refuses leftover bytes.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                len: self.buf.len(),
            })
        }
    }
}
