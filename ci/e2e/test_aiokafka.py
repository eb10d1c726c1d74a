"""aiokafka 0.14: 100k keyed records with headers to 6 partitions, read back exactly."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import ck
from records import (
    PARTITIONS,
    RECORDS_PER_CLIENT,
    Deadline,
    Read,
    check_reads,
    headers_of,
    key_of,
    normalise_headers,
    partition_of,
    value_of,
)

# Sends in flight at once; bounds the futures held while still keeping batches full.
IN_FLIGHT_SENDS_MAX = 5_000


async def produce(bootstrap, topic, tag, count):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=64 * 1024)
    await p.start()
    acked = {}
    try:
        for start in range(0, count, IN_FLIGHT_SENDS_MAX):
            seqs = range(start, min(start + IN_FLIGHT_SENDS_MAX, count))
            futures = [
                await p.send(
                    topic,
                    value=value_of(tag, seq),
                    key=key_of(seq),
                    partition=partition_of(seq),
                    headers=headers_of(tag, seq),
                )
                for seq in seqs
            ]
            for seq, meta in zip(seqs, await asyncio.gather(*futures)):
                acked[seq] = (meta.partition, meta.offset)
    finally:
        await p.stop()
    return acked


async def consume(bootstrap, topic, count, timeout_s=120.0, settle_s=0.5):
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await c.start()
    reads = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        deadline = Deadline(timeout_s)
        while len(reads) < count and not deadline.expired():
            batches = await c.getmany(timeout_ms=500, max_records=10_000)
            reads.extend(_to_reads(batches))
        settle = Deadline(settle_s)
        while not settle.expired():
            reads.extend(_to_reads(await c.getmany(timeout_ms=int(settle.left() * 1000) + 1)))
    finally:
        await c.stop()
    return reads


def _to_reads(batches):
    return [
        Read(tp.partition, r.offset, r.key, r.value, normalise_headers(r.headers))
        for tp, records in batches.items()
        for r in records
    ]


def test_aiokafka_round_trip(broker):
    topic = tag = "aio"
    ck.create_topic(broker.bootstrap, topic)
    acked = asyncio.run(produce(broker.bootstrap, topic, tag, RECORDS_PER_CLIENT))
    reads = asyncio.run(consume(broker.bootstrap, topic, RECORDS_PER_CLIENT))
    check_reads(tag, reads, RECORDS_PER_CLIENT, acked_offsets=acked)
