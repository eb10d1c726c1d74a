"""Kafka's own Java client (org.apache.kafka:kafka-clients 4.3.0) against Spate (#21).

ci/java/SpateJavaCheck.java runs one check per JVM (from source, with the `java` launcher) and
prints a result line; this file runs each check against one broker and against a cluster of
three brokers (topics with replication factor 3 and min.insync.replicas 2), and asserts the
exit status and the counts the line reports:
- produce: an idempotent, lz4-compressed producer's 3,000 keyed records read back by a plain
  consumer, each once, at its acknowledged offset, with its key, value and header;
- transactions: 6 transactions over three partitions, even ones committed and odd ones aborted
  after their records reached the log, then a second producer with the same transactional.id
  fences the first and commits one more: read_committed reads exactly the committed values in
  send order, read_uncommitted all of them, log end = records + one marker per transaction;
- eos: consume-transform-produce of 300 inputs by a read_committed group member, a transaction
  per poll with its input offsets (sendOffsetsToTransaction with the group metadata), every third
  one aborted and redone: each output once for read_committed, the group's committed offsets at
  the input ends, and a new member resumes from them.

The jars come from ci/java/setup.sh (cached; ci/e2e.sh runs it first and installs a JDK and Maven
when missing). The test skips, with the reason, only when they cannot be had.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import E2E_METRICS, REPO_ROOT
from test_cluster import start_cluster

JAVA_DIR = REPO_ROOT / "ci" / "java"
CHECK_SOURCE = JAVA_DIR / "SpateJavaCheck.java"
RESULT_TAG = "SPATE-JAVA-CHECK"
KAFKA_CLIENTS_VERSION = "4.3.0"
# Bounds, not expectations (within the suite's 180 s per test): a cold jar resolution may
# download a 200 MB wheel (ci/e2e.sh resolves them before pytest), a check's JVM
# compiles the source first, and the machine has two cores.
SETUP_TIMEOUT_S = 170
CHECK_TIMEOUT_S = 170
OUTPUT_TAIL_LINES_MAX = 60

PARTITIONS = 3
PRODUCE_RECORDS = 3000
TXN_TRANSACTIONS = 6
TXN_RECORDS = 180
EOS_RECORDS = 300

MODES = ["produce", "transactions", "eos"]
# The eos check's group members join one at a time, alone: the first rebalance of an empty group
# need not wait (3 s by default) for members that never come. test_groups.py keeps the default.
BROKER_ARGS = ["--group-initial-rebalance-delay-ms", "0"]


@pytest.fixture(scope="module")
def java_classpath() -> str:
    """The classpath of kafka-clients and its dependencies (resolved once, then cached)."""
    if shutil.which("java") is None or shutil.which("javac") is None:
        pytest.skip("no JDK (java and javac) on PATH: bash ci/java/setup.sh installs one")
    try:
        done = subprocess.run(["bash", str(JAVA_DIR / "setup.sh"), "--no-install"],
                              capture_output=True, text=True, timeout=SETUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.skip(f"ci/java/setup.sh did not finish within {SETUP_TIMEOUT_S}s")
    if done.returncode != 0:
        pytest.skip("ci/java/setup.sh could not provide the kafka-clients jars:\n"
                    + tail(done.stderr, 15))
    classpath_file = Path(done.stdout.strip().splitlines()[-1])
    return classpath_file.read_text().strip()


def tail(text: str, lines: int = OUTPUT_TAIL_LINES_MAX) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_check(classpath: str, tmp_path: Path, mode: str, bootstrap: str, prefix: str,
              **options) -> dict[str, str]:
    """Runs one mode; returns the facts of its result line once it reported OK."""
    command = [
        "java",
        # A client run of a few seconds on two shared cores: the C1 compiler only, serial GC.
        "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
        f"-Dlog4j2.configurationFile={JAVA_DIR / 'log4j2.properties'}",
        "-cp", classpath, str(CHECK_SOURCE),
        mode, bootstrap, prefix,
        *(f"{k}={v}" for k, v in options.items()),
    ]
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise AssertionError(f"java {mode} ran over {CHECK_TIMEOUT_S}s\n--- stdout ---\n"
                             f"{tail(out)}\n--- stderr ---\n{tail(err)}") from None
    (tmp_path / f"java-{mode}.stdout").write_text(done.stdout)
    (tmp_path / f"java-{mode}.stderr").write_text(done.stderr)
    results = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG + " ")]
    report = (f"java {mode}: exit {done.returncode}\n--- stdout ---\n{tail(done.stdout)}\n"
              f"--- client log (stderr) ---\n{tail(done.stderr)}")
    assert len(results) == 1, f"expected one result line\n{report}"
    facts = dict(word.split("=", 1) for word in results[0].split()[1:])
    assert facts["mode"] == mode, report
    assert facts["result"] == "OK" and done.returncode == 0, report
    assert facts["kafka-clients"] == KAFKA_CLIENTS_VERSION, report
    assert facts["mismatches"] == "0", report
    print(results[0])
    elapsed_s = time.monotonic() - started
    E2E_METRICS.append(f"java {mode} {prefix}: {elapsed_s:.1f}s with the JVM start")
    return facts


def check_mode(classpath: str, tmp_path: Path, mode: str, bootstrap: str, replication: int):
    """Runs `mode` and asserts the counts it reports (a check must have done its work)."""
    prefix = f"java-{mode}-rf{replication}"
    common = {"partitions": PARTITIONS, "replication": replication}
    if mode == "produce":
        facts = run_check(classpath, tmp_path, mode, bootstrap, prefix, records=PRODUCE_RECORDS,
                          **common)
        assert int(facts["produced"]) == int(facts["consumed"]) == PRODUCE_RECORDS, facts
        assert int(facts["log_end_sum"]) == PRODUCE_RECORDS, facts
        assert int(facts["partitions_written"]) == PARTITIONS, facts
    elif mode == "transactions":
        facts = run_check(classpath, tmp_path, mode, bootstrap, prefix,
                          records=TXN_RECORDS, transactions=TXN_TRANSACTIONS, **common)
        per_txn = TXN_RECORDS // TXN_TRANSACTIONS
        committed = (TXN_TRANSACTIONS + 1) // 2 * per_txn + PARTITIONS  # + the successor's
        assert int(facts["read_committed"]) == int(facts["committed_values"]) == committed, facts
        assert int(facts["read_uncommitted"]) == TXN_TRANSACTIONS * per_txn + PARTITIONS, facts
        fenced_by = ("ProducerFencedException", "InvalidProducerEpochException")
        assert facts["fenced_by"] in fenced_by, facts
    else:
        facts = run_check(classpath, tmp_path, mode, bootstrap, prefix, records=EOS_RECORDS,
                          **common)
        assert int(facts["inputs_committed"]) == EOS_RECORDS, facts
        assert int(facts["outputs_read_committed"]) == EOS_RECORDS, facts
        assert int(facts["transactions_aborted"]) >= 1, facts
        assert int(facts["outputs_read_uncommitted"]) > EOS_RECORDS, facts
        assert int(facts["resumed_reads"]) == PARTITIONS * 5, facts
    return facts


@pytest.mark.parametrize("mode", MODES)
def test_java_client_against_one_broker(mode, java_classpath, start_broker, tmp_path):
    broker = start_broker(cores=2, args=BROKER_ARGS)
    check_mode(java_classpath, tmp_path, mode, broker.bootstrap, replication=1)


@pytest.mark.parametrize("mode", MODES)
def test_java_client_against_a_cluster_of_three(mode, java_classpath, start_broker, tmp_path):
    brokers = start_cluster(start_broker, extra_args=BROKER_ARGS)
    bootstrap = ",".join(b.bootstrap for b in brokers)
    check_mode(java_classpath, tmp_path, mode, bootstrap, replication=3)
