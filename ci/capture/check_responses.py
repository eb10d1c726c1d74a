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
CASES_MIN = 6


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


CHECKS = {18: check_api_versions}


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
