"""Partition reassignment (KIP-455) through Kafka's admin API: a partition moves to brokers that
had none of it, with throttled catch-up, and the brokers it leaves delete it.

Three controller voters and one observer (node 4). A topic with replication factor 2 lives on
brokers 1 and 2; records are written and the first ones deleted with DeleteRecords, so the
leader's log starts above 0. Then kafka-python's KafkaAdminClient (confluent-kafka 2.16 has no
alter_partition_reassignments) sends AlterPartitionReassignments to move the partition to
brokers 3 and 4. Checked:

- while it moves, ListPartitionReassignments shows replicas 3,4,1,2, adding 3,4 and removing 1,2;
  the new replicas are empty and start their logs at the leader's start (OFFSET_OUT_OF_RANGE,
  then restart there); broker 4's catch-up is throttled, so the move takes at least the time
  the throttle allows for the bytes it copied: in one run by its flag
  (`--reassignment-throttle-bytes-per-sec`), in the other as `kafka-reassign-partitions
  --throttle` does it, by the dynamic broker configs `follower.replication.throttled.rate` and
  `leader.replication.throttled.rate` set on broker 4 with confluent-kafka's
  incremental_alter_configs (and the topic's `*.replication.throttled.replicas`), described back,
  refused with a bad value, and deleted once the move is done;
- the move completes on its own: the list empties, Metadata shows replicas and ISR 3,4 led by 3,
  and brokers 1 and 2 delete the partition's directory;
- cancelling with nothing to cancel is NO_REASSIGNMENT_IN_PROGRESS, and a move to a broker that is
  not registered INVALID_REPLICA_ASSIGNMENT;
- broker 4 has every record: with broker 3 killed it leads, and every record past the deleted
  ones is read back from it at its original offset."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka import TopicPartition as CkTopicPartition
from kafka import KafkaAdminClient, TopicPartition
from kafka import errors as kafka_errors

import ck
from conftest import free_port
from records import Deadline
from test_cluster import wait_for_brokers
from test_replication import partitions_of

TOPIC = "moving"
RECORDS = 3000
VALUE_BYTES = 200
DELETED_BELOW = 500
# Broker 4's throttle: slow enough that copying the partition takes seconds.
THROTTLE_BYTES_PER_SEC = 150_000
SESSION_MS = 1500
HEARTBEAT_MS = 250


def start_cluster(start_broker, throttle_on: int | None):
    """Voters 1..3 and observer 4; `throttle_on` gets the reassignment throttle flag."""
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
        ]
        if node == throttle_on:
            args += ["--reassignment-throttle-bytes-per-sec", str(THROTTLE_BYTES_PER_SEC)]
        brokers[node] = start_broker(cores=1, name=f"node{node}", args=args)
    for b in brokers.values():
        wait_for_brokers(b.bootstrap, 4)
    return brokers


def state(bootstrap: str):
    """Partition 0's (leader, replicas, sorted ISR), as a broker at `bootstrap` sees it, or
    None before it knows the topic (its image catches up a moment after the controller's)."""
    p = partitions_of(bootstrap, TOPIC).get(0)
    return None if p is None else (p.leader, list(p.replicas), sorted(p.isrs))


def wait_for_state(bootstrap: str, want, timeout_s: float = 30.0):
    wait_until(f"partition 0 at {want}",
               lambda: True if state(bootstrap) == want else state(bootstrap), timeout_s)


def wait_until(what: str, check, timeout_s: float = 30.0):
    deadline = Deadline(timeout_s)
    while True:
        seen = check()
        if seen is True:
            return
        assert not deadline.expired(), f"{what}: {seen}"
        time.sleep(0.1)


def produce(bootstrap: str) -> dict[bytes, int]:
    acked: dict[bytes, int] = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.value()] = msg.offset()

    # Small batches (about 80 records), so the throttle paces many fetches: a batch always
    # comes whole, however large.
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "batch.size": 16384, "message.timeout.ms": 60000})
    for i in range(RECORDS):
        value = f"r{i:06d}".encode().ljust(VALUE_BYTES, b".")
        p.produce(TOPIC, value=value, partition=0, on_delivery=on_delivery)
        if i % 200 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert len(acked) == RECORDS
    return acked


THROTTLE_RATES = ("follower.replication.throttled.rate", "leader.replication.throttled.rate")


def alter_broker(admin: AdminClient, broker: str, op, configs: dict[str, str]):
    """IncrementalAlterConfigs of broker resource `broker` (an id, or "" for the cluster)."""
    from confluent_kafka.admin import ConfigEntry, ConfigResource, ResourceType

    resource = ConfigResource(ResourceType.BROKER, broker, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v in configs.items()])
    return list(admin.incremental_alter_configs([resource]).values())[0]


