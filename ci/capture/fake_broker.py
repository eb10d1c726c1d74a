"""A tiny loopback Kafka listener that records every request frame a real client sends.

It exists to capture golden fixtures for spate-wire (see README.md next to this file). It is
not a broker: one node (id 1), every partition led by it, an in-memory log per partition,
answers just rich enough for librdkafka, kafka-python, aiokafka and kcat to carry on.

Responses are encoded with kafka-python's schema-driven protocol classes, used as a library.
Requests are decoded with the same classes only to steer the answers and to write the
manifest; the golden tests then decode the same bytes with spate-wire and compare.

Fixture layout: <out>/<client>/<scenario>/<nn>-<ApiName>-v<version>.bin holds one whole
request frame exactly as it crossed the socket, INCLUDING the 4-byte big-endian size prefix;
<same stem>.json is its manifest.
"""

import json
import os
import socket
import struct
import threading
import time
import uuid

from kafka.protocol.api_message import ApiMessage
from kafka.protocol.api_header import RequestHeader
from kafka.record.util import calc_crc32c
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
import kafka.protocol.metadata  # noqa: F401  (imports register the message classes)
import kafka.protocol.producer  # noqa: F401
import kafka.protocol.consumer  # noqa: F401
import kafka.protocol.admin  # noqa: F401

NODE_ID = 1
CLUSTER_ID = "spate-golden-cluster"
# A frame bigger than this is not something a capture run should ever see.
FRAME_BYTES_MAX = 1 << 20
# Keep fixtures small: at most this many frames per (api key, version) per scenario, except
# Produce, which is always kept whole so the manifests can account for every record sent.
FRAMES_PER_API_VERSION_MAX = 2

# The version ranges Spate will advertise (docs: PLATFORM-NOTES.md, issue #3).
SUPPORTED = {
    18: (0, 4),   # ApiVersions
    3: (0, 12),   # Metadata
    0: (0, 9),    # Produce
    1: (4, 12),   # Fetch
    2: (1, 7),    # ListOffsets
    19: (2, 7),   # CreateTopics
    20: (1, 6),   # DeleteTopics
    32: (1, 4),   # DescribeConfigs
    23: (2, 4),   # OffsetForLeaderEpoch
    22: (0, 4),   # InitProducerId
    # librdkafka switches LZ4 on only when FindCoordinator v0 is offered (it predates an API
    # version for LZ4), so a broker that wants lz4 batches from it must advertise this key.
    10: (0, 4),   # FindCoordinator
}

COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _message_classes():
    requests, responses = {}, {}
    for cls in _all_subclasses(ApiMessage):
        if getattr(cls, "_class_version", None) is not None:
            continue
        try:
            key = cls.API_KEY
        except Exception:
            continue
        (requests if cls.is_request() else responses)[key] = cls
    return requests, responses


REQUESTS, RESPONSES = _message_classes()


def parse_batches(records):
    """Walks v2 record batches; returns one dict per batch with its header fields."""
    out = []
    pos = 0
    buf = bytes(records or b"")
    while pos < len(buf):
        (base_offset, batch_length, leader_epoch, magic, crc, attributes, last_offset_delta,
         first_ts, max_ts, producer_id, producer_epoch, base_sequence, record_count) = struct.unpack_from(
            ">qiibIhiqqqhii", buf, pos)
        assert magic == 2, "capture expects record batch v2, got magic %d" % magic
        end = pos + 12 + batch_length
        assert end <= len(buf), "truncated batch in a client's request"
        computed = calc_crc32c(memoryview(buf)[pos + 21:end])
        assert computed == crc, "client batch crc mismatch"
        out.append({
            "base_offset": base_offset,
            "batch_bytes": end - pos,
            "magic": magic,
            "crc": crc,
            "attributes": attributes,
            "compression": COMPRESSION_NAMES[attributes & 7],
            "last_offset_delta": last_offset_delta,
            "producer_id": producer_id,
            "producer_epoch": producer_epoch,
            "base_sequence": base_sequence,
            "record_count": record_count,
            "transactional": bool(attributes & 0x10),
            "records": _records(buf[pos:end]),
        })
        pos = end
    return out


def _text(b):
    return None if b is None else bytes(b).decode("latin-1")


