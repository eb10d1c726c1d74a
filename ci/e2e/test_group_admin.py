"""Group administration with real admin clients: ListGroups, DescribeGroups, DeleteGroups,
OffsetFetch/OffsetCommit through confluent-kafka's AdminClient, OffsetDelete through
kafka-python's KafkaAdminClient."""

from __future__ import annotations

import time

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition as KpTopicPartition

TOPIC = "admin-orders"
GROUP = "admin-group"
PARTITIONS = 3
RECORDS_PER_PARTITION = 10


def group_offsets(admin: AdminClient) -> dict[int, int]:
    request = ConsumerGroupTopicPartitions(GROUP)
    result = admin.list_consumer_group_offsets([request])[GROUP].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == TOPIC}


def listed_groups(admin: AdminClient) -> dict[str, ConsumerGroupState]:
    result = admin.list_consumer_groups().result(timeout=30)
    return {g.group_id: g.state for g in result.valid}


def test_admin_clients_list_describe_alter_and_delete_groups(broker):
    bootstrap = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap})
    for partition in range(PARTITIONS):
        for i in range(RECORDS_PER_PARTITION):
            p.produce(TOPIC, value=b"v%d" % i, partition=partition)
    assert p.flush(30) == 0

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "client.id": "admin-test-consumer"})
    c.subscribe([TOPIC])
    seen = 0
    deadline = time.monotonic() + 60
    while seen < PARTITIONS * RECORDS_PER_PARTITION and time.monotonic() < deadline:
        msgs = [m for m in c.consume(100, 0.5) if not m.error()]
        seen += len(msgs)
        if msgs:
            c.commit(asynchronous=False)
    assert seen == PARTITIONS * RECORDS_PER_PARTITION

    # A live member: the group is Stable, described with its member and assignment.
    assert listed_groups(admin).get(GROUP) == ConsumerGroupState.STABLE
    described = admin.describe_consumer_groups([GROUP])[GROUP].result(timeout=30)
    assert described.state == ConsumerGroupState.STABLE
    assert described.partition_assignor == "range"
    assert len(described.members) == 1
    member = described.members[0]
    assert member.client_id == "admin-test-consumer"
    assert member.host == "/127.0.0.1"
    assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1, 2]
    assert group_offsets(admin) == {p: RECORDS_PER_PARTITION for p in range(PARTITIONS)}

    # Not deletable while it has a member; its topic's offsets are protected too.
    futures = admin.delete_consumer_groups([GROUP])
    try:
        futures[GROUP].result(timeout=30)
        raise AssertionError("deleting a group with a member succeeded")
    except Exception as e:  # KafkaException wrapping the broker's error
        assert e.args[0].code() == KafkaError.NON_EMPTY_GROUP, e
    kp_admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        result = kp_admin.delete_group_offsets(GROUP, [KpTopicPartition(TOPIC, 1)])
        assert [e.__name__ for e in result.values()] == ["GroupSubscribedToTopicError"], result

        c.close()
        assert listed_groups(admin).get(GROUP) == ConsumerGroupState.EMPTY
        assert admin.describe_consumer_groups([GROUP])[GROUP].result(timeout=30).state == \
            ConsumerGroupState.EMPTY

        # Reset one partition (OffsetCommit from an admin, generation -1).
        alter = ConsumerGroupTopicPartitions(GROUP, [TopicPartition(TOPIC, 0, 4)])
        altered = admin.alter_consumer_group_offsets([alter])[GROUP].result(timeout=30)
        assert [(tp.partition, tp.offset, tp.error) for tp in altered.topic_partitions] == \
            [(0, 4, None)]
        assert group_offsets(admin) == {0: 4, 1: RECORDS_PER_PARTITION, 2: RECORDS_PER_PARTITION}

        # OffsetDelete on the now empty group.
        result = kp_admin.delete_group_offsets(GROUP, [KpTopicPartition(TOPIC, 1)])
        assert [e.__name__ for e in result.values()] == ["NoError"], result
        offsets = group_offsets(admin)
        assert offsets[0] == 4 and offsets[2] == RECORDS_PER_PARTITION
        assert offsets.get(1, -1001) < 0, offsets
    finally:
        kp_admin.close()

    admin.delete_consumer_groups([GROUP])[GROUP].result(timeout=30)
    assert GROUP not in listed_groups(admin)
    assert all(o < 0 for o in group_offsets(admin).values())
    futures = admin.delete_consumer_groups([GROUP])
    try:
        futures[GROUP].result(timeout=30)
        raise AssertionError("deleting a deleted group succeeded")
    except Exception as e:
        assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e


def test_the_offsets_topic_is_internal_and_cannot_be_deleted_or_grown(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = admin.list_topics(timeout=30)
    offsets = md.topics["__consumer_offsets"]
    assert len(offsets.partitions) == 50
    futures = admin.delete_topics(["__consumer_offsets"], operation_timeout=30)
    try:
        futures["__consumer_offsets"].result(timeout=30)
        raise AssertionError("deleting __consumer_offsets succeeded")
    except Exception as e:
        assert e.args[0].code() == KafkaError.INVALID_REQUEST, e
    from confluent_kafka.admin import NewPartitions
    futures = admin.create_partitions([NewPartitions("__consumer_offsets", 60)])
    try:
        futures["__consumer_offsets"].result(timeout=30)
        raise AssertionError("growing __consumer_offsets succeeded")
    except Exception as e:
        assert e.args[0].code() == KafkaError.INVALID_REQUEST, e
    assert len(admin.list_topics(timeout=30).topics["__consumer_offsets"].partitions) == 50


def test_clients_cannot_produce_to_the_offsets_topic(broker):
    """Only the coordinator writes `__consumer_offsets`: a client's records would be read back as
    offsets and group state. Kafka answers INVALID_TOPIC_EXCEPTION; the delivery fails and the
    partition's log end does not move."""
    bootstrap = broker.bootstrap
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-topic-probe"})
    before = consumer.get_watermark_offsets(TopicPartition("__consumer_offsets", 0), timeout=30)
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "message.send.max.retries": 0})
    p.produce(
        "__consumer_offsets",
        key=b"not-a-commit",
        value=b"x",
        partition=0,
        on_delivery=lambda err, _msg: errors.append(err),
    )
    assert p.flush(30) == 0
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION, errors[0]
    after = consumer.get_watermark_offsets(TopicPartition("__consumer_offsets", 0), timeout=30)
    assert after == before
    consumer.close()
