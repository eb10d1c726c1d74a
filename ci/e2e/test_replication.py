"""Replication factor 3 on a cluster of three brokers: every partition is on all three,
Metadata lists the replicas and in-sync replicas, acks=all producers are answered once the
in-sync replicas have the records, and when a partition's leader is killed with SIGKILL a
follower takes over with every acknowledged record, at its acknowledged offset. The failover
time (kill to the first acks=all write acknowledged by the successor, default sessions) is
printed. kafka-python's producer and consumer keep working through a leader's kill -9 too.
`spate admin cluster --topics` shows each replica's lag: 0 once caught up, unknown for a
stopped broker, and 0 again once it is back and has caught up; a leader's /metrics shows the
lags too (`spate_partition_replica_lag_records`), growing while a follower is down. With
min.insync.replicas=2 and the ISR down to the leader, acks=all is refused NOT_ENOUGH_REPLICAS
while acks=1 goes on."""

from __future__ import annotations

import json
import subprocess
import statistics
import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient

import ck
import test_cluster
from conftest import broker_env, free_port, spate_bin
from records import Deadline
from test_metrics import http_get

BROKERS = 3
PARTITIONS = 3
# Short sessions so a killed leader is fenced, and its partitions moved, within seconds.
SESSION_MS = 1500
HEARTBEAT_MS = 250


def start_cluster(start_broker, short_session: bool = True):
    """Three voters; with `short_session`, sessions short enough that a broker that stops
    heartbeating is fenced within seconds (a killed one is fenced at once either way: its port
    refuses connections)."""
    args = ["--broker-session-timeout-ms", str(SESSION_MS),
            "--broker-heartbeat-interval-ms", str(HEARTBEAT_MS)] if short_session else []
    return test_cluster.start_cluster(start_broker, extra_args=args)


def partitions_of(bootstrap: str, topic: str):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10)
    return md.topics[topic].partitions


def wait_full_isr(bootstrap: str, topic: str, timeout_s: float = 30.0):
    deadline = Deadline(timeout_s)
    while True:
        parts = partitions_of(bootstrap, topic)
        if len(parts) == PARTITIONS and all(
            len(p.replicas) == BROKERS and sorted(p.isrs) == sorted(p.replicas) and p.leader >= 0
            for p in parts.values()
        ):
            return parts
        assert not deadline.expired(), {
            i: (p.leader, p.replicas, p.isrs) for i, p in parts.items()
        }
        time.sleep(0.2)


class Acked:
    """Every acknowledged write: value -> (partition, offset)."""

    def __init__(self):
        self.by_value: dict[bytes, tuple[int, int]] = {}
        self.errors: list[str] = []
        self.ack_times: dict[int, list[float]] = {}

    def on_delivery(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
            return
        self.by_value[msg.value()] = (msg.partition(), msg.offset())
        self.ack_times.setdefault(msg.partition(), []).append(time.monotonic())


def producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "metadata.max.age.ms": 1000,
            "topic.metadata.refresh.interval.ms": 500,
            "retry.backoff.ms": 50,
            # librdkafka connects only to brokers it needs, and its reconnect backoff to a
            # broker grows while that broker is down (up to 10 s by default). This test
            # restarts each killed broker and soon after makes it a partition's new leader;
            # with the default, the producer then sat out the rest of a backoff grown during
            # the earlier kill before connecting to it (failovers of 4-7 s, seen with
            # `debug: eos,topic,msg,protocol`: "Connected" to the new leader seconds after the
            # leader update). Capped as a client that cares about failover would.
            "reconnect.backoff.max.ms": 1000,
        }
    )


def check_read_back(bootstrap: str, topic: str, acked: Acked):
    """Every acknowledged value is read at its acknowledged offset; offsets are dense, each
    with one value, and no value appears twice."""
    reads = ck.consume_all(bootstrap, topic, len(acked.by_value), partitions=PARTITIONS, timeout_s=60)
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


