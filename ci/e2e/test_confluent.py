"""confluent-kafka (librdkafka 2.16): 100k keyed records with headers to 6 partitions, read back
exactly, under every compression codec and every acks setting."""

import pytest

import ck
from records import PARTITIONS, RECORDS_PER_CLIENT, check_reads
from segments import CODECS, stored_codecs


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_confluent_round_trip_with_compression(broker, codec):
    topic = f"ck-{codec}"
    tag = f"ck-{codec}"
    ck.create_topic(broker.bootstrap, topic)
    p = ck.producer(broker.bootstrap, acks="all", compression_type=codec)
    acked = ck.produce_range(p, topic, tag, range(RECORDS_PER_CLIENT))
    reads = ck.consume_all(broker.bootstrap, topic, RECORDS_PER_CLIENT)
    check_reads(tag, reads, RECORDS_PER_CLIENT, acked_offsets=acked)
    per_partition = RECORDS_PER_CLIENT // PARTITIONS
    for low, high in ck.high_watermarks(broker.bootstrap, topic):
        assert low == 0
        assert high in (per_partition, per_partition + 1)
    assert sum(h for _, h in ck.high_watermarks(broker.bootstrap, topic)) == RECORDS_PER_CLIENT
    # The batches on disk carry the codec asked for: librdkafka really compressed.
    for partition in range(PARTITIONS):
        codecs = stored_codecs(broker.data_dir, topic, partition)
        assert set(codecs) == {CODECS[codec]}, f"partition {partition}: batches by codec {dict(codecs)}"


@pytest.mark.parametrize("acks", ["0", "1"])
def test_confluent_round_trip_with_acks(start_broker, acks):
    # One core here: every partition on the core that accepted the connection, the other
    # half of the forwarding matrix from the two-core runs above.
    broker = start_broker(cores=1, args=["--num-partitions", "6"])
    topic = f"ck-acks-{acks}"
    tag = topic
    ck.create_topic(broker.bootstrap, topic)
    p = ck.producer(broker.bootstrap, acks=acks)
    acked = ck.produce_range(p, topic, tag, range(RECORDS_PER_CLIENT))
    if acks == "0":
        # No response, so no offsets; every record must still arrive over loopback.
        reads = ck.consume_all(broker.bootstrap, topic, RECORDS_PER_CLIENT)
        check_reads(tag, reads, RECORDS_PER_CLIENT)
    else:
        reads = ck.consume_all(broker.bootstrap, topic, RECORDS_PER_CLIENT)
        check_reads(tag, reads, RECORDS_PER_CLIENT, acked_offsets=acked)
