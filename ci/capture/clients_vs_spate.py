"""Runs real Kafka clients against a real Spate broker and checks that what they read back is
what they wrote: the end-to-end form of "Spate's responses are accepted by those clients".

    cargo build -p spate-broker
    .venv/bin/python ci/capture/clients_vs_spate.py [--spate target/debug/spate] [prefix ...]

Starts the broker on a free loopback port with a fresh data directory (one core), runs each
scenario, prints PASS/FAIL per scenario, and exits non-zero if any failed. Scenarios use
distinct topics, so they share one broker.
"""

import argparse
import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESSAGES = 5
TIMEOUT_S = 20


def sent(prefix):
    """What a scenario produces: (key, value, headers) per message."""
    return [(b"key-%d" % i, b"%s-value-%d " % (prefix.encode(), i) * 8,
             [("trace", b"t%d" % i), ("kind", b"golden")]) for i in range(MESSAGES)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Spate:
    def __init__(self, binary):
        self.binary = binary
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="spate-e2e-")
        self.log = open(os.path.join(self.data_dir, "..", "spate-e2e-%d.log" % self.port), "wb")
        self.proc = None

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def __enter__(self):
        self.proc = subprocess.Popen(
            [self.binary, "--listen", self.bootstrap, "--admin-listen", "127.0.0.1:0", "--data-dir", self.data_dir, "--cores", "1",
             "--log-level", "warn"], stdout=self.log, stderr=self.log)
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("spate exited with %s (log: %s)" % (self.proc.returncode, self.log.name))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("spate did not listen on %s" % self.bootstrap)

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log.close()
        return False


