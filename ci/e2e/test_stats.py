"""The broker logs request-time percentiles per API and core (`--stats-interval-ms`): after real
clients produced and fetched, the log holds `request time` lines for Produce and Fetch whose
request counts add up, and `log append time` lines counting at least one append per
Produce request. Percentiles are one JSON field each (`total_p99_us`...), not a string to
parse; a log written to a file carries no colour codes."""

import json
import resource

import ck

RECORDS = 5_000
PARTITIONS = 2


def stats_lines(log_text: str, message: str) -> list[dict]:
    lines = []
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        fields = json.loads(line).get("fields", {})
        if fields.get("message") == message:
            lines.append(fields)
    return lines


def percentiles(fields: dict, stage: str) -> None:
    """`stage`'s percentile fields are integers in order (p99.9 where the line has it)."""
    names = [f"{stage}_p50_us", f"{stage}_p99_us", f"{stage}_p999_us", f"{stage}_max_us"]
    values = [fields[n] for n in names if n in fields]
    assert len(values) >= 3, (stage, fields)
    assert all(isinstance(v, int) for v in values), (stage, fields)
    assert 1 <= values[0] and values == sorted(values), (stage, values)


def test_request_time_lines_count_what_clients_sent(start_broker):
    broker = start_broker(cores=2, args=["--log-format", "json", "--stats-interval-ms", "300"])
    ck.create_topic(broker.bootstrap, "stats", partitions=PARTITIONS)
    p = ck.producer(broker.bootstrap, acks=1)
    ck.produce_range(p, "stats", "stats", range(RECORDS), partitions=PARTITIONS)
    reads = ck.consume_all(broker.bootstrap, "stats", RECORDS, partitions=PARTITIONS)
    assert len(reads) == RECORDS
    # The last interval is logged at shutdown, so nothing recorded is left out.
    broker.stop_clean()

    text = broker.log_path.read_text(errors="replace")
    budget = stats_lines(text, "registered buffer budget")
    assert budget, text[:2000]
    # The broker inherits this process's RLIMIT_MEMLOCK; it names the limit, and leaves the
    # field out only when there is none.
    memlock_soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if memlock_soft == resource.RLIM_INFINITY:
        assert "memlock_limit_bytes" not in budget[0], budget
    else:
        assert budget[0]["memlock_limit_bytes"] == memlock_soft, budget
    requests = stats_lines(text, "request time")
    by_api: dict[str, int] = {}
    for fields in requests:
        assert fields["core"] in (0, 1)
        for stage in ("total", "queue", "handle", "send"):
            percentiles(fields, stage)
        by_api[fields["api"]] = by_api.get(fields["api"], 0) + fields["requests"]
    assert by_api.get("Produce", 0) >= 1, by_api
    assert by_api.get("Fetch", 0) >= 1, by_api
    assert by_api.get("Metadata", 0) >= 1, by_api

    appends = stats_lines(text, "log append time")
    for fields in appends:
        percentiles(fields, "append")
    # One append per partition batch: at least one per Produce request, and every record is
    # in some batch, so at most one per record.
    total_appends = sum(fields["appends"] for fields in appends)
    assert by_api["Produce"] <= total_appends <= RECORDS, (by_api, total_appends)


def test_a_log_written_to_a_file_has_no_colour_codes(start_broker):
    broker = start_broker(cores=1)
    ck.create_topic(broker.bootstrap, "plain", partitions=1)
    broker.stop_clean()
    text = broker.log_path.read_text(errors="replace")
    assert "topic created" in text
    assert "\x1b[" not in text, text[:500]


def option_debug_in(value) -> list[str]:
    """The string values anywhere in a JSON log line that are Rust's Debug of an Option."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in option_debug_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in option_debug_in(v)]
    if isinstance(value, str) and (value == "None" or "Some(" in value):
        return [value]
    return []


def test_a_json_log_has_structured_fields_not_option_debug(start_broker):
    """An idempotent producer makes the broker log its client id (InitProducerId): a JSON log
    carries it as a plain string, and no field anywhere is Debug's `Some(...)` or `None`."""
    broker = start_broker(cores=1, args=["--log-format", "json"])
    ck.create_topic(broker.bootstrap, "idem", partitions=1)
    p = ck.producer(broker.bootstrap, enable_idempotence=True, client_id="json-log-test")
    acked = ck.produce_range(p, "idem", "idem", range(100), partitions=1)
    assert len(acked) == 100
    broker.stop_clean()

    text = broker.log_path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert len(lines) >= 10, text[:2000]
    allocated = stats_lines(text, "producer id allocated")
    assert allocated and all(f["client"] == "json-log-test" for f in allocated), allocated
    for line in lines:
        assert "Some(" not in line, line
        assert not option_debug_in(json.loads(line)), line


def test_a_fresh_broker_sums_up_consumer_offsets_in_a_few_lines(start_broker):
    """A fresh broker creates `__consumer_offsets` (50 partitions) and opens it: its startup
    log says so in a summary, not in one INFO line per partition as it once did."""
    broker = start_broker(cores=2, args=["--log-format", "json"])
    ck.create_topic(broker.bootstrap, "after-startup", partitions=1)
    broker.stop_clean()

    text = broker.log_path.read_text(errors="replace")
    mentions = [
        line
        for line in text.splitlines()
        if line.startswith("{")
        and json.loads(line).get("level") == "INFO"
        and "__consumer_offsets" in line
    ]
    # At least the line saying it was created, so this cannot pass on an empty log.
    assert any("created __consumer_offsets" in line for line in mentions), text[:3000]
    assert len(mentions) < 15, "\n".join(mentions)
