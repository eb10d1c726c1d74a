"""Kafka's common topic configs, as tools set them: `message.timestamp.type=LogAppendTime` (the
broker stamps each batch), `compression.type` (the broker stores batches in the topic's codec,
recompressing a producer's other codec), and the configs Spate stores and reports without
acting on (docs/TOPIC-CONFIGS.md says why for each). Kafka Streams sets
`message.timestamp.type=CreateTime` on every internal topic it creates; refusing it stopped
every Streams application."""

import struct
import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

import ck

ZSTD = 4


def first_batch_attributes(broker, topic: str) -> int:
    """The attributes of the first batch in partition 0's first segment, read from the file."""
    segment = sorted((broker.data_dir / f"{topic}-0").glob("*.log"))[0]
    header = segment.read_bytes()[:61]
    (attributes,) = struct.unpack(">h", header[21:23])
    return attributes


def test_log_append_time_and_compression_type_are_applied(broker):
    topic = "stamped-and-packed"
    ck.create_topic(broker.bootstrap, topic, partitions=1, **{
        "message.timestamp.type": "LogAppendTime",
        "compression.type": "zstd",
    })
    before_ms = int(time.time() * 1000)
    p = ck.producer(broker.bootstrap, acks="all", compression_type="lz4", linger_ms=50)
    for i in range(20):
        p.produce(topic, key=b"k%d" % i, value=b"value-%d" % i * 10, partition=0, timestamp=1234)
    assert p.flush(15) == 0
    after_ms = int(time.time() * 1000)
    reads = ck.consume_all(broker.bootstrap, topic, 20, partitions=1)
    assert [r.value for r in reads] == [b"value-%d" % i * 10 for i in range(20)]
    c = ck.consumer(broker.bootstrap)
    try:
        from confluent_kafka import TopicPartition
        c.assign([TopicPartition(topic, 0, 0)])
        m = c.poll(10)
        assert m is not None and m.error() is None
        kind, stamp = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME, m.timestamp()
        assert before_ms - 1000 <= stamp <= after_ms + 1000, (before_ms, stamp, after_ms)
    finally:
        c.close()
    attributes = first_batch_attributes(broker, topic)
    assert attributes & 0x07 == ZSTD, f"stored codec {attributes & 0x07}, want zstd"
    assert attributes & 0x08, "stored with the LogAppendTime attribute"


def test_create_time_keeps_the_producer_timestamp(broker):
    topic = "create-time"
    ck.create_topic(broker.bootstrap, topic, partitions=1, **{"message.timestamp.type": "CreateTime"})
    p = ck.producer(broker.bootstrap, acks="all")
    p.produce(topic, value=b"v", partition=0, timestamp=1234)
    assert p.flush(15) == 0
    c = ck.consumer(broker.bootstrap)
    try:
        from confluent_kafka import TopicPartition
        c.assign([TopicPartition(topic, 0, 0)])
        m = c.poll(10)
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, 1234)
    finally:
        c.close()


STORED_ONLY = {
    "max.compaction.lag.ms": "600000",
    "message.timestamp.difference.max.ms": "3600000",
    "unclean.leader.election.enable": "false",
    "segment.jitter.ms": "10",
    "file.delete.delay.ms": "1000",
    "preallocate": "true",
    "message.downconversion.enable": "false",
    "index.interval.bytes": "8192",
}


def test_kafkas_other_topic_configs_are_accepted_stored_and_described(broker):
    topic = "terraformed"
    ck.create_topic(broker.bootstrap, topic, partitions=1, **STORED_ONLY)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    for key, value in STORED_ONLY.items():
        assert configs[key].value == value, (key, configs[key].value)
        assert not configs[key].is_default, key
    # Defaults are described too, as Kafka's.
    assert configs["compression.type"].value == "producer"
    assert configs["message.timestamp.type"].value == "CreateTime"
    assert configs["max.compaction.lag.ms"].value == "600000"
    # Bad values and what Spate cannot do are refused with INVALID_CONFIG.
    for key, value in [("preallocate", "maybe"), ("remote.storage.enable", "true"),
                       ("compression.type", "brotli"), ("no.such.config", "1")]:
        new = NewTopic(f"refused-{key.replace('.', '-')}", num_partitions=1, replication_factor=1,
                       config={key: value})
        with pytest.raises(KafkaException) as refused:
            admin.create_topics([new])[new.topic].result(timeout=10)
        assert refused.value.args[0].name() == "INVALID_CONFIG", (key, refused.value)