class CollectingLog(logging.Handler):
    """Collects a client's log lines (librdkafka hands them to a Python logger)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []
        self.logger = logging.getLogger("rdkafka-%d" % id(self))
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record):
        self.lines.append(record.getMessage())


def as_tuples(headers):
    return [(k, bytes(v) if v is not None else None) for k, v in (headers or [])]


# ---- librdkafka (confluent-kafka) -------------------------------------------------------------
def rdkafka_roundtrip(bootstrap, codec):
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    topic = "e2e-rdk-%s" % codec
    want = sent(topic)
    # librdkafka falls back to uncompressed batches, with only a debug log line, when the
    # broker's ApiVersions lacks what it ties a codec to (lz4: FindCoordinator): catch that.
    log = CollectingLog()
    p = Producer({"bootstrap.servers": bootstrap, "client.id": "golden-rdkafka", "acks": "all",
                  "compression.type": codec, "linger.ms": 50, "debug": "msg"}, logger=log.logger)
    offsets = []

    def report(err, msg):
        assert err is None, err
        offsets.append(msg.offset())
    for key, value, headers in want:
        p.produce(topic, key=key, value=value, headers=headers, partition=0, on_delivery=report)
    assert p.flush(TIMEOUT_S) == 0, "not delivered"
    assert sorted(offsets) == list(range(MESSAGES)), offsets
    fallback = [line for line in log.lines if "not compressing" in line]
    assert not fallback, fallback[0]
    sets = [line for line in log.lines if "Produce MessageSet" in line]
    suffix = "uncompressed)" if codec == "none" else codec + ")"
    assert sets and all(line.endswith(suffix) for line in sets), sets
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": "golden-rdkafka", "group.id": "e2e",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + TIMEOUT_S
    while len(got) < MESSAGES and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None:
            assert m.error() is None, m.error()
            got.append((m.offset(), m.key(), m.value(), as_tuples(m.headers())))
    c.close()
    assert got == [(i, k, v, h) for i, (k, v, h) in enumerate(want)], got


def rdkafka_admin(bootstrap):
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap, "client.id": "golden-rdkafka-admin"})
    for f in a.create_topics([NewTopic("e2e-admin-a", num_partitions=3, replication_factor=1),
                              NewTopic("e2e-admin-b", num_partitions=1, replication_factor=1)],
                             operation_timeout=10).values():
        f.result(TIMEOUT_S)
    md = a.list_topics(timeout=TIMEOUT_S)
    assert len(md.topics["e2e-admin-a"].partitions) == 3, md.topics["e2e-admin-a"].partitions
    for f in a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "e2e-admin-a")]).values():
        configs = f.result(TIMEOUT_S)
        assert "retention.ms" in configs, sorted(configs)
    for f in a.delete_topics(["e2e-admin-b"], operation_timeout=10).values():
        f.result(TIMEOUT_S)
    deadline = time.time() + TIMEOUT_S
    while "e2e-admin-b" in a.list_topics(timeout=TIMEOUT_S).topics and time.time() < deadline:
        time.sleep(0.2)
    assert "e2e-admin-b" not in a.list_topics(timeout=TIMEOUT_S).topics


# ---- kafka-python ---------------------------------------------------------------------------
def kafka_python_roundtrip(bootstrap, idempotent):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    topic = "e2e-kafka-python-%s" % ("idempotent" if idempotent else "plain")
    want = sent(topic)
    # kafka-python 3.x is idempotent by default, which needs InitProducerId from the broker.
    p = KafkaProducer(bootstrap_servers=bootstrap, client_id="golden-kafka-python",
                      enable_idempotence=idempotent)
    futures = [p.send(topic, key=k, value=v, headers=h, partition=0) for k, v, h in want]
    p.flush(TIMEOUT_S)
    assert [f.get(TIMEOUT_S).offset for f in futures] == list(range(MESSAGES))
    p.close(5)
    c = KafkaConsumer(bootstrap_servers=bootstrap, client_id="golden-kafka-python",
                      auto_offset_reset="earliest")
    c.assign([TopicPartition(topic, 0)])
    got = []
    deadline = time.time() + TIMEOUT_S
    while len(got) < MESSAGES and time.time() < deadline:
        for records in c.poll(500).values():
            got.extend((r.offset, r.key, r.value, as_tuples(r.headers)) for r in records)
    c.close()
    assert got == [(i, k, v, h) for i, (k, v, h) in enumerate(want)], got


# ---- aiokafka -------------------------------------------------------------------------------
def aiokafka_roundtrip(bootstrap):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition
    topic = "e2e-aiokafka"
    want = sent(topic)

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="golden-aiokafka",
                             compression_type="gzip", acks="all")
        await p.start()
        try:
            for k, v, h in want:
                md = await p.send_and_wait(topic, key=k, value=v, headers=h, partition=0)
                assert md.offset >= 0
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="golden-aiokafka",
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            c.assign([TopicPartition(topic, 0)])
            await c.seek_to_beginning(TopicPartition(topic, 0))
            got = []
            deadline = time.time() + TIMEOUT_S
            while len(got) < MESSAGES and time.time() < deadline:
                batch = await c.getmany(timeout_ms=500)
                for records in batch.values():
                    got.extend((r.offset, r.key, r.value, as_tuples(r.headers)) for r in records)
            return got
        finally:
            await c.stop()
    got = asyncio.run(run())
    assert got == [(i, k, v, h) for i, (k, v, h) in enumerate(want)], got


# ---- kcat (librdkafka 2.0.2) ------------------------------------------------------------------
def kcat_roundtrip(bootstrap):
    topic = "e2e-kcat"
    lines = b"".join(b"key-%d:value-%d\n" % (i, i) for i in range(MESSAGES))
    base = ["kcat", "-b", bootstrap, "-X", "client.id=golden-kcat"]
    res = subprocess.run(base + ["-P", "-t", topic, "-p", "0", "-K:", "-z", "gzip", "-X", "acks=all",
                                 "-d", "msg"],
                         input=lines, capture_output=True, timeout=TIMEOUT_S * 2)
    assert res.returncode == 0, res.stderr.decode()
    # librdkafka before 2.11.1 silently stops compressing if Produce v0 is not advertised.
    assert b"not compressing" not in res.stderr, res.stderr.decode()
    sets = [line for line in res.stderr.splitlines() if b"Produce MessageSet" in line]
    assert sets and all(line.endswith(b"gzip)") for line in sets), res.stderr.decode()
    res = subprocess.run(base + ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%o %k=%s\n"],
                         capture_output=True, timeout=TIMEOUT_S * 2)
    assert res.returncode == 0, res.stderr.decode()
    want = [b"%d key-%d=value-%d" % (i, i, i) for i in range(MESSAGES)]
    assert res.stdout.splitlines() == want, res.stdout
    res = subprocess.run(base + ["-L", "-t", topic], capture_output=True, timeout=TIMEOUT_S * 2)
    assert res.returncode == 0 and b'topic "e2e-kcat" with 1 partitions' in res.stdout, res.stdout


SCENARIOS = {
    "librdkafka-none": lambda b: rdkafka_roundtrip(b, "none"),
    "librdkafka-gzip": lambda b: rdkafka_roundtrip(b, "gzip"),
    "librdkafka-snappy": lambda b: rdkafka_roundtrip(b, "snappy"),
    "librdkafka-lz4": lambda b: rdkafka_roundtrip(b, "lz4"),
    "librdkafka-zstd": lambda b: rdkafka_roundtrip(b, "zstd"),
    "librdkafka-admin": rdkafka_admin,
    "kafka-python-default": lambda b: kafka_python_roundtrip(b, True),
    "kafka-python-no-idempotence": lambda b: kafka_python_roundtrip(b, False),
    "aiokafka": aiokafka_roundtrip,
    "kcat": kcat_roundtrip,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spate", default=os.path.join(ROOT, "target", "debug", "spate"))
    ap.add_argument("only", nargs="*")
    args = ap.parse_args()
    failed = []
    with Spate(args.spate) as broker:
        for name, fn in SCENARIOS.items():
            if args.only and not any(name.startswith(p) for p in args.only):
                continue
            started = time.time()
            try:
                fn(broker.bootstrap)
                print("PASS %-20s %.1fs" % (name, time.time() - started), flush=True)
            except Exception as e:  # report every scenario
                failed.append(name)
                print("FAIL %-20s %r" % (name, e), flush=True)
        alive = broker.proc.poll() is None
    if not alive:
        failed.append("broker-exited")
        print("FAIL broker exited during the run (log: %s)" % broker.log.name)
    if failed:
        sys.exit("failed: %s" % ", ".join(failed))


if __name__ == "__main__":
    main()
