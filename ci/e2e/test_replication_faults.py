"""Replication under faults, each in its own run: three broker processes on loopback, a topic
with 3 partitions, replication factor 3 and min.insync.replicas=2, an idempotent acks=all
producer writing unique values and a consumer reading along, while one fault strikes:

- the partition leader killed with SIGKILL five times in a row (each restarted and caught up
  before the next);
- a follower killed with SIGKILL (and restarted);
- the leader stopped with SIGSTOP past the fencing timeout, then SIGCONT;
- the same, for a leader that also leads the metadata quorum (a new controller must be elected
  before anything can be fenced, and every broker's heartbeats must find it);
- all three killed at once (and restarted);
- the leader cut off from the other brokers (every inter-broker connection goes through a
  proxy of the test's own, which drops them) while clients still reach it;
- a broker killed and its segment tails torn (its last bytes cut, garbage appended) before it
  restarts.

Pass criteria for every run: every acknowledged value is read back at its acknowledged offset;
offsets are dense with one value each; no value twice; the consumer saw increasing offsets; at
least 1000 writes were acknowledged; and, for the faults that leave a majority up, writes were
acknowledged while the fault lasted. On failure the run's history is printed."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import data_root, free_port
from records import Deadline
from test_cluster import wait_for_brokers

BROKERS = 3
PARTITIONS = 3
SESSION_MS = 1500
HEARTBEAT_MS = 250
TOPIC = "faults"


class Proxy:
    """One directed inter-broker route (broker `src` dialling broker `dst`) through a local
    TCP relay, which the test can cut: existing connections are closed, new ones refused."""

    def __init__(self, src: int, dst: int, upstream_port: int):
        self.src, self.dst = src, dst
        self.upstream = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.cut = False
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket):
        try:
            while True:
                data = a.recv(65536)
                if not data or self.cut:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def set_cut(self, cut: bool):
        self.cut = cut
        if cut:
            with self.lock:
                sockets, self.open = self.open, []
            for s in sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.stopped = True
        self.set_cut(True)
        self.listener.close()


@dataclass
class History:
    """What the producer and consumer saw, for the checks and for the failure report."""

    acked: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    consumed_out_of_order: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str):
        self.events.append(f"{time.monotonic() - self.started:7.2f}s {what}")

    def acks_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.ack_times if start <= t <= end)

    def report(self) -> str:
        return "\n".join(
            [f"acked {len(self.acked)}, errors {len(self.errors)} {self.errors[:5]}"]
            + self.events
            + self.consumed_out_of_order[:5]
        )


class Cluster:
    def __init__(self, start_broker, proxied: bool, data_dirs: dict[int, Path] | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.ports = [free_port() for _ in range(BROKERS)]
        self.proxies: dict[tuple[int, int], Proxy] = {}
        self.brokers = {}
        for i in range(BROKERS):
            node = i + 1
            entries = []
            for j in range(BROKERS):
                other = j + 1
                port = self.ports[j]
                if proxied and other != node:
                    proxy = Proxy(node, other, port)
                    self.proxies[(node, other)] = proxy
                    port = proxy.port
                entries.append(f"{other}@127.0.0.1:{port}")
            self.brokers[node] = start_broker(
                cores=1,
                name=f"node{node}",
                data_dir=(data_dirs or {}).get(node),
                args=[
                    "--node-id", str(node),
                    "--cluster-listen", f"127.0.0.1:{self.ports[i]}",
                    "--controller-voters", ",".join(entries),
                    "--broker-session-timeout-ms", str(SESSION_MS),
                    "--broker-heartbeat-interval-ms", str(HEARTBEAT_MS),
                    *extra_args,
                ],
            )
        self.bootstrap = ",".join(b.bootstrap for b in self.brokers.values())
        for b in self.brokers.values():
            wait_for_brokers(b.bootstrap, BROKERS)

    def isolate(self, node: int, cut: bool):
        for (src, dst), proxy in self.proxies.items():
            if node in (src, dst):
                proxy.set_cut(cut)

    def admin(self, node: int | None = None) -> AdminClient:
        bootstrap = self.brokers[node].bootstrap if node else self.alive_bootstrap()
        return AdminClient({"bootstrap.servers": bootstrap})

    def alive_bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values() if b.running())

    def partitions(self, node: int | None = None):
        md = self.admin(node).list_topics(topic=TOPIC, timeout=10)
        return md.topics[TOPIC].partitions

    def wait_full_isr(self, timeout_s: float = 60.0):
        deadline = Deadline(timeout_s)
        seen = None
        while True:
            try:
                parts = self.partitions()
                seen = {i: (p.leader, p.replicas, p.isrs) for i, p in parts.items()}
                if len(parts) == PARTITIONS and all(
                    len(p.replicas) == BROKERS and sorted(p.isrs) == sorted(p.replicas) and p.leader > 0
                    for p in parts.values()
                ):
                    return parts
            except Exception as e:  # noqa: BLE001 - the cluster may be mid-election
                seen = e
            assert not deadline.expired(), f"ISR not full: {seen}"
            time.sleep(0.2)

    def close(self):
        for proxy in self.proxies.values():
            proxy.close()


class Load:
    """An idempotent acks=all producer and a read-along consumer, each on its own thread."""

    def __init__(self, cluster: Cluster, history: History):
        self.cluster = cluster
        self.history = history
        self.stop = threading.Event()
        self.seq = 0
        self.threads = [
            threading.Thread(target=self._produce, daemon=True),
            threading.Thread(target=self._consume, daemon=True),
        ]

    def start(self):
        for t in self.threads:
            t.start()

    def _produce(self):
        p = Producer(
            {
                "bootstrap.servers": self.cluster.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 120000,
                "topic.metadata.refresh.interval.ms": 500,
                "retry.backoff.ms": 50,
            }
        )

        def delivered(err, msg):
            if err is not None:
                self.history.errors.append(str(err))
                return
            self.history.acked[msg.value()] = (msg.partition(), msg.offset())
            self.history.ack_times.append(time.monotonic())

        while not self.stop.is_set():
            for _ in range(20):
                try:
                    p.produce(TOPIC, value=f"f{self.seq:09d}".encode(), partition=self.seq % PARTITIONS,
                              on_delivery=delivered)
                    self.seq += 1
                except BufferError:
                    break
            p.poll(0.005)
        remaining = p.flush(120)
        if remaining:
            self.history.errors.append(f"{remaining} records never answered")

    def _consume(self):
        c = Consumer(
            {
                "bootstrap.servers": self.cluster.bootstrap,
                "group.id": "faults-reader",
                "enable.auto.commit": False,
                "topic.metadata.refresh.interval.ms": 500,
            }
        )
        c.assign([TopicPartition(TOPIC, i, 0) for i in range(PARTITIONS)])
        last = {}
        while not self.stop.is_set():
            for m in c.consume(num_messages=1000, timeout=0.2):
                if m.error() is not None:
                    continue
                prev = last.get(m.partition(), -1)
                if m.offset() <= prev:
                    self.history.consumed_out_of_order.append(
                        f"partition {m.partition()}: offset {m.offset()} after {prev}"
                    )
                last[m.partition()] = m.offset()
        c.close()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=180)


def read_back(cluster: Cluster, history: History):
    c = Consumer(
        {
            "bootstrap.servers": cluster.alive_bootstrap(),
            "group.id": "faults-check",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(TOPIC, i, 0) for i in range(PARTITIONS)])
    reads: dict[bytes, tuple[int, int]] = {}
    offsets: dict[int, list[int]] = {i: [] for i in range(PARTITIONS)}
    eof: set[int] = set()
    deadline = Deadline(90)
    while len(eof) < PARTITIONS and not deadline.expired():
        for m in c.consume(num_messages=5000, timeout=0.5):
            if m.error() is not None:
                if m.error().code() == -191:  # _PARTITION_EOF
                    eof.add(m.partition())
                continue
            eof.discard(m.partition())
            assert m.value() not in reads, (
                f"{m.value()!r} read twice: {reads[m.value()]} and {(m.partition(), m.offset())}\n{history.report()}"
            )
            reads[m.value()] = (m.partition(), m.offset())
            offsets[m.partition()].append(m.offset())
    c.close()
    missing = {v: w for v, w in history.acked.items() if reads.get(v) != w}
    assert not missing, (
        f"{len(missing)} acknowledged values not read at their offsets, e.g. "
        f"{list(missing.items())[:3]} read at {[reads.get(v) for v in list(missing)[:3]]}\n{history.report()}"
    )
    for partition, seen in offsets.items():
        assert seen == list(range(seen[0], seen[0] + len(seen))) if seen else True, (
            f"partition {partition}: offsets not dense\n{history.report()}"
        )
    return reads


def leader_of(cluster: Cluster, partition: int = 0) -> int:
    deadline = Deadline(30)
    while True:
        try:
            leader = cluster.partitions()[partition].leader
            if leader > 0:
                return leader
        except Exception:  # noqa: BLE001 - mid-election
            pass
        assert not deadline.expired(), "no leader"
        time.sleep(0.2)


def tear_tails(data_dir: Path) -> int:
    """Tears each partition's newest segment at its tail, as a crash mid-write leaves it: the
    last batch gets a flipped byte (its CRC fails) and garbage follows it. Segments are
    preallocated, so the end of the data is found by walking the batch headers (base offset
    i64, batch length i32). Returns how many segments were torn."""
    torn = 0
    for part in data_dir.glob(f"{TOPIC}-*"):
        segments = sorted(part.glob("*.log"))
        if not segments:
            continue
        data = segments[-1].read_bytes()
        at, last = 0, None
        while at + 12 <= len(data):
            length = int.from_bytes(data[at + 8:at + 12], "big", signed=True)
            if length <= 0 or at + 12 + length > len(data):
                break
            last = (at, 12 + length)
            at += 12 + length
        if last is None:
            continue
        start, size = last
        with open(segments[-1], "r+b") as f:
            f.seek(start + size // 2)
            byte = f.read(1)
            f.seek(start + size // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
            f.seek(start + size)
            f.write(os.urandom(64))
        torn += 1
    return torn


def under_replicated(broker, at_least: int, timeout_s: float) -> int:
    """The broker's `spate_under_replicated_partitions`, once it is at least `at_least`."""
    import urllib.request

    deadline = Deadline(timeout_s)
    value = None
    while True:
        with urllib.request.urlopen(f"http://{broker.admin_address}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("spate_under_replicated_partitions "):
                    value = int(float(line.split()[1]))
        if value is not None and value >= at_least:
            return value
        assert not deadline.expired(), f"spate_under_replicated_partitions is {value}"
        time.sleep(0.2)


FAULTS = ["leader_kill_5x", "follower_kill", "leader_sigstop", "controller_sigstop", "kill_all",
          "leader_isolated", "torn_tail"]


@pytest.mark.parametrize("fault", FAULTS)
def test_replication_under_fault(start_broker, fault):
    cluster = Cluster(start_broker, proxied=(fault == "leader_isolated"))
    history = History()
    try:
        admin = cluster.admin()
        admin.create_topics(
            [NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3,
                      config={"min.insync.replicas": "2"})]
        )[TOPIC].result(timeout=30)
        cluster.wait_full_isr()
        load = Load(cluster, history)
        load.start()
        time.sleep(3)
        history.note(f"before the fault: {len(history.acked)} acked")
        majority_up = True
        fault_start = time.monotonic()
        leader = leader_of(cluster)
        if fault == "controller_sigstop":
            # The partition leader stopped is the metadata quorum's leader too, so a new
            # controller must be elected before anything else can fence it.
            controller = admin.describe_cluster().result(timeout=10).controller.id
            led = [p for p in range(PARTITIONS) if leader_of(cluster, p) == controller]
            if not led:
                pytest.skip(f"the quorum leader {controller} leads no partition of {TOPIC}")
            leader = controller
        if fault == "leader_kill_5x":
            # Five times in a row: the partition's current leader is killed, a successor must
            # take over, and the killed broker comes back and catches up before the next kill
            # (so a majority stays up throughout).
            for round_ in range(5):
                victim = leader_of(cluster)
                history.note(f"kill -9 leader {victim} (round {round_ + 1})")
                cluster.brokers[victim].kill9()
                deadline = Deadline(30)
                while leader_of(cluster) == victim:
                    assert not deadline.expired(), f"no new leader\n{history.report()}"
                    time.sleep(0.1)
                time.sleep(2)
                cluster.brokers[victim].restart()
                cluster.wait_full_isr(timeout_s=90)
            fault_end = time.monotonic()
        elif fault == "follower_kill":
            follower = next(n for n in cluster.brokers if n != leader)
            history.note(f"kill -9 follower {follower}")
            cluster.brokers[follower].kill9()
            # Once the follower is fenced, the leader's /metrics counts its partitions as
            # under-replicated (Kafka's UnderReplicatedPartitions), what an operator alerts on.
            under = under_replicated(cluster.brokers[leader], at_least=1, timeout_s=8)
            history.note(f"leader {leader} reports {under} under-replicated partitions")
            time.sleep(max(0.0, 8 - (time.monotonic() - fault_start)))
            fault_end = time.monotonic()
            cluster.brokers[follower].restart()
        elif fault in ("leader_sigstop", "controller_sigstop"):
            controller = admin.describe_cluster().result(timeout=10).controller.id
            history.note(f"SIGSTOP leader {leader} (quorum leader: {controller})")
            cluster.brokers[leader].proc.send_signal(signal.SIGSTOP)
            time.sleep(8)
            fault_end = time.monotonic()
            # The fault fired: a survivor shows the stopped broker fenced out of leadership.
            survivor = next(n for n in cluster.brokers if n != leader)
            leaders = {i: p.leader for i, p in cluster.partitions(survivor).items()}
            history.note(f"leaders seen by broker {survivor} during the stop: {leaders}")
            assert leader not in leaders.values(), history.report()
            history.note(f"SIGCONT leader {leader}")
            cluster.brokers[leader].proc.send_signal(signal.SIGCONT)
        elif fault == "kill_all":
            majority_up = False
            history.note("kill -9 every broker")
            for b in cluster.brokers.values():
                b.kill9()
            time.sleep(1)
            fault_end = time.monotonic()
            for b in cluster.brokers.values():
                b.restart()
        elif fault == "leader_isolated":
            history.note(f"cut leader {leader} off from the other brokers")
            cluster.isolate(leader, True)
            time.sleep(6)
            fault_end = time.monotonic()
            history.note(f"heal leader {leader}")
            cluster.isolate(leader, False)
        elif fault == "torn_tail":
            victim = next(n for n in cluster.brokers if n != leader)
            history.note(f"kill -9 broker {victim}, tear its segment tails")
            cluster.brokers[victim].kill9()
            torn = tear_tails(cluster.brokers[victim].data_dir)
            history.note(f"tore {torn} segment tails")
            assert torn > 0
            time.sleep(7)
            fault_end = time.monotonic()
            cluster.brokers[victim].restart()
        else:
            raise AssertionError(fault)
        history.note(f"fault over: {len(history.acked)} acked")
        cluster.wait_full_isr(timeout_s=90)
        history.note("ISR full again")
        time.sleep(3)
        load.finish()
        history.note(f"load stopped: {len(history.acked)} acked")
        during = history.acks_between(fault_start + SESSION_MS / 1000 * 2 + 2, fault_end)
        history.note(f"acked while the fault lasted (after failover): {during}")
        print(history.report())
        assert len(history.acked) >= 1000, history.report()
        assert not history.errors, history.report()
        assert not history.consumed_out_of_order, history.report()
        if majority_up and fault_end - fault_start > SESSION_MS / 1000 * 2 + 3:
            assert during > 0, f"no progress during the fault\n{history.report()}"
        read_back(cluster, history)
    finally:
        cluster.close()


