"""Transactions on one broker (issue #21) with confluent-kafka's transactional producer: a
read_committed consumer sees exactly the records of committed transactions and never those of
aborted ones; a producer fenced by a newer instance with the same transactional.id fails with
a fatal error; a transaction left open by a kill -9 of the broker holds the last stable offset
until the restarted coordinator aborts it at its timeout, and is never seen by read_committed
consumers. A read_committed consumer that starts at the latest offset while a transaction is
open starts at the last stable offset, so it reads that transaction once it commits (ListOffsets
answers read_committed clients from the last stable offset); OffsetFetch with require_stable
waits while a transaction holds a group's offsets (KIP-447)."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

import ck
from records import Deadline

PARTITIONS = 3
TXNS = 10
RECORDS_PER_TXN = 50


def txn_producer(bootstrap: str, txn_id: str, **extra):
    return ck.producer(bootstrap, transactional_id=txn_id, **extra)


def produce_txn(p, topic: str, tag: str, count: int) -> None:
    for j in range(count):
        p.produce(topic, key=f"{tag}-{j}".encode(), value=f"{tag}-{j}".encode(),
                  partition=j % PARTITIONS)
    p.poll(0)


def produce_txn_to(p, topic: str, tag: str, count: int) -> None:
    """`count` records to partition 0, in order."""
    for j in range(count):
        p.produce(topic, value=f"{tag}-{j}".encode(), partition=0)
    p.poll(0)


def values(reads) -> list[str]:
    return [r.value.decode() for r in reads]


def test_read_committed_sees_committed_transactions_only(broker):
    topic = "txn-basic"
    ck.create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = txn_producer(broker.bootstrap, "txn-basic-producer")
    p.init_transactions(30)
    committed: list[str] = []
    for i in range(TXNS):
        p.begin_transaction()
        produce_txn(p, topic, f"t{i}", RECORDS_PER_TXN)
        if i % 2 == 0:
            p.commit_transaction(30)
            committed.extend(f"t{i}-{j}" for j in range(RECORDS_PER_TXN))
        else:
            # Flushed first: librdkafka drops unsent records of an aborted transaction, and
            # these must reach the log for the test to show the broker hides them.
            assert p.flush(30) == 0
            p.abort_transaction(30)
    expected = len(committed)
    assert expected == TXNS // 2 * RECORDS_PER_TXN

    reads = ck.consume_all(broker.bootstrap, topic, expected, partitions=PARTITIONS,
                           settle_s=2.0, isolation_level="read_committed")
    got = values(reads)
    assert len(got) == expected, f"{len(got)} records read, {expected} committed"
    assert sorted(got) == sorted(committed)

    # The aborted records are in the log: a read_uncommitted consumer sees them too.
    everything = ck.consume_all(broker.bootstrap, topic, TXNS * RECORDS_PER_TXN,
                                partitions=PARTITIONS, settle_s=1.0,
                                isolation_level="read_uncommitted")
    assert len(everything) == TXNS * RECORDS_PER_TXN
    # Each transaction ended with one marker per partition: the log end counts them.
    ends = [high for _, high in ck.high_watermarks(broker.bootstrap, topic, PARTITIONS)]
    assert sum(ends) == TXNS * RECORDS_PER_TXN + TXNS * PARTITIONS


def test_a_newer_instance_fences_the_older_producer(broker):
    topic = "txn-fence"
    ck.create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    old = txn_producer(broker.bootstrap, "txn-fence-id")
    old.init_transactions(30)
    old.begin_transaction()
    produce_txn(old, topic, "old", 30)
    assert old.flush(30) == 0

    new = txn_producer(broker.bootstrap, "txn-fence-id")
    # Aborts the old instance's open transaction and bumps the epoch.
    new.init_transactions(30)
    new.begin_transaction()
    produce_txn(new, topic, "new", 40)
    new.commit_transaction(30)

    with pytest.raises(KafkaException) as failed:
        old.commit_transaction(30)
    error = failed.value.args[0]
    assert error.fatal(), f"expected a fatal fencing error, got {error}"

    got = values(ck.consume_all(broker.bootstrap, topic, 40, partitions=PARTITIONS, settle_s=2.0,
                                isolation_level="read_committed"))
    assert sorted(got) == sorted(f"new-{j}" for j in range(40))


def lso_reads(bootstrap: str, topic: str, count: int, settle_s: float = 2.0):
    return values(ck.consume_all(bootstrap, topic, count, partitions=PARTITIONS,
                                 settle_s=settle_s, isolation_level="read_committed"))


def test_kill9_mid_transaction_then_restart_aborts_it_at_its_timeout(broker):
    topic = "txn-crash"
    ck.create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    first = txn_producer(broker.bootstrap, "txn-crash-a")
    first.init_transactions(30)
    first.begin_transaction()
    produce_txn(first, topic, "committed", 30)
    first.commit_transaction(30)

    # An open transaction, its records durable in the log (acks=all), never committed.
    open_txn = txn_producer(broker.bootstrap, "txn-crash-b", transaction_timeout_ms=6000,
                            message_timeout_ms=6000)
    open_txn.init_transactions(30)
    open_txn.begin_transaction()
    produce_txn(open_txn, topic, "open", 60)
    assert open_txn.flush(30) == 0
    # read_committed stops at the open transaction's first offset in each partition.
    assert sorted(lso_reads(broker.bootstrap, topic, 30)) == sorted(
        f"committed-{j}" for j in range(30))

    broker.kill9()
    broker.restart()

    # After the restart the coordinator rebuilt the open transaction from __transaction_state
    # and aborts it once its 6 s timeout passed; then the LSO moves and a later committed
    # transaction becomes visible. Its records may wait for the abort: the LSO is the first
    # offset of the earliest open transaction.
    later = txn_producer(broker.bootstrap, "txn-crash-c")
    later.init_transactions(30)
    later.begin_transaction()
    produce_txn(later, topic, "later", 20)
    later.commit_transaction(30)

    deadline = Deadline(40)
    got: list[str] = []
    while not deadline.expired():
        got = lso_reads(broker.bootstrap, topic, 50, settle_s=0.5)
        if len(got) >= 50:
            break
        time.sleep(1)
    expected = [f"committed-{j}" for j in range(30)] + [f"later-{j}" for j in range(20)]
    assert sorted(got) == sorted(expected), f"{len(got)} read"
    assert not [v for v in got if v.startswith("open-")]
    log = broker.log_path.read_text(errors="replace")
    assert "transaction state loaded" in log
    assert "aborting a transaction past its timeout" in log
    # The aborted records are still in the log.
    everything = ck.consume_all(broker.bootstrap, topic, 110, partitions=PARTITIONS, settle_s=1.0,
                                isolation_level="read_uncommitted")
    assert len(everything) == 110


def test_consume_transform_produce_commits_offsets_in_the_transaction(broker):
    src, dst, group = "ctp-in", "ctp-out", "ctp-group"
    inputs = 300
    ck.create_topic(broker.bootstrap, src, partitions=PARTITIONS)
    ck.create_topic(broker.bootstrap, dst, partitions=PARTITIONS)
    plain = ck.producer(broker.bootstrap)
    for j in range(inputs):
        plain.produce(src, value=f"in-{j}".encode(), partition=j % PARTITIONS)
    assert plain.flush(30) == 0

    consumer = ck.consumer(broker.bootstrap, group_id=group, isolation_level="read_committed")
    consumer.subscribe([src])
    p = txn_producer(broker.bootstrap, "ctp-txn")
    p.init_transactions(30)
    processed = 0
    aborted_once = False
    deadline = Deadline(90)
    while processed < inputs and not deadline.expired():
        msgs = [m for m in consumer.consume(num_messages=40, timeout=1.0) if m.error() is None]
        if not msgs:
            continue
        p.begin_transaction()
        for m in msgs:
            p.produce(dst, value=b"out-" + m.value(), partition=m.partition())
        p.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                      consumer.consumer_group_metadata(), 30)
        if not aborted_once:
            # The first batch is aborted: its output and its offsets are dropped, and the
            # consumer goes back to the committed offsets to process it again.
            aborted_once = True
            assert p.flush(30) == 0
            p.abort_transaction(30)
            committed = consumer.committed(consumer.assignment(), timeout=10)
            for tp in committed:
                consumer.seek(TopicPartition(tp.topic, tp.partition,
                                             tp.offset if tp.offset >= 0 else 0))
            continue
        p.commit_transaction(30)
        processed += len(msgs)
    consumer.close()
    assert processed == inputs, f"processed {processed} of {inputs}"

    got = values(ck.consume_all(broker.bootstrap, dst, inputs, partitions=PARTITIONS,
                                settle_s=2.0, isolation_level="read_committed"))
    assert sorted(got) == sorted(f"out-in-{j}" for j in range(inputs)), f"{len(got)} outputs"

    def committed_total() -> int:
        c = ck.consumer(broker.bootstrap, group_id=group)
        try:
            tps = c.committed([TopicPartition(src, q) for q in range(PARTITIONS)], timeout=10)
            return sum(tp.offset for tp in tps)
        finally:
            c.close()

    assert committed_total() == inputs
    # The transactional offsets are rebuilt from __consumer_offsets after a crash.
    broker.kill9()
    broker.restart()
    assert committed_total() == inputs


def test_kafka_python_transactional_producer(broker):
    from kafka import KafkaProducer

    topic = "txn-kp"
    ck.create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-kp-id")
    try:
        p.init_transactions()
        p.begin_transaction()
        for j in range(20):
            p.send(topic, value=f"kp-commit-{j}".encode(), partition=j % PARTITIONS)
        p.commit_transaction()
        p.begin_transaction()
        for j in range(20):
            p.send(topic, value=f"kp-abort-{j}".encode(), partition=j % PARTITIONS)
        p.flush()
        p.abort_transaction()
    finally:
        p.close(timeout=5)
    got = values(ck.consume_all(broker.bootstrap, topic, 20, partitions=PARTITIONS, settle_s=2.0,
                                isolation_level="read_committed"))
    assert sorted(got) == sorted(f"kp-commit-{j}" for j in range(20))
    everything = ck.consume_all(broker.bootstrap, topic, 40, partitions=PARTITIONS, settle_s=1.0,
                                isolation_level="read_uncommitted")
    assert len(everything) == 40


def test_list_offsets_answers_read_committed_from_the_last_stable_offset(broker):
    """ListOffsets v2+ carries the consumer's isolation level: "latest" is the last stable
    offset for read_committed (an open transaction holds it at its first record) and the high
    watermark for read_uncommitted, as Kafka answers. kafka-python sends its consumer's
    isolation level in ListOffsets (end_offsets)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KafkaTopicPartition

    topic = "txn-list-offsets"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    tp = KafkaTopicPartition(topic, 0)

    def latest(isolation: str) -> int:
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation)
        try:
            return consumer.end_offsets([tp])[tp]
        finally:
            consumer.close()

    def wait_for(isolation: str, expected: int) -> None:
        deadline = Deadline(20)
        while (got := latest(isolation)) != expected:
            assert not deadline.expired(), f"{isolation} latest {got}, expected {expected}"
            time.sleep(0.2)

    p = txn_producer(broker.bootstrap, "txn-list-offsets-producer")
    p.init_transactions(30)
    p.begin_transaction()
    for j in range(3):
        p.produce(topic, value=f"committed-{j}".encode(), partition=0)
    p.commit_transaction(30)  # offsets 0-2, the COMMIT marker at 3
    wait_for("read_committed", 4)

    p.begin_transaction()
    for j in range(5):
        p.produce(topic, value=f"open-{j}".encode(), partition=0)
    assert p.flush(30) == 0  # offsets 4-8, the transaction still open
    wait_for("read_uncommitted", 9)
    assert latest("read_committed") == 4, "the open transaction holds the last stable offset"

    p.commit_transaction(30)  # its COMMIT marker at 9
    wait_for("read_committed", 10)
    assert latest("read_uncommitted") == 10


