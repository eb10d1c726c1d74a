"""Hostile sockets next to a real client: while confluent-kafka produces and consumes, other
connections send garbage, a frame claiming 2 GiB, a truncated request and an unknown API key.
The broker must answer or close each bad connection, and the real client must not notice.
(The per-input protocol checks live in broker/tests/server.rs; this adds the concurrency.)"""

import os
import socket
import struct
import threading

import ck
from records import check_reads

RECORDS = 30_000
SOCKET_TIMEOUT_S = 10.0


def request(api_key: int, version: int, correlation_id: int, body: bytes = b"") -> bytes:
    client_id = b"e2e-raw"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def read_frame_or_close(sock: socket.socket) -> bytes | None:
    """The next response frame's payload, or None when the broker closed the connection."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (size,) = struct.unpack(">i", head)
    assert 0 <= size < 1 << 20, f"response frame of {size} bytes"
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def api_versions_ok(bootstrap_port: int) -> None:
    with socket.create_connection(("127.0.0.1", bootstrap_port), timeout=SOCKET_TIMEOUT_S) as s:
        s.sendall(request(18, 0, 4242))
        body = read_frame_or_close(s)
        assert body is not None, "broker closed a well-formed ApiVersions request"
        correlation_id, error_code = struct.unpack(">ih", body[:6])
        assert (correlation_id, error_code) == (4242, 0)


def hostile_connections(port: int, rounds: int, outcomes: list[str]) -> None:
    for i in range(rounds):
        cases = {
            # A complete frame of random bytes: a random length prefix could claim a frame the
            # broker rightly keeps waiting for.
            "garbage": struct.pack(">i", 4092) + os.urandom(4092),
            "2 GiB frame": struct.pack(">i", 0x7FFF_FFFF) + b"\x00\x12\x00\x00" * 64,
            "negative frame": struct.pack(">i", -5) + b"junk",
            "unknown api key": request(31_000, 0, 77),
            "truncated request": request(3, 1, 9, b"\x00\x00\x00\x05")[:9],
        }
        for name, data in cases.items():
            with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as s:
                s.sendall(data)
                if name == "truncated request":
                    # The rest never comes; the broker sees end of stream mid-frame.
                    s.shutdown(socket.SHUT_WR)
                try:
                    frame = read_frame_or_close(s)
                except ConnectionResetError:
                    frame = None
                except socket.timeout:
                    if name == "truncated request":
                        raise
                    # Still open and silent is acceptable only for inputs the broker is still
                    # waiting to complete; a 2 GiB claim or garbage must not be waited on.
                    raise AssertionError(f"{name}: broker neither answered nor closed in {SOCKET_TIMEOUT_S}s")
                outcomes.append(f"{name}: {'answered' if frame is not None else 'closed'}")
        api_versions_ok(port)


def test_real_client_unaffected_by_hostile_connections(broker):
    outcomes: list[str] = []
    failure: list[BaseException] = []

    def hostile():
        try:
            hostile_connections(broker.port, 20, outcomes)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            failure.append(e)

    ck.create_topic(broker.bootstrap, "beside-garbage")
    t = threading.Thread(target=hostile)
    t.start()
    topic = tag = "beside-garbage"
    acked = ck.produce_range(ck.producer(broker.bootstrap, acks="all"), topic, tag, range(RECORDS))
    reads = ck.consume_all(broker.bootstrap, topic, RECORDS)
    t.join(120)
    assert not t.is_alive()
    assert not failure, failure[0]
    assert len(outcomes) == 20 * 5
    check_reads(tag, reads, RECORDS, acked_offsets=acked)
    # Still serving new connections afterwards.
    api_versions_ok(broker.port)