class SmallDisk:
    """An ext4 filesystem of its own (a loop-mounted image) for one broker's data dir, so the
    test can fail that broker's disk and only its disk. Needs root and a loop device."""

    IMAGE_BYTES = 768 << 20
    # ext4's shutdown ioctl (EXT4_IOC_SHUTDOWN, _IOR('X', 125, __u32)) with
    # EXT4_GOING_FLAGS_NOLOGFLUSH: from then on every read, write and sync on the filesystem
    # fails with EIO, and what its journal had not committed is lost, as when a disk dies.
    EXT4_IOC_SHUTDOWN = 0x8004587D
    GOING_NOLOGFLUSH = 2

    def __init__(self, root: Path):
        self.root = root
        self.image = root / "disk.img"
        self.mount = root / "mnt"
        self.mount.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(self.IMAGE_BYTES)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)
        self._mount()

    def _mount(self):
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mount)], check=True)

    def fill(self) -> int:
        """Takes every free byte (root's reserved blocks too); returns how many."""
        taken = 0
        chunk = b"\0" * (1 << 20)
        with open(self.mount / "filler", "wb", buffering=0) as f:
            for size in (1 << 20, 1 << 16, 1 << 12):
                try:
                    while True:
                        taken += f.write(chunk[:size])
                except OSError:
                    pass
        return taken

    def free(self):
        (self.mount / "filler").unlink(missing_ok=True)

    def fail(self):
        fd = os.open(self.mount, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, self.EXT4_IOC_SHUTDOWN, struct.pack("I", self.GOING_NOLOGFLUSH))
        finally:
            os.close(fd)

    def replace(self):
        """The operator's fix: the filesystem is unmounted and mounted again (ext4 replays its
        journal), once nothing uses it."""
        subprocess.run(["umount", str(self.mount)], check=True)
        self._mount()

    def close(self):
        subprocess.run(["umount", "-l", str(self.mount)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def test_a_leader_whose_disk_fails_hands_over_and_exits(start_broker, tmp_path):
    """Broker 1 leads every partition from a disk of its own, which then fails (every I/O
    returns EIO) while an acks=all producer writes. Its logs fence at their next write or sync,
    and a broker that cannot write must not keep leadership it cannot use: it stops
    (controlled shutdown, so the controller moves each leadership to an in-sync replica),
    exits non-zero naming the partition, and writes go on with the other two. Once the disk is
    back it restarts, truncates what the dead disk lost, catches up and rejoins every ISR;
    nothing acknowledged is lost."""
    try:
        root = Path(tempfile.mkdtemp(prefix="small-disk-", dir=data_root()))
        disk = SmallDisk(root)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"no loop-mounted filesystem here (needs root and /dev/loop*): {e}")
    cluster = None
    history = History()
    try:
        cluster = Cluster(start_broker, proxied=False, data_dirs={1: disk.mount / "node1"})
        admin = cluster.admin()
        admin.create_topics(
            [NewTopic(TOPIC, num_partitions=PARTITIONS, replica_assignment=[[1, 2, 3], [1, 3, 2], [1, 2, 3]],
                      config={"min.insync.replicas": "2"})]
        )[TOPIC].result(timeout=30)
        cluster.wait_full_isr()
        assert {p.leader for p in cluster.partitions().values()} == {1}
        load = Load(cluster, history)
        load.start()
        time.sleep(3)
        history.note(f"before the fault: {len(history.acked)} acked")
        fault_start = time.monotonic()
        disk.fail()
        history.note("broker 1's disk failed")
        victim = cluster.brokers[1]
        deadline = Deadline(60)
        while victim.running():
            assert not deadline.expired(), f"broker 1 still running on a failed disk\n{history.report()}"
            time.sleep(0.2)
        code = victim.proc.returncode
        history.note(f"broker 1 exited with {code}")
        assert code is not None and code > 0, f"exit status {code}\n{history.report()}"
        log = victim.log_path.read_text(errors="replace")
        assert "stopping the broker so that its partitions' leadership moves" in log, victim.log_tail()
        time.sleep(5)
        fault_end = time.monotonic()
        during = history.acks_between(fault_start, fault_end)
        history.note(f"acked after the disk failed, before it came back: {during}")
        assert during > 0, f"no progress while broker 1 was out\n{history.report()}"
        assert all(p.leader in (2, 3) for p in cluster.partitions().values())
        disk.replace()
        victim.restart()
        cluster.wait_full_isr(timeout_s=90)
        history.note("ISR full again")
        time.sleep(2)
        load.finish()
        print(history.report())
        assert len(history.acked) >= 1000, history.report()
        assert not history.errors, history.report()
        assert not history.consumed_out_of_order, history.report()
        read_back(cluster, history)
    finally:
        if cluster is not None:
            cluster.close()
            # The broker must leave the mount before it can go.
            for b in cluster.brokers.values():
                if b.running():
                    b.stop()
        disk.close()


def test_a_follower_whose_disk_fills_catches_up_once_space_is_freed(start_broker, tmp_path):
    """Broker 3 follows every partition from a small disk of its own, which the test fills
    while an acks=all producer writes (small segments, so its next roll needs space). Its
    appends fail with the disk full, which changes nothing in its log: it leaves the ISRs after
    the lag time and writes go on with the other two. Once space is freed it fetches again from
    its log's real end and rejoins every ISR without a restart; nothing acknowledged is lost."""
    try:
        root = Path(tempfile.mkdtemp(prefix="small-disk-", dir=data_root()))
        disk = SmallDisk(root)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"no loop-mounted filesystem here (needs root and /dev/loop*): {e}")
    cluster = None
    history = History()
    try:
        cluster = Cluster(start_broker, proxied=False, data_dirs={3: disk.mount / "node3"},
                          extra_args=("--replica-lag-time-max-ms", "3000"))
        admin = cluster.admin()
        admin.create_topics(
            [NewTopic(TOPIC, num_partitions=PARTITIONS, replica_assignment=[[1, 2, 3], [1, 3, 2], [1, 2, 3]],
                      config={"min.insync.replicas": "2", "segment.bytes": str(1 << 20)})]
        )[TOPIC].result(timeout=30)
        cluster.wait_full_isr()
        load = Load(cluster, history)
        load.start()
        time.sleep(3)
        history.note(f"before the fault: {len(history.acked)} acked")
        taken = disk.fill()
        fault_start = time.monotonic()
        history.note(f"filled broker 3's disk ({taken >> 20} MiB)")
        victim = cluster.brokers[3]
        deadline = Deadline(60)
        while "follower append failed" not in victim.log_path.read_text(errors="replace"):
            assert not deadline.expired(), f"broker 3 never failed an append\n{history.report()}"
            time.sleep(0.2)
        history.note("broker 3's appends fail")
        out = Deadline(30)
        while any(3 in p.isrs for p in cluster.partitions().values()):
            assert not out.expired(), f"broker 3 still in an ISR\n{history.report()}"
            time.sleep(0.2)
        history.note("broker 3 left every ISR")
        time.sleep(3)
        fault_end = time.monotonic()
        during = history.acks_between(fault_start, fault_end)
        history.note(f"acked while broker 3's disk was full: {during}")
        assert during > 0, f"no progress while broker 3's disk was full\n{history.report()}"
        disk.free()
        history.note("space freed")
        cluster.wait_full_isr(timeout_s=60)
        history.note("ISR full again")
        assert victim.running() and victim.starts == 1, "broker 3 was restarted"
        time.sleep(2)
        load.finish()
        print(history.report())
        assert len(history.acked) >= 1000, history.report()
        assert not history.errors, history.report()
        assert not history.consumed_out_of_order, history.report()
        read_back(cluster, history)
    finally:
        if cluster is not None:
            cluster.close()
            for b in cluster.brokers.values():
                if b.running():
                    b.stop()
        disk.close()
