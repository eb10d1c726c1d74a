#!/usr/bin/env bash
# CI latency check: a release broker on CPU 0, spate-bench on CPU 1, 15 s at a fixed rate with
# 1 KiB messages and acks=1 and a consumer, compared with the committed baseline. Fails only if
# records were lost (or duplicated/reordered), the produce-ack p99 is above 3x the baseline's
# p99, or the end-to-end (produce to consume) p99 is above E2E_P99_FACTOR_MAX x the baseline's:
# shared CI machines are noisy, so smaller regressions are left to the benchmarks in
# docs/benchmarks.md. The end-to-end p99 is what a consumer waits (about two group-commit
# fdatasyncs under the default visibility); the factor was set from measured runs
# (docs/benchmarks.md, "CI latency gate"): runs on a machine at load average 15 stayed below
# it, while a consumer left waiting for its fetch's max wait (a missed wake-up) or a broker
# stall of tens of milliseconds exceeds it. The committed baseline is the timer-driven group
# commit's (8 ms end-to-end p99), so a return to the timer is not caught by this gate.
#
# A failed gate is measured again on a fresh broker, up to three runs in all, and fails CI only
# if every run fails: a regression fails them all, a host that took the CPUs away for a few
# seconds rarely spoils three runs in a row. A run during which the hypervisor stole at least
# STEAL_PCT_MAX percent of the CPUs (/proc/stat's steal column, printed for every run) does not
# measure Spate and cannot fail the gate on latency; lost records fail it always. If every run
# was such a run the gate says it could not judge and passes. On 2026-12-07 the same build
# measured ack p99 1.8-3.3 ms in some runs and 6.7-10 ms in others minutes apart, and 19-40 ms
# in runs where vmstat showed 35-43% steal.
#
# Usage: ci/latency.sh              run and gate against ci/latency-baseline/latency.json
#        ci/latency.sh --update     run and write the result as the new baseline (commit it,
#                                   with the machine it was measured on in the message)
# Env:   LATENCY_RATE (default 20000 msg/s), LATENCY_DURATION_S (15), E2E_P99_FACTOR_MAX (3),
#        CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
update=0
if [[ "${1:-}" == "--update" ]]; then update=1; fi
rate="${LATENCY_RATE:-20000}"
duration="${LATENCY_DURATION_S:-15}"
e2e_p99_factor_max="${E2E_P99_FACTOR_MAX:-3}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p spate-broker -p spate-bench >&2
work="$target/latency-ci"
rm -rf "$work"
mkdir -p "$work/data"
port=$((39000 + $$ % 500))
pin_broker=()
pin_bench=()
if [[ "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null; then
  pin_broker=(taskset -c 0)
  pin_bench=(--cpu 1)
fi
# How much the machine itself stalls a thread on each CPU right now, printed beside the table
# so a bad run can be told from a noisy machine (docs/benchmarks.md, "spate-bench hiccup").
hiccup_cpus=0
if [[ "$(nproc)" -ge 2 ]]; then hiccup_cpus=0,1; fi
echo "machine stalls before the run (spate-bench hiccup --cpu $hiccup_cpus --duration-s 3):"
"$target/release/spate-bench" hiccup --cpu "$hiccup_cpus" --duration-s 3 ||
  echo "latency.sh: hiccup measurement failed (reported only)" >&2
attempts_max=3
if [[ "$update" == 1 ]]; then attempts_max=1; fi
steal_pct_max="${STEAL_PCT_MAX:-5}"
# Steal and total jiffies of all CPUs so far.
cpu_jiffies() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
conclusive_failures=0
broker=""
stop_broker() {
  [[ -n "$broker" ]] || return 0
  kill "$broker" 2>/dev/null || { broker=""; return 0; }
  # The broker has been seen to hang on SIGTERM after heavy runs: do not hang CI with it.
  for _ in $(seq 50); do kill -0 "$broker" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$broker" 2>/dev/null; then
    echo "latency.sh: broker ignored SIGTERM for 5 s, killing it" >&2
    kill -9 "$broker" 2>/dev/null || true
  fi
  wait "$broker" 2>/dev/null || true
  broker=""
  rm -rf "$work/data"
}
trap stop_broker EXIT
for attempt in $(seq "$attempts_max"); do
  mkdir -p "$work/data"
  ${pin_broker[@]+"${pin_broker[@]}"} "$target/release/spate" --listen "127.0.0.1:$port" \
    --admin-listen 127.0.0.1:0 --data-dir "$work/data" --cores 1 --log-level warn &
  broker=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  read -r steal_before total_before < <(cpu_jiffies)
  "$target/release/spate-bench" run --bootstrap "127.0.0.1:$port" --topic latency-ci \
    --message-bytes 1024 --rate "$rate" --duration-s "$duration" --acks 1 --consumers 1 \
    ${pin_bench[@]+"${pin_bench[@]}"} --quiet --json "$work/latency.json" --hgrm-prefix "$work/latency" >/dev/null
  read -r steal_after total_after < <(cpu_jiffies)
  steal_pct=$(( (steal_after - steal_before) * 100 / (total_after - total_before + 1) ))
  echo "latency.sh: attempt $attempt: the host stole ${steal_pct}% of the CPUs during the run"
  stop_broker
  if [[ "$update" == 1 ]]; then
    cp "$work/latency.json" ci/latency-baseline/latency.json
    cp "$work/latency-ack.hgrm" ci/latency-baseline/latency-ack.hgrm
    echo "baseline updated: ci/latency-baseline/latency.json"
    exit 0
  fi
  if gate_out=$("$target/release/spate-bench" gate ci/latency-baseline/latency.json \
    "$work/latency.json" --p99-factor-max 3 --e2e-p99-factor-max "$e2e_p99_factor_max" 2>&1); then
    echo "$gate_out"
    exit 0
  fi
  echo "$gate_out"
  if grep -q "loss check" <<<"$gate_out"; then
    echo "latency.sh: records were lost, duplicated or reordered" >&2
    exit 1
  fi
  if [[ "$steal_pct" -ge "$steal_pct_max" ]]; then
    echo "latency.sh: attempt $attempt is inconclusive: ${steal_pct}% steal (limit ${steal_pct_max}%)" >&2
  else
    conclusive_failures=$((conclusive_failures + 1))
  fi
  if [[ "$attempt" -lt "$attempts_max" ]]; then
    echo "latency.sh: gate failed on attempt $attempt; measuring once more on a fresh broker" >&2
    echo "machine stalls before attempt $((attempt + 1)):"
    "$target/release/spate-bench" hiccup --cpu "$hiccup_cpus" --duration-s 3 ||
      echo "latency.sh: hiccup measurement failed (reported only)" >&2
  fi
done
if [[ "$conclusive_failures" -eq 0 ]]; then
  echo "latency.sh: WARNING: the gate could not judge latency: the host stole at least ${steal_pct_max}% of the CPUs in every attempt; no records were lost" >&2
  exit 0
fi
echo "latency.sh: gate failed on all $attempts_max attempts ($conclusive_failures without heavy steal)" >&2
exit 1
