"""Decommissioning a broker by draining it, while an acks=all producer keeps writing.

Three controller voters and one observer (node 4), each with a reassignment throttle. A topic
with replication factor 3 and min.insync.replicas=2 spreads over all four brokers, so broker 4
leads some partitions and follows others. An idempotent acks=all producer writes throughout.
`spate admin cluster decommission 4` starts the drain; the controller moves broker 4's
leaderships to other in-sync replicas, then reassigns its replicas (KIP-455, throttled catch-up)
to the brokers that have none of the partition. Checked:

- refusals, with the command's exit code 1 and Kafka's error name: an unknown broker
  (BROKER_ID_NOT_REGISTERED), and draining a second broker while 4 drains, which would leave two
  brokers for replication factor 3 (INVALID_REPLICATION_FACTOR);
- `decommission-status 4 --wait-secs` reports completion: broker 4 holds no replica and leads
  nothing, and a Kafka tool (confluent-kafka's describe_configs) reads the same from the
  broker config `spate.decommission`;
- every partition ends with 3 replicas, all in sync, none on broker 4, and a leader;
- every acknowledged record is read back at its acknowledged offset, dense, no duplicates, and
  the producer had no error;
- `recommission 4` makes it a normal broker again: a new topic is placed on it too;
- the whole way out: drained again, stopped and unregistered (UnregisterBroker), the cluster
  lists three brokers; unregistering a broker that is still a replica is INVALID_REQUEST, an
  unknown one BROKER_ID_NOT_REGISTERED.
"""

from __future__ import annotations

import json
import subprocess
import time

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

import ck
from conftest import broker_env, free_port, spate_bin
from records import Deadline
from test_cluster import wait_for_brokers
from test_replication import Acked, partitions_of, producer

TOPIC = "draining"
PARTITIONS = 6
SESSION_MS = 1500
HEARTBEAT_MS = 250
# Enough that a drain of a few MB takes a second or so: the throttled path is taken.
THROTTLE_BYTES_PER_SEC = 4_000_000
DRAINED = 4


def start_cluster(start_broker):
    ports = [free_port() for _ in range(4)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{ports[i]}" for i in range(3))
    brokers = {}
    for i, port in enumerate(ports):
        node = i + 1
        args = [
            "--node-id", str(node),
            "--cluster-listen", f"127.0.0.1:{port}",
            "--controller-voters", voters,
            "--broker-session-timeout-ms", str(SESSION_MS),
            "--broker-heartbeat-interval-ms", str(HEARTBEAT_MS),
            "--reassignment-throttle-bytes-per-sec", str(THROTTLE_BYTES_PER_SEC),
        ]
        brokers[node] = start_broker(cores=1, name=f"node{node}", args=args)
    for b in brokers.values():
        wait_for_brokers(b.bootstrap, 4)
    return brokers


def spate_admin(bootstrap: str, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(spate_bin()), "admin", "--bootstrap", bootstrap, *args],
        capture_output=True, text=True, timeout=timeout_s, env=broker_env(),
    )


def status(bootstrap: str) -> dict:
    done = spate_admin(bootstrap, "--format", "json", "cluster", "decommission-status", str(DRAINED))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_read_back(bootstrap: str, acked: Acked):
    reads = ck.consume_all(bootstrap, TOPIC, len(acked.by_value), partitions=PARTITIONS, timeout_s=60)
    seen: dict[bytes, tuple[int, int]] = {}
    by_partition: dict[int, list[int]] = {}
    for r in reads:
        assert r.value not in seen, f"{r.value!r} read twice: {seen[r.value]} and {(r.partition, r.offset)}"
        seen[r.value] = (r.partition, r.offset)
        by_partition.setdefault(r.partition, []).append(r.offset)
    for value, where in acked.by_value.items():
        assert seen.get(value) == where, f"acked {value!r} at {where}, read at {seen.get(value)}"
    for partition, offsets in by_partition.items():
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (
            f"partition {partition}: offsets not dense"
        )
    assert len(reads) == len(acked.by_value)


