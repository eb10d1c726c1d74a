"""A replicated partition's log start moves on every replica, and a replica that comes back
behind it catches up from there instead of stalling.

Three brokers, one partition with replication factor 3. A follower is killed; records are
written and then deleted below offset 300 with DeleteRecords (as Kafka Streams purges its
repartition topics), so the leader's log now starts past the dead follower's end. Checked:

- the live follower follows the leader's start (its `spate_partition_log_start_offset`);
- the restarted follower, whose fetches are now below the leader's start, empties its log,
  starts it at the leader's start, catches up and rejoins the in-sync replicas (before this,
  it asked for offsets the leader no longer had, forever, and stayed out of the ISR);
- whichever replica leads afterwards (the leader is then killed twice), consumers from the
  earliest offset start at 300, and every record at or past it is read back: deleted records
  do not come back with a new leader."""

from __future__ import annotations

import time
import urllib.request

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import ck
from records import Deadline
from test_replication import partitions_of, start_cluster

TOPIC = "purged"
DELETED_BELOW = 300


def log_start_metric(broker, topic: str, partition: int) -> int | None:
    """The broker's `spate_partition_log_start_offset` for the partition, if it reports one."""
    body = urllib.request.urlopen(f"http://{broker.admin_address}/metrics", timeout=5).read()
    wanted = f'spate_partition_log_start_offset{{topic="{topic}",partition="{partition}"}}'
    for line in body.decode().splitlines():
        if line.startswith(wanted):
            return int(float(line.split()[-1]))
    return None


def wait_until(what: str, check, timeout_s: float = 30.0):
    deadline = Deadline(timeout_s)
    while True:
        seen = check()
        if seen is True:
            return
        assert not deadline.expired(), f"{what}: {seen}"
        time.sleep(0.2)


def produce(bootstrap: str, start: int, count: int) -> dict[bytes, int]:
    acked: dict[bytes, int] = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.value()] = msg.offset()

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 2, "message.timeout.ms": 60000, "retry.backoff.ms": 50,
                  "topic.metadata.refresh.interval.ms": 500})
    for i in range(start, start + count):
        p.produce(TOPIC, value=f"r{i:06d}".encode(), partition=0, on_delivery=on_delivery)
        if i % 100 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert len(acked) == count
    return acked


def test_a_follower_behind_the_leaders_log_start_catches_up_from_it(start_broker):
    brokers = start_cluster(start_broker)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    bootstrap = ",".join(b.bootstrap for b in brokers)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[TOPIC].result(timeout=20)

    def full_isr(asked: str = bootstrap):
        # Asked of brokers that have been up (one just restarted answers once caught up, or
        # after 5 s without a quorum, from the metadata log it replayed).
        p = partitions_of(asked, TOPIC).get(0)
        if p is None:
            return "not listed yet"
        return True if len(p.isrs) == 3 and p.leader >= 0 else (p.leader, p.isrs)

    wait_until("full ISR", full_isr)
    acked = produce(bootstrap, 0, 100)

    leader = partitions_of(bootstrap, TOPIC)[0].leader
    follower_id, other_id = [i for i in by_id if i != leader]
    follower = by_id[follower_id]
    follower.kill9()
    live = ",".join(by_id[i].bootstrap for i in by_id if i != follower_id)
    acked.update(produce(live, 100, 400))
    result = admin.delete_records([TopicPartition(TOPIC, 0, DELETED_BELOW)])
    low = list(result.values())[0].result(timeout=30)
    assert low.low_watermark == DELETED_BELOW, low

    # The live follower moves its start too (at its next fetch).
    wait_until(
        "the live follower follows the leader's log start",
        lambda: log_start_metric(by_id[other_id], TOPIC, 0) == DELETED_BELOW
        or log_start_metric(by_id[other_id], TOPIC, 0),
    )

    # The dead follower's log ends at 100, below the leader's start: it restarts there.
    follower.restart()
    wait_until("the restarted follower rejoins the ISR", lambda: full_isr(live), timeout_s=60)
    assert log_start_metric(follower, TOPIC, 0) == DELETED_BELOW
    assert "emptying the log to fetch from its start" in follower.log_path.read_text()

    # Whoever leads next, nothing below the start comes back, and everything above it is read.
    for _ in range(2):
        leader = partitions_of(bootstrap, TOPIC)[0].leader
        by_id[leader].kill9()
        survivors = ",".join(by_id[i].bootstrap for i in by_id if i != leader)
        wait_until(
            "a new leader",
            lambda: partitions_of(survivors, TOPIC)[0].leader not in (-1, leader)
            or partitions_of(survivors, TOPIC)[0].leader,
            timeout_s=30,
        )
        reads = ck.consume_all(survivors, TOPIC, len(acked) - DELETED_BELOW, partitions=1,
                               timeout_s=60)
        offsets = [r.offset for r in reads]
        assert offsets == list(range(DELETED_BELOW, len(acked))), (offsets[:5], offsets[-5:])
        for r in reads:
            assert acked[r.value] == r.offset
        by_id[leader].restart()
        wait_until("full ISR after the restart", lambda: full_isr(survivors), timeout_s=60)