def test_replicated_topic_survives_leader_kills(start_broker):
    # Default sessions (9 s, Kafka's): a killed leader is fenced because its port refuses
    # connections, not because its session ran out, so failover takes well under the session.
    brokers = start_cluster(start_broker, short_session=False)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    topic = "replicated"
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=PARTITIONS,
                replication_factor=3,
                config={"min.insync.replicas": "2"},
            )
        ]
    )[topic].result(timeout=20)
    parts = wait_full_isr(brokers[0].bootstrap, topic)
    assert {len(p.replicas) for p in parts.values()} == {3}

    acked = Acked()
    bootstrap = ",".join(b.bootstrap for b in brokers)
    p = producer(bootstrap)
    seq = 0

    def produce_for(seconds: float):
        nonlocal seq
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(50):
                p.produce(topic, value=f"v{seq:08d}".encode(), partition=seq % PARTITIONS,
                          on_delivery=acked.on_delivery)
                seq += 1
            p.poll(0.005)

    produce_for(2.0)
    p.flush(30)
    before = len(acked.by_value)
    assert before >= 1000, f"only {before} writes acknowledged before the fault"
    assert not acked.errors, acked.errors[:5]

    failovers = []
    alive = dict(by_id)
    for round_ in range(5):
        some = next(iter(alive.values())).bootstrap
        leader_id = partitions_of(some, topic)[0].leader
        controller = AdminClient({"bootstrap.servers": some}).list_topics(timeout=10).controller_id
        print(f"round {round_}: killing node {leader_id} (controller: {controller})")
        victim = alive.pop(leader_id)
        victim.kill9()
        killed_at = time.monotonic()
        # Keep writing through the fault; the partition's first acknowledgement after the
        # kill comes from its new leader.
        produce_for(3.0)
        p.flush(60)
        after = [t for t in acked.ack_times.get(0, []) if t > killed_at]
        assert after, f"round {round_}: partition 0 acknowledged nothing after the kill"
        failovers.append(round(min(after) - killed_at, 3))
        victim.restart()
        alive[leader_id] = victim
        wait_full_isr(victim.bootstrap, topic, timeout_s=60)
    assert not acked.errors, acked.errors[:5]
    print(f"failover (kill -9 of the leader to its successor's first acks=all ack): {failovers} s")
    # Every kill is fenced well before the 9 s session would run out (a loose bound: the
    # machine is shared; the measured times are in docs/DURABILITY.md).
    assert max(failovers) < 6.0, failovers
    # Issue 18's bar for real clients through leader kills: the median failover under 1 s
    # (0.08-0.5 s per round here with the reconnect backoff capped above).
    assert statistics.median(failovers) < 1.0, failovers
    check_read_back(brokers[0].bootstrap, topic, acked)

    # After the kills, leadership has drifted off the preferred (first) replicas: a preferred
    # election (ElectLeaders, as kafka-leader-election runs it) moves it back.
    from confluent_kafka import TopicPartition
    from confluent_kafka._model import ElectionType

    elect_admin = AdminClient({"bootstrap.servers": bootstrap})
    results = elect_admin.elect_leaders(
        ElectionType.PREFERRED, [TopicPartition(topic, i) for i in range(PARTITIONS)]
    ).result(timeout=30)
    assert len(results) == PARTITIONS
    for tp, error in results.items():
        # NONE (elected) or ELECTION_NOT_NEEDED (already the preferred one).
        assert error is None or error.code() == 84, (tp, error)
    deadline = Deadline(20)
    while True:
        parts = partitions_of(bootstrap, topic)
        if all(p.leader == p.replicas[0] for p in parts.values()):
            break
        assert not deadline.expired(), {i: (p.leader, p.replicas) for i, p in parts.items()}
        time.sleep(0.2)
    again = elect_admin.elect_leaders(
        ElectionType.PREFERRED, [TopicPartition(topic, 0)]
    ).result(timeout=30)
    assert [e.code() for e in again.values()] == [84], again  # ELECTION_NOT_NEEDED


