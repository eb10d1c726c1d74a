"""Several clients producing to a topic that does not exist yet, at the same moment, each on its
own connection (so on different cores with --cores 2): the topic must be created once and
every acknowledged record must be readable at its acknowledged offset.

Found with kcat: six `kcat -P -p N` processes started together to a new topic lost the first
thousands of acknowledged records of a partition in about one run in eight; the broker log shows
"topic created" several times and "partition opened ... log_end=0" up to six times for one
partition, each open starting a fresh log over the same files. Fixed in 124b5db (topic changes
serialised on the controller); this guards against it coming back."""

import threading
import time

import pytest

import ck
from records import PARTITIONS, Read, check_reads

# Many small rounds: the race is in creation, so records only need to show what was lost.
TOPICS = 16
RECORDS_PER_PRODUCER = 3_000
STAGGER_S = 0.01


def produce_partition(bootstrap, topic, partition, barrier, acked, errors):
    p = ck.producer(bootstrap, acks="all")
    seqs = range(partition, RECORDS_PER_PRODUCER * PARTITIONS, PARTITIONS)
    try:
        barrier.wait(timeout=30)
        # Staggered starts: later producers ask for the topic while earlier ones already write
        # to it, which is when a second creation destroys acknowledged records.
        time.sleep(partition * STAGGER_S)
        acked.update(ck.produce_range(p, topic, topic, seqs))
    except BaseException as e:  # noqa: BLE001 - reported by the main thread
        errors.append(e)


@pytest.mark.parametrize("cores", [2])
def test_concurrent_auto_creation_keeps_every_acknowledged_record(start_broker, cores):
    broker = start_broker(cores=cores, args=["--num-partitions", str(PARTITIONS)])
    count = RECORDS_PER_PRODUCER * PARTITIONS
    lost: list[str] = []
    for t in range(TOPICS):
        topic = f"racy-{t}"
        barrier = threading.Barrier(PARTITIONS)
        acked: dict[int, tuple[int, int]] = {}
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=produce_partition,
                             args=(broker.bootstrap, topic, q, barrier, acked, errors))
            for q in range(PARTITIONS)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors, errors[0]
        assert len(acked) == count
        watermarks = ck.high_watermarks(broker.bootstrap, topic)
        if watermarks != [(0, RECORDS_PER_PRODUCER)] * PARTITIONS:
            lost.append(f"{topic}: (low, high) per partition {watermarks}")
            continue
        reads: list[Read] = ck.consume_all(broker.bootstrap, topic, count)
        check_reads(topic, reads, count, acked_offsets=acked)
    assert not lost, (
        f"{len(lost)} of {TOPICS} topics lost acknowledged records "
        f"({RECORDS_PER_PRODUCER} acknowledged per partition):\n" + "\n".join(lost)
    )
