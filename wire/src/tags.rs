//! Spate's own tagged fields in Kafka messages: facts a Kafka message has no field for, carried
//! where Kafka's flexible versions allow any tag. A Kafka client skips tags it does not know,
//! so these change nothing for it; Spate's admin client reads them.
//!
//! Kafka numbers each struct's tags from 0 up as it adds fields; Spate's sit far above that
//! ([`SPATE_TAG_MIN`]), so a tag Kafka adds later cannot be misread as one of Spate's.
//!
//! Invariants: a tag is written only into a flexible version of its message (kafka-protocol
//! drops unknown tags when encoding an older one); a value that does not decode is treated as
//! absent, never as an error (it came from some other broker's extension).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::types::Offset;

/// Where Spate's tags start.
pub const SPATE_TAG_MIN: i32 = 10_000;

/// DescribeLogDirs v2+, on a partition: this replica's log end offset (8 bytes, big-endian),
/// so an admin client can tell how far each replica is behind its leader's log end. Kafka's
/// `offset_lag` cannot: it is measured against the replica's own high watermark, which never
/// passes its log end.
pub const LOG_END_OFFSET_TAG: i32 = SPATE_TAG_MIN;

/// Writes `offset` as [`LOG_END_OFFSET_TAG`] into a message's tagged fields.
pub fn put_log_end_offset(fields: &mut BTreeMap<i32, Bytes>, offset: Offset) {
    fields.insert(
        LOG_END_OFFSET_TAG,
        Bytes::copy_from_slice(&offset.0.to_be_bytes()),
    );
}

/// The [`LOG_END_OFFSET_TAG`] of a message's tagged fields, if present and well formed.
pub fn log_end_offset(fields: &BTreeMap<i32, Bytes>) -> Option<Offset> {
    let bytes: [u8; 8] = fields.get(&LOG_END_OFFSET_TAG)?.as_ref().try_into().ok()?;
    let offset = i64::from_be_bytes(bytes);
    (offset >= 0).then_some(Offset(offset))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_log_dirs_response::DescribeLogDirsPartition;
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;

    #[test]
    fn the_log_end_offset_survives_a_flexible_describe_log_dirs_and_is_dropped_by_v1() {
        let mut p = DescribeLogDirsPartition::default();
        p.partition_index = 3;
        p.offset_lag = 0;
        put_log_end_offset(&mut p.unknown_tagged_fields, Offset(1520));
        for version in 2..=4 {
            let mut buf = bytes::BytesMut::new();
            p.encode(&mut buf, version).unwrap();
            let back = DescribeLogDirsPartition::decode(&mut buf.freeze(), version).unwrap();
            assert_eq!(
                log_end_offset(&back.unknown_tagged_fields),
                Some(Offset(1520))
            );
            assert_eq!(back.partition_index, 3);
        }
        let mut buf = bytes::BytesMut::new();
        p.encode(&mut buf, 1).unwrap();
        let back = DescribeLogDirsPartition::decode(&mut buf.freeze(), 1).unwrap();
        assert_eq!(log_end_offset(&back.unknown_tagged_fields), None);
    }

    #[test]
    fn a_malformed_or_negative_log_end_offset_reads_as_absent() {
        let mut fields = BTreeMap::new();
        assert_eq!(log_end_offset(&fields), None);
        fields.insert(LOG_END_OFFSET_TAG, Bytes::from_static(&[1, 2, 3]));
        assert_eq!(log_end_offset(&fields), None);
        put_log_end_offset(&mut fields, Offset(-1));
        assert_eq!(log_end_offset(&fields), None);
        put_log_end_offset(&mut fields, Offset(0));
        assert_eq!(log_end_offset(&fields), Some(Offset(0)));
    }
}
