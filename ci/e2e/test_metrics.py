"""The admin listener, seen by Debian's real Prometheus server: Prometheus scrapes the broker's
/metrics every second, and PromQL through its HTTP API sees exactly the records a real
producer sent, the partitions' high watermarks, a consumer group's lag and request-time
histograms; /health and /ready answer 200; bad requests get their status, never a crash.

Prometheus must be installed (ci/e2e.sh installs Debian's `prometheus`): without it the test
fails, it does not skip."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

import ck
from conftest import Broker, free_port

TOPIC = "metrics"
PARTITIONS = 3
RECORDS = 3_000
GROUP = "metrics-e2e"
COMMITTED = 100  # the group's committed offset on partition 0
PROMETHEUS_START_TIMEOUT_S = 30.0
QUERY_TIMEOUT_S = 45.0


def http_get(address: str, path: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://address/path; non-200 answers included."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def raw_request(address: str, data: bytes) -> bytes:
    """Sends bytes as they are and returns everything the listener answers before closing."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class Prometheus:
    """Debian's prometheus, scraping its targets every second, with its data in a tmp dir."""

    def __init__(self, tmp: Path, target: str | list[str]):
        targets = [target] if isinstance(target, str) else target
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("the `prometheus` binary is not installed (apt-get install prometheus; "
                        "ci/e2e.sh does it)", pytrace=False)
        self.address = f"127.0.0.1:{free_port()}"
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            "  - job_name: spate\n"
            f"    static_configs:\n      - targets: {targets!r}\n"
        )
        self.log_path = tmp / "prometheus.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'prometheus-data'}",
             f"--web.listen-address={self.address}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + PROMETHEUS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited\n{self.log_tail()}"
            try:
                if http_get(self.address, "/-/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {PROMETHEUS_START_TIMEOUT_S}s\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def query(self, promql: str) -> list[dict]:
        status, _, body = http_get(self.address, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert status == 200, (promql, status, body)
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def wait_for(self, promql: str, want: float) -> None:
        """Polls `promql` (one series) until its value is `want`."""
        deadline = time.monotonic() + QUERY_TIMEOUT_S
        seen = None
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                seen = float(result[0]["value"][1])
                if seen == want:
                    return
            time.sleep(0.5)
        targets = http_get(self.address, "/api/v1/targets")[2]
        raise AssertionError(f"{promql} was {seen}, not {want}, after {QUERY_TIMEOUT_S}s\n"
                             f"targets: {targets}\n{self.log_tail()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path):
    started: list[Prometheus] = []

    def start(target: str | list[str]) -> Prometheus:
        started.append(Prometheus(tmp_path, target))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def commit(bootstrap: str, offsets: list[TopicPartition]) -> None:
    """Commits offsets for GROUP without joining it (a standalone consumer's commit)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    try:
        c.commit(offsets=offsets, asynchronous=False)
    finally:
        c.close()


def test_prometheus_scrapes_what_a_producer_sent(start_broker, prometheus_for):
    broker = start_broker(cores=2)
    admin = broker.admin_address

    assert http_get(admin, "/health") == (200, "text/plain; charset=utf-8", "ok\n")
    assert http_get(admin, "/ready")[:1] == (200,)

    ck.create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    p = ck.producer(broker.bootstrap, acks="all")
    acked = ck.produce_range(p, TOPIC, TOPIC, range(RECORDS), partitions=PARTITIONS)
    assert len(acked) == RECORDS
    watermarks = ck.high_watermarks(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    assert sum(high for _, high in watermarks) == RECORDS, watermarks
    reads = ck.consume_all(broker.bootstrap, TOPIC, RECORDS, partitions=PARTITIONS)
    assert len(reads) == RECORDS
    commit(broker.bootstrap, [TopicPartition(TOPIC, 0, COMMITTED)])

    prom = prometheus_for(admin)
    prom.wait_for('up{job="spate"}', 1)
    prom.wait_for(f'sum(spate_partition_produced_records_total{{topic="{TOPIC}"}})', RECORDS)
    prom.wait_for(f'count(spate_partition_produced_records_total{{topic="{TOPIC}"}})', PARTITIONS)
    prom.wait_for(f'sum(spate_partition_high_watermark{{topic="{TOPIC}"}})', RECORDS)
    prom.wait_for(f'sum(spate_partition_log_end_offset{{topic="{TOPIC}"}})', RECORDS)
    # The consumer read every record (whole batches, so exactly the records produced).
    prom.wait_for(f'sum(spate_partition_fetched_records_total{{topic="{TOPIC}"}})', RECORDS)
    lag = watermarks[0][1] - COMMITTED
    prom.wait_for(
        f'spate_consumer_group_lag{{group="{GROUP}",topic="{TOPIC}",partition="0"}}', lag)
    prom.wait_for(
        f'spate_consumer_group_committed_offset{{group="{GROUP}",topic="{TOPIC}",partition="0"}}',
        COMMITTED)
    prom.wait_for("spate_ready", 1)

    # Request times are a real histogram: buckets Prometheus can take quantiles of, and a
    # count that covers at least the producer's requests.
    produce_count = prom.query('spate_request_duration_seconds_count{api="Produce"}')
    assert produce_count and float(produce_count[0]["value"][1]) >= 1, produce_count
    p99 = prom.query('histogram_quantile(0.99, spate_request_duration_seconds_bucket{api="Produce"})')
    assert p99 and 0 < float(p99[0]["value"][1]) <= 30, p99
    size = prom.query(f'sum(spate_partition_size_bytes{{topic="{TOPIC}"}})')
    assert size and float(size[0]["value"][1]) > 0, size
    busy = prom.query("spate_executor_busy_seconds_total")
    assert sorted(s["metric"]["core"] for s in busy) == ["0", "1"], busy
    fsyncs = prom.query("spate_fsync_duration_seconds_count")
    assert fsyncs and float(fsyncs[0]["value"][1]) >= 1, fsyncs  # acks=all waited for them
    connections = prom.query("spate_connections_accepted_total")
    assert connections and float(connections[0]["value"][1]) >= 1, connections
    # Each core's write-buffer budget and what its partitions hold (none once idle, at most
    # the budget plus the minimum buffers of partitions that had none).
    budgets = prom.query("spate_write_buffer_budget_bytes")
    assert sorted(s["metric"]["core"] for s in budgets) == ["0", "1"], budgets
    assert all(float(s["value"][1]) >= 12 << 20 for s in budgets), budgets
    held = prom.query("spate_write_buffer_bytes")
    assert sorted(s["metric"]["core"] for s in held) == ["0", "1"], held
    caches = prom.query("spate_tail_cache_budget_bytes")
    assert all(float(s["value"][1]) * 4 == float(b["value"][1])
               for s, b in zip(sorted(caches, key=lambda s: s["metric"]["core"]),
                               sorted(budgets, key=lambda s: s["metric"]["core"]))), caches

    # The exposition itself: one TYPE per family, the content type Prometheus asks for.
    status, content_type, text = http_get(admin, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), content_type
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families)), families


def test_group_lag_across_brokers_from_the_documented_promql(start_broker, prometheus_for):
    """In a cluster a group's coordinator may not hold the partitions it commits offsets for,
    so neither broker exports that group's lag (docs/METRICS.md, "Not yet"); the documented
    PromQL recipe joins the coordinator's committed offsets with the leaders' high watermarks.
    Three brokers, one partition on each (so at least two are away from the coordinator), one
    Prometheus scraping all three: the recipe gives each partition's lag exactly."""
    from confluent_kafka.admin import AdminClient, NewTopic

    import test_cluster

    brokers = test_cluster.start_cluster(start_broker)
    bootstrap = ",".join(b.bootstrap for b in brokers)
    topic = "lag-across"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics(
        [NewTopic(topic, 3, replica_assignment=[[1], [2], [3]])]
    )[topic].result(timeout=30)
    per_partition = 400
    p = ck.producer(bootstrap, acks="all")
    acked = ck.produce_range(p, topic, topic, range(per_partition * 3), partitions=3)
    assert len(acked) == per_partition * 3
    watermarks = {i: high for i, (_, high) in enumerate(ck.high_watermarks(bootstrap, topic, 3))}
    assert all(high >= 399 for high in watermarks.values()), watermarks
    committed = {0: 10, 1: 150, 2: 399}
    commit(bootstrap, [TopicPartition(topic, i, o) for i, o in committed.items()])

    prom = prometheus_for([b.admin_address for b in brokers])
    prom.wait_for('count(up{job="spate"} == 1)', 3)
    recipe = ("max by (topic, partition) (spate_partition_high_watermark) "
              "- on (topic, partition) group_right "
              "max by (group, topic, partition) (spate_consumer_group_committed_offset)")
    want = {str(i): float(watermarks[i] - offset) for i, offset in committed.items()}
    deadline = time.monotonic() + QUERY_TIMEOUT_S
    seen = None
    while seen != want:
        assert time.monotonic() < deadline, f"{recipe}: {seen}, not {want}"
        time.sleep(0.5)
        seen = {r["metric"]["partition"]: float(r["value"][1]) for r in prom.query(recipe)
                if r["metric"].get("group") == GROUP and r["metric"].get("topic") == topic}
    # The local-only gauge covers at most the one partition its coordinator also holds.
    local = prom.query(f'spate_consumer_group_lag{{group="{GROUP}",topic="{topic}"}}')
    assert len(local) <= 1, local


def test_admin_listener_refuses_bad_requests_and_keeps_serving(start_broker):
    broker = start_broker(cores=1)
    admin = broker.admin_address
    assert http_get(admin, "/nope")[0] == 404
    assert raw_request(admin, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert raw_request(admin, b"GET /metrics SPDY/3\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_request(admin, b"\x00\xff" * 5000).startswith(b"HTTP/1.1 431 ")
    head = raw_request(admin, b"HEAD /health HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n"), head
    # A client that never finishes its head is cut off, not waited for forever.
    with socket.create_connection(("127.0.0.1", broker.admin_port), timeout=15) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 408 ")
    assert http_get(admin, "/health")[0] == 200


def test_a_second_broker_on_the_same_admin_port_refuses_to_start(start_broker, tmp_path):
    first = start_broker(cores=1)
    second = Broker("clash", tmp_path, 1, ["--admin-listen", first.admin_address])
    try:
        second.start()
    except AssertionError as e:
        assert "admin-listen" in str(e) and "not available" in str(e), str(e)
    else:
        second.stop()
        raise AssertionError("a second broker started on a taken admin port")
    finally:
        shutil.rmtree(second.data_dir, ignore_errors=True)
    assert http_get(first.admin_address, "/health")[0] == 200


READY_REASONS = ("joining the cluster", "not registered with the controller yet",
                 "recovering partitions")


def test_cluster_brokers_are_ready_once_registered(start_broker):
    """In a cluster /ready waits for the broker's registration; each broker has its own admin
    port, and every one of three voters turns ready (503 before, with a known reason)."""
    cluster_ports = [free_port() for _ in range(3)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(cluster_ports))
    brokers = [
        start_broker(cores=1, name=f"node{i + 1}", args=[
            "--node-id", str(i + 1), "--cluster-listen", f"127.0.0.1:{port}",
            "--controller-voters", voters])
        for i, port in enumerate(cluster_ports)
    ]
    assert len({b.admin_port for b in brokers}) == 3
    for b in brokers:
        deadline = time.monotonic() + 30
        while True:
            status, _, body = http_get(b.admin_address, "/ready")
            if status == 200:
                break
            assert status == 503 and body.startswith("not ready: "), (status, body)
            assert body[len("not ready: "):].strip() in READY_REASONS, body
            assert time.monotonic() < deadline, f"{b.name} not ready after 30 s: {body}"
            time.sleep(0.2)
        _, _, text = http_get(b.admin_address, "/metrics")
        assert "\nspate_ready 1\n" in text

    # The metadata quorum as each broker sees it: one leader everyone agrees on, and only it
    # reports the commit index and each voter's lag, which reaches 0 once all caught up.
    def samples(b: Broker) -> dict[str, float]:
        _, _, text = http_get(b.admin_address, "/metrics")
        out = {}
        for line in text.splitlines():
            if line.startswith("spate_metadata_"):
                series, value = line.rsplit(" ", 1)
                out[series] = float(value)
        return out

    deadline = time.monotonic() + 30
    while True:
        seen = {b.name: samples(b) for b in brokers}
        leaders = {s.get("spate_metadata_quorum_leader") for s in seen.values()}
        leading = [name for name, s in seen.items() if "spate_metadata_committed_offset" in s]
        lags = [v for s in seen.values() for k, v in s.items() if k.startswith("spate_metadata_replica_lag{")]
        settled = len(leaders) == 1 and len(leading) == 1 and len(lags) == 3 and max(lags) == 0
        if settled:
            break
        assert time.monotonic() < deadline, f"quorum metrics did not settle in 30 s: {seen}"
        time.sleep(0.2)
    (leader,) = leaders
    assert leading == [f"node{int(leader)}"], (leading, leader)
    for name, s in seen.items():
        assert s["spate_metadata_quorum_voter"] == 1, (name, s)
        assert s["spate_metadata_applied_offset"] > 0, (name, s)
    lead = seen[leading[0]]
    assert lead["spate_metadata_committed_offset"] > 0
    for node in (1, 2, 3):
        assert lead[f'spate_metadata_replica_lag{{node="{node}",role="voter"}}'] == 0, lead


def test_ready_is_503_until_a_cluster_broker_can_register(start_broker):
    """A cluster broker whose controller quorum cannot form (one of three voters running) serves
    Kafka clients' port and /health but answers /ready 503 with a documented reason for as
    long as it cannot register (here 3 s, sampled), and 200 once a second voter starts, a
    quorum elects a controller and it registers."""
    cluster_ports = [free_port() for _ in range(3)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(cluster_ports))

    def node(i: int) -> Broker:
        return start_broker(cores=1, name=f"node{i + 1}", args=[
            "--node-id", str(i + 1), "--cluster-listen", f"127.0.0.1:{cluster_ports[i]}",
            "--controller-voters", voters])

    first = node(0)
    assert http_get(first.admin_address, "/health")[0] == 200
    not_ready = []
    until = time.monotonic() + 3
    while time.monotonic() < until:
        status, content_type, body = http_get(first.admin_address, "/ready")
        assert (status, content_type) == (503, "text/plain; charset=utf-8"), (status, body)
        assert body.startswith("not ready: ") and body.endswith("\n"), body
        assert body[len("not ready: "):-1] in READY_REASONS, body
        not_ready.append(body)
        time.sleep(0.1)
    assert len(not_ready) >= 10, not_ready
    _, _, text = http_get(first.admin_address, "/metrics")
    assert "\nspate_ready 0\n" in text

    node(1)
    deadline = time.monotonic() + 30
    while (status := http_get(first.admin_address, "/ready"))[0] != 200:
        assert status[0] == 503 and status[2][len("not ready: "):-1] in READY_REASONS, status
        assert time.monotonic() < deadline, f"not ready 30 s after a quorum could form: {status}"
        time.sleep(0.2)
    assert status == (200, "text/plain; charset=utf-8", "ready\n")
    _, _, text = http_get(first.admin_address, "/metrics")
    assert "\nspate_ready 1\n" in text
