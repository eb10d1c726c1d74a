"""ListOffsets: earliest, latest, by timestamp and by max timestamp (KIP-734), through
confluent-kafka and kafka-python.

A timestamp query answers the first *record* with timestamp >= t, as Kafka does, even inside a
batch: the fixture produces one record per batch, and `test_..._inside_one_batch` puts records
of several timestamps in one batch."""

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from kafka import TopicPartition as KpTopicPartition

import ck
import kp

RECORDS = 10
PARTITION = 2


def ts_of(i: int) -> int:
    return (i + 1) * 1000  # ms since the epoch; old on purpose: retention must not care


def expected_offset(t: int) -> int | None:
    """First offset whose timestamp is >= t, None past the last record."""
    for i in range(RECORDS):
        if ts_of(i) >= t:
            return i
    return None


QUERIES = [0, 999, 1000, 1001, 1999, 2000, 5500, 10_000, 10_001, 2**40]


@pytest.fixture
def timestamped_topic(broker):
    topic = "timestamps"
    ck.create_topic(broker.bootstrap, topic)
    p = ck.producer(broker.bootstrap, acks="all", linger_ms=0)
    for i in range(RECORDS):
        p.produce(topic, value=b"t%d" % i, partition=PARTITION, timestamp=ts_of(i))
        assert p.flush(10) == 0  # one record per batch
    return broker, topic


def test_confluent_offsets_for_times(timestamped_topic):
    broker, topic = timestamped_topic
    c = ck.consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, PARTITION), timeout=10, cached=False) == (0, RECORDS)
        # The other partitions of the 6-partition topic exist and are empty.
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 0)
        for t in QUERIES:
            [answer] = c.offsets_for_times([TopicPartition(topic, PARTITION, t)], timeout=10)
            assert answer.error is None, answer.error
            expected = expected_offset(t)
            # librdkafka reports "no record at or after t" as OFFSET_END (-1).
            assert answer.offset == (expected if expected is not None else -1), f"t={t}: {answer}"
        # Reading from the answer's offset gives the record with that timestamp.
        [answer] = c.offsets_for_times([TopicPartition(topic, PARTITION, 3500)], timeout=10)
        c.assign([answer])
        m = c.poll(10)
        assert m is not None and m.error() is None
        assert (m.offset(), m.value(), m.timestamp()[1]) == (3, b"t3", 4000)
    finally:
        c.close()


def test_kafka_python_offsets_for_times(timestamped_topic):
    broker, topic = timestamped_topic
    c = kp.consumer(broker.bootstrap)
    try:
        tp = KpTopicPartition(topic, PARTITION)
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: RECORDS}
        for t in QUERIES:
            answer = c.offsets_for_times({tp: t})[tp]
            expected = expected_offset(t)
            if expected is None:
                assert answer is None, f"t={t}: {answer}"
            else:
                assert answer is not None, f"t={t}: no answer"
                assert (answer.offset, answer.timestamp) == (expected, ts_of(expected)), f"t={t}: {answer}"
    finally:
        c.close()


def one_batch_topic(broker, topic: str, stamps: list[int]) -> None:
    """Produces records stamped `stamps` to partition 0 as one batch (a long linger, one flush)."""
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    p = ck.producer(broker.bootstrap, acks="all", linger_ms=1000, batch_num_messages=1000)
    for i, t in enumerate(stamps):
        p.produce(topic, value=b"r%d" % i, partition=0, timestamp=t)
    assert p.flush(10) == 0


def test_a_timestamp_inside_one_batch_answers_its_record(broker):
    # Kafka's own example: records stamped 1234 and 999999999999 in one batch.
    topic = "stamps-in-one-batch"
    stamps = [1234, 999_999_999_999, 5000]
    one_batch_topic(broker, topic, stamps)
    c = ck.consumer(broker.bootstrap)
    try:
        for t, expected in [(0, 0), (1234, 0), (1235, 1), (999_999_999_999, 1), (10**12, -1)]:
            [answer] = c.offsets_for_times([TopicPartition(topic, 0, t)], timeout=10)
            assert answer.error is None, answer.error
            assert answer.offset == expected, f"t={t}: {answer}"
    finally:
        c.close()
    kc = kp.consumer(broker.bootstrap)
    try:
        tp = KpTopicPartition(topic, 0)
        answer = kc.offsets_for_times({tp: 1235})[tp]
        assert (answer.offset, answer.timestamp) == (1, 999_999_999_999)
    finally:
        kc.close()


def test_confluent_list_offsets_max_timestamp(broker):
    # The first record carrying the largest timestamp, even in the middle of a batch.
    topic = "max-timestamp"
    stamps = [10_000, 70_000, 20_000, 70_000, 30_000]
    one_batch_topic(broker, topic, stamps)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic, 0)
    specs = {
        "max": OffsetSpec.max_timestamp(),
        "earliest": OffsetSpec.earliest(),
        "latest": OffsetSpec.latest(),
        "at 25000": OffsetSpec.for_timestamp(25_000),
    }
    got = {}
    for name, spec in specs.items():
        result = admin.list_offsets({tp: spec}, request_timeout=10)[tp].result()
        got[name] = (result.offset, result.timestamp)
    assert got["max"] == (1, 70_000), got
    assert got["earliest"][0] == 0, got
    assert got["latest"][0] == len(stamps), got
    assert got["at 25000"] == (1, 70_000), got

    # An empty partition has no largest timestamp.
    ck.create_topic(broker.bootstrap, "max-timestamp-empty", partitions=1)
    empty = TopicPartition("max-timestamp-empty", 0)
    result = admin.list_offsets({empty: OffsetSpec.max_timestamp()}, request_timeout=10)[empty].result()
    assert result.offset == -1, result
