"""quixstreams (PyPI), unmodified, runs a repartition and a windowed count on Spate exactly.

The application (quix_app.py, in its own venv) regroups clicks keyed by device into clicks
keyed by user (`group_by`: a repartition topic it creates), counts them in 10 s tumbling
windows (a RocksDB store whose changelog topic it creates compacted) and writes each closed
window's count. The clicks carry event timestamps chosen by the test, so the expected output is
known exactly.

It runs twice. The first run stops (gracefully, idle) with the last window of every user
still open, its partial count only in the store and the changelog. The store's directory is
then deleted, as when an application moves to a fresh machine, so the second run must rebuild
it from the changelog on Spate (read from the start of a compacted topic) before the rest of
that window arrives. Any record lost or counted twice anywhere (input, repartition topic,
changelog, committed offsets) changes a count."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

import ck
from conftest import REPO_ROOT

QUIX_PYTHON = REPO_ROOT / ".venv-quix" / "bin" / "python"
APP = Path(__file__).resolve().parent / "quix_app.py"
WINDOW_MS = 10_000
USERS = 7
# Windows of clicks per run; the last window of the first run continues in the second.
WINDOWS_FIRST = 4
WINDOWS_SECOND = 3
CLICKS_PER_WINDOW = 200
INPUT_PARTITIONS = 3
IDLE_TIMEOUT_S = 8
APP_TIMEOUT_S = 120


def click_times(first_window: int, windows: int, base_ms: int, part: str) -> list[int]:
    """Event times of the clicks of `windows` windows; in the window split across the two runs
    only the first ("head") or second ("tail") half of its clicks."""
    times = []
    for w in range(first_window, first_window + windows):
        for i in range(CLICKS_PER_WINDOW):
            split = w == WINDOWS_FIRST - 1
            if split and part == "head" and i >= CLICKS_PER_WINDOW // 2:
                continue
            if split and part == "tail" and i < CLICKS_PER_WINDOW // 2:
                continue
            times.append(base_ms + w * WINDOW_MS + (i * WINDOW_MS) // CLICKS_PER_WINDOW)
    return times


def produce_clicks(bootstrap: str, topic: str, times: list[int], seq0: int) -> list[tuple[str, int]]:
    p = ck.producer(bootstrap, acks="all", enable_idempotence=True)
    sent = []
    for n, ts in enumerate(times):
        seq = seq0 + n
        user = f"u{seq % USERS}"
        # Keyed by a device of the user: one user's clicks stay in one input partition in time
        # order. Keyed by anything finer, a user's clicks would reach the window out of order
        # and late ones would be dropped, by design, on any broker.
        device = f"phone-of-{user}"
        p.produce(topic, key=device, value=json.dumps({"user": user, "seq": seq}), timestamp=ts)
        sent.append((user, ts))
    assert p.flush(60) == 0
    return sent


def run_app(bootstrap: str, input_topic: str, output_topic: str, state_dir: Path, log: Path) -> None:
    with log.open("a") as out:
        proc = subprocess.run(
            [str(QUIX_PYTHON), str(APP), bootstrap, input_topic, output_topic, str(state_dir), str(IDLE_TIMEOUT_S)],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=APP_TIMEOUT_S,
        )
    assert proc.returncode == 0, f"quixstreams app exited {proc.returncode}; log:\n{log.read_text()[-6000:]}"


def read_output(bootstrap: str, topic: str) -> list[dict]:
    c = ck.consumer(bootstrap)
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, -2) for p in parts])
        out = []
        idle = 0
        while idle < 3:
            m = c.poll(1)
            if m is None:
                idle += 1
                continue
            assert m.error() is None, m.error()
            out.append(json.loads(m.value()))
            idle = 0
        return out
    finally:
        c.close()


def expected_counts(sent: list[tuple[str, int]], closed_before_ms: int) -> Counter:
    """(user, window start) -> clicks, for windows that end at or before `closed_before_ms`."""
    counts: Counter = Counter()
    for user, ts in sent:
        start = ts - ts % WINDOW_MS
        if start + WINDOW_MS <= closed_before_ms:
            counts[(user, start)] += 1
    return counts


def test_quixstreams_repartition_and_windowed_count_are_exact_across_a_restore(start_broker, tmp_path):
    if not QUIX_PYTHON.is_file():
        pytest.fail(f"{QUIX_PYTHON} missing: ci/e2e.sh creates .venv-quix from ci/e2e/requirements-quix.txt")
    broker = start_broker(cores=2)
    bootstrap = broker.bootstrap
    input_topic, output_topic = "clicks", "click-counts"
    ck.create_topic(bootstrap, input_topic, partitions=INPUT_PARTITIONS)
    ck.create_topic(bootstrap, output_topic, partitions=1)

    # Recent event times (an hour ago), so no retention rule sees them as old.
    now_ms = int(time.time() * 1000)
    base_ms = now_ms - now_ms % WINDOW_MS - 3_600_000
    state_dir = tmp_path / "quix-state"
    log = tmp_path / "quix-app.log"

    sent = produce_clicks(bootstrap, input_topic, click_times(0, WINDOWS_FIRST, base_ms, "head"), 0)
    run_app(bootstrap, input_topic, output_topic, state_dir, log)
    first = read_output(bootstrap, output_topic)
    # Every user's last window is still open: nothing has a later click yet.
    closed_first = base_ms + (WINDOWS_FIRST - 1) * WINDOW_MS
    assert Counter({(o["user"], o["start"]): o["count"] for o in first}) == expected_counts(sent, closed_first)
    assert len(first) == USERS * (WINDOWS_FIRST - 1), first

    # The application moves to a fresh machine: its store must come back from the changelog.
    shutil.rmtree(state_dir)
    sent += produce_clicks(
        bootstrap,
        input_topic,
        click_times(WINDOWS_FIRST - 1, WINDOWS_SECOND + 1, base_ms, "tail"),
        len(sent),
    )
    run_app(bootstrap, input_topic, output_topic, state_dir, log)
    output = read_output(bootstrap, output_topic)

    closed_all = base_ms + (WINDOWS_FIRST + WINDOWS_SECOND - 1) * WINDOW_MS
    got: Counter = Counter()
    for o in output:
        key = (o["user"], o["start"])
        assert key not in got, f"window {key} emitted twice: {output}"
        assert o["end"] == o["start"] + WINDOW_MS
        got[key] = o["count"]
    want = expected_counts(sent, closed_all)
    assert len(want) == USERS * (WINDOWS_FIRST + WINDOWS_SECOND - 1)
    assert sum(want.values()) >= 1000
    assert got == want

    # What the application created on Spate: a repartition topic and a compacted changelog.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=10).topics
    repartition = [t for t in topics if t.startswith("repartition__")]
    changelogs = [t for t in topics if t.startswith("changelog__")]
    assert repartition, sorted(topics)
    assert changelogs, sorted(topics)
    for name in changelogs:
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        config = admin.describe_configs([resource])[resource].result(timeout=10)
        assert config["cleanup.policy"].value == "compact", (name, config["cleanup.policy"].value)
