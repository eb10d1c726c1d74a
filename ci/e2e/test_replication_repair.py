"""A corrupt batch on a partition leader's disk (bit rot in a closed segment) is never served,
the batches before it still are, and the damaged segment is rebuilt from an in-sync replica:
consumers then read every record, unchanged, from the same leader.

Three brokers, one partition with replication factor 3 and 1 MiB segments, 12 MB of records. After the records
are acknowledged by every replica, one byte inside a batch of the leader's first segment is
flipped on disk while the leader runs (its reads are O_DIRECT, so they see the file, not a
cached copy). A consumer reading from the beginning must get every acknowledged value at its
offset; the leader's log says the segment was repaired, and its file then holds the replica's
bytes."""

from __future__ import annotations

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import ck
from records import Deadline
from test_replication import partitions_of, start_cluster

TOPIC = "rotten"
# More than a partition's 8 MiB tail cache, so the first segment is read from its file.
RECORDS = 12000


def test_a_corrupt_batch_on_the_leader_is_repaired_from_a_replica(start_broker):
    brokers = start_cluster(start_broker)
    by_id = {i + 1: b for i, b in enumerate(brokers)}
    bootstrap = ",".join(b.bootstrap for b in brokers)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3,
                                  config={"min.insync.replicas": "3",
                                          "segment.bytes": str(1 << 20)})])[TOPIC].result(timeout=20)
    deadline = Deadline(30)
    while True:
        p = partitions_of(bootstrap, TOPIC).get(0)
        if p is not None and len(p.isrs) == 3 and p.leader > 0:
            break
        assert not deadline.expired(), p
        time.sleep(0.2)

    acked: dict[bytes, int] = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.value()] = msg.offset()

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "batch.num.messages": 50})
    for i in range(RECORDS):
        producer.produce(TOPIC, value=f"rot{i:06d}".ljust(1000, "-").encode(), partition=0,
                         on_delivery=on_delivery)
        if i % 200 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert len(acked) == RECORDS

    leader = by_id[partitions_of(bootstrap, TOPIC)[0].leader]
    segment = leader.data_dir / f"{TOPIC}-0" / f"{0:020}.log"
    deadline = Deadline(20)
    while not (leader.data_dir / f"{TOPIC}-0" / f"{0:020}.index").exists():
        assert not deadline.expired(), "the first segment was never sealed"
        time.sleep(0.1)
    size = segment.stat().st_size
    assert size > 4096, size
    # Inside a record's value (batches are about 50 KB; their headers are 61 bytes).
    at = size // 2 + 1000
    with open(segment, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x10]))
    before = segment.read_bytes()

    reads = ck.consume_all(leader.bootstrap, TOPIC, RECORDS, partitions=1, timeout_s=60)
    offsets = [r.offset for r in reads]
    assert offsets == list(range(RECORDS)), (len(offsets), offsets[:3], offsets[-3:])
    for r in reads:
        assert acked[r.value] == r.offset
    log = leader.log_path.read_text()
    assert "corrupt batch on disk, not served" in log
    assert "damaged segment repaired from another replica" in log
    assert segment.read_bytes() != before, "the damaged file was not replaced"