def test_group_coordinator_moves_with_its_offsets_partition(start_broker):
    """Committed offsets live in `__consumer_offsets`, replicated three times; when the group's
    coordinator (the leader of its offsets partition) is killed, the new leader rebuilds the
    group from the log and answers the committed offsets."""
    from confluent_kafka import Consumer, TopicPartition

    brokers = start_cluster(start_broker)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    bootstrap = ",".join(b.bootstrap for b in brokers)
    topic = "grouped"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)])[
        topic
    ].result(timeout=20)
    wait_full_isr(bootstrap, topic)
    p = producer(bootstrap)
    for i in range(300):
        p.produce(topic, value=f"g{i:05d}".encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0

    def consumer():
        return Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "movers",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )

    c = consumer()
    c.subscribe([topic])
    got = []
    deadline = Deadline(60)
    while len(got) < 150 and not deadline.expired():
        for m in c.consume(num_messages=50, timeout=0.5):
            if m.error() is None:
                got.append(m)
    assert len(got) >= 150, len(got)
    committed = c.commit(asynchronous=False)
    expected = {(tp.partition, tp.offset) for tp in committed}
    c.close()

    # The offsets topic is replicated on all three brokers.
    offsets = partitions_of(bootstrap, "__consumer_offsets")
    assert {len(p.replicas) for p in offsets.values()} == {3}

    coordinator = admin.describe_consumer_groups(["movers"])["movers"].result(timeout=20).coordinator.id
    by_id[coordinator].kill9()
    alive = [b for i, b in by_id.items() if i != coordinator]
    bootstrap_alive = ",".join(b.bootstrap for b in alive)
    deadline = Deadline(60)
    while True:
        c = Consumer(
            {
                "bootstrap.servers": bootstrap_alive,
                "group.id": "movers",
                "enable.auto.commit": False,
            }
        )
        try:
            answered = c.committed([TopicPartition(topic, i) for i in range(PARTITIONS)], timeout=10)
            if {(tp.partition, tp.offset) for tp in answered} == expected:
                break
            seen = answered
        except Exception as e:  # noqa: BLE001 - retried: the coordinator is moving
            seen = e
        finally:
            c.close()
        assert not deadline.expired(), f"committed offsets after the kill: {seen}, expected {expected}"
        time.sleep(0.5)
    # The admin client must outlive its future (a dropped client fails it with _DESTROY).
    admin_alive = AdminClient({"bootstrap.servers": bootstrap_alive})
    described = admin_alive.describe_consumer_groups(["movers"])["movers"].result(timeout=20)
    assert described.coordinator.id != coordinator


def spate_admin(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(spate_bin()), "admin", "--bootstrap", bootstrap, *args],
        capture_output=True, text=True, timeout=60, env=broker_env(),
    )


def partition_lags(bootstrap: str, topic: str) -> dict[int, dict[str, int | None]]:
    """Each partition's `lag` object in `spate admin --format json cluster --topics`; the
    command must succeed whichever broker is down."""
    done = spate_admin(bootstrap, "--format", "json", "cluster", "--topics")
    assert done.returncode == 0, done.stderr
    rows = [r for r in json.loads(done.stdout)["partitions"] if r["topic"] == topic]
    for r in rows:
        assert sorted(r["lag"]) == sorted(str(b) for b in r["replicas"]), r
    return {r["partition"]: r["lag"] for r in rows}


def wait_lags(bootstrap: str, topic: str, expected: dict[str, int | None], timeout_s: float = 30.0):
    """Until every partition of `topic` shows exactly the lags `expected` (broker -> lag)."""
    deadline = Deadline(timeout_s)
    while True:
        lags = partition_lags(bootstrap, topic)
        if len(lags) == PARTITIONS and all(lag == expected for lag in lags.values()):
            return lags
        assert not deadline.expired(), f"lags {lags}, waiting for {expected}"
        time.sleep(0.3)


