#!/usr/bin/env bash
# Runs each spate-wire fuzz target for N seconds (default 60), one after the other, with the
# memory limits that make over-allocation a crash. See docs/fuzzing.md.
#
#   ci/fuzz.sh [seconds] [target...]       e.g. ci/fuzz.sh 300 request
#   CMIN=1 ci/fuzz.sh 300                  also minimise each corpus afterwards
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain; on stable only,
# RUSTC_BOOTSTRAP=1 is used instead. Exits non-zero if any target finds a crash; the input is
# left in wire/fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../wire/fuzz"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame request request_body batch records cluster_frame)
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cargo_fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    cargo_fuzz=(cargo fuzz)
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

# Per-target input size and allocation limits. -malloc_limit_mb makes any single allocation
# of that many MiB or more a crash; each bound follows from the limit the decoder enforces:
#   frame:   frame_bytes_max is 64 KiB in the target; the read buffer may hold one frame.
#   request: bodies up to 64 KiB; the guard admits an array only if its count fits in the
#            bytes left, so a reservation is at most (input bytes x element size) < 32 MiB,
#            while an unguarded count from the wire asks for gigabytes.
#   batch:   the parser borrows; the only allocation is the target's copy of one batch.
#   records: decompressed output stops at 1 MiB in the target, and zstd's window is capped at
#            8 MiB (ZSTD_WINDOW_LOG_MAX); before that cap a 94-byte batch made zstd allocate
#            84 MB (wire/fuzz/regressions/records-zstd-window-84mb.bin).
#   cluster_frame: payload_bytes_max is 64 KiB in the target; the read buffer may hold one
#            frame, and a body decoder admits a count only if its bytes are there (at most
#            4096 entries of < 100 bytes each).
limits() {
    case "$1" in
        frame) echo "-max_len=262144 -malloc_limit_mb=1" ;;
        request | request_body) echo "-max_len=65536 -malloc_limit_mb=32" ;;
        batch) echo "-max_len=65536 -malloc_limit_mb=1" ;;
        records) echo "-max_len=65536 -malloc_limit_mb=16" ;;
        cluster_frame) echo "-max_len=262144 -malloc_limit_mb=1" ;;
        *) echo "" ;;
    esac
}

available=$("${cargo_fuzz[@]}" list --fuzz-dir .)
status=0
for target in "${targets[@]}"; do
    if ! grep -qx "$target" <<<"$available"; then
        echo "== $target: no such fuzz target (have: ${available//$'\n'/ })" >&2
        status=1
        continue
    fi
    mkdir -p "corpus/$target"
    echo "== $target for ${seconds}s"
    # shellcheck disable=SC2046
    if ! "${cargo_fuzz[@]}" run --fuzz-dir . "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        $(limits "$target"); then
        echo "== $target: CRASH (input in wire/fuzz/artifacts/$target/)" >&2
        status=1
        continue
    fi
    if [ "${CMIN:-0}" = 1 ]; then
        # shellcheck disable=SC2046
        "${cargo_fuzz[@]}" cmin --fuzz-dir . "$target" "corpus/$target" -- $(limits "$target")
    fi
done
exit "$status"
