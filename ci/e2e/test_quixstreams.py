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
changelog, committed offsets) changes a count.

The same application with processing_guarantee="exactly-once" (transactions on a single
broker) is killed with SIGKILL while a checkpoint's transaction is open, with records of it in
the log, and restarted with its state dir as the kill left it. Each closed window must still be
emitted once with its exact count: the killed transaction's repartitioned clicks, changelog
updates and window outputs are aborted, and the restart redoes them from the offsets committed
in the last committed transaction."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

import ck
from conftest import E2E_METRICS, REPO_ROOT
from records import Deadline

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


def app_command(bootstrap: str, input_topic: str, output_topic: str, state_dir: Path, *extra: str) -> list[str]:
    return [str(QUIX_PYTHON), str(APP), bootstrap, input_topic, output_topic, str(state_dir), str(IDLE_TIMEOUT_S), *extra]


def run_app(bootstrap: str, input_topic: str, output_topic: str, state_dir: Path, log: Path, *extra: str) -> None:
    with log.open("a") as out:
        proc = subprocess.run(
            app_command(bootstrap, input_topic, output_topic, state_dir, *extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=APP_TIMEOUT_S,
        )
    assert proc.returncode == 0, f"quixstreams app exited {proc.returncode}; log:\n{log.read_text()[-6000:]}"


def read_output(bootstrap: str, topic: str) -> list[dict]:
    c = ck.consumer(bootstrap, isolation_level="read_committed")
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


# The exactly-once run: windows of clicks produced before the app starts, and work per click so
# that processing them takes several checkpoints (commit_interval 1 s) and a kill lands inside
# one.
EOS_WINDOWS = 6
EOS_PER_CLICK_MS = 4
EOS_KILL_AFTER_S = (0.5, 2.0)
# Kills tried until one lands while a checkpoint's transaction holds records: the probe that
# times the kill sees the log ~60 ms late, and the transaction may have committed meanwhile.
EOS_KILLS_MAX = 3


def count_records(bootstrap: str, topic: str, isolation_level: str, quiet_s: float = 1.5) -> int:
    """Records of `topic` a consumer at `isolation_level` reads from the beginning until
    nothing more arrives for `quiet_s`. (Fetch, not ListOffsets: Spate's ListOffsets answers
    the high watermark at both isolation levels; see test_transactions.py.)"""
    c = ck.consumer(bootstrap, isolation_level=isolation_level)
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, -2) for p in parts])
        count = 0
        quiet = Deadline(quiet_s)
        while not quiet.expired():
            msgs = c.consume(num_messages=10_000, timeout=0.2)
            for m in msgs:
                assert m.error() is None, m.error()
            if msgs:
                count += len(msgs)
                quiet = Deadline(quiet_s)
        return count
    finally:
        c.close()


def topics_named(bootstrap: str, prefix: str) -> list[str]:
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return sorted(t for t in topics if t.startswith(prefix))


class OpenTransactionProbe:
    """A read_committed consumer of the repartition topic whose statistics (every 50 ms) show,
    per partition, the high watermark and the last stable offset from its Fetch answers: a
    difference means a transaction is open with records in the log."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.held: dict[str, int] = {}
        self.growing = False
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "quix-eos-probe", "enable.auto.commit": False,
            "isolation.level": "read_committed", "statistics.interval.ms": 50, "stats_cb": self._on_stats,
            # The offsets come from Fetch answers: a long poll would make them up to 500 ms old.
            "fetch.wait.max.ms": 10,
        })
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])

    def _on_stats(self, raw: str) -> None:
        before = sum(self.held.values())
        parts = json.loads(raw)["topics"].get(self.topic, {}).get("partitions", {})
        for p, v in parts.items():
            if p != "-1" and v["ls_offset"] >= 0:
                self.held[p] = v["hi_offset"] - v["ls_offset"]
        self.growing = sum(self.held.values()) > before

    def holding(self) -> bool:
        """A transaction holds records, more than at the previous statistics: it is still
        writing, not committing (which is when a kill would come too late)."""
        self.consumer.consume(num_messages=10_000, timeout=0.02)
        return self.growing and sum(self.held.values()) > 0

    def close(self) -> None:
        self.consumer.close()


def kill_mid_checkpoint(bootstrap: str, command: list[str], log: Path, rng: random.Random) -> int:
    """Starts the app and kills it with SIGKILL at the first moment, after a random delay from
    its first open transaction, that the probe sees a transaction still writing repartitioned
    clicks.
    Returns how many the transaction it left open holds (read_uncommitted minus read_committed
    readers, which stop at the open transaction); the probe's view may be ~60 ms old."""
    with log.open("a") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    probe = None
    try:
        deadline = Deadline(60)

        def alive() -> None:
            assert proc.poll() is None, f"app exited {proc.returncode}:\n{log.read_text()[-6000:]}"
            assert not deadline.expired(), f"no transaction with records in 60 s:\n{log.read_text()[-6000:]}"

        while not topics_named(bootstrap, "repartition__"):
            alive()
            time.sleep(0.1)
        [repartition] = topics_named(bootstrap, "repartition__")
        probe = OpenTransactionProbe(bootstrap, repartition)
        while not probe.holding():
            alive()
        not_before = Deadline(rng.uniform(*EOS_KILL_AFTER_S))
        while not (not_before.expired() and probe.holding()):
            alive()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if probe is not None:
            probe.close()
    assert proc.returncode == -signal.SIGKILL
    return (count_records(bootstrap, repartition, "read_uncommitted")
            - count_records(bootstrap, repartition, "read_committed"))


