//! `spate-bench run` against three real brokers in cluster mode, bootstrapped at one of them:
//! a 6-partition topic led by all three, every record acknowledged and consumed once, in order.

use std::path::Path;
use std::process::Command;

use spate_testkit::{spate_binary, Cluster, TestDir};

#[test]
fn the_bench_produces_to_every_leader_of_a_cluster_from_one_bootstrap() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cluster = Cluster::start(
        &spate_binary(),
        root,
        "bench-cluster",
        3,
        &["--log-level", "warn"],
    );
    let out = TestDir::new(root, "bench-cluster-out");
    let json = out.path().join("summary.json");
    let output = Command::new(env!("CARGO_BIN_EXE_spate-bench"))
        .arg("run")
        .arg("--bootstrap")
        .arg(cluster.brokers[0].addr.to_string())
        .args(["--topic", "bench-spread", "--partitions", "6"])
        .args([
            "--rate",
            "2000",
            "--duration-s",
            "2",
            "--acks",
            "all",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running spate-bench");
    assert!(
        output.status.success(),
        "spate-bench failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let count = |field: &str| summary[field].as_u64().unwrap_or_else(|| panic!("{field}"));
    // 2 s at 2000 records/s; a slow machine may fall behind the rate, not below a quarter.
    assert!(count("sent") >= 1000, "{summary}");
    assert_eq!(count("acked"), count("sent"), "{summary}");
    assert_eq!(count("failed"), 0, "{summary}");
    let check = &summary["loss_check"];
    assert_eq!(check["ran"], true, "{summary}");
    assert_eq!(check["ok"], true, "{summary}");
    assert_eq!(check["received"].as_u64(), Some(count("sent")), "{summary}");
    assert_eq!(check["duplicates"].as_u64(), Some(0), "{summary}");
}
