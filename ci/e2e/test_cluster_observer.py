"""Three controller voters and one observer (a broker whose node id is not in
--controller-voters, Kafka's usual shape): the observer follows the metadata log from the
voters, registers and is placed on like any broker, serves produce and fetch for its partitions,
follows the quorum to a new leader after the old one is killed with SIGKILL, and, restarted
while the whole quorum is down, still serves the topics it knew.

What "the observer sees" is asked of the observer alone, with a raw Metadata v1 request
(`MetadataView`): librdkafka bootstrapped at a broker sends later Metadata requests to any broker
it knows, so its answers may come from a voter."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException

import ck
from conftest import E2E_METRICS, free_port
from records import Deadline, check_reads
from test_cluster import create_topic, describe_quorum, wait_for_brokers

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


@dataclass
class MetadataView:
    """One broker's own Metadata answer."""

    brokers: dict[int, int]  # node id -> client port
    controller_id: int
    topics: dict[str, dict[int, int]]  # topic -> partition -> leader


def _read_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "the broker closed the connection"
        out += chunk
    return out


def view(broker) -> MetadataView:
    """Metadata v1 (all topics) asked of `broker` itself over one connection."""
    client_id = b"e2e-observer"
    payload = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", -1)
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", _read_exact(sock, 4))
        body = _read_exact(sock, size)
    at = 0

    def take(fmt: str):
        nonlocal at
        values = struct.unpack_from(fmt, body, at)
        at += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def string() -> str | None:
        n = take(">h")
        if n < 0:
            return None
        nonlocal at
        at += n
        return body[at - n:at].decode()

    assert take(">i") == 7, "correlation id"
    brokers = {}
    for _ in range(take(">i")):
        node_id = take(">i")
        string()
        brokers[node_id] = take(">i")
        string()  # rack
    controller_id = take(">i")
    topics = {}
    for _ in range(take(">i")):
        error = take(">h")
        name = string()
        take(">b")  # is_internal
        partitions = {}
        for _ in range(take(">i")):
            take(">h")
            index, leader = take(">ii")
            for _ in range(2):  # replicas, isr: skipped
                count = take(">i")
                at += 4 * count
            partitions[index] = leader
        if error == 0:
            topics[name] = partitions
    assert at == len(body), f"{len(body) - at} bytes left in a Metadata v1 answer"
    return MetadataView(brokers, controller_id, topics)


def wait_for_topic(broker, topic: str, timeout_s: float = 15.0) -> dict[int, int]:
    """Until `broker` itself lists `topic`; its partitions' leaders."""
    deadline = Deadline(timeout_s)
    while True:
        topics = view(broker).topics
        if topics.get(topic):
            return topics[topic]
        assert not deadline.expired(), f"{broker.name} does not list {topic}"
        time.sleep(0.02)


def wait_until_unlisted(broker, node_id: int, timeout_s: float):
    """Until `broker` itself no longer lists `node_id` (fenced)."""
    deadline = Deadline(timeout_s)
    while node_id in view(broker).brokers:
        assert not deadline.expired(), f"{broker.name} still lists broker {node_id}"
        time.sleep(0.1)


