"""Deterministic test records and the exact checks every client test applies to what it reads.

Record `i` of a run goes to partition `i % partitions`, so each partition receives an
increasing subsequence of sequence numbers; key, value and headers are all derived from `i`,
so a record read back can be checked byte for byte without keeping the sent data around.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

PARTITIONS = 6
RECORDS_PER_CLIENT = 100_000

# Filler makes values big enough that batches span many records and compression has work to
# do, while keeping 100k records a few MB.
_FILLER = b"spate-e2e-payload-" * 3


def key_of(seq: int) -> bytes:
    return b"key-%08d" % seq


def value_of(tag: str, seq: int) -> bytes:
    return b"%s|%08d|" % (tag.encode(), seq) + _FILLER


def headers_of(tag: str, seq: int) -> list[tuple[str, bytes]]:
    return [("seq", b"%d" % seq), ("client", tag.encode())]


def partition_of(seq: int, partitions: int = PARTITIONS) -> int:
    return seq % partitions


def seq_of(value: bytes) -> int:
    return int(value.split(b"|")[1])


@dataclass(frozen=True)
class Read:
    """One record as read back by a consumer, normalised across clients."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def normalise_headers(headers) -> tuple[tuple[str, bytes], ...]:
    if not headers:
        return ()
    return tuple((k, bytes(v) if v is not None else None) for k, v in headers)


def check_reads(
    tag: str,
    reads: list[Read],
    count: int,
    partitions: int = PARTITIONS,
    with_headers: bool = True,
    acked_offsets: dict[int, tuple[int, int]] | None = None,
) -> None:
    """Asserts `reads` holds records 0..count-1 exactly once each, dense from offset 0 in
    every partition, in send order within a partition, with key/value/headers intact.

    `acked_offsets` maps seq -> (partition, offset) as reported by the producer; when given,
    every record must sit exactly where its acknowledgement said.
    """
    assert len(reads) == count, f"read {len(reads)} records, expected exactly {count}"
    by_partition: dict[int, list[Read]] = {p: [] for p in range(partitions)}
    for r in reads:
        assert r.partition in by_partition, f"record from unexpected partition {r.partition}"
        by_partition[r.partition].append(r)
    for p, records in by_partition.items():
        expected_seqs = list(range(p, count, partitions))
        assert len(records) == len(expected_seqs), (
            f"partition {p}: {len(records)} records, expected {len(expected_seqs)}"
        )
        offsets = [r.offset for r in records]
        assert offsets == list(range(len(records))), f"partition {p}: offsets not dense from 0"
        for r, seq in zip(records, expected_seqs):
            assert r.value == value_of(tag, seq), (
                f"partition {p} offset {r.offset}: value {r.value[:40]!r}, expected seq {seq}"
            )
            assert r.key == key_of(seq), f"partition {p} offset {r.offset}: key {r.key!r}"
            if with_headers:
                assert r.headers == tuple(headers_of(tag, seq)), (
                    f"partition {p} offset {r.offset}: headers {r.headers!r}"
                )
            if acked_offsets is not None:
                assert acked_offsets[seq] == (p, r.offset), (
                    f"seq {seq} acknowledged at {acked_offsets[seq]}, read at {(p, r.offset)}"
                )


class Deadline:
    """A wall-clock bound on a wait loop, so a broken broker fails a test instead of hanging it."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())
