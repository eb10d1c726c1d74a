//! Properties of the cluster protocol codec (`spate_wire::cluster`): every body round-trips
//! through a frame, frames survive any chunking of the stream, any bit flipped in a frame is
//! caught, and no input makes a decoder panic or over-reserve.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use spate_wire::cluster::frame::seal;
use spate_wire::cluster::{
    encode_frame, AlterTopicConfigs, Body, ClusterError, ConfigOp, ControllerAnswer, ControllerApi,
    ControllerRequest, ControllerResponse, CreateTopicResult, EncodedFrame, Envelope,
    EpochEndOffset, EpochEndOffsetQuery, EpochEndOffsetRequest, EpochEndOffsetResponse,
    EpochEndOffsetResult, ErrorBody, FetchPartition, FetchedPartition, FrameDecoder, FrameKind,
    Hello, MetadataBatch, MetadataContent, MetadataFetchRequest, MetadataFetchResponse,
    NewPartitions, NewTopic, Raft, RecordChunks, ReplicaFetchRequest, ReplicaFetchResponse,
    TopicResult, TxnMarker, TxnMarkerResult, TxnMarkersRequest, TxnMarkersResponse,
    TxnVerifyRequest, TxnVerifyResponse, FRAME_HEADER_BYTES, HELLO_VERSION,
    METADATA_FETCH_MAX_BYTES_MAX, METADATA_FETCH_WAIT_MS_MAX, REPLICA_FETCH_MAX_BYTES_MAX,
    REPLICA_FETCH_WAIT_MS_MAX, VERSION_MAX, VERSION_MIN,
};
use spate_wire::types::{LeaderEpoch, Offset, PartitionIndex, ProducerEpoch, ProducerId};
use spate_wire::ErrorCode;

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL)
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        // At most 16 characters of at most 4 bytes: within CLUSTER_ID_BYTES_MAX (64).
        "\\PC{1,16}",
        any::<i32>(),
        any::<u64>(),
        1u16..,
        1u16..,
    )
        .prop_map(|(cluster_id, node_id, incarnation, a, b)| Hello {
            cluster_id,
            node_id,
            incarnation,
            versions_min: a.min(b),
            versions_max: a.max(b),
        })
}

fn raft() -> impl Strategy<Value = Raft> {
    prop::collection::vec(any::<u8>(), 1..300).prop_map(|m| Raft {
        message: Bytes::from(m),
    })
}

fn fetch_partition() -> impl Strategy<Value = FetchPartition> {
    (
        any::<[u8; 16]>(),
        any::<i32>(),
        any::<i64>(),
        any::<i32>(),
        any::<i32>(),
    )
        .prop_map(
            |(topic_id, partition, offset, current, last)| FetchPartition {
                topic_id,
                partition: PartitionIndex(partition),
                fetch_offset: Offset(offset),
                current_leader_epoch: LeaderEpoch(current),
                last_fetched_epoch: LeaderEpoch(last),
                durable_end_offset: Offset(offset / 2),
            },
        )
}

fn fetch_request() -> impl Strategy<Value = ReplicaFetchRequest> {
    (
        any::<i32>(),
        any::<u64>(),
        0..=REPLICA_FETCH_WAIT_MS_MAX,
        0..=REPLICA_FETCH_MAX_BYTES_MAX,
        any::<u32>(),
        prop::collection::vec(fetch_partition(), 0..20),
    )
        .prop_map(
            |(
                replica_node_id,
                replica_incarnation,
                max_wait_ms,
                max_bytes,
                min_pick,
                partitions,
            )| {
                ReplicaFetchRequest {
                    replica_node_id,
                    replica_incarnation,
                    max_wait_ms,
                    min_bytes: min_pick % (max_bytes + 1),
                    max_bytes,
                    partitions,
                }
            },
        )
}

fn diverging() -> impl Strategy<Value = Option<EpochEndOffset>> {
    prop::option::of(
        (
            any::<i32>().prop_filter("-1 means none", |e| *e != -1),
            any::<i64>(),
        )
            .prop_map(|(epoch, end)| EpochEndOffset {
                leader_epoch: LeaderEpoch(epoch),
                end_offset: Offset(end),
            }),
    )
}