def test_spate_admin_shows_each_replicas_lag_and_a_stopped_broker_as_unknown(start_broker):
    brokers = start_cluster(start_broker)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    one = by_id[1].bootstrap
    topic = "lagging"
    # The admin client must outlive its future (a dropped client fails it with _DESTROY).
    admin = AdminClient({"bootstrap.servers": one})
    admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3)]
    )[topic].result(timeout=20)
    wait_full_isr(one, topic)
    p = ck.producer(one, acks="all")
    ck.produce_range(p, topic, "before", range(3000), partitions=PARTITIONS)
    all_caught_up = {str(b): 0 for b in by_id}
    wait_lags(one, topic, all_caught_up)

    # Kafka's own view (kafka-python asks every broker): each of the three holds every
    # partition, with Kafka's offset lag 0 (a replica's high watermark never passes its log
    # end). confluent-kafka 2.16 has no describe_log_dirs.
    kp_admin = KafkaAdminClient(bootstrap_servers=one, request_timeout_ms=15_000)
    try:
        dirs = kp_admin.describe_log_dirs()
    finally:
        kp_admin.close()
    assert len(dirs) == len(by_id), dirs
    for entry in dirs:
        [log_dir] = entry["log_dirs"]
        [t] = [t for t in log_dir["topics"] if t["name"] == topic]
        assert sorted(q["partition_index"] for q in t["partitions"]) == list(range(PARTITIONS))
        assert all(q["offset_lag"] == 0 and q["partition_size"] > 0 for q in t["partitions"]), t

    # The controller (the metadata quorum's leader) stops: the quorum elects another, its
    # partitions' leaderships move, acks=1 writes go on without it, and the command must not
    # fail meanwhile (the quorum shows as unknown while it has no leader).
    stopped = AdminClient({"bootstrap.servers": one}).list_topics(timeout=10).controller_id
    assert stopped in by_id, stopped
    one = by_id[1 if stopped != 1 else 2].bootstrap
    by_id[stopped].stop_clean()
    p = ck.producer(one, acks=1)
    acked = ck.produce_range(p, topic, "after", range(3000, 6000), partitions=PARTITIONS)
    assert len(acked) == 3000
    down = {**all_caught_up, str(stopped): None}
    wait_lags(one, topic, down)
    table = spate_admin(one, "cluster", "--topics")
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith(topic)]
    assert len(rows) == PARTITIONS and all(f"{stopped}:-" in r for r in rows), table.stdout
    assert "LAG" in table.stdout
    print(f"spate admin cluster --topics with broker {stopped} stopped:\n{table.stdout}")

    # Back: it fetches what it missed and shows 0 again, in sync.
    by_id[stopped].restart()
    wait_full_isr(one, topic, timeout_s=60)
    wait_lags(one, topic, all_caught_up, timeout_s=60)


