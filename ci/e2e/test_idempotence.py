"""Idempotent producers (issue #9): the clients' default idempotent producers write every record
exactly once; retries through a proxy that drops produce responses and cuts connections never
duplicate; and after kill -9 the producer state comes back from disk, so the producer's retries
after the restart create no duplicate."""

from __future__ import annotations

import asyncio
import random
import re
import struct
import threading
import time

from kafka import KafkaProducer

import ck
import kp
from conftest import free_port
from records import (
    PARTITIONS,
    RECORDS_PER_CLIENT,
    check_reads,
    headers_of,
    key_of,
    partition_of,
    seq_of,
    value_of,
)

PROXY_RECORDS = 20_000
# Faults the proxy injects per client at most (then it forwards everything, so runs end).
FAULTS_PER_CLIENT = 25
CRASH_PRODUCE_S = 2.0
CRASH_BURST_RECORDS = 2_000
PRODUCE_API_KEY = 0


def kafka_python_default_producer(bootstrap: str, **extra) -> KafkaProducer:
    # Nothing but the address: kafka-python 3's defaults are idempotence on, acks=all.
    p = KafkaProducer(bootstrap_servers=bootstrap, **extra)
    assert p.config["enable_idempotence"], "kafka-python's default producer is not idempotent"
    return p


def test_default_idempotent_producers_write_every_record_exactly_once(broker):
    # kafka-python 3 with its defaults.
    topic = tag = "idem-kp"
    ck.create_topic(broker.bootstrap, topic)
    acked = kp.produce_range(kafka_python_default_producer(broker.bootstrap), topic, tag,
                             range(RECORDS_PER_CLIENT))
    check_reads(tag, ck.consume_all(broker.bootstrap, topic, RECORDS_PER_CLIENT), RECORDS_PER_CLIENT,
                acked_offsets=acked)

    # confluent-kafka with enable.idempotence=true.
    topic = tag = "idem-ck"
    ck.create_topic(broker.bootstrap, topic)
    p = ck.producer(broker.bootstrap, enable_idempotence=True)
    acked = ck.produce_range(p, topic, tag, range(RECORDS_PER_CLIENT))
    check_reads(tag, ck.consume_all(broker.bootstrap, topic, RECORDS_PER_CLIENT), RECORDS_PER_CLIENT,
                acked_offsets=acked)
    # Both producers got ids from InitProducerId, and different ones.
    log = broker.log_path.read_text(errors="replace")
    assert log.count("producer id allocated") >= 2