fn fetched_partition() -> impl Strategy<Value = FetchedPartition> {
    (
        any::<[u8; 16]>(),
        any::<i32>(),
        error_code(),
        any::<(i64, i64, i32)>(),
        diverging(),
        // As the log hands them out: a few chunks (cached batches are a header and a body).
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..4),
    )
        .prop_map(
            |(topic_id, partition, error_code, (hw, lso, epoch), diverging_epoch, chunks)| {
                FetchedPartition {
                    topic_id,
                    partition: PartitionIndex(partition),
                    error_code,
                    high_watermark: Offset(hw),
                    log_start_offset: Offset(lso),
                    leader_epoch: LeaderEpoch(epoch),
                    diverging_epoch,
                    records: chunks
                        .into_iter()
                        .map(Bytes::from)
                        .collect::<RecordChunks>(),
                }
            },
        )
}

fn fetch_response() -> impl Strategy<Value = ReplicaFetchResponse> {
    (
        error_code(),
        prop::collection::vec(fetched_partition(), 0..10),
    )
        .prop_map(|(error_code, partitions)| ReplicaFetchResponse {
            error_code,
            partitions,
        })
}

fn epoch_request() -> impl Strategy<Value = EpochEndOffsetRequest> {
    let query = (any::<[u8; 16]>(), any::<(i32, i32, i32)>()).prop_map(
        |(topic_id, (partition, current, epoch))| EpochEndOffsetQuery {
            topic_id,
            partition: PartitionIndex(partition),
            current_leader_epoch: LeaderEpoch(current),
            leader_epoch: LeaderEpoch(epoch),
        },
    );
    (any::<i32>(), prop::collection::vec(query, 0..20)).prop_map(|(replica_node_id, partitions)| {
        EpochEndOffsetRequest {
            replica_node_id,
            partitions,
        }
    })
}

fn epoch_response() -> impl Strategy<Value = EpochEndOffsetResponse> {
    let result = (
        any::<[u8; 16]>(),
        any::<i32>(),
        error_code(),
        any::<(i32, i64)>(),
    )
        .prop_map(
            |(topic_id, partition, error_code, (epoch, end))| EpochEndOffsetResult {
                topic_id,
                partition: PartitionIndex(partition),
                error_code,
                end: EpochEndOffset {
                    leader_epoch: LeaderEpoch(epoch),
                    end_offset: Offset(end),
                },
            },
        );
    prop::collection::vec(result, 0..20)
        .prop_map(|partitions| EpochEndOffsetResponse { partitions })
}

fn error_body() -> impl Strategy<Value = ErrorBody> {
    (
        error_code().prop_filter("an error frame needs an error", |c| *c != ErrorCode::None),
        "\\PC{0,40}",
    )
        .prop_map(|(code, message)| ErrorBody::new(code, &message))
}

// Strings of at most N characters of at most 4 bytes: "\\PC{0,30}" is at most 120 bytes, under
// every string limit of the controller bodies (the smallest is 249).
fn short_str() -> impl Strategy<Value = String> {
    "\\PC{0,30}"
}

fn assignment() -> impl Strategy<Value = Option<Vec<Vec<i32>>>> {
    prop::option::of(prop::collection::vec(
        prop::collection::vec(any::<i32>(), 0..5),
        0..6,
    ))
}

fn new_topic() -> impl Strategy<Value = NewTopic> {
    (
        short_str(),
        any::<i32>(),
        any::<i16>(),
        assignment(),
        prop::collection::vec((short_str(), short_str()), 0..4),
    )
        .prop_map(
            |(name, partitions, replication_factor, assignment, configs)| NewTopic {
                name,
                partitions,
                replication_factor,
                assignment,
                configs,
            },
        )
}

