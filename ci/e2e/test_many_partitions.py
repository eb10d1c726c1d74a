"""Partitions cost what they use: a broker creates 2,000 partitions (two topics of 1,000) with
little disk and memory, a real client writes to every partition of one topic and reads every
record back, and after a clean restart the broker is ready within seconds with nothing lost.
/ready, polled from before the restart, answers 503 "recovering partitions" while the 2,000
partitions open, then 200.

The bounds are far below what the old per-partition costs gave (a 64 MiB preallocated segment
per partition: 125 GiB for 2,000; ~1 MiB of write buffer per partition opened) and well above
what was measured here (docs/benchmarks.md, "Many partitions"), so a slow CI machine passes."""

import os
import threading
import time
import urllib.error
import urllib.request

import ck
from records import check_reads

TOPICS = 2
PARTITIONS_PER_TOPIC = 1000
RECORDS = 5 * PARTITIONS_PER_TOPIC
# 2,000 partitions at 16 KiB of first preallocation each are 31 MiB, plus the small files
# (epoch, log start, topic metadata) and the segments written.
DISK_BYTES_MAX = 256 << 20
RSS_BYTES_MAX = 256 << 20
# From the restart to every core accepting connections (all 2,000 partitions open).
RESTART_S_MAX = 15.0


def disk_bytes(root) -> int:
    """Bytes allocated on disk under `root` (st_blocks, so preallocated space counts)."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class ReadyPoller(threading.Thread):
    """Asks GET /ready every few milliseconds, from before a start until it answers 200, and
    keeps every answer (status, body); refused connections (not bound yet) are not answers."""

    def __init__(self, address: str, timeout_s: float):
        super().__init__(daemon=True)
        self.url = f"http://{address}/ready"
        self.deadline = time.monotonic() + timeout_s
        self.answers: list[tuple[int, str]] = []

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    self.answers.append((r.status, r.read().decode()))
                    return
            except urllib.error.HTTPError as e:
                self.answers.append((e.code, e.read().decode()))
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.005)


def test_two_thousand_partitions_cost_little_and_restart_fast(start_broker):
    broker = start_broker(cores=1)
    topics = [f"many-{t}" for t in range(TOPICS)]
    for topic in topics:
        ck.create_topic(broker.bootstrap, topic, partitions=PARTITIONS_PER_TOPIC)
    created_disk = disk_bytes(broker.data_dir)
    assert created_disk < DISK_BYTES_MAX, f"{created_disk} bytes of disk for 2,000 empty partitions"

    topic = tag = topics[0]
    acked = ck.produce_range(
        ck.producer(broker.bootstrap, acks="all"), topic, tag, range(RECORDS),
        partitions=PARTITIONS_PER_TOPIC,
    )
    assert {p for p, _ in acked.values()} == set(range(PARTITIONS_PER_TOPIC))
    written_disk = disk_bytes(broker.data_dir)
    rss = rss_bytes(broker.proc.pid)
    assert written_disk < DISK_BYTES_MAX, f"{written_disk} bytes of disk"
    assert rss < RSS_BYTES_MAX, f"{rss} bytes of RSS"

    broker.stop_clean()
    poller = ReadyPoller(broker.admin_address, RESTART_S_MAX + 10)
    poller.start()
    started = time.monotonic()
    broker.restart()
    ready_s = time.monotonic() - started
    assert ready_s < RESTART_S_MAX, f"ready {ready_s:.1f}s after the restart"
    poller.join()
    answers = poller.answers
    assert answers and answers[-1] == (200, "ready\n"), answers[-3:]
    not_ready = answers[:-1]
    assert not_ready, "/ready was never 503 while 2,000 partitions opened"
    assert set(not_ready) == {(503, "not ready: recovering partitions\n")}, set(not_ready)

    reads = ck.consume_all(broker.bootstrap, topic, RECORDS, partitions=PARTITIONS_PER_TOPIC)
    check_reads(tag, reads, RECORDS, partitions=PARTITIONS_PER_TOPIC, acked_offsets=acked)
    rss = rss_bytes(broker.proc.pid)
    assert rss < RSS_BYTES_MAX, f"{rss} bytes of RSS after the restart and a full read"
    print(
        f"2,000 partitions: disk {created_disk >> 20} MiB created, {written_disk >> 20} MiB "
        f"after {RECORDS} records; restart ready in {ready_s:.2f}s ({len(not_ready)} answers "
        f"of 503 from /ready first); RSS {rss >> 20} MiB"
    )
