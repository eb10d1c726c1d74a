//! DeleteRecords and DescribeLogDirs against the real broker process, in every advertised
//! version: the low watermark answered and kept across a restart, Kafka's errors, and each
//! partition's size in the one log dir.

mod common;

use common::*;
use spate_wire::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use spate_wire::kafka_protocol::messages::create_topics_response::CreateTopicsResponse;
use spate_wire::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use spate_wire::kafka_protocol::messages::delete_records_response::DeleteRecordsResponse;
use spate_wire::kafka_protocol::messages::describe_log_dirs_request::{
    DescribableLogDirTopic, DescribeLogDirsRequest,
};
use spate_wire::kafka_protocol::messages::describe_log_dirs_response::DescribeLogDirsResponse;
use spate_wire::kafka_protocol::messages::{ApiKey, TopicName};
use spate_wire::kafka_protocol::protocol::StrBytes;

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const POLICY_VIOLATION: i16 = 44;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn delete(topic: &str, partition: i32, offset: i64) -> DeleteRecordsRequest {
    let mut p = DeleteRecordsPartition::default();
    p.partition_index = partition;
    p.offset = offset;
    let mut t = DeleteRecordsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut r = DeleteRecordsRequest::default();
    r.topics = vec![t];
    r.timeout_ms = 5000;
    r
}

/// (error code, low watermark) of the one partition of a DeleteRecords.
fn delete_records(
    stream: &mut std::net::TcpStream,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, i64) {
    let response: DeleteRecordsResponse = call(
        stream,
        ApiKey::DeleteRecords,
        version,
        &delete(topic, partition, offset),
    );
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.partition_index, partition);
    (p.error_code, p.low_watermark)
}

#[test]
fn delete_records_answers_the_low_watermark_in_every_version_and_keeps_it_across_a_restart() {
    let mut broker = start_broker("delete-records", &[]);
    let mut stream = broker.connect();
    create_topic(&mut stream, "dr", 2);
    for _ in 0..20 {
        assert_eq!(
            produce(&mut stream, "dr", 0, one_record_batch(), -1).error_code,
            0
        );
    }
    for (version, offset) in [(0, 3), (1, 7), (2, 12)] {
        assert_eq!(
            delete_records(&mut stream, version, "dr", 0, offset),
            (0, offset),
            "v{version}"
        );
        // Lower: unchanged, the start answered.
        assert_eq!(
            delete_records(&mut stream, version, "dr", 0, 1),
            (0, offset)
        );
        assert_eq!(
            delete_records(&mut stream, version, "dr", 0, 21).0,
            OFFSET_OUT_OF_RANGE
        );
        assert_eq!(
            delete_records(&mut stream, version, "dr", 5, 1).0,
            UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(
            delete_records(&mut stream, version, "__consumer_offsets", 0, 0).0,
            INVALID_TOPIC_EXCEPTION
        );
    }
    // -1: the high watermark of partition 1 (empty: 0).
    assert_eq!(delete_records(&mut stream, 2, "dr", 1, -1), (0, 0));
    drop(stream);
    broker.kill();
    broker.restart();
    let mut stream = broker.connect();
    assert_eq!(delete_records(&mut stream, 2, "dr", 0, 0), (0, 12));
}

#[test]
fn delete_records_is_refused_for_a_compact_only_topic_and_allowed_for_compact_delete() {
    let broker = start_broker("delete-records-policy", &[]);
    let mut stream = broker.connect();
    for (name, policy) in [
        ("compact-only", "compact"),
        ("compact-delete", "compact,delete"),
    ] {
        let mut config = CreatableTopicConfig::default();
        config.name = StrBytes::from_static_str("cleanup.policy");
        config.value = Some(StrBytes::from_static_str(policy));
        let mut topic = CreatableTopic::default();
        topic.name = TopicName(StrBytes::from_static_str(name));
        topic.num_partitions = 1;
        topic.replication_factor = 1;
        topic.configs = vec![config];
        let mut create = CreateTopicsRequest::default();
        create.topics = vec![topic];
        create.timeout_ms = 5000;
        let created: CreateTopicsResponse = call(&mut stream, ApiKey::CreateTopics, 5, &create);
        assert_eq!(created.topics[0].error_code, 0, "{name}");
    }
    assert_eq!(
        delete_records(&mut stream, 2, "compact-only", 0, 0),
        (POLICY_VIOLATION, -1)
    );
    assert_eq!(
        delete_records(&mut stream, 2, "compact-delete", 0, -1),
        (0, 0)
    );
}

#[test]
fn describe_log_dirs_lists_the_data_dir_and_partition_sizes_in_every_version() {
    let broker = start_broker("describe-log-dirs", &[]);
    let mut stream = broker.connect();
    create_topic(&mut stream, "sized", 3);
    for _ in 0..5 {
        assert_eq!(
            produce(&mut stream, "sized", 1, one_record_batch(), -1).error_code,
            0
        );
    }
    let batch_bytes = one_record_batch().len() as i64;
    for version in 1..=4 {
        // Everything (null), then a filter naming one partition and an unknown topic.
        let mut every = DescribeLogDirsRequest::default();
        every.topics = None;
        let all: DescribeLogDirsResponse =
            call(&mut stream, ApiKey::DescribeLogDirs, version, &every);
        assert_eq!(all.results.len(), 1, "v{version}");
        let dir = &all.results[0];
        assert_eq!(dir.error_code, 0);
        assert!(!dir.log_dir.is_empty());
        if version >= 4 {
            assert!(dir.total_bytes > 0 && dir.usable_bytes >= 0, "{dir:?}");
        }
        let sized = dir
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == "sized")
            .expect("the topic is listed");
        let sizes: Vec<(i32, i64)> = sized
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size))
            .collect();
        assert_eq!(
            sizes,
            vec![(0, 0), (1, 5 * batch_bytes), (2, 0)],
            "v{version}"
        );
        assert!(sized
            .partitions
            .iter()
            .all(|p| p.offset_lag == 0 && !p.is_future_key));

        let mut t = DescribableLogDirTopic::default();
        t.topic = name("sized");
        t.partitions = vec![1, 9];
        let mut unknown = DescribableLogDirTopic::default();
        unknown.topic = name("nope");
        unknown.partitions = vec![0];
        let mut request = DescribeLogDirsRequest::default();
        request.topics = Some(vec![t, unknown]);
        let some: DescribeLogDirsResponse =
            call(&mut stream, ApiKey::DescribeLogDirs, version, &request);
        let topics = &some.results[0].topics;
        assert_eq!(topics.len(), 1, "v{version}");
        let sizes: Vec<(i32, i64)> = topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size))
            .collect();
        assert_eq!(sizes, vec![(1, 5 * batch_bytes)]);
    }
}
