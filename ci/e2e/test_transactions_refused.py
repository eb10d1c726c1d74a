"""Transactions are coordinated on a single broker only (#21; test_transactions.py). In a
cluster a transactional producer fails at once with a fatal error that says why, instead of
waiting for its timeout on a retriable error (#19). A producer without transactional.id is
unaffected."""

import time

import pytest
from confluent_kafka import KafkaException, Producer
from kafka import KafkaProducer

import ck
from test_cluster import start_cluster

REFUSED_WITHIN_S = 5.0


def test_confluent_init_transactions_fails_fast_in_a_cluster_and_says_why(start_broker):
    brokers = start_cluster(start_broker)
    p = Producer({"bootstrap.servers": brokers[0].bootstrap, "transactional.id": "tx-1"})
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        p.init_transactions(30)
    elapsed = time.monotonic() - started
    error = raised.value.args[0]
    assert elapsed < REFUSED_WITHIN_S, f"refused after {elapsed:.1f}s: {error}"
    assert error.fatal() or not error.retriable(), error
    assert "does not support transactions in a cluster" in error.str(), error.str()


def test_kafka_python_transactional_producer_fails_fast_in_a_cluster(start_broker):
    brokers = start_cluster(start_broker)
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        p = KafkaProducer(bootstrap_servers=brokers[1].bootstrap, transactional_id="tx-2",
                          max_block_ms=30_000)
        try:
            p.init_transactions()
        finally:
            p.close(timeout=1)
    elapsed = time.monotonic() - started
    assert elapsed < REFUSED_WITHIN_S, f"refused after {elapsed:.1f}s: {raised.value!r}"
    assert "TransactionalIdAuthorization" in type(raised.value).__name__ + repr(raised.value)


def test_an_idempotent_producer_still_works(broker):
    ck.create_topic(broker.bootstrap, "not-transactional", partitions=1)
    p = ck.producer(broker.bootstrap, enable_idempotence=True, acks="all")
    acked = ck.produce_range(p, "not-transactional", "nt", range(10), partitions=1)
    assert len(acked) == 10
