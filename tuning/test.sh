#!/usr/bin/env bash
# Tests for the tuning kit: tuning/check's report (text and JSON, as root and not, with /sys
# hidden), and tuning/apply in dry-run mode against the real machine plus a real apply/revert
# round trip against a fake /proc, /sys and /etc tree (SPATE_TUNING_ROOT). Nothing on this
# machine is changed. Takes a few seconds; does not need root (some cases are skipped without).
set -euo pipefail
cd "$(dirname "$0")"

tmp=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf -- "$tmp"' EXIT
chmod 755 "$tmp"

passed=0
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}
have() { command -v "$1" >/dev/null 2>&1; }

is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1
# Runs a command as the unprivileged user nobody, when we are root and can.
as_nobody() {
    setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}
can_drop=0
# nobody must also be able to reach this directory (a clone under /root is out of its reach).
if [ "$is_root" -eq 1 ] && have setpriv && as_nobody test -x ./check 2>/dev/null; then
    can_drop=1
fi

# The items the issue asks tuning/check to report, by the names it prints.
required_items=(
    "kernel" "io_uring" "memlock (RLIMIT_MEMLOCK)" "cpu governor" "smt" "irq affinity"
    "thp enabled" "thp defrag" "disk scheduler" "disk queue depth" "filesystem" "o_direct"
    "vm.swappiness" "net.core.somaxconn" "net.core.rmem_max" "net.core.wmem_max"
    "net.ipv4.tcp_rmem" "net.ipv4.tcp_wmem" "nofile (RLIMIT_NOFILE)" "fs.file-max"
)

# Asserts that a text report ($1, file) is well formed and has a line per required item.
assert_report() {
    local report="$1" label="$2" item lines summary
    for item in "${required_items[@]}"; do
        grep -qE "^(OK|WARN|FAIL|INFO) +$(printf '%s' "$item" | sed 's/[][().*]/\\&/g')( |$)" "$report" ||
            fail "$label: no line for '$item'"
    done
    # Every line between the header and the summary is one item with a status.
    lines=$(sed -n '3,$p' "$report" | grep -v '^summary:' | grep -cvE '^(OK|WARN|FAIL|INFO) ' || true)
    [ "$lines" -eq 0 ] || fail "$label: $lines line(s) without a status"
    summary=$(grep '^summary:' "$report") || fail "$label: no summary line"
    local status count
    for status in OK WARN FAIL INFO; do
        count=$(grep -c "^$status " "$report" || true)
        grep -q " $count $status" <<<"$summary" || fail "$label: summary '$summary' does not count $count $status"
    done
}

# --- tuning/check ---------------------------------------------------------------------------
online=$(cat /sys/devices/system/cpu/online 2>/dev/null || echo 0)
first_cpu="${online%%[-,]*}"
data="$tmp/data"
mkdir "$data"
chmod 777 "$data"

rc=0
./check --pid self --data-dir "$data" >"$tmp/check.txt" 2>"$tmp/check.err" || rc=$?
[ "$rc" -eq 0 ] || { cat "$tmp/check.txt" "$tmp/check.err" >&2; fail "check exited $rc"; }
[ ! -s "$tmp/check.err" ] || { cat "$tmp/check.err" >&2; fail "check wrote to stderr"; }
assert_report "$tmp/check.txt" "check"
grep -qE "^OK +o_direct +4 KiB write\+read with O_DIRECT ok in $data" "$tmp/check.txt" || fail "O_DIRECT probe did not run in $data"
[ -z "$(ls -A "$data")" ] || fail "check left files in the data dir: $(ls -A "$data")"
ok "check reports all $((${#required_items[@]})) required items, exit 0, leaves the data dir empty"

if have python3; then
    ./check --pid self --data-dir "$data" --json >"$tmp/check.json" || fail "check --json exited $?"
    python3 -m json.tool "$tmp/check.json" >/dev/null || fail "check --json is not valid JSON"
    text_items=$(grep -cE '^(OK|WARN|FAIL|INFO) ' "$tmp/check.txt")
    python3 - "$tmp/check.json" "$text_items" <<'EOF' || fail "check --json content"
