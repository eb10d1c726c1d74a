"""Log compaction of a topic written by transactions (confluent-kafka's transactional producer,
as a Kafka Streams changelog is written): the cleaner drops the records of aborted transactions,
and removes COMMIT and ABORT markers once no record of their transaction is left and their
delete horizon (delete.retention.ms) passed, as Kafka's cleaner does. Checked on the segment
files themselves (ci/e2e/segments.py), while a read_committed consumer still reads the latest
committed value of every key, and a read_uncommitted one no longer sees any aborted record."""

from __future__ import annotations

import threading
import time

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

import ck
from records import Deadline
from segments import stored_batches

TOPIC = "compacted-txn"
KEYS = 20
TXNS = 60
# Every third transaction aborts, the last one commits (a producer's latest batch stays, as a
# header at least, and keeps its marker: with an aborted one last, its ABORT would stay too,
# as in Kafka).
ABORT_EVERY = 3
DELETE_RETENTION_MS = 1_000
SEGMENT_BYTES = 16 << 10
SEGMENT_MS = 500
# Bounds on waits, not assertions about speed.
CLEAN_TIMEOUT_S = 90.0


def read(bootstrap: str, isolation: str, end: int) -> list[tuple[int, bytes, bytes]]:
    """Partition 0 from the beginning up to `end` (compaction leaves gaps)."""
    c = ck.consumer(bootstrap, isolation_level=isolation)
    try:
        c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        out = []
        deadline = Deadline(30.0)
        while not deadline.expired():
            for m in c.consume(num_messages=10_000, timeout=0.5):
                assert m.error() is None, m.error()
                out.append((m.offset(), m.key(), m.value()))
            if c.position([TopicPartition(TOPIC, 0)])[0].offset >= end:
                return out
        raise AssertionError(f"{isolation}: read {len(out)} records, position short of {end}")
    finally:
        c.close()


def high_watermark(bootstrap: str) -> int:
    c = ck.consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)[1]
    finally:
        c.close()


def test_cleaning_removes_aborted_records_and_markers_after_their_data(start_broker):
    broker = start_broker(cores=2, args=["--log-cleaner-backoff-ms", "200"])
    ck.create_topic(
        broker.bootstrap,
        TOPIC,
        partitions=1,
        **{
            "cleanup.policy": "compact",
            "segment.bytes": str(SEGMENT_BYTES),
            "segment.ms": str(SEGMENT_MS),
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": str(DELETE_RETENTION_MS),
            "min.compaction.lag.ms": "0",
        },
    )
    p = ck.producer(broker.bootstrap, transactional_id="compacted-txn-app")
    p.init_transactions(30)
    latest: dict[bytes, bytes] = {}
    aborted_values: set[bytes] = set()
    for i in range(TXNS):
        p.begin_transaction()
        batch = {b"key-%02d" % k: b"t%03d-%02d-" % (i, k) + b"x" * 200 for k in range(KEYS)}
        for k, v in batch.items():
            p.produce(TOPIC, key=k, value=v, partition=0)
        if i % ABORT_EVERY == 1:
            # Flushed first: librdkafka drops unsent records of an aborted transaction, and
            # these must reach the log for the test to show the cleaner removes them.
            assert p.flush(30) == 0
            p.abort_transaction(30)
            aborted_values.update(batch.values())
        else:
            p.commit_transaction(30)
            latest.update(batch)

    # Each transaction wrote its records and one marker (the coordinator writes the last
    # markers after EndTxn answered).
    txn_end = TXNS * (KEYS + 1)
    deadline = Deadline(30.0)
    while high_watermark(broker.bootstrap) < txn_end:
        assert not deadline.expired(), high_watermark(broker.bootstrap)
        time.sleep(0.1)
    markers_before = len([b for b in stored_batches(broker.data_dir, TOPIC, 0) if b["is_control"]])

    # Other keys keep arriving, as on a live changelog: segments keep rolling (so the markers'
    # segments close) and the cleaner keeps finding dirty data, which its later passes (the
    # ones that start and then pass the markers' horizon) need.
    stop = threading.Event()

    def filler():
        q = ck.producer(broker.bootstrap, enable_idempotence=True, acks="all")
        n = 0
        while not stop.wait(0.05):
            q.produce(TOPIC, key=b"filler-%d" % (n % 5), value=b"f" * 500, partition=0)
            q.poll(0)
            n += 1
        assert q.flush(30) == 0

    thread = threading.Thread(target=filler, daemon=True)
    thread.start()
    try:
        deadline = Deadline(CLEAN_TIMEOUT_S)
        while True:
            segments = sorted(int(f.name[:20]) for f in (broker.data_dir / f"{TOPIC}-0").glob("*.log"))
            closed = stored_batches(broker.data_dir, TOPIC, 0, below=segments[-1])
            txn_data = [b for b in closed if b["is_transactional"] and not b["is_control"]]
            markers = [b for b in closed if b["is_control"]]
            # Converged: every transaction's data is superseded but the last one's, so only its
            # marker may stay, and the aborted transactions left nothing.
            if (len(markers) <= 1 and len(txn_data) <= KEYS
                    and segments[-1] >= txn_end):
                break
            assert not deadline.expired(), (
                f"{len(markers)} markers and {len(txn_data)} transactional batches left in closed "
                f"segments, {markers_before} markers after the load"
            )
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=40)
    # The last transaction's data is its keys' latest values, so its COMMIT stays.
    assert len(markers) == 1 and markers[0]["record_count"] == 1, markers

    end = high_watermark(broker.bootstrap)
    committed = read(broker.bootstrap, "read_committed", end)
    view = {k: v for _, k, v in committed if k.startswith(b"key-")}
    assert view == latest
    uncommitted = read(broker.bootstrap, "read_uncommitted", end)
    assert not aborted_values.intersection(v for _, _, v in uncommitted)
    assert len([1 for _, k, _ in uncommitted if k.startswith(b"key-")]) == KEYS

    # A restart rebuilds the producer state and the aborted index from what is left, and
    # serves the same.
    broker.stop_clean()
    broker.restart()
    again = read(broker.bootstrap, "read_committed", end)
    assert {k: v for _, k, v in again if k.startswith(b"key-")} == latest
