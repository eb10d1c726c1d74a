"""The transaction admin APIs (issue #21) on one broker, through kafka-python's
KafkaAdminClient (KIP-664: list_transactions, describe_transactions, describe_producers, the
calls kafka-transactions.sh makes; confluent-kafka 2.16's AdminClient has none of them).

Two transactional producers (confluent-kafka) on a two-core broker: one with a transaction open
on two partitions, one initialised only. ListTransactions lists both with their producer ids and
states (and honours its state, producer id and duration filters), DescribeTransactions shows the
open transaction as Ongoing with its partitions, DescribeProducers shows the producer on those
partitions with the offset its transaction started at. After the commit the state is
CompleteCommit, with no partitions, and the producer has no open transaction any more.

DescribeProducers reads partitions, not coordinators, so a cluster answers it too: each
partition's leader shows an idempotent producer, a follower answers NOT_LEADER_OR_FOLLOWER."""

from __future__ import annotations

import time

import pytest
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import KafkaAdminClient
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.errors import (
    NotLeaderForPartitionError,
    TransactionalIdNotFoundError,
    UnknownTopicOrPartitionError,
)
from kafka.protocol.admin.transactions import ListTransactionsRequest

import ck
from test_cluster import leaders, start_cluster

TOPIC = "txn-admin"
PARTITIONS = 3
OPEN_ID = "txn-admin-open"
IDLE_ID = "txn-admin-idle"
TIMEOUT_MS = 45_000
RECORDS = 20


def listed(admin: KafkaAdminClient, **filters) -> dict[str, tuple[int, str]]:
    """Every broker's listing merged: transactional id -> (producer id, state name)."""
    out = {}
    for listings in admin.list_transactions(**filters).values():
        for t in listings:
            assert t.transactional_id not in out, f"{t.transactional_id} listed twice"
            out[t.transactional_id] = (t.producer_id, t.state.value)
    return out


def raw_list(admin: KafkaAdminClient, state_filters: list[str]):
    """A ListTransactions answer as sent, to read unknown_state_filters (the admin client
    drops it)."""
    node = admin._manager.cluster.brokers().pop().node_id
    request = ListTransactionsRequest(min_version=0, state_filters=state_filters,
                                      producer_id_filters=[])

    async def send():
        return await admin._manager.send(request, node_id=node)

    return admin._manager.run(send)


