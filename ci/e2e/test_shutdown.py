"""SIGTERM drains connections and exits 0 without waiting out the drain timeout, also when a
consumer that had a long-poll Fetch parked on the other core's partition went away just before.

Found through the 10 s teardowns of the round-trip tests: the broker logged "drain timed out
core=N open=1" and `ss` showed the connection in CLOSE-WAIT with its FIN unread. A Fetch for
partitions on both cores is forwarded to the other core; that core stops first and the
connection waits for a reply that never comes. Fixed in 124b5db (cores serve each other until
all have drained); this guards against it coming back."""

from confluent_kafka import TopicPartition

import ck

ROUNDS = 6


def test_sigterm_after_a_consumer_left_mid_fetch_does_not_wait_for_the_drain_timeout(start_broker):
    broker = start_broker(cores=2)
    ck.create_topic(broker.bootstrap, "parked", partitions=2)
    for round_ in range(ROUNDS):
        c = ck.consumer(broker.bootstrap, fetch_wait_max_ms=500)
        c.assign([TopicPartition("parked", 0, 0), TopicPartition("parked", 1, 0)])
        for _ in range(5):
            assert c.poll(0.1) is None  # empty partitions: Fetches park in the broker
        c.close()
        broker.stop_clean()
        log = broker.log_path.read_text(errors="replace")
        this_run = log.rsplit(f"===== start #{broker.starts}:", 1)[-1]
        assert "drain timed out" not in this_run, f"round {round_}:\n{broker.log_tail(12)}"
        broker.restart()