import json, sys
report = json.load(open(sys.argv[1]))
items = report["items"]
assert len(items) == int(sys.argv[2]), (len(items), sys.argv[2])
assert all(i["status"] in ("OK", "WARN", "FAIL", "INFO") for i in items)
assert all(set(i) == {"status", "item", "current", "recommended", "why"} for i in items)
summary = report["summary"]
assert summary["ok"] + summary["warn"] + summary["fail"] + summary["info"] == len(items)
assert report["fatal"] is (summary["fail"] > 0)
assert any(i["item"] == "io_uring" for i in items)
EOF
    ok "check --json is valid JSON with the same $text_items items"
else
    echo "skip: check --json validation (no python3)"
fi

if [ "$can_drop" -eq 1 ]; then
    rc=0
    as_nobody ./check --pid self --data-dir "$data" >"$tmp/check-nobody.txt" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || { cat "$tmp/check-nobody.txt" >&2; fail "check as nobody exited $rc"; }
    assert_report "$tmp/check-nobody.txt" "check as nobody"
    ok "check runs as an unprivileged user"
else
    echo "skip: check as an unprivileged user (not root, or no setpriv)"
fi

# A private mount namespace with an empty /sys: what containers and odd VMs look like.
if [ "$is_root" -eq 1 ] && have unshare && unshare -m sh -c 'mount -t tmpfs none /sys' >/dev/null 2>&1; then
    rc=0
    # shellcheck disable=SC2016 # $1 is expanded by the inner sh
    unshare -m sh -c 'mount -t tmpfs none /sys && exec ./check --pid self --data-dir "$1"' sh "$data" >"$tmp/check-nosys.txt" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || { cat "$tmp/check-nosys.txt" >&2; fail "check without /sys exited $rc"; }
    assert_report "$tmp/check-nosys.txt" "check without /sys"
    grep -qE '^INFO +thp enabled +unknown \(no /sys/kernel/mm/transparent_hugepage\)' "$tmp/check-nosys.txt" ||
        fail "check without /sys does not say unknown for THP"
    ok "check without /sys reports unknown items instead of failing"
else
    echo "skip: check without /sys (not root, or cannot mount in a private namespace)"
fi

rc=0
./check --cores 'not-a-list' >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "check --cores not-a-list exited $rc, want 2"
rc=0
./check --cores 99999 >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "check --cores 99999 exited $rc, want 2"
ok "check rejects bad --cores with exit 2"

./check --pid $$ >"$tmp/check-pid.txt" || fail "check --pid exited $?"
grep -q "limits of pid $$ (" "$tmp/check-pid.txt" || fail "check --pid $$ does not read that process's limits"
ok "check --pid reads another process's limits"

# Which broker, and its data dir: stand-in brokers (a script named spate, so its process is
# named spate, holding <data-dir>/.lock open as the broker does) in a private PID namespace,
# where no other broker on this machine can be seen.
if [ "$is_root" -eq 1 ] && have unshare && unshare --pid --fork --mount-proc true 2>/dev/null; then
    mkdir -p "$tmp/brokers/bin" "$tmp/brokers/one" "$tmp/brokers/two" "$tmp/brokers/cwd/rel" "$tmp/brokers/elsewhere"
    mkfifo "$tmp/brokers/never"
    cat >"$tmp/brokers/bin/spate" <<'EOF_SPATE'
#!/bin/bash
# Stand-in broker: with --lock, holds <data dir>/.lock open (the real broker flocks it); the
# data dir comes from --data-dir or SPATE_DATA_DIR, as the broker's does.
dir=${SPATE_DATA_DIR:-./spate-data} lock=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) dir=$2; shift 2 ;;
        --lock) lock=1; shift ;;
        *) shift ;;
    esac
done
[ "$lock" -eq 0 ] || exec 9>>"$dir/.lock"
read -r -t 60 _ <>"$NEVER"
EOF_SPATE
    chmod +x "$tmp/brokers/bin/spate"
    cat >"$tmp/brokers/scenario.sh" <<'EOF_SCENARIO'
