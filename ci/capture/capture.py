"""Drives real Kafka clients against fake_broker.py and writes golden fixtures.

Usage (from the repository root, with the venv described in README.md):
    .venv/bin/python ci/capture/capture.py [--out wire/tests/fixtures] [scenario-prefix ...]

Each scenario starts a fresh FakeBroker, runs one client doing one thing, then checks the
captured manifests against what the scenario asked the client to send (topics, record count,
compression, acks) before keeping them. A scenario that does not match fails loudly.
"""

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_broker import GROUP_APIS, SUPPORTED, FakeBroker  # noqa: E402

MESSAGES = 5
SEED = [b"golden-value-%d" % i for i in range(MESSAGES)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_produce(broker, topic, messages, compression, acks, sent=None):
    """`sent`: the (key, value, headers) the scenario produced, in order, as text."""
    produces = [m for m in broker.captured if m["api_key"] == 0]
    assert produces, "%s: no Produce captured" % broker.scenario
    total = 0
    records = []
    for m in produces:
        assert m["acks"] == acks, (m["acks"], acks)
        assert m["topics"] == [topic], m["topics"]
        for b in m["batches"]:
            assert b["compression"] == compression, (b["compression"], compression)
            assert len(b["records"]) == b["record_count"]
            total += b["record_count"]
            records.extend(b["records"])
    assert total == messages, "%s: %d records captured, %d sent" % (broker.scenario, total, messages)
    if sent is not None:
        assert records == [[k, v, [list(h) for h in hs]] for k, v, hs in sent], records


def sent_records(values, headers):
    return [("key-%d" % i, values[i], headers(i)) for i in range(MESSAGES)]


def expect_apis(broker, *api_keys):
    seen = {m["api_key"] for m in broker.captured}
    missing = set(api_keys) - seen
    assert not missing, "%s: expected api keys %s not captured (saw %s)" % (broker.scenario, missing, seen)


# ---- librdkafka through confluent-kafka ------------------------------------------------------
def rdkafka_produce(out, compression):
    from confluent_kafka import Producer
    topic = "golden-rdk-%s" % compression
    with FakeBroker(out, "librdkafka", "produce-%s" % compression) as b:
        p = Producer({"bootstrap.servers": b.bootstrap, "client.id": "golden-rdkafka", "acks": "all",
                      "compression.type": compression, "linger.ms": 100, "enable.idempotence": False,
                      "api.version.request": True})
        for i in range(MESSAGES):
            p.produce(topic, key=b"key-%d" % i, value=(b"value-%d " % i) * 60,
                      headers=[("trace", b"t%d" % i), ("kind", b"golden")], partition=0)
        assert p.flush(15) == 0, "librdkafka did not deliver everything"
        sent = sent_records([("value-%d " % i) * 60 for i in range(MESSAGES)],
                            lambda i: [("trace", "t%d" % i), ("kind", "golden")])
        check_produce(b, topic, MESSAGES, compression, -1, sent)
        expect_apis(b, 18, 3, 0)


def rdkafka_consume(out):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    topic = "golden-rdk-consume"
    with FakeBroker(out, "librdkafka", "consume") as b:
        b.add_topic(topic, 1, SEED)
        c = Consumer({"bootstrap.servers": b.bootstrap, "client.id": "golden-rdkafka", "group.id": "golden",
                      "enable.auto.commit": False, "fetch.wait.max.ms": 100})
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.time() + 15
        while len(got) < MESSAGES and time.time() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        c.close()
        assert got == SEED, got
        expect_apis(b, 18, 3, 1)


def rdkafka_admin(out):
    from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource
    with FakeBroker(out, "librdkafka", "admin") as b:
        a = AdminClient({"bootstrap.servers": b.bootstrap, "client.id": "golden-rdkafka-admin"})
        fs = a.create_topics([NewTopic("golden-admin-a", num_partitions=3, replication_factor=1),
                              NewTopic("golden-admin-b", num_partitions=1, replication_factor=1)],
                             operation_timeout=5)
        for f in fs.values():
            f.result(10)
        fs = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "golden-admin-a")])
        for f in fs.values():
            f.result(10)
        fs = a.delete_topics(["golden-admin-b"], operation_timeout=5)
        for f in fs.values():
            f.result(10)
        expect_apis(b, 18, 3, 19, 20, 32)


