"""kafka-python 3.0 produce and consume helpers."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from records import PARTITIONS, Deadline, Read, headers_of, key_of, normalise_headers, partition_of, value_of


def producer(bootstrap: str, **extra) -> KafkaProducer:
    # kafka-python 3 turns idempotence on by default; these helpers turn it off so the plain
    # produce path is what the other tests exercise (test_idempotence.py covers the default).
    config = dict(
        bootstrap_servers=bootstrap,
        enable_idempotence=False,
        linger_ms=5,
        batch_size=64 * 1024,
    )
    config.update(extra)
    return KafkaProducer(**config)


def consumer(bootstrap: str, **extra) -> KafkaConsumer:
    config = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    config.update(extra)
    return KafkaConsumer(**config)


def produce_range(p: KafkaProducer, topic: str, tag: str, seqs: range, partitions: int = PARTITIONS):
    futures = []
    for seq in seqs:
        futures.append(
            (
                seq,
                p.send(
                    topic,
                    value=value_of(tag, seq),
                    key=key_of(seq),
                    headers=headers_of(tag, seq),
                    partition=partition_of(seq, partitions),
                ),
            )
        )
    p.flush(timeout=120)
    acked = {}
    for seq, f in futures:
        meta = f.get(timeout=30)
        acked[seq] = (meta.partition, meta.offset)
    return acked


def consume_all(bootstrap: str, topic: str, count: int, partitions: int = PARTITIONS,
                timeout_s: float = 120.0, settle_s: float = 0.5) -> list[Read]:
    c = consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        reads: list[Read] = []
        deadline = Deadline(timeout_s)
        while len(reads) < count and not deadline.expired():
            reads.extend(_to_reads(c.poll(timeout_ms=500, max_records=10_000)))
        settle = Deadline(settle_s)
        while not settle.expired():
            reads.extend(_to_reads(c.poll(timeout_ms=int(settle.left() * 1000) + 1)))
        return reads
    finally:
        c.close()


def _to_reads(batches) -> list[Read]:
    out = []
    for tp, records in batches.items():
        for r in records:
            out.append(Read(tp.partition, r.offset, r.key, r.value, normalise_headers(r.headers)))
    return out
