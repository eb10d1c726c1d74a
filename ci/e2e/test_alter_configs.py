"""Topic configs changed on a live topic (IncrementalAlterConfigs, AlterConfigs) take effect
without a restart and survive one (kill -9 included), on a single broker and on a cluster of
three, where the change goes through the metadata log and every broker applies it.

Clients: confluent-kafka's AdminClient (incremental_alter_configs, describe_configs with
synonyms), kafka-python (legacy alter_configs, reset_configs, describe_configs), kcat (a
produce the new max.message.bytes refuses). Effects checked: old segments deleted and the log
start moved by a lowered retention.bytes after segment.bytes was lowered, MESSAGE_TOO_LARGE
for a record over a lowered max.message.bytes, keyless records refused once cleanup.policy is
compact, no fdatasync for acks=1 appends under flush.policy=never and one per batch under
every-append (the broker's fsync count in /metrics), old segments deleted by a lowered
retention.ms."""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

import ck
from records import Deadline
from test_cluster import leaders, start_cluster, wait_for_brokers

BROKER_RETENTION_MS = "86400000"


def describe(bootstrap: str, topic: str) -> dict:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    # librdkafka always asks for synonyms.
    return admin.describe_configs([resource])[resource].result(timeout=15)


def alter(bootstrap: str, topic: str, ops: list[tuple[str, str, str | None]],
          validate_only: bool = False) -> None:
    """IncrementalAlterConfigs of (key, op name, value) on one topic; raises on refusal."""
    entries = [ConfigEntry(key, value, incremental_operation=AlterConfigOpType[op])
               for key, op, value in ops]
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.incremental_alter_configs([resource], validate_only=validate_only)[resource].result(
        timeout=20)


def refusal(bootstrap: str, restype, name: str, ops) -> str:
    """The error name of an IncrementalAlterConfigs that must be refused."""
    entries = [ConfigEntry(key, value, incremental_operation=AlterConfigOpType[op])
               for key, op, value in ops]
    resource = ConfigResource(restype, name, incremental_configs=entries)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with pytest.raises(KafkaException) as refused:
        admin.incremental_alter_configs([resource])[resource].result(timeout=20)
    return refused.value.args[0].name()


def produce_outcomes(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes]]):
    """Produces (partition, key, value) with acks=all, no retries, each in its own batch; the
    error name (or None) of each, in order."""
    outcomes: dict[int, str | None] = {}
    p = ck.producer(bootstrap, acks="all", retries=0, linger_ms=0)
    for i, (partition, key, value) in enumerate(records):
        def report(err, _msg, i=i):
            outcomes[i] = None if err is None else err.name()
        p.produce(topic, key=key, value=value, partition=partition, on_delivery=report)
        # One batch per record: a refused record must not take others down with it.
        assert p.flush(30) == 0, "delivery still pending"
    return [outcomes[i] for i in range(len(records))]


def segments(broker, topic: str, partition: int = 0) -> int:
    return len(list((broker.data_dir / f"{topic}-{partition}").glob("*.log")))


def wait_until(what: str, check, timeout_s: float = 20.0):
    deadline = Deadline(timeout_s)
    while True:
        value = check()
        if value:
            return value
        assert not deadline.expired(), f"timed out waiting for {what}"
        time.sleep(0.2)


