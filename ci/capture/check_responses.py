"""Decodes responses encoded by spate-wire with kafka-python's protocol classes.

    .venv/bin/python ci/capture/check_responses.py [wire/tests/fixtures/responses]

The .bin files are whole response frames (size prefix included) that
wire/tests/golden_responses.rs pins byte for byte; each .json lists what a client must read
back. kafka-python's decoder is independent of spate-wire and is the one kafka-python clients
run, so a file that passes here is one that client can read. Exits non-zero on any mismatch.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_broker import RESPONSES  # noqa: E402  (kafka-python's classes, keyed by API key)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CASES_MIN = 32


def check_api_versions(name, frame, manifest):
    cls = RESPONSES[18]
    # A client decodes with the version it asked for; kafka-python peeks at the error code and
    # reads the body as v0 when it is set (KIP-511), exactly as Kafka's clients do.
    asked = min(manifest.get("request_version", manifest["api_version"]), cls.max_version)
    resp = cls.decode(frame, version=asked, header=True, framed=True)
    errors = []
    if resp.header.correlation_id != manifest["correlation_id"]:
        errors.append("correlation id %r" % resp.header.correlation_id)
    if resp.error_code != manifest["error_code"]:
        errors.append("error code %r" % resp.error_code)
    got = [[k.api_key, k.min_version, k.max_version] for k in resp.api_keys]
    if got != manifest["api_keys"]:
        errors.append("api keys %r" % got)
    # The whole frame must be consumed: re-encoding what was decoded gives the same bytes.
    resp._header = None  # the version setter would otherwise poke at a request-only header field
    resp.API_VERSION = manifest["api_version"]
    resp.with_header(correlation_id=manifest["correlation_id"])
    again = bytes(resp.encode(header=True, framed=True))
    if again != frame:
        errors.append("re-encoded by kafka-python differs: %s vs %s" % (again.hex(), frame.hex()))
    return errors


def _records(raw):
    """Every record in a records field, read with kafka-python's batch reader (decompressing)."""
    from kafka.record import MemoryRecords
    if raw is None:
        return None
    out = []
    records = MemoryRecords(bytes(raw))
    while True:
        batch = records.next_batch()
        if batch is None:
            return out
        for r in batch:
            text = lambda b: None if b is None else bytes(b).decode("latin-1")
            out.append([text(r.key), text(r.value), [[k, text(v)] for k, v in r.headers]])


def check_fetch(name, frame, manifest):
    cls = RESPONSES[1]
    version = manifest["api_version"]
    resp = cls.decode(frame, version=version, header=True, framed=True)
    errors = []
    if resp.header.correlation_id != manifest["correlation_id"]:
        errors.append("correlation id %r" % resp.header.correlation_id)
    if version >= 7 and (resp.error_code, resp.session_id) != (manifest["error_code"], manifest["session_id"]):
        errors.append("error code / session id %r %r" % (resp.error_code, resp.session_id))
    got_topics = []
    for t in resp.responses:
        parts = []
        for p in t.partitions:
            got = {
                "partition_index": p.partition_index,
                "error_code": p.error_code,
                "high_watermark": p.high_watermark,
                "last_stable_offset": p.last_stable_offset,
                "aborted_transactions": None if p.aborted_transactions is None else
                [[a.producer_id, a.first_offset] for a in p.aborted_transactions],
                "preferred_read_replica": p.preferred_read_replica if version >= 11 else -1,
                "records": _records(p.records),
            }
            if version >= 5:
                got["log_start_offset"] = p.log_start_offset
            if version >= 12 and p.current_leader is not None and p.current_leader.leader_id != -1:
                got["current_leader"] = [p.current_leader.leader_id, p.current_leader.leader_epoch]
            parts.append(got)
        got_topics.append({"topic": t.topic, "partitions": parts})
    if got_topics != manifest["topics"]:
        errors.append("topics %s" % json.dumps(got_topics))
    resp._header = None
    resp.API_VERSION = version
    resp.with_header(correlation_id=manifest["correlation_id"])
    again = bytes(resp.encode(header=True, framed=True))
    if again != frame:
        errors.append("re-encoded by kafka-python differs (%d vs %d bytes)" % (len(again), len(frame)))
    return errors


def _subset(want, got, path, errors):
    """Every field in `want` must be in `got` with the same value (lists: same length, in order)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            errors.append("%s: %r is not a struct" % (path, got))
            return
        for key, value in want.items():
            if key not in got:
                errors.append("%s.%s missing" % (path, key))
            else:
                _subset(value, got[key], "%s.%s" % (path, key), errors)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            errors.append("%s: %r, want %r" % (path, got, want))
            return
        for i, (w, g) in enumerate(zip(want, got)):
            _subset(w, g, "%s[%d]" % (path, i), errors)
    elif want != got:
        errors.append("%s: %r, want %r" % (path, got, want))


def check_generic(name, frame, manifest):
    """Decodes with the response class of the manifest's API and compares `expect` field by field."""
    cls = RESPONSES[manifest["api_key"]]
    version = manifest["api_version"]
    resp = cls.decode(frame, version=version, header=True, framed=True)
    errors = []
    if resp.header.correlation_id != manifest["correlation_id"]:
        errors.append("correlation id %r" % resp.header.correlation_id)
    _subset(manifest["expect"], resp.to_dict(), cls.name, errors)
    resp._header = None
    resp.API_VERSION = version
    resp.with_header(correlation_id=manifest["correlation_id"])
    again = bytes(resp.encode(header=True, framed=True))
    if again != frame:
        errors.append("re-encoded by kafka-python differs: %s vs %s" % (again.hex(), frame.hex()))
    return errors


CHECKS = {0: check_generic, 1: check_fetch, 2: check_generic, 3: check_generic, 18: check_api_versions,
          61: check_generic, 65: check_generic, 66: check_generic}


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "wire", "tests", "fixtures", "responses")
    names = sorted(n[:-5] for n in os.listdir(directory) if n.endswith(".json"))
    failed = 0
    for name in names:
        manifest = json.load(open(os.path.join(directory, name + ".json")))
        frame = open(os.path.join(directory, name + ".bin"), "rb").read()
        check = CHECKS.get(manifest["api_key"])
        if check is None:
            print("FAIL %s: no check for api key %d" % (name, manifest["api_key"]))
            failed += 1
            continue
        try:
            errors = check(name, frame, manifest)
        except Exception as e:  # a decode failure is a finding, not a crash of the checker
            errors = ["kafka-python could not decode it: %r" % e]
        print(("ok   %s" % name) if not errors else ("FAIL %s: %s" % (name, "; ".join(errors))))
        failed += bool(errors)
    if len(names) < CASES_MIN:
        sys.exit("only %d response cases in %s (expected at least %d)" % (len(names), directory, CASES_MIN))
    if failed:
        sys.exit("%d of %d responses failed" % (failed, len(names)))
    print("%d responses decoded by kafka-python as expected" % len(names))


if __name__ == "__main__":
    main()
