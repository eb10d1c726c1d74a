"""Consuming from an offset inside a stored batch: the broker returns the whole containing
batch and the client drops the records before the asked offset, so the first record seen is
exactly the one asked for, with every later record in order."""

import pytest
from confluent_kafka import TopicPartition
from kafka import TopicPartition as KpTopicPartition

import ck
import kp
from records import Deadline, key_of, value_of
from segments import stored_codecs

RECORDS = 10_000
START_OFFSETS = [0, 1, 777, 5_000, RECORDS - 1]


@pytest.fixture
def one_partition_topic(broker):
    topic = "mid-batch"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    # Long linger and big batches: hundreds of records per stored batch.
    p = ck.producer(broker.bootstrap, acks="all", linger_ms=50, batch_num_messages=10_000)
    acked = ck.produce_range(p, topic, topic, range(RECORDS), partitions=1)
    assert sorted(acked.values()) == [(0, i) for i in range(RECORDS)]
    batches = sum(stored_codecs(broker.data_dir, topic, 0).values())
    assert 0 < batches <= RECORDS // 10, f"{batches} batches: most start offsets must fall inside one"
    return broker, topic


def test_confluent_consumes_from_an_offset_inside_a_batch(one_partition_topic):
    broker, topic = one_partition_topic
    for start in START_OFFSETS:
        c = ck.consumer(broker.bootstrap)
        try:
            c.assign([TopicPartition(topic, 0, start)])
            offsets, values, keys = [], [], []
            deadline = Deadline(30)
            while len(offsets) < RECORDS - start and not deadline.expired():
                for m in c.consume(num_messages=10_000, timeout=0.5):
                    assert m.error() is None, m.error()
                    offsets.append(m.offset())
                    values.append(m.value())
                    keys.append(m.key())
        finally:
            c.close()
        assert offsets == list(range(start, RECORDS)), f"start {start}: first offsets {offsets[:3]}"
        assert values == [value_of(topic, s) for s in range(start, RECORDS)]
        assert keys == [key_of(s) for s in range(start, RECORDS)]


def test_kafka_python_consumes_from_an_offset_inside_a_batch(one_partition_topic):
    broker, topic = one_partition_topic
    c = kp.consumer(broker.bootstrap)
    try:
        tp = KpTopicPartition(topic, 0)
        c.assign([tp])
        for start in START_OFFSETS:
            c.seek(tp, start)
            offsets, values = [], []
            deadline = Deadline(30)
            while len(offsets) < RECORDS - start and not deadline.expired():
                for records in c.poll(timeout_ms=500, max_records=10_000).values():
                    offsets.extend(r.offset for r in records)
                    values.extend(r.value for r in records)
            assert offsets == list(range(start, RECORDS)), f"start {start}: first offsets {offsets[:3]}"
            assert values == [value_of(topic, s) for s in range(start, RECORDS)]
    finally:
        c.close()
