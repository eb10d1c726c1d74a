"""A quixstreams application run unmodified against Spate by test_quixstreams.py.

It runs in its own venv (.venv-quix: quixstreams pins an older confluent-kafka than the suite's),
so it imports nothing from the suite. What it does is what a stream-processing user writes on
day one: clicks keyed by device are regrouped by user (a repartition topic), counted in 10 s
tumbling windows (a RocksDB store backed by a compacted changelog topic), and each closed
window's count is written to an output topic.

Usage: quix_app.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC STATE_DIR IDLE_TIMEOUT_S [GUARANTEE [PER_CLICK_MS]]
It stops by itself once no input has arrived for IDLE_TIMEOUT_S, committing what it processed
(a graceful stop, as SIGTERM would be), and exits 0.

GUARANTEE is quixstreams' processing_guarantee, "at-least-once" (the default) or
"exactly-once". PER_CLICK_MS (default 0) is work done per input click, so a run lasts long
enough for the test to kill it while a checkpoint is open.
"""

from __future__ import annotations

import logging
import sys
import time

from quixstreams import Application

WINDOW_MS = 10_000
GROUP = "spate-quix-e2e"


def main() -> int:
    bootstrap, input_topic, output_topic, state_dir, idle_timeout_s = sys.argv[1:6]
    guarantee = sys.argv[6] if len(sys.argv) > 6 else "at-least-once"
    per_click_s = float(sys.argv[7]) / 1000 if len(sys.argv) > 7 else 0.0
    producer_config = {}
    consumer_config = {}
    if guarantee == "exactly-once":
        # One stable transactional.id (quixstreams picks a random one per start by default):
        # a restarted instance then fences the killed one and aborts its open transaction at
        # once, instead of every read_committed reader waiting for the transaction's timeout.
        producer_config["transactional.id"] = f"{GROUP}-txn"
        # A static member: a restart after kill -9 takes over the killed member's partitions
        # at once instead of waiting for its session (45 s by default) to expire.
        consumer_config["group.instance.id"] = f"{GROUP}-member-0"
    app = Application(
        broker_address=bootstrap,
        consumer_group=GROUP,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        # Commit often so a stop never has much to redo; the stop commits anyway.
        commit_interval=1.0,
        loglevel="INFO",
        processing_guarantee=guarantee,
        producer_extra_config=producer_config,
        consumer_extra_config=consumer_config,
    )
    clicks = app.topic(input_topic, value_deserializer="json", key_deserializer="str")
    counts = app.topic(output_topic, value_serializer="json", key_serializer="str")

    sdf = app.dataframe(clicks)
    if per_click_s:
        sdf = sdf.update(lambda _click: time.sleep(per_click_s))
    sdf = sdf.group_by("user", name="by_user")
    sdf = sdf.tumbling_window(WINDOW_MS).count().final()
    sdf = sdf.apply(
        lambda window, key, _timestamp, _headers: {
            "user": key,
            "start": window["start"],
            "end": window["end"],
            "count": window["value"],
        },
        metadata=True,
    )
    sdf.to_topic(counts)

    app.run(timeout=float(idle_timeout_s), collect=False)
    logging.getLogger("quix_app").info("stopped after %s s idle", idle_timeout_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
