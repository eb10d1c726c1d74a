"""Topic administration: CreateTopics (with configs), DescribeConfigs, CreatePartitions,
DeleteTopics through confluent-kafka's AdminClient and kafka-python's KafkaAdminClient, and
topic auto-creation by Metadata."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic, ResourceType
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kafka.admin import NewPartitions as KpNewPartitions
from kafka.admin import NewTopic as KpNewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

import ck
import kp
from records import Deadline


def partition_count(admin: AdminClient, topic: str) -> int | None:
    md = admin.list_topics(timeout=10)
    t = md.topics.get(topic)
    return None if t is None else len(t.partitions)


def test_confluent_admin_lifecycle(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "admin-ck"
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1,
                  config={"retention.ms": "3600000", "segment.bytes": "1048576"})]
    )
    assert futures[topic].result(timeout=10) is None
    assert partition_count(admin, topic) == 3

    # Creating it again is refused with TOPIC_ALREADY_EXISTS.
    with pytest.raises(KafkaException) as excinfo:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=10)
    assert excinfo.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["segment.bytes"].value == "1048576"

    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=10)
    assert partition_count(admin, topic) == 5

    # The new partitions take records like the old ones.
    p = ck.producer(broker.bootstrap, acks="all")
    acked = ck.produce_range(p, topic, "admin", range(50), partitions=5)
    assert {part for part, _ in acked.values()} == set(range(5))
    assert ck.high_watermarks(broker.bootstrap, topic, partitions=5) == [(0, 10)] * 5

    admin.delete_topics([topic])[topic].result(timeout=10)
    assert partition_count(admin, topic) is None
    with pytest.raises(KafkaException) as excinfo:
        admin.delete_topics([topic])[topic].result(timeout=10)
    assert excinfo.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    # A deleted topic's name can be reused and starts empty.
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=10)
    assert partition_count(admin, topic) == 2
    assert ck.high_watermarks(broker.bootstrap, topic, partitions=2) == [(0, 0)] * 2


def test_kafka_python_admin_lifecycle(start_broker):
    broker = start_broker(cores=1)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    topic = "admin-kp"
    try:
        admin.create_topics([KpNewTopic(topic, num_partitions=2, replication_factor=1,
                                        topic_configs={"retention.ms": "7200000"})])
        assert topic in admin.list_topics()
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics([KpNewTopic(topic, num_partitions=2, replication_factor=1)])

        described_configs = admin.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, topic)])
        # kafka-python 3 shows only configs set on the topic by default ("modified").
        assert described_configs["topic"][topic]["retention.ms"]["value"] == "7200000"

        admin.create_partitions({topic: KpNewPartitions(total_count=4)})
        described = admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 4

        admin.delete_topics([topic])
        assert topic not in admin.list_topics()
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics([topic])
    finally:
        admin.close()


def test_auto_creation_uses_the_broker_default_partition_count(start_broker):
    broker = start_broker(cores=2, args=["--num-partitions", "3"])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert partition_count(admin, "auto-ck") is None

    p = ck.producer(broker.bootstrap, acks="all")
    p.produce("auto-ck", value=b"first")
    assert p.flush(15) == 0
    assert partition_count(admin, "auto-ck") == 3

    kpp = kp.producer(broker.bootstrap, acks="all")
    try:
        meta = kpp.send("auto-kp", value=b"first", partition=0).get(timeout=15)
        assert (meta.partition, meta.offset) == (0, 0)
    finally:
        kpp.close()
    assert partition_count(admin, "auto-kp") == 3


def test_unknown_topic_is_an_error_without_auto_creation(start_broker):
    broker = start_broker(cores=2, args=["--auto-create-topics", "false", "--num-partitions", "3"])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    p = ck.producer(broker.bootstrap, acks="all", message_timeout_ms=3000)
    errors = []
    p.produce("no-such-topic", value=b"x", on_delivery=lambda err, msg: errors.append(err))
    deadline = Deadline(15)
    while not errors and not deadline.expired():
        p.poll(0.1)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                                KafkaError._MSG_TIMED_OUT), errors[0]

    md = admin.list_topics(topic="no-such-topic", timeout=10)
    assert md.topics["no-such-topic"].error is not None
    assert md.topics["no-such-topic"].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    time.sleep(0.2)
    assert partition_count(admin, "no-such-topic") is None

    # Explicit creation still works.
    admin.create_topics([NewTopic("made", num_partitions=1, replication_factor=1)])["made"].result(timeout=10)
    assert partition_count(admin, "made") == 1


def test_confluent_describe_cluster_names_the_broker_and_controller(broker):
    """librdkafka's DescribeCluster (API 60): one broker, which is also the controller, at the
    address clients were given; Metadata (list_topics) agrees."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    described = admin.describe_cluster(request_timeout=10).result(timeout=15)
    assert described.cluster_id == "spate"
    assert [(n.id, n.host, n.port) for n in described.nodes] == [(0, "127.0.0.1", broker.port)]
    assert described.controller is not None and described.controller.id == 0
    md = admin.list_topics(timeout=10)
    assert md.cluster_id == "spate"
    assert md.controller_id == 0
    assert sorted(md.brokers) == [0]