@pytest.mark.parametrize("how", ["clean_stop", "kill9"])
def test_a_stopped_broker_leaves_every_replicas_high_watermark_checkpointed(start_broker, how):
    """A broker leaves its replicas' high watermarks in its data dir
    (`high-watermark-checkpoint-core-N`, Kafka's replication-offset-checkpoint), which the next
    start begins from: here every one of its three replicas at the partition's high watermark,
    and after the restart every acknowledged record is read back. A clean stop writes the file
    as it closes; a broker killed with kill -9 has the one written within the last 5 s."""
    brokers = start_cluster(start_broker)
    bootstrap = brokers[0].bootstrap
    topic = "hw-checkpoint"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=BROKERS)]
    )[topic].result(timeout=30)
    wait_full_isr(bootstrap, topic)
    acked = Acked()
    p = producer(bootstrap)
    per_partition = 200
    for partition in range(PARTITIONS):
        for j in range(per_partition):
            p.produce(topic, value=f"{partition}-{j}".encode(), partition=partition,
                      on_delivery=acked.on_delivery)
    assert p.flush(30) == 0 and not acked.errors, acked.errors
    ends = [high for _, high in ck.high_watermarks(bootstrap, topic, PARTITIONS)]
    assert ends == [per_partition] * PARTITIONS, ends
    # Every follower has fetched the high watermark once the leader has it (within a fetch).
    wait_full_isr(bootstrap, topic)
    time.sleep(1.0)

    stopped = brokers[2]
    if how == "clean_stop":
        assert stopped.stop() == 0
    else:
        # Past one checkpoint interval (5 s) since the high watermarks last moved.
        time.sleep(6)
        stopped.kill9()
    files = sorted(stopped.data_dir.glob("high-watermark-checkpoint-core-*"))
    assert files, list(stopped.data_dir.iterdir())
    # Entries are keyed by topic id (hex): the topic's are its three partitions' (the file also
    # holds __consumer_offsets', created by the read-back helpers' groups).
    from confluent_kafka import TopicCollection
    described = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=10)
    uuid = described.topic_id
    topic_id = b"".join(
        bits.to_bytes(8, "big", signed=True)
        for bits in (uuid.get_most_significant_bits(), uuid.get_least_significant_bits())
    ).hex()
    checkpointed = {}
    for path in files:
        lines = path.read_text().splitlines()
        assert lines[0] == "0" and int(lines[1]) == len(lines) - 2, lines
        for line in lines[2:]:
            tid, partition, offset = line.split()
            if tid == topic_id:
                checkpointed[int(partition)] = int(offset)
    assert checkpointed == {i: per_partition for i in range(PARTITIONS)}, (topic_id, checkpointed)

    stopped.restart()
    wait_full_isr(bootstrap, topic)
    check_read_back(bootstrap, topic, acked)


def test_a_restarted_broker_answers_metadata_only_once_caught_up(start_broker):
    """A broker killed while it led a partition comes back with a metadata log that still says
    it leads. Asked for Metadata right after its restart, it must not say so: it answers once
    the image it applied holds its new registration (as Kafka's broker serves nothing before
    its first metadata catch-up), so clients are sent to the leader elected meanwhile."""
    brokers = start_cluster(start_broker)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    bootstrap = ",".join(b.bootstrap for b in brokers)
    topic = "catch-up"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=BROKERS)]
    )[topic].result(timeout=30)
    wait_full_isr(bootstrap, topic)
    victim = partitions_of(bootstrap, topic)[0].leader
    led_before = {i for i, p in partitions_of(bootstrap, topic).items() if p.leader == victim}
    by_id[victim].kill9()
    survivors = ",".join(b.bootstrap for i, b in by_id.items() if i != victim)
    deadline = Deadline(30)
    while True:
        now = partitions_of(survivors, topic)
        if all(now[i].leader not in (-1, victim) for i in led_before):
            break
        assert not deadline.expired(), {i: (p.leader, p.isrs) for i, p in now.items()}
        time.sleep(0.1)
    by_id[victim].restart()
    # Asked of the restarted broker alone, at once.
    seen = partitions_of(by_id[victim].bootstrap, topic)
    for i in led_before:
        assert seen[i].leader != victim, (
            f"partition {i}: the restarted broker {victim} names itself leader, as before its "
            f"kill: {[(j, p.leader, p.isrs) for j, p in seen.items()]}"
        )
    wait_full_isr(bootstrap, topic)