def rdkafka_group(out):
    from confluent_kafka import Consumer
    topic = "golden-rdk-group"
    with FakeBroker(out, "librdkafka", "group", advertised={**SUPPORTED, **GROUP_APIS}) as b:
        b.add_topic(topic, 1, SEED)
        c = Consumer({"bootstrap.servers": b.bootstrap, "client.id": "golden-rdkafka", "group.id": "golden-group",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "heartbeat.interval.ms": 200, "fetch.wait.max.ms": 100})
        c.subscribe([topic])
        got = []
        deadline = time.time() + 20
        while len(got) < MESSAGES and time.time() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        assert got == SEED, got
        c.commit(asynchronous=False)
        time.sleep(0.5)  # a heartbeat or two
        c.close()
        expect_apis(b, 10, 11, 14, 9, 1, 8, 13)
        commits = [m for m in b.captured if m["api_key"] == 8]
        assert commits[-1]["commits"] == [[topic, 0, MESSAGES]], commits


# ---- kafka-python -----------------------------------------------------------------------------
def kafka_python_group(out):
    from kafka import KafkaConsumer
    topic = "golden-kp-group"
    with FakeBroker(out, "kafka-python", "group", advertised={**SUPPORTED, **GROUP_APIS}) as b:
        b.add_topic(topic, 1, SEED)
        c = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, client_id="golden-kafka-python",
                          group_id="golden-group", auto_offset_reset="earliest", enable_auto_commit=False,
                          fetch_max_wait_ms=100, heartbeat_interval_ms=200)
        got = []
        deadline = time.time() + 20
        while len(got) < MESSAGES and time.time() < deadline:
            for recs in c.poll(500).values():
                got.extend(r.value for r in recs)
        assert got == SEED, got
        c.commit()
        time.sleep(0.5)
        c.close()
        expect_apis(b, 10, 11, 14, 9, 1, 8, 13)
        commits = [m for m in b.captured if m["api_key"] == 8]
        assert commits[-1]["commits"] == [[topic, 0, MESSAGES]], commits



def kafka_python_produce(out):
    from kafka import KafkaProducer
    topic = "golden-kp-produce"
    with FakeBroker(out, "kafka-python", "produce") as b:
        p = KafkaProducer(bootstrap_servers=b.bootstrap, client_id="golden-kafka-python")
        for i in range(MESSAGES):
            p.send(topic, key=b"key-%d" % i, value=b"value-%d" % i, headers=[("trace", b"t%d" % i)], partition=0)
        p.flush(15)
        p.close(5)
        sent = sent_records(["value-%d" % i for i in range(MESSAGES)], lambda i: [("trace", "t%d" % i)])
        check_produce(b, topic, MESSAGES, "none", -1, sent)
        expect_apis(b, 18, 3, 0, 22)


def kafka_python_consume(out):
    from kafka import KafkaConsumer, TopicPartition
    topic = "golden-kp-consume"
    with FakeBroker(out, "kafka-python", "consume") as b:
        b.add_topic(topic, 1, SEED)
        c = KafkaConsumer(bootstrap_servers=b.bootstrap, client_id="golden-kafka-python",
                          auto_offset_reset="earliest", fetch_max_wait_ms=100)
        c.assign([TopicPartition(topic, 0)])
        got = []
        deadline = time.time() + 15
        while len(got) < MESSAGES and time.time() < deadline:
            for recs in c.poll(500).values():
                got.extend(r.value for r in recs)
        c.close()
        assert got == SEED, got
        expect_apis(b, 18, 3, 1, 2)


