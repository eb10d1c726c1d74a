#!/usr/bin/env bash
# The project's test command (README "Testing"). CI runs it through .ci/run on a clean clone.
# Order: cheapest checks first, so a formatting slip fails in seconds rather than after a build.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace

echo "== tuning kit"
bash tuning/test.sh

echo "== end-to-end tests with real Kafka clients (installs kcat and a Python venv)"
bash ci/e2e.sh

echo "== Spate-encoded responses decoded by kafka-python"
.venv/bin/python ci/capture/check_responses.py

echo "== latency gate against the committed baseline"
bash ci/latency.sh

echo "== all checks passed"
