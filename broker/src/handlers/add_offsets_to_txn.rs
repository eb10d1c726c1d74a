//! AddOffsetsToTxn (key 25), v0-v3: adds the group's `__consumer_offsets` partition to the
//! producer's transaction, so its TxnOffsetCommit is accepted and the transaction's marker
//! reaches that partition (committing or dropping the offsets).

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::add_offsets_to_txn_request::AddOffsetsToTxnRequest;
use spate_wire::kafka_protocol::messages::add_offsets_to_txn_response::AddOffsetsToTxnResponse;
use spate_wire::types::{ProducerEpoch, ProducerId};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::errors::{fenced_for_version, txn_answer_code};
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::txn::TxnCall;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: AddOffsetsToTxnRequest,
) -> Option<ResponseParts> {
    let error = if request.transactional_id.0.is_empty() {
        // Kafka's TransactionCoordinator.handleAddPartitionsToTransaction.
        ErrorCode::InvalidRequest
    } else if request.group_id.0.is_empty() {
        ErrorCode::InvalidGroupId
    } else {
        let partitions = core
            .topic(OFFSETS_TOPIC)
            .map_or(core.config.groups.offsets_partitions, |t| t.partitions);
        let offsets_partition = partition_for(&request.group_id.0, partitions);
        let id = request.transactional_id.0.to_string();
        let answer = crate::txn::call(
            core,
            &id.clone(),
            TxnCall::Add {
                id,
                producer_id: ProducerId(request.producer_id.0),
                epoch: ProducerEpoch(request.producer_epoch),
                partitions: vec![(OFFSETS_TOPIC.to_owned(), offsets_partition)],
            },
        )
        .await;
        fenced_for_version(txn_answer_code(&answer), header.api_version, 2)
    };
    let mut response = AddOffsetsToTxnResponse::default();
    response.error_code = error.code();
    respond(header, &response)
}
