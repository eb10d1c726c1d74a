#!/usr/bin/env bash
# README's quick start, run as written: the shell block between `<!-- quickstart:begin -->` and
# `<!-- quickstart:end -->` in README.md is run unchanged by bash, in a clean clone of this
# repository's HEAD (committed work only, as a user would get it), and its documented outcome
# is checked: kcat reads back the record it produced, and /metrics counts it.
#
# The block uses the default ports (9092, 9644). Where unprivileged user namespaces are
# allowed it runs in a network namespace of its own (`unshare -rn`), so a broker already
# listening on those ports on this machine neither breaks it nor is reached by it; elsewhere it
# runs on the host's loopback if both ports are free, and fails otherwise. The block's build
# command has no network in the namespace, so the clone's dependencies are fetched first
# (`cargo fetch`).
#
# In a checkout whose tracked files are HEAD's (CI's clean clone) it runs in place, and the
# block's build is the e2e suite's, already done. Otherwise the clone lives at
# $CARGO_TARGET_DIR/quickstart/clone and is reset and cleaned (`git clean
# -fdx`) on each run except for its own `target/`, so a rerun builds only what changed. The
# first run seeds that `target/` from $CARGO_TARGET_DIR/release (dependencies built with the
# same toolchain), so it does not compile every dependency again.
#
#   bash ci/quickstart.sh
#
# Bounded: the build by SPATE_QUICKSTART_BUILD_TIMEOUT_S (1800 s), the rest of the block by
# SPATE_QUICKSTART_TIMEOUT_S (120 s). Exits non-zero with the reason on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
build_timeout_s=${SPATE_QUICKSTART_BUILD_TIMEOUT_S:-1800}
run_timeout_s=${SPATE_QUICKSTART_TIMEOUT_S:-120}
work=$CARGO_TARGET_DIR/quickstart
clone=$work/clone

fail() {
    echo "quickstart: FAILED: $*" >&2
    exit 1
}

for tool in git cargo kcat curl timeout; do
    command -v "$tool" >/dev/null 2>&1 || fail "needs $tool on PATH"
done
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if command -v unshare >/dev/null && command -v ip >/dev/null && unshare -rn true 2>/dev/null; then
    isolate=(unshare -rn)
    echo "== quickstart: in a network namespace of its own (unshare -rn)"
elif port_free 9092 && port_free 9644; then
    isolate=()
    echo "== quickstart: no user namespaces here; on the host's loopback (9092 and 9644 are free)"
else
    fail "unshare -rn is not permitted here and 127.0.0.1:9092 or :9644 is in use"
fi

# The block, from the committed README (what a clone gets).
head=$(git rev-parse HEAD)
readme=$(git show "$head:README.md")
block=$(printf '%s\n' "$readme" | awk '
    /<!-- quickstart:begin -->/ { inside = 1; next }
    /<!-- quickstart:end -->/   { inside = 0; next }
    inside && /^```/            { fence = !fence; next }
    inside && fence             { print }
')
[ -n "$block" ] || fail "README.md at $head has no shell block between the quickstart markers"
echo "== quickstart: README.md at $head"
printf '%s\n' "$block" | sed 's/^/  | /'

mkdir -p "$work"
# A checkout whose tracked files are HEAD's (CI's clean clone of main) is what a user gets:
# the block runs in it, and its build is then the one the e2e suite already did. Anywhere
# else (a working tree with edits, or SPATE_QUICKSTART_CLONE=1) it runs in a clean clone,
# whose first build recompiles the workspace's crates (some minutes).
if [ "${SPATE_QUICKSTART_CLONE:-0}" != 1 ] && [ -z "$(git status --porcelain --untracked-files=no)" ] &&
    [ ! -e "$repo/spate-data" ] && [ "$CARGO_TARGET_DIR" = "$repo/target" ]; then
    clone=$repo
    echo "== quickstart: in this checkout (its tracked files are HEAD's)"
    trap 'rm -rf "$repo/spate-data"' EXIT
else
    echo "== quickstart: clean clone in $clone"
    if [ ! -d "$clone/.git" ]; then
        rm -rf "$clone"
        git clone --quiet --no-checkout "$repo" "$clone"
    fi
    git -C "$clone" fetch --quiet --no-tags "$repo" "$head"
    git -C "$clone" checkout --quiet --force --detach "$head"
    git -C "$clone" clean -q -fdx -e /target
    if [ ! -d "$clone/target/release" ] && [ -d "$CARGO_TARGET_DIR/release" ]; then
        echo "seeding $clone/target/release from $CARGO_TARGET_DIR/release"
        mkdir -p "$clone/target"
        cp -a "$CARGO_TARGET_DIR/release" "$clone/target/release"
    fi
fi
(cd "$clone" && env -u CARGO_TARGET_DIR cargo fetch --quiet)

# The block is sourced by a wrapper shell, so `&` and `kill %1` work as in a terminal; the
# wrapper then waits for whatever the block left running. -e and pipefail: any command that
# fails, such as the grep on /metrics, fails the run. However the wrapper ends (a failed
# command, the timeout's SIGTERM), it stops what the block started in the background first:
# an orphaned broker would hold the clone's data dir (and, on the host, the ports).
cat >"$work/run.sh" <<'EOF'
set -eo pipefail
stop_jobs() {
    local pids
    pids=$(jobs -p)
    if [ -n "$pids" ]; then
        kill $pids 2>/dev/null || true
        wait $pids 2>/dev/null || true
    fi
}
trap stop_jobs EXIT
trap 'exit 143' TERM
if [ "$2" = isolated ]; then ip link set lo up; fi
source "$1"
wait
EOF
printf '%s\n' "$block" >"$work/block.sh"
# The block's build command is run once before the block, with its own bound, so that the
# block's own run of it (then a no-op) fits in the run's bound.
echo "== quickstart: running the block (build bounded by ${build_timeout_s}s, the rest by ${run_timeout_s}s)"
build=$(printf '%s\n' "$block" | grep -m1 '^cargo build') || fail "the block has no cargo build line"
(cd "$clone" && env -u CARGO_TARGET_DIR timeout "$build_timeout_s" bash -c "$build") ||
    fail "the build did not finish (exit $?)"
status=0
(cd "$clone" && env -u CARGO_TARGET_DIR timeout --kill-after=10 "$run_timeout_s" \
    "${isolate[@]}" bash "$work/run.sh" "$work/block.sh" "${isolate:+isolated}") \
    >"$work/stdout" 2>"$work/stderr" ||
    status=$?
echo "-- stdout"
cat "$work/stdout"
echo "-- stderr (last 20 lines)"
tail -n 20 "$work/stderr"
[ "$status" -ne 124 ] || fail "the block did not end within ${run_timeout_s}s"
[ "$status" -eq 0 ] || fail "the block exited $status"

# The documented outcome.
grep -qx 'ready' "$work/stdout" || fail "/ready never printed ready"
grep -qx 'hello' "$work/stdout" || fail "kcat did not read back hello"
produced=$(sed -n 's/^spate_partition_produced_records_total{topic="demo",partition="0"} \([0-9]*\)$/\1/p' "$work/stdout")
[ "${produced:-0}" -ge 1 ] ||
    fail "/metrics did not count the produced record (spate_partition_produced_records_total for demo/0: '${produced}')"
echo "== quickstart: PASSED (kcat read back hello; /metrics counted $produced record(s) produced to demo)"
