"""Reads the record batches a broker stored, straight from its segment files.

Spate stores Kafka v2 record batches byte for byte, so the file shows what the client really
sent (a client may fall back to no compression without saying so; a round trip alone would
not notice)."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes.
_HEADER = struct.Struct(">qiibIh")
_LOG_OVERHEAD_BYTES = 12  # baseOffset and batchLength precede the counted length


def stored_codecs(data_dir: Path, topic: str, partition: int) -> Counter:
    """Counts stored batches by compression codec id (attributes & 7)."""
    counts: Counter = Counter()
    segments = sorted((data_dir / f"{topic}-{partition}").glob("*.log"))
    assert segments, f"no segment files for {topic}-{partition} in {data_dir}"
    for segment in segments:
        with open(segment, "rb") as f:
            while True:
                header = f.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                _, length, _, magic, _, attributes = _HEADER.unpack(header)
                if length == 0:
                    break  # preallocated, never written
                assert magic == 2, f"{segment}: batch at {f.tell() - _HEADER.size} has magic {magic}"
                counts[attributes & 0x7] += 1
                f.seek(_LOG_OVERHEAD_BYTES + length - _HEADER.size, 1)
    return counts


# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
# baseTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, recordCount.
_FULL_HEADER = struct.Struct(">qiibIhiqqqhii")
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20


def stored_batches(data_dir: Path, topic: str, partition: int, below: int | None = None) -> list[dict]:
    """Every stored batch's header fields (`base_offset`, `attributes`, `producer_id`,
    `record_count`, `is_control`, `is_transactional`), in file order; with `below`, only the
    segments whose base offset is below it (e.g. the closed ones, below the active base)."""
    batches: list[dict] = []
    segments = sorted((data_dir / f"{topic}-{partition}").glob("*.log"))
    assert segments, f"no segment files for {topic}-{partition} in {data_dir}"
    for segment in segments:
        if below is not None and int(segment.name[:20]) >= below:
            continue
        with open(segment, "rb") as f:
            while True:
                header = f.read(_FULL_HEADER.size)
                if len(header) < _FULL_HEADER.size:
                    break
                (base, length, _, magic, _, attributes, _, _, _, producer_id, _, _,
                 count) = _FULL_HEADER.unpack(header)
                if length == 0:
                    break  # preallocated, never written
                assert magic == 2, f"{segment}: batch at {f.tell() - _FULL_HEADER.size} has magic {magic}"
                batches.append({
                    "base_offset": base,
                    "attributes": attributes,
                    "producer_id": producer_id,
                    "record_count": count,
                    "is_control": bool(attributes & ATTR_CONTROL),
                    "is_transactional": bool(attributes & ATTR_TRANSACTIONAL),
                })
                f.seek(_LOG_OVERHEAD_BYTES + length - _FULL_HEADER.size, 1)
    return batches
