//! LeaveGroup (key 13): members leave (v3+: several at once, by member or instance id).

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use spate_wire::kafka_protocol::messages::leave_group_response::{
    LeaveGroupResponse, MemberResponse,
};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::state::LeavingMember;
use crate::group::{self, GroupAnswer, GroupCall};

/// Members one LeaveGroup may name: bounds the response.
const MEMBERS_PER_REQUEST_MAX: usize = 10_000;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: LeaveGroupRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let group_id = request.group_id.0.to_string();
    let members: Vec<LeavingMember> = if version >= 3 {
        request
            .members
            .iter()
            .take(MEMBERS_PER_REQUEST_MAX)
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            instance_id: None,
        }]
    };
    // Ok: one error per member; Err: one for the whole request (the group id is empty or
    // unknown, or its coordinator unreachable), as Kafka answers those.
    let errors: Result<Vec<ErrorCode>, ErrorCode> = if group_id.is_empty() {
        Err(ErrorCode::InvalidGroupId)
    } else {
        let call = GroupCall::Leave {
            group: group_id.clone(),
            members: members.clone(),
        };
        match group::call(core, &group_id, call).await {
            Some(GroupAnswer::Errors(errors)) => Ok(errors),
            Some(GroupAnswer::Error(error)) => Err(error),
            _ => Err(ErrorCode::CoordinatorNotAvailable),
        }
    };
    let errors = match errors {
        Ok(errors) => errors,
        Err(error) => {
            let mut out = LeaveGroupResponse::default();
            out.error_code = error.code();
            return respond(header, &out);
        }
    };
    assert_eq!(errors.len(), members.len(), "one result per member");
    let mut out = LeaveGroupResponse::default();
    if version >= 3 {
        // The top-level error is for the whole request; per-member errors go in the list.
        out.error_code = ErrorCode::None.code();
        out.members = members
            .iter()
            .zip(&errors)
            .map(|(m, e)| {
                let mut r = MemberResponse::default();
                r.member_id = super::str_bytes(&m.member_id);
                r.group_instance_id = m.instance_id.as_deref().map(super::str_bytes);
                r.error_code = e.code();
                r
            })
            .collect();
    } else {
        out.error_code = errors.first().copied().unwrap_or(ErrorCode::None).code();
    }
    respond(header, &out)
}
