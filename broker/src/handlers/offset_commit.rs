//! OffsetCommit (key 8): store how far a group has consumed, durably in `__consumer_offsets`.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use spate_wire::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::{now_ms, Core};
use crate::group::records::OffsetValue;
use crate::group::{self, GroupAnswer, GroupCall};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: OffsetCommitRequest,
) -> Option<ResponseParts> {
    let group_id = request.group_id.0.to_string();
    let now = now_ms();
    let offsets: Vec<(String, i32, OffsetValue)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp_ms: now,
                    },
                )
            })
        })
        .collect();
    let count = offsets.len();
    let (known, offsets) = existing_partitions(core, offsets);
    let stored = offsets.len();
    let committed = if group_id.is_empty() {
        vec![ErrorCode::InvalidGroupId; stored]
    } else if stored == 0 {
        Vec::new()
    } else {
        let call = GroupCall::Commit {
            group: group_id.clone(),
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            generation_id: request.generation_id_or_member_epoch,
            offsets,
        };
        match group::call(core, &group_id, call).await {
            Some(GroupAnswer::Errors(errors)) => errors,
            _ => vec![ErrorCode::CoordinatorNotAvailable; stored],
        }
    };
    assert_eq!(committed.len(), stored, "one result per stored partition");
    let mut committed = committed.into_iter();
    let errors: Vec<ErrorCode> = known
        .iter()
        .map(|&k| match k {
            true => committed.next().expect("one per stored partition"),
            // Checked before the group, as Kafka does: even with an invalid group id.
            false => ErrorCode::UnknownTopicOrPartition,
        })
        .collect();
    assert_eq!(errors.len(), count, "one result per partition");
    let mut errors = errors.into_iter();
    let mut response = OffsetCommitResponse::default();
    for topic in &request.topics {
        let mut out = OffsetCommitResponseTopic::default();
        out.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut p = OffsetCommitResponsePartition::default();
            p.partition_index = partition.partition_index;
            p.error_code = errors.next().expect("one per partition").code();
            out.partitions.push(p);
        }
        response.topics.push(out);
    }
    respond(header, &response)
}

/// As Kafka (OffsetCommit and TxnOffsetCommit alike): a partition of a topic that does not exist
/// gets UNKNOWN_TOPIC_OR_PARTITION and is not stored; the others are committed. (Without this,
/// a typo in a topic name was acknowledged and the offset kept forever.) Returns, per offset in
/// order, whether its partition exists, and the offsets that do.
pub(super) fn existing_partitions(
    core: &Core,
    offsets: Vec<(String, i32, OffsetValue)>,
) -> (Vec<bool>, Vec<(String, i32, OffsetValue)>) {
    let known: Vec<bool> = offsets
        .iter()
        .map(|(topic, partition, _)| {
            core.topic(topic)
                .is_some_and(|meta| (0..meta.partitions).contains(partition))
        })
        .collect();
    let offsets = offsets
        .into_iter()
        .zip(&known)
        .filter_map(|(o, &k)| k.then_some(o))
        .collect();
    (known, offsets)
}