def test_kafka_python_produces_and_consumes_through_a_leader_kill(start_broker):
    """kafka-python, unmodified, through a kill -9 of a partition's leader: its idempotent
    acks=all producer keeps writing (an acknowledgement from the successor after the kill) and
    its consumer, reading all partitions, keeps reading; every acknowledged value is consumed
    exactly once at its acknowledged offset, and the consumer's offsets only increase."""
    import threading

    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpTopicPartition

    brokers = start_cluster(start_broker, short_session=False)
    topic = "kp-failover"
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3,
                  config={"min.insync.replicas": "2"})]
    )[topic].result(timeout=20)
    wait_full_isr(brokers[0].bootstrap, topic)
    bootstrap = [b.bootstrap for b in brokers]

    acked: dict[bytes, tuple[int, int, float]] = {}
    errors: list[str] = []
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=2, retry_backoff_ms=50, metadata_max_age_ms=1000,
                             request_timeout_ms=10000, delivery_timeout_ms=120000)

    consumed: dict[bytes, tuple[int, int]] = {}
    went_back: list[str] = []
    stop = threading.Event()

    def consume():
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 metadata_max_age_ms=1000, retry_backoff_ms=50)
        consumer.assign([KpTopicPartition(topic, i) for i in range(PARTITIONS)])
        consumer.seek_to_beginning()
        last: dict[int, int] = {}
        try:
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for r in records:
                        if r.offset <= last.get(r.partition, -1):
                            went_back.append(f"{r.partition}: {last[r.partition]} then {r.offset}")
                        last[r.partition] = r.offset
                        if r.value in consumed:
                            went_back.append(f"{r.value!r} twice")
                        consumed[r.value] = (r.partition, r.offset)
        finally:
            consumer.close()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    seq = 0

    def produce_for(seconds: float):
        nonlocal seq
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            value = f"kp{seq:08d}".encode()
            future = producer.send(topic, value=value, partition=seq % PARTITIONS)
            future.add_callback(
                lambda md, value=value: acked.__setitem__(
                    value, (md.partition, md.offset, time.monotonic())))
            future.add_errback(lambda e: errors.append(repr(e)))
            seq += 1
            if seq % 200 == 0:
                time.sleep(0.01)

    try:
        produce_for(2.0)
        producer.flush(30)
        assert len(acked) >= 1000, f"only {len(acked)} writes acknowledged before the fault"
        leader_id = partitions_of(brokers[0].bootstrap, topic)[0].leader
        victim = brokers[leader_id - 1]
        victim.kill9()
        killed_at = time.monotonic()
        produce_for(4.0)
        producer.flush(120)
        assert not errors, errors[:5]
        after = [t for (p, _, t) in acked.values() if p == 0 and t > killed_at]
        assert after, "partition 0 acknowledged nothing after its leader's kill"
        print(f"kafka-python failover (kill -9 to the successor's first ack): "
              f"{min(after) - killed_at:.3f} s, {len(acked)} acknowledged")
        victim.restart()
        deadline = Deadline(60)
        while not all(v in consumed for v in acked):
            assert not deadline.expired(), (
                f"{sum(v not in consumed for v in acked)} acknowledged values never consumed")
            time.sleep(0.2)
    finally:
        stop.set()
        reader.join(timeout=10)
        producer.close(timeout=10)
    assert not went_back, went_back[:5]
    for value, (partition, offset, _) in acked.items():
        assert consumed[value] == (partition, offset), (value, consumed[value], partition, offset)


def replica_lags_on(broker, topic: str) -> dict[tuple[int, int], int]:
    """`spate_partition_replica_lag_records` of `topic` on `broker`'s /metrics:
    (partition, replica) -> lag."""
    status, _, text = http_get(broker.admin_address, "/metrics")
    assert status == 200, text
    prefix = f'spate_partition_replica_lag_records{{topic="{topic}",partition="'
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            series, value = line.rsplit(" ", 1)
            partition, replica = series[len(prefix):].split('",replica="')
            out[(int(partition), int(replica.rstrip('"}')))] = int(value)
    return out


def wait_replica_lags(by_id, topic: str, want, timeout_s: float = 30.0):
    """Until `want(leaders, lags)` holds, with `leaders` partition -> leader (from Metadata) and
    `lags` broker -> its series; returns both."""
    deadline = Deadline(timeout_s)
    while True:
        leaders = {i: p.leader for i, p in partitions_of(by_id[min(by_id)].bootstrap, topic).items()}
        lags = {n: replica_lags_on(b, topic) for n, b in by_id.items() if b.running()}
        if want(leaders, lags):
            return leaders, lags
        assert not deadline.expired(), f"leaders {leaders}, lags {lags}"
        time.sleep(0.3)


