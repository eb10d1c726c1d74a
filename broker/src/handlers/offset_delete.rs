//! OffsetDelete (key 47): deletes committed offsets of a group, except for topics its members
//! are subscribed to.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use spate_wire::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::{self, GroupAnswer, GroupCall};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: OffsetDeleteRequest,
) -> Option<ResponseParts> {
    let group_id = request.group_id.0.to_string();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let count = partitions.len();
    let result = if group_id.is_empty() {
        Err(ErrorCode::InvalidGroupId)
    } else {
        let call = GroupCall::DeleteOffsets {
            group: group_id.clone(),
            partitions,
        };
        match group::call(core, &group_id, call).await {
            Some(GroupAnswer::DeleteOffsets(result)) => result,
            _ => Err(ErrorCode::CoordinatorNotAvailable),
        }
    };
    let mut response = OffsetDeleteResponse::default();
    match result {
        Err(error) => response.error_code = error.code(),
        Ok(errors) => {
            assert_eq!(errors.len(), count, "one result per partition");
            let mut errors = errors.into_iter();
            for topic in &request.topics {
                let mut t = OffsetDeleteResponseTopic::default();
                t.name = topic.name.clone();
                for p in &topic.partitions {
                    let mut out = OffsetDeleteResponsePartition::default();
                    out.partition_index = p.partition_index;
                    out.error_code = errors.next().expect("one per partition").code();
                    t.partitions.push(out);
                }
                response.topics.push(t);
            }
        }
    }
    respond(header, &response)
}
