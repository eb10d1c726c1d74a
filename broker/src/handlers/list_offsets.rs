//! ListOffsets (key 2): earliest (-2), latest (-1), the first record at or after a timestamp,
//! or (v7+, KIP-734) the first record with the largest timestamp (-3), all below the high
//! watermark.
//!
//! Checked here before any partition is asked, as Kafka's `ReplicaManager.fetchOffset` does: a
//! partition named twice gets INVALID_REQUEST on each entry, and a special timestamp newer than
//! the request's version (-3 before v7) UNSUPPORTED_VERSION. The owning partition checks the
//! client's current leader epoch (v4+).

use std::collections::HashMap;

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use spate_wire::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::ops::{Isolation, ListOffsetsOp};

/// KIP-734's timestamp: the offset of the largest timestamp, from v7 on.
const MAX_TIMESTAMP: i64 = -3;
const MAX_TIMESTAMP_VERSION_MIN: i16 = 7;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: ListOffsetsRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let mut named: HashMap<(&str, i32), usize> = HashMap::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            *named
                .entry((topic.name.0.as_str(), partition.partition_index))
                .or_default() += 1;
        }
    }
    // Per partition, in request order: Ok(index into ops) or an error decided here.
    let mut ops = Vec::new();
    let mut plan: Vec<Result<usize, ErrorCode>> = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let step = if named[&(topic.name.0.as_str(), p.partition_index)] > 1 {
                Err(ErrorCode::InvalidRequest)
            } else if p.timestamp == MAX_TIMESTAMP && version < MAX_TIMESTAMP_VERSION_MIN {
                Err(ErrorCode::UnsupportedVersion)
            } else {
                ops.push(ListOffsetsOp {
                    topic: topic.name.0.to_string(),
                    partition: p.partition_index,
                    timestamp_ms: p.timestamp,
                    current_leader_epoch: super::current_leader_epoch(
                        version,
                        4,
                        p.current_leader_epoch,
                    ),
                    isolation: if request.isolation_level == 1 {
                        Isolation::ReadCommitted
                    } else {
                        Isolation::ReadUncommitted
                    },
                });
                Ok(ops.len() - 1)
            };
            plan.push(step);
        }
    }
    let results = core.scatter(ops).await;
    let mut plan = plan.into_iter();
    let mut response = ListOffsetsResponse::default();
    for topic in &request.topics {
        let mut out = ListOffsetsTopicResponse::default();
        out.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut p = ListOffsetsPartitionResponse::default();
            p.partition_index = partition.partition_index;
            match plan.next().expect("one step per partition") {
                Ok(i) => {
                    let result = &results[i];
                    p.error_code = result.error.code();
                    p.offset = result.offset.0;
                    p.timestamp = result.timestamp_ms;
                    if version >= 4 && result.error == ErrorCode::None {
                        p.leader_epoch = result.leader_epoch.0;
                    }
                }
                Err(error) => {
                    p.error_code = error.code();
                    p.offset = -1;
                    p.timestamp = -1;
                }
            }
            out.partitions.push(p);
        }
        response.topics.push(out);
    }
    respond(header, &response)
}
