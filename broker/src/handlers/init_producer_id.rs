//! InitProducerId (key 22): hands an idempotent producer its id and epoch.
//!
//! Without a transactional id Kafka always answers with a fresh producer id and epoch 0,
//! whatever id and epoch the request carries (v3+ sends them after a fatal sequence error; the
//! Kafka coordinator "blindly accepts" and allocates a new id), and so does Spate. Ids come
//! from the controller core's durable allocator (`crate::metadata::producer_ids`), so they are unique
//! for the life of the data directory.
//!
//! With a transactional id the call goes to the id's transaction coordinator (`crate::txn`;
//! in a cluster the client sends it to the broker FindCoordinator named, the leader of the
//! id's `__transaction_state` partition): a new id gets a fresh producer id and epoch 0, a
//! known one a bumped epoch (fencing older instances; an open transaction is aborted first and
//! the client told to retry with CONCURRENT_TRANSACTIONS). An empty transactional id gets
//! INVALID_REQUEST (as in Kafka).

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use spate_wire::kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use spate_wire::kafka_protocol::messages::ProducerId as WireProducerId;
use spate_wire::ErrorCode;
use tracing::{error, info};

use spate_txn::state::Answer;
use spate_wire::types::{ProducerEpoch, ProducerId};

use super::respond;
use crate::connection::ResponseParts;
use crate::core::{Core, CONTROLLER_CORE};
use crate::errors::{fenced_for_version, txn_answer_code};
use crate::ops::{CoreReply, CoreRequest};
use crate::txn::{TxnAnswer, TxnCall};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: InitProducerIdRequest,
) -> Option<ResponseParts> {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = WireProducerId(-1);
    response.producer_epoch = -1;
    // v3+ may name the producer's current id and epoch: both or neither, as Kafka's
    // KafkaApis.handleInitProducerIdRequest requires.
    let half_named = (request.producer_id.0 == -1) != (request.producer_epoch == -1);
    let error = match &request.transactional_id {
        _ if half_named => ErrorCode::InvalidRequest,
        Some(id) if id.0.is_empty() => ErrorCode::InvalidRequest,
        Some(id) => {
            // v3+ (KIP-360): the producer id and epoch the client had, -1 if none.
            let expected = (request.producer_id.0 >= 0).then_some((
                ProducerId(request.producer_id.0),
                ProducerEpoch(request.producer_epoch),
            ));
            let answer = crate::txn::call(
                core,
                id.0.as_str(),
                TxnCall::Init {
                    id: id.0.to_string(),
                    timeout_ms: request.transaction_timeout_ms,
                    expected,
                },
            )
            .await;
            if let TxnAnswer::Answer(Answer::ProducerIdAndEpoch(pid, epoch)) = answer {
                info!(core = core.id, transactional_id = %id.0.as_str(), producer_id = pid.0, epoch = epoch.0, "transactional producer initialized");
                response.producer_id = WireProducerId(pid.0);
                response.producer_epoch = epoch.0;
            }
            fenced_for_version(txn_answer_code(&answer), header.api_version, 4)
        }
        None => match core
            .call(CONTROLLER_CORE, CoreRequest::AllocateProducerId)
            .await
        {
            Some(CoreReply::ProducerId(Ok(id))) => {
                info!(
                    core = core.id,
                    producer_id = id,
                    client = header.client_id_str().unwrap_or("-"),
                    "producer id allocated"
                );
                response.producer_id = WireProducerId(id);
                response.producer_epoch = 0;
                ErrorCode::None
            }
            Some(CoreReply::ProducerId(Err(message))) => {
                error!(core = core.id, %message, "producer id allocation failed");
                ErrorCode::KafkaStorageError
            }
            _ => ErrorCode::CoordinatorNotAvailable,
        },
    };
    response.error_code = error.code();
    respond(header, &response)
}
