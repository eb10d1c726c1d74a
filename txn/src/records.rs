//! The records of `__transaction_state`, in Kafka's layout (`TransactionLogKey` v0 and
//! `TransactionLogValue` v0, read at apache/kafka trunk, December 2026), so the topic reads the
//! same as Kafka's and compaction keeps the last record per transactional id.
//!
//! Key (big-endian, strings as i16 length + UTF-8): `version: i16 = 0, transactional_id`.
//! Value: `version: i16 = 0, producer_id: i64, producer_epoch: i16, transaction_timeout_ms: i32,
//! transaction_status: i8, partitions: i32 count (-1 = null) of [topic, i32 count of partition:
//! i32], last_update_timestamp_ms: i64, start_timestamp_ms: i64`. A null value (tombstone)
//! removes the transactional id. Kafka writes null partitions for `Empty`; Spate does the same.
//! Value v1 (flexible, with tagged fields) is read too, because a Kafka 4 broker may have
//! written it; Spate writes v0 as Kafka does until `transaction.version` 2.

use std::collections::BTreeSet;

use spate_wire::types::{ProducerEpoch, ProducerId};

use crate::state::{TopicPartition, TxnState};

/// Key version written and read.
pub const KEY_VERSION: i16 = 0;
/// Value version written.
pub const VALUE_VERSION: i16 = 0;
/// Most partitions a stored transaction may list (a corrupt count must not size an allocation).
pub const STORED_PARTITIONS_MAX: usize = 100_000;

/// Why a stored record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes end before the record does.
    #[error("transaction record truncated")]
    Truncated,
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// A key or value version this code does not know.
    #[error("unknown transaction record version {0}")]
    UnknownVersion(i16),
    /// A negative or oversized count.
    #[error("bad count {0}")]
    BadCount(i32),
    /// A transaction status byte outside Kafka's states.
    #[error("unknown transaction status {0}")]
    UnknownStatus(i8),
    /// Bytes left after the record.
    #[error("{0} bytes after the record")]
    Trailing(usize),
}

/// The value of a `__transaction_state` record: what a coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    /// Producer id in use by the transactional id.
    pub producer_id: ProducerId,
    /// Its epoch.
    pub producer_epoch: ProducerEpoch,
    /// The transaction timeout the producer asked for.
    pub timeout_ms: i32,
    /// The state.
    pub state: TxnState,
    /// Partitions in the transaction (empty for `Empty`).
    pub partitions: BTreeSet<TopicPartition>,
    /// When the state last changed.
    pub last_update_ms: i64,
    /// When the transaction started (-1 when none is open).
    pub start_ms: i64,
}

/// One record of `__transaction_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// The key.
    pub transactional_id: String,
    /// The value; `None` is a tombstone.
    pub value: Option<TxnValue>,
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    // Transactional ids and topic names are bounded below i16::MAX by the request guard and topic
    // name rules; a longer one here is a programmer error, not input.
    let len = i16::try_from(text.len()).expect("string fits an i16 length");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

impl StateRecord {
    /// The key's bytes.
    pub fn encode_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.transactional_id.len());
        out.extend_from_slice(&KEY_VERSION.to_be_bytes());
        put_string(&mut out, &self.transactional_id);
        out
    }

    /// The value's bytes, `None` for a tombstone.
    pub fn encode_value(&self) -> Option<Vec<u8>> {
        let v = self.value.as_ref()?;
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&VALUE_VERSION.to_be_bytes());
        out.extend_from_slice(&v.producer_id.0.to_be_bytes());
        out.extend_from_slice(&v.producer_epoch.0.to_be_bytes());
        out.extend_from_slice(&v.timeout_ms.to_be_bytes());
        out.push(v.state.id() as u8);
        if v.state == TxnState::Empty {
            out.extend_from_slice(&(-1i32).to_be_bytes());
        } else {
            let topics = group_by_topic(&v.partitions);
            let count = i32::try_from(topics.len()).expect("partitions are bounded");
            out.extend_from_slice(&count.to_be_bytes());
            for (topic, ids) in topics {
                put_string(&mut out, topic);
                let n = i32::try_from(ids.len()).expect("partitions are bounded");
                out.extend_from_slice(&n.to_be_bytes());
                for id in ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&v.last_update_ms.to_be_bytes());
        out.extend_from_slice(&v.start_ms.to_be_bytes());
        Some(out)
    }

    /// Reads a record back from its key and value (`None` value: tombstone).
    ///
    /// # Errors
    /// A [`RecordError`] for bytes that are not a record of a known version.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<StateRecord, RecordError> {
        let mut k = Reader(key);
        let version = k.i16()?;
        if version != KEY_VERSION {
            return Err(RecordError::UnknownVersion(version));
        }
        let transactional_id = k.string()?;
        k.end()?;
        let value = match value {
            None => None,
            Some(bytes) => Some(decode_value(bytes)?),
        };
        Ok(StateRecord {
            transactional_id,
            value,
        })
    }
}

