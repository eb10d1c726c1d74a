"""A consumer-group member run as its own process by test_groups.py, so a test can kill it.

    python group_worker.py CLIENT BOOTSTRAP TOPIC GROUP OUT_FILE [ASSIGNOR [INSTANCE_ID]]

CLIENT is confluent, kafka-python or aiokafka. The member subscribes to TOPIC in GROUP with
auto-commit off, and for every batch it polls: writes one line per record, flushes, commits the
batch synchronously, then writes the committed offsets. So everything committed is in the file,
and a record processed twice can only be one processed after its first processor's last
commit. Lines (all numbers decimal):

    A p,p,...      partitions assigned (eager: the whole assignment; cooperative: added)
    R p,p,...      partitions revoked
    M p o          record at partition p, offset o processed
    C p:o,p:o      offsets committed (o = next offset to read)
    F error        a commit failed

A commit can fail during a rebalance (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, as with Kafka);
the confluent member then commits again when partitions are revoked, so no processed record is
left uncommitted when its partition moves.

SIGTERM makes the member leave the group cleanly (close); SIGKILL is the crash case.
"""

from __future__ import annotations

import asyncio
import signal
import sys

POLL_RECORDS_MAX = 500
SESSION_TIMEOUT_MS = 6_000
HEARTBEAT_INTERVAL_MS = 1_000
STATIC_SESSION_TIMEOUT_MS = 60_000

stopping = False


def _stop(*_):
    global stopping
    stopping = True


class Out:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1 << 16)

    def line(self, text: str) -> None:
        self.f.write(text + "\n")

    def flush(self) -> None:
        self.f.flush()


def run_confluent(bootstrap, topic, group, out: Out, assignor: str, instance_id=None) -> None:
    from confluent_kafka import Consumer, KafkaException

    cooperative = assignor == "cooperative-sticky"

    def on_assign(consumer, partitions):
        out.line("A " + ",".join(str(p.partition) for p in partitions))
        out.flush()
        if cooperative:
            consumer.incremental_assign(partitions)

    def on_revoke(consumer, partitions):
        # Commit what was processed of the partitions leaving us: a commit after the last batch
        # may have failed because a rebalance was under way (REBALANCE_IN_PROGRESS), and the
        # next owner starts from the committed offset.
        positions = [p for p in consumer.position(partitions) if p.offset >= 0]
        if positions:
            try:
                committed = consumer.commit(offsets=positions, asynchronous=False)
                out.line("C " + ",".join(f"{p.partition}:{p.offset}" for p in committed))
            except KafkaException as e:
                out.line(f"F {e}")
        out.line("R " + ",".join(str(p.partition) for p in partitions))
        out.flush()
        if cooperative:
            consumer.incremental_unassign(partitions)

    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        "partition.assignment.strategy": assignor,
    }
    if instance_id:
        # Static membership (KIP-345): a restart within the session keeps the assignment.
        config["group.instance.id"] = instance_id
        config["session.timeout.ms"] = STATIC_SESSION_TIMEOUT_MS
    c = Consumer(config)
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stopping:
        msgs = c.consume(POLL_RECORDS_MAX, 0.2)
        done = {}
        for m in msgs:
            if m.error():
                continue
            out.line(f"M {m.partition()} {m.offset()}")
            done[m.partition()] = m.offset() + 1
        if not done:
            continue
        out.flush()
        try:
            committed = c.commit(asynchronous=False)
        except KafkaException as e:
            out.line(f"F {e}")
            out.flush()
            continue
        out.line("C " + ",".join(f"{p.partition}:{p.offset}" for p in committed if p.offset >= 0))
        out.flush()
    c.close()