def test_quixstreams_exactly_once_windowed_count_is_exact_across_a_kill9(start_broker, tmp_path):
    if not QUIX_PYTHON.is_file():
        pytest.fail(f"{QUIX_PYTHON} missing: ci/e2e.sh creates .venv-quix from ci/e2e/requirements-quix.txt")
    broker = start_broker(cores=2)
    bootstrap = broker.bootstrap
    input_topic, output_topic = "clicks-eos", "click-counts-eos"
    ck.create_topic(bootstrap, input_topic, partitions=INPUT_PARTITIONS)
    ck.create_topic(bootstrap, output_topic, partitions=1)
    now_ms = int(time.time() * 1000)
    base_ms = now_ms - now_ms % WINDOW_MS - 3_600_000
    times = [base_ms + w * WINDOW_MS + (i * WINDOW_MS) // CLICKS_PER_WINDOW
             for w in range(EOS_WINDOWS) for i in range(CLICKS_PER_WINDOW)]
    sent = produce_clicks(bootstrap, input_topic, times, 0)
    state_dir = tmp_path / "quix-state"
    log = tmp_path / "quix-app.log"
    command = app_command(bootstrap, input_topic, output_topic, state_dir, "exactly-once", str(EOS_PER_CLICK_MS))

    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    # Per kill, the repartitioned clicks of the transaction it left open.
    kills: list[int] = []
    while not kills or not kills[-1]:
        assert len(kills) < EOS_KILLS_MAX, (
            f"none of {len(kills)} kills landed in a transaction holding records (seed {seed})")
        kills.append(kill_mid_checkpoint(bootstrap, command, log, rng))
    repartition = topics_named(bootstrap, "repartition__")
    assert len(repartition) == 1, repartition

    run_app(bootstrap, input_topic, output_topic, state_dir, log, "exactly-once", str(EOS_PER_CLICK_MS))

    output = read_output(bootstrap, output_topic)
    got: Counter = Counter()
    for o in output:
        key = (o["user"], o["start"])
        assert key not in got, f"window {key} emitted twice (seed {seed}): {output}"
        got[key] = o["count"]
    want = expected_counts(sent, base_ms + (EOS_WINDOWS - 1) * WINDOW_MS)
    assert len(want) == USERS * (EOS_WINDOWS - 1)
    assert got == want, f"seed {seed}"
    # The killed transactions were aborted and their clicks redone: read_committed readers of the
    # repartition topic see each click once, read_uncommitted ones the aborted copies too.
    assert count_records(bootstrap, repartition[0], "read_committed") == len(sent)
    everything = count_records(bootstrap, repartition[0], "read_uncommitted")
    held = sum(kills)
    assert everything >= len(sent) + held, f"{everything} repartitioned, {len(sent)} clicks, {kills} held"
    E2E_METRICS.append(f"quixstreams exactly-once: clicks held by the open transaction at each kill {kills} "
                       f"(seed {seed}); {everything} repartitioned in all for {len(sent)} clicks")
