//! The records of `__consumer_offsets`, in Kafka's layout so the topic reads the same as
//! Kafka's (and compaction keeps the last record per key).
//!
//! Key (big-endian, strings as i16 length + UTF-8): `version: i16 = 1, group, topic,
//! partition: i32`. Value: `version: i16 = 3, offset: i64, leader_epoch: i32, metadata,
//! commit_timestamp_ms: i64`. A null value (tombstone) deletes the committed offset.
//!
//! Group metadata (so a restarted coordinator resumes the generation): key `version: i16 = 2,
//! group`; value Kafka's v3: `version: i16 = 3, protocol_type, generation: i32, protocol
//! (nullable), leader (nullable), state_timestamp_ms: i64, members: i32 count of [member_id,
//! group_instance_id (nullable), client_id, client_host, rebalance_timeout_ms: i32,
//! session_timeout_ms: i32, subscription: bytes (i32 length), assignment: bytes]`. A null value
//! deletes the group.

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{GroupSnapshot, MemberSnapshot};

/// Key version of a group metadata record.
pub const GROUP_KEY_VERSION: i16 = 2;
/// Group metadata value version written.
pub const GROUP_VALUE_VERSION: i16 = 3;
/// Most members a stored group may list (a corrupt count must not size an allocation).
const STORED_MEMBERS_MAX: usize = 100_000;

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
    #[error("bad member count {0}")]
    BadCount(i32),
}

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset(OffsetKey),
    Group(String),
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
    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let len = i16::from_be_bytes(
            self.0
                .get(..2)
                .ok_or(RecordError::Truncated)?
                .try_into()
                .expect("2 bytes"),
        );
        if len < 0 {
            self.take(2)?;
            return Ok(None);
        }
        self.string().map(Some)
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
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

/// Decodes a record's key; `Ok(None)` for kinds Spate does not use.
///
/// # Errors
/// A truncated key or a string that is not UTF-8.
pub fn decode_key(bytes: &[u8]) -> Result<Option<RecordKey>, RecordError> {
    let mut r = Reader(bytes);
    match r.i16()? {
        // Kafka's offset keys are versions 0 and 1 (same layout).
        0 | 1 => Ok(Some(RecordKey::Offset(OffsetKey {
            group: r.string()?,
            topic: r.string()?,
            partition: r.i32()?,
        }))),
        GROUP_KEY_VERSION => Ok(Some(RecordKey::Group(r.string()?))),
        _ => Ok(None),
    }
}

fn put_nullable_string(out: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => put_string(out, text),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_i32(i32::try_from(bytes.len()).expect("bounded by the metadata limit"));
    out.put_slice(bytes);
}

/// Encodes a group metadata record's key.
pub fn encode_group_key(group: &str, out: &mut BytesMut) {
    out.put_i16(GROUP_KEY_VERSION);
    put_string(out, group);
}

/// Encodes a group metadata record's value.
pub fn encode_group_value(snapshot: &GroupSnapshot, timestamp_ms: i64, out: &mut BytesMut) {
    out.put_i16(GROUP_VALUE_VERSION);
    put_string(out, snapshot.protocol_type.as_deref().unwrap_or(""));
    out.put_i32(snapshot.generation_id);
    put_nullable_string(out, snapshot.protocol_name.as_deref());
    put_nullable_string(out, snapshot.leader.as_deref());
    out.put_i64(timestamp_ms);
    out.put_i32(i32::try_from(snapshot.members.len()).expect("bounded member count"));
    for m in &snapshot.members {
        put_string(out, &m.member_id);
        put_nullable_string(out, m.instance_id.as_deref());
        put_string(out, &m.client_id);
        put_string(out, &m.client_host);
        out.put_i32(i32::try_from(m.rebalance_timeout_ms).unwrap_or(i32::MAX));
        out.put_i32(i32::try_from(m.session_timeout_ms).unwrap_or(i32::MAX));
        put_bytes(out, &m.metadata);
        put_bytes(out, &m.assignment);
    }
}

/// Decodes a group metadata value (version 3 only: the one Spate writes).
///
/// # Errors
/// A truncated value, another version, a bad count, or a string that is not UTF-8.
pub fn decode_group_value(bytes: &[u8]) -> Result<GroupSnapshot, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if version != GROUP_VALUE_VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    let protocol_type = r.nullable_string()?.filter(|t| !t.is_empty());
    let generation_id = r.i32()?;
    let protocol_name = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let _state_timestamp_ms = r.i64()?;
    let count = r.i32()?;
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c <= STORED_MEMBERS_MAX)
        .ok_or(RecordError::BadCount(count))?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        members.push(MemberSnapshot {
            member_id: r.string()?,
            instance_id: r.nullable_string()?,
            client_id: r.string()?,
            client_host: r.string()?,
            rebalance_timeout_ms: u64::try_from(r.i32()?).unwrap_or(0),
            session_timeout_ms: u64::try_from(r.i32()?).unwrap_or(0),
            metadata: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    Ok(GroupSnapshot {
        generation_id,
        protocol_type,
        protocol_name,
        leader,
        members,
    })
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
        assert_eq!(decode_key(&out), Ok(Some(RecordKey::Offset(key))));
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
            Ok(Some(RecordKey::Group("g".to_owned())))
        );
        assert_eq!(
            decode_key(&[0, 9, 0, 1, b'g']),
            Ok(None),
            "unknown kinds are skipped"
        );
    }

    #[test]
    fn group_metadata_round_trips() {
        let snapshot = GroupSnapshot {
            generation_id: 7,
            protocol_type: Some("consumer".to_owned()),
            protocol_name: Some("range".to_owned()),
            leader: Some("m1".to_owned()),
            members: vec![MemberSnapshot {
                member_id: "m1".to_owned(),
                instance_id: Some("i1".to_owned()),
                client_id: "c".to_owned(),
                client_host: String::new(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 300_000,
                metadata: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let mut out = BytesMut::new();
        encode_group_value(&snapshot, 5, &mut out);
        assert_eq!(decode_group_value(&out), Ok(snapshot));
        let mut key = BytesMut::new();
        encode_group_key("g", &mut key);
        assert_eq!(&key[..], &[0, 2, 0, 1, b'g']);
        assert!(decode_group_value(&out[..out.len() - 1]).is_err());
    }
}
