//! DeleteGroups (key 42): deletes empty groups and their committed offsets.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use spate_wire::kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::{self, GroupAnswer, GroupCall};

/// Groups one request may name: bounds the response.
const GROUPS_PER_REQUEST_MAX: usize = 1_000;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DeleteGroupsRequest,
) -> Option<ResponseParts> {
    let names: Vec<_> = request
        .groups_names
        .into_iter()
        .take(GROUPS_PER_REQUEST_MAX)
        .collect();
    let calls = names.iter().map(|name| async move {
        let id = name.0.to_string();
        if id.is_empty() {
            return ErrorCode::InvalidGroupId;
        }
        match group::call(core, &id, GroupCall::Delete { group: id.clone() }).await {
            Some(GroupAnswer::Error(error)) => error,
            _ => ErrorCode::CoordinatorNotAvailable,
        }
    });
    let errors = futures::future::join_all(calls).await;
    let mut response = DeleteGroupsResponse::default();
    for (name, error) in names.into_iter().zip(errors) {
        let mut r = DeletableGroupResult::default();
        r.group_id = name;
        r.error_code = error.code();
        response.results.push(r);
    }
    respond(header, &response)
}
