"""Durability across restarts: a clean SIGTERM restart loses nothing and offsets continue; a
kill -9 while an acks=all producer runs loses no acknowledged record and leaves offsets dense,
without duplicates."""

import time

import pytest

import ck
import kp
from records import PARTITIONS, check_reads, headers_of, key_of, partition_of, seq_of, value_of

RESTART_RECORDS = 30_000
CRASH_PRODUCE_S = 2.0
CRASH_BURST_RECORDS = 2_000


@pytest.mark.parametrize("cores", [1, 2])
def test_clean_restart_keeps_everything_and_offsets_continue(start_broker, cores):
    broker = start_broker(cores=cores, args=["--num-partitions", "6"])
    topic = tag = "restart"
    ck.create_topic(broker.bootstrap, topic)
    first = range(RESTART_RECORDS)
    acked = ck.produce_range(ck.producer(broker.bootstrap, acks="all"), topic, tag, first)
    broker.stop_clean()
    broker.restart()

    check_reads(tag, ck.consume_all(broker.bootstrap, topic, len(first)), len(first), acked_offsets=acked)

    second = range(RESTART_RECORDS, 2 * RESTART_RECORDS)
    acked.update(ck.produce_range(ck.producer(broker.bootstrap, acks="all"), topic, tag, second))
    total = 2 * RESTART_RECORDS
    check_reads(tag, ck.consume_all(broker.bootstrap, topic, total), total, acked_offsets=acked)
    # A different client sees the same log.
    check_reads(tag, kp.consume_all(broker.bootstrap, topic, total), total, acked_offsets=acked)


@pytest.mark.parametrize("flush_mode", ["group", "every-append"])
def test_kill9_during_acks_all_loses_no_acknowledged_record(start_broker, flush_mode):
    broker = start_broker(cores=2, args=["--num-partitions", "6", "--flush-mode", flush_mode])
    topic = tag = "crash"
    ck.create_topic(broker.bootstrap, topic)
    # No retries: a retried batch could land after the restart and legitimately duplicate a
    # record whose first attempt was written but whose acknowledgement was lost.
    p = ck.producer(broker.bootstrap, acks="all", linger_ms=1, retries=0, message_timeout_ms=20_000)
    acked: dict[int, tuple[int, int]] = {}
    failed: list[int] = []

    def on_delivery(err, msg):
        seq = seq_of(msg.value())
        if err is None:
            acked[seq] = (msg.partition(), msg.offset())
        else:
            failed.append(seq)

    started = time.monotonic()
    seq = 0
    while time.monotonic() - started < CRASH_PRODUCE_S:
        try:
            p.produce(topic, value=value_of(tag, seq), key=key_of(seq),
                      partition=partition_of(seq), headers=headers_of(tag, seq),
                      on_delivery=on_delivery)
            seq += 1
        except BufferError:
            p.poll(0.01)
        if seq % 100 == 0:
            p.poll(0)
    # Queue a burst right before the kill, so it interrupts a running producer however fast
    # the broker acknowledged the loop's records (on an idle machine it can catch up fully).
    for _ in range(CRASH_BURST_RECORDS):
        try:
            p.produce(topic, value=value_of(tag, seq), key=key_of(seq),
                      partition=partition_of(seq), headers=headers_of(tag, seq),
                      on_delivery=on_delivery)
            seq += 1
        except BufferError:
            break
    # Records are still queued and in flight at this instant.
    broker.kill9()
    p.purge(in_queue=True, in_flight=True)
    assert p.flush(30) == 0
    sent = seq
    assert len(acked) + len(failed) == sent
    assert len(acked) >= 1000, f"only {len(acked)} records acknowledged before the kill"
    # Some records were still queued or in flight: the kill interrupted a running producer.
    assert failed, "every record was acknowledged before the kill; the crash hit an idle broker"

    broker.restart()
    watermarks = ck.high_watermarks(broker.bootstrap, topic)
    total = sum(high for _, high in watermarks)
    assert all(low == 0 for low, _ in watermarks)
    reads = ck.consume_all(broker.bootstrap, topic, total)
    assert len(reads) == total, f"read {len(reads)} of {total} records below the high watermarks"

    by_partition = {q: [] for q in range(PARTITIONS)}
    for r in reads:
        by_partition[r.partition].append(r)
    position: dict[int, tuple[int, int]] = {}
    for q, records in by_partition.items():
        assert [r.offset for r in records] == list(range(watermarks[q][1])), f"partition {q}: offsets not dense"
        seqs = [seq_of(r.value) for r in records]
        assert seqs == sorted(seqs), f"partition {q}: records out of send order"
        for r, s in zip(records, seqs):
            assert s % PARTITIONS == q
            assert r.value == value_of(tag, s) and r.key == key_of(s)
            assert s not in position, f"seq {s} stored twice: {position[s]} and {(q, r.offset)}"
            position[s] = (q, r.offset)
    missing = [s for s in acked if s not in position]
    assert not missing, f"{len(missing)} acknowledged records lost, first {sorted(missing)[:5]}"
    moved = [s for s, at in acked.items() if position[s] != at]
    assert not moved, f"{len(moved)} records not at their acknowledged offset, e.g. {moved[:3]}"
    # Unacknowledged records may or may not have been written, but only as a suffix of what
    # was acknowledged in each partition: acknowledged offsets are a dense prefix.
    for q in range(PARTITIONS):
        acked_offsets = sorted(off for part, off in acked.values() if part == q)
        assert acked_offsets == list(range(len(acked_offsets))), f"partition {q}: acked offsets have holes"

    # The log takes new records at the next offsets.
    more = ck.producer(broker.bootstrap, acks="all")
    done = {}
    for q in range(PARTITIONS):
        more.produce(topic, value=b"after-%d" % q, partition=q,
                     on_delivery=lambda err, msg: done.__setitem__(msg.partition(), (err, msg.offset())))
    assert more.flush(15) == 0
    assert done == {q: (None, watermarks[q][1]) for q in range(PARTITIONS)}
    print(f"kill -9 ({flush_mode}): sent {sent}, acknowledged {len(acked)}, stored {total}")


def test_restart_right_after_kill9_with_a_connected_client(start_broker):
    """A crashed broker must come back on its port at once, even though the kernel still holds
    the dead process's connections (FIN-WAIT-2, then TIME-WAIT for up to 60 s) when the
    restart happens: Kafka brokers bind with SO_REUSEADDR for exactly this. (Spate's port check
    refused such restarts for a minute until 124b5db.)"""
    broker = start_broker(cores=2, args=["--num-partitions", "1"])
    ck.create_topic(broker.bootstrap, "idle", partitions=1)
    p = ck.producer(broker.bootstrap, acks="all")
    acked = ck.produce_range(p, "idle", "idle", range(10), partitions=1)
    assert sorted(acked.values()) == [(0, i) for i in range(10)]
    # The producer stays connected and idle, so the broker's side holds an open connection
    # with nothing unread in it: kill -9 closes it with a FIN (not a RST).
    broker.kill9()
    broker.restart()
    assert ck.high_watermarks(broker.bootstrap, "idle", partitions=1) == [(0, 10)]
