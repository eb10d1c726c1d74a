//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch. With one broker there is
//! one epoch per partition, so the answer is the log end for any epoch up to it.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use spate_wire::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::ops::EpochEndOp;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: OffsetForLeaderEpochRequest,
) -> Option<ResponseParts> {
    let ops: Vec<EpochEndOp> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| EpochEndOp {
                topic: t.topic.0.to_string(),
                partition: p.partition,
                leader_epoch: p.leader_epoch,
                current_leader_epoch: super::current_leader_epoch(
                    header.api_version,
                    2,
                    p.current_leader_epoch,
                ),
            })
        })
        .collect();
    let mut results = core.scatter(ops).await.into_iter();
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in &request.topics {
        let mut out = OffsetForLeaderTopicResult::default();
        out.topic = topic.topic.clone();
        for partition in &topic.partitions {
            let result = results.next().expect("one result per partition");
            let mut p = EpochEndOffset::default();
            p.partition = partition.partition;
            p.error_code = result.error.code();
            p.leader_epoch = result.leader_epoch;
            p.end_offset = result.end_offset.0;
            out.partitions.push(p);
        }
        response.topics.push(out);
    }
    respond(header, &response)
}
