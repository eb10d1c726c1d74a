#!/usr/bin/env bash
# Produce throughput and ack latency with replication factor 3 and acks=all against replication
# factor 1 on the same three broker processes, in one session (runs alternate, so both see the
# same machine noise).
#
#   bash bench/replication.sh [RUNS]
#
# Needs release binaries (cargo build --release -p spate-broker -p spate-bench) and the e2e venv
# (.venv with confluent-kafka, made by ci/e2e.sh) to create the topics. Three brokers of one core
# each on loopback (a cluster of three voters), the bench on the same machine; each run is
# `spate-bench run` with 100 B records, acks=all, one partition, closed loop (RATE=0) or open
# loop at RATE msg/s, for DURATION_S s. Prints one line per run and leaves JSON summaries and
# broker logs in $OUT (default target dir/replication-bench); the brokers' data dirs (gigabytes
# after a few runs) are removed on exit.
#
# The topics: `rf1` (replication factor 1) and `rf3` (replication factor 3, min.insync.replicas
# 2, write.caching as WRITE_CACHING, default false: followers fsync before they count). Both are
# led by the same broker (the bench is pointed at it), so the difference is replication's.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
runs=${1:-3}
target=${CARGO_TARGET_DIR:-$repo/target}
spate=$target/release/spate
bench=$target/release/spate-bench
out=${OUT:-$target/replication-bench}
rate=${RATE:-0}
duration_s=${DURATION_S:-10}
write_caching=${WRITE_CACHING:-false}
python=${PYTHON:-$repo/.venv/bin/python}
test -x "$spate" && test -x "$bench" && test -x "$python"
rm -rf "$out"
mkdir -p "$out"
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done; wait; rm -rf "$out"/data?; true' EXIT

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ports=() cluster_ports=()
for i in 1 2 3; do
    ports+=("$(free_port)")
    cluster_ports+=("$(free_port)")
done
voters="1@127.0.0.1:${cluster_ports[0]},2@127.0.0.1:${cluster_ports[1]},3@127.0.0.1:${cluster_ports[2]}"
for i in 1 2 3; do
    log=$out/node$i.log
    "$spate" --listen 127.0.0.1:"${ports[$((i - 1))]}" --admin-listen 127.0.0.1:0 \
        --data-dir "$out/data$i" --cores 1 --node-id "$i" \
        --cluster-listen 127.0.0.1:"${cluster_ports[$((i - 1))]}" --controller-voters "$voters" \
        --stats-interval-ms 0 >"$log" 2>&1 &
    pids+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 300); do
        if grep -q "accepting connections" "$out/node$i.log"; then break; fi
        sleep 0.1
    done
done

# Both topics on partition leaders of broker 1: an explicit assignment with broker 1 first.
"$python" - "${ports[0]}" "$write_caching" <<'EOF'
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
port, write_caching = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
deadline = time.monotonic() + 30
while len(admin.list_topics(timeout=10).brokers) < 3:
    assert time.monotonic() < deadline, "the cluster did not form"
    time.sleep(0.2)
topics = [
    NewTopic("rf1", 1, replica_assignment=[[1]]),
    NewTopic("rf3", 1, replica_assignment=[[1, 2, 3]],
             config={"min.insync.replicas": "2", "write.caching": write_caching}),
]
for name, f in admin.create_topics(topics).items():
    f.result(timeout=30)
deadline = time.monotonic() + 30
while True:
    md = admin.list_topics(timeout=10)
    p = md.topics["rf3"].partitions.get(0) if "rf3" in md.topics else None
    if p is not None and p.leader == 1 and sorted(p.isrs) == [1, 2, 3]:
        break
    assert time.monotonic() < deadline, f"rf3 not in sync: {p}"
    time.sleep(0.2)
EOF

printf '%-4s %-4s %12s %12s %12s %12s\n' run rf 'msgs/s' 'ack p50 us' 'ack p99 us' 'e2e p99 us'
for run in $(seq "$runs"); do
    for rf in 1 3; do
        json=$out/run$run-rf$rf.json
        "$bench" run --bootstrap 127.0.0.1:"${ports[0]}" --topic "rf$rf" --acks all \
            --message-bytes 100 --rate "$rate" --duration-s "$duration_s" --quiet \
            --io-memory-kib 512 --json "$json" >"$out/run$run-rf$rf.out" 2>&1
        "$python" - "$json" "$run" "$rf" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<4} {sys.argv[3]:<4} {s['produce_rate']:12.0f} "
      f"{s['ack_latency']['p50_us']:12.0f} {s['ack_latency']['p99_us']:12.0f} "
      f"{s['e2e_latency']['p99_us']:12.0f} failed={s['failed']}")
EOF
    done
done
