#!/usr/bin/env python3
"""Alternating benchmark runs of several broker builds, for side-by-side numbers in one sitting
(docs/benchmarks.md). Per run: a fresh data dir, the broker started (dedicated core or as
shipped), `spate-bench run` for 8 s, then the broker's peak RSS (VmHWM), the bytes the data
disk was sent (/proc/diskstats) and `du` of the data dir; the build order is reversed every
round. One line per run on stdout, the bench's JSON (with `_rss_mib`, `_disk_written_mb`,
`_du_mib` added) and the broker's log and /metrics in OUTDIR.

  BUILDS=base:/path/spate-old,new:/path/spate-new[:extra broker args] \\
    python3 bench/alternate.py OUTDIR ROUNDS max100,e2e350,p128 [--bench target/release/spate-bench]
      [--data-dir /tmp/spate-alternate] [--disk vda]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import time

CONFIGS = {
    # dedicated: broker on CPU 0 with one core, bench on CPU 1; otherwise as shipped, unpinned.
    "max100": dict(dedicated=True, args="--rate 0 --consumers 0 --message-bytes 100"),
    "max1k": dict(dedicated=True, args="--rate 0 --consumers 0 --message-bytes 1024"),
    "half": dict(dedicated=True, args="--rate 1000000 --consumers 0 --message-bytes 100"),
    "e2e350": dict(dedicated=False, args="--rate 350000 --consumers 1 --message-bytes 100"),
    "p128": dict(dedicated=False, args="--partitions 128 --message-bytes 100"),
    "p1000": dict(dedicated=False, args="--partitions 1000 --message-bytes 100"),
    "shipmax": dict(dedicated=False, args="--rate 0 --consumers 0 --message-bytes 100"),
}
PORT, ADMIN_PORT = 19092, 19093


def disk_written_bytes(disk):
    for line in open("/proc/diskstats"):
        fields = line.split()
        if fields[2] == disk:
            return int(fields[9]) * 512
    return 0


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("rounds", type=int)
    parser.add_argument("configs")
    parser.add_argument("--bench", default="target/release/spate-bench")
    parser.add_argument("--data-dir", default="/tmp/spate-alternate")
    parser.add_argument("--disk", default="vda")
    opts = parser.parse_args()
    builds = [(b.split(":") + [""])[:3] for b in os.environ["BUILDS"].split(",")]
    os.makedirs(opts.out, exist_ok=True)
    for r in range(opts.rounds):
        for config in opts.configs.split(","):
            conf = CONFIGS[config]
            order = builds if r % 2 == 0 else builds[::-1]
            for name, path, extra in order:
                tag = f"{config}-{name}-r{r}"
                shutil.rmtree(opts.data_dir, ignore_errors=True)
                os.makedirs(opts.data_dir)
                cmd = [path, "--listen", f"127.0.0.1:{PORT}", "--admin-listen",
                       f"127.0.0.1:{ADMIN_PORT}", "--data-dir", opts.data_dir,
                       "--log-level", "warn"] + extra.split()
                if conf["dedicated"]:
                    cmd = ["taskset", "-c", "0"] + cmd + ["--cores", "1"]
                log = open(f"{opts.out}/{tag}.broker.log", "w")
                broker = subprocess.Popen(cmd, stdout=log, stderr=log)
                for _ in range(100):
                    try:
                        socket.create_connection(("127.0.0.1", PORT), 0.2).close()
                        break
                    except OSError:
                        time.sleep(0.1)
                time.sleep(0.3)
                bench = [opts.bench, "run", "--bootstrap", f"127.0.0.1:{PORT}", "--quiet",
                         "--duration-s", "8", "--acks", "1", "--json",
                         f"{opts.out}/{tag}.json"] + conf["args"].split()
                if conf["dedicated"]:
                    bench += ["--cpu", "1"]
                written_before = disk_written_bytes(opts.disk)
                subprocess.run(bench, stdout=subprocess.DEVNULL,
                               stderr=open(f"{opts.out}/{tag}.bench.err", "w"), timeout=300)
                written = disk_written_bytes(opts.disk) - written_before
                rss = peak_rss_mib(broker.pid)
                metrics = subprocess.run(["curl", "-s", f"127.0.0.1:{ADMIN_PORT}/metrics"],
                                         capture_output=True, text=True, timeout=10).stdout
                open(f"{opts.out}/{tag}.metrics", "w").write(metrics)
                du = subprocess.run(["du", "-sm", opts.data_dir], capture_output=True,
                                    text=True).stdout.split()[0]
                broker.terminate()
                broker.wait(timeout=60)
                try:
                    result = json.load(open(f"{opts.out}/{tag}.json"))
                except (OSError, ValueError) as e:
                    print(f"{tag}: no result ({e}); see {tag}.bench.err and {tag}.broker.log",
                          flush=True)
                    continue
                result.update(_rss_mib=rss, _disk_written_mb=written / 1e6, _du_mib=int(du))
                json.dump(result, open(f"{opts.out}/{tag}.json", "w"))
                ack, e2e = result["ack_latency"], result.get("e2e_latency") or {}
                print(f"{tag:22s} rate {result['produce_rate'] / 1e6:6.3f}M"
                      f" ack p50 {ack['p50_us'] / 1e3:6.2f} p99 {ack['p99_us'] / 1e3:7.2f}"
                      f" e2e p50 {e2e.get('p50_us', 0) / 1e3:5.2f} p99 {e2e.get('p99_us', 0) / 1e3:6.2f}"
                      f" rss {rss} MiB du {du} MiB disk-written {written / 1e6:.0f} MB"
                      f" loss-check {result['loss_check'].get('ok')}", flush=True)
    shutil.rmtree(opts.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