def test_a_leader_exports_each_followers_lag_which_grows_while_it_is_down(start_broker):
    """`spate_partition_replica_lag_records` on /metrics: only a partition's leader exports it,
    one series per follower, 0 once caught up. A follower killed with kill -9 stays in its
    leaders' series (they keep its last fetch offset) with a lag that grows by exactly what is
    appended meanwhile; restarted, it catches up and its lag returns to 0."""
    brokers = start_cluster(start_broker)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    topic = "follower-lag"
    admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=BROKERS)]
    )[topic].result(timeout=20)
    wait_full_isr(brokers[0].bootstrap, topic)
    bootstrap = ",".join(b.bootstrap for b in brokers)
    acked = ck.produce_range(
        ck.producer(bootstrap, acks="all"), topic, "before", range(3000), partitions=PARTITIONS
    )
    assert len(acked) == 3000

    def all_caught_up(leaders, lags):
        # Each broker exports exactly its led partitions' two followers, every one at 0.
        expected = {
            n: {(p, r): 0 for p, leader in leaders.items() if leader == n for r in by_id if r != n}
            for n in lags
        }
        return lags == expected

    leaders, _ = wait_replica_lags(by_id, topic, all_caught_up)

    # Kill a follower that is not the controller (the controller's death would hold ISR changes
    # until the quorum elects another, beside the point here).
    controller = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).controller_id
    victim = max(n for n in by_id if n != controller)
    kept = {p: leader for p, leader in leaders.items() if leader != victim}
    assert kept, leaders
    by_id[victim].kill9()
    survivors = ",".join(b.bootstrap for n, b in by_id.items() if n != victim)
    p = ck.producer(survivors, acks=1)
    after = ck.produce_range(p, topic, "down", range(3000, 6000), partitions=PARTITIONS)
    appended = {q: sum(1 for part, _ in after.values() if part == q) for q in kept}
    assert all(n > 0 for n in appended.values()), appended

    # On each partition it did not lead, the leader (unchanged) shows its lag as everything
    # appended since, while the live follower catches up to 0.
    def victim_behind(by: dict[int, int]):
        def check(leaders, lags):
            if any(leaders[q] != kept[q] for q in kept):
                return False
            for q, leader in kept.items():
                mine = lags[leader]
                other = next(r for r in by_id if r not in (leader, victim))
                if mine.get((q, victim)) != by[q] or mine.get((q, other)) != 0:
                    return False
            return True

        return check

    _, lags = wait_replica_lags(by_id, topic, victim_behind(appended))
    print(f"lags with broker {victim} down: {lags}")
    # It grows with every append while the follower is down.
    more = ck.produce_range(p, topic, "more", range(6000, 7500), partitions=PARTITIONS)
    for _, (part, _) in more.items():
        if part in appended:
            appended[part] += 1
    wait_replica_lags(by_id, topic, victim_behind(appended))

    # Back: it fetches what it missed and shows 0 again on every leader.
    by_id[victim].restart()
    wait_full_isr(bootstrap, topic, timeout_s=60)
    wait_replica_lags(by_id, topic, all_caught_up, timeout_s=60)
    reads = ck.consume_all(bootstrap, topic, 7500, partitions=PARTITIONS, timeout_s=60)
    assert len(reads) == 7500