fn group_by_topic(partitions: &BTreeSet<TopicPartition>) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for tp in partitions {
        match topics.last_mut() {
            Some((topic, ids)) if *topic == tp.topic => ids.push(tp.partition),
            _ => topics.push((&tp.topic, vec![tp.partition])),
        }
    }
    topics
}

fn decode_value(bytes: &[u8]) -> Result<TxnValue, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    let flexible = match version {
        0 => false,
        1 => true,
        other => return Err(RecordError::UnknownVersion(other)),
    };
    let producer_id = ProducerId(r.i64()?);
    let producer_epoch = ProducerEpoch(r.i16()?);
    let timeout_ms = r.i32()?;
    let status = r.i8()?;
    let state = TxnState::from_id(status).ok_or(RecordError::UnknownStatus(status))?;
    let mut partitions = BTreeSet::new();
    let topics = if flexible {
        r.compact_count()?
    } else {
        r.count()?
    };
    for _ in 0..topics.unwrap_or(0) {
        let topic = if flexible {
            r.compact_string()?
        } else {
            r.string()?
        };
        let ids = if flexible {
            r.compact_count()?
        } else {
            r.count()?
        };
        for _ in 0..ids.unwrap_or(0) {
            partitions.insert(TopicPartition::new(&topic, r.i32()?));
            if partitions.len() > STORED_PARTITIONS_MAX {
                return Err(RecordError::BadCount(i32::MAX));
            }
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    if flexible {
        r.skip_tagged_fields()?;
    }
    r.end()?;
    Ok(TxnValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
    })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(self.take(1)?[0] as i8)
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
    fn uvarint(&mut self) -> Result<u32, RecordError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::BadCount(-1))
    }
    fn bounded(n: usize) -> Result<usize, RecordError> {
        if n > STORED_PARTITIONS_MAX {
            return Err(RecordError::BadCount(i32::try_from(n).unwrap_or(i32::MAX)));
        }
        Ok(n)
    }
    /// An i32 array count; -1 is null.
    fn count(&mut self) -> Result<Option<usize>, RecordError> {
        match self.i32()? {
            -1 => Ok(None),
            n if n < 0 => Err(RecordError::BadCount(n)),
            n => Ok(Some(Self::bounded(n as usize)?)),
        }
    }
    /// A compact array count (unsigned varint, length + 1); 0 is null.
    fn compact_count(&mut self) -> Result<Option<usize>, RecordError> {
        match self.uvarint()? {
            0 => Ok(None),
            n => Ok(Some(Self::bounded(n as usize - 1)?)),
        }
    }
    fn utf8(bytes: &[u8]) -> Result<String, RecordError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError::NotUtf8)
    }
    fn string(&mut self) -> Result<String, RecordError> {
        let len = self.i16()?;
        let len = usize::try_from(len).map_err(|_| RecordError::BadCount(i32::from(len)))?;
        Self::utf8(self.take(len)?)
    }
    fn compact_string(&mut self) -> Result<String, RecordError> {
        let len = self.uvarint()? as usize;
        if len == 0 {
            return Err(RecordError::BadCount(-1));
        }
        Self::utf8(self.take(len - 1)?)
    }
    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
    fn end(&self) -> Result<(), RecordError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Trailing(self.0.len()))
        }
    }
}

