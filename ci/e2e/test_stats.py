"""The broker logs request-time percentiles per API and core (`--stats-interval-ms`): after real
clients produced and fetched, the log holds `request time` lines for Produce and Fetch whose
request counts add up, and `log append time` lines counting at least one append per
Produce request. Percentiles are one JSON field each (`total_p99_us`...), not a string to
parse; a log written to a file carries no colour codes."""

import json

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
    assert budget and isinstance(budget[0].get("memlock_limit_bytes", 0), int), budget
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