def test_incremental_changes_apply_live_and_survive_kill9(start_broker):
    broker = start_broker(cores=2, args=["--retention-ms", BROKER_RETENTION_MS])
    topic = "live-configs"
    ck.create_topic(broker.bootstrap, topic, partitions=1)

    # Sources before any change: retention.ms comes from the broker's flag, segment.bytes from
    # Spate's default, both with Kafka's broker names as synonyms.
    configs = describe(broker.bootstrap, topic)
    assert configs["retention.ms"].value == BROKER_RETENTION_MS
    assert configs["retention.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert "log.retention.ms" in configs["retention.ms"].synonyms
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert not configs["segment.bytes"].is_read_only and not configs["segment.bytes"].is_sensitive

    # Small segments, then 300 records of 1 KB in small batches: many segments.
    alter(broker.bootstrap, topic, [("segment.bytes", "SET", "16384")])
    configs = describe(broker.bootstrap, topic)
    assert configs["segment.bytes"].value == "16384"
    assert configs["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    synonyms = configs["segment.bytes"].synonyms
    assert set(synonyms) == {"segment.bytes", "log.segment.bytes"}, synonyms
    assert synonyms["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    p = ck.producer(broker.bootstrap, acks="all", batch_size=4096, linger_ms=1)
    for i in range(300):
        p.produce(topic, key=b"k%d" % i, value=b"x" * 1000, partition=0)
        p.poll(0)
    assert p.flush(30) == 0
    before = segments(broker, topic)
    assert before >= 10, f"only {before} segments after lowering segment.bytes"
    low, high = ck.high_watermarks(broker.bootstrap, topic, partitions=1)[0]
    assert (low, high) == (0, 300)

    # A lowered retention.bytes deletes old segments now, no restart.
    alter(broker.bootstrap, topic, [("retention.bytes", "SET", "40000")])
    # One pass deletes segment by segment: wait for it to finish.
    wait_until("retention to delete old segments", lambda: segments(broker, topic) <= 6)
    start = ck.high_watermarks(broker.bootstrap, topic, partitions=1)[0][0]
    assert start >= 200, f"log start {start}: too little deleted for 40000 bytes"

    # max.message.bytes lowered: a larger record is refused, a small one still taken.
    alter(broker.bootstrap, topic, [("max.message.bytes", "SET", "2000")])
    assert produce_outcomes(broker.bootstrap, topic, [(0, b"big", b"y" * 5000),
                                                      (0, b"small", b"y" * 100)]) == [
        "MSG_SIZE_TOO_LARGE", None]
    # kcat (librdkafka 2.0) sees the same refusal.
    kcat = subprocess.run(
        ["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-K", ":",
         "-X", "message.send.max.retries=0"],
        input=b"k:" + b"z" * 5000 + b"\n", capture_output=True, timeout=60)
    assert b"too large" in kcat.stderr.lower(), (kcat.returncode, kcat.stderr)

    # cleanup.policy as a list: APPEND compact to the default delete, SUBTRACT delete.
    alter(broker.bootstrap, topic, [("cleanup.policy", "APPEND", "compact")])
    assert describe(broker.bootstrap, topic)["cleanup.policy"].value == "compact,delete"
    alter(broker.bootstrap, topic, [("cleanup.policy", "SUBTRACT", "delete")])
    assert describe(broker.bootstrap, topic)["cleanup.policy"].value == "compact"
    # Compacted now: keyless records are refused, keyed ones taken.
    assert produce_outcomes(broker.bootstrap, topic, [(0, None, b"v"), (0, b"k", b"v")]) == [
        "INVALID_RECORD", None]

    # validate_only changes nothing; DELETE goes back to the default.
    alter(broker.bootstrap, topic, [("segment.ms", "SET", "1000")], validate_only=True)
    assert describe(broker.bootstrap, topic)["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    alter(broker.bootstrap, topic, [("retention.bytes", "DELETE", None)])
    configs = describe(broker.bootstrap, topic)
    assert configs["retention.bytes"].value == "-1"
    assert configs["retention.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    # Refusals, with Kafka's codes.
    b = broker.bootstrap
    assert refusal(b, ResourceType.TOPIC, topic, [("no.such.config", "SET", "1")]) == "INVALID_CONFIG"
    assert refusal(b, ResourceType.TOPIC, topic, [("retention.ms", "SET", "soon")]) == "INVALID_CONFIG"
    assert refusal(b, ResourceType.TOPIC, topic, [("retention.ms", "APPEND", "1")]) == "INVALID_CONFIG"
    assert refusal(b, ResourceType.TOPIC, "no-such-topic",
                   [("retention.ms", "SET", "1")]) == "UNKNOWN_TOPIC_OR_PART"
    assert refusal(b, ResourceType.BROKER, "0",
                   [("log.retention.ms", "SET", "1")]) == "INVALID_REQUEST"

    # kill -9 and back: the changes hold, and still act.
    broker.kill9()
    broker.restart()
    configs = describe(broker.bootstrap, topic)
    assert configs["segment.bytes"].value == "16384"
    assert configs["max.message.bytes"].value == "2000"
    assert configs["cleanup.policy"].value == "compact"
    assert configs["retention.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert ck.high_watermarks(broker.bootstrap, topic, partitions=1)[0][0] == start
    assert produce_outcomes(broker.bootstrap, topic, [(0, b"big", b"y" * 5000)]) == [
        "MSG_SIZE_TOO_LARGE"]


def kp_describe(bootstrap: str, topic: str) -> dict:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        answer = admin.describe_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, topic)], include_synonyms=True,
            config_filter="all")
    finally:
        admin.close()
    return answer["topic"][topic]


def test_kafka_python_legacy_alter_configs_replaces_the_overrides(start_broker):
    broker = start_broker(cores=2)
    topic = "legacy"
    ck.create_topic(broker.bootstrap, topic, partitions=2,
                    **{"segment.bytes": "16384", "retention.ms": "60000"})
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # Legacy AlterConfigs (kafka-python fills in the other modified keys first, so the
        # untouched override stays).
        answer = admin.alter_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": "3000"})],
            incremental=False)
        assert answer == {"topic": {topic: "OK"}}, answer
        configs = kp_describe(broker.bootstrap, topic)
        assert configs["max.message.bytes"]["value"] == "3000"
        assert configs["segment.bytes"]["value"] == "16384"
        assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert [(s["name"], s["source"]) for s in configs["retention.ms"]["synonyms"]] == [
            ("retention.ms", "DYNAMIC_TOPIC_CONFIG"), ("log.retention.ms", "DEFAULT_CONFIG")]
        assert produce_outcomes(broker.bootstrap, topic, [(1, b"k", b"y" * 5000)]) == [
            "MSG_SIZE_TOO_LARGE"]
        # A full reset is a legacy AlterConfigs with no configs: every override goes.
        answer = admin.reset_configs([KpConfigResource(ConfigResourceType.TOPIC, topic)],
                                     incremental=False)
        assert answer == {"topic": {topic: "OK"}}, answer
        configs = kp_describe(broker.bootstrap, topic)
        for key in ("max.message.bytes", "segment.bytes", "retention.ms"):
            assert configs[key]["config_source"] == "DEFAULT_CONFIG", (key, configs[key])
        assert produce_outcomes(broker.bootstrap, topic, [(1, b"k", b"y" * 5000)]) == [None]
        # An unknown topic in the legacy API.
        answer = admin.alter_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, "nope", configs={"retention.ms": "1"})],
            incremental=False, raise_on_unknown=False)
        assert "UnknownTopicOrPartition" in answer["topic"]["nope"], answer
    finally:
        admin.close()