def test_offset_fetch_answers_unstable_while_a_transaction_holds_the_groups_offsets(broker):
    """KIP-447: while a transaction holds offsets of a group (send_offsets_to_transaction, not
    yet committed), OffsetFetch with require_stable (librdkafka sends it for read_committed
    consumers) answers UNSTABLE_OFFSET_COMMIT, which the client retries, instead of the offset
    the transaction is about to replace: a consumer taking over the partition would otherwise
    reprocess what the transaction wrote. A read_uncommitted consumer still gets the last
    committed offset; once the transaction commits, both get the new one."""
    from confluent_kafka import OFFSET_INVALID

    topic = "txn-stable-offsets"
    group = "txn-stable-offsets-group"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    tp = TopicPartition(topic, 0)

    def consumer(isolation: str) -> Consumer:
        return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": isolation})

    source = consumer("read_committed")
    stable = consumer("read_committed")
    latest = consumer("read_uncommitted")
    try:
        p = txn_producer(broker.bootstrap, "txn-stable-offsets-producer")
        p.init_transactions(30)
        p.begin_transaction()
        p.produce(topic, value=b"out", partition=0)
        p.send_offsets_to_transaction([TopicPartition(topic, 0, 5)],
                                      source.consumer_group_metadata(), 30)

        with pytest.raises(KafkaException) as pending:
            stable.committed([tp], timeout=3)
        assert pending.value.args[0].code() in (KafkaError._TIMED_OUT,
                                                KafkaError.UNSTABLE_OFFSET_COMMIT), pending.value
        assert latest.committed([tp], timeout=10)[0].offset == OFFSET_INVALID

        p.commit_transaction(30)
        deadline = Deadline(20)
        while (got := stable.committed([tp], timeout=10)[0].offset) != 5:
            assert not deadline.expired(), got
            time.sleep(0.2)
        assert latest.committed([tp], timeout=10)[0].offset == 5
    finally:
        for c in (source, stable, latest):
            c.close()


