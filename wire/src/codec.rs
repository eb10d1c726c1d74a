//! Primitive readers and writers shared by the hand-written codecs.
//!
//! Readers work on a `&[u8]` cursor that they advance, and never panic on short input.

use bytes::BufMut;

use crate::error::WireError;

fn truncated(needed: usize, available: usize) -> WireError {
    WireError::Truncated { needed, available }
}

/// Takes `n` bytes off the front of `cur`.
pub(crate) fn take<'a>(cur: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if cur.len() < n {
        return Err(truncated(n, cur.len()));
    }
    let (head, tail) = cur.split_at(n);
    *cur = tail;
    Ok(head)
}

pub(crate) fn read_i8(cur: &mut &[u8]) -> Result<i8, WireError> {
    Ok(take(cur, 1)?[0] as i8)
}

pub(crate) fn read_i16(cur: &mut &[u8]) -> Result<i16, WireError> {
    let b = take(cur, 2)?;
    Ok(i16::from_be_bytes([b[0], b[1]]))
}

pub(crate) fn read_i32(cur: &mut &[u8]) -> Result<i32, WireError> {
    let b = take(cur, 4)?;
    Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Unsigned varint as Kafka's flexible versions use for lengths and tags (at most 5 bytes).
///
/// Stricter than some decoders: a fifth byte with bits above 2^32 or a continuation bit is
/// refused, so every accepted encoding means the same number to every decoder.
pub(crate) fn read_uvarint(cur: &mut &[u8]) -> Result<u32, WireError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let b = read_i8(cur)? as u8;
        if i == 4 && b > 0x0f {
            return Err(WireError::Malformed {
                what: "unsigned varint",
            });
        }
        value |= u32::from(b & 0x7f) << (i * 7);
        if b < 0x80 {
            return Ok(value);
        }
    }
    unreachable!("the fifth byte either ends the varint or is refused")
}

/// Zigzag varlong as used inside records (at most 10 bytes).
pub(crate) fn read_varlong(cur: &mut &[u8]) -> Result<i64, WireError> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let b = read_i8(cur)? as u8;
        if i == 9 && b > 0x01 {
            return Err(WireError::Malformed { what: "varlong" });
        }
        raw |= u64::from(b & 0x7f) << (i * 7);
        if b < 0x80 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    unreachable!("the tenth byte either ends the varlong or is refused")
}

/// Zigzag varint (32-bit) as used inside records.
pub(crate) fn read_varint(cur: &mut &[u8]) -> Result<i32, WireError> {
    let v = read_varlong(cur)?;
    i32::try_from(v).map_err(|_| WireError::Malformed { what: "varint" })
}

pub(crate) fn put_uvarint(out: &mut impl BufMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
pub(crate) fn uvarint_len(mut value: u32) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// Skips a tagged-field section; the caller knows no tag in it.
pub(crate) fn skip_tagged_fields(cur: &mut &[u8]) -> Result<(), WireError> {
    let count = read_uvarint(cur)?;
    for _ in 0..count {
        let _tag = read_uvarint(cur)?;
        let size = read_uvarint(cur)? as usize;
        take(cur, size)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_round_trips_at_the_edges() {
        for v in [0u32, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            assert_eq!(out.len(), uvarint_len(v));
            let mut cur = &out[..];
            assert_eq!(read_uvarint(&mut cur), Ok(v));
            assert!(cur.is_empty());
        }
    }

    #[test]
    fn overlong_uvarint_is_refused() {
        let mut cur = &[0xff, 0xff, 0xff, 0xff, 0x10][..];
        assert!(read_uvarint(&mut cur).is_err());
        let mut cur = &[0xff, 0xff, 0xff, 0xff, 0x8f, 0x00][..];
        assert!(read_uvarint(&mut cur).is_err());
    }

    #[test]
    fn varlong_decodes_zigzag() {
        let mut cur = &[
            0x01, 0x02, 0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ][..];
        assert_eq!(read_varlong(&mut cur), Ok(-1));
        assert_eq!(read_varlong(&mut cur), Ok(1));
        assert_eq!(read_varlong(&mut cur), Ok(-2));
        assert_eq!(read_varlong(&mut cur), Ok(i64::MIN));
        assert!(cur.is_empty());
    }
}