set -u
b=$1 check=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
export NEVER="$b/never"
"$b/bin/spate" --lock --data-dir "$b/one" & one=$!
SPATE_DATA_DIR="$b/two" "$b/bin/spate" --lock & two=$!
for _ in $(seq 50); do [ -e "$b/one/.lock" ] && [ -e "$b/two/.lock" ] && break; sleep 0.1; done
cd "$b/elsewhere"
rc=0
"$check" >"$b/several.txt" 2>"$b/several.err" || rc=$?
[ "$rc" -eq 2 ] || fail "check with two brokers exited $rc, want 2"
[ ! -s "$b/several.txt" ] || fail "check with two brokers printed a report"
grep -q '^check: 2 processes named spate are running; pick the broker to check with --pid PID' "$b/several.err" || fail "no refusal: $(cat "$b/several.err")"
grep -qE "^  $one  .*$b/bin/spate --lock --data-dir $b/one" "$b/several.err" || fail "pid $one not listed: $(cat "$b/several.err")"
grep -qE "^  $two  .*$b/bin/spate --lock$" "$b/several.err" || fail "pid $two not listed: $(cat "$b/several.err")"
echo "ok: check refuses to pick between two brokers and lists both"
"$check" --pid "$two" >"$b/pid.txt" 2>&1 || fail "check --pid $two exited $?"
grep -q "data dir $b/two, limits of pid $two (spate)" "$b/pid.txt" || fail "check --pid $two: $(head -1 "$b/pid.txt")"
grep -qE "^INFO +data dir +$b/two \(of pid $two\)" "$b/pid.txt" || fail "check --pid $two: $(grep 'data dir' "$b/pid.txt")"
grep -qE "^OK +o_direct +4 KiB write\+read with O_DIRECT ok in $b/two" "$b/pid.txt" || fail "O_DIRECT probe not in $b/two"
"$check" --pid self >"$b/self.txt" 2>&1 || fail "check --pid self with two brokers exited $?"
grep -q "data dir \., limits of this shell" "$b/self.txt" || fail "check --pid self: $(head -1 "$b/self.txt")"
"$check" --pid "$two" --data-dir "$b/one" >"$b/both.txt" 2>&1 || fail "check --pid --data-dir exited $?"
grep -q "data dir $b/one, limits of pid $two" "$b/both.txt" || fail "--data-dir does not win: $(head -1 "$b/both.txt")"
echo "ok: check --pid takes that broker's data dir from its lock file (set by SPATE_DATA_DIR); --data-dir and --pid self override"
kill "$one" "$two"; wait
# One broker, its data dir relative to its own working directory and no lock: found by its
# command line, not by this shell's directory.
(cd "$b/cwd" && exec "$b/bin/spate" --data-dir rel) & solo=$!
for _ in $(seq 50); do [ "$(cat "/proc/$solo/comm" 2>/dev/null)" = spate ] && break; sleep 0.1; done
"$check" >"$b/solo.txt" 2>&1 || fail "check with one broker exited $?"
grep -q "data dir $b/cwd/rel, limits of pid $solo (spate)" "$b/solo.txt" || fail "one broker: $(head -1 "$b/solo.txt")"
echo "ok: check picks the one running broker and resolves its --data-dir against its working directory"
kill "$solo"; wait
EOF_SCENARIO
    rc=0
    unshare --pid --fork --mount-proc bash "$tmp/brokers/scenario.sh" "$tmp/brokers" "$PWD/check" >"$tmp/brokers.out" 2>&1 || rc=$?
    cat "$tmp/brokers.out"
    [ "$rc" -eq 0 ] || fail "broker selection scenario exited $rc"
    passed=$((passed + $(grep -c '^ok: ' "$tmp/brokers.out")))
else
    echo "skip: choosing between brokers (not root, or no private PID namespace)"
fi