def test_read_committed_consumer_from_latest_reads_an_open_transaction_once_committed(broker):
    topic = "txn-latest"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    p = txn_producer(broker.bootstrap, "txn-latest-id")
    p.init_transactions(30)
    p.begin_transaction()
    produce_txn_to(p, topic, "before", 10)
    p.commit_transaction(30)
    p.begin_transaction()
    produce_txn_to(p, topic, "open", 5)
    assert p.flush(30) == 0
    # The log: before-0..9 at offsets 0-9, their COMMIT marker at 10, open-0..4 at 11-15.
    last_stable, high_watermark = 11, 16

    # ListOffsets latest at each isolation level (librdkafka sends the consumer's).
    latest = {}
    for isolation in ("read_uncommitted", "read_committed"):
        probe = ck.consumer(broker.bootstrap, isolation_level=isolation)
        try:
            latest[isolation] = probe.get_watermark_offsets(tp, timeout=10, cached=False)[1]
        finally:
            probe.close()

    # What it means to an application: a read_committed consumer starting from the latest
    # offset now must read the open transaction's records once they commit.
    # librdkafka's position() stays unset until a record is delivered; its statistics show
    # the offset the fetcher resolved "latest" to.
    fetcher: dict = {}

    def on_stats(raw: str) -> None:
        fetcher.update(json.loads(raw)["topics"].get(topic, {}).get("partitions", {}).get("0", {}))

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "txn-latest-group",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "statistics.interval.ms": 100, "stats_cb": on_stats})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        deadline = Deadline(15)
        while fetcher.get("fetch_state") != "active":
            assert not deadline.expired(), f"the consumer never started fetching: {fetcher}"
            assert not [m for m in c.consume(num_messages=100, timeout=0.1) if m.error() is None]
        start = fetcher["next_offset"]
        p.commit_transaction(30)
        p.begin_transaction()
        produce_txn_to(p, topic, "after", 3)
        p.commit_transaction(30)
        got: list[str] = []
        deadline = Deadline(15)
        while len(got) < 8 and not deadline.expired():
            got.extend(m.value().decode() for m in c.consume(num_messages=100, timeout=0.5)
                       if m.error() is None)
        got.extend(m.value().decode() for m in c.consume(num_messages=100, timeout=1.0)
                   if m.error() is None)
    finally:
        c.close()
    assert latest == {"read_uncommitted": high_watermark, "read_committed": last_stable}
    assert start == last_stable
    assert got == [f"open-{j}" for j in range(5)] + [f"after-{j}" for j in range(3)]
