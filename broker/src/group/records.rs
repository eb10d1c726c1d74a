//! The records of `__consumer_offsets`, in Kafka's layout so the topic reads the same as
//! Kafka's (and compaction keeps the last record per key).
//!
//! Key (big-endian, strings as i16 length + UTF-8): `version: i16 = 1, group, topic,
//! partition: i32`. Value: `version: i16 = 3, offset: i64, leader_epoch: i32, metadata,
//! commit_timestamp_ms: i64`. A null value (tombstone) deletes the committed offset. Records
//! with other key versions (Kafka's group metadata, version 2) are skipped on load.

use bytes::{BufMut, BytesMut};

/// Key version of an offset commit record.
pub const OFFSET_KEY_VERSION: i16 = 1;
/// Value version written (Kafka's v3: with leader epoch, without expiry).
pub const OFFSET_VALUE_VERSION: i16 = 3;

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// The key of an offset record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated")]
    Truncated,
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("unknown record version {0}")]
    UnknownVersion(i16),
}

fn put_string(out: &mut BytesMut, text: &str) {
    // Group ids, topic names and metadata are bounded far below i16::MAX by the request guard
    // and the commit checks; truncating here would corrupt the record, so it is asserted.
    let len = i16::try_from(text.len()).expect("string fits an i16 length");
    out.put_i16(len);
    out.put_slice(text.as_bytes());
}

/// Encodes an offset record's key.
pub fn encode_key(key: &OffsetKey, out: &mut BytesMut) {
    out.put_i16(OFFSET_KEY_VERSION);
    put_string(out, &key.group);
    put_string(out, &key.topic);
    out.put_i32(key.partition);
}

/// Encodes an offset record's value.
pub fn encode_value(value: &OffsetValue, out: &mut BytesMut) {
    out.put_i16(OFFSET_VALUE_VERSION);
    out.put_i64(value.offset);
    out.put_i32(value.leader_epoch);
    put_string(out, &value.metadata);
    out.put_i64(value.commit_timestamp_ms);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(String::new());
        }
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| RecordError::NotUtf8)
    }
}

/// Decodes an offset record's key; `Ok(None)` for other record kinds (group metadata).
///
/// # Errors
/// A truncated key or a string that is not UTF-8.
pub fn decode_key(bytes: &[u8]) -> Result<Option<OffsetKey>, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    // Kafka's offset keys are versions 0 and 1 (same layout); 2 is group metadata.
    if version != 0 && version != 1 {
        return Ok(None);
    }
    Ok(Some(OffsetKey {
        group: r.string()?,
        topic: r.string()?,
        partition: r.i32()?,
    }))
}

/// Decodes an offset record's value (Kafka's versions 0 to 3).
///
/// # Errors
/// A truncated value, an unknown version, or a string that is not UTF-8.
pub fn decode_value(bytes: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    match version {
        0 | 2 | 3 => {}
        // v1 carries an expire timestamp after the commit timestamp.
        1 => {
            r.i64()?;
        }
        other => return Err(RecordError::UnknownVersion(other)),
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip_in_kafkas_layout() {
        let key = OffsetKey {
            group: "g".to_owned(),
            topic: "t".to_owned(),
            partition: 7,
        };
        let mut out = BytesMut::new();
        encode_key(&key, &mut out);
        assert_eq!(&out[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(decode_key(&out), Ok(Some(key)));
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".to_owned(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        let mut out = BytesMut::new();
        encode_value(&value, &mut out);
        assert_eq!(out.len(), 2 + 8 + 4 + 3 + 8);
        assert_eq!(decode_value(&out), Ok(value));
        assert_eq!(decode_value(&out[..5]), Err(RecordError::Truncated));
        assert_eq!(
            decode_key(&[0, 2, 0, 1, b'g']),
            Ok(None),
            "group metadata is skipped"
        );
    }
}