def _records(batch):
    """Key, value and headers of every record, read by kafka-python's own batch reader (which
    also decompresses): an independent view for the golden tests to compare with."""
    return [[_text(r.key), _text(r.value), [[k, _text(v)] for k, v in r.headers]]
            for r in DefaultRecordBatch(bytearray(batch))]


def build_batch(base_offset, values):
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    ts = 1_700_000_000_000
    for i, value in enumerate(values):
        builder.append(i, timestamp=ts + i, key=b"k%d" % i, value=value, headers=[("h", b"v")])
    batch = bytearray(builder.build())
    struct.pack_into(">q", batch, 0, base_offset)
    return bytes(batch)


class PartitionLog:
    def __init__(self):
        self.batches = []  # (base_offset, last_offset, bytes)
        self.end_offset = 0

    def append(self, batch):
        header = parse_batches(batch)[0]
        base = self.end_offset
        patched = bytearray(batch)
        struct.pack_into(">q", patched, 0, base)
        self.batches.append((base, base + header["last_offset_delta"], bytes(patched)))
        self.end_offset = base + header["last_offset_delta"] + 1
        return base

    def read(self, offset, max_bytes):
        out = b""
        for base, last, data in self.batches:
            if last >= offset and (not out or len(out) + len(data) <= max_bytes):
                out += data
        return out