fn controller_request() -> impl Strategy<Value = ControllerRequest> {
    prop_oneof![
        (
            any::<(i32, u64, u16, u16)>(),
            short_str(),
            short_str(),
            prop::option::of(short_str()),
        )
            .prop_map(
                |(
                    (node_id, incarnation, client_port, cluster_port),
                    client_host,
                    cluster_host,
                    rack,
                )| {
                    ControllerRequest::RegisterBroker {
                        node_id,
                        incarnation,
                        client_host,
                        client_port,
                        cluster_host,
                        cluster_port,
                        rack,
                    }
                }
            ),
        any::<(i32, u64, bool, u64)>().prop_map(
            |(node_id, incarnation, want_shutdown, metadata_offset)| ControllerRequest::Heartbeat {
                node_id,
                incarnation,
                want_shutdown,
                metadata_offset,
            }
        ),
        (prop::collection::vec(new_topic(), 0..5), any::<bool>()).prop_map(
            |(topics, validate_only)| ControllerRequest::CreateTopics {
                topics,
                validate_only,
            }
        ),
        prop::collection::vec(short_str(), 0..8)
            .prop_map(|names| ControllerRequest::DeleteTopics { names }),
        prop::collection::vec(
            (short_str(), any::<i32>(), assignment()).prop_map(|(name, count, assignment)| {
                NewPartitions {
                    name,
                    count,
                    assignment,
                }
            }),
            0..5,
        )
        .prop_map(|topics| ControllerRequest::CreatePartitions { topics }),
        any::<(i32, u64)>().prop_map(|(node_id, incarnation)| {
            ControllerRequest::AllocateProducerIds {
                node_id,
                incarnation,
            }
        }),
        (prop::collection::vec(alter_topic(), 0..5), any::<bool>()).prop_map(
            |(topics, validate_only)| ControllerRequest::AlterConfigs {
                topics,
                validate_only,
            }
        ),
    ]
}

fn alter_topic() -> impl Strategy<Value = AlterTopicConfigs> {
    let op = (short_str(), any::<u8>(), prop::option::of(short_str()))
        .prop_map(|(key, op, value)| ConfigOp { key, op, value });
    (short_str(), any::<bool>(), prop::collection::vec(op, 0..5)).prop_map(
        |(name, replace_all, ops)| AlterTopicConfigs {
            name,
            replace_all,
            ops,
        },
    )
}

fn topic_result() -> impl Strategy<Value = TopicResult> {
    (short_str(), error_code(), prop::option::of(short_str())).prop_map(
        |(name, error_code, message)| TopicResult {
            name,
            error_code,
            message,
        },
    )
}

fn controller_answer() -> impl Strategy<Value = ControllerAnswer> {
    let create_result = (topic_result(), any::<[u8; 16]>(), any::<i32>()).prop_map(
        |(result, topic_id, partitions)| CreateTopicResult {
            name: result.name,
            error_code: result.error_code,
            message: result.message,
            topic_id,
            partitions,
        },
    );
    prop_oneof![
        Just(ControllerAnswer::RegisterBroker),
        any::<(bool, bool)>().prop_map(|(fenced, should_shut_down)| {
            ControllerAnswer::Heartbeat {
                fenced,
                should_shut_down,
            }
        }),
        prop::collection::vec(create_result, 0..6)
            .prop_map(|results| ControllerAnswer::CreateTopics { results }),
        prop::collection::vec(topic_result(), 0..6)
            .prop_map(|results| ControllerAnswer::DeleteTopics { results }),
        prop::collection::vec(topic_result(), 0..6)
            .prop_map(|results| ControllerAnswer::CreatePartitions { results }),
        any::<(i64, i32)>().prop_map(|(first_id, count)| {
            ControllerAnswer::AllocateProducerIds { first_id, count }
        }),
        (prop::collection::vec(topic_result(), 0..6), any::<u64>()).prop_map(
            |(results, metadata_offset)| ControllerAnswer::AlterConfigs {
                results,
                metadata_offset
            }
        ),
    ]
}

fn controller_response() -> impl Strategy<Value = ControllerResponse> {
    // A leader hint goes with NOT_CONTROLLER only, and is never negative.
    let status = prop_oneof![
        error_code().prop_map(|code| (code, None)),
        prop::option::of(0..=i32::MAX).prop_map(|hint| (ErrorCode::NotController, hint)),
    ];
    (status, prop::option::of(short_str()), controller_answer()).prop_map(
        |((error_code, leader_hint), message, answer)| ControllerResponse {
            error_code,
            leader_hint,
            message,
            answer,
        },
    )
}

fn metadata_fetch_request() -> impl Strategy<Value = MetadataFetchRequest> {
    (
        any::<i32>(),
        any::<u64>(),
        0..=METADATA_FETCH_WAIT_MS_MAX,
        0..=METADATA_FETCH_MAX_BYTES_MAX,
    )
        .prop_map(
            |(node_id, from_offset, max_wait_ms, max_bytes)| MetadataFetchRequest {
                node_id,
                from_offset,
                max_wait_ms,
                max_bytes,
            },
        )
}

