#!/usr/bin/env bash
# End-to-end tests: the release `spate` binary against real Kafka clients (confluent-kafka,
# kafka-python, aiokafka, kcat, Kafka's Java client) and Prometheus. Idempotent; needs only the
# Rust toolchain, Python 3.11 and pip (kcat, prometheus, a JDK and Maven come from Debian when
# missing; the Java client's jars from Maven, else from PyPI, see ci/java/setup.sh). Exits non-zero on
# any failure, including "no tests ran".
#
#   bash ci/e2e.sh              # whole suite
#   bash ci/e2e.sh -k latency   # extra arguments go to pytest
#   SPATE_E2E_QUICKSTART=0 bash ci/e2e.sh -k latency   # without README's quick start
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
started=$(date +%s)

# Per-test bound: a hung broker or client fails its test instead of the CI job's budget.
per_test_timeout_s=${SPATE_E2E_TEST_TIMEOUT_S:-180}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}

echo "== e2e: kcat"
if ! command -v kcat >/dev/null 2>&1; then
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y kcat; }; then
        echo "e2e: FAILED to install kcat with apt-get (need root and Debian/Ubuntu apt sources)" >&2
        exit 1
    fi
fi
kcat -V 2>&1 | head -n 1

# README's quick start uses curl (ci/quickstart.sh runs it, after the suite).
echo "== e2e: curl"
if ! command -v curl >/dev/null 2>&1; then
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl; }; then
        echo "e2e: FAILED to install curl with apt-get (need root and Debian/Ubuntu apt sources)" >&2
        exit 1
    fi
fi
curl --version | head -n 1

# test_metrics.py starts Debian's real Prometheus server to scrape the broker; missing, that
# test fails (it never skips), so a failed install stops here with the reason.
echo "== e2e: prometheus"
if ! command -v prometheus >/dev/null 2>&1; then
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; }; then
        echo "e2e: FAILED to install prometheus with apt-get (need root and Debian/Ubuntu apt sources)" >&2
        exit 1
    fi
fi
prometheus --version 2>&1 | head -n 1

# test_java_client.py runs Kafka's Java client: a JDK and Maven (apt, when missing) and the
# kafka-clients jars, resolved once into a cache outside the clone (ci/java/setup.sh). A failure
# here is reported and the Java tests skip with the reason; the rest of the suite still runs.
echo "== e2e: java client (JDK, Maven, kafka-clients jars)"
if java_classpath_file=$(bash ci/java/setup.sh); then
    java -version 2>&1 | head -n 1
    echo "kafka-clients jars: $java_classpath_file"
else
    echo "e2e: WARNING: the Java client could not be set up; test_java_client.py will skip" >&2
fi

echo "== e2e: python venv (.venv)"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r ci/e2e/requirements.txt

echo "== e2e: python venv for quixstreams (.venv-quix)"
# Its own venv: quixstreams pins an older confluent-kafka than the suite's (requirements-quix.txt).
if [ ! -x .venv-quix/bin/python ]; then
    "$python" -m venv .venv-quix
fi
.venv-quix/bin/python -m pip install --quiet --disable-pip-version-check -r ci/e2e/requirements-quix.txt

echo "== e2e: cargo build --release -p spate-broker"
cargo build --release -p spate-broker
export SPATE_BIN=${SPATE_BIN:-$CARGO_TARGET_DIR/release/spate}
test -x "$SPATE_BIN" || { echo "e2e: no broker binary at $SPATE_BIN" >&2; exit 1; }
# Fresh broker data dirs per run; they live on the real disk because the broker uses O_DIRECT.
export SPATE_E2E_DATA=$CARGO_TARGET_DIR/e2e-data
rm -rf "$SPATE_E2E_DATA"

echo "== e2e: pytest ci/e2e"
status=0
.venv/bin/python -m pytest ci/e2e -q -p no:cacheprovider \
    --timeout="$per_test_timeout_s" -rfE --durations=5 "$@" || status=$?

# README's quick start, run as written in a clean clone of HEAD (bounded: see the script).
# SPATE_E2E_QUICKSTART=0 leaves it out, as when pytest arguments pick a few tests.
if [ "${SPATE_E2E_QUICKSTART:-1}" != 0 ]; then
    echo "== e2e: README quick start (ci/quickstart.sh)"
    if ! bash ci/quickstart.sh; then
        quickstart_failed=1
    fi
fi

elapsed=$(( $(date +%s) - started ))
case $status in
    0) if [ "${quickstart_failed:-0}" = 1 ]; then
           echo "== e2e: FAILED: README's quick start, the pytest suite passed (${elapsed}s)" >&2
           status=1
       else
           echo "== e2e: PASSED in ${elapsed}s"
       fi ;;
    5) echo "== e2e: FAILED: pytest collected no tests (${elapsed}s)" >&2; status=1 ;;
    *) echo "== e2e: FAILED (pytest exit $status) in ${elapsed}s; broker data kept in $SPATE_E2E_DATA" >&2 ;;
esac
exit $status