class FakeBroker:
    """One-node fake broker. Use as a context manager; `port` is the listening port."""

    def __init__(self, out_dir, client, scenario, default_partitions=1, advertised=None):
        self.out_dir = os.path.join(out_dir, client, scenario)
        self.client = client
        self.scenario = scenario
        self.default_partitions = default_partitions
        self.advertised = dict(SUPPORTED if advertised is None else advertised)
        self.topics = {}  # name -> partition count
        self.logs = {}  # (topic, partition) -> PartitionLog
        self.topic_ids = {}
        self.lock = threading.Lock()
        self.seq = 0
        self.kept = {}  # (api key, version) -> frames written
        self.captured = []  # manifests, in order
        self.unhandled = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.threads = []

    # ---- lifecycle -------------------------------------------------------------------
    def __enter__(self):
        os.makedirs(self.out_dir, exist_ok=True)
        for name in os.listdir(self.out_dir):
            os.remove(os.path.join(self.out_dir, name))
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def __exit__(self, *exc):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        return False

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def add_topic(self, name, partitions=1, seed_values=None):
        with self.lock:
            self._ensure_topic(name, partitions)
            if seed_values:
                for p in range(partitions):
                    log = self.logs[(name, p)]
                    log.append(build_batch(0, seed_values))

    def _ensure_topic(self, name, partitions=None):
        if name not in self.topics:
            count = partitions or self.default_partitions
            self.topics[name] = count
            self.topic_ids[name] = uuid.uuid5(uuid.NAMESPACE_DNS, "spate-golden." + name)
            for p in range(count):
                self.logs[(name, p)] = PartitionLog()

    # ---- connection handling ---------------------------------------------------------
    def _accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _read_exact(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def _serve(self, conn):
        with conn:
            while not self.stopping:
                size_bytes = self._read_exact(conn, 4)
                if size_bytes is None:
                    return
                (size,) = struct.unpack(">i", size_bytes)
                assert 0 < size <= FRAME_BYTES_MAX, "frame size %d" % size
                body = self._read_exact(conn, size)
                if body is None:
                    return
                response = self._handle(size_bytes + body)
                if response is None:
                    continue
                conn.sendall(response)

    # ---- requests --------------------------------------------------------------------
    def _handle(self, frame):
        api_key, api_version, correlation_id = struct.unpack_from(">hhi", frame, 4)
        req_cls = REQUESTS.get(api_key)
        if api_key == 18 and api_version > self.advertised[18][1]:
            # KIP-511: a too-new ApiVersions is answered in v0 with UNSUPPORTED_VERSION and the ranges.
            self._record(frame, api_key, api_version, None, {"kip511_fallback": True})
            return self._encode(self._api_versions(0, error=35), 0, correlation_id)
        if req_cls is None or api_key not in self.advertised:
            self.unhandled.append((api_key, api_version))
            return None
        request = req_cls.decode(frame, version=api_version, header=True, framed=True)
        header = request.header
        handler = getattr(self, "_on_%d" % api_key)
        response, facts = handler(request, api_version, frame)
        self._record(frame, api_key, api_version, header, facts)
        if response is None:
            return None  # Produce with acks=0
        return self._encode(response, api_version, correlation_id)

    def _encode(self, response, version, correlation_id):
        response.API_VERSION = version
        response.with_header(correlation_id=correlation_id)
        return bytes(response.encode(header=True, framed=True))

    def _record(self, frame, api_key, api_version, header, facts):
        with self.lock:
            kept = self.kept.get((api_key, api_version), 0)
            if api_key != 0 and kept >= FRAMES_PER_API_VERSION_MAX:
                return
            self.kept[(api_key, api_version)] = kept + 1
            self.seq += 1
            api_name = REQUESTS[api_key].name.replace("Request", "")
            stem = "%02d-%s-v%d" % (self.seq, api_name, api_version)
            client_id = header.client_id if header is not None else None
            if client_id is None and header is None:
                # No schema decode for the fallback case: read the v1 header by hand.
                (n,) = struct.unpack_from(">h", frame, 12)
                client_id = frame[14:14 + n].decode() if n >= 0 else None
            (correlation_id,) = struct.unpack_from(">i", frame, 8)
            manifest = {
                "client": self.client,
                "scenario": self.scenario,
                "file": stem + ".bin",
                "frame_bytes": len(frame),
                "api_key": api_key,
                "api_name": api_name,
                "api_version": api_version,
                "correlation_id": correlation_id,
                "client_id": client_id,
            }
            manifest.update(facts)
            with open(os.path.join(self.out_dir, stem + ".bin"), "wb") as f:
                f.write(frame)
            with open(os.path.join(self.out_dir, stem + ".json"), "w") as f:
                json.dump(manifest, f, indent=1, sort_keys=True)
                f.write("\n")
            self.captured.append(manifest)

    # ApiVersions
    def _api_versions(self, version, error=0):
        cls = RESPONSES[18]
        keys = [cls.ApiVersion(api_key=k, min_version=lo, max_version=hi)
                for k, (lo, hi) in sorted(self.advertised.items())]
        return cls(error_code=error, api_keys=keys, throttle_time_ms=0)

    def _on_18(self, req, version, frame):
        facts = {}
        if version >= 3:
            facts["client_software_name"] = req.client_software_name
            facts["client_software_version"] = req.client_software_version
        return self._api_versions(version), facts

    # Metadata
    def _on_3(self, req, version, frame):
        cls = RESPONSES[3]
        with self.lock:
            if req.topics is None:
                names = sorted(self.topics)
                requested = None
            else:
                requested = [t.name for t in req.topics]
                for name in requested:
                    if name is not None:
                        self._ensure_topic(name)
                names = [n for n in requested if n is not None]
            topics = []
            for name in names:
                parts = [cls.MetadataResponseTopic.MetadataResponsePartition(
                    error_code=0, partition_index=p, leader_id=NODE_ID, leader_epoch=0,
                    replica_nodes=[NODE_ID], isr_nodes=[NODE_ID], offline_replicas=[])
                    for p in range(self.topics[name])]
                topics.append(cls.MetadataResponseTopic(
                    error_code=0, name=name, topic_id=self.topic_ids[name], is_internal=False,
                    partitions=parts))
        resp = cls(throttle_time_ms=0,
                   brokers=[cls.MetadataResponseBroker(node_id=NODE_ID, host="127.0.0.1", port=self.port, rack=None)],
                   cluster_id=CLUSTER_ID, controller_id=NODE_ID, topics=topics)
        facts = {"topics": requested}
        if version >= 4:
            facts["allow_auto_topic_creation"] = req.allow_auto_topic_creation
        return resp, facts

    # Produce
    def _on_0(self, req, version, frame):
        cls = RESPONSES[0]
        topics_out, batches_fact = [], []
        with self.lock:
            for td in req.topic_data:
                self._ensure_topic(td.name)
                parts = []
                for pd in td.partition_data:
                    batches = parse_batches(pd.records)
                    base = None
                    log = self.logs[(td.name, pd.index)]
                    pos = 0
                    raw = bytes(pd.records or b"")
                    for b in batches:
                        offset = log.append(raw[pos:pos + b["batch_bytes"]])
                        base = offset if base is None else base
                        pos += b["batch_bytes"]
                        batches_fact.append(dict(b, topic=td.name, partition=pd.index))
                    parts.append(cls.TopicProduceResponse.PartitionProduceResponse(
                        index=pd.index, error_code=0, base_offset=base if base is not None else -1,
                        log_append_time_ms=-1, log_start_offset=0, record_errors=[], error_message=None))
                topics_out.append(cls.TopicProduceResponse(name=td.name, partition_responses=parts))
        # Where each partition's records field sits in the frame, so a test can check that its
        # own request decoder finds the same bytes (records are found by content: unique here).
        records_at = []
        for td in req.topic_data:
            for pd in td.partition_data:
                raw = bytes(pd.records or b"")
                at = frame.find(raw) if raw else -1
                assert raw == b"" or frame.count(raw) == 1
                records_at.append([td.name, pd.index, at, len(raw)])
        facts = {
            "records_at": records_at,
            "acks": req.acks,
            "timeout_ms": req.timeout_ms,
            "transactional_id": req.transactional_id if version >= 3 else None,
            "topics": [td.name for td in req.topic_data],
            "partitions": [[td.name, pd.index] for td in req.topic_data for pd in td.partition_data],
            "batches": batches_fact,
        }
        if req.acks == 0:
            return None, facts
        return cls(responses=topics_out, throttle_time_ms=0), facts

    # Fetch
    def _on_1(self, req, version, frame):
        cls = RESPONSES[1]
        topics_out, facts_parts = [], []
        any_data = False
        for _attempt in range(2):
            topics_out, facts_parts = [], []
            with self.lock:
                for t in req.topics:
                    parts = []
                    for p in t.partitions:
                        log = self.logs.get((t.topic, p.partition))
                        facts_parts.append([t.topic, p.partition, p.fetch_offset])
                        if log is None:
                            parts.append(cls.FetchableTopicResponse.PartitionData(
                                partition_index=p.partition, error_code=3, high_watermark=-1,
                                last_stable_offset=-1, log_start_offset=-1, aborted_transactions=None,
                                preferred_read_replica=-1, records=b""))
                            continue
                        data = log.read(p.fetch_offset, p.partition_max_bytes)
                        any_data = any_data or bool(data)
                        parts.append(cls.FetchableTopicResponse.PartitionData(
                            partition_index=p.partition, error_code=0, high_watermark=log.end_offset,
                            last_stable_offset=log.end_offset, log_start_offset=0,
                            aborted_transactions=None, preferred_read_replica=-1, records=data))
                    topics_out.append(cls.FetchableTopicResponse(topic=t.topic, partitions=parts))
            if any_data:
                break
            # Nothing to return: wait like a real broker would, but briefly.
            time.sleep(min(req.max_wait_ms, 200) / 1000.0)
        resp = cls(throttle_time_ms=0, error_code=0, session_id=0, responses=topics_out)
        facts = {
            "max_wait_ms": req.max_wait_ms,
            "min_bytes": req.min_bytes,
            "max_bytes": req.max_bytes,
            "isolation_level": req.isolation_level,
            "fetch_partitions": facts_parts,
            "topics": [t.topic for t in req.topics],
        }
        return resp, facts

    # ListOffsets
    def _on_2(self, req, version, frame):
        cls = RESPONSES[2]
        topics_out, facts_parts = [], []
        with self.lock:
            for t in req.topics:
                parts = []
                for p in t.partitions:
                    log = self.logs.get((t.name, p.partition_index))
                    facts_parts.append([t.name, p.partition_index, p.timestamp])
                    end = log.end_offset if log else 0
                    offset = 0 if p.timestamp == -2 else end
                    parts.append(cls.ListOffsetsTopicResponse.ListOffsetsPartitionResponse(
                        partition_index=p.partition_index, error_code=0, timestamp=-1, offset=offset,
                        leader_epoch=0))
                topics_out.append(cls.ListOffsetsTopicResponse(name=t.name, partitions=parts))
        facts = {"replica_id": req.replica_id, "isolation_level": req.isolation_level if version >= 2 else 0,
                 "list_partitions": facts_parts, "topics": [t.name for t in req.topics]}
        return cls(throttle_time_ms=0, topics=topics_out), facts

    # CreateTopics
    def _on_19(self, req, version, frame):
        cls = RESPONSES[19]
        out = []
        facts_topics = []
        with self.lock:
            for t in req.topics:
                count = t.num_partitions if t.num_partitions > 0 else self.default_partitions
                self._ensure_topic(t.name, count)
                facts_topics.append([t.name, t.num_partitions, t.replication_factor])
                out.append(cls.CreatableTopicResult(
                    name=t.name, topic_id=self.topic_ids[t.name], error_code=0, error_message=None,
                    num_partitions=count, replication_factor=1, configs=[]))
        facts = {"create_topics": facts_topics, "timeout_ms": req.timeout_ms, "validate_only": req.validate_only,
                 "topics": [t.name for t in req.topics]}
        return cls(throttle_time_ms=0, topics=out), facts

    # DeleteTopics
    def _on_20(self, req, version, frame):
        cls = RESPONSES[20]
        names = [t.name for t in req.topics] if version >= 6 else list(req.topic_names)
        out = [cls.DeletableTopicResult(name=n, topic_id=self.topic_ids.get(n, uuid.UUID(int=0)),
                                        error_code=0, error_message=None) for n in names]
        return cls(throttle_time_ms=0, responses=out), {"topics": names, "timeout_ms": req.timeout_ms}

    # DescribeConfigs
    def _on_32(self, req, version, frame):
        cls = RESPONSES[32]
        results = []
        facts_res = []
        for r in req.resources:
            facts_res.append([r.resource_type, r.resource_name,
                              None if r.configuration_keys is None else list(r.configuration_keys)])
            cfg = cls.DescribeConfigsResult.DescribeConfigsResourceResult(
                name="retention.ms", value="604800000", read_only=False, config_source=5,
                is_default=True, is_sensitive=False, synonyms=[], config_type=5, documentation=None)
            results.append(cls.DescribeConfigsResult(
                error_code=0, error_message=None, resource_type=r.resource_type,
                resource_name=r.resource_name, configs=[cfg]))
        return cls(throttle_time_ms=0, results=results), {"resources": facts_res}

    # OffsetForLeaderEpoch
    def _on_23(self, req, version, frame):
        cls = RESPONSES[23]
        topics_out = []
        with self.lock:
            for t in req.topics:
                parts = []
                for p in t.partitions:
                    log = self.logs.get((t.topic, p.partition))
                    parts.append(cls.OffsetForLeaderTopicResult.EpochEndOffset(
                        error_code=0, partition=p.partition, leader_epoch=0,
                        end_offset=log.end_offset if log else 0))
                topics_out.append(cls.OffsetForLeaderTopicResult(topic=t.topic, partitions=parts))
        return cls(throttle_time_ms=0, topics=topics_out), {"topics": [t.topic for t in req.topics]}

    # InitProducerId
    def _on_22(self, req, version, frame):
        cls = RESPONSES[22]
        facts = {"transactional_id": req.transactional_id,
                 "transaction_timeout_ms": req.transaction_timeout_ms}
        return cls(throttle_time_ms=0, error_code=0, producer_id=4242, producer_epoch=0), facts

    # FindCoordinator: this node coordinates everything.
    def _on_10(self, req, version, frame):
        cls = RESPONSES[10]
        if version >= 4:
            keys = list(req.coordinator_keys)
            coords = [cls.Coordinator(key=k, node_id=NODE_ID, host="127.0.0.1", port=self.port,
                                      error_code=0, error_message=None) for k in keys]
            resp = cls(throttle_time_ms=0, coordinators=coords)
        else:
            keys = [req.key]
            resp = cls(throttle_time_ms=0, error_code=0, error_message=None, node_id=NODE_ID,
                       host="127.0.0.1", port=self.port)
        return resp, {"coordinator_keys": keys, "key_type": req.key_type if version >= 1 else 0}

    # ---- consumer groups: one member, which is also the leader -------------------------------
    # Offered only to group scenarios (GROUP_APIS): the other scenarios' fixtures were captured
    # without them, and a broker without groups must not advertise them.
    def _member(self, req):
        return req.member_id or "golden-member-1"

    # JoinGroup: accept at once (no MEMBER_ID_REQUIRED round), this member leads generation 1.
    def _on_11(self, req, version, frame):
        cls = RESPONSES[11]
        member = self._member(req)
        protocol = req.protocols[0]
        resp = cls(throttle_time_ms=0, error_code=0, generation_id=1, protocol_type=req.protocol_type,
                   protocol_name=protocol.name, leader=member, skip_assignment=False, member_id=member,
                   members=[cls.JoinGroupResponseMember(member_id=member, group_instance_id=None,
                                                        metadata=protocol.metadata)])
        facts = {"group_id": req.group_id, "member_id": req.member_id, "protocol_type": req.protocol_type,
                 "protocols": [p.name for p in req.protocols], "session_timeout_ms": req.session_timeout_ms}
        return resp, facts

    # SyncGroup: hand the leader's assignment for this member back to it.
    def _on_14(self, req, version, frame):
        cls = RESPONSES[14]
        mine = [a.assignment for a in req.assignments if a.member_id == req.member_id]
        resp = cls(throttle_time_ms=0, error_code=0, protocol_type=req.protocol_type if version >= 5 else None,
                   protocol_name=req.protocol_name if version >= 5 else None, assignment=mine[0] if mine else b"")
        facts = {"group_id": req.group_id, "generation_id": req.generation_id, "member_id": req.member_id,
                 "assignments": len(req.assignments)}
        return resp, facts

    def _on_12(self, req, version, frame):
        facts = {"group_id": req.group_id, "generation_id": req.generation_id, "member_id": req.member_id}
        return RESPONSES[12](throttle_time_ms=0, error_code=0), facts

    def _on_13(self, req, version, frame):
        cls = RESPONSES[13]
        if version >= 3:
            members = [m.member_id for m in req.members]
            resp = cls(throttle_time_ms=0, error_code=0, members=[
                cls.MemberResponse(member_id=m.member_id, group_instance_id=m.group_instance_id, error_code=0)
                for m in req.members])
        else:
            members = [req.member_id]
            resp = cls(throttle_time_ms=0, error_code=0)
        return resp, {"group_id": req.group_id, "members": members}

    # OffsetFetch: nothing committed yet (-1) for every partition asked about.
    def _on_9(self, req, version, frame):
        cls = RESPONSES[9]
        if version >= 8:
            groups, facts_groups = [], []
            for g in req.groups:
                topics = [cls.OffsetFetchResponseGroup.OffsetFetchResponseTopics(
                    name=t.name, partitions=[
                        cls.OffsetFetchResponseGroup.OffsetFetchResponseTopics.OffsetFetchResponsePartitions(
                            partition_index=p, committed_offset=-1, committed_leader_epoch=-1, metadata="",
                            error_code=0) for p in t.partition_indexes])
                    for t in (g.topics or [])]
                groups.append(cls.OffsetFetchResponseGroup(group_id=g.group_id, topics=topics, error_code=0))
                facts_groups.append([g.group_id, [[t.name, list(t.partition_indexes)] for t in (g.topics or [])]])
            return cls(throttle_time_ms=0, groups=groups), {"groups": facts_groups}
        topics = [cls.OffsetFetchResponseTopic(name=t.name, partitions=[
            cls.OffsetFetchResponseTopic.OffsetFetchResponsePartition(
                partition_index=p, committed_offset=-1, committed_leader_epoch=-1, metadata="", error_code=0)
            for p in t.partition_indexes]) for t in (req.topics or [])]
        facts = {"groups": [[req.group_id, [[t.name, list(t.partition_indexes)] for t in (req.topics or [])]]]}
        return cls(throttle_time_ms=0, topics=topics, error_code=0), facts

    # OffsetCommit: every partition committed.
    def _on_8(self, req, version, frame):
        cls = RESPONSES[8]
        topics = [cls.OffsetCommitResponseTopic(name=t.name, partitions=[
            cls.OffsetCommitResponseTopic.OffsetCommitResponsePartition(partition_index=p.partition_index,
                                                                        error_code=0)
            for p in t.partitions]) for t in req.topics]
        facts = {"group_id": req.group_id, "member_id": req.member_id,
                 "commits": [[t.name, p.partition_index, p.committed_offset] for t in req.topics
                             for p in t.partitions]}
        return cls(throttle_time_ms=0, topics=topics), facts


# Consumer-group APIs with the ranges Spate's version table lists for them.
GROUP_APIS = {8: (2, 8), 9: (1, 8), 11: (0, 7), 12: (0, 4), 13: (0, 4), 14: (0, 5)}
