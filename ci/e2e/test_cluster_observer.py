"""Three controller voters and one observer (a broker whose node id is not in
--controller-voters, Kafka's usual shape): the observer follows the metadata log from the
voters, registers and is placed on like any broker, serves produce and fetch for its partitions,
follows the quorum to a new leader after the old one is killed with SIGKILL, and, restarted
while the whole quorum is down, still serves the topics it knew."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException

import ck
from conftest import E2E_METRICS, free_port
from records import Deadline, check_reads
from test_cluster import create_topic, leaders, metadata, wait_for_brokers

VOTERS = 3
OBSERVER_ID = 4
BROKERS = VOTERS + 1
PARTITIONS = 8


def start_cluster_with_observer(start_broker):
    """Node ids 1..3 are voters, node 4 an observer; returns (voters, observer)."""
    cluster_ports = [free_port() for _ in range(BROKERS)]
    voter_list = ",".join(f"{i + 1}@127.0.0.1:{cluster_ports[i]}" for i in range(VOTERS))
    brokers = []
    for i, port in enumerate(cluster_ports):
        brokers.append(
            start_broker(
                cores=1,
                name=f"node{i + 1}" if i < VOTERS else f"observer{i + 1}",
                args=[
                    "--node-id", str(i + 1),
                    "--cluster-listen", f"127.0.0.1:{port}",
                    "--controller-voters", voter_list,
                    "--num-partitions", str(PARTITIONS),
                    # Which voter the observer fetches from, and why it moves on, is logged at
                    # debug level: the failover part of this test is the one to explain.
                    "--log-level", "info,spate::cluster=debug",
                ],
            )
        )
    for b in brokers:
        wait_for_brokers(b.bootstrap, BROKERS)
    return brokers[:VOTERS], brokers[VOTERS]


def wait_for_topic(bootstrap: str, topic: str, timeout_s: float = 15.0) -> dict[int, int]:
    deadline = Deadline(timeout_s)
    while True:
        try:
            md = metadata(bootstrap)
            if topic in md.topics and md.topics[topic].partitions:
                return {p: md.topics[topic].partitions[p].leader for p in md.topics[topic].partitions}
        except KafkaException:
            pass
        assert not deadline.expired(), f"{bootstrap} does not list {topic}"
        time.sleep(0.1)


def test_an_observer_joins_follows_the_quorum_and_keeps_its_topics(start_broker):
    voters, observer = start_cluster_with_observer(start_broker)
    by_id = {i + 1: b for i, b in enumerate(voters)}

    # Bootstrapped at the observer, a client sees all four brokers and a voter as controller.
    md = wait_for_brokers(observer.bootstrap, BROKERS)
    assert sorted(md.brokers) == [1, 2, 3, OBSERVER_ID]
    assert md.brokers[OBSERVER_ID].port == observer.port
    assert md.controller_id in by_id

    # A topic created through the observer (forwarded to the controller) has leaders on all
    # four brokers, the observer included, and every broker agrees on the placement.
    create_topic(observer.bootstrap, "obs-spread", partitions=PARTITIONS)
    placed = leaders(observer.bootstrap, "obs-spread")
    assert sorted(placed) == list(range(PARTITIONS))
    assert set(placed.values()) == {1, 2, 3, OBSERVER_ID}, placed
    for b in voters:
        assert leaders(b.bootstrap, "obs-spread") == placed
    on_observer = {p for p, leader in placed.items() if leader == OBSERVER_ID}

    # Produce and fetch, bootstrapped at the observer: its own partitions take records too.
    count = 800
    acked = ck.produce_range(
        ck.producer(observer.bootstrap, acks="all"), "obs-spread", "obs", range(count),
        partitions=PARTITIONS,
    )
    assert on_observer <= {part for part, _ in acked.values()}
    reads = ck.consume_all(observer.bootstrap, "obs-spread", count, partitions=PARTITIONS)
    check_reads("obs", reads, count, partitions=PARTITIONS, acked_offsets=acked)
    assert sum(1 for r in reads if r.partition in on_observer) == count // PARTITIONS * len(on_observer)

    # kill -9 the quorum's leader: the observer learns of the new one, a topic created through
    # it afterwards (forwarded to the new controller) appears on it.
    old = md.controller_id
    by_id[old].kill9()
    killed_at = time.monotonic()
    deadline = Deadline(30)
    while True:
        try:
            now = metadata(observer.bootstrap)
            if now.controller_id not in (-1, old):
                try:
                    create_topic(observer.bootstrap, "after-failover", partitions=4)
                except Exception as e:
                    # Say what each broker then took for the controller: a create that never
                    # reaches one was sent to a controller the client was told of.
                    views = {}
                    for name, b in [("observer", observer), *by_id.items()]:
                        try:
                            views[name] = metadata(b.bootstrap).controller_id if b.running() else "down"
                        except KafkaException as m:
                            views[name] = str(m)
                    raise AssertionError(
                        f"create after failover failed: {e!r}; controller seen before: "
                        f"{now.controller_id}; now: {views}"
                    ) from e
                break
        except KafkaException:
            pass
        assert not deadline.expired(), "the observer did not follow a new controller within 30 s"
        time.sleep(0.2)
    after = wait_for_topic(observer.bootstrap, "after-failover")
    assert sorted(after) == [0, 1, 2, 3]
    failover_s = time.monotonic() - killed_at
    # And one created through a surviving voter reaches the observer within a long poll's
    # wake-up, not a poll interval (the voter answers the held fetch as soon as it applies).
    survivor = next(b for i, b in by_id.items() if i != old)
    create_topic(survivor.bootstrap, "from-a-voter", partitions=2)
    created_at = time.monotonic()
    wait_for_topic(observer.bootstrap, "from-a-voter", timeout_s=5)
    propagation_s = time.monotonic() - created_at
    # Generous for a loaded CI host; a broken long poll would take the whole 1 s wait or more.
    assert propagation_s < 0.9, f"the observer listed a new topic {propagation_s:.2f}s later"
    E2E_METRICS.append(
        f"observer: controller {old} killed; topic created through the observer "
        f"{failover_s:.1f}s later; a topic created at a voter listed by the observer "
        f"{propagation_s * 1000:.0f} ms later"
    )

    # Restart the observer while the whole quorum is down: it serves the topics it knew, from
    # its copy of the metadata image on disk.
    observer.stop_clean()
    for b in voters:
        if b.running():
            b.kill9()
    observer.restart()
    kept = metadata(observer.bootstrap)
    assert {"obs-spread", "after-failover", "from-a-voter"} <= set(kept.topics), sorted(kept.topics)
    assert sorted(kept.topics["obs-spread"].partitions) == list(range(PARTITIONS))

    # The quorum comes back: the observer rejoins, and its partitions still hold their records.
    for b in voters:
        b.restart()
    wait_for_brokers(observer.bootstrap, BROKERS, timeout_s=60)
    # The observer's partitions are led by it again once the controller unfences its new run
    # (at its first heartbeat after registering).
    deadline = Deadline(20)
    while leaders(observer.bootstrap, "obs-spread") != placed:
        assert not deadline.expired(), leaders(observer.bootstrap, "obs-spread")
        time.sleep(0.2)
    reads = ck.consume_all(observer.bootstrap, "obs-spread", count, partitions=PARTITIONS)
    check_reads("obs", reads, count, partitions=PARTITIONS, acked_offsets=acked)
