//! SyncGroup (key 14): the leader hands in the assignment; every member gets its own.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use spate_wire::kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use spate_wire::ErrorCode;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::state::{SyncRequest, SyncResponse};
use crate::group::{self, GroupAnswer, GroupCall};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: SyncGroupRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let group_id = request.group_id.0.to_string();
    let response = if group_id.is_empty() {
        SyncResponse::error(ErrorCode::InvalidGroupId)
    } else {
        let sync = SyncRequest {
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            generation_id: request.generation_id,
            protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
            protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
            assignments: request
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        };
        let call = GroupCall::Sync {
            group: group_id.clone(),
            request: sync,
        };
        match group::call(core, &group_id, call).await {
            Some(GroupAnswer::Sync(response)) => response,
            _ => SyncResponse::error(ErrorCode::CoordinatorNotAvailable),
        }
    };
    let mut out = SyncGroupResponse::default();
    out.error_code = response.error.code();
    if version >= 5 {
        out.protocol_type = response.protocol_type.as_deref().map(str_bytes);
        out.protocol_name = response.protocol_name.as_deref().map(str_bytes);
    }
    out.assignment = response.assignment;
    respond(header, &out)
}
