"""Log compaction (cleanup.policy=compact) with a real client (confluent-kafka / librdkafka).

One test, in phases on one broker, so the 1,000,000-record load is produced once:
1. a compacted topic is created; DescribeConfigs reports the policy; a keyless record is
   refused with INVALID_RECORD, as Kafka refuses it;
2. 1,000,000 records over 1,000 keys (lz4, so the cleaner decompresses and recompresses);
3. a consumer reads from the start while the cleaner runs: for each key the values come in
   increasing offset order, each record is the one produced at that offset, and each key ends
   at its latest value;
4. after compaction every key's latest value is readable at its original offset, superseded
   records are gone, and the partition directory shrank;
5. 100 keys are deleted with tombstones; after delete.retention.ms they disappear entirely;
6. after a restart the compacted log serves exactly the same records.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

import ck
from conftest import E2E_METRICS
from records import Deadline

TOPIC = "compacted"
RECORDS = 1_000_000
KEYS = 1_000
DELETED_KEYS = 100
SEGMENT_BYTES = 1 << 20
DELETE_RETENTION_MS = 2_000
# Segments become cleanable this long after their newest record, so the log first grows to its
# full size (the disk-usage baseline) and the reader below overlaps the cleaning.
COMPACTION_LAG_MS = 8_000
# Bounds on waits, not assertions about speed.
COMPACTION_TIMEOUT_S = 90.0
CONSUME_TIMEOUT_S = 90.0


def key(k: int) -> bytes:
    return b"key-%04d" % k


def value(seq: int) -> bytes:
    # Random bytes so lz4 cannot squeeze the log to nothing; the sequence leads.
    return b"%d:" % seq + os.urandom(12).hex().encode()


def seq_of(v: bytes) -> int:
    return int(v.split(b":", 1)[0])


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


class PeakSize:
    """Samples a directory's size in the background; `peak` is the largest seen."""

    def __init__(self, path: Path):
        self.path = path
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.1):
            try:
                self.peak = max(self.peak, dir_bytes(self.path))
            except FileNotFoundError:
                pass  # a segment swapped out between listing and stat

    def finish(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak


def segment_bases(path: Path) -> list[int]:
    return sorted(int(f.name[:20]) for f in path.glob("*.log"))


def produce(p, records: list[tuple[bytes, bytes | None]]) -> list[int]:
    """Produces in order; returns the offset of each record (from the delivery reports)."""
    offsets: list[int] = [-1] * len(records)
    errors: list[str] = []

    def report(i):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                offsets[i] = msg.offset()
        return on_delivery

    for i, (k, v) in enumerate(records):
        while True:
            try:
                p.produce(TOPIC, key=k, value=v, partition=0, on_delivery=report(i))
                break
            except BufferError:
                p.poll(0.05)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(120) == 0, "records still unsent"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    assert min(offsets) >= 0
    return offsets


def read_all(bootstrap: str, end: int, timeout_s: float = CONSUME_TIMEOUT_S):
    """Reads partition 0 from the beginning up to offset `end`: [(offset, key, value)]."""
    c = ck.consumer(bootstrap, **{"fetch.max.bytes": 8 << 20})
    try:
        c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
        out = []
        deadline = Deadline(timeout_s)
        while not deadline.expired():
            msgs = c.consume(num_messages=10_000, timeout=0.5)
            for m in msgs:
                assert m.error() is None, m.error()
                out.append((m.offset(), m.key(), m.value()))
            # Compaction leaves gaps: done once the position passed the last offset wanted.
            position = c.position([TopicPartition(TOPIC, 0)])[0].offset
            if position >= end:
                return out
        raise AssertionError(f"read {len(out)} records, position short of {end}")
    finally:
        c.close()


def check_consistent(reads, produced: dict[int, tuple[bytes, bytes | None]], latest: dict[bytes, int]):
    """What any reader must see, compacted or not: each record unchanged at its offset, offsets
    increasing, and every key's last record its latest."""
    last_offset = -1
    last_of_key: dict[bytes, int] = {}
    for offset, k, v in reads:
        assert offset > last_offset, f"offset {offset} after {last_offset}"
        last_offset = offset
        assert produced[offset] == (k, v), f"record at offset {offset} changed"
        last_of_key[k] = offset
    for k, offset in latest.items():
        if produced[offset][1] is not None:
            assert last_of_key.get(k) == offset, f"{k!r} ends at {last_of_key.get(k)}, not {offset}"


def test_compaction_keeps_the_latest_value_per_key_at_its_offset(start_broker):
    broker = start_broker(
        cores=2,
        args=[
            "--log-cleaner-backoff-ms", "200",
            "--log-cleaner-io-max-bytes-per-second", str(200 << 20),
        ],
    )
    ck.create_topic(
        broker.bootstrap,
        TOPIC,
        partitions=1,
        **{
            "cleanup.policy": "compact",
            "segment.bytes": str(SEGMENT_BYTES),
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": str(DELETE_RETENTION_MS),
            "min.compaction.lag.ms": str(COMPACTION_LAG_MS),
        },
    )
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, TOPIC)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["delete.retention.ms"].value == str(DELETE_RETENTION_MS)
    assert configs["min.cleanable.dirty.ratio"].value == "0.01"

    # Kafka refuses keyless records on a compacted topic (InvalidRecordException).
    refused = []
    p = ck.producer(broker.bootstrap, acks="all", retries=0)
    p.produce(TOPIC, value=b"no key", partition=0, on_delivery=lambda err, msg: refused.append(err))
    assert p.flush(30) == 0
    assert len(refused) == 1 and refused[0] is not None
    assert refused[0].code() == KafkaError.INVALID_RECORD, refused[0]

    partition_dir = broker.data_dir / f"{TOPIC}-0"
    sampler = PeakSize(partition_dir)
    p = ck.producer(
        broker.bootstrap,
        acks="all",
        linger_ms=50,
        batch_num_messages=10_000,
        batch_size=1 << 20,
        compression_type="lz4",
    )
    records = [(key(seq % KEYS), value(seq)) for seq in range(RECORDS)]
    started = time.monotonic()
    offsets = produce(p, records)
    produce_s = time.monotonic() - started
    produced = {o: r for o, r in zip(offsets, records)}
    assert len(produced) == RECORDS
    end = max(offsets) + 1
    latest: dict[bytes, int] = {}
    for o in sorted(produced):
        latest[produced[o][0]] = o
    assert len(latest) == KEYS

    # A reader from the start while the cleaner works.
    started = time.monotonic()
    during = read_all(broker.bootstrap, end)
    check_consistent(during, produced, latest)
    E2E_METRICS.append(
        f"compaction: produced {RECORDS} records in {produce_s:.1f}s; a reader during cleaning "
        f"saw {len(during)} records in {time.monotonic() - started:.1f}s"
    )

    # Compaction finishes: only the active segment keeps superseded records.
    deadline = Deadline(COMPACTION_TIMEOUT_S)
    while True:
        after = read_all(broker.bootstrap, end)
        # Records in closed segments whose key has a later record in a closed segment (the
        # cleaner's map covers closed segments only).
        active_base = segment_bases(partition_dir)[-1]
        latest_closed: dict[bytes, int] = {}
        for o, k, _ in after:
            if o < active_base:
                latest_closed[k] = o
        superseded = [o for o, k, _ in after if o < active_base and latest_closed[k] != o]
        if not superseded:
            break
        assert not deadline.expired(), f"{len(superseded)} superseded records left"
        time.sleep(0.5)
    check_consistent(after, produced, latest)
    assert KEYS <= len(after) < RECORDS // 10, len(after)
    compacted_bytes = dir_bytes(partition_dir)
    peak_bytes = sampler.finish()
    assert compacted_bytes * 5 < peak_bytes, (compacted_bytes, peak_bytes)
    E2E_METRICS.append(
        f"compaction: partition dir {peak_bytes} -> {compacted_bytes} bytes, "
        f"{RECORDS} -> {len(after)} records readable"
    )

    # Tombstones for 100 keys, then other keys' updates until the segment holding the
    # tombstones closes (the active segment is never cleaned).
    deleted = [key(k) for k in range(DELETED_KEYS)]
    tomb_offsets = produce(p, [(k, None) for k in deleted])
    for k, o in zip(deleted, tomb_offsets):
        produced[o] = (k, None)
        latest[k] = o
    seq = RECORDS
    while segment_bases(partition_dir)[-1] <= max(tomb_offsets):
        batch = [(key(DELETED_KEYS + s % (KEYS - DELETED_KEYS)), value(s)) for s in range(seq, seq + 20_000)]
        seq += len(batch)
        for o, r in zip(produce(p, batch), batch):
            produced[o] = r
            latest[r[0]] = o
    end = max(produced) + 1

    deadline = Deadline(COMPACTION_TIMEOUT_S)
    while True:
        final = read_all(broker.bootstrap, end)
        present = {k for _, k, _ in final}
        if not present.intersection(deleted):
            break
        assert not deadline.expired(), f"{len(present.intersection(deleted))} deleted keys still there"
        time.sleep(0.5)
    check_consistent(final, produced, latest)
    assert len(present) == KEYS - DELETED_KEYS
    # Tombstones waited out delete.retention.ms first: a reader during that window saw them.
    assert all(produced[o][1] is not None for o, _, _ in final)

    # A restart recovers the cleaned segments (offsets with gaps) and serves the same records.
    broker.stop_clean()
    broker.restart()
    assert read_all(broker.bootstrap, end) == final


