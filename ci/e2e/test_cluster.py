"""Three brokers as one cluster (--controller-voters): every broker a voter of the metadata
quorum and a broker, on loopback, each with its own data dir. Real clients bootstrapped at any
one broker see all three, a topic's partitions are led by all three, every partition takes
produce and fetch, a consumer group works wherever its coordinator is, the quorum elects a new
controller when its leader is killed with SIGKILL, and a full restart brings back topics,
placement, data and committed offsets."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka.admin import KafkaAdminClient

import ck
import kp
from conftest import E2E_METRICS, free_port
from records import Deadline, check_reads

BROKERS = 3
PARTITIONS = 6


def start_cluster(start_broker, extra_args: list[str] | None = None):
    """Three voters of one core each, until every one lists the three and a controller.
    `extra_args` go to every broker (default: this module's partition count)."""
    if extra_args is None:
        extra_args = ["--num-partitions", str(PARTITIONS)]
    cluster_ports = [free_port() for _ in range(BROKERS)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(cluster_ports))
    brokers = []
    for i, port in enumerate(cluster_ports):
        brokers.append(
            start_broker(
                cores=1,
                name=f"node{i + 1}",
                args=[
                    "--node-id", str(i + 1),
                    "--cluster-listen", f"127.0.0.1:{port}",
                    "--controller-voters", voters,
                    *extra_args,
                ],
            )
        )
    for b in brokers:
        wait_for_brokers(b.bootstrap, BROKERS)
    return brokers


def metadata(bootstrap: str):
    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)


