//! DescribeCluster (key 60): the cluster id, the live brokers with their client endpoints, and
//! the active controller, from the same [`ClusterView`](crate::metadata::cluster::ClusterView)
//! Metadata answers from. The Java AdminClient's `describeCluster` and librdkafka's
//! `DescribeCluster` use it when a broker advertises it.
//!
//! This is a broker listener: a v1+ request for controller endpoints gets
//! MISMATCHED_ENDPOINT_TYPE, as from a Kafka broker (controllers answer on their own listener).
//! Authorized operations are not computed (no ACLs yet): the field says "not provided",
//! as Metadata's does. v2's `include_fenced_brokers` adds the registered brokers that are
//! fenced, marked `is_fenced`.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use spate_wire::kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use spate_wire::kafka_protocol::messages::BrokerId;
use spate_wire::ErrorCode;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;

/// `endpoint_type` of a request for broker endpoints (v1+); v0 implies it.
const ENDPOINT_TYPE_BROKERS: i8 = 1;
/// `endpoint_type` of a request for controller endpoints (KIP-919).
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;

pub fn handle(
    core: &Core,
    header: &RequestHeader,
    request: DescribeClusterRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let mut response = DescribeClusterResponse::default();
    response.cluster_authorized_operations = super::authorized_operations::if_asked(
        request.include_cluster_authorized_operations,
        super::authorized_operations::CLUSTER,
    );
    if version >= 1 {
        response.endpoint_type = ENDPOINT_TYPE_BROKERS;
        if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
            response.endpoint_type = request.endpoint_type;
            // As Kafka's AuthHelper.computeDescribeClusterResponse: a type that does not
            // exist is UNSUPPORTED_ENDPOINT_TYPE, the controllers' type MISMATCHED_ENDPOINT_TYPE.
            if request.endpoint_type == ENDPOINT_TYPE_CONTROLLERS {
                response.error_code = ErrorCode::MismatchedEndpointType.code();
                response.error_message = Some(str_bytes(
                    "this is a broker listener: it describes brokers, not controllers",
                ));
            } else {
                response.error_code = ErrorCode::UnsupportedEndpointType.code();
                response.error_message = Some(str_bytes(&format!(
                    "unsupported endpoint type {}",
                    request.endpoint_type
                )));
            }
            response.controller_id = BrokerId(-1);
            return respond(header, &response);
        }
    }
    let view = core.cluster.borrow();
    response.cluster_id = str_bytes(&view.cluster_id);
    response.controller_id = BrokerId(view.controller_id);
    let with_fenced = version >= 2 && request.include_fenced_brokers;
    // A fenced broker Metadata still lists for a while (`ClusterView::linger_after`) is shown
    // here as what it is: fenced.
    let fenced = if with_fenced { &view.fenced[..] } else { &[] };
    response.brokers = view
        .brokers
        .iter()
        .map(|b| (b, false))
        .chain(fenced.iter().map(|f| (&f.endpoint, true)))
        .map(|(b, is_fenced)| {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(b.node_id);
            broker.host = str_bytes(&b.host);
            broker.port = i32::from(b.port);
            broker.rack = b.rack.as_deref().map(str_bytes);
            broker.is_fenced = is_fenced;
            broker
        })
        .collect();
    respond(header, &response)
}
