//! AddPartitionsToTxn (key 24), v0-v3 (the client form: one transactional id per request):
//! adds partitions to the producer's transaction on its coordinator (`crate::txn`). Produce
//! accepts a transactional batch only for a partition added here (KIP-890's defence).
//!
//! As in Kafka: a partition that does not exist gets UNKNOWN_TOPIC_OR_PARTITION and the others
//! OPERATION_NOT_ATTEMPTED; otherwise every partition gets the coordinator's answer.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnRequest;
use spate_wire::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResponse, AddPartitionsToTxnTopicResult,
};
use spate_wire::types::{ProducerEpoch, ProducerId};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::errors::{fenced_for_version, txn_answer_code};
use crate::txn::TxnCall;

/// Partitions one request may add (bounds the coordinator's work per call).
const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: AddPartitionsToTxnRequest,
) -> Option<ResponseParts> {
    let id = request.v3_and_below_transactional_id.0.to_string();
    let mut partitions = Vec::new();
    let mut unknown = false;
    for topic in &request.v3_and_below_topics {
        let count = core.topic(&topic.name.0).map_or(0, |t| t.partitions);
        for &p in &topic.partitions {
            unknown |= !(0..count).contains(&p);
            partitions.push((topic.name.0.to_string(), p));
        }
    }
    let error = if partitions.len() > PARTITIONS_PER_REQUEST_MAX || id.is_empty() {
        // An empty transactional id: Kafka's TransactionCoordinator
        // .handleAddPartitionsToTransaction.
        ErrorCode::InvalidRequest
    } else if unknown {
        ErrorCode::OperationNotAttempted
    } else {
        let answer = crate::txn::call(
            core,
            &id,
            TxnCall::Add {
                id: id.clone(),
                producer_id: ProducerId(request.v3_and_below_producer_id.0),
                epoch: ProducerEpoch(request.v3_and_below_producer_epoch),
                partitions,
            },
        )
        .await;
        fenced_for_version(txn_answer_code(&answer), header.api_version, 2)
    };
    let mut response = AddPartitionsToTxnResponse::default();
    for topic in &request.v3_and_below_topics {
        let count = core.topic(&topic.name.0).map_or(0, |t| t.partitions);
        let mut out = AddPartitionsToTxnTopicResult::default();
        out.name = topic.name.clone();
        for &p in &topic.partitions {
            let mut r = AddPartitionsToTxnPartitionResult::default();
            r.partition_index = p;
            r.partition_error_code =
                if error == ErrorCode::OperationNotAttempted && !(0..count).contains(&p) {
                    ErrorCode::UnknownTopicOrPartition.code()
                } else {
                    error.code()
                };
            out.results_by_partition.push(r);
        }
        response.results_by_topic_v3_and_below.push(out);
    }
    respond(header, &response)
}