def test_a_drained_broker_ends_with_no_replica_and_no_acknowledged_record_is_lost(start_broker):
    brokers = start_cluster(start_broker)
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    one = brokers[1].bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([
        NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3,
                 config={"min.insync.replicas": "2"}),
    ])[TOPIC].result(timeout=20)
    deadline = Deadline(30)
    while True:
        parts = partitions_of(one, TOPIC)
        if len(parts) == PARTITIONS and all(
            len(p.isrs) == 3 and p.leader >= 0 for p in parts.values()
        ):
            break
        assert not deadline.expired(), {i: (p.leader, p.replicas, p.isrs) for i, p in parts.items()}
        time.sleep(0.2)
    on_drained = [i for i, p in parts.items() if DRAINED in p.replicas]
    led_by_drained = [i for i, p in parts.items() if p.leader == DRAINED]
    # Four brokers, six partitions of three replicas: broker 4 holds some and leads some.
    assert on_drained and led_by_drained, {i: (p.leader, p.replicas) for i, p in parts.items()}

    acked = Acked()
    p = producer(bootstrap)
    seq = 0

    def produce_for(seconds: float):
        nonlocal seq
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(50):
                p.produce(TOPIC, value=f"d{seq:08d}".encode().ljust(200, b"."),
                          partition=seq % PARTITIONS, on_delivery=acked.on_delivery)
                seq += 1
            p.poll(0.005)

    produce_for(3.0)
    assert status(one) == {
        "broker": DRAINED, "state": "active", "draining": False, "complete": False,
        "replicas": len(on_drained), "leaderships": len(led_by_drained), "moving": 0,
    }

    unknown = spate_admin(one, "cluster", "decommission", "9")
    assert unknown.returncode == 1, (unknown.stdout, unknown.stderr)
    assert "BROKER_ID_NOT_REGISTERED" in unknown.stderr, unknown.stderr

    started = spate_admin(one, "cluster", "decommission", str(DRAINED))
    assert started.returncode == 0, started.stderr
    assert "draining" in started.stdout or "decommissioned" in started.stdout, started.stdout
    drain_started = time.monotonic()

    second = spate_admin(one, "cluster", "decommission", "3")
    assert second.returncode == 1, (second.stdout, second.stderr)
    assert "INVALID_REPLICATION_FACTOR" in second.stderr, second.stderr

    # Keep writing while the drain runs; the status is read between bursts.
    deadline = Deadline(40)
    while not status(one)["complete"]:
        assert not deadline.expired(), status(one)
        produce_for(0.3)
    drain_s = time.monotonic() - drain_started
    produce_for(1.0)
    assert p.flush(60) == 0
    assert not acked.errors, acked.errors[:5]
    assert len(acked.by_value) >= 1000, len(acked.by_value)

    waited = spate_admin(one, "cluster", "decommission-status", str(DRAINED), "--wait-secs", "10")
    assert waited.returncode == 0, waited.stderr
    assert "decommissioned" in waited.stdout and "can be stopped and unregistered" in waited.stdout, (
        waited.stdout
    )
    final = status(one)
    assert (final["replicas"], final["leaderships"], final["moving"]) == (0, 0, 0), final

    # What a Kafka tool sees: the broker config (librdkafka asks broker 4 itself).
    resource = ConfigResource(ResourceType.BROKER, str(DRAINED))
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["spate.decommission"].value == "true"
    assert configs["spate.decommission.replicas"].value == "0"
    assert configs["spate.decommission.leaderships"].value == "0"

    deadline = Deadline(20)
    while True:
        parts = partitions_of(one, TOPIC)
        layout = {i: (q.leader, sorted(q.replicas), sorted(q.isrs)) for i, q in parts.items()}
        if len(parts) == PARTITIONS and all(
            len(q.replicas) == 3 and DRAINED not in q.replicas
            and sorted(q.isrs) == sorted(q.replicas) and q.leader in q.replicas
            for q in parts.values()
        ):
            break
        assert not deadline.expired(), layout
        time.sleep(0.2)
    print(f"drained broker {DRAINED} ({len(on_drained)} replicas, {len(led_by_drained)} leaderships) "
          f"in {drain_s:.1f}s with {len(acked.by_value)} acked writes; layout {layout}")

    check_read_back(bootstrap, acked)

    # A broker that is still a replica cannot be unregistered.
    hosting = spate_admin(one, "cluster", "unregister", "3")
    assert hosting.returncode == 1, (hosting.stdout, hosting.stderr)
    assert "INVALID_REQUEST" in hosting.stderr and "decommission it first" in hosting.stderr, (
        hosting.stderr
    )

    # Recommissioned, it takes new replicas again: four brokers, eight partitions of three
    # replicas cannot all avoid it.
    back = spate_admin(one, "cluster", "recommission", str(DRAINED))
    assert back.returncode == 0, back.stderr
    assert status(one)["state"] == "active"
    admin.create_topics([NewTopic("after", num_partitions=8, replication_factor=3)])["after"].result(timeout=20)
    deadline = Deadline(20)
    while len(partitions_of(one, "after")) < 8:
        assert not deadline.expired()
        time.sleep(0.2)
    assert any(DRAINED in q.replicas for q in partitions_of(one, "after").values())

    # The whole way out: drain again, stop it, unregister it (UnregisterBroker, as
    # kafka-cluster.sh unregister); the cluster then lists three brokers.
    again = spate_admin(one, "cluster", "decommission", str(DRAINED))
    assert again.returncode == 0, again.stderr
    waited = spate_admin(one, "cluster", "decommission-status", str(DRAINED), "--wait-secs", "30")
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    assert brokers[DRAINED].stop() == 0

    def registered() -> list[int]:
        done = spate_admin(one, "--format", "json", "cluster")
        assert done.returncode == 0, done.stderr
        return sorted(b["id"] for b in json.loads(done.stdout)["brokers"])

    assert registered() == [1, 2, 3, 4]  # stopped, fenced, still registered
    gone = spate_admin(one, "cluster", "unregister", str(DRAINED))
    assert gone.returncode == 0, gone.stderr
    assert f"broker {DRAINED} unregistered" in gone.stdout, gone.stdout
    # Broker 1's image may trail the controller's by a moment.
    deadline = Deadline(10)
    while registered() != [1, 2, 3]:
        assert not deadline.expired(), registered()
        time.sleep(0.2)
    again = spate_admin(one, "cluster", "unregister", str(DRAINED))
    assert again.returncode == 1 and "BROKER_ID_NOT_REGISTERED" in again.stderr, again.stderr
