//! JoinGroup (key 11): a member joins (or rejoins) a consumer group; parked on the
//! coordinating core until the join phase of the rebalance ends.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::join_group_request::JoinGroupRequest;
use spate_wire::kafka_protocol::messages::join_group_response::{
    JoinGroupResponse, JoinGroupResponseMember,
};
use spate_wire::ErrorCode;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::state::{JoinRequest, JoinResponse, MemberIdPolicy, Protocol};
use crate::group::{self, GroupAnswer, GroupCall};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: JoinGroupRequest,
    peer: Option<std::net::IpAddr>,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let response = if group_id.is_empty() {
        JoinResponse::error(ErrorCode::InvalidGroupId, &member_id)
    } else {
        let client_id = header.client_id_str().unwrap_or("").to_owned();
        let join = JoinRequest {
            new_member_id: group::new_member_id(&client_id),
            member_id: member_id.clone(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id,
            // Kafka's form: "/" and the address.
            client_host: peer.map(|ip| format!("/{ip}")).unwrap_or_default(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: if version >= 1 {
                request.rebalance_timeout_ms
            } else {
                -1
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| Protocol {
                    name: p.name.to_string(),
                    metadata: p.metadata.clone(),
                })
                .collect(),
            member_id_policy: if version >= 4 {
                MemberIdPolicy::Required
            } else {
                MemberIdPolicy::Assigned
            },
        };
        let call = GroupCall::Join {
            group: group_id.clone(),
            request: join,
        };
        match group::call(core, &group_id, call).await {
            Some(GroupAnswer::Join(response)) => response,
            _ => JoinResponse::error(ErrorCode::CoordinatorNotAvailable, &member_id),
        }
    };
    respond(header, &encode(version, response))
}

fn encode(version: i16, r: JoinResponse) -> JoinGroupResponse {
    let mut out = JoinGroupResponse::default();
    out.error_code = r.error.code();
    out.generation_id = r.generation_id;
    if version >= 7 {
        out.protocol_type = r.protocol_type.as_deref().map(str_bytes);
        out.protocol_name = r.protocol_name.as_deref().map(str_bytes);
    } else {
        out.protocol_name = Some(str_bytes(r.protocol_name.as_deref().unwrap_or("")));
    }
    out.leader = str_bytes(&r.leader);
    out.member_id = str_bytes(&r.member_id);
    out.members = r
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(&m.member_id);
            if version >= 5 {
                member.group_instance_id = m.instance_id.as_deref().map(str_bytes);
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    out
}