fn metadata_content() -> impl Strategy<Value = MetadataContent> {
    prop_oneof![
        prop::collection::vec(
            (any::<u64>(), prop::collection::vec(any::<u8>(), 0..40)),
            0..6
        )
        .prop_map(|batches| MetadataContent::Batches(
            batches
                .into_iter()
                .map(|(offset, records)| MetadataBatch {
                    offset,
                    records: Bytes::from(records)
                })
                .collect()
        )),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..100)).prop_map(|(offset, bytes)| {
            MetadataContent::Snapshot {
                offset,
                bytes: Bytes::from(bytes),
            }
        }),
    ]
}

fn metadata_fetch_response() -> impl Strategy<Value = MetadataFetchResponse> {
    (
        error_code(),
        prop::option::of(0..=i32::MAX),
        any::<u64>(),
        any::<u64>(),
        metadata_content(),
    )
        .prop_map(
            |(error_code, leader_id, leader_term, committed_offset, content)| {
                MetadataFetchResponse {
                    error_code,
                    leader_id,
                    leader_term,
                    committed_offset,
                    content,
                }
            },
        )
}

fn txn_markers_request() -> impl Strategy<Value = TxnMarkersRequest> {
    prop::collection::vec(
        (
            any::<[u8; 16]>(),
            any::<i32>(),
            any::<i64>(),
            any::<i16>(),
            any::<bool>(),
        ),
        0..8,
    )
    .prop_flat_map(|markers| (any::<i32>(), any::<i32>(), Just(markers)))
    .prop_map(|(partition, epoch, markers)| TxnMarkersRequest {
        coordinator_partition: PartitionIndex(partition),
        coordinator_epoch: LeaderEpoch(epoch),
        markers: markers
            .into_iter()
            .map(|(topic_id, partition, pid, epoch, commit)| TxnMarker {
                topic_id,
                partition: PartitionIndex(partition),
                producer_id: ProducerId(pid),
                producer_epoch: ProducerEpoch(epoch),
                commit,
            })
            .collect(),
    })
}

fn txn_markers_response() -> impl Strategy<Value = TxnMarkersResponse> {
    prop::collection::vec((any::<[u8; 16]>(), any::<i32>(), error_code()), 0..8).prop_map(
        |markers| TxnMarkersResponse {
            markers: markers
                .into_iter()
                .map(|(topic_id, partition, error_code)| TxnMarkerResult {
                    topic_id,
                    partition: PartitionIndex(partition),
                    error_code,
                })
                .collect(),
        },
    )
}

fn txn_verify_request() -> impl Strategy<Value = TxnVerifyRequest> {
    (
        short_str(),
        any::<i64>(),
        any::<i16>(),
        prop::collection::vec((short_str(), any::<i32>()), 0..6),
    )
        .prop_map(|(id, pid, epoch, partitions)| TxnVerifyRequest {
            transactional_id: id,
            producer_id: ProducerId(pid),
            producer_epoch: ProducerEpoch(epoch),
            partitions: partitions
                .into_iter()
                .map(|(name, p)| (name, PartitionIndex(p)))
                .collect(),
        })
}

fn txn_verify_response() -> impl Strategy<Value = TxnVerifyResponse> {
    prop_oneof![
        prop::collection::vec(any::<bool>(), 0..10).prop_map(|verified| TxnVerifyResponse {
            error_code: ErrorCode::None,
            verified,
        }),
        error_code().prop_map(|error_code| TxnVerifyResponse {
            error_code,
            verified: Vec::new(),
        }),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        hello().prop_map(Body::Hello),
        raft().prop_map(Body::Raft),
        fetch_request().prop_map(Body::ReplicaFetchRequest),
        fetch_response().prop_map(Body::ReplicaFetchResponse),
        epoch_request().prop_map(Body::EpochEndOffsetRequest),
        epoch_response().prop_map(Body::EpochEndOffsetResponse),
        error_body().prop_map(Body::Error),
        controller_request().prop_map(Body::ControllerRequest),
        controller_response().prop_map(Body::ControllerResponse),
        metadata_fetch_request().prop_map(Body::MetadataFetchRequest),
        metadata_fetch_response().prop_map(Body::MetadataFetchResponse),
        txn_markers_request().prop_map(Body::TxnMarkersRequest),
        txn_markers_response().prop_map(Body::TxnMarkersResponse),
        txn_verify_request().prop_map(Body::TxnVerifyRequest),
        txn_verify_response().prop_map(Body::TxnVerifyResponse),
    ]
}