def test_a_cluster_applies_a_change_on_every_broker_and_after_a_restart(start_broker):
    brokers = start_cluster(start_broker, extra_args=["--num-partitions", "3"])
    topic = "cluster-configs"
    ck.create_topic(brokers[0].bootstrap, topic, partitions=3)
    wait_until("every broker to know the topic",
               lambda: all(len(leaders(b.bootstrap, topic)) == 3 for b in brokers))
    led_by = set(leaders(brokers[0].bootstrap, topic).values())
    assert led_by == {1, 2, 3}, f"partitions led by {led_by}"

    # Asked of each broker in turn: whichever it is, the controller decides (forwarded or not).
    for i, b in enumerate(brokers):
        alter(b.bootstrap, topic, [("max.message.bytes", "SET", str(2000 + i))])
    for b in brokers:
        configs = describe(b.bootstrap, topic)
        assert configs["max.message.bytes"].value == "2002", b.name
        assert configs["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # Every leader refuses the large record and takes the small one.
    big = [(p, b"k", b"y" * 5000) for p in range(3)]
    small = [(p, b"k", b"y" * 100) for p in range(3)]
    assert produce_outcomes(brokers[1].bootstrap, topic, big) == ["MSG_SIZE_TOO_LARGE"] * 3
    assert produce_outcomes(brokers[1].bootstrap, topic, small) == [None] * 3

    # Legacy AlterConfigs through kafka-python, at another broker.
    admin = KafkaAdminClient(bootstrap_servers=brokers[2].bootstrap)
    try:
        answer = admin.alter_configs(
            [KpConfigResource(ConfigResourceType.TOPIC, topic, configs={"cleanup.policy": "compact"})],
            incremental=False)
        assert answer == {"topic": {topic: "OK"}}, answer
    finally:
        admin.close()
    wait_until("cleanup.policy=compact on every broker",
               lambda: all(describe(b.bootstrap, topic)["cleanup.policy"].value == "compact"
                           for b in brokers))
    assert produce_outcomes(brokers[0].bootstrap, topic, [(p, None, b"v") for p in range(3)]) == [
        "INVALID_RECORD"] * 3
    assert refusal(brokers[0].bootstrap, ResourceType.TOPIC, topic,
                   [("segment.bytes", "SET", "12")]) == "INVALID_CONFIG"

    # A broker killed and restarted applies the configs from the metadata log again.
    victim = brokers[2]
    victim.kill9()
    victim.restart()
    # librdkafka sends config requests to the controller: until the restarted broker names
    # one (it registers first), an admin client bootstrapped there waits.
    wait_for_brokers(victim.bootstrap, 3)
    wait_until("the restarted broker to lead again",
               lambda: set(leaders(brokers[0].bootstrap, topic).values()) == {1, 2, 3},
               timeout_s=60)
    configs = describe(victim.bootstrap, topic)
    assert configs["max.message.bytes"].value == "2002"
    assert configs["cleanup.policy"].value == "compact"
    wait_until(
        "every leader, the restarted one included, to refuse the large record",
        lambda: produce_outcomes(victim.bootstrap, topic, big) == ["MSG_SIZE_TOO_LARGE"] * 3,
        timeout_s=60)


def fsyncs(broker) -> float:
    """The broker's fdatasync count so far (`spate_fsync_duration_seconds_count`)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{broker.admin_address}/metrics", timeout=5) as r:
        text = r.read().decode()
    counts = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("spate_fsync_duration_seconds_count")]
    assert counts, "no fsync histogram in /metrics"
    return sum(counts)


def test_flush_policy_and_retention_ms_change_live(start_broker):
    """flush.policy and retention.ms set with IncrementalAlterConfigs take effect on the running
    broker: under `never` acks=1 appends are not synced (the broker's fsync count stays put
    while 50 batches go in), under `every-append` every batch is synced before its answer (one
    fsync or more per batch); a lowered retention.ms deletes the old closed segments at once."""
    broker = start_broker(cores=1)
    topic = "live-flush-retention"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    # acks=1: acks=all forces a sync under every policy on one broker (DURABILITY.md).
    p = ck.producer(broker.bootstrap, acks="1", linger_ms=0)

    def produce_batches(count: int, tag: str) -> None:
        for i in range(count):
            p.produce(topic, value=f"{tag}-{i}".encode() * 50, partition=0)
            assert p.flush(30) == 0  # one batch each

    alter(broker.bootstrap, topic, [("flush.policy", "SET", "never")])
    assert describe(broker.bootstrap, topic)["flush.policy"].value == "never"
    produce_batches(5, "warm-up")  # the topic's first append opens what it needs
    before = fsyncs(broker)
    produce_batches(50, "never")
    unsynced = fsyncs(broker) - before
    assert unsynced <= 2, f"{unsynced} fsyncs for 50 batches under flush.policy=never"

    alter(broker.bootstrap, topic, [("flush.policy", "SET", "every-append")])
    before = fsyncs(broker)
    produce_batches(50, "every")
    synced = fsyncs(broker) - before
    assert synced >= 50, f"only {synced} fsyncs for 50 batches under flush.policy=every-append"

    # Another topic with small segments of records stamped an hour ago, then a retention.ms
    # below their age: the closed segments go without a restart.
    aged = "live-retention"
    ck.create_topic(broker.bootstrap, aged, partitions=1)
    alter(broker.bootstrap, aged, [("segment.bytes", "SET", "16384")])
    old_ms = int(time.time() * 1000) - 3_600_000
    small = ck.producer(broker.bootstrap, acks="all", batch_size=4096, linger_ms=1)
    for _ in range(200):
        small.produce(aged, value=b"x" * 1000, partition=0, timestamp=old_ms)
        small.poll(0)
    assert small.flush(30) == 0
    assert segments(broker, aged) >= 5
    low, high = ck.high_watermarks(broker.bootstrap, aged, partitions=1)[0]
    assert (low, high) == (0, 200)
    alter(broker.bootstrap, aged, [("retention.ms", "SET", "600000")])
    wait_until("retention.ms to delete the old segments", lambda: segments(broker, aged) <= 1)
    low, high_after = ck.high_watermarks(broker.bootstrap, aged, partitions=1)[0]
    assert high_after == high and low > 0, (low, high_after)