def test_kafka_python_is_told_which_records_lacked_a_key(broker):
    """KIP-467: a batch refused for keyless records on a compacted topic names those records
    (Produce v8+ record_errors), so the client fails them with Kafka's message and the others
    with 'part of a batch which had invalid records'."""
    from kafka import KafkaProducer
    from kafka.errors import InvalidRecordError

    topic = "compact-record-errors"
    ck.create_topic(broker.bootstrap, topic, partitions=1, **{"cleanup.policy": "compact"})
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=500, retries=0, acks="all")
    try:
        futures = [p.send(topic, key=k, value=b"v%d" % i, partition=0)
                   for i, k in enumerate([b"a", None, b"b", None])]
        p.flush(30)
        errors = []
        for f in futures:
            try:
                f.get(timeout=10)
                errors.append(None)
            except Exception as e:  # noqa: BLE001 - the error is what is checked
                errors.append(e)
    finally:
        p.close(timeout=5)
    assert all(e is not None for e in errors), errors
    for i in (1, 3):
        assert isinstance(errors[i], InvalidRecordError), errors
        assert "Compacted topic cannot accept message without key" in str(errors[i]), errors[i]
    for i in (0, 2):
        assert "part of a batch which had one more more invalid records" in str(errors[i]), errors[i]


def _deliveries(bootstrap: str, topic: str, keys: list[bytes | None], **config) -> list:
    """Produces one record per key to partition 0 of `topic` with confluent-kafka and returns
    each record's delivery report, in produce order: (error or None, offset)."""
    reports: list = [None] * len(keys)

    def on_delivery(i):
        return lambda err, msg: reports.__setitem__(i, (err, msg.offset()))

    p = ck.producer(bootstrap, retries=0, acks="all", **config)
    for i, k in enumerate(keys):
        p.produce(topic, key=k, value=b"v%d" % i, partition=0, on_delivery=on_delivery(i))
    assert p.flush(30) == 0, "records left undelivered"
    assert all(r is not None for r in reports), reports
    return reports


