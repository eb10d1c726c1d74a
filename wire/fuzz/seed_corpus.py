"""Seeds the fuzz corpora from the golden fixtures (wire/tests/fixtures).

    python3 wire/fuzz/seed_corpus.py      # no third-party modules needed

frame:   whole captured frames (size prefix included), and two frames back to back
request: frame bodies (header + request), what the request decoder sees
batch:   the records field of every captured Produce request (one or more batches)
records: the same, one whole batch per file (for the record iterator/decompressor)
request_body: [api pick, version pick] + body without header, for the request_body target
         (needs kafka-python, from the capture venv, to know which versions are flexible;
         skipped without it)
Files are named by content hash, like libFuzzer's own, so re-running adds no duplicates.
"""

import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
# (api key, min version) in the order of spate_wire::versions::SUPPORTED: the request_body
# target picks `SUPPORTED[first byte % len]`. If the table changes, seeds only land elsewhere.
SUPPORTED = [(0, 0), (1, 4), (2, 1), (3, 0), (8, 2), (9, 1), (10, 0), (11, 0), (12, 0), (13, 0),
             (14, 0), (18, 0), (19, 2), (20, 1), (22, 0), (23, 2), (32, 1), (37, 0)]


def flexible(api_key, version):
    try:
        import sys
        sys.path.insert(0, os.path.join(HERE, "..", "..", "ci", "capture"))
        from fake_broker import REQUESTS
    except ImportError:
        return None
    return REQUESTS[api_key].flexible_version_q(version)


def request_body_seed(frame):
    api_key, version = struct.unpack_from(">hh", frame, 4)
    picks = [i for i, (key, _) in enumerate(SUPPORTED) if key == api_key]
    flex = flexible(api_key, version)
    if not picks or flex is None:
        return None
    (client_id_len,) = struct.unpack_from(">h", frame, 12)
    at = 14 + max(client_id_len, 0) + (1 if flex else 0)  # flexible: empty tagged fields
    return bytes([picks[0], version - SUPPORTED[picks[0]][1]]) + frame[at:]
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")


def put(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def main():
    frames = []
    for root, dirs, files in os.walk(FIXTURES):
        # responses/ holds spate-wire's own response frames, not client requests.
        dirs[:] = [d for d in dirs if d != "responses"]
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            manifest = json.load(open(os.path.join(root, name)))
            frame = open(os.path.join(root, name[:-5] + ".bin"), "rb").read()
            frames.append(frame)
            put("frame", frame)
            put("request", frame[4:])
            seed = request_body_seed(frame)
            if seed is not None:
                put("request_body", seed)
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
