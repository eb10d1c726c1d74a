//! Sans-I/O request encoding and response decoding, and the API versions the client speaks.
//!
//! What is guarded against a misbehaving broker: the frame size (`response_bytes_max`, checked
//! before anything is reserved), the correlation id (must match the oldest request in flight),
//! and record batches (CRC-checked and bounded decompression in the consumer). What is not:
//! kafka-protocol's decoders size `Vec`s from counts read off the wire, so a hostile broker can
//! still make one response allocate more than its frame size. The broker is semi-trusted.

use bytes::{Buf, Bytes, BytesMut};
use spate_wire::frame::{finish_frame, start_frame};
use spate_wire::header::{
    request_header_version, response_header_version, CorrelationId, RequestHeader,
    ResponseHeaderVersion,
};
use spate_wire::kafka_protocol::messages::ApiKey;
use spate_wire::kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::ClientError;

/// Produce version used: v9 is flexible and the newest before KIP-951 leader hints matter.
pub const PRODUCE_VERSION: i16 = 9;
/// InitProducerId version used (the newest Spate serves).
pub const INIT_PRODUCER_ID_VERSION: i16 = 4;
/// Fetch version used: the newest Spate serves by topic name (13+ use topic ids).
pub const FETCH_VERSION: i16 = 12;
/// ListOffsets version used.
pub const LIST_OFFSETS_VERSION: i16 = 7;
/// Metadata version used.
pub const METADATA_VERSION: i16 = 12;
/// CreateTopics version used.
pub const CREATE_TOPICS_VERSION: i16 = 7;
/// DeleteTopics version used (v6 names topics in `topics`, not `topic_names`).
pub const DELETE_TOPICS_VERSION: i16 = 6;

/// ListGroups version used (v4 reports each group's state).
pub const LIST_GROUPS_VERSION: i16 = 4;
/// DescribeGroups version used.
pub const DESCRIBE_GROUPS_VERSION: i16 = 5;
/// OffsetFetch version used (the last with one group per request).
pub const OFFSET_FETCH_VERSION: i16 = 7;
/// OffsetCommit version used.
pub const OFFSET_COMMIT_VERSION: i16 = 8;
/// DeleteGroups version used.
pub const DELETE_GROUPS_VERSION: i16 = 2;
/// FindCoordinator version used (v3: flexible, one key per request).
pub const FIND_COORDINATOR_VERSION: i16 = 3;
/// DescribeCluster version used (v2 can list fenced brokers).
pub const DESCRIBE_CLUSTER_VERSION: i16 = 2;
/// DescribeQuorum version used (v1 adds the fetch and caught-up times).
pub const DESCRIBE_QUORUM_VERSION: i16 = 1;
/// ElectLeaders version the admin client asks for at most (v1 adds the election type).
pub const ELECT_LEADERS_VERSION: i16 = 2;
/// IncrementalAlterConfigs version the admin client asks for at most.
pub const INCREMENTAL_ALTER_CONFIGS_VERSION: i16 = 1;
/// DescribeConfigs version the admin client asks for at most (v3 adds config types).
pub const DESCRIBE_CONFIGS_VERSION: i16 = 4;
/// CreatePartitions version the admin client asks for at most (v2 is flexible).
pub const CREATE_PARTITIONS_VERSION: i16 = 3;
/// UnregisterBroker version used (Kafka has only v0).
pub const UNREGISTER_BROKER_VERSION: i16 = 0;
/// DeleteRecords version used (v2 is flexible; Spate serves 0 to 2).
pub const DELETE_RECORDS_VERSION: i16 = 2;
/// AlterPartitionReassignments version the admin client asks for at most.
pub const ALTER_PARTITION_REASSIGNMENTS_VERSION: i16 = 0;
/// ListPartitionReassignments version the admin client asks for at most.
pub const LIST_PARTITION_REASSIGNMENTS_VERSION: i16 = 0;
/// DescribeLogDirs version the admin client asks for at most (v2+ carry Spate's log end tag).
pub const DESCRIBE_LOG_DIRS_VERSION: i16 = 4;
/// ApiVersions version used.
pub const API_VERSIONS_VERSION: i16 = 3;

/// Default bound on a response frame: a Fetch answer is bounded by the request's `max_bytes`
/// (the consumer's default is 50 MiB), plus framing.
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Appends one size-prefixed request frame to `out`.
///
/// # Errors
/// [`ClientError::Codec`] if kafka-protocol cannot encode `body` at `version` (a field the
/// version cannot carry).
pub fn encode_request<R: Encodable>(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: CorrelationId,
    client_id: &Bytes,
    body: &R,
) -> Result<(), ClientError> {
    let at = start_frame(out);
    let header = RequestHeader {
        api_key,
        api_version: version,
        correlation_id,
        client_id: Some(client_id.clone()),
        version: request_header_version(api_key, version),
    };
    header.encode(out);
    if let Err(e) = body.encode(out, version) {
        out.truncate(at);
        return Err(ClientError::Codec {
            api_key,
            version,
            reason: e.to_string(),
        });
    }
    finish_frame(out, at, 0);
    Ok(())
}

