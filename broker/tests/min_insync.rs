//! `min.insync.replicas` above a partition's in-sync set (one replica until replication
//! lands) refuses acks=all with NOT_ENOUGH_REPLICAS before appending, as Kafka does; acks=1
//! still appends, and DescribeConfigs reports the value.

mod common;

use common::*;
use spate_wire::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use spate_wire::kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use spate_wire::kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use spate_wire::kafka_protocol::messages::describe_configs_response::DescribeConfigsResponse;
use spate_wire::kafka_protocol::messages::{ApiKey, TopicName};
use spate_wire::kafka_protocol::protocol::StrBytes;

const NOT_ENOUGH_REPLICAS: i16 = 19;
const ACKS_ALL: i16 = -1;

#[test]
fn acks_all_needs_min_insync_replicas_in_sync() {
    let broker = start_broker("min-insync", &[]);
    let mut stream = broker.connect();
    let mut config = CreatableTopicConfig::default();
    config.name = StrBytes::from_static_str("min.insync.replicas");
    config.value = Some(StrBytes::from_static_str("2"));
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("guarded"));
    topic.num_partitions = 1;
    topic.replication_factor = 1;
    topic.configs = vec![config];
    let mut create = CreateTopicsRequest::default();
    create.topics = vec![topic];
    create.timeout_ms = 5000;
    let created: CreateTopicsResponse = call(&mut stream, ApiKey::CreateTopics, 5, &create);
    assert_eq!(created.topics[0].error_code, 0);

    let refused = produce(&mut stream, "guarded", 0, one_record_batch(), ACKS_ALL);
    assert_eq!(refused.error_code, NOT_ENOUGH_REPLICAS);
    // Nothing was appended: the next acks=1 batch takes offset 0.
    let taken = produce(&mut stream, "guarded", 0, one_record_batch(), 1);
    assert_eq!(taken.error_code, 0);
    assert_eq!(taken.base_offset, 0);

    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = 2; // topic
    resource.resource_name = StrBytes::from_static_str("guarded");
    resource.configuration_keys = Some(vec![StrBytes::from_static_str("min.insync.replicas")]);
    let mut describe = DescribeConfigsRequest::default();
    describe.resources = vec![resource];
    let described: DescribeConfigsResponse =
        call(&mut stream, ApiKey::DescribeConfigs, 4, &describe);
    let configs = &described.results[0].configs;
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].value.as_ref().map(|v| v.as_str()), Some("2"));
}