/// The `__transaction_state` partition of a transactional id: Kafka's
/// `Utils.abs(transactionalId.hashCode) % partitions` with Java's `String.hashCode` over UTF-16
/// code units, so an id lands on the same partition number as in Kafka.
///
/// # Panics
/// If `partitions` is not positive.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0);
    let mut hash: i32 = 0;
    for unit in transactional_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(state: TxnState, partitions: &[(&str, i32)]) -> TxnValue {
        TxnValue {
            producer_id: ProducerId(4000),
            producer_epoch: ProducerEpoch(3),
            timeout_ms: 60_000,
            state,
            partitions: partitions
                .iter()
                .map(|(t, p)| TopicPartition::new(t, *p))
                .collect(),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn ongoing_record_has_kafkas_v0_layout() {
        let record = StateRecord {
            transactional_id: "tx".into(),
            value: Some(value(TxnState::Ongoing, &[("a", 1), ("a", 0), ("b", 2)])),
        };
        assert_eq!(record.encode_key(), vec![0, 0, 0, 2, b't', b'x']);
        let v = record.encode_value().unwrap();
        let mut expected = vec![0, 0];
        expected.extend_from_slice(&4000i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&[0, 1, b'a', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 1, b'b', 0, 0, 0, 1, 0, 0, 0, 2]);
        expected.extend_from_slice(&1_700_000_000_123i64.to_be_bytes());
        expected.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        assert_eq!(v, expected);
        let back = StateRecord::decode(&record.encode_key(), Some(&v)).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn empty_state_writes_null_partitions() {
        let record = StateRecord {
            transactional_id: "t".into(),
            value: Some(value(TxnState::Empty, &[])),
        };
        let v = record.encode_value().unwrap();
        assert_eq!(&v[2 + 8 + 2 + 4 + 1..][..4], &(-1i32).to_be_bytes());
        assert_eq!(
            StateRecord::decode(&record.encode_key(), Some(&v)).unwrap(),
            record
        );
    }

    #[test]
    fn flexible_v1_value_with_tagged_fields_is_read() {
        let mut v = vec![0, 1];
        v.extend_from_slice(&7i64.to_be_bytes());
        v.extend_from_slice(&1i16.to_be_bytes());
        v.extend_from_slice(&1000i32.to_be_bytes());
        v.push(2); // PrepareCommit
        v.push(2); // one topic
        v.extend_from_slice(&[2, b'o']); // compact string "o"
        v.push(3); // two partitions
        v.extend_from_slice(&0i32.to_be_bytes());
        v.extend_from_slice(&5i32.to_be_bytes());
        v.push(0); // topic's tagged fields
        v.extend_from_slice(&10i64.to_be_bytes());
        v.extend_from_slice(&9i64.to_be_bytes());
        v.extend_from_slice(&[1, 0, 8]); // one tagged field: PreviousProducerId
        v.extend_from_slice(&6i64.to_be_bytes());
        let record = StateRecord::decode(&[0, 0, 0, 1, b'x'], Some(&v)).unwrap();
        let value = record.value.unwrap();
        assert_eq!(value.state, TxnState::PrepareCommit);
        assert_eq!(value.partitions.len(), 2);
        assert_eq!(value.start_ms, 9);
    }

    #[test]
    fn partition_matches_javas_string_hash() {
        // "hello".hashCode() == 99162322; 99162322 % 50 == 22.
        assert_eq!(partition_for("hello", 50), 22);
        // "polygenelubricants".hashCode() == i32::MIN, which Utils.abs maps to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }

    proptest! {
        #[test]
        fn records_round_trip(
            id in "[a-z.-]{1,20}",
            pid in 0i64..i64::MAX,
            epoch in 0i16..i16::MAX,
            status in 0i8..8,
            parts in proptest::collection::btree_set(("[a-z]{1,5}", 0i32..100), 0..20),
            last in any::<i64>(),
            start in any::<i64>(),
        ) {
            let state = TxnState::from_id(status).unwrap();
            let partitions = if state == TxnState::Empty {
                BTreeSet::new()
            } else {
                parts.into_iter().map(|(t, p)| TopicPartition::new(&t, p)).collect()
            };
            let record = StateRecord {
                transactional_id: id,
                value: Some(TxnValue {
                    producer_id: ProducerId(pid),
                    producer_epoch: ProducerEpoch(epoch),
                    timeout_ms: 1000,
                    state,
                    partitions,
                    last_update_ms: last,
                    start_ms: start,
                }),
            };
            let value = record.encode_value();
            prop_assert_eq!(StateRecord::decode(&record.encode_key(), value.as_deref()).unwrap(), record);
        }

        #[test]
        fn decoding_garbage_never_panics(key in proptest::collection::vec(any::<u8>(), 0..40),
                                         value in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = StateRecord::decode(&key, Some(&value));
        }
    }
}
