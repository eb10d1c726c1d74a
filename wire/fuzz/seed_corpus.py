"""Seeds the fuzz corpora from the golden fixtures (wire/tests/fixtures).

    python3 wire/fuzz/seed_corpus.py      # no third-party modules needed

frame:   whole captured frames (size prefix included), and two frames back to back
request: frame bodies (header + request), what the request decoder sees
batch:   the records field of every captured Produce request (one or more batches)
records: the same, one whole batch per file (for the record iterator/decompressor)
Files are named by content hash, like libFuzzer's own, so re-running adds no duplicates.
"""

import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")


def put(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def main():
    frames = []
    for root, _dirs, files in os.walk(FIXTURES):
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            manifest = json.load(open(os.path.join(root, name)))
            frame = open(os.path.join(root, name[:-5] + ".bin"), "rb").read()
            frames.append(frame)
            put("frame", frame)
            put("request", frame[4:])
            for _topic, _partition, at, length in manifest.get("records_at", []):
                records = frame[at:at + length]
                put("batch", records)
                pos = 0
                while pos + 12 <= len(records):
                    (batch_length,) = struct.unpack_from(">i", records, pos + 8)
                    put("records", records[pos:pos + 12 + batch_length])
                    pos += 12 + batch_length
    for a, b in zip(frames, frames[1:]):
        put("frame", a + b)


if __name__ == "__main__":
    main()
