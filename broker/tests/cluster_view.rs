//! What a broker says about the cluster: DescribeCluster and Metadata agree on the cluster id,
//! the brokers and the controller.

mod common;

use common::*;
use spate_wire::kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use spate_wire::kafka_protocol::messages::describe_cluster_response::DescribeClusterResponse;
use spate_wire::kafka_protocol::messages::metadata_request::MetadataRequest;
use spate_wire::kafka_protocol::messages::metadata_response::MetadataResponse;
use spate_wire::kafka_protocol::messages::ApiKey;

const MISMATCHED_ENDPOINT_TYPE: i16 = 114;

#[test]
fn describe_cluster_lists_this_broker_as_broker_and_controller_in_every_version() {
    let broker = start_broker(
        "describe-cluster",
        &[
            "--node-id",
            "7",
            "--advertised-listener",
            "broker7.example:19092",
        ],
    );
    let mut stream = broker.connect();
    for version in 0..=2 {
        let mut request = DescribeClusterRequest::default();
        if version >= 1 {
            request.endpoint_type = 1;
        }
        let response: DescribeClusterResponse =
            call(&mut stream, ApiKey::DescribeCluster, version, &request);
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.cluster_id.as_str(), "spate");
        assert_eq!(response.controller_id.0, 7);
        assert_eq!(response.brokers.len(), 1);
        let me = &response.brokers[0];
        assert_eq!(me.broker_id.0, 7);
        assert_eq!(me.host.as_str(), "broker7.example");
        assert_eq!(me.port, 19092);
        assert!(!me.is_fenced);
        assert_eq!(response.cluster_authorized_operations, i32::MIN);
    }

    // Metadata says the same.
    let metadata: MetadataResponse = call(
        &mut stream,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default(),
    );
    assert_eq!(
        metadata.cluster_id.as_ref().map(|s| s.as_str()),
        Some("spate")
    );
    assert_eq!(metadata.controller_id.0, 7);
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].node_id.0, 7);
    assert_eq!(metadata.brokers[0].port, 19092);
}

#[test]
fn describe_cluster_for_controller_endpoints_is_a_mismatched_endpoint_type() {
    let broker = start_broker("describe-cluster-controllers", &[]);
    let mut stream = broker.connect();
    let mut request = DescribeClusterRequest::default();
    request.endpoint_type = 2;
    let response: DescribeClusterResponse = call(&mut stream, ApiKey::DescribeCluster, 1, &request);
    assert_eq!(response.error_code, MISMATCHED_ENDPOINT_TYPE);
    assert!(response.error_message.is_some());
    assert!(response.brokers.is_empty());
    // The connection stays usable.
    let again: DescribeClusterResponse = call(
        &mut stream,
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(again.error_code, 0);
    assert_eq!(again.brokers.len(), 1);
}
