#!/usr/bin/env bash
# Produce latency with and without the log cleaner running, in one session.
#
#   bash bench/compaction.sh [RUNS] [CLEANER_IO_BYTES_PER_S]
#
# Needs release binaries (cargo build --release -p spate-broker -p spate-bench) and the e2e venv
# (.venv with confluent-kafka, made by ci/e2e.sh) for the preload. Prints one line per run and
# leaves JSON summaries and broker logs in $OUT (default target dir/compaction-bench).
#
# Each run pair: (a) a broker with an empty data dir, (b) a broker on a copy of a preloaded data
# dir holding a compacted topic of PRELOAD_RECORDS dirty records, never cleaned (so no
# cleaner-checkpoint: cleaning starts at startup), each measured with the same
# spate-bench command: broker on CPU 0 (--cores 1), bench on CPU 1, 100 B records, acks=1,
# open loop at RATE msg/s for DURATION_S s, no consumer.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
runs=${1:-3}
cleaner_io=${2:-52428800}
target=${CARGO_TARGET_DIR:-$repo/target}
spate=$target/release/spate
bench=$target/release/spate-bench
out=${OUT:-$target/compaction-bench}
rate=${RATE:-200000}
duration_s=${DURATION_S:-10}
preload_records=${PRELOAD_RECORDS:-1500000}
python=${PYTHON:-$repo/.venv/bin/python}
test -x "$spate" && test -x "$bench" && test -x "$python"
rm -rf "$out"
mkdir -p "$out"
broker_pid=
# Never leave a broker behind when a step fails.
trap '[ -n "$broker_pid" ] && kill -TERM "$broker_pid" 2>/dev/null; true' EXIT

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_broker DIR LOG EXTRA...: sets $broker_pid and $port.
start_broker() {
    local dir=$1 log=$2
    shift 2
    port=$(free_port)
    taskset -c 0 "$spate" --listen 127.0.0.1:"$port" --admin-listen 127.0.0.1:0 --data-dir "$dir" --cores 1 "$@" >"$log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 300); do
        if grep -q "accepting connections" "$log"; then return 0; fi
        sleep 0.1
    done
    echo "broker did not start; see $log" >&2
    exit 1
}

stop_broker() {
    kill -TERM "$broker_pid"
    wait "$broker_pid" || true
    broker_pid=
}

echo "== preload: $preload_records keyed records (10000 keys, 200 B values) into a compacted topic"
start_broker "$out/preloaded" "$out/preload.log" --log-cleaner-backoff-ms 86400000
"$python" - "$port" "$preload_records" <<'EOF'
import os, sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
port, n = sys.argv[1], int(sys.argv[2])
bootstrap = f"127.0.0.1:{port}"
config = {"cleanup.policy": "compact", "segment.bytes": str(8 << 20), "min.cleanable.dirty.ratio": "0.5"}
admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics(
    [NewTopic("compacted", num_partitions=1, replication_factor=1, config=config)])["compacted"].result(15)
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 5000,
              "queue.buffering.max.messages": 200000})
value = os.urandom(100).hex().encode()
for i in range(n):
    while True:
        try:
            p.produce("compacted", key=b"k%05d" % (i % 10000), value=value, partition=0)
            break
        except BufferError:
            p.poll(0.05)
assert p.flush(120) == 0
EOF
stop_broker
du -sh "$out/preloaded/compacted-0"

bench_once() {
    local name=$1
    taskset -c 1 "$bench" run --bootstrap 127.0.0.1:"$port" --cpu 1 --quiet --json "$out/$name.json" \
        --acks 1 --rate "$rate" --consumers 0 --message-bytes 100 --duration-s "$duration_s" >/dev/null
    "$python" -c 'import json,sys; s=json.load(open(sys.argv[1])); a=s["ack_latency"]; print("%s: acked %d p50 %.0f us p99 %.0f us p99.9 %.0f us max %.0f us" % (sys.argv[2], s["acked"], a["p50_us"], a["p99_us"], a["p99_9_us"], a["max_us"]))' "$out/$name.json" "$name"
}

for run in $(seq "$runs"); do
    rm -rf "$out/empty"
    start_broker "$out/empty" "$out/without-$run.log"
    bench_once "without-$run"
    stop_broker

    rm -rf "$out/dirty"
    cp -r "$out/preloaded" "$out/dirty"
    start_broker "$out/dirty" "$out/with-$run.log" --log-cleaner-backoff-ms 1000 \
        --log-cleaner-io-max-bytes-per-second "$cleaner_io"
    bench_once "with-$run"
    stop_broker
    # The cleaning must have overlapped the bench: it started with the broker; its log line
    # gives when it ended.
    grep -o 'log cleaned.*' "$out/with-$run.log" | head -1 || echo "with-$run: the cleaner logged no cleaning"
done
