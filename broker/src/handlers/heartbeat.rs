//! Heartbeat (key 12): a member is alive; tells it when a rebalance is under way.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use spate_wire::kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::{self, GroupAnswer, GroupCall};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: HeartbeatRequest,
) -> Option<ResponseParts> {
    let group_id = request.group_id.0.to_string();
    let error = if group_id.is_empty() {
        ErrorCode::InvalidGroupId
    } else {
        let call = GroupCall::Heartbeat {
            group: group_id.clone(),
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            generation_id: request.generation_id,
        };
        match group::call(core, &group_id, call).await {
            Some(GroupAnswer::Error(error)) => error,
            _ => ErrorCode::CoordinatorNotAvailable,
        }
    };
    let mut out = HeartbeatResponse::default();
    out.error_code = error.code();
    respond(header, &out)
}
