//! InitProducerId (key 22): hands an idempotent producer its id and epoch.
//!
//! Without a transactional id Kafka always answers with a fresh producer id and epoch 0,
//! whatever id and epoch the request carries (v3+ sends them after a fatal sequence error; the
//! Kafka coordinator "blindly accepts" and allocates a new id), and so does Spate. Ids come
//! from the controller core's durable allocator (`crate::metadata::producer_ids`), so they are unique
//! for the life of the data directory.
//!
//! Transactions are not implemented: an empty transactional id gets INVALID_REQUEST (as in
//! Kafka), any other TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the answer FindCoordinator gives
//! for a transactional key (see there why), so a transactional producer fails at once with a
//! fatal error instead of waiting for its timeout. Bumping the epoch of a known transactional
//! id comes with transactions.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use spate_wire::kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use spate_wire::kafka_protocol::messages::ProducerId as WireProducerId;
use spate_wire::ErrorCode;
use tracing::{error, info};

use super::respond;
use crate::connection::ResponseParts;
use crate::core::{Core, CONTROLLER_CORE};
use crate::ops::{CoreReply, CoreRequest};

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
            info!(core = core.id, transactional_id = %id.0.as_str(), client = ?header.client_id_str(),
                "transactional producer refused: transactions are not supported yet");
            ErrorCode::TransactionalIdAuthorizationFailed
        }
        None => match core
            .call(CONTROLLER_CORE, CoreRequest::AllocateProducerId)
            .await
        {
            Some(CoreReply::ProducerId(Ok(id))) => {
                info!(core = core.id, producer_id = id, client = ?header.client_id_str(), "producer id allocated");
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