# Without --cores, the broker's CPUs come from the threads of the process given by --pid that are
# pinned to a single CPU (glommio pins one executor thread per CPU).
if have taskset; then
    taskset -c "$first_cpu" sleep 30 &
    pinned_pid=$!
    rc=0
    ./check --pid "$pinned_pid" >"$tmp/check-pinned.txt" 2>&1 || rc=$?
    kill "$pinned_pid" 2>/dev/null || true
    wait "$pinned_pid" 2>/dev/null || true
    [ "$rc" -eq 0 ] || fail "check --pid (pinned) exited $rc"
    grep -qE "^INFO +broker cores +$first_cpu \(1 of [0-9]+ online; threads of pid $pinned_pid pinned to one CPU\)" "$tmp/check-pinned.txt" ||
        { grep 'broker cores' "$tmp/check-pinned.txt" >&2; fail "check --pid does not take broker cores from pinned threads"; }
    ok "check takes the broker's cores from the pinned threads of --pid"
    # A process without io_uring has no iou-wrk threads; the item is still reported.
    grep -qE "^INFO +io_uring workers +none yet" "$tmp/check-pinned.txt" ||
        { grep 'io_uring workers' "$tmp/check-pinned.txt" >&2; fail "check --pid does not report io_uring workers"; }
    ok "check reports the io_uring workers of --pid (none for a process without io_uring)"
else
    echo "skip: broker cores from pinned threads (no taskset)"
fi

# Fatal findings: stand-ins on PATH make uname report an old kernel, the io_uring probe (perl)
# fail with EPERM as under Docker's seccomp profile, and dd refuse O_DIRECT as some filesystems do.
mkdir "$tmp/fakebin"
cat >"$tmp/fakebin/uname" <<'EOF_UNAME'
#!/bin/sh
case "$1" in -r) echo 5.4.0-old ;; *) echo fakehost ;; esac
EOF_UNAME
cat >"$tmp/fakebin/perl" <<'EOF_PERL'
#!/bin/sh
echo "io_uring_setup failed: Operation not permitted (errno 1)"
exit 1
EOF_PERL
cat >"$tmp/fakebin/dd" <<'EOF_DD'
#!/bin/sh
echo "dd: failed to open 'x': Invalid argument" >&2
exit 1
EOF_DD
chmod +x "$tmp/fakebin/"*
rc=0
PATH="$tmp/fakebin:$PATH" ./check --pid self --data-dir "$data" >"$tmp/check-fatal.txt" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/check-fatal.txt" >&2; fail "check with fatal findings exited $rc, want 1"; }
grep -qE '^FAIL +kernel +5\.4\.0-old ' "$tmp/check-fatal.txt" || fail "old kernel is not FAIL"
grep -qE '^FAIL +io_uring +probe: io_uring_setup failed: Operation not permitted' "$tmp/check-fatal.txt" || fail "blocked io_uring is not FAIL"
grep -qE '^FAIL +o_direct +failed in .*Invalid argument' "$tmp/check-fatal.txt" || fail "refused O_DIRECT is not FAIL"
grep -q '^summary: .* 3 FAIL' "$tmp/check-fatal.txt" || fail "summary does not count 3 FAIL"
[ -z "$(ls -A "$data")" ] || fail "check left its probe file behind after a failed probe"
ok "check exits 1 and says FAIL for an old kernel, blocked io_uring and refused O_DIRECT"

