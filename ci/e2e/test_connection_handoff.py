"""Connections follow their partitions (`broker/src/handoff.rs`): on a broker of two cores, a
connection whose requests all name partitions the other core owns is handed to that core
between two requests, with the requests it has sent but the broker has not read yet.

A real client must not notice. An idempotent confluent-kafka producer (five requests in
flight, small batches so there are many requests) writes to partition 0, then to partition 1:
the two partitions are owned by different cores, so whichever core its connection landed on,
one of the two phases moves it. An out-of-order or lost request would fail the idempotent
producer (OUT_OF_ORDER_SEQUENCE) or show in the reads. A consumer per partition then reads
every record back, in order and once, and /metrics counts the moves."""

from __future__ import annotations

import re
import urllib.request

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import ck
from records import Deadline, key_of, seq_of, value_of

TOPIC = "handoff"
RECORDS_PER_PHASE = 6_000
TAG = "handoff"


def moved_total(admin_address: str) -> int:
    with urllib.request.urlopen(f"http://{admin_address}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(r"^spate_connections_moved_total (\d+)", text, re.MULTILINE)
    assert match, "spate_connections_moved_total missing from /metrics"
    return int(match.group(1))


def produce_to(p, partition: int, seqs: range) -> dict[int, int]:
    """Produces `seqs` to one partition; seq -> offset from the delivery reports."""
    acked: dict[int, int] = {}
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"seq {seq_of(msg.value())}: {err}")
        else:
            acked[seq_of(msg.value())] = msg.offset()

    for seq in seqs:
        while True:
            try:
                p.produce(TOPIC, value=value_of(TAG, seq), key=key_of(seq), partition=partition,
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if seq % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0, "records still unsent after 60 s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    return acked


def read_partition(bootstrap: str, partition: int, count: int) -> list[tuple[int, int]]:
    """(offset, seq) of every record of one partition, read by a consumer of it alone."""
    c = ck.consumer(bootstrap)
    try:
        c.assign([TopicPartition(TOPIC, partition, OFFSET_BEGINNING)])
        reads: list[tuple[int, int]] = []
        deadline = Deadline(60)
        while len(reads) < count and not deadline.expired():
            for m in c.consume(num_messages=10_000, timeout=0.5):
                assert m.error() is None, f"consume error: {m.error()}"
                reads.append((m.offset(), seq_of(m.value())))
        # A duplicate or an extra record would show up now.
        for m in c.consume(num_messages=10_000, timeout=1.0):
            assert m.error() is None, f"consume error: {m.error()}"
            reads.append((m.offset(), seq_of(m.value())))
        return reads
    finally:
        c.close()


def test_connections_moved_between_cores_lose_duplicate_and_reorder_nothing(start_broker):
    broker = start_broker(cores=2)
    ck.create_topic(broker.bootstrap, TOPIC, partitions=2)
    before = moved_total(broker.admin_address)
    # Small batches and little linger: hundreds of produce requests per phase, five in flight,
    # so requests are queued in the socket when the connection moves.
    p = ck.producer(broker.bootstrap, enable_idempotence=True, acks="all",
                    max_in_flight_requests_per_connection=5, batch_num_messages=20,
                    linger_ms=1)
    phases = [(0, range(0, RECORDS_PER_PHASE)),
              (1, range(RECORDS_PER_PHASE, 2 * RECORDS_PER_PHASE))]
    acked = {partition: produce_to(p, partition, seqs) for partition, seqs in phases}
    moved_producing = moved_total(broker.admin_address) - before
    assert moved_producing >= 1, "the producer's connection never moved to the other core"

    for partition, seqs in phases:
        offsets = acked[partition]
        # Acknowledged in send order: one offset per record, no gap.
        assert [offsets[s] for s in seqs] == list(range(len(seqs))), \
            f"partition {partition}: acknowledged offsets out of order or with gaps"
        reads = read_partition(broker.bootstrap, partition, len(seqs))
        assert reads == [(offset, seq) for offset, seq in zip(range(len(seqs)), seqs)], \
            f"partition {partition}: read back {len(reads)} records, not each once in order"
    # Each consumer fetched one partition only: the one on the other core's connection moved.
    assert moved_total(broker.admin_address) >= moved_producing
