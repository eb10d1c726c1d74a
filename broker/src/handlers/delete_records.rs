//! DeleteRecords (key 21): moves partitions' log starts (`kafka-delete-records`, the admin
//! clients' `delete_records`). Each partition's answer comes once its log start checkpoint is
//! durable; with one replica there is no follower to wait for, so the timeout is not used.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use spate_wire::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::ops::DeleteRecordsOp;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DeleteRecordsRequest,
) -> Option<ResponseParts> {
    let ops: Vec<DeleteRecordsOp> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| DeleteRecordsOp {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.offset,
            })
        })
        .collect();
    let mut results = core.scatter(ops).await.into_iter();
    let mut response = DeleteRecordsResponse::default();
    for topic in &request.topics {
        let mut out = DeleteRecordsTopicResult::default();
        out.name = topic.name.clone();
        for partition in &topic.partitions {
            let result = results.next().expect("one result per partition");
            let mut p = DeleteRecordsPartitionResult::default();
            p.partition_index = partition.partition_index;
            p.low_watermark = result.low_watermark.0;
            p.error_code = result.error.code();
            out.partitions.push(p);
        }
        response.topics.push(out);
    }
    respond(header, &response)
}
