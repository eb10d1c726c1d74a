//! Property: whatever topics, partitions and records the Fetch encoder is given, kafka-protocol's
//! own `FetchResponse` decoder reads back exactly those values from the concatenated parts.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;
use spate_wire::fetch::{AbortedTransaction, FetchResponseEncoder, Part, PartitionHeader, Records};
use spate_wire::header::CorrelationId;
use spate_wire::types::{LeaderEpoch, Offset, PartitionIndex, ProducerId};
use spate_wire::ErrorCode;

#[derive(Debug, Clone)]
struct PartitionCase {
    index: i32,
    error: ErrorCode,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    aborted: Option<Vec<(i64, i64)>>,
    preferred_read_replica: i32,
    records: Option<Vec<u8>>,
    diverging_epoch: Option<(i32, i64)>,
    current_leader: Option<(i32, i32)>,
}

fn partition_case() -> impl Strategy<Value = PartitionCase> {
    let tagged = (
        prop::option::of((any::<i32>(), any::<i64>())),
        prop::option::of((any::<i32>(), any::<i32>())),
    );
    (
        any::<i32>(),
        prop::sample::select(vec![
            ErrorCode::None,
            ErrorCode::OffsetOutOfRange,
            ErrorCode::NotLeaderOrFollower,
        ]),
        (any::<i64>(), any::<i64>(), any::<i64>()),
        prop::option::of(prop::collection::vec((any::<i64>(), any::<i64>()), 0..3)),
        -1i32..5,
        prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
        tagged,
    )
        .prop_map(
            |(index, error, (hw, lso, lstart), aborted, prr, records, (diverging, leader))| {
                PartitionCase {
                    index,
                    error,
                    high_watermark: hw,
                    last_stable_offset: lso,
                    log_start_offset: lstart,
                    aborted,
                    preferred_read_replica: prr,
                    records,
                    diverging_epoch: diverging,
                    current_leader: leader,
                }
            },
        )
}

fn topics() -> impl Strategy<Value = Vec<(String, Vec<PartitionCase>)>> {
    prop::collection::vec(
        (
            "[a-z._-]{1,20}",
            prop::collection::vec(partition_case(), 0..5),
        ),
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn encoder_output_decodes_to_the_same_values(
        version in 4i16..=12,
        correlation_id in any::<i32>(),
        session_id in any::<i32>(),
        topics in topics(),
    ) {
        let aborted_lists: Vec<Vec<Vec<AbortedTransaction>>> = topics
            .iter()
            .map(|(_, ps)| {
                ps.iter()
                    .map(|p| {
                        p.aborted.iter().flatten().map(|&(pid, first)| AbortedTransaction {
                            producer_id: ProducerId(pid),
                            first_offset: Offset(first),
                        }).collect()
                    })
                    .collect()
            })
            .collect();
        let mut enc = FetchResponseEncoder::new(
            version, CorrelationId(correlation_id), ErrorCode::None, session_id, topics.len(),
        ).unwrap();
        for (t, (name, partitions)) in topics.iter().enumerate() {
            enc.topic(name, partitions.len());
            for (i, p) in partitions.iter().enumerate() {
                let header = PartitionHeader {
                    partition_index: PartitionIndex(p.index),
                    error_code: p.error,
                    high_watermark: Offset(p.high_watermark),
                    last_stable_offset: Offset(p.last_stable_offset),
                    log_start_offset: Offset(p.log_start_offset),
                    aborted_transactions: p.aborted.as_ref().map(|_| &aborted_lists[t][i][..]),
                    preferred_read_replica: p.preferred_read_replica,
                    diverging_epoch: p.diverging_epoch.map(|(e, o)| (LeaderEpoch(e), Offset(o))),
                    current_leader: p.current_leader.map(|(id, e)| (id, LeaderEpoch(e))),
                };
                let records = p.records.as_ref().map(|r| Records { len: r.len(), data: Bytes::from(r.clone()) });
                enc.partition(&header, records);
            }
        }
        let response = enc.finish();

        let mut flat = BytesMut::new();
        let mut records_parts = 0;
        for part in &response.parts {
            match part {
                Part::Bytes(b) => flat.put_slice(b),
                Part::Records(r) => { records_parts += 1; flat.put_slice(r) }
            }
        }
        let expected_records = topics.iter().flat_map(|(_, ps)| ps).filter(|p| p.records.as_ref().is_some_and(|r| !r.is_empty())).count();
        prop_assert_eq!(records_parts, expected_records);
        prop_assert_eq!(flat.len(), response.frame_bytes);
        let mut frame = flat.freeze();
        prop_assert_eq!(frame.get_i32() as usize, frame.len());
        let header = ResponseHeader::decode(&mut frame, if version >= 12 { 1 } else { 0 }).unwrap();
        prop_assert_eq!(header.correlation_id, correlation_id);
        let decoded = FetchResponse::decode(&mut frame, version).unwrap();
        prop_assert!(!frame.has_remaining());
        if version >= 7 {
            prop_assert_eq!(decoded.session_id, session_id);
            prop_assert_eq!(decoded.error_code, 0);
        }
        prop_assert_eq!(decoded.responses.len(), topics.len());
        for ((name, partitions), got) in topics.iter().zip(&decoded.responses) {
            prop_assert_eq!(got.topic.0.as_str(), name.as_str());
            prop_assert_eq!(got.partitions.len(), partitions.len());
            for (want, got) in partitions.iter().zip(&got.partitions) {
                prop_assert_eq!(got.partition_index, want.index);
                prop_assert_eq!(got.error_code, want.error.code());
                prop_assert_eq!(got.high_watermark, want.high_watermark);
                prop_assert_eq!(got.last_stable_offset, want.last_stable_offset);
                if version >= 5 {
                    prop_assert_eq!(got.log_start_offset, want.log_start_offset);
                }
                if version >= 11 {
                    prop_assert_eq!(got.preferred_read_replica.0, want.preferred_read_replica);
                }
                let got_aborted = got.aborted_transactions.as_ref().map(|a| {
                    a.iter().map(|t| (t.producer_id.0, t.first_offset)).collect::<Vec<_>>()
                });
                prop_assert_eq!(&got_aborted, &want.aborted);
                if version >= 12 {
                    let diverging = (got.diverging_epoch.epoch, got.diverging_epoch.end_offset);
                    prop_assert_eq!(diverging, want.diverging_epoch.unwrap_or((-1, -1)));
                    let leader = (got.current_leader.leader_id.0, got.current_leader.leader_epoch);
                    prop_assert_eq!(leader, want.current_leader.unwrap_or((-1, -1)));
                }
                let got_records = got.records.as_ref().map(|r| r.to_vec());
                prop_assert_eq!(&got_records, &want.records);
            }
        }
    }
}