/// A body with an envelope that fits it: Hello in its version and from its own node.
fn framed_body() -> impl Strategy<Value = (Envelope, Body)> {
    (
        body(),
        any::<u64>(),
        any::<i32>(),
        VERSION_MIN..=VERSION_MAX,
    )
        .prop_map(|(body, correlation_id, sender_node_id, version)| {
            let envelope = match &body {
                Body::Hello(hello) => Envelope::hello(hello.node_id, correlation_id),
                _ => Envelope {
                    version,
                    correlation_id,
                    sender_node_id,
                },
            };
            (envelope, body)
        })
}

fn flatten(encoded: &EncodedFrame) -> Vec<u8> {
    let bytes = encoded.to_bytes().to_vec();
    assert_eq!(bytes.len(), encoded.frame_bytes);
    bytes
}

const FUZZ_PAYLOAD_BYTES_MAX: usize = 64 * 1024;

/// Feeds `stream` in `chunk`-byte reads and checks, on every call, what must hold for any input.
fn feed(stream: &[u8], chunk: usize) {
    let decoder = FrameDecoder::new(FUZZ_PAYLOAD_BYTES_MAX);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.put_slice(piece);
        loop {
            let before = buf.len();
            let missing = decoder.bytes_missing(&buf);
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert_eq!(missing, Ok(0));
                    assert_eq!(before - buf.len(), FRAME_HEADER_BYTES + frame.payload.len());
                    // Whatever the body decoder says, it says it without panicking.
                    let _ = Body::decode(&frame);
                }
                Ok(None) => {
                    assert!(matches!(missing, Ok(n) if n > 0));
                    assert!(
                        buf.capacity()
                            <= 2 * (FRAME_HEADER_BYTES + FUZZ_PAYLOAD_BYTES_MAX) + stream.len()
                    );
                    break;
                }
                Err(_) => {
                    assert_eq!(buf.len(), before, "buffer untouched on error");
                    return;
                }
            }
        }
    }
}

