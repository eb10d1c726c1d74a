"""Exactly-once consume-transform-produce on one broker across kill -9 of the application.

eos_app.py (confluent-kafka, a separate process) reads an input topic as a read_committed
group member, writes one output per input inside a transaction and commits the input offsets in
the same transaction (send_offsets_to_transaction) every 50 records. The test kills it with
SIGKILL at random moments and restarts it, until at least three kills landed while a
transaction was open with some of its outputs already acknowledged (the app's last progress
line says so), then lets it finish. Checked:
- a read_committed consumer of the output sees every input exactly once, in each partition in
  input order: no duplicate from the redone batches, no gap;
- the killed transactions' outputs are in the log (a read_uncommitted consumer sees at least as
  many extra records as the killed transactions had acknowledged) and read_committed never
  returns them;
- the group's committed offsets are the ends of the input partitions.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from confluent_kafka import TopicPartition

import ck
from conftest import E2E_METRICS
from records import Deadline

APP = Path(__file__).resolve().parent / "eos_app.py"
PARTITIONS = 3
INPUTS = 3000
BATCH = 50
PER_RECORD_MS = 2
IDLE_S = 3
MID_TXN_KILLS_MIN = 3
KILLS_MAX = 8
# A kill lands this long after the restarted app began its first transaction.
KILL_AFTER_S = (0.2, 1.0)
SRC, DST, GROUP, TXN_ID = "eos-in", "eos-out", "eos-group", "eos-app"


def start_app(bootstrap: str, log: Path, per_record_ms: int = PER_RECORD_MS) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, str(APP), bootstrap, SRC, DST, GROUP, TXN_ID, str(BATCH),
             str(per_record_ms), str(IDLE_S)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def progress(log: Path) -> list[str]:
    """The app's own lines (librdkafka's log lines, `%...`, share its output)."""
    return [line for line in log.read_text(errors="replace").splitlines()
            if not line.startswith("%")]


def wait_for_first_transaction(proc: subprocess.Popen, log: Path) -> None:
    deadline = Deadline(30)
    while not any(line.startswith("BEGIN ") for line in progress(log)):
        assert proc.poll() is None, f"app exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert not deadline.expired(), f"app began no transaction in 30 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)


def input_value(j: int) -> bytes:
    return b"in-%05d" % j


def assert_each_input_once(bootstrap: str, context: str) -> None:
    """A read_committed consumer of the output sees each input's output exactly once, in input
    order per partition."""
    committed = ck.consume_all(bootstrap, DST, INPUTS, partitions=PARTITIONS, settle_s=2.0,
                               isolation_level="read_committed")
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for r in sorted(committed, key=lambda r: (r.partition, r.offset)):
        by_partition[r.partition].append(r.value)
    for part in range(PARTITIONS):
        want = [b"out:" + input_value(j) for j in range(part, INPUTS, PARTITIONS)]
        got = by_partition[part]
        dups = len(got) - len(set(got))
        assert got == want, (f"partition {part}: {len(got)} outputs ({dups} duplicated), "
                             f"{len(want)} inputs; {context}")


def test_killed_consume_transform_produce_app_outputs_each_input_exactly_once(broker, tmp_path):
    ck.create_topic(broker.bootstrap, SRC, partitions=PARTITIONS)
    ck.create_topic(broker.bootstrap, DST, partitions=PARTITIONS)
    p = ck.producer(broker.bootstrap)
    for j in range(INPUTS):
        p.produce(SRC, key=b"k%d" % j, value=input_value(j), partition=j % PARTITIONS)
    assert p.flush(30) == 0

    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    # The app's last progress line at each kill.
    kills: list[str] = []
    acknowledged_then_killed: list[int] = []
    run = 0
    while len(acknowledged_then_killed) < MID_TXN_KILLS_MIN and len(kills) < KILLS_MAX:
        run += 1
        log = tmp_path / f"eos-app-{run}.log"
        proc = start_app(broker.bootstrap, log)
        wait_for_first_transaction(proc, log)
        time.sleep(rng.uniform(*KILL_AFTER_S))
        assert proc.poll() is None, (
            f"run {run} ended before its kill (seed {seed}):\n{log.read_text()[-3000:]}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        last = progress(log)[-1]
        kills.append(last)
        # FLUSHED is printed after the outputs were acknowledged and before COMMITTING: the
        # transaction was open, never asked to commit, with that many records in the log.
        if last.startswith("FLUSHED "):
            acknowledged_then_killed.append(int(last.split()[2]))
    assert len(acknowledged_then_killed) >= MID_TXN_KILLS_MIN, (
        f"only {len(acknowledged_then_killed)} of {len(kills)} kills landed mid-transaction "
        f"(seed {seed}): {kills}")

    run += 1
    log = tmp_path / f"eos-app-{run}.log"
    proc = start_app(broker.bootstrap, log)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert progress(log)[-1] == "DONE"

    assert_each_input_once(broker.bootstrap, f"kills {kills} (seed {seed})")

    everything = ck.consume_all(broker.bootstrap, DST, INPUTS + sum(acknowledged_then_killed),
                                partitions=PARTITIONS, settle_s=1.0,
                                isolation_level="read_uncommitted")
    aborted = len(everything) - INPUTS
    assert aborted >= sum(acknowledged_then_killed), (
        f"{aborted} records beyond the inputs in the log; the killed transactions had "
        f"{acknowledged_then_killed} acknowledged")

    E2E_METRICS.append(
        f"eos app: {len(kills)} kills, {len(acknowledged_then_killed)} mid-transaction with "
        f"{acknowledged_then_killed} outputs acknowledged, {aborted} aborted outputs in the log "
        f"(seed {seed}); last lines at the kills: {kills}")

    c = ck.consumer(broker.bootstrap, group_id=GROUP)
    try:
        offsets = c.committed([TopicPartition(SRC, q) for q in range(PARTITIONS)], timeout=10)
    finally:
        c.close()
    assert [tp.offset for tp in offsets] == [INPUTS // PARTITIONS] * PARTITIONS


def test_app_in_a_cluster_outputs_each_input_exactly_once_through_broker_kills(start_broker,
                                                                               tmp_path):
    """The same app on a cluster of three (topics of replication factor 3): kill -9 of the
    broker coordinating its transactional id while it runs, then of the broker leading its
    group's offsets partition, each restarted after a while; the app itself is restarted
    whenever it dies (it has no error handling, so a failover error ends it like a kill).
    Every input comes out exactly once under read_committed, and the group's offsets end at
    the inputs' ends."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from test_cluster import leaders, start_cluster
    from test_transactions_cluster import coordinator_node, java_partition

    brokers = start_cluster(start_broker)
    bootstrap = ",".join(b.bootstrap for b in brokers)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for topic in (SRC, DST):
        new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=3,
                       config={"min.insync.replicas": "2"})
        admin.create_topics([new])[topic].result(timeout=15)
    p = ck.producer(bootstrap, acks="all")
    for j in range(INPUTS):
        p.produce(SRC, key=b"k%d" % j, value=input_value(j), partition=j % PARTITIONS)
    assert p.flush(30) == 0
    by_node = {int(b.name.removeprefix("node")): b for b in brokers}

    run = 0
    ended: list[str] = []
    victims: list[str] = []

    def start() -> tuple[subprocess.Popen, Path]:
        nonlocal run
        run += 1
        log = tmp_path / f"eos-app-{run}.log"
        # Slower per record than on one broker, so both kills land while it works.
        return start_app(bootstrap, log, per_record_ms=6), log

    proc, log = start()
    wait_for_first_transaction(proc, log)
    for kind in ("transaction coordinator", "group coordinator"):
        alive = next(b for b in brokers if b.running())
        if kind == "transaction coordinator":
            node = coordinator_node(alive.bootstrap, TXN_ID)
        else:
            node = leaders(alive.bootstrap, "__consumer_offsets")[java_partition(GROUP, 50)]
        time.sleep(0.5)
        by_node[node].kill9()
        victims.append(f"{kind} node{node}")
        deadline = Deadline(8)
        while not deadline.expired():
            finished = proc.poll() == 0 and progress(log)[-1:] == ["DONE"]
            if proc.poll() is not None and not finished:
                ended.append(f"run {run} exited {proc.returncode}: {progress(log)[-1:]}")
                proc, log = start()
            time.sleep(0.2)
        by_node[node].restart()
        time.sleep(3)
    deadline = Deadline(120)
    while True:
        try:
            code = proc.wait(timeout=max(1.0, deadline.end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"the app did not finish in time: {progress(log)[-5:]}; "
                                 f"earlier runs ended: {ended}")
        if code == 0 and progress(log)[-1] == "DONE":
            break
        ended.append(f"run {run} exited {code}: {progress(log)[-1:]}")
        assert not deadline.expired(), f"the app never finished: {ended}"
        proc, log = start()

    assert_each_input_once(bootstrap, f"killed {victims}; app runs ended: {ended}")
    c = ck.consumer(bootstrap, group_id=GROUP)
    try:
        offsets = c.committed([TopicPartition(SRC, q) for q in range(PARTITIONS)], timeout=10)
    finally:
        c.close()
    assert [tp.offset for tp in offsets] == [INPUTS // PARTITIONS] * PARTITIONS
    E2E_METRICS.append(f"eos app in a cluster: killed {victims}; app runs ended early: {ended}")
