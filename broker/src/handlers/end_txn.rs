//! EndTxn (key 26), v0-v3: commits or aborts the producer's transaction on its coordinator
//! (`crate::txn`). Answered once the decision (PrepareCommit or PrepareAbort) is durable in
//! `__transaction_state`; the markers are written to the partitions afterwards, and until they
//! are the transactional id answers CONCURRENT_TRANSACTIONS to its next call (the client
//! retries). See docs/DURABILITY.md for what the answer promises.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::end_txn_request::EndTxnRequest;
use spate_wire::kafka_protocol::messages::end_txn_response::EndTxnResponse;
use spate_wire::types::{ProducerEpoch, ProducerId};
use spate_wire::ErrorCode;

use super::respond;
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::errors::{fenced_for_version, txn_answer_code};
use crate::txn::TxnCall;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: EndTxnRequest,
) -> Option<ResponseParts> {
    let error = if request.transactional_id.0.is_empty() {
        // Kafka's TransactionCoordinator.endTransaction.
        ErrorCode::InvalidRequest
    } else {
        let id = request.transactional_id.0.to_string();
        let answer = crate::txn::call(
            core,
            &id.clone(),
            TxnCall::End {
                id,
                producer_id: ProducerId(request.producer_id.0),
                epoch: ProducerEpoch(request.producer_epoch),
                commit: request.committed,
            },
        )
        .await;
        fenced_for_version(txn_answer_code(&answer), header.api_version, 2)
    };
    let mut response = EndTxnResponse::default();
    response.error_code = error.code();
    respond(header, &response)
}
