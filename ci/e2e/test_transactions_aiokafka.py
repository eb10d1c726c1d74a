"""Transactions on one broker with aiokafka 0.14's transactional producer (issue #21).

A consume-transform-produce step in two transactions of one AIOKafkaProducer with a
transactional_id: the first transforms the first half of each input partition and commits it
together with the input offsets (send_offsets_to_transaction), the second transforms the rest,
offers the end offsets and aborts. Checked with aiokafka consumers only:
- a read_committed consumer sees exactly the first transaction's outputs, a read_uncommitted
  one sees both transactions' outputs (the aborted records are in the log);
- each transaction left one marker in every partition it wrote (log end = records + markers);
- the group's committed offsets are the committed transaction's, not the aborted one's, and a
  member of the group resumes from them and reads exactly the second half of the inputs.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import ck
from records import Deadline

PARTITIONS = 3
INPUTS_PER_PARTITION = 20
# Offsets below HALF in each input partition go into the committed transaction.
HALF = INPUTS_PER_PARTITION // 2
GROUP = "aio-txn-group"
TXN_ID = "aio-txn-producer"


def produce_inputs(bootstrap: str, topic: str) -> None:
    p = ck.producer(bootstrap)
    for part in range(PARTITIONS):
        for j in range(INPUTS_PER_PARTITION):
            p.produce(topic, value=f"in-{part}-{j}".encode(), partition=part)
    assert p.flush(30) == 0


async def read_all(bootstrap: str, topic: str, count: int, isolation_level: str,
                   settle_s: float = 2.0) -> list[str]:
    """Every value of `topic` from the beginning, until `count` arrived and `settle_s` passed
    without more (so an extra record would be seen too)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", isolation_level=isolation_level)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        return await drain(c, count, settle_s)
    finally:
        await c.stop()


async def drain(c: AIOKafkaConsumer, count: int, settle_s: float) -> list[str]:
    got: list[str] = []
    deadline = Deadline(30)
    while len(got) < count and not deadline.expired():
        batches = await c.getmany(timeout_ms=500)
        got.extend(r.value.decode() for records in batches.values() for r in records)
    settle = Deadline(settle_s)
    while not settle.expired():
        batches = await c.getmany(timeout_ms=int(settle.left() * 1000) + 1)
        got.extend(r.value.decode() for records in batches.values() for r in records)
    return got


async def transform_in_two_transactions(bootstrap: str, src: str, dst: str) -> list:
    """Returns the inputs as read by the group member (a record list per partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=TXN_ID)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(src, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        inputs: dict[TopicPartition, list] = {tp: [] for tp in tps}
        deadline = Deadline(30)
        while sum(map(len, inputs.values())) < PARTITIONS * INPUTS_PER_PARTITION:
            assert not deadline.expired(), {tp.partition: len(r) for tp, r in inputs.items()}
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                inputs[tp].extend(records)

        async def one_transaction(first: int, end: int, commit: bool) -> None:
            await producer.begin_transaction()
            sends = [await producer.send(dst, value=b"out-" + r.value, partition=tp.partition)
                     for tp, records in inputs.items() for r in records[first:end]]
            await producer.send_offsets_to_transaction({tp: end for tp in tps}, GROUP)
            # Awaited before the end of the transaction: the records are in the log, so the
            # aborted ones must be hidden by the broker, not merely never sent.
            written = await asyncio.gather(*sends)
            assert len(written) == PARTITIONS * (end - first)
            assert all(m.offset >= 0 for m in written)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()

        await one_transaction(0, HALF, commit=True)
        await one_transaction(HALF, INPUTS_PER_PARTITION, commit=False)
        return [inputs[tp] for tp in tps]
    finally:
        await producer.stop()
        await consumer.stop()


async def group_resumes(bootstrap: str, src: str) -> tuple[dict[int, int], list[str]]:
    """The group's committed offsets, and what a member reads from them on."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                         auto_offset_reset="earliest", isolation_level="read_committed")
    await c.start()
    try:
        tps = [TopicPartition(src, p) for p in range(PARTITIONS)]
        committed = {tp.partition: await c.committed(tp) for tp in tps}
        c.assign(tps)
        rest = await drain(c, PARTITIONS * (INPUTS_PER_PARTITION - HALF), settle_s=1.0)
        return committed, rest
    finally:
        await c.stop()


def test_aiokafka_transactions_commit_and_abort_with_offsets(broker):
    src, dst = "aio-txn-in", "aio-txn-out"
    ck.create_topic(broker.bootstrap, src, partitions=PARTITIONS)
    ck.create_topic(broker.bootstrap, dst, partitions=PARTITIONS)
    produce_inputs(broker.bootstrap, src)

    inputs = asyncio.run(transform_in_two_transactions(broker.bootstrap, src, dst))
    for part, records in enumerate(inputs):
        assert [r.value.decode() for r in records] == [
            f"in-{part}-{j}" for j in range(INPUTS_PER_PARTITION)]

    committed_outputs = sorted(f"out-in-{p}-{j}" for p in range(PARTITIONS) for j in range(HALF))
    all_outputs = sorted(f"out-in-{p}-{j}" for p in range(PARTITIONS)
                         for j in range(INPUTS_PER_PARTITION))
    got = asyncio.run(read_all(broker.bootstrap, dst, len(committed_outputs), "read_committed"))
    assert sorted(got) == committed_outputs, f"{len(got)} read_committed"
    everything = asyncio.run(read_all(broker.bootstrap, dst, len(all_outputs), "read_uncommitted",
                                      settle_s=1.0))
    assert sorted(everything) == all_outputs, f"{len(everything)} read_uncommitted"
    # One COMMIT and one ABORT marker in each output partition, after its 20 records.
    ends = [high for _, high in ck.high_watermarks(broker.bootstrap, dst, PARTITIONS)]
    assert ends == [INPUTS_PER_PARTITION + 2] * PARTITIONS

    committed, rest = asyncio.run(group_resumes(broker.bootstrap, src))
    assert committed == {p: HALF for p in range(PARTITIONS)}
    assert sorted(rest) == sorted(f"in-{p}-{j}" for p in range(PARTITIONS)
                                  for j in range(HALF, INPUTS_PER_PARTITION))
