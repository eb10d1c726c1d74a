//! ListOffsets (key 2): earliest (-2), latest (-1), the first record at or after a timestamp,
//! or (v7+, KIP-734) the first record with the largest timestamp (-3), all below the high
//! watermark.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use spate_wire::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::ops::ListOffsetsOp;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: ListOffsetsRequest,
) -> Option<ResponseParts> {
    let ops: Vec<ListOffsetsOp> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| ListOffsetsOp {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                timestamp_ms: p.timestamp,
            })
        })
        .collect();
    let mut results = core.scatter(ops).await.into_iter();
    let mut response = ListOffsetsResponse::default();
    for topic in &request.topics {
        let mut out = ListOffsetsTopicResponse::default();
        out.name = topic.name.clone();
        for partition in &topic.partitions {
            let result = results.next().expect("one result per partition");
            let mut p = ListOffsetsPartitionResponse::default();
            p.partition_index = partition.partition_index;
            p.error_code = result.error.code();
            p.offset = result.offset.0;
            p.timestamp = result.timestamp_ms;
            if header.api_version >= 4 && result.error == ErrorCode::None {
                p.leader_epoch = result.leader_epoch.0;
            }
            out.partitions.push(p);
        }
        response.topics.push(out);
    }
    respond(header, &response)
}