/// Reads the response header off `frame` (a whole frame without its size prefix), leaving the
/// body, and returns the correlation id.
///
/// # Errors
/// [`spate_wire::WireError::Truncated`] (as [`ClientError::Wire`]) if the frame is too short;
/// [`ClientError::Codec`] for a malformed tagged-field section.
pub fn decode_response_header(
    frame: &mut Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<CorrelationId, ClientError> {
    if frame.len() < 4 {
        return Err(spate_wire::WireError::Truncated {
            needed: 4,
            available: frame.len(),
        }
        .into());
    }
    let header_version = match response_header_version(api_key, version) {
        ResponseHeaderVersion::V0 => 0,
        ResponseHeaderVersion::V1 => 1,
    };
    let header =
        spate_wire::kafka_protocol::messages::ResponseHeader::decode(frame, header_version)
            .map_err(|e| ClientError::Codec {
                api_key,
                version,
                reason: e.to_string(),
            })?;
    Ok(CorrelationId(header.correlation_id))
}

/// Decodes a response body; record data stays a zero-copy slice of `body`.
///
/// # Errors
/// [`ClientError::Codec`] if the body does not parse or has bytes left over.
pub fn decode_response<T: Decodable>(
    mut body: Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<T, ClientError> {
    let codec = |reason: String| ClientError::Codec {
        api_key,
        version,
        reason,
    };
    let value = T::decode(&mut body, version).map_err(|e| codec(e.to_string()))?;
    if body.has_remaining() {
        return Err(codec(format!("{} bytes after the body", body.remaining())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use spate_wire::frame::FrameDecoder;
    use spate_wire::kafka_protocol::messages::produce_request::{
        PartitionProduceData, TopicProduceData,
    };
    use spate_wire::kafka_protocol::messages::{
        MetadataResponse, ProduceRequest, RequestHeader as KpRequestHeader, TopicName,
    };
    use spate_wire::kafka_protocol::protocol::StrBytes;

    #[test]
    fn produce_request_round_trips_through_kafka_protocol() {
        let records = Bytes::from_static(b"not really a batch but opaque here");
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1234)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(3)
                    .with_records(Some(records.clone()))])]);
        let mut out = BytesMut::new();
        let client_id = Bytes::from_static(b"spate-test");
        encode_request(
            &mut out,
            ApiKey::Produce,
            PRODUCE_VERSION,
            CorrelationId(77),
            &client_id,
            &request,
        )
        .unwrap();
        let mut frame = FrameDecoder::default().decode(&mut out).unwrap().unwrap();
        assert!(out.is_empty());
        let header = KpRequestHeader::decode(&mut frame, 2).unwrap();
        assert_eq!(header.request_api_key, ApiKey::Produce as i16);
        assert_eq!(header.request_api_version, PRODUCE_VERSION);
        assert_eq!(header.correlation_id, 77);
        assert_eq!(header.client_id.as_deref(), Some("spate-test"));
        let decoded = ProduceRequest::decode(&mut frame, PRODUCE_VERSION).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(frame.len(), 0);
    }

    #[test]
    fn flexible_response_header_is_read_and_body_left() {
        let body = MetadataResponse::default().with_controller_id(7.into());
        let mut buf = BytesMut::new();
        buf.put_i32(42); // correlation id
        buf.put_u8(0); // empty tagged fields (header v1)
        body.encode(&mut buf, METADATA_VERSION).unwrap();
        let mut frame = buf.freeze();
        let id = decode_response_header(&mut frame, ApiKey::Metadata, METADATA_VERSION).unwrap();
        assert_eq!(id, CorrelationId(42));
        let decoded: MetadataResponse =
            decode_response(frame, ApiKey::Metadata, METADATA_VERSION).unwrap();
        assert_eq!(decoded.controller_id.0, 7);
    }

    #[test]
    fn trailing_bytes_after_a_body_are_an_error() {
        let mut buf = BytesMut::new();
        MetadataResponse::default()
            .encode(&mut buf, METADATA_VERSION)
            .unwrap();
        buf.put_u8(0xff);
        let err =
            decode_response::<MetadataResponse>(buf.freeze(), ApiKey::Metadata, METADATA_VERSION)
                .unwrap_err();
        assert!(matches!(err, ClientError::Codec { .. }), "{err}");
    }

    #[test]
    fn short_response_frame_is_truncated() {
        let mut frame = Bytes::from_static(&[0, 1]);
        let err = decode_response_header(&mut frame, ApiKey::Fetch, FETCH_VERSION).unwrap_err();
        assert!(matches!(err, ClientError::Wire(_)), "{err}");
    }
}