def test_an_observer_joins_follows_the_quorum_and_keeps_its_topics(start_broker):
    voters, observer = start_cluster_with_observer(start_broker)
    by_id = {i + 1: b for i, b in enumerate(voters)}

    # Bootstrapped at the observer, a client sees all four brokers and a voter as controller;
    # and so does the observer's own answer.
    md = wait_for_brokers(observer.bootstrap, BROKERS)
    assert sorted(md.brokers) == [1, 2, 3, OBSERVER_ID]
    own = view(observer)
    assert own.brokers == {i: b.port for i, b in [*by_id.items(), (OBSERVER_ID, observer)]}
    assert own.controller_id in by_id

    # A topic created through the observer (forwarded to the controller) has leaders on all
    # four brokers, the observer included, and every broker agrees on the placement.
    create_topic(observer.bootstrap, "obs-spread", partitions=PARTITIONS)
    placed = wait_for_topic(observer, "obs-spread")
    assert sorted(placed) == list(range(PARTITIONS))
    assert set(placed.values()) == {1, 2, 3, OBSERVER_ID}, placed
    for b in voters:
        assert wait_for_topic(b, "obs-spread") == placed
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

    # DescribeQuorum asked of the observer (which forwards it to the leader, as it forwards
    # admin requests): three voters, and the observer among the observers, fetching and caught
    # up with the high watermark.
    asked_ms = time.time() * 1000
    time.sleep(1.2)  # one long poll: the observer's next fetch comes after this
    quorum = describe_quorum(observer.bootstrap)
    assert {v["replica_id"] for v in quorum["current_voters"]} == set(by_id), quorum
    observers = {o["replica_id"]: o for o in quorum["observers"]}
    assert set(observers) == {OBSERVER_ID}, quorum
    assert observers[OBSERVER_ID]["last_fetch_timestamp"] >= asked_ms, quorum
    assert observers[OBSERVER_ID]["log_end_offset"] >= quorum["high_watermark"] > 0, quorum

    # kill -9 the quorum's leader: the observer learns of the new one, a topic created through
    # it afterwards (forwarded to the new controller) appears on it.
    old = view(observer).controller_id
    by_id[old].kill9()
    killed_at = time.monotonic()
    deadline = Deadline(30)
    while (now := view(observer)).controller_id in (-1, old):
        assert not deadline.expired(), "the observer did not follow a new controller within 30 s"
        time.sleep(0.05)
    try:
        create_topic(observer.bootstrap, "after-failover", partitions=4)
    except Exception as e:  # KafkaException, or the future's TimeoutError
        # Say what each broker then took for the controller: a create that never reaches one
        # was sent to a controller the client was told of.
        views = {b.name: view(b).controller_id if b.running() else "down" for b in [observer, *voters]}
        raise AssertionError(
            f"create after failover failed: {e!r}; the observer named {now.controller_id} "
            f"before; now: {views}"
        ) from e
    after = wait_for_topic(observer, "after-failover")
    assert sorted(after) == [0, 1, 2, 3]
    failover_s = time.monotonic() - killed_at
    # And one created through a surviving voter reaches the observer within a long poll's
    # wake-up, not a poll interval (the voter answers the held fetch as soon as it applies).
    survivor = next(b for i, b in by_id.items() if i != old)
    create_topic(survivor.bootstrap, "from-a-voter", partitions=2)
    created_at = time.monotonic()
    wait_for_topic(observer, "from-a-voter", timeout_s=5)
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
    # Controlled shutdown went through the controller RPC like a voter's: the controller fenced
    # the observer at once, not after a session timeout.
    wait_until_unlisted(survivor, OBSERVER_ID, timeout_s=3)
    for b in voters:
        if b.running():
            b.kill9()
    observer.restart()
    kept = view(observer)
    assert {"obs-spread", "after-failover", "from-a-voter"} <= set(kept.topics), sorted(kept.topics)
    assert sorted(kept.topics["obs-spread"]) == list(range(PARTITIONS))
    assert kept.controller_id == -1, "no controller is named while the quorum is down"

    # The quorum comes back: the observer rejoins, and its partitions still hold their records.
    for b in voters:
        b.restart()
    wait_for_brokers(observer.bootstrap, BROKERS, timeout_s=60)
    # The observer's partitions are led by it again once the controller unfences its new run
    # (at its first heartbeat after registering).
    deadline = Deadline(20)
    while view(observer).topics.get("obs-spread") != placed:
        assert not deadline.expired(), view(observer).topics.get("obs-spread")
        time.sleep(0.2)
    reads = ck.consume_all(observer.bootstrap, "obs-spread", count, partitions=PARTITIONS)
    check_reads("obs", reads, count, partitions=PARTITIONS, acked_offsets=acked)

    # An observer that dies without a word is fenced when its heartbeats stop (9 s session).
    deadline = Deadline(20)
    while OBSERVER_ID not in view(voters[0]).brokers:
        assert not deadline.expired(), f"{voters[0].name} does not list the observer"
        time.sleep(0.1)
    observer.kill9()
    killed_at = time.monotonic()
    wait_until_unlisted(voters[0], OBSERVER_ID, timeout_s=20)
    E2E_METRICS.append(
        f"observer: killed with SIGKILL, fenced {time.monotonic() - killed_at:.1f}s later"
    )


def test_partitions_led_by_an_observer_replicate(start_broker):
    """Replication factor 3 over three voters and an observer: the observer leads some
    partitions, and voters (which know only each other from their flags) must fetch from it.
    Every acks=all write is acknowledged, on every partition, and every partition keeps all
    three replicas in sync; then the observer is killed with SIGKILL, is fenced at once (its
    port refuses connections), and its partitions move to in-sync voters with every record."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    voters, observer = start_cluster_with_observer(start_broker)
    bootstrap = ",".join(b.bootstrap for b in [*voters, observer])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "observed"
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[topic].result(timeout=20)

    def partitions():
        return admin.list_topics(topic=topic, timeout=10).topics[topic].partitions

    deadline = Deadline(30)
    while True:
        parts = partitions()
        if len(parts) == PARTITIONS and all(len(p.isrs) == 3 for p in parts.values()):
            break
        assert not deadline.expired(), {i: (p.leader, p.isrs) for i, p in parts.items()}
        time.sleep(0.2)
    led = [i for i, p in parts.items() if p.leader == OBSERVER_ID]
    assert led, f"the observer leads none of {PARTITIONS} partitions: {parts}"

    acked: dict[bytes, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[msg.value()] = (msg.partition(), msg.offset())

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 2, "message.timeout.ms": 30000})
    for i in range(2000):
        p.produce(topic, value=f"o{i:05d}".encode(), partition=i % PARTITIONS,
                  on_delivery=on_delivery)
        if i % 200 == 0:
            p.poll(0)
    assert p.flush(40) == 0 and not errors, errors[:3]
    assert len(acked) == 2000
    assert all(len(p.isrs) == 3 for p in partitions().values()), partitions()

    observer.kill9()
    deadline = Deadline(15)
    while True:
        parts = partitions()
        if all(p.leader in (1, 2, 3) for p in parts.values()):
            break
        assert not deadline.expired(), {i: (p.leader, p.isrs) for i, p in parts.items()}
        time.sleep(0.2)
    reads = ck.consume_all(",".join(b.bootstrap for b in voters), topic, len(acked),
                           partitions=PARTITIONS)
    seen = {r.value: (r.partition, r.offset) for r in reads}
    assert len(reads) == len(acked)
    for value, where in acked.items():
        assert seen.get(value) == where, (value, where, seen.get(value))
