//! ListGroups (key 16): every group of every core (v4+: filtered by state).

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use spate_wire::kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use spate_wire::kafka_protocol::messages::GroupId;
use spate_wire::ErrorCode;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::{self, GroupAnswer, GroupCall};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: ListGroupsRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let calls = (0..core.cores).map(|to| group::call_on(core, to, GroupCall::List));
    let mut response = ListGroupsResponse::default();
    for answer in futures::future::join_all(calls).await {
        let Some(GroupAnswer::List(groups)) = answer else {
            response.error_code = ErrorCode::CoordinatorNotAvailable.code();
            continue;
        };
        for (id, protocol_type, state) in groups {
            // Kafka compares states case-insensitively; an empty filter keeps all.
            if version >= 4
                && !request.states_filter.is_empty()
                && !request
                    .states_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(state))
            {
                continue;
            }
            let mut g = ListedGroup::default();
            g.group_id = GroupId(str_bytes(&id));
            g.protocol_type = str_bytes(&protocol_type);
            if version >= 4 {
                g.group_state = str_bytes(state);
            }
            response.groups.push(g);
        }
    }
    respond(header, &response)
}