proptest! {
    /// Encoding a body and decoding the frame gives back the envelope, the kind and the body.
    #[test]
    fn every_body_round_trips_through_a_frame((envelope, body) in framed_body()) {
        let encoded = encode_frame(&envelope, &body);
        let mut buf = BytesMut::from(&flatten(&encoded)[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().expect("whole frame");
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frame.envelope, envelope);
        prop_assert_eq!(frame.kind, body.kind());
        prop_assert_eq!(Body::decode(&frame).unwrap(), body);
    }

    /// Frames written back to back and read in arbitrary chunk sizes come out whole, in order.
    #[test]
    fn frames_survive_any_chunking(
        frames in prop::collection::vec(framed_body(), 0..8),
        chunk in 1usize..97,
    ) {
        let mut stream = Vec::new();
        for (envelope, body) in &frames {
            stream.extend_from_slice(&flatten(&encode_frame(envelope, body)));
        }
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.put_slice(piece);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                got.push((frame.envelope, Body::decode(&frame).unwrap()));
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    /// Any single bit flipped anywhere in a frame is refused: in the magic as a bad magic, in
    /// the rest of the header by the header CRC, in the payload by the frame CRC.
    #[test]
    fn a_flipped_bit_anywhere_is_caught((envelope, body) in framed_body(), bit_pick in any::<u64>()) {
        let mut bytes = flatten(&encode_frame(&envelope, &body));
        let bit = (bit_pick % (bytes.len() as u64 * 8)) as usize;
        bytes[bit / 8] ^= 1 << (bit % 8);
        let result = FrameDecoder::default().decode(&mut BytesMut::from(&bytes[..]));
        let caught_as_expected = match bit / 8 {
            0..4 => matches!(result, Err(ClusterError::BadMagic { .. })),
            4..32 => matches!(result, Err(ClusterError::HeaderCrcMismatch { .. })),
            _ => matches!(result, Err(ClusterError::CrcMismatch { .. })),
        };
        prop_assert!(caught_as_expected, "bit {} of {}: {:?}", bit, bytes.len() * 8, result);
    }

    /// Arbitrary bytes, in arbitrary reads, never make the frame decoder panic or reserve more
    /// than one frame.
    #[test]
    fn arbitrary_streams_never_panic(stream in prop::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..64) {
        feed(&stream, chunk);
    }

    /// Arbitrary bytes behind a valid (sealed) header of any kind reach the body decoders and
    /// never make them panic; whatever they accept encodes back to the same bytes.
    #[test]
    fn arbitrary_payloads_never_panic_and_accepted_ones_are_canonical(
        kind in prop::sample::select(&FrameKind::ALL[..]),
        payload in prop::collection::vec(any::<u8>(), 0..600),
        sender_node_id in any::<i32>(),
    ) {
        let envelope = if kind == FrameKind::Hello {
            Envelope::hello(sender_node_id, 1)
        } else {
            Envelope { version: VERSION_MAX, correlation_id: 1, sender_node_id }
        };
        let payload = Bytes::from(payload);
        if let Ok(body) = Body::decode_payload(kind, envelope.version, &payload) {
            prop_assert_eq!(body.kind(), kind);
            let again = encode_frame(&envelope, &body).to_bytes();
            prop_assert_eq!(&again[FRAME_HEADER_BYTES..], &payload[..]);
        }
        // The same payload behind a sealed header, through the stream decoder.
        let mut frame = vec![0u8; FRAME_HEADER_BYTES];
        frame[..4].copy_from_slice(b"SPCL");
        let version = if kind == FrameKind::Hello { HELLO_VERSION } else { VERSION_MAX };
        frame[4..6].copy_from_slice(&version.to_be_bytes());
        frame[6] = kind.code();
        frame[8..12].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        seal(&mut frame);
        let decoded = FrameDecoder::default().decode(&mut BytesMut::from(&frame[..])).unwrap().unwrap();
        prop_assert_eq!(&decoded.payload, &payload);
        feed(&frame, 7);
    }

    /// Every controller request and response passes its own limit check and round-trips
    /// through a frame; a response keeps its request's api.
    #[test]
    fn controller_rpcs_validate_and_round_trip(
        request in controller_request(),
        response in controller_response(),
        correlation_id in any::<u64>(),
    ) {
        prop_assert_eq!(request.validate(), Ok(()));
        prop_assert_eq!(response.validate(), Ok(()));
        let envelope = Envelope { version: VERSION_MAX, correlation_id, sender_node_id: 1 };
        for body in [Body::ControllerRequest(request), Body::ControllerResponse(response)] {
            let bytes = flatten(&encode_frame(&envelope, &body));
            let frame = FrameDecoder::default()
                .decode(&mut BytesMut::from(&bytes[..]))
                .unwrap()
                .expect("whole frame");
            prop_assert_eq!(frame.kind, body.kind());
            prop_assert_eq!(Body::decode(&frame).unwrap(), body);
        }
    }

    /// Controller bodies with one byte overwritten (a count, a length, a flag, an api) never
    /// make the decoder panic, and whatever it accepts encodes back to the same bytes.
    #[test]
    fn damaged_controller_bodies_never_panic_and_accepted_ones_are_canonical(
        request in controller_request(),
        response in controller_response(),
        at_pick in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let envelope = Envelope { version: VERSION_MAX, correlation_id: 1, sender_node_id: 1 };
        for body in [Body::ControllerRequest(request), Body::ControllerResponse(response)] {
            let kind = body.kind();
            let mut payload = flatten(&encode_frame(&envelope, &body))[FRAME_HEADER_BYTES..].to_vec();
            let at = at_pick % payload.len();
            payload[at] = byte;
            let payload = Bytes::from(payload);
            if let Ok(decoded) = Body::decode_payload(kind, VERSION_MAX, &payload) {
                let again = encode_frame(&envelope, &decoded).to_bytes();
                prop_assert_eq!(&again[FRAME_HEADER_BYTES..], &payload[..]);
            }
        }
    }

    /// Metadata fetch bodies with one byte overwritten (a count, a length, the content byte)
    /// never make the decoder panic, and whatever it accepts encodes back to the same bytes.
    #[test]
    fn damaged_metadata_fetch_bodies_never_panic_and_accepted_ones_are_canonical(
        request in metadata_fetch_request(),
        response in metadata_fetch_response(),
        at_pick in any::<usize>(),
        byte in any::<u8>(),
    ) {
        prop_assert_eq!(response.validate(), Ok(()));
        let envelope = Envelope { version: VERSION_MAX, correlation_id: 1, sender_node_id: 1 };
        for body in [Body::MetadataFetchRequest(request), Body::MetadataFetchResponse(response)] {
            let kind = body.kind();
            let mut payload = flatten(&encode_frame(&envelope, &body))[FRAME_HEADER_BYTES..].to_vec();
            let at = at_pick % payload.len();
            payload[at] = byte;
            let payload = Bytes::from(payload);
            if let Ok(decoded) = Body::decode_payload(kind, VERSION_MAX, &payload) {
                let again = encode_frame(&envelope, &decoded).to_bytes();
                prop_assert_eq!(&again[FRAME_HEADER_BYTES..], &payload[..]);
            }
        }
    }

    /// Arbitrary bytes after a valid api byte reach each controller decoder and never make it
    /// panic; whatever it accepts encodes back to the same bytes.
    #[test]
    fn arbitrary_controller_payloads_never_panic(
        response in any::<bool>(),
        api in prop::sample::select(&ControllerApi::ALL[..]),
        rest in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let kind = if response { FrameKind::ControllerResponse } else { FrameKind::ControllerRequest };
        let mut payload = vec![api.code()];
        payload.extend_from_slice(&rest);
        let payload = Bytes::from(payload);
        if let Ok(body) = Body::decode_payload(kind, VERSION_MAX, &payload) {
            let envelope = Envelope { version: VERSION_MAX, correlation_id: 1, sender_node_id: 1 };
            let again = encode_frame(&envelope, &body).to_bytes();
            prop_assert_eq!(&again[FRAME_HEADER_BYTES..], &payload[..]);
        }
    }

    /// A sealed header may claim any length: the decoder refuses it over the limit, and below
    /// it reserves at most that one frame.
    #[test]
    fn any_claimed_length_is_bounded(payload_bytes in any::<u32>(), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut frame = vec![0u8; FRAME_HEADER_BYTES];
        frame[..4].copy_from_slice(b"SPCL");
        frame[4..6].copy_from_slice(&VERSION_MAX.to_be_bytes());
        frame[6] = FrameKind::Raft.code();
        frame[8..12].copy_from_slice(&payload_bytes.to_be_bytes());
        seal(&mut frame); // header CRC right; the frame CRC covers an empty payload
        frame.extend_from_slice(&tail);
        let decoder = FrameDecoder::new(FUZZ_PAYLOAD_BYTES_MAX);
        let mut buf = BytesMut::from(&frame[..]);
        match decoder.decode(&mut buf) {
            Err(ClusterError::FrameTooLarge { .. }) => prop_assert!(payload_bytes as usize > FUZZ_PAYLOAD_BYTES_MAX),
            Err(ClusterError::CrcMismatch { .. }) => prop_assert!(payload_bytes as usize <= tail.len()),
            Ok(None) => {
                prop_assert!(payload_bytes as usize > tail.len());
                prop_assert!(buf.capacity() <= 2 * (FRAME_HEADER_BYTES + FUZZ_PAYLOAD_BYTES_MAX));
            }
            Ok(Some(frame)) => {
                // Only an empty payload matches the CRC that seal computed.
                prop_assert_eq!(payload_bytes, 0);
                prop_assert!(frame.payload.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

/// Writes seeds for the `cluster_frame` fuzz target: one frame of each kind, as this encoder
/// writes them, and all of them back to back, each behind the target's mode byte (raw mode,
/// 64-byte reads). Run by hand after a layout change:
/// `cargo test -p spate-wire --test cluster_props -- --ignored write_cluster_frame_fuzz_seeds`
#[test]
#[ignore = "writes files into wire/fuzz/corpus"]
fn write_cluster_frame_fuzz_seeds() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/cluster_frame");
    std::fs::create_dir_all(&dir).unwrap();
    let rng = TestRng::deterministic_rng(Config::default().rng_algorithm);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let mut all = vec![0x3f];
    let mut written = 0;
    for kind in FrameKind::ALL {
        // Small values of each kind: draw until the strategy gives this kind and a short frame.
        let frame = loop {
            let (envelope, body) = framed_body().new_tree(&mut runner).unwrap().current();
            let encoded = encode_frame(&envelope, &body);
            if body.kind() == kind && encoded.frame_bytes <= 512 {
                break flatten(&encoded);
            }
        };
        let mut seed = vec![0x3f];
        seed.extend_from_slice(&frame);
        all.extend_from_slice(&frame);
        std::fs::write(dir.join(format!("seed-{kind:?}")), &seed).unwrap();
        written += 1;
    }
    std::fs::write(dir.join("seed-all-kinds"), &all).unwrap();
    assert_eq!(written, FrameKind::ALL.len());
}