def test_acks_all_is_refused_with_not_enough_replicas_once_the_isr_is_below_min_insync(start_broker):
    """min.insync.replicas=2 on replication factor 3, and two of the three brokers killed with
    kill -9: once they are fenced the ISR is the leader alone, and an acks=all produce is answered
    NOT_ENOUGH_REPLICAS (19) with nothing appended, while acks=1 is still acknowledged. Restarted,
    the two rejoin the ISR and acks=all is acknowledged again; every acknowledged record is read
    back at its offset, and no refused one is.

    Node 1 is the metadata quorum's only voter (2 and 3 observe it): with three voters, killing
    two would leave the quorum without a majority, so the controller could not commit the ISR
    shrink and acks=all would time out instead (as in Kafka). Every partition is placed on
    1, 2, 3 so that node 1, which stays up, leads them all."""
    cluster_ports = [free_port() for _ in range(BROKERS)]
    voters = f"1@127.0.0.1:{cluster_ports[0]}"
    brokers = [
        start_broker(cores=1, name=f"node{i + 1}", args=[
            "--node-id", str(i + 1),
            "--cluster-listen", f"127.0.0.1:{port}",
            "--controller-voters", voters,
            "--broker-session-timeout-ms", str(SESSION_MS),
            "--broker-heartbeat-interval-ms", str(HEARTBEAT_MS),
        ])
        for i, port in enumerate(cluster_ports)
    ]
    for b in brokers:
        test_cluster.wait_for_brokers(b.bootstrap, BROKERS)
    one = brokers[0]
    topic = "min-insync"
    admin = AdminClient({"bootstrap.servers": one.bootstrap})
    admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=PARTITIONS,
                replica_assignment=[[1, 2, 3]] * PARTITIONS,
                config={"min.insync.replicas": "2"},
            )
        ]
    )[topic].result(timeout=20)
    parts = wait_full_isr(one.bootstrap, topic)
    assert {p.leader for p in parts.values()} == {1}, parts

    acked = Acked()

    def produce(acks: str, tag: str, count: int, on_delivery) -> None:
        # No retries and no idempotence: the first answer is the delivery report's.
        p = Producer({
            "bootstrap.servers": one.bootstrap,
            "acks": acks,
            "retries": 0,
            "enable.idempotence": False,
            "message.timeout.ms": 15000,
            "linger.ms": 2,
        })
        for j in range(count):
            p.produce(topic, value=f"{tag}-{j}".encode(), partition=j % PARTITIONS,
                      on_delivery=on_delivery)
        assert p.flush(30) == 0

    produce("all", "before", 300, acked.on_delivery)
    assert len(acked.by_value) == 300 and not acked.errors, acked.errors

    brokers[1].kill9()
    brokers[2].kill9()
    deadline = Deadline(30)
    while True:
        parts = partitions_of(one.bootstrap, topic)
        if all(p.isrs == [1] and p.leader == 1 for p in parts.values()):
            break
        assert not deadline.expired(), {i: (p.leader, p.isrs) for i, p in parts.items()}
        time.sleep(0.2)

    refused: list = []

    def on_refused(err, msg):
        refused.append(err.code() if err is not None else ("acked", msg.partition(), msg.offset()))

    produce("all", "refused", 30, on_refused)
    assert refused == [KafkaError.NOT_ENOUGH_REPLICAS] * 30, refused
    ends = [high for _, high in ck.high_watermarks(one.bootstrap, topic, PARTITIONS)]
    assert sum(ends) == 300, f"a refused record was appended: high watermarks {ends}"
    # Counted per partition of a Produce request: at least one refused batch per partition.
    _, _, text = http_get(one.admin_address, "/metrics")
    counted = [
        int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith('spate_produce_errors_total{error="NOT_ENOUGH_REPLICAS"} ')
    ]
    assert counted and PARTITIONS <= counted[0] <= 30, counted

    produce("1", "leader-only", 300, acked.on_delivery)
    assert len(acked.by_value) == 600 and not acked.errors, acked.errors

    brokers[1].restart()
    brokers[2].restart()
    wait_full_isr(one.bootstrap, topic, timeout_s=60)
    produce("all", "after", 300, acked.on_delivery)
    assert len(acked.by_value) == 900 and not acked.errors, acked.errors
    check_read_back(",".join(b.bootstrap for b in brokers), topic, acked)