# Locked memory: the estimate is 3 x io_memory x cores + 25%. With 1 MiB and one core that is
# 3.75 MiB (3840 KiB): a soft limit of exactly that is OK, one below is WARN with the io_memory
# that fits, and one under glommio's 512 KiB minimum is FAIL.
hard_kib=$(ulimit -H -l)
if [ "$hard_kib" = unlimited ] || [ "$hard_kib" -ge 3840 ]; then
    (ulimit -S -l 3840 && ./check --pid self --io-memory-mib 1 --cores "$first_cpu") >"$tmp/memlock-ok.txt" 2>&1 || true
    grep -qE '^OK +memlock \(RLIMIT_MEMLOCK\) +3\.7 MiB soft.*>= 3\.7 MiB = 3 x 1 MiB x 1 core \+ 25%' "$tmp/memlock-ok.txt" ||
        { grep memlock "$tmp/memlock-ok.txt" >&2; fail "memlock 3840 KiB for 3 x 1 MiB x 1 core + 25% is not OK"; }
    (ulimit -S -l 3000 && ./check --pid self --io-memory-bytes 1048576 --cores "$first_cpu") >"$tmp/memlock-warn.txt" 2>&1 || true
    # 3000 KiB / (3 x 1 x 1.25) = 800 KiB per executor.
    grep -qE '^WARN +memlock \(RLIMIT_MEMLOCK\) +2\.9 MiB soft.*fits io_memory to the limit: ~800 KiB per core' "$tmp/memlock-warn.txt" ||
        { grep memlock "$tmp/memlock-warn.txt" >&2; fail "memlock 3000 KiB is not WARN with 800 KiB per core"; }
    rc=0
    (ulimit -S -l 256 && exec ./check --pid self --cores "$first_cpu") >"$tmp/memlock-fail.txt" 2>&1 || rc=$?
    [ "$rc" -eq 1 ] || fail "check with a 256 KiB memlock limit exited $rc, want 1"
    grep -qE '^FAIL +memlock \(RLIMIT_MEMLOCK\) +256 KiB soft' "$tmp/memlock-fail.txt" || fail "memlock 256 KiB is not FAIL"
    ok "memlock: OK at 3 x io_memory x cores + 25%, WARN below with the io_memory that fits, FAIL under 512 KiB"
else
    echo "skip: memlock thresholds (hard limit $hard_kib KiB < 7680 KiB)"
fi

./check --pid self --cores "$first_cpu" >"$tmp/check-cores.txt" || fail "check --cores $first_cpu exited $?"
grep -qE "^INFO +broker cores +$first_cpu \(1 of" "$tmp/check-cores.txt" || fail "check --cores $first_cpu: broker cores line"
ok "check --cores $first_cpu reports one broker core"

# --- tuning/apply --dry-run against the real machine ------------------------------------------
watched=(
    /proc/sys/vm/swappiness /proc/sys/net/core/rmem_max /proc/sys/net/core/wmem_max
    /proc/sys/net/ipv4/tcp_wmem /proc/sys/net/ipv4/tcp_slow_start_after_idle /proc/sys/vm/dirty_bytes
    /sys/kernel/mm/transparent_hugepage/enabled /sys/kernel/mm/transparent_hugepage/defrag
)
snapshot() {
    local f
    for f in "${watched[@]}"; do
        printf '%s=%s\n' "$f" "$(cat "$f" 2>/dev/null || echo absent)"
    done
    for f in /etc/security/limits.d/90-spate.conf /etc/sysctl.d/90-spate.conf; do
        printf '%s=%s\n' "$f" "$(cat "$f" 2>/dev/null || echo absent)"
    done
}
snapshot >"$tmp/before"
./apply --dry-run --persist --data-dir "$data" --state-dir "$tmp/state" >"$tmp/apply.txt" 2>&1 ||
    { cat "$tmp/apply.txt" >&2; fail "apply --dry-run exited $?"; }
snapshot >"$tmp/after"
diff -u "$tmp/before" "$tmp/after" >&2 || fail "apply --dry-run changed the machine"
[ ! -e "$tmp/state" ] || fail "apply --dry-run created the state dir"
for setting in "vm.swappiness" "vm.dirty_bytes" "net.core.somaxconn" "net.ipv4.tcp_max_syn_backlog" \
    "net.core.rmem_max" "net.core.wmem_max" "net.ipv4.tcp_rmem" "net.ipv4.tcp_wmem" \
    "net.ipv4.tcp_slow_start_after_idle" "fs.file-max" "transparent_hugepage/enabled" \
    "/etc/security/limits.d/90-spate.conf"; do
    grep -qF "$setting" "$tmp/apply.txt" || fail "apply --dry-run does not mention $setting"
done
grep -q '^done (dry run)$' "$tmp/apply.txt" || fail "apply --dry-run did not finish"
ok "apply --dry-run names every setting and changes nothing"