def wait_for_state(admin: KafkaAdminClient, txn_id: str, state: str, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        d = admin.describe_transactions([txn_id])[txn_id]
        if d.state.value == state or time.monotonic() > deadline:
            return d
        time.sleep(0.1)


def test_open_transaction_is_listed_described_and_shown_on_its_partitions(broker):
    ck.create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    open_p = ck.producer(broker.bootstrap, transactional_id=OPEN_ID,
                         transaction_timeout_ms=TIMEOUT_MS)
    idle_p = ck.producer(broker.bootstrap, transactional_id=IDLE_ID)
    open_p.init_transactions(30)
    idle_p.init_transactions(30)
    open_p.begin_transaction()
    before_ms = int(time.time() * 1000)
    for j in range(RECORDS):
        open_p.produce(TOPIC, value=f"v{j}".encode(), partition=j % 2)
    assert open_p.flush(30) == 0

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # ListTransactions: both ids, with distinct producer ids, as Kafka names the states.
        everything = listed(admin)
        assert set(everything) == {OPEN_ID, IDLE_ID}, everything
        open_pid, open_state = everything[OPEN_ID]
        idle_pid, idle_state = everything[IDLE_ID]
        assert (open_state, idle_state) == ("Ongoing", "Empty")
        assert open_pid >= 0 and idle_pid >= 0 and open_pid != idle_pid
        assert set(listed(admin, state_filters=["Ongoing"])) == {OPEN_ID}
        assert set(listed(admin, state_filters=["Empty", "CompleteCommit"])) == {IDLE_ID}
        assert set(listed(admin, producer_id_filters=[idle_pid])) == {IDLE_ID}
        assert set(listed(admin, duration_filter_ms=0)) == {OPEN_ID}
        assert listed(admin, duration_filter_ms=3_600_000) == {}
        answer = raw_list(admin, ["Ongoing", "Bogus"])
        assert answer.error_code == 0
        assert list(answer.unknown_state_filters) == ["Bogus"]
        assert [t.transactional_id for t in answer.transaction_states] == [OPEN_ID]

        # DescribeTransactions: the open transaction with its two partitions.
        d = admin.describe_transactions([OPEN_ID])[OPEN_ID]
        assert d.state.value == "Ongoing"
        assert d.producer_id == open_pid
        assert d.producer_epoch >= 0
        assert d.transaction_timeout_ms == TIMEOUT_MS
        assert before_ms - 5_000 <= d.transaction_start_time_ms <= int(time.time() * 1000)
        assert d.topic_partitions == {KpTopicPartition(TOPIC, 0), KpTopicPartition(TOPIC, 1)}
        idle = admin.describe_transactions([IDLE_ID])[IDLE_ID]
        assert idle.state.value == "Empty"
        assert idle.transaction_start_time_ms == -1
        assert idle.topic_partitions == set()
        with pytest.raises(TransactionalIdNotFoundError):
            admin.describe_transactions(["txn-admin-never-seen"])

        # DescribeProducers: the producer on both partitions, its transaction open from offset 0
        # (a fresh topic); nobody on partition 2.
        tps = [KpTopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        producers = admin.describe_producers(tps)
        for p in (0, 1):
            active = producers[KpTopicPartition(TOPIC, p)].active_producers
            assert len(active) == 1, active
            a = active[0]
            assert a.producer_id == open_pid
            assert a.producer_epoch == d.producer_epoch
            assert a.current_transaction_start_offset == 0
            assert a.last_sequence == RECORDS // 2 - 1
            assert a.last_timestamp >= before_ms - 5_000
            assert a.coordinator_epoch == -1
        assert producers[KpTopicPartition(TOPIC, 2)].active_producers == []
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.describe_producers([KpTopicPartition(TOPIC, 99)])

        # Commit: CompleteCommit once the markers are written, the transaction closed on both
        # partitions.
        open_p.commit_transaction(30)
        d = wait_for_state(admin, OPEN_ID, "CompleteCommit")
        assert d.state.value == "CompleteCommit"
        assert d.topic_partitions == set()
        assert d.transaction_start_time_ms == -1
        assert listed(admin)[OPEN_ID] == (open_pid, "CompleteCommit")
        assert listed(admin, state_filters=["Ongoing"]) == {}
        producers = admin.describe_producers(tps[:2])
        for p in (0, 1):
            active = producers[KpTopicPartition(TOPIC, p)].active_producers
            assert [a.producer_id for a in active] == [open_pid]
            assert active[0].current_transaction_start_offset == -1
    finally:
        admin.close()


EXPIRATION_MS = 3_000


def test_an_idle_transactional_id_expires_and_stays_gone_after_a_restart(start_broker):
    """transactional.id.expiration.ms (here 3 s): an id whose last transaction completed is
    forgotten by its coordinator (a tombstone in __transaction_state), an open one is not, the
    tombstone survives a restart, and the id comes back as a new producer."""
    broker = start_broker(args=["--transactional-id-expiration-ms", str(EXPIRATION_MS)])
    ck.create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    done = ck.producer(broker.bootstrap, transactional_id="txn-expiring")
    kept = ck.producer(broker.bootstrap, transactional_id="txn-kept-open",
                       transaction_timeout_ms=TIMEOUT_MS)
    for p in (done, kept):
        p.init_transactions(30)
        p.begin_transaction()
        p.produce(TOPIC, value=b"v", partition=0)
        assert p.flush(30) == 0
    done.commit_transaction(30)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        first_pid = listed(admin)["txn-expiring"][0]
        deadline = time.monotonic() + EXPIRATION_MS / 1000 + 15
        while "txn-expiring" in listed(admin) and time.monotonic() < deadline:
            time.sleep(0.2)
        remaining = listed(admin)
        assert "txn-expiring" not in remaining, "the idle id did not expire"
        assert remaining["txn-kept-open"][1] == "Ongoing", "an open transaction never expires"
        with pytest.raises(TransactionalIdNotFoundError):
            admin.describe_transactions(["txn-expiring"])
    finally:
        admin.close()
    kept.abort_transaction(30)

    broker.stop()
    broker.start()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert "txn-expiring" not in listed(admin), "the tombstone was lost by the restart"
        again = ck.producer(broker.bootstrap, transactional_id="txn-expiring")
        again.init_transactions(30)
        again.begin_transaction()
        again.produce(TOPIC, value=b"w", partition=1)
        again.commit_transaction(30)
        new_pid, state = listed(admin)["txn-expiring"]
        assert state in ("PrepareCommit", "CompleteCommit")
        assert new_pid != first_pid, "an expired id comes back with a new producer id"
    finally:
        admin.close()


def test_describe_producers_in_a_cluster_is_answered_by_each_partition_leader(start_broker):
    brokers = start_cluster(start_broker)
    topic = "txn-admin-cluster"
    admin_ck = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin_ck.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)])[
        topic].result(timeout=15)
    placed = leaders(brokers[0].bootstrap, topic)
    assert len(placed) == PARTITIONS
    p = Producer({"bootstrap.servers": brokers[0].bootstrap, "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5})
    for j in range(RECORDS * PARTITIONS):
        p.produce(topic, value=f"v{j}".encode(), partition=j % PARTITIONS)
    assert p.flush(30) == 0

    admin = KafkaAdminClient(bootstrap_servers=brokers[0].bootstrap)
    try:
        tps = [KpTopicPartition(topic, i) for i in range(PARTITIONS)]
        producers = admin.describe_producers(tps)
        assert set(producers) == set(tps)
        pids = set()
        for tp in tps:
            active = producers[tp].active_producers
            assert len(active) == 1, (tp, active)
            assert active[0].last_sequence == RECORDS - 1
            assert active[0].current_transaction_start_offset == -1
            pids.add(active[0].producer_id)
        assert len(pids) == 1 and pids.pop() >= 0, "one idempotent producer on every partition"
        # A follower of partition 0 (every broker holds a replica) does not answer for it.
        follower = next(i for i in (1, 2, 3) if i != placed[0])
        with pytest.raises(NotLeaderForPartitionError):
            admin.describe_producers([tps[0]], broker_id=follower)
    finally:
        admin.close()
