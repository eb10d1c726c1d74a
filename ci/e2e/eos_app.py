"""A consume-transform-produce application with confluent-kafka transactions, run (and killed
with kill -9) by test_transactions_eos_app.py.

It reads INPUT (read_committed, a consumer group, no auto commit), writes one record per input
to OUTPUT ("out:" + the input's value, same key and partition) inside a transaction, and
commits the inputs' offsets in the same transaction (send_offsets_to_transaction) every
BATCH records, or sooner when the input runs dry. It stops by itself (exit 0) once no input has
arrived for IDLE_S with no transaction open.

What it is doing is printed to stdout, a line per step and flushed before the next step
starts, so whoever kills it knows from the last line what was in flight:
  READY                   init_transactions returned (any older instance is fenced and its
                          open transaction aborted)
  BEGIN <txn>             begin_transaction
  FLUSHED <txn> <n>       the transaction's first n outputs are acknowledged (in the log)
  COMMITTING <txn> <n>    about to send the offsets and commit n outputs
  COMMITTED <txn> <n>     commit_transaction returned
  DONE

Usage: eos_app.py BOOTSTRAP INPUT OUTPUT GROUP TXN_ID BATCH PER_RECORD_MS IDLE_S
"""

from __future__ import annotations

import os
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

# Outputs acknowledged between progress lines; a kill lands after some of a transaction's
# records are in the log far more often than before any.
FLUSH_EVERY = 10


def say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    bootstrap, src, dst, group, txn_id = sys.argv[1:6]
    batch = int(sys.argv[6])
    # Work per record, so that most of the run is spent inside a transaction.
    per_record_s = float(sys.argv[7]) / 1000
    idle_s = float(sys.argv[8])

    # The same transactional.id on every start: init_transactions fences the killed instance
    # and aborts the transaction it left open, instead of leaving it to its timeout.
    # librdkafka's debug contexts (e.g. eos,txn,cgrp) for a run being investigated.
    debug = {"debug": os.environ["EOS_APP_DEBUG"]} if os.environ.get("EOS_APP_DEBUG") else {}
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                         "linger.ms": 5, **debug})
    producer.init_transactions(30)
    say("READY")
    # A static member: the restarted instance takes the killed one's place (and partitions) at
    # once instead of waiting for its session to expire.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "group.instance.id": f"{group}-member-0",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False,
                         **debug})
    consumer.subscribe([src])

    txn = 0
    in_txn = 0
    # Next offset to consume per input partition, for the records of the open transaction.
    positions: dict[int, int] = {}
    last_input = time.monotonic()
    while True:
        msgs = consumer.consume(num_messages=batch - in_txn, timeout=0.5)
        for m in msgs:
            if m.error() is not None:
                raise RuntimeError(f"consume error: {m.error()}")
        if msgs or not consumer.assignment():
            # Idle time counts from the group's assignment on: joining takes seconds.
            last_input = time.monotonic()
        for m in msgs:
            if in_txn == 0:
                producer.begin_transaction()
                txn += 1
                say(f"BEGIN {txn}")
            producer.produce(dst, key=m.key(), value=b"out:" + m.value(), partition=m.partition())
            positions[m.partition()] = m.offset() + 1
            in_txn += 1
            time.sleep(per_record_s)
            if in_txn % FLUSH_EVERY == 0:
                left = producer.flush(30)
                if left:
                    raise RuntimeError(f"{left} outputs unacknowledged after 30 s")
                say(f"FLUSHED {txn} {in_txn}")
        if in_txn and (in_txn >= batch or not msgs):
            say(f"COMMITTING {txn} {in_txn}")
            offsets = [TopicPartition(src, p, o) for p, o in sorted(positions.items())]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            say(f"COMMITTED {txn} {in_txn}")
            in_txn = 0
            positions.clear()
        if not in_txn and not msgs and time.monotonic() - last_input > idle_s:
            break
    consumer.close()
    say("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