if [ "$can_drop" -eq 1 ] || [ "$is_root" -eq 0 ]; then
    rc=0
    if [ "$is_root" -eq 1 ]; then
        as_nobody ./apply --state-dir "$tmp/state" >"$tmp/apply-nonroot.txt" 2>&1 || rc=$?
    else
        ./apply --state-dir "$tmp/state" >"$tmp/apply-nonroot.txt" 2>&1 || rc=$?
    fi
    [ "$rc" -eq 1 ] || fail "apply as non-root exited $rc, want 1"
    grep -q 'must run as root' "$tmp/apply-nonroot.txt" || fail "apply as non-root does not say it needs root"
    ok "apply refuses to run for real without root"
fi

# --revert --dry-run with a recorded previous value different from the current one.
swappiness=$(cat /proc/sys/vm/swappiness)
recorded=$(((swappiness + 7) % 100))
mkdir -p "$tmp/revert-state"
printf '# test\nsysctl:vm.swappiness=%s\n' "$recorded" >"$tmp/revert-state/previous.env"
cp "$tmp/revert-state/previous.env" "$tmp/revert-state.orig"
./apply --revert --dry-run --state-dir "$tmp/revert-state" >"$tmp/revert.txt" 2>&1 ||
    { cat "$tmp/revert.txt" >&2; fail "apply --revert --dry-run exited $?"; }
grep -qF "would restore vm.swappiness: $swappiness -> $recorded" "$tmp/revert.txt" ||
    { cat "$tmp/revert.txt" >&2; fail "apply --revert --dry-run does not show the restore"; }
[ "$(cat /proc/sys/vm/swappiness)" = "$swappiness" ] || fail "apply --revert --dry-run changed vm.swappiness"
cmp -s "$tmp/revert-state/previous.env" "$tmp/revert-state.orig" || fail "apply --revert --dry-run touched the state file"
./apply --revert --dry-run --state-dir "$tmp/no-state" | grep -q '^nothing to revert' || fail "revert without state"
ok "apply --revert --dry-run shows the restore and changes nothing"

# --- a real apply and revert against a fake tree ---------------------------------------------
# SPATE_TUNING_ROOT points every /proc, /sys and /etc path of apply into $fake. When we are root
# the run is done as nobody, so a path that escaped the fake tree would fail instead of
# changing this machine.
fake="$tmp/fake"
put() { mkdir -p "$(dirname "$fake$1")"; printf '%s\n' "$2" >"$fake$1"; }
put /proc/sys/vm/swappiness 60
put /proc/sys/vm/dirty_ratio 20
put /proc/sys/vm/dirty_background_ratio 10
put /proc/sys/vm/dirty_bytes 0
put /proc/sys/vm/dirty_background_bytes 0
put /proc/sys/net/core/somaxconn 8192
put /proc/sys/net/ipv4/tcp_max_syn_backlog 512
put /proc/sys/net/core/rmem_max 212992
put /proc/sys/net/core/wmem_max 212992
put /proc/sys/net/ipv4/tcp_rmem $'4096\t131072\t6291456'
put /proc/sys/net/ipv4/tcp_wmem $'4096\t16384\t4194304'
put /proc/sys/net/ipv4/tcp_slow_start_after_idle 1
put /proc/sys/fs/file-max 2097152
put /proc/sys/fs/nr_open 1048576
put /sys/kernel/mm/transparent_hugepage/enabled '[always] madvise never'
put /sys/kernel/mm/transparent_hugepage/defrag '[always] defer defer+madvise madvise never'
put /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor powersave
put /sys/devices/system/cpu/cpu0/cpufreq/scaling_available_governors 'performance powersave'
put /etc/sysctl.d/90-spate.conf '# an older file of the admin'
# A 4-CPU machine with one NIC whose PCI function has two MSI-X vectors, 50 and 51.
put /sys/devices/system/cpu/online 0-3
put /sys/devices/pci0000:00/0000:00:03.0/msi_irqs/50 msix
put /sys/devices/pci0000:00/0000:00:03.0/msi_irqs/51 msix
mkdir -p "$fake/sys/class/net/eth9"
ln -s ../../../devices/pci0000:00/0000:00:03.0 "$fake/sys/class/net/eth9/device"
put /proc/irq/50/smp_affinity_list 0-3
put /proc/irq/51/smp_affinity_list 3
cp -r "$fake" "$tmp/fake.orig"
fake_state="$tmp/fake-state"
[ "$can_drop" -eq 1 ] && chown -R 65534:65534 "$fake"
run_fake() {
    if [ "$can_drop" -eq 1 ]; then
        as_nobody env SPATE_TUNING_ROOT="$fake" ./apply --state-dir "$fake_state" "$@"
    else
        SPATE_TUNING_ROOT="$fake" ./apply --state-dir "$fake_state" "$@"
    fi
}
[ "$can_drop" -eq 1 ] && { mkdir -p "$fake_state"; chown 65534:65534 "$fake_state"; }

