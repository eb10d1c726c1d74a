"""kcat 1.7 (Debian, librdkafka 2.0.2): 100k keyed records with a header to 6 partitions, read
back exactly with kcat's consumer. kcat sets the same headers on every record it produces."""

import subprocess

import ck
from records import PARTITIONS, RECORDS_PER_CLIENT, Read, check_reads, key_of, value_of

KCAT_TIMEOUT_S = 120


def test_kcat_round_trip(broker):
    topic = tag = "kcat"
    ck.create_topic(broker.bootstrap, topic)
    producers = []
    for p in range(PARTITIONS):
        lines = b"".join(
            key_of(seq) + b":" + value_of(tag, seq) + b"\n"
            for seq in range(p, RECORDS_PER_CLIENT, PARTITIONS)
        )
        proc = subprocess.Popen(
            ["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-p", str(p), "-K", ":",
             "-H", "client=kcat", "-X", "linger.ms=5"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        producers.append((proc, lines))
    for proc, lines in producers:
        out, err = proc.communicate(lines, timeout=KCAT_TIMEOUT_S)
        assert proc.returncode == 0, f"kcat -P failed: {err.decode(errors='replace')}"

    reads = []
    for p in range(PARTITIONS):
        out = subprocess.run(
            ["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-p", str(p), "-o", "beginning",
             "-e", "-q", "-f", "%o:%k:%s:%h\\n"],
            capture_output=True, timeout=KCAT_TIMEOUT_S, check=True,
        ).stdout
        for line in out.splitlines():
            offset, key, value, headers = line.split(b":")
            assert headers == b"client=kcat", f"partition {p} offset {offset}: headers {headers!r}"
            reads.append(Read(p, int(offset), key, value, ()))
    check_reads(tag, reads, RECORDS_PER_CLIENT, with_headers=False)
