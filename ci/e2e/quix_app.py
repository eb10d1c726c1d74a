"""A quixstreams application run unmodified against Spate by test_quixstreams.py.

It runs in its own venv (.venv-quix: quixstreams pins an older confluent-kafka than the suite's),
so it imports nothing from the suite. What it does is what a stream-processing user writes on
day one: clicks keyed by device are regrouped by user (a repartition topic), counted in 10 s
tumbling windows (a RocksDB store backed by a compacted changelog topic), and each closed
window's count is written to an output topic.

Usage: quix_app.py BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC STATE_DIR IDLE_TIMEOUT_S
It stops by itself once no input has arrived for IDLE_TIMEOUT_S, committing what it processed
(a graceful stop, as SIGTERM would be), and exits 0.
"""

from __future__ import annotations

import logging
import sys

from quixstreams import Application

WINDOW_MS = 10_000
GROUP = "spate-quix-e2e"


def main() -> int:
    bootstrap, input_topic, output_topic, state_dir, idle_timeout_s = sys.argv[1:6]
    app = Application(
        broker_address=bootstrap,
        consumer_group=GROUP,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        # Commit often so a stop never has much to redo; the stop commits anyway.
        commit_interval=1.0,
        loglevel="INFO",
    )
    clicks = app.topic(input_topic, value_deserializer="json", key_deserializer="str")
    counts = app.topic(output_topic, value_serializer="json", key_serializer="str")

    sdf = app.dataframe(clicks)
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
