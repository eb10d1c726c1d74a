"""The broker logs request-time percentiles per API and core (`--stats-interval-ms`): after real
clients produced and fetched, the log holds `request time` lines for Produce and Fetch whose
request counts add up, and `log append time` lines counting at least one append per
Produce request."""

import json
import re

import ck

RECORDS = 5_000
PARTITIONS = 2
PERCENTILES = re.compile(r"^p50=(\d+) p99=(\d+) p99\.9=(\d+) max=(\d+)$")


def stats_lines(log_text: str, message: str) -> list[dict]:
    lines = []
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        fields = json.loads(line).get("fields", {})
        if fields.get("message") == message:
            lines.append(fields)
    return lines


def percentiles(text: str) -> tuple[int, int, int, int]:
    match = PERCENTILES.match(text)
    assert match, f"not a percentile summary: {text!r}"
    p50, p99, p999, top = (int(g) for g in match.groups())
    assert 1 <= p50 <= p99 <= p999 <= top, text
    return p50, p99, p999, top


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
    requests = stats_lines(text, "request time")
    by_api: dict[str, int] = {}
    for fields in requests:
        assert fields["core"] in (0, 1)
        for stage in ("total_us", "queue_us", "handle_us", "send_us"):
            percentiles(fields[stage])
        by_api[fields["api"]] = by_api.get(fields["api"], 0) + fields["requests"]
    assert by_api.get("Produce", 0) >= 1, by_api
    assert by_api.get("Fetch", 0) >= 1, by_api
    assert by_api.get("Metadata", 0) >= 1, by_api

    appends = stats_lines(text, "log append time")
    for fields in appends:
        percentiles(fields["append_us"])
    # One append per partition batch: at least one per Produce request, and every record is
    # in some batch, so at most one per record.
    total_appends = sum(fields["appends"] for fields in appends)
    assert by_api["Produce"] <= total_appends <= RECORDS, (by_api, total_appends)