def run_kafka_python(bootstrap, topic, group, out: Out, assignor: str) -> None:
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

    positions: dict[int, int] = {}

    class Listener(AsyncConsumerRebalanceListener):
        # kafka-python 3 rebalances on its IO thread, where a blocking commit is refused; the
        # async listener awaits the coordinator's commit coroutine instead (a private API: this
        # is test code pinned to kafka-python 3.0.12).
        async def on_partitions_assigned(self, assigned):
            out.line("A " + ",".join(str(p.partition) for p in assigned))
            out.flush()

        async def on_partitions_revoked(self, revoked):
            leaving = {p.partition: positions[p.partition] for p in revoked
                       if p.partition in positions}
            if leaving:
                offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                           for p, o in leaving.items()}
                try:
                    await c._coordinator._commit_offsets_sync_async(offsets)
                    out.line("C " + ",".join(f"{p}:{o}" for p, o in leaving.items()))
                except Exception as e:  # noqa: BLE001 - recorded, checked by the test
                    out.line(f"F {type(e).__name__}: {e}")
            out.line("R " + ",".join(str(p.partition) for p in revoked))
            out.flush()

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        max_poll_records=POLL_RECORDS_MAX,
    )
    c.subscribe([topic], listener=Listener())
    while not stopping:
        batches = c.poll(timeout_ms=200)
        done = {}
        for tp, records in batches.items():
            for r in records:
                out.line(f"M {tp.partition} {r.offset}")
                done[tp.partition] = r.offset + 1
        if not done:
            continue
        out.flush()
        positions.update(done)
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in done.items()}
        try:
            c.commit(offsets)
        except Exception as e:  # kafka-python raises several types for failed commits
            out.line(f"F {type(e).__name__}: {e}")
            out.flush()
            continue
        out.line("C " + ",".join(f"{p}:{o}" for p, o in done.items()))
        out.flush()
    c.close()


async def run_aiokafka(bootstrap, topic, group, out: Out, assignor: str) -> None:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    positions: dict[int, int] = {}

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_assigned(self, assigned):
            out.line("A " + ",".join(str(p.partition) for p in assigned))
            out.flush()

        async def on_partitions_revoked(self, revoked):
            # aiokafka rebalances in the background while getmany's caller may be awaiting a
            # commit: commit what was processed of leaving partitions before they move.
            leaving = {p.partition: positions[p.partition] for p in revoked
                       if p.partition in positions}
            if leaving:
                try:
                    await c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "")
                                    for p, o in leaving.items()})
                    out.line("C " + ",".join(f"{p}:{o}" for p, o in leaving.items()))
                except Exception as e:  # noqa: BLE001 - recorded, checked by the test
                    out.line(f"F {type(e).__name__}: {e}")
            out.line("R " + ",".join(str(p.partition) for p in revoked))
            out.flush()

    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    await c.start()
    c.subscribe([topic], listener=Listener())
    try:
        while not stopping:
            batches = await c.getmany(timeout_ms=200, max_records=POLL_RECORDS_MAX)
            done = {}
            for tp, records in batches.items():
                for r in records:
                    out.line(f"M {tp.partition} {r.offset}")
                    done[tp.partition] = r.offset + 1
            if not done:
                continue
            out.flush()
            positions.update(done)
            offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in done.items()}
            try:
                await c.commit(offsets)
            except Exception as e:  # aiokafka raises several types for failed commits
                out.line(f"F {type(e).__name__}: {e}")
                out.flush()
                continue
            out.line("C " + ",".join(f"{p}:{o}" for p, o in done.items()))
            out.flush()
    finally:
        await c.stop()


def main() -> None:
    client, bootstrap, topic, group, path = sys.argv[1:6]
    assignor = sys.argv[6] if len(sys.argv) > 6 else "range"
    instance_id = sys.argv[7] if len(sys.argv) > 7 else None
    signal.signal(signal.SIGTERM, _stop)
    out = Out(path)
    out.line("S started")
    out.flush()
    if client == "confluent":
        run_confluent(bootstrap, topic, group, out, assignor, instance_id)
    elif client == "kafka-python":
        run_kafka_python(bootstrap, topic, group, out, assignor)
    elif client == "aiokafka":
        asyncio.run(run_aiokafka(bootstrap, topic, group, out, assignor))
    else:
        raise SystemExit(f"unknown client {client}")
    out.line("E stopped")
    out.flush()


if __name__ == "__main__":
    main()