def test_confluent_kafka_is_told_which_records_lacked_a_key(broker):
    """KIP-467 with librdkafka (its own test 0011, test_message_single_partition_record_fail):
    one batch with keyed and keyless records on a compacted topic is refused whole, and the
    Produce response's record_errors let librdkafka fail the keyless records with
    INVALID_RECORD (Kafka's message) and the keyed ones with its local
    _INVALID_DIFFERENT_RECORD; nothing of that batch is written. Sent one record per batch, the
    keyed records are written and only the keyless ones fail."""
    topic = "compact-record-errors-ck"
    ck.create_topic(broker.bootstrap, topic, partitions=1, **{"cleanup.policy": "compact"})
    keys = [b"a", None, b"b", None, b"c"]
    keyless = {i for i, k in enumerate(keys) if k is None}

    # One batch: linger long enough that all five records leave together.
    batched = _deliveries(broker.bootstrap, topic, keys, linger_ms=1000)
    for i, (err, _) in enumerate(batched):
        assert err is not None, f"record {i} of the refused batch was acknowledged: {batched}"
        if i in keyless:
            # The delivery report carries the code only: confluent-kafka's KafkaError has
            # librdkafka's text for it, not the broker's message (kafka-python's test checks
            # that message).
            assert err.code() == KafkaError.INVALID_RECORD, (i, err)
        else:
            assert err.code() == KafkaError._INVALID_DIFFERENT_RECORD, (i, err)

    # One record per batch: the keyed ones are written, in order, from offset 0.
    single = _deliveries(broker.bootstrap, topic, keys, linger_ms=0, batch_num_messages=1)
    written = [(i, off) for i, (err, off) in enumerate(single) if err is None]
    assert [i for i, _ in written] == [i for i in range(len(keys)) if i not in keyless], single
    assert [off for _, off in written] == list(range(len(written))), single
    for i in keyless:
        assert single[i][0].code() == KafkaError.INVALID_RECORD, single

    # The log holds exactly the keyed records of the second run: none of the refused batch.
    c = ck.consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = Deadline(30)
        while len(got) < len(written) and not deadline.expired():
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append((msg.offset(), msg.key()))
        assert c.poll(2) is None, "more records than the keyed ones of the second run"
    finally:
        c.close()
    assert got == [(off, keys[i]) for i, off in written], got
