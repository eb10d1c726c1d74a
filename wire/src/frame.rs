//! Size-prefixed frames: every Kafka request and response is a big-endian `i32` byte count
//! followed by that many bytes.
//!
//! [`FrameDecoder`] is sans-I/O: the caller reads from its socket into a `BytesMut` and asks the
//! decoder for whole frames. The size prefix is checked against `frame_bytes_max` *before* the
//! buffer is grown for the frame, so a peer cannot make the broker allocate by lying about a size.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::WireError;

/// Bytes of the size prefix in front of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Default largest frame accepted, like Kafka's `socket.request.max.bytes` (100 MiB).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// Largest `frame_bytes_max` that can be configured: the prefix is an `i32`.
pub const FRAME_BYTES_MAX_LIMIT: usize = i32::MAX as usize;

const _: () = assert!(FRAME_BYTES_MAX_DEFAULT <= FRAME_BYTES_MAX_LIMIT);

/// Reads the size prefix at the start of `buf`.
///
/// Returns `Ok(None)` while fewer than 4 bytes are there, else the body length (prefix excluded).
///
/// # Errors
/// [`WireError::NegativeFrameSize`] or [`WireError::FrameTooLarge`] when the prefix is not a
/// size this side accepts; the connection should be closed, as Kafka does.
pub fn frame_len(buf: &[u8], frame_bytes_max: usize) -> Result<Option<usize>, WireError> {
    assert!(frame_bytes_max <= FRAME_BYTES_MAX_LIMIT);
    let Some(prefix) = buf.get(..FRAME_PREFIX_BYTES) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let size = usize::try_from(size).map_err(|_| WireError::NegativeFrameSize(size))?;
    if size > frame_bytes_max {
        return Err(WireError::FrameTooLarge {
            size,
            max: frame_bytes_max,
        });
    }
    Ok(Some(size))
}

/// Splits whole frames off a growing read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    frame_bytes_max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(FRAME_BYTES_MAX_DEFAULT)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames whose body is longer than `frame_bytes_max`.
    ///
    /// # Panics
    /// If `frame_bytes_max` exceeds [`FRAME_BYTES_MAX_LIMIT`].
    pub fn new(frame_bytes_max: usize) -> FrameDecoder {
        assert!(frame_bytes_max <= FRAME_BYTES_MAX_LIMIT);
        FrameDecoder { frame_bytes_max }
    }

    /// The configured limit.
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Takes the next whole frame body (without its prefix) off the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Then, if the size prefix is already known,
    /// `buf` has been reserved to hold the rest of that frame (so the next read can fill it), and
    /// never more than `frame_bytes_max` plus the prefix.
    ///
    /// # Errors
    /// As [`frame_len`]; `buf` is left as it was.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        let Some(body_len) = frame_len(buf, self.frame_bytes_max)? else {
            return Ok(None);
        };
        let frame_len = FRAME_PREFIX_BYTES + body_len;
        if buf.len() < frame_len {
            // The limit was checked above, so this reservation is bounded by frame_bytes_max.
            buf.reserve(frame_len - buf.len());
            return Ok(None);
        }
        buf.advance(FRAME_PREFIX_BYTES);
        Ok(Some(buf.split_to(body_len).freeze()))
    }

    /// How many more bytes the frame at the front of `buf` needs (at least 1 if it is
    /// incomplete), or 0 if a whole frame is there.
    ///
    /// # Errors
    /// As [`frame_len`].
    pub fn bytes_missing(&self, buf: &[u8]) -> Result<usize, WireError> {
        match frame_len(buf, self.frame_bytes_max)? {
            None => Ok(FRAME_PREFIX_BYTES - buf.len()),
            Some(body_len) => Ok((FRAME_PREFIX_BYTES + body_len).saturating_sub(buf.len())),
        }
    }
}

/// Writes a placeholder size prefix and returns its position, for [`finish_frame`].
pub fn start_frame(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_i32(0);
    at
}

/// Fills in the size prefix written by [`start_frame`] at `at`, counting everything after it plus
/// `extra_bytes` that will be sent after `out` (record data sent as separate buffers).
///
/// # Panics
/// If the frame is larger than an `i32` can say (a programmer error: responses are bounded).
pub fn finish_frame(out: &mut BytesMut, at: usize, extra_bytes: usize) {
    let body = out.len() - at - FRAME_PREFIX_BYTES + extra_bytes;
    let size = i32::try_from(body).expect("frame larger than i32::MAX");
    out[at..at + FRAME_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_needs_four_bytes() {
        assert_eq!(frame_len(&[0, 0, 0], 100), Ok(None));
        assert_eq!(frame_len(&[0, 0, 0, 7], 100), Ok(Some(7)));
    }

    #[test]
    fn negative_size_is_refused() {
        assert_eq!(
            frame_len(&(-1i32).to_be_bytes(), 100),
            Err(WireError::NegativeFrameSize(-1))
        );
        assert_eq!(
            frame_len(&i32::MIN.to_be_bytes(), 100),
            Err(WireError::NegativeFrameSize(i32::MIN))
        );
    }

    #[test]
    fn oversized_frame_is_refused_before_reserving() {
        let decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::with_capacity(8);
        buf.put_i32(i32::MAX);
        let capacity_before = buf.capacity();
        assert_eq!(
            decoder.decode(&mut buf),
            Err(WireError::FrameTooLarge {
                size: i32::MAX as usize,
                max: 1024
            })
        );
        assert_eq!(
            buf.capacity(),
            capacity_before,
            "no allocation for a refused frame"
        );
        assert_eq!(buf.len(), 4, "input left untouched");
    }

    #[test]
    fn frame_at_the_limit_is_accepted() {
        let decoder = FrameDecoder::new(3);
        let mut buf = BytesMut::new();
        buf.put_i32(3);
        buf.put_slice(b"abcX");
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        assert_eq!(&buf[..], b"X");
    }

    #[test]
    fn partial_frame_reserves_exactly_the_rest() {
        let decoder = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        buf.put_i32(1000);
        buf.put_slice(&[1; 10]);
        assert_eq!(decoder.bytes_missing(&buf), Ok(990));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.capacity() >= 1004);
        buf.put_slice(&[2; 990]);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.len(), 1000);
        assert_eq!(&frame[..10], &[1; 10]);
        assert_eq!(&frame[10..], &[2; 990][..]);
        assert!(buf.is_empty());
        assert_eq!(decoder.bytes_missing(&buf), Ok(4));
    }

    #[test]
    fn several_frames_in_one_read_come_out_in_order() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        for body in [&b"one"[..], b"", b"three"] {
            buf.put_i32(body.len() as i32);
            buf.put_slice(body);
        }
        let mut got = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            got.push(frame);
        }
        assert_eq!(got, vec![&b"one"[..], b"", b"three"]);
    }

    #[test]
    fn finish_frame_counts_extra_bytes() {
        let mut out = BytesMut::new();
        let at = start_frame(&mut out);
        out.put_slice(b"hdr");
        finish_frame(&mut out, at, 10);
        assert_eq!(&out[..4], &13i32.to_be_bytes());
    }
}
