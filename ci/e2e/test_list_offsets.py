"""ListOffsets: earliest, latest and by timestamp, through confluent-kafka and kafka-python.

Spate answers a timestamp query at batch granularity (the base offset of the first batch whose
max timestamp is >= t), so every record here is produced in its own batch; then the answer is
exactly Kafka's: the first record with timestamp >= t."""

import pytest
from confluent_kafka import TopicPartition
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