def wait_for_brokers(bootstrap: str, count: int, timeout_s: float = 30.0):
    """Until the broker at `bootstrap` lists `count` live brokers and a controller."""
    deadline = Deadline(timeout_s)
    seen = None
    while True:
        try:
            md = metadata(bootstrap)
            if len(md.brokers) == count and md.controller_id >= 0:
                return md
            seen = (sorted(md.brokers), md.controller_id)
        except KafkaException as e:
            # Before its cluster has a controller a broker may answer without one.
            seen = e
        assert not deadline.expired(), f"{bootstrap}: brokers and controller {seen}"
        time.sleep(0.2)


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's leader, as the broker at `bootstrap` sees it once it knows the topic
    (a broker learns of a topic created elsewhere when its metadata image catches up)."""
    deadline = Deadline(10)
    while True:
        md = metadata(bootstrap)
        if topic in md.topics and md.topics[topic].partitions:
            return {p: md.topics[topic].partitions[p].leader for p in md.topics[topic].partitions}
        assert not deadline.expired(), f"{bootstrap} does not list {topic}"
        time.sleep(0.1)


def describe_quorum(bootstrap: str) -> dict:
    """The metadata partition's entry of kafka-python's DescribeQuorum answer. kafka-python
    sends it to a broker of its choosing; until a killed broker is fenced (the 9 s session)
    Metadata still lists it, and a try that picked it fails to connect: tried again."""
    deadline = Deadline(30)
    while True:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            answer = admin.describe_metadata_quorum()
            break
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            assert not deadline.expired(), f"DescribeQuorum at {bootstrap}: {e!r}"
            time.sleep(0.5)
        finally:
            admin.close()
    partition = answer["topics"][0]["partitions"][0]
    assert partition["error"] is None, answer
    return partition


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic
    ].result(timeout=20)


def test_any_broker_bootstraps_clients_to_a_cluster_of_three(start_broker):
    brokers = start_cluster(start_broker)
    by_id = {i + 1: b for i, b in enumerate(brokers)}

    # Every broker tells both clients about all three, and they agree on the controller.
    controllers = set()
    for b in brokers:
        md = wait_for_brokers(b.bootstrap, BROKERS)
        assert {n.id: n.port for n in md.brokers.values()} == {i: by_id[i].port for i in by_id}
        controllers.add(md.controller_id)
        kp_admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        described = kp_admin.describe_cluster()
        # kafka-python asks DescribeCluster v2 with include_fenced_brokers.
        assert sorted(x["broker_id"] for x in described["brokers"]) == [1, 2, 3]
        assert not any(x["is_fenced"] for x in described["brokers"])
        kp_admin.close()
    assert len(controllers) == 1 and controllers <= {1, 2, 3}

    # A topic created through the last broker has leaders on all three.
    create_topic(brokers[2].bootstrap, "spread")
    placed = leaders(brokers[0].bootstrap, "spread")
    assert sorted(placed) == list(range(PARTITIONS))
    assert set(placed.values()) == {1, 2, 3}, placed
    # Any broker gives the same placement.
    assert leaders(brokers[1].bootstrap, "spread") == placed

    # A manual replica assignment (AdminClient's replica_assignment) places each partition on
    # the broker named, whichever broker the request reaches.
    assigned = [[3], [1], [2], [3]]
    admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    admin.create_topics([NewTopic("assigned", len(assigned), replica_assignment=assigned)])[
        "assigned"
    ].result(
        timeout=20
    )
    assert leaders(brokers[1].bootstrap, "assigned") == {i: r[0] for i, r in enumerate(assigned)}
    admin.create_partitions([NewPartitions("assigned", 5, replica_assignment=[[2]])])[
        "assigned"
    ].result(timeout=20)
    deadline = Deadline(10)
    while leaders(brokers[1].bootstrap, "assigned").get(4) != 2:
        assert not deadline.expired(), "the new partition is not led by broker 2"
        time.sleep(0.1)

    # Every partition takes produce and fetch: librdkafka follows the leaders from any bootstrap.
    count = 1200
    p = ck.producer(brokers[1].bootstrap, acks="all")
    acked = ck.produce_range(p, "spread", "cluster", range(count))
    assert {part for part, _ in acked.values()} == set(range(PARTITIONS))
    reads = ck.consume_all(brokers[0].bootstrap, "spread", count)
    check_reads("cluster", reads, count, acked_offsets=acked)

    # kafka-python too, bootstrapped at another broker.
    kp_topic = "spread-kp"
    create_topic(brokers[0].bootstrap, kp_topic)
    kp_acked = kp.produce_range(kp.producer(brokers[2].bootstrap), kp_topic, "kp", range(300))
    kp_reads = kp.consume_all(brokers[1].bootstrap, kp_topic, 300)
    check_reads("kp", kp_reads, 300, acked_offsets=kp_acked)

    # Idempotent producers (kafka-python's default) get producer ids from blocks the controller
    # hands each broker, unique in the cluster.
    idem_topic = "spread-idem"
    create_topic(brokers[0].bootstrap, idem_topic)
    for b in brokers:
        idem = kp.producer(b.bootstrap, enable_idempotence=True)
        acked_idem = kp.produce_range(idem, idem_topic, f"idem{b.name}", range(60))
        assert len(acked_idem) == 60
        idem.close()
    assert sum(len(r) for r in [kp.consume_all(brokers[1].bootstrap, idem_topic, 180)]) == 180

    # A consumer group: its coordinator is the leader of its offsets partition, on any broker.
    group = Consumer({
        "bootstrap.servers": brokers[2].bootstrap,
        "group.id": "cluster-group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    group.subscribe(["spread"])
    seen = 0
    deadline = Deadline(60)
    while seen < count and not deadline.expired():
        msg = group.poll(0.5)
        if msg is not None and msg.error() is None:
            seen += 1
    assert seen == count, f"the group read {seen} of {count}"
    group.commit(asynchronous=False)
    committed = group.committed(
        [TopicPartition("spread", i) for i in range(PARTITIONS)], timeout=10
    )
    assert sum(tp.offset for tp in committed) == count
    group.close()


def test_the_quorum_survives_its_leader_and_a_full_restart(start_broker):
    brokers = start_cluster(start_broker)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    create_topic(brokers[0].bootstrap, "kept")
    placed = leaders(brokers[0].bootstrap, "kept")
    count = 600
    acked = ck.produce_range(ck.producer(brokers[0].bootstrap, acks="all"), "kept", "kept", range(count))

    # kill -9 the controller: the other two elect a new one, and topic changes work again.
    old = metadata(brokers[0].bootstrap).controller_id
    by_id[old].kill9()
    survivor = next(b for i, b in by_id.items() if i != old)
    killed_at = time.monotonic()
    killed_at_ms = int(time.time() * 1000)
    deadline = Deadline(30)
    while True:
        try:
            md = metadata(survivor.bootstrap)
            if md.controller_id not in (-1, old):
                create_topic(survivor.bootstrap, "after-failover", partitions=2)
                break
        except KafkaException:
            pass
        assert not deadline.expired(), "no new controller took topic changes within 30 s"
        time.sleep(0.2)
    failover_s = time.monotonic() - killed_at
    assert failover_s < 30
    E2E_METRICS.append(
        f"cluster: controller {old} killed; topic created through controller {md.controller_id} "
        f"{failover_s:.1f}s later"
    )

    # DescribeQuorum (what kafka-metadata-quorum shows), asked of each survivor: the new
    # leader answers itself, the other asks the leader. The killed voter has fallen behind and
    # has not been heard from since it died.
    for b in (b for i, b in by_id.items() if i != old):
        quorum = describe_quorum(b.bootstrap)
        assert quorum["leader_id"] == md.controller_id, quorum
        voters = {v["replica_id"]: v for v in quorum["current_voters"]}
        assert set(voters) == {1, 2, 3}, quorum
        assert voters[md.controller_id]["log_end_offset"] >= quorum["high_watermark"] > 0, quorum
        assert voters[old]["log_end_offset"] < quorum["high_watermark"], quorum
        assert voters[old]["last_fetch_timestamp"] < killed_at_ms, quorum
        live = [v for i, v in voters.items() if i != old]
        assert all(v["last_fetch_timestamp"] >= killed_at_ms for v in live), quorum

    # The killed broker comes back with its partitions.
    by_id[old].restart()
    wait_for_brokers(survivor.bootstrap, BROKERS)

    # Controlled shutdown: a broker stopped with SIGTERM tells the controller first, so it is
    # fenced at once rather than after the 9 s session timeout.
    assert by_id[old].stop() == 0
    wait_for_brokers(survivor.bootstrap, BROKERS - 1, timeout_s=3)

    # Stop everything cleanly, start everything again: topics, placement and data are back.
    for b in brokers:
        if b.running():
            assert b.stop() == 0
    for b in brokers:
        b.restart()
    for b in brokers:
        wait_for_brokers(b.bootstrap, BROKERS)
    md = metadata(brokers[1].bootstrap)
    assert {"kept", "after-failover"} <= set(md.topics)
    assert leaders(brokers[1].bootstrap, "kept") == placed
    reads = ck.consume_all(brokers[2].bootstrap, "kept", count)
    check_reads("kept", reads, count, acked_offsets=acked)