def throttle_dynamically(admin: AdminClient):
    """As `kafka-reassign-partitions --throttle` does: the rates on the adding broker (4), the
    throttled replicas on the topic; with the refusals checked first."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    rates = {key: str(THROTTLE_BYTES_PER_SEC) for key in THROTTLE_RATES}
    # (confluent-kafka refuses a cluster-wide broker resource itself, before sending.)
    for broker, bad in (("4", {THROTTLE_RATES[0]: "fast"}), ("4", {THROTTLE_RATES[0]: "0"})):
        try:
            alter_broker(admin, broker, AlterConfigOpType.SET, bad).result(timeout=20)
        except KafkaException as e:
            assert e.args[0].name() in ("INVALID_REQUEST", "INVALID_CONFIG"), e
        else:
            raise AssertionError(f"broker {broker!r}: {bad} was taken")
    alter_broker(admin, "4", AlterConfigOpType.SET, rates).result(timeout=20)
    topic = ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[
        ConfigEntry("leader.replication.throttled.replicas", "0:1,0:2",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("follower.replication.throttled.replicas", "0:3,0:4",
                    incremental_operation=AlterConfigOpType.SET)])
    list(admin.incremental_alter_configs([topic]).values())[0].result(timeout=20)
    described = list(admin.describe_configs(
        [ConfigResource(ResourceType.BROKER, "4")]).values())[0].result(timeout=20)
    for key in THROTTLE_RATES:
        assert described[key].value == str(THROTTLE_BYTES_PER_SEC), described[key]


@pytest.mark.parametrize("throttle", ["flag", "dynamic_configs"])
def test_a_partition_moves_to_brokers_that_had_none_of_it(start_broker, throttle):
    brokers = start_cluster(start_broker, throttle_on=4 if throttle == "flag" else None)
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, replica_assignment=[[1, 2]])])[TOPIC].result(timeout=20)
    wait_for_state(bootstrap, (1, [1, 2], [1, 2]))
    if throttle == "dynamic_configs":
        throttle_dynamically(admin)
    acked = produce(bootstrap)
    low = admin.delete_records([CkTopicPartition(TOPIC, 0, DELETED_BELOW)])
    assert list(low.values())[0].result(timeout=30).low_watermark == DELETED_BELOW

    kp = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        tp = TopicPartition(TOPIC, 0)
        # Refusals first: nothing to cancel; a broker that is not registered.
        refused = kp.alter_partition_reassignments({tp: None})
        assert refused[tp] is kafka_errors.NoReassignmentInProgressError, refused
        refused = kp.alter_partition_reassignments({tp: [3, 99]})
        assert refused[tp] is kafka_errors.InvalidReplicationAssignmentError, refused

        started = time.monotonic()
        assert kp.alter_partition_reassignments({tp: [3, 4]}) == {tp: None}
        ongoing = kp.list_partition_reassignments()
        # The throttled copy to broker 4 takes seconds, so the move is seen in progress.
        assert ongoing == {tp: {"replicas": [3, 4, 1, 2], "adding_replicas": [3, 4],
                                "removing_replicas": [1, 2]}}, ongoing
        assert kp.list_partition_reassignments({TOPIC: [0, 5]}) == ongoing

        wait_until("the move completes", lambda: kp.list_partition_reassignments() == {}
                   or kp.list_partition_reassignments(), timeout_s=90)
        took_s = time.monotonic() - started
    finally:
        kp.close()

    copied = (RECORDS - DELETED_BELOW) * VALUE_BYTES
    # Each fetch's bytes hold the next one back: the first frame (64 KiB at this rate) goes at
    # once, and the last one's pause comes after the copy; the rest is paced.
    floor_s = (copied - 2 * 64 * 1024) / THROTTLE_BYTES_PER_SEC
    print(f"moved {copied} bytes in {took_s:.1f}s (throttle floor {floor_s:.1f}s)")
    assert took_s >= floor_s * 0.9, (took_s, floor_s)
    if throttle == "dynamic_configs":
        # As `kafka-reassign-partitions --verify` does once the move is done.
        from confluent_kafka.admin import AlterConfigOpType, ConfigResource, ResourceType

        alter_broker(admin, "4", AlterConfigOpType.DELETE,
                     {key: "" for key in THROTTLE_RATES}).result(timeout=20)
        described = list(admin.describe_configs(
            [ConfigResource(ResourceType.BROKER, "4")]).values())[0].result(timeout=20)
        assert described[THROTTLE_RATES[0]].value == str(2**63 - 1), described[THROTTLE_RATES[0]]

    wait_for_state(bootstrap, (3, [3, 4], [3, 4]))
    for node in (1, 2):
        gone = brokers[node].data_dir / f"{TOPIC}-0"
        wait_until(f"broker {node} deletes {gone}", lambda: not gone.exists() or "still there")
    for node in (3, 4):
        assert (brokers[node].data_dir / f"{TOPIC}-0").is_dir()
    assert "replica moved off this broker" in brokers[1].log_path.read_text()
    assert "emptying the log to fetch from its start" in brokers[4].log_path.read_text()

    # Broker 4 alone serves the partition: every record past the deleted ones, at its offset.
    brokers[3].kill9()
    survivors = ",".join(brokers[n].bootstrap for n in (1, 2, 4))
    wait_for_state(survivors, (4, [3, 4], [4]))
    reads = ck.consume_all(survivors, TOPIC, RECORDS - DELETED_BELOW, partitions=1, timeout_s=60)
    assert [r.offset for r in reads] == list(range(DELETED_BELOW, RECORDS))
    for r in reads:
        assert acked[r.value] == r.offset
