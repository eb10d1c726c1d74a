"""kafka-python 3.0: 100k keyed records with headers to 6 partitions, read back exactly."""

import pytest

import ck
import kp
from records import PARTITIONS, RECORDS_PER_CLIENT, check_reads
from segments import CODECS, stored_codecs


@pytest.mark.parametrize("cores", [1, 2])
def test_kafka_python_round_trip(start_broker, cores):
    broker = start_broker(cores=cores, args=["--num-partitions", "6"])
    topic = tag = f"kp-{cores}"
    ck.create_topic(broker.bootstrap, topic)
    p = kp.producer(broker.bootstrap, acks="all")
    try:
        acked = kp.produce_range(p, topic, tag, range(RECORDS_PER_CLIENT))
    finally:
        p.close()
    reads = kp.consume_all(broker.bootstrap, topic, RECORDS_PER_CLIENT)
    check_reads(tag, reads, RECORDS_PER_CLIENT, acked_offsets=acked)


def test_kafka_python_gzip_acks_1(broker):
    topic = tag = "kp-gzip"
    count = 20_000
    ck.create_topic(broker.bootstrap, topic)
    p = kp.producer(broker.bootstrap, acks=1, compression_type="gzip")
    try:
        acked = kp.produce_range(p, topic, tag, range(count))
    finally:
        p.close()
    reads = kp.consume_all(broker.bootstrap, topic, count)
    check_reads(tag, reads, count, acked_offsets=acked)
    for partition in range(PARTITIONS):
        codecs = stored_codecs(broker.data_dir, topic, partition)
        assert set(codecs) == {CODECS["gzip"]}, f"partition {partition}: batches by codec {dict(codecs)}"
