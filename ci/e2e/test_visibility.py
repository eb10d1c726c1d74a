"""`spate.visibility`: what consumers may read of a partition (docs/DURABILITY.md).

- `durable` (the default): consumers read only records an fdatasync covered, so every record a
  consumer has seen survives a kill -9, also under acks=1 (whose answer comes before the sync).
- `appended` (opt-in, Kafka's rule): a record is readable once appended; ListOffsets latest
  counts an acks=1 record the moment its answer arrives.
The setting goes through the topic config machinery: CreateTopics configs,
IncrementalAlterConfigs (live), DescribeConfigs, INVALID_CONFIG for a bad value."""

import threading
import time

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

import ck
from records import Deadline

SEQUENTIAL_RECORDS = 40
CRASH_PRODUCE_S = 3.0
SEEN_RECORDS_MIN = 1_000


def describe_visibility(bootstrap: str, topic: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entry = admin.describe_configs([resource])[resource].result(timeout=15)["spate.visibility"]
    return entry.value, entry.source


def set_visibility(bootstrap: str, topic: str, value: str) -> None:
    entry = ConfigEntry("spate.visibility", value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.incremental_alter_configs([resource])[resource].result(timeout=20)


def produce_one_by_one(bootstrap: str, topic: str, first: int, count: int) -> list[int]:
    """Produces `count` records with acks=1, each waited for, and returns the high watermark
    ListOffsets answered right after each acknowledgement."""
    p = ck.producer(bootstrap, acks="1", linger_ms=0)
    c = ck.consumer(bootstrap)
    highs = []
    try:
        for i in range(first, first + count):
            delivered = []
            p.produce(topic, value=b"v%d" % i, partition=0,
                      on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
            assert p.flush(10) == 0
            assert delivered == [(None, i)], delivered
            _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10.0, cached=False)
            highs.append(high)
    finally:
        c.close()
    return highs


def consume_values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    return [r.value for r in ck.consume_all(bootstrap, topic, count, partitions=1)]


def test_appended_shows_acks1_records_at_once_and_the_setting_changes_live(broker):
    topic = "visible-appended"
    ck.create_topic(broker.bootstrap, topic, partitions=1, **{"spate.visibility": "appended"})
    assert describe_visibility(broker.bootstrap, topic) == (
        "appended", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)

    # Kafka's rule: the record is counted by the time its acks=1 answer arrived.
    highs = produce_one_by_one(broker.bootstrap, topic, 0, SEQUENTIAL_RECORDS)
    assert highs == list(range(1, SEQUENTIAL_RECORDS + 1))
    assert consume_values(broker.bootstrap, topic, SEQUENTIAL_RECORDS) == [
        b"v%d" % i for i in range(SEQUENTIAL_RECORDS)]

    # Back to durable, live: nothing consumers could read disappears, and new records become
    # visible once synced (the group commit follows the device, so promptly).
    set_visibility(broker.bootstrap, topic, "durable")
    assert describe_visibility(broker.bootstrap, topic) == (
        "durable", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    highs = produce_one_by_one(broker.bootstrap, topic, SEQUENTIAL_RECORDS, SEQUENTIAL_RECORDS)
    assert all(h >= SEQUENTIAL_RECORDS for h in highs), highs
    assert consume_values(broker.bootstrap, topic, 2 * SEQUENTIAL_RECORDS) == [
        b"v%d" % i for i in range(2 * SEQUENTIAL_RECORDS)]

    # The change is durable: after a kill -9 the topic still says durable.
    broker.kill9()
    broker.restart()
    assert describe_visibility(broker.bootstrap, topic)[0] == "durable"


def test_visibility_defaults_to_durable_and_refuses_unknown_values(broker):
    topic = "visible-default"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    assert describe_visibility(broker.bootstrap, topic) == (
        "durable", ConfigSource.DEFAULT_CONFIG.value)
    with pytest.raises(KafkaException) as refused:
        set_visibility(broker.bootstrap, topic, "replicated")
    assert refused.value.args[0].name() == "INVALID_CONFIG"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    from confluent_kafka.admin import NewTopic
    bad = NewTopic("visible-bad", num_partitions=1, replication_factor=1,
                   config={"spate.visibility": "sometimes"})
    with pytest.raises(KafkaException) as refused:
        admin.create_topics([bad])["visible-bad"].result(timeout=15)
    assert refused.value.args[0].name() == "INVALID_CONFIG"
    highs = produce_one_by_one(broker.bootstrap, topic, 0, SEQUENTIAL_RECORDS)
    # Durable records only: the high watermark never runs ahead of what was produced, and
    # every record is readable once synced.
    assert all(h <= i + 1 for i, h in enumerate(highs)), highs
    assert consume_values(broker.bootstrap, topic, SEQUENTIAL_RECORDS) == [
        b"v%d" % i for i in range(SEQUENTIAL_RECORDS)]


def test_durable_records_a_consumer_saw_survive_kill9_under_acks1(broker):
    """The default's promise, under the acks setting that does not wait for the sync: a
    consumer tailing the partition while acks=1 producers run, then kill -9; every record the
    consumer saw is back after the restart at the offset it was seen at."""
    topic = "visible-crash"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    seen: dict[int, bytes] = {}
    stop = threading.Event()
    errors: list[str] = []

    def tail():
        c = ck.consumer(broker.bootstrap, fetch_wait_max_ms=100)
        c.assign([TopicPartition(topic, 0, 0)])
        try:
            while not stop.is_set():
                for m in c.consume(1000, 0.05):
                    if m.error():
                        errors.append(str(m.error()))
                    else:
                        seen[m.offset()] = m.value()
        finally:
            c.close()

    tailer = threading.Thread(target=tail, daemon=True)
    tailer.start()
    p = ck.producer(broker.bootstrap, acks="1", linger_ms=1)
    deadline = Deadline(CRASH_PRODUCE_S)
    i = 0
    while not deadline.expired():
        try:
            p.produce(topic, value=b"r%d" % i, partition=0)
            i += 1
        except BufferError:
            p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    # Let the consumer catch up with part of it, then crash with the producer still busy.
    wait = Deadline(10)
    while len(seen) < SEEN_RECORDS_MIN and not wait.expired():
        time.sleep(0.01)
    broker.kill9()
    stop.set()
    tailer.join(10)
    assert not errors, errors
    assert len(seen) >= SEEN_RECORDS_MIN, f"the consumer saw only {len(seen)} records"
    broker.restart()
    high = max(seen) + 1
    after = ck.consume_all(broker.bootstrap, topic, high, partitions=1)
    kept = {r.offset: r.value for r in after}
    lost = [o for o in seen if kept.get(o) != seen[o]]
    assert not lost, f"{len(lost)} of {len(seen)} seen records changed or lost, first {lost[:5]}"
    assert sorted(seen) == list(range(len(seen))), "a consumer sees a dense prefix"
