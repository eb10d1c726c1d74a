//! OffsetFetch (key 9): the committed offsets of a group (v8+: of several groups).

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use spate_wire::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use spate_wire::kafka_protocol::messages::GroupId;
use spate_wire::ErrorCode;

use super::{respond, str_bytes, topic_name};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::coordinator::FetchedOffset;
use crate::group::{self, GroupAnswer, GroupCall};

/// Groups one v8+ request may name: bounds the response.
const GROUPS_PER_REQUEST_MAX: usize = 1_000;

/// A topic's partitions with their committed offsets (`Ok(None)`: nothing committed).
type TopicOffsets = (String, Vec<(i32, FetchedOffset)>);
type Fetched = Result<Vec<(String, i32, FetchedOffset)>, ErrorCode>;

async fn fetch_group(
    core: &Core,
    group_id: &str,
    partitions: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Fetched {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    let call = GroupCall::FetchOffsets {
        group: group_id.to_owned(),
        partitions,
        require_stable,
    };
    match group::call(core, group_id, call).await {
        Some(GroupAnswer::Offsets(offsets)) => Ok(offsets),
        _ => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// FetchedOffset offsets in topic order (the order of the request, or of the store for "all").
fn by_topic(offsets: Vec<(String, i32, FetchedOffset)>) -> Vec<TopicOffsets> {
    let mut topics: Vec<TopicOffsets> = Vec::new();
    for (topic, partition, value) in offsets {
        match topics.last_mut() {
            Some((name, list)) if *name == topic => list.push((partition, value)),
            _ => topics.push((topic, vec![(partition, value)])),
        }
    }
    topics
}

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: OffsetFetchRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups.iter().take(GROUPS_PER_REQUEST_MAX) {
            let partitions = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let fetched =
                fetch_group(core, &group.group_id.0, partitions, request.require_stable).await;
            let mut out = OffsetFetchResponseGroup::default();
            out.group_id = GroupId(str_bytes(&group.group_id.0));
            match fetched {
                Ok(offsets) => {
                    for (topic, partitions) in by_topic(offsets) {
                        let mut t = OffsetFetchResponseTopics::default();
                        t.name = topic_name(&topic);
                        for (index, value) in partitions {
                            let mut p = OffsetFetchResponsePartitions::default();
                            p.partition_index = index;
                            p.error_code = fill(
                                value,
                                &mut p.committed_offset,
                                &mut p.committed_leader_epoch,
                                &mut p.metadata,
                            );
                            t.partitions.push(p);
                        }
                        out.topics.push(t);
                    }
                }
                Err(error) => out.error_code = error.code(),
            }
            response.groups.push(out);
        }
        return respond(header, &response);
    }
    let partitions = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    // require_stable exists from v7 on (decoded as false before).
    match fetch_group(
        core,
        &request.group_id.0,
        partitions,
        request.require_stable,
    )
    .await
    {
        Ok(offsets) => {
            for (topic, partitions) in by_topic(offsets) {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = topic_name(&topic);
                for (index, value) in partitions {
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = index;
                    let mut epoch = -1;
                    p.error_code =
                        fill(value, &mut p.committed_offset, &mut epoch, &mut p.metadata);
                    if version >= 5 {
                        p.committed_leader_epoch = epoch;
                    }
                    t.partitions.push(p);
                }
                response.topics.push(t);
            }
        }
        Err(error) => {
            if version >= 2 {
                response.error_code = error.code();
            } else {
                // v0-1 have no top-level error: every requested partition carries it.
                for topic in request.topics.iter().flatten() {
                    let mut t = OffsetFetchResponseTopic::default();
                    t.name = topic.name.clone();
                    for index in &topic.partition_indexes {
                        let mut p = OffsetFetchResponsePartition::default();
                        p.partition_index = *index;
                        p.committed_offset = -1;
                        p.error_code = error.code();
                        t.partitions.push(p);
                    }
                    response.topics.push(t);
                }
            }
        }
    }
    respond(header, &response)
}

/// Fills a partition's answer; returns its error code.
fn fill(
    value: FetchedOffset,
    offset: &mut i64,
    epoch: &mut i32,
    metadata: &mut Option<spate_wire::kafka_protocol::protocol::StrBytes>,
) -> i16 {
    match value {
        Ok(Some(v)) => {
            *offset = v.offset;
            *epoch = v.leader_epoch;
            *metadata = Some(str_bytes(&v.metadata));
            ErrorCode::None.code()
        }
        Ok(None) | Err(_) => {
            *offset = -1;
            *epoch = -1;
            *metadata = Some(str_bytes(""));
            value.err().unwrap_or(ErrorCode::None).code()
        }
    }
}
