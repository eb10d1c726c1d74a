//! DescribeGroups (key 15): state, protocol and members of groups, each asked of its
//! coordinating core.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use spate_wire::kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use spate_wire::kafka_protocol::messages::GroupId;
use spate_wire::ErrorCode;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::{self, GroupAnswer, GroupCall};

/// Groups one request may name: bounds the response.
const GROUPS_PER_REQUEST_MAX: usize = 1_000;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DescribeGroupsRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let ids: Vec<String> = request
        .groups
        .iter()
        .take(GROUPS_PER_REQUEST_MAX)
        .map(|g| g.0.to_string())
        .collect();
    let calls = ids.iter().map(|id| {
        group::call(
            core,
            id,
            GroupCall::Describe {
                groups: vec![id.clone()],
            },
        )
    });
    let answers = futures::future::join_all(calls).await;
    let mut response = DescribeGroupsResponse::default();
    for (id, answer) in ids.iter().zip(answers) {
        let mut out = DescribedGroup::default();
        out.group_id = GroupId(str_bytes(id));
        match answer {
            Some(GroupAnswer::Describe(mut found)) if found.len() == 1 => {
                let d = found.pop().expect("one");
                out.error_code = d.error.code();
                out.group_state = str_bytes(d.state);
                out.authorized_operations = super::authorized_operations::if_asked(
                    version >= 3 && request.include_authorized_operations,
                    super::authorized_operations::GROUP,
                );
                out.protocol_type = str_bytes(&d.protocol_type);
                out.protocol_data = str_bytes(&d.protocol_name);
                out.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default();
                        member.member_id = str_bytes(&m.member_id);
                        if version >= 4 {
                            member.group_instance_id = m.instance_id.as_deref().map(str_bytes);
                        }
                        member.client_id = str_bytes(&m.client_id);
                        member.client_host = str_bytes(&m.client_host);
                        member.member_metadata = m.metadata;
                        member.member_assignment = m.assignment;
                        member
                    })
                    .collect();
            }
            _ => out.error_code = ErrorCode::CoordinatorNotAvailable.code(),
        }
        response.groups.push(out);
    }
    respond(header, &response)
}
