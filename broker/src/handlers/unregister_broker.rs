//! UnregisterBroker (key 64, v0): `kafka-cluster.sh unregister --id N` and the AdminClient's
//! `unregisterBroker` remove a broker's registration for good, the last step of a
//! decommission (`spate-admin cluster decommission`, then stop the broker, then this).
//!
//! Decided on the quorum's leader only, as reassignments are: another broker answers
//! NOT_CONTROLLER and the client retries at the controller Metadata names. Refusals:
//! BROKER_ID_NOT_REGISTERED for an unknown id (Kafka's answer), INVALID_REQUEST for a broker that
//! is still a replica of some partition (Kafka would leave its replicas pointing at nobody;
//! Spate asks for the drain first). A broker unregistered while it still runs registers again
//! at its next heartbeat, as in Kafka: stop it first. Advertised in cluster mode only.

use spate_controller::ids::NodeId;
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::unregister_broker_request::UnregisterBrokerRequest;
use spate_wire::kafka_protocol::messages::unregister_broker_response::UnregisterBrokerResponse;
use spate_wire::ErrorCode;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::{Core, CONTROLLER_CORE};
use crate::ops::{CoreReply, CoreRequest};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: UnregisterBrokerRequest,
) -> Option<ResponseParts> {
    let node = NodeId(request.broker_id.0);
    let (code, message) = match core
        .call(CONTROLLER_CORE, CoreRequest::Unregister(node))
        .await
    {
        Some(CoreReply::Unregistered(code, message)) => (code, message),
        _ => (
            ErrorCode::UnknownServerError,
            Some("controller core unreachable".to_owned()),
        ),
    };
    let mut response = UnregisterBrokerResponse::default();
    response.error_code = code.code();
    response.error_message = message.as_deref().map(str_bytes);
    respond(header, &response)
}
