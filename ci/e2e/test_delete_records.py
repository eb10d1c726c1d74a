"""DeleteRecords (API 21) and DescribeLogDirs (API 35) through confluent-kafka and kafka-python.

DeleteRecords moves a partition's log start: consumers from earliest then see only records at
or after it, ListOffsets earliest answers it, a fetch below it is out of range (the consumer
resets to the new start), whole segments below it are removed, and an acknowledged move
survives a kill -9. DescribeLogDirs lists the data dir with each partition's size."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition

import ck

PARTITIONS = 2
RECORDS = 400
# Small segments (the minimum) so the records fill several and the move removes some.
SEGMENT_BYTES = 1 << 14
VALUE_BYTES = 200


def fill(broker, topic: str) -> None:
    ck.create_topic(broker.bootstrap, topic, partitions=PARTITIONS, **{"segment.bytes": str(SEGMENT_BYTES)})
    p = ck.producer(broker.bootstrap, acks="all", linger_ms=0)
    for i in range(RECORDS):
        for partition in range(PARTITIONS):
            p.produce(topic, value=b"%05d" % i + b"x" * VALUE_BYTES, partition=partition)
        if i % 50 == 49:
            assert p.flush(30) == 0
    assert p.flush(30) == 0


def read_from_earliest(broker, topic: str, partition: int, start: int | None = None) -> list[int]:
    """Offsets of every record from `start` (earliest when None) to the end."""
    c = ck.consumer(broker.bootstrap)
    try:
        offset = start if start is not None else -2  # OFFSET_BEGINNING
        c.assign([TopicPartition(topic, partition, offset)])
        offsets: list[int] = []
        idle = 0
        while idle < 3:
            m = c.poll(2)
            if m is None:
                idle += 1
                continue
            assert m.error() is None, m.error()
            offsets.append(m.offset())
            assert m.value()[:5] == b"%05d" % m.offset()
            idle = 0
        return offsets
    finally:
        c.close()


def segment_files(broker, topic: str, partition: int) -> int:
    return len(list((broker.data_dir / f"{topic}-{partition}").glob("*.log")))


def test_confluent_delete_records_moves_the_log_start_durably(broker):
    topic = "deleted"
    fill(broker, topic)
    assert ck.high_watermarks(broker.bootstrap, topic, PARTITIONS) == [(0, RECORDS)] * PARTITIONS
    segments_before = segment_files(broker, topic, 0)
    assert segments_before >= 4, segments_before
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # Partition 0 to 301 (inside a batch, past several segments), partition 1 to the high
    # watermark (-1, OFFSET_END).
    futures = admin.delete_records([TopicPartition(topic, 0, 301), TopicPartition(topic, 1, -1)])
    results = {tp.partition: f.result(timeout=15) for tp, f in futures.items()}
    assert results[0].low_watermark == 301
    assert results[1].low_watermark == RECORDS
    assert ck.high_watermarks(broker.bootstrap, topic, PARTITIONS) == [(301, RECORDS), (RECORDS, RECORDS)]
    assert segment_files(broker, topic, 0) < segments_before
    offsets = read_from_earliest(broker, topic, 0)
    assert offsets == list(range(301, RECORDS))
    assert read_from_earliest(broker, topic, 1) == []
    # Below the start: out of range, and the consumer resets to the new start.
    assert read_from_earliest(broker, topic, 0, start=10) == list(range(301, RECORDS))
    # Above the high watermark: OFFSET_OUT_OF_RANGE, nothing moves.
    [future] = admin.delete_records([TopicPartition(topic, 0, RECORDS + 5)]).values()
    with pytest.raises(KafkaException) as refused:
        future.result(timeout=15)
    assert "OFFSET_OUT_OF_RANGE" in str(refused.value) or "out of range" in str(refused.value).lower()
    # A partition that does not exist.
    [future] = admin.delete_records([TopicPartition("no-such-topic", 0, 1)]).values()
    with pytest.raises(KafkaException):
        future.result(timeout=15)
    # Acknowledged, so it survives a kill -9.
    broker.kill9()
    broker.restart()
    assert ck.high_watermarks(broker.bootstrap, topic, PARTITIONS) == [(301, RECORDS), (RECORDS, RECORDS)]
    assert read_from_earliest(broker, topic, 0) == list(range(301, RECORDS))
    # New records go on after the end, and a later move goes on from the start kept.
    p = ck.producer(broker.bootstrap, acks="all")
    p.produce(topic, value=b"%05d" % RECORDS, partition=1)
    assert p.flush(15) == 0
    assert read_from_earliest(broker, topic, 1) == [RECORDS]


def test_kafka_python_delete_records_and_describe_log_dirs(broker):
    topic = "logdirs"
    fill(broker, topic)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15_000)
    try:
        dirs = admin.describe_log_dirs()
        [entry] = dirs
        [log_dir] = entry["log_dirs"]
        assert log_dir["error_code"] == 0
        assert log_dir["log_dir"] == str(broker.data_dir.resolve()) or log_dir["log_dir"].endswith(broker.data_dir.name)
        topics = {t["name"]: t for t in log_dir["topics"]}
        assert topic in topics, topics.keys()
        sizes = {p["partition_index"]: p for p in topics[topic]["partitions"]}
        assert set(sizes) == set(range(PARTITIONS))
        for p in sizes.values():
            # At least the record values, at most twice them (batch framing).
            assert RECORDS * VALUE_BYTES <= p["partition_size"] <= 2 * RECORDS * (VALUE_BYTES + 100), p
            assert p["offset_lag"] == 0 and p["is_future_key"] is False
        before = sizes[0]["partition_size"]

        tp = KpTopicPartition(topic, 0)
        answer = admin.delete_records({tp: 250})
        assert answer[tp]["low_watermark"] == 250, answer
        assert ck.high_watermarks(broker.bootstrap, topic, PARTITIONS)[0] == (250, RECORDS)
        assert read_from_earliest(broker, topic, 0) == list(range(250, RECORDS))

        # A topics filter, and the size shrank with the segments removed.
        [entry] = admin.describe_log_dirs({topic: [0]})
        [log_dir] = entry["log_dirs"]
        [t] = log_dir["topics"]
        [p] = t["partitions"]
        assert (t["name"], p["partition_index"]) == (topic, 0)
        assert p["partition_size"] < before
    finally:
        admin.close()