def test_confluent_manual_replica_assignment(broker):
    """CreateTopics with `assignments` (AdminClient's replica_assignment): one replica per
    partition on this broker works; another broker, or several replicas, are refused with
    Kafka's codes and a message."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # librdkafka wants num_partitions to match the assignment; it sends -1 for both counts.
    admin.create_topics([NewTopic("assigned", 3, replica_assignment=[[0], [0], [0]])])[
        "assigned"
    ].result(timeout=10)
    assert partition_count(admin, "assigned") == 3
    p = ck.producer(broker.bootstrap, acks="all")
    acked = ck.produce_range(p, "assigned", "assigned", range(30), partitions=3)
    assert {part for part, _ in acked.values()} == {0, 1, 2}

    # CreatePartitions takes an assignment for the new partitions too.
    admin.create_partitions([NewPartitions("assigned", 5, replica_assignment=[[0], [0]])])[
        "assigned"
    ].result(timeout=10)
    assert partition_count(admin, "assigned") == 5
    with pytest.raises(KafkaException) as excinfo:
        admin.create_partitions([NewPartitions("assigned", 6, replica_assignment=[[7]])])[
            "assigned"
        ].result(timeout=10)
    assert excinfo.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert partition_count(admin, "assigned") == 5

    cases = [
        ("assigned-elsewhere", [[5]], KafkaError.INVALID_REPLICA_ASSIGNMENT),
        ("assigned-twice", [[0, 1]], KafkaError.INVALID_REPLICATION_FACTOR),
    ]
    for name, assignment, code in cases:
        with pytest.raises(KafkaException) as excinfo:
            admin.create_topics(
                [NewTopic(name, len(assignment), replica_assignment=assignment)]
            )[name].result(
                timeout=10
            )
        assert excinfo.value.args[0].code() == code, name
        assert partition_count(admin, name) is None


def test_default_replication_factor_is_the_broker_setting(start_broker):
    """default.replication.factor (`--default-replication-factor`) is what a topic created
    without a replication factor gets. Replication does not exist yet, so above 1 such a topic
    is refused with INVALID_REPLICATION_FACTOR and a message saying why, while an explicit
    factor of 1 still works; DescribeConfigs shows the setting."""
    broker = start_broker(cores=1, args=["--default-replication-factor", "3"])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as refused:
        admin.create_topics([NewTopic("by-default", num_partitions=1)])["by-default"].result(timeout=10)
    error = refused.value.args[0]
    assert error.code() == KafkaError.INVALID_REPLICATION_FACTOR, error
    assert "replication is not implemented yet" in error.str(), error.str()
    admin.create_topics([NewTopic("explicit", num_partitions=1, replication_factor=1)])["explicit"].result(timeout=10)
    resource = ConfigResource(ResourceType.BROKER, "0")  # the default --node-id
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["default.replication.factor"].value == "3"