run_fake --persist --irq-affinity --cores 2-3 >"$tmp/fake-apply.txt" 2>&1 || { cat "$tmp/fake-apply.txt" >&2; fail "fake apply exited $?"; }
expect() {
    local got
    got=$(tr '\t' ' ' <"$fake$1")
    [ "$got" = "$2" ] || { cat "$tmp/fake-apply.txt" >&2; fail "$3: $1 is '$got', want '$2'"; }
}
expect /proc/sys/vm/swappiness 1 "apply"
expect /proc/sys/vm/dirty_bytes 268435456 "apply"
expect /proc/sys/vm/dirty_background_bytes 67108864 "apply"
expect /proc/sys/net/core/somaxconn 8192 "apply (above the minimum: left alone)"
expect /proc/sys/net/ipv4/tcp_max_syn_backlog 4096 "apply"
expect /proc/sys/net/core/rmem_max 16777216 "apply"
expect /proc/sys/net/ipv4/tcp_rmem "4096 131072 16777216" "apply"
expect /proc/sys/net/ipv4/tcp_slow_start_after_idle 0 "apply"
expect /proc/sys/fs/file-max 2097152 "apply (above the minimum: left alone)"
expect /sys/kernel/mm/transparent_hugepage/enabled madvise "apply"
expect /sys/kernel/mm/transparent_hugepage/defrag 'defer+madvise' "apply"
expect /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor performance "apply"
expect /proc/irq/50/smp_affinity_list 0-1 "apply --irq-affinity --cores 2-3"
expect /proc/irq/51/smp_affinity_list 0-1 "apply --irq-affinity --cores 2-3"
grep -qx 'spate hard memlock unlimited' "$fake/etc/security/limits.d/90-spate.conf" || fail "apply: limits.d file"
grep -qx 'net.core.rmem_max = 16777216' "$fake/etc/sysctl.d/90-spate.conf" || fail "apply --persist: sysctl.d file"
grep -q 'somaxconn' "$fake/etc/sysctl.d/90-spate.conf" && fail "apply --persist pinned a sysctl it did not raise"
grep -qx 'sysctl:vm.swappiness=60' "$fake_state/previous.env" || fail "state file lacks the old swappiness"
grep -qx 'sysctl:net.ipv4.tcp_rmem=4096 131072 6291456' "$fake_state/previous.env" || fail "state file lacks the old tcp_rmem"
grep -qx 'file:/etc/security/limits.d/90-spate.conf=absent' "$fake_state/previous.env" || fail "state file lacks limits.d"
grep -q '^sysctl:net.core.somaxconn=' "$fake_state/previous.env" && fail "state file records a setting apply left alone"
entries=$(grep -vc '^#' "$fake_state/previous.env")
ok "apply changes the fake tree as recommended and records $entries previous values"