class ChaosProxy:
    """A TCP proxy between Kafka clients and the broker, on its own thread and event loop.

    It reads Kafka frames in both directions. Client to broker it remembers the correlation
    ids of Produce requests; broker to client it swallows a Produce response now and then and
    cuts the connection (the request was applied, the client never hears of it and must
    retry), and it also cuts connections at random while forwarding a request. Decisions come
    from one seeded generator; faults stop after `faults_max`, so the run always finishes.
    """

    def __init__(self, upstream_port: int, seed: int, drop_produce_p: float, cut_p: float,
                 faults_max: int):
        self.port = free_port()
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.drop_produce_p = drop_produce_p
        self.cut_p = cut_p
        self.faults_max = faults_max
        self.dropped_responses = 0
        self.cut_requests = 0
        self.produce_responses = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def faults(self) -> int:
        return self.dropped_responses + self.cut_requests

    def start(self) -> "ChaosProxy":
        self.thread.start()
        assert self.ready.wait(10), "proxy did not start"
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _shutdown(self) -> None:
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, creader, cwriter) -> None:
        try:
            breader, bwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cwriter.close()
            return
        produce_ids: set[int] = set()

        async def frame(reader) -> bytes:
            size = await reader.readexactly(4)
            return size + await reader.readexactly(struct.unpack(">i", size)[0])

        async def to_broker() -> None:
            while True:
                f = await frame(creader)
                api_key, _version, correlation = struct.unpack(">hhi", f[4:12])
                if api_key == PRODUCE_API_KEY:
                    produce_ids.add(correlation)
                    if self.faults() < self.faults_max and self.rng.random() < self.cut_p:
                        # Half the request reaches the broker: it must not be applied.
                        self.cut_requests += 1
                        bwriter.write(f[: len(f) // 2])
                        await bwriter.drain()
                        return
                bwriter.write(f)
                await bwriter.drain()

        async def to_client() -> None:
            while True:
                f = await frame(breader)
                (correlation,) = struct.unpack(">i", f[4:8])
                if correlation in produce_ids:
                    produce_ids.discard(correlation)
                    self.produce_responses += 1
                    if self.faults() < self.faults_max and self.rng.random() < self.drop_produce_p:
                        self.dropped_responses += 1
                        return
                cwriter.write(f)
                await cwriter.drain()

        tasks = [asyncio.ensure_future(to_broker()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for w in (cwriter, bwriter):
                w.close()


def start_behind_proxy(start_broker, seed: int) -> tuple[object, ChaosProxy]:
    """A broker whose advertised listener is a chaos proxy in front of it (Metadata answers
    point clients back at the proxy)."""
    # The proxy's port is reserved before the broker starts so the broker can advertise it.
    proxy = ChaosProxy(upstream_port=0, seed=seed, drop_produce_p=0.2, cut_p=0.1,
                       faults_max=FAULTS_PER_CLIENT)
    broker = start_broker(cores=2, args=["--num-partitions", "6",
                                         "--advertised-listener", f"127.0.0.1:{proxy.port}"])
    proxy.upstream_port = broker.port
    proxy.start()
    return broker, proxy


def test_retries_through_dropped_responses_and_cut_connections_never_duplicate(start_broker):
    broker, proxy = start_behind_proxy(start_broker, seed=9)
    bootstrap = f"127.0.0.1:{proxy.port}"
    try:
        topic = tag = "chaos-ck"
        ck.create_topic(broker.bootstrap, topic)
        # Small batches, so there are many produce requests for the proxy to hit.
        p = ck.producer(bootstrap, enable_idempotence=True, message_timeout_ms=120_000,
                        batch_num_messages=100)
        acked = ck.produce_range(p, topic, tag, range(PROXY_RECORDS), flush_timeout_s=150)
        ck_faults = proxy.faults()
        check_reads(tag, ck.consume_all(broker.bootstrap, topic, PROXY_RECORDS), PROXY_RECORDS,
                    acked_offsets=acked)

        topic = tag = "chaos-kp"
        ck.create_topic(broker.bootstrap, topic)
        proxy.faults_max = ck_faults + FAULTS_PER_CLIENT
        p = kafka_python_default_producer(bootstrap, linger_ms=5, retry_backoff_ms=50)
        acked = kp.produce_range(p, topic, tag, range(PROXY_RECORDS))
        kp_faults = proxy.faults() - ck_faults
        check_reads(tag, ck.consume_all(broker.bootstrap, topic, PROXY_RECORDS), PROXY_RECORDS,
                    acked_offsets=acked)
    finally:
        proxy.stop()
    # The faults really happened, to both clients, and produce responses were among them.
    print(f"chaos proxy faults: confluent-kafka {ck_faults}, kafka-python {kp_faults}")
    assert ck_faults >= 5 and kp_faults >= 5, (ck_faults, kp_faults)
    assert proxy.dropped_responses >= 5, proxy.dropped_responses
    print(f"chaos proxy: {proxy.dropped_responses} produce responses dropped, "
          f"{proxy.cut_requests} requests cut, of {proxy.produce_responses} produce responses")


def test_kill9_idempotent_producer_retries_after_restart_without_duplicates(start_broker):
    broker = start_broker(cores=2, args=["--num-partitions", "6"])
    topic = tag = "idem-crash"
    ck.create_topic(broker.bootstrap, topic)
    p = ck.producer(broker.bootstrap, enable_idempotence=True, linger_ms=5,
                    message_timeout_ms=90_000)
    acked: dict[int, tuple[int, int]] = {}
    failed: list[tuple[int, str]] = []

    def on_delivery(err, msg):
        seq = seq_of(msg.value())
        if err is None:
            acked[seq] = (msg.partition(), msg.offset())
        else:
            failed.append((seq, str(err)))

    def send(seq: int) -> bool:
        try:
            p.produce(topic, value=value_of(tag, seq), key=key_of(seq), partition=partition_of(seq),
                      headers=headers_of(tag, seq), on_delivery=on_delivery)
            return True
        except BufferError:
            p.poll(0.01)
            return False

    started = time.monotonic()
    seq = 0
    while time.monotonic() - started < CRASH_PRODUCE_S:
        seq += send(seq)
        if seq % 100 == 0:
            p.poll(0)
    for _ in range(CRASH_BURST_RECORDS):
        seq += send(seq)
    p.poll(0)
    at_kill, before_kill = seq, len(acked)
    broker.kill9()
    broker.restart()
    # The same producer goes on: its queued and in-flight batches are retried to the restarted
    # broker, which must recognise the ones it already has.
    for _ in range(CRASH_BURST_RECORDS):
        while not send(seq):
            pass
        seq += 1
    assert p.flush(120) == 0
    sent = seq
    # The restarted broker recovered the producer's state from disk in every partition (one
    # producer id each), which is what lets it recognise the retried batches.
    log = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_path.read_text(errors="replace"))
    after_restart = log.rsplit("===== start #2:", 1)[1]
    opened = re.findall(r"partition opened .*topic=idem-crash partition=(\d+) .*producers=(\d+)",
                        after_restart)
    assert sorted(opened) == [(str(q), "1") for q in range(PARTITIONS)], opened
    assert not failed, f"{len(failed)} records failed, first {failed[:3]}"
    assert len(acked) == sent
    assert before_kill < at_kill, "every record was acknowledged before the kill"

    watermarks = ck.high_watermarks(broker.bootstrap, topic)
    total = sum(high for _, high in watermarks)
    reads = ck.consume_all(broker.bootstrap, topic, total)
    assert len(reads) == total
    # Every record exactly once, each where its acknowledgement said, in send order.
    check_reads(tag, reads, sent, acked_offsets=acked)
    print(f"kill -9 idempotent: sent {sent}, acknowledged before the kill {before_kill}")
