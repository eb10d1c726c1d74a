//! TxnOffsetCommit (key 28), v0-v3: a transactional producer commits a consumer group's offsets
//! as part of its transaction (`send_offsets_to_transaction`). The offsets are written to the
//! group's `__consumer_offsets` partition as the producer's transactional batch and become
//! visible to OffsetFetch only when the transaction commits (its COMMIT marker reaches that
//! partition); an abort drops them.
//!
//! The group's offsets partition must be in the producer's transaction (AddOffsetsToTxn first):
//! otherwise every partition gets INVALID_TXN_STATE, or the coordinator's error (fenced, not the
//! id's producer). v3 carries the consumer's membership (KIP-447), checked as an OffsetCommit's:
//! a member of an older generation gets ILLEGAL_GENERATION, an unknown one UNKNOWN_MEMBER_ID.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequest;
use spate_wire::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponse, TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use spate_wire::types::{ProducerEpoch, ProducerId};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::{now_ms, Core};
use crate::errors::fenced_for_version;
use crate::group::coordinator::CommitMember;
use crate::group::records::OffsetValue;
use crate::group::{self, partition_for, GroupAnswer, GroupCall, OFFSETS_TOPIC};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: TxnOffsetCommitRequest,
) -> Option<ResponseParts> {
    let group_id = request.group_id.0.to_string();
    let producer_id = ProducerId(request.producer_id.0);
    let epoch = ProducerEpoch(request.producer_epoch);
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
    // Partitions that do not exist are refused one by one and the others committed, as Kafka's
    // KafkaApis.handleTxnOffsetCommitRequest does.
    let (exists, offsets) = super::offset_commit::existing_partitions(core, offsets);
    let count = offsets.len();
    let errors = if count == 0 {
        Vec::new()
    } else if group_id.is_empty() {
        vec![ErrorCode::InvalidGroupId; count]
    } else {
        let partitions = core
            .topic(OFFSETS_TOPIC)
            .map_or(core.config.groups.offsets_partitions, |t| t.partitions);
        let offsets_partition = partition_for(&group_id, partitions);
        let id = request.transactional_id.0.to_string();
        let verified = crate::txn::verify(
            core,
            &id,
            producer_id,
            epoch,
            vec![(OFFSETS_TOPIC.to_owned(), offsets_partition)],
        )
        .await;
        let error = match verified {
            Ok(v) if v.first() == Some(&true) => ErrorCode::None,
            Ok(_) => ErrorCode::InvalidTxnState,
            // Kafka's AddPartitionsToTxnManager sends a fenced producer's verification back
            // as INVALID_PRODUCER_EPOCH.
            Err(ErrorCode::ProducerFenced) => ErrorCode::InvalidProducerEpoch,
            Err(e) => e,
        };
        if error != ErrorCode::None {
            vec![fenced_for_version(error, header.api_version, 3); count]
        } else {
            let call = GroupCall::TxnCommit {
                group: group_id.clone(),
                producer_id,
                epoch,
                // v0-2 decode as generation -1 and no member: not checked.
                member: CommitMember {
                    member_id: request.member_id.to_string(),
                    instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
                    generation_id: request.generation_id,
                },
                offsets,
            };
            match group::call(core, &group_id, call).await {
                Some(GroupAnswer::Errors(errors)) if errors.len() == count => errors,
                _ => vec![ErrorCode::CoordinatorNotAvailable; count],
            }
        }
    };
    let mut errors = errors.into_iter();
    let mut exists = exists.into_iter();
    let mut response = TxnOffsetCommitResponse::default();
    for topic in &request.topics {
        let mut out = TxnOffsetCommitResponseTopic::default();
        out.name = topic.name.clone();
        for partition in &topic.partitions {
            let mut p = TxnOffsetCommitResponsePartition::default();
            p.partition_index = partition.partition_index;
            p.error_code = if exists.next().unwrap_or(false) {
                errors.next().unwrap_or(ErrorCode::None).code()
            } else {
                ErrorCode::UnknownTopicOrPartition.code()
            };
            out.partitions.push(p);
        }
        response.topics.push(out);
    }
    respond(header, &response)
}
