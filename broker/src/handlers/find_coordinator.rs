//! FindCoordinator (key 10): which broker coordinates a consumer group (or a transactional id).
//!
//! On one broker the answer for a group or a transactional id is always this broker (inside
//! it, the requests are forwarded to the core owning the key's `__consumer_offsets` or
//! `__transaction_state` partition; the latter topic is created at the first transactional
//! key). In a cluster it is the leader of that partition; either topic is created at the first
//! key that needs it, replicated (`offsets.topic.replication.factor`, capped at the live
//! brokers), and COORDINATOR_NOT_AVAILABLE is answered until its partitions have leaders.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use spate_wire::kafka_protocol::messages::find_coordinator_response::{
    Coordinator, FindCoordinatorResponse,
};
use spate_wire::kafka_protocol::messages::BrokerId;
use spate_wire::kafka_protocol::protocol::StrBytes;
use spate_wire::ErrorCode;

use super::{create_assigned_via_controller, respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::group::{offsets_topic_meta, partition_for, OFFSETS_TOPIC};
use crate::routing::Leader;
use crate::txn::TXN_TOPIC;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// Keys one request may name (v4+ batches them): bounds the response.
const KEYS_PER_REQUEST_MAX: usize = 10_000;

/// The answer for one key: node, host and port, or an error.
async fn lookup(
    core: &Core,
    key_type: i8,
    key: &str,
) -> Result<(BrokerId, StrBytes, i32), (ErrorCode, &'static str)> {
    let me = || {
        (
            BrokerId(core.config.node_id),
            str_bytes(&core.config.advertised_host),
            i32::from(core.config.advertised_port),
        )
    };
    let (topic, partitions) = match key_type {
        KEY_TYPE_GROUP => (
            OFFSETS_TOPIC,
            core.topic(OFFSETS_TOPIC).map(|t| t.partitions),
        ),
        KEY_TYPE_TRANSACTION => {
            if core.config.cluster.is_none() {
                return match crate::txn::ensure_topic(core).await {
                    Ok(()) => Ok(me()),
                    Err(error) => Err((error, "the transaction state topic is being created")),
                };
            }
            (TXN_TOPIC, core.topic(TXN_TOPIC).map(|t| t.partitions))
        }
        _ => return Err((ErrorCode::InvalidRequest, "unknown coordinator key type")),
    };
    if core.config.cluster.is_none() {
        return Ok(me());
    }
    // Cluster mode: the coordinator is the leader of the key's partition, and the topic is
    // created on first use, as Kafka does (by then the brokers are up, so its partitions
    // spread over them).
    let Some(partitions) = partitions else {
        if topic == TXN_TOPIC {
            // Created with its replication factor; its partitions need leaders before they
            // can coordinate, so the client asks again.
            let _ = crate::txn::ensure_topic(core).await;
            return Err((
                ErrorCode::CoordinatorNotAvailable,
                "the transaction state topic is being created",
            ));
        }
        create_assigned_via_controller(
            core,
            vec![crate::ops::NewTopic {
                meta: offsets_topic_meta(&core.config),
                assignment: None,
                replication_factor: crate::group::internal_topic_replication_factor(core),
            }],
        )
        .await;
        return Err((
            ErrorCode::CoordinatorNotAvailable,
            "the offsets topic is being created",
        ));
    };
    // One rule for both topics: Kafka's `abs(key.hashCode) % partitions`.
    let partition = partition_for(key, partitions);
    match core.placement(topic, partition).map(|p| p.leader) {
        Some(Leader::Core(_)) => Ok(me()),
        Some(Leader::Broker(node)) => {
            let view = core.cluster.borrow();
            match view.brokers.iter().find(|b| b.node_id == node.0) {
                Some(b) => Ok((BrokerId(b.node_id), str_bytes(&b.host), i32::from(b.port))),
                None => Err((
                    ErrorCode::CoordinatorNotAvailable,
                    "the coordinator's broker is not available",
                )),
            }
        }
        Some(Leader::None) | None => Err((
            ErrorCode::CoordinatorNotAvailable,
            "the key's coordinating partition has no leader",
        )),
    }
}

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: FindCoordinatorRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let mut response = FindCoordinatorResponse::default();
    // As Metadata: no coordinator named from a replayed, possibly old, image.
    crate::metadata::cluster::ClusterView::wait_caught_up(&core.cluster).await;
    if version >= 4 {
        for key in request.coordinator_keys.iter().take(KEYS_PER_REQUEST_MAX) {
            let mut c = Coordinator::default();
            c.key = key.clone();
            match lookup(core, request.key_type, key.as_str()).await {
                Ok((node, host, port)) => {
                    c.node_id = node;
                    c.host = host;
                    c.port = port;
                }
                Err((error, message)) => {
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                    c.error_code = error.code();
                    c.error_message = Some(str_bytes(message));
                }
            }
            response.coordinators.push(c);
        }
    } else {
        match lookup(core, request.key_type, request.key.as_str()).await {
            Ok((node, host, port)) => {
                response.node_id = node;
                response.host = host;
                response.port = port;
            }
            Err((error, message)) => {
                response.node_id = BrokerId(-1);
                response.port = -1;
                response.error_code = error.code();
                if version >= 1 {
                    response.error_message = Some(str_bytes(message));
                }
            }
        }
    }
    respond(header, &response)
}