# A second apply records nothing new: the first values are the ones to restore.
cp "$fake_state/previous.env" "$tmp/state-after-first"
run_fake --persist --irq-affinity --cores 2-3 >"$tmp/fake-apply2.txt" 2>&1 || { cat "$tmp/fake-apply2.txt" >&2; fail "second fake apply exited $?"; }
cmp -s "$fake_state/previous.env" "$tmp/state-after-first" || fail "second apply changed the state file"
grep -q 'would set\|  set ' "$tmp/fake-apply2.txt" && { cat "$tmp/fake-apply2.txt" >&2; fail "second apply changed something"; }
ok "a second apply is a no-op and keeps the first recorded values"

run_fake --revert >"$tmp/fake-revert.txt" 2>&1 || { cat "$tmp/fake-revert.txt" >&2; fail "fake revert exited $?"; }
# The fake tree does not emulate the kernel zeroing dirty_*_bytes when a ratio is written,
# so those two files are compared apart.
expect /proc/sys/vm/dirty_ratio 20 "revert"
expect /proc/sys/vm/dirty_background_ratio 10 "revert"
rm "$fake/proc/sys/vm/dirty_bytes" "$fake/proc/sys/vm/dirty_background_bytes" \
    "$tmp/fake.orig/proc/sys/vm/dirty_bytes" "$tmp/fake.orig/proc/sys/vm/dirty_background_bytes"
# Sysfs choice files read back as the chosen word once written; compare the choice.
for f in sys/kernel/mm/transparent_hugepage/enabled sys/kernel/mm/transparent_hugepage/defrag; do
    [ "$(cat "$fake/$f")" = always ] || fail "revert: $f is '$(cat "$fake/$f")', want always"
    rm "$fake/$f" "$tmp/fake.orig/$f"
done
# The kernel prints tcp_rmem with tabs and accepts spaces; directories apply created for its own
# files (limits.d) may stay behind, empty.
find "$fake" "$tmp/fake.orig" -type f -exec sed -i 's/\t/ /g' {} +
find "$fake" "$tmp/fake.orig" -type d -empty -delete
diff -ru "$tmp/fake.orig" "$fake" >&2 || fail "revert did not restore the fake tree exactly"
[ ! -e "$fake_state/previous.env" ] || fail "revert kept the state file"
ls "$fake_state"/previous.env.reverted.* >/dev/null 2>&1 || fail "revert did not retire the state file"
ok "apply --revert restores every value and file, and retires the state file"

# --- the systemd unit -------------------------------------------------------------------------
for line in 'LimitMEMLOCK=infinity' 'LimitNOFILE=1048576' 'Restart=on-failure' 'KillSignal=SIGTERM' \
    'ExecStart=/usr/local/bin/spate --config /etc/spate/spate.toml' 'User=spate' '#CPUAffinity=2-7' \
    'SystemCallFilter=io_uring_setup io_uring_enter io_uring_register'; do
    grep -qxF "$line" spate.service || fail "spate.service lacks '$line'"
done
grep -qE '^TimeoutStopSec=[0-9]+' spate.service || fail "spate.service lacks TimeoutStopSec"
if grep -E '^SystemCallFilter=~' spate.service | grep -qE '@aio|@basic-io|io_uring'; then
    fail "spate.service denies io_uring system calls"
fi
if have systemd-analyze; then
    # The binary does not exist here; verify the unit with a stand-in so only real errors show.
    sed 's|^ExecStart=/usr/local/bin/spate|ExecStart=/bin/true|' spate.service >"$tmp/spate.service"
    systemd-analyze verify "$tmp/spate.service" >"$tmp/verify.txt" 2>&1 || { cat "$tmp/verify.txt" >&2; fail "systemd-analyze verify"; }
    [ ! -s "$tmp/verify.txt" ] || { cat "$tmp/verify.txt" >&2; fail "systemd-analyze verify warned"; }
    ok "spate.service has the required settings and passes systemd-analyze verify"
else
    ok "spate.service has the required settings (systemd-analyze not installed: not verified)"
fi

if have shellcheck; then
    shellcheck check apply test.sh || fail "shellcheck"
    ok "shellcheck is clean"
else
    echo "skip: shellcheck (not installed)"
fi

echo "tuning tests: $passed passed"