# ---- aiokafka ---------------------------------------------------------------------------------
def aiokafka_produce(out, compression):
    from aiokafka import AIOKafkaProducer
    topic = "golden-aio-%s" % compression
    with FakeBroker(out, "aiokafka", "produce-%s" % compression) as b:
        async def run():
            p = AIOKafkaProducer(bootstrap_servers=b.bootstrap, client_id="golden-aiokafka",
                                 compression_type=None if compression == "none" else compression,
                                 acks="all", linger_ms=100)
            await p.start()
            try:
                batch = p.create_batch()
                for i in range(MESSAGES):
                    assert batch.append(key=b"key-%d" % i, value=b"value-%d" % i, timestamp=None,
                                        headers=[("trace", b"t%d" % i)]) is not None
                fut = await p.send_batch(batch, topic, partition=0)
                await fut
            finally:
                await p.stop()
        asyncio.run(run())
        sent = sent_records(["value-%d" % i for i in range(MESSAGES)], lambda i: [("trace", "t%d" % i)])
        check_produce(b, topic, MESSAGES, compression, -1, sent)
        expect_apis(b, 18, 3, 0)


# ---- kcat (Debian, librdkafka 2.0.2) ---------------------------------------------------------
def kcat(out, scenario, args, stdin=None, check=None):
    with FakeBroker(out, "kcat", scenario) as b:
        if scenario == "consume":
            b.add_topic("golden-kcat", 1, SEED)
        cmd = ["kcat", "-b", b.bootstrap, "-X", "client.id=golden-kcat"] + args
        res = subprocess.run(cmd, input=stdin, capture_output=True, timeout=30)
        assert res.returncode == 0, res.stderr.decode()
        if check:
            check(b, res.stdout)


def kcat_produce(out):
    lines = b"".join(b"key-%d:value-%d\n" % (i, i) for i in range(MESSAGES))
    kcat(out, "produce", ["-P", "-t", "golden-kcat", "-p", "0", "-K:", "-z", "gzip",
                          "-X", "acks=all", "-H", "trace=golden"], stdin=lines,
         check=lambda b, _o: (
             check_produce(b, "golden-kcat", MESSAGES, "gzip", -1,
                           sent_records(["value-%d" % i for i in range(MESSAGES)], lambda i: [("trace", "golden")])),
             expect_apis(b, 18, 3, 0)))


def kcat_consume(out):
    def check(b, stdout):
        assert stdout.split(b"\n")[:MESSAGES] == SEED, stdout
        expect_apis(b, 18, 3, 1)
    kcat(out, "consume", ["-C", "-t", "golden-kcat", "-p", "0", "-o", "beginning", "-c", str(MESSAGES), "-e"],
         check=check)


def kcat_metadata(out):
    kcat(out, "metadata", ["-L"], check=lambda b, o: (expect_apis(b, 18, 3), None))


SCENARIOS = {
    "librdkafka-produce-none": lambda o: rdkafka_produce(o, "none"),
    "librdkafka-produce-gzip": lambda o: rdkafka_produce(o, "gzip"),
    "librdkafka-produce-snappy": lambda o: rdkafka_produce(o, "snappy"),
    "librdkafka-produce-lz4": lambda o: rdkafka_produce(o, "lz4"),
    "librdkafka-produce-zstd": lambda o: rdkafka_produce(o, "zstd"),
    "librdkafka-consume": rdkafka_consume,
    "librdkafka-admin": rdkafka_admin,
    "librdkafka-group": rdkafka_group,
    "kafka-python-produce": kafka_python_produce,
    "kafka-python-consume": kafka_python_consume,
    "kafka-python-group": kafka_python_group,
    "aiokafka-produce-none": lambda o: aiokafka_produce(o, "none"),
    "aiokafka-produce-gzip": lambda o: aiokafka_produce(o, "gzip"),
    "kcat-produce": kcat_produce,
    "kcat-consume": kcat_consume,
    "kcat-metadata": kcat_metadata,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "wire", "tests", "fixtures"))
    ap.add_argument("only", nargs="*")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    failed = []
    for name, fn in SCENARIOS.items():
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        print("==", name, flush=True)
        try:
            fn(args.out)
        except Exception as e:  # report every scenario, then fail
            failed.append(name)
            print("FAILED %s: %r" % (name, e), flush=True)
    if failed:
        sys.exit("failed scenarios: %s" % ", ".join(failed))


if __name__ == "__main__":
    main()
