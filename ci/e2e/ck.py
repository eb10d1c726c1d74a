"""confluent-kafka (librdkafka) produce and consume helpers shared by several tests."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from records import (
    PARTITIONS,
    Deadline,
    Read,
    headers_of,
    key_of,
    normalise_headers,
    partition_of,
    seq_of,
    value_of,
)

# librdkafka's local queue; 100k small records fit, so produce() never has to wait in tests.
QUEUE_MESSAGES_MAX = 200_000


def producer(bootstrap: str, **extra) -> Producer:
    config = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "queue.buffering.max.messages": QUEUE_MESSAGES_MAX,
        "message.timeout.ms": 30_000,
    }
    config.update({k.replace("_", "."): v for k, v in extra.items()})
    return Producer(config)


def consumer(bootstrap: str, **extra) -> Consumer:
    # The group id only satisfies librdkafka: these tests assign partitions by hand and commit
    # nothing (test_groups.py covers groups).
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": "spate-e2e",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    config.update({k.replace("_", "."): v for k, v in extra.items()})
    return Consumer(config)


def produce_range(
    p: Producer,
    topic: str,
    tag: str,
    seqs: range,
    partitions: int = PARTITIONS,
    flush_timeout_s: float = 60.0,
) -> dict[int, tuple[int, int]]:
    """Produces records `seqs` and returns seq -> (partition, offset) from the delivery reports.

    Raises on any delivery error. With acks=0 librdkafka reports no offsets (offset < 0).
    """
    acked: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(err, msg):
        # Delivery reports carry no headers in confluent-kafka; the value names the record.
        seq = seq_of(msg.value())
        if err is not None:
            errors.append(f"seq {seq}: {err}")
        else:
            acked[seq] = (msg.partition(), msg.offset())

    for seq in seqs:
        while True:
            try:
                p.produce(
                    topic,
                    value=value_of(tag, seq),
                    key=key_of(seq),
                    partition=partition_of(seq, partitions),
                    headers=headers_of(tag, seq),
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                p.poll(0.05)
        if seq % 1000 == 0:
            p.poll(0)
    remaining = p.flush(flush_timeout_s)
    assert remaining == 0, f"{remaining} records still unsent after {flush_timeout_s}s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    assert len(acked) == len(seqs), f"{len(acked)} delivery reports for {len(seqs)} records"
    return acked


def consume_all(
    bootstrap: str,
    topic: str,
    count: int,
    partitions: int = PARTITIONS,
    timeout_s: float = 60.0,
    settle_s: float = 0.5,
    **extra,
) -> list[Read]:
    """Reads every partition from the beginning until `count` records arrived, then keeps
    polling for `settle_s` so a duplicate or an extra record would be seen too."""
    c = consumer(bootstrap, **extra)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        reads: list[Read] = []
        deadline = Deadline(timeout_s)
        while len(reads) < count and not deadline.expired():
            reads.extend(_to_reads(c.consume(num_messages=10_000, timeout=0.5)))
        settle = Deadline(settle_s)
        while not settle.expired():
            reads.extend(_to_reads(c.consume(num_messages=10_000, timeout=settle.left())))
        return reads
    finally:
        c.close()


def _to_reads(msgs) -> list[Read]:
    out = []
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(f"consume error: {err}")
        out.append(Read(m.partition(), m.offset(), m.key(), m.value(), normalise_headers(m.headers())))
    return out


def high_watermarks(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> list[tuple[int, int]]:
    """(low, high) per partition, from ListOffsets earliest/latest."""
    c = consumer(bootstrap)
    try:
        return [
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10.0, cached=False)
            for p in range(partitions)
        ]
    finally:
        c.close()


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS, **config) -> None:
    """Creates a topic with the admin client (CreateTopics), so a test does not depend on
    auto-creation, which has its own tests."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)
    admin.create_topics([new])[topic].result(timeout=15)
