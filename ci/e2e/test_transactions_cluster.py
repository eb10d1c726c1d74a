"""Transactions in a cluster of three brokers (#21): the coordinator of a transactional id is the
leader of its `__transaction_state` partition (replicated), markers reach partitions led by the
other brokers over the cluster listener, and the transactional loop goes on through kill -9 of
the coordinator's broker and of a data partition's leader.

Checked with confluent-kafka (librdkafka) and kafka-python, as users run them:
- committed transactions are visible to read_committed consumers on every partition, aborted
  ones never (their records are in the log: read_uncommitted sees them);
- a loop of transactions, each writing a numbered set of records, through a kill -9 of the
  coordinator's broker (and later of a data leader): every transaction the producer saw
  committed is read back exactly once and whole by read_committed, and none of an attempt the
  producer aborted.
"""

from __future__ import annotations

import time
from collections import Counter

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

from records import Deadline
from test_cluster import leaders, metadata, start_cluster

PARTITIONS = 3
TXN_PARTITIONS = 50
TXN_STATE = "__transaction_state"


def java_partition(key: str, partitions: int) -> int:
    """Kafka's `abs(key.hashCode()) % partitions` (Utils.abs maps MIN_VALUE to 0)."""
    h = 0
    units = key.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (h * 31 + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    return 0 if h == -(1 << 31) else abs(h) % partitions


def create_replicated(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3,
                   config={"min.insync.replicas": "2"})
    admin.create_topics([new])[topic].result(timeout=15)


def all_bootstrap(brokers) -> str:
    return ",".join(b.bootstrap for b in brokers)


def read_all(bootstrap: str, topic: str, isolation: str, expect_min: int = 0,
             timeout_s: float = 30) -> list[str]:
    """Every record value of `topic` from the start, by a consumer of `isolation`, once it has
    read at least `expect_min` and then nothing more for a second."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{isolation}-{time.time()}",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    values: list[str] = []
    deadline = Deadline(timeout_s)
    quiet_since = time.monotonic()
    try:
        while not deadline.expired():
            msg = c.poll(0.2)
            if msg is None or msg.error():
                if len(values) >= expect_min and time.monotonic() - quiet_since > 1.0:
                    break
                continue
            values.append(msg.value().decode())
            quiet_since = time.monotonic()
    finally:
        c.close()
    return values


def coordinator_node(bootstrap: str, txn_id: str) -> int:
    """The leader of the id's `__transaction_state` partition, as `bootstrap` sees it."""
    index = java_partition(txn_id, TXN_PARTITIONS)
    deadline = Deadline(20)
    while True:
        placed = leaders(bootstrap, TXN_STATE)
        if placed.get(index, -1) >= 0:
            return placed[index]
        assert not deadline.expired(), f"{TXN_STATE}-{index} has no leader"
        time.sleep(0.2)


def test_commit_and_abort_reach_partitions_on_every_broker(start_broker):
    brokers = start_cluster(start_broker)
    topic = "txc-basic"
    create_replicated(brokers[0].bootstrap, topic)
    placed = leaders(brokers[0].bootstrap, topic)
    p = Producer({"bootstrap.servers": all_bootstrap(brokers), "transactional.id": "txc-basic",
                  "linger.ms": 5})
    p.init_transactions(60)
    coordinator = coordinator_node(brokers[0].bootstrap, "txc-basic")
    # The coordinator leads at most one of the three partitions' leaders' brokers: the markers
    # of the others go over the cluster listener.
    assert set(placed.values()) - {coordinator}, (placed, coordinator)
    committed, aborted = set(), set()
    for t in range(6):
        p.begin_transaction()
        values = [f"{t}-{i}" for i in range(30)]
        for i, v in enumerate(values):
            p.produce(topic, value=v.encode(), partition=i % PARTITIONS)
        if t % 2 == 0:
            p.commit_transaction(30)
            committed.update(values)
        else:
            p.flush(30)
            p.abort_transaction(30)
            aborted.update(values)
    seen = read_all(brokers[1].bootstrap, topic, "read_committed", expect_min=len(committed))
    assert Counter(seen) == Counter(committed), "read_committed shows exactly the committed ones"
    raw = read_all(brokers[2].bootstrap, topic, "read_uncommitted",
                   expect_min=len(committed) + len(aborted))
    assert set(raw) == committed | aborted

    # kafka-python's transactional producer against the same cluster.
    kp = KafkaProducer(bootstrap_servers=brokers[2].bootstrap, transactional_id="txc-kp",
                       max_block_ms=30_000)
    try:
        kp.init_transactions()
        kp.begin_transaction()
        for i in range(9):
            kp.send(topic, value=f"kp-{i}".encode(), partition=i % PARTITIONS)
        kp.commit_transaction()
    finally:
        kp.close(timeout=5)
    seen = read_all(brokers[0].bootstrap, topic, "read_committed",
                    expect_min=len(committed) + 9)
    assert Counter(seen) == Counter(committed | {f"kp-{i}" for i in range(9)})


def run_transaction(p: Producer, topic: str, t: int, records: int, before_commit=None) -> bool:
    """One attempt of transaction `t`; True once the producer saw it committed. An abortable
    error aborts the attempt (the caller tries `t` again); a retriable one during commit retries
    the commit, as librdkafka's documentation says to. `before_commit` runs once the records
    are acknowledged (inside the open transaction)."""
    try:
        p.begin_transaction()
        for i in range(records):
            p.produce(topic, value=f"{t}-{i}".encode(), partition=i % PARTITIONS)
        if before_commit is not None:
            assert p.flush(30) == 0
            before_commit()
        deadline = Deadline(60)
        while True:
            try:
                p.commit_transaction(10)
                return True
            except KafkaException as e:
                error = e.args[0]
                if error.retriable() and not deadline.expired():
                    continue
                raise
    except KafkaException as e:
        error = e.args[0]
        if error.fatal():
            raise
        deadline = Deadline(60)
        while True:
            try:
                p.abort_transaction(10)
                return False
            except KafkaException as again:
                if again.args[0].fatal() or deadline.expired():
                    raise
                time.sleep(0.2)


def test_transactional_loop_through_kills_of_the_coordinator_and_a_data_leader(start_broker):
    brokers = start_cluster(start_broker)
    topic = "txc-loop"
    txn_id = "txc-loop-app"
    records = 12
    create_replicated(brokers[0].bootstrap, topic)
    p = Producer({"bootstrap.servers": all_bootstrap(brokers), "transactional.id": txn_id,
                  "linger.ms": 5, "transaction.timeout.ms": 20_000})
    p.init_transactions(60)
    by_node = {int(b.name.removeprefix("node")): b for b in brokers}
    committed: list[int] = []
    attempts_aborted = 0
    killed: list[str] = []
    restarted = []
    stalls: list[float] = []
    killed_at: list[float] = []

    def kill_coordinator():
        coordinator = coordinator_node(brokers[0].bootstrap, txn_id)
        by_node[coordinator].kill9()
        killed_at.append(time.monotonic())
        killed.append(f"coordinator node{coordinator}")

    def kill_data_leader():
        victim = next(b for b in brokers if not b.running())
        victim.restart()
        restarted.append(victim.name)
        alive = next(b for b in brokers if b.running() and b is not victim)
        # The restarted broker catches up and rejoins the in-sync replicas meanwhile.
        time.sleep(3)
        data_leader = leaders(alive.bootstrap, topic)[0]
        by_node[data_leader].kill9()
        killed_at.append(time.monotonic())
        killed.append(f"data leader node{data_leader}")

    t = 0
    while t < 14:
        # Each kill lands inside an open transaction whose records are acknowledged.
        hook = None
        if t == 4 and not killed:
            hook = kill_coordinator
        elif t == 9 and len(killed) == 1:
            hook = kill_data_leader
        if run_transaction(p, topic, t, records, hook):
            if hook is not None:
                # From the kill to the commit the producer saw.
                stalls.append(round(time.monotonic() - killed_at[-1], 1))
            committed.append(t)
            t += 1
        else:
            attempts_aborted += 1
            assert attempts_aborted < 20, "the loop keeps aborting"
    p.flush(30)
    alive = [b for b in brokers if b.running()]
    seen = read_all(all_bootstrap(alive), topic, "read_committed",
                    expect_min=len(committed) * records, timeout_s=60)
    counts = Counter(seen)
    expected = Counter(f"{t}-{i}" for t in committed for i in range(records))
    missing = expected - counts
    extra = counts - expected
    assert not missing, f"committed records missing: {sorted(missing)[:10]}"
    assert not extra, f"duplicated or aborted records visible: {sorted(extra)[:10]}"
    print(f"transactions: {len(committed)} committed, {attempts_aborted} attempts aborted, "
          f"killed {killed}; commits came {stalls} s after the kills")
