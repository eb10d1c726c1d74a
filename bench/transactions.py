#!/usr/bin/env python3
"""The cost of transactions: one broker, one run, two producers of the same records one after
the other (so they share the machine's state), each for the same time:

- idempotent: `enable.idempotence=true`, acks=all;
- transactional: the same, plus `transactional.id`, committing every `--commit-ms`.

Both are confluent-kafka (librdkafka) producers, driven as fast as the library takes records
(produce() until its queue is full, then poll). The rate is records acknowledged (idempotent) or
committed (transactional) per second; for the transactional producer, the commit latency
(commit_transaction's duration) is reported as p50/p99/max. Run it against a fresh broker:

    cargo build --release -p spate-broker
    python3 bench/transactions.py --spate target/release/spate --seconds 10 --commit-ms 100

It starts the broker itself (on a temporary data dir, one core unless `--cores`; `--brokers 3`
starts a cluster of three and makes the topic's replication factor 3), runs each producer
`--rounds` times alternating, and prints the median of the rounds and each round.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_brokers(binary: str, cores: int, count: int) -> tuple[list, str, list[str]]:
    """`count` brokers (one alone, or a cluster of `count` voters) on temporary data dirs."""
    procs, datas, bootstraps = [], [], []
    cluster_ports = [free_port() for _ in range(count)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(cluster_ports))
    for i in range(count):
        data = tempfile.mkdtemp(prefix="spate-txn-bench-")
        port = free_port()
        command = [binary, "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--cores",
                   str(cores), "--admin-listen", f"127.0.0.1:{free_port()}"]
        if count > 1:
            command += ["--node-id", str(i + 1), "--cluster-listen",
                        f"127.0.0.1:{cluster_ports[i]}", "--controller-voters", voters]
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        datas.append(data)
        bootstraps.append(f"127.0.0.1:{port}")
    bootstrap = ",".join(bootstraps)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=1)
            if len(md.brokers) == count:
                return procs, bootstrap, datas
        except KafkaException:
            pass
        time.sleep(0.2)
    for proc in procs:
        proc.kill()
    raise SystemExit("brokers did not start")


def drive(p: Producer, topic: str, value: bytes, partitions: int, until: float,
          count: list[int]) -> None:
    """Produces until `until`, polling when librdkafka's queue is full."""
    i = 0
    while time.monotonic() < until:
        try:
            p.produce(topic, value=value, partition=i % partitions,
                      on_delivery=lambda err, _m: count.__setitem__(0, count[0] + (err is None)))
            i += 1
        except BufferError:
            p.poll(0.001)
        if i % 1000 == 0:
            p.poll(0)


def idempotent_round(bootstrap: str, topic: str, value: bytes, partitions: int,
                     seconds: float) -> dict:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "queue.buffering.max.messages": 500_000})
    count = [0]
    started = time.monotonic()
    drive(p, topic, value, partitions, started + seconds, count)
    p.flush(60)
    elapsed = time.monotonic() - started
    return {"rate": count[0] / elapsed, "records": count[0]}


def transactional_round(bootstrap: str, topic: str, value: bytes, partitions: int,
                        seconds: float, commit_ms: int, txn_id: str) -> dict:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "acks": "all",
                  "linger.ms": 5, "queue.buffering.max.messages": 500_000})
    p.init_transactions(30)
    committed = 0
    commits: list[float] = []
    started = time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        count = [0]
        p.begin_transaction()
        drive(p, topic, value, partitions, min(end, time.monotonic() + commit_ms / 1000), count)
        t0 = time.monotonic()
        p.commit_transaction(30)  # flushes, then EndTxn, and waits for the markers' result
        commits.append((time.monotonic() - t0) * 1000)
        committed += count[0]
    elapsed = time.monotonic() - started
    commits.sort()
    return {
        "rate": committed / elapsed,
        "records": committed,
        "commits": len(commits),
        "commit_p50_ms": commits[len(commits) // 2],
        "commit_p99_ms": commits[min(len(commits) - 1, int(len(commits) * 0.99))],
        "commit_max_ms": commits[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spate", default="target/release/spate")
    parser.add_argument("--bootstrap", help="use a running broker instead of starting one")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--brokers", type=int, default=1,
                        help="start a cluster of this many brokers (replication factor = it)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--commit-ms", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    procs, datas = [], []
    bootstrap = args.bootstrap
    if bootstrap is None:
        procs, bootstrap, datas = start_brokers(args.spate, args.cores, args.brokers)
    try:
        topic = f"txn-bench-{int(time.time())}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics(
            [NewTopic(topic, num_partitions=args.partitions, replication_factor=args.brokers)]
        )[topic].result(timeout=30)
        value = b"x" * args.value_bytes
        idem, txn = [], []
        for r in range(args.rounds):
            idem.append(idempotent_round(bootstrap, topic, value, args.partitions, args.seconds))
            txn.append(transactional_round(bootstrap, topic, value, args.partitions,
                                           args.seconds, args.commit_ms, f"txn-bench-{r}"))
            print(f"round {r}: idempotent {idem[-1]['rate']:,.0f}/s  transactional "
                  f"{txn[-1]['rate']:,.0f}/s ({txn[-1]['commits']} commits, commit p50 "
                  f"{txn[-1]['commit_p50_ms']:.1f} ms p99 {txn[-1]['commit_p99_ms']:.1f} ms "
                  f"max {txn[-1]['commit_max_ms']:.1f} ms)", flush=True)
        mi = statistics.median(x["rate"] for x in idem)
        mt = statistics.median(x["rate"] for x in txn)
        print(f"median of {args.rounds} rounds: idempotent {mi:,.0f}/s, transactional "
              f"(commit every {args.commit_ms} ms) {mt:,.0f}/s, ratio {mt / mi:.2f}; commit p50 "
              f"{statistics.median(x['commit_p50_ms'] for x in txn):.1f} ms")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        for data in datas:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
