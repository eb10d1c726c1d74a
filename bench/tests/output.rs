//! What `spate-bench run` and `plot` write, as a user and a script see it: a human summary on
//! stdout, the JSON summary in the file `--json` names or (`--json -`) on stdout, the run's
//! `--label` carried into the JSON and onto the plot.

use std::path::Path;
use std::process::{Command, Output};

use spate_testkit::{spate_binary, Broker, TestDir};

fn bench(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_spate-bench"))
        .args(args)
        .output()
        .expect("running spate-bench");
    assert!(
        output.status.success(),
        "spate-bench {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A run of 1 s at 1000 records/s with a consumer, on `topic`.
fn run(broker: &Broker, topic: &str, extra: &[&str]) -> Output {
    let addr = broker.addr.to_string();
    let mut args = vec![
        "run",
        "--bootstrap",
        &addr,
        "--topic",
        topic,
        "--rate",
        "1000",
        "--duration-s",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    bench(&args)
}

fn count(summary: &serde_json::Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

#[test]
fn run_prints_a_human_summary_and_writes_the_json_where_asked() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let broker = Broker::start(
        &spate_binary(),
        TestDir::new(root, "bench-output"),
        &["--log-level", "warn"],
    );
    let out = TestDir::new(root, "bench-output-files");

    // Default: the human summary on stdout, the JSON in the file.
    let json = out.path().join("plain.json");
    let output = run(&broker, "plain", &["--json", json.to_str().unwrap()]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("run: "), "{stdout}");
    assert!(stdout.contains("asked 1000/s, achieved "), "{stdout}");
    assert!(stdout.contains("\nack latency:  p50 "), "{stdout}");
    assert!(stdout.contains("\ne2e latency:  p50 "), "{stdout}");
    assert!(
        stdout.contains("every record consumed once, in order"),
        "{stdout}"
    );
    assert!(!stdout.contains('{'), "no JSON on stdout: {stdout}");
    assert!(
        String::from_utf8(output.stderr).unwrap().is_empty(),
        "--quiet: no progress lines"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // 1 s at 1000 records/s; a slow machine may fall behind the rate, not below a quarter.
    assert!(count(&summary, "sent") >= 250, "{summary}");
    assert_eq!(count(&summary, "acked"), count(&summary, "sent"));
    assert!(summary.get("label").is_none(), "{summary}");
    assert!(stdout.contains(&format!(
        "sent {}, acknowledged {}",
        count(&summary, "sent"),
        count(&summary, "acked")
    )));

    // `--json -`: only JSON on stdout, with the full distribution; the human summary on stderr.
    let output = run(
        &broker,
        "labelled",
        &["--json", "-", "--label", "half rate"],
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(summary["label"], "half rate");
    assert!(count(&summary, "acked") >= 250, "{summary}");
    assert_eq!(summary["loss_check"]["ok"], true, "{summary}");
    let points = summary["ack_latency"]["distribution"].as_array().unwrap();
    assert!(points.len() >= 10, "{summary}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("run half rate: "), "{stderr}");
    assert!(stderr.contains("\nack latency:  p50 "), "{stderr}");
    std::fs::write(out.path().join("labelled.json"), &output.stdout).unwrap();

    // The plot names the labelled run by its label and the other by its file name.
    let svg = out.path().join("runs.svg");
    let plain = json.to_str().unwrap();
    let labelled = out.path().join("labelled.json");
    bench(&[
        "plot",
        plain,
        labelled.to_str().unwrap(),
        "--log-y",
        "-o",
        svg.to_str().unwrap(),
    ]);
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(doc.matches("<polyline").count(), 2, "{doc}");
    assert!(doc.contains(">plain.json (p99 "), "{doc}");
    assert!(doc.contains(">half rate (p99 "), "{doc}");
    assert!(doc.contains("latency (log scale)"), "{doc}");

    // compare names them the same way.
    let output = bench(&["compare", plain, labelled.to_str().unwrap()]);
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("plain.json") && table.contains("half rate"),
        "{table}"
    );
}

#[test]
fn producers_share_the_partitions_and_every_record_is_consumed_once() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let broker = Broker::start(
        &spate_binary(),
        TestDir::new(root, "bench-producers"),
        &["--log-level", "warn"],
    );
    let out = TestDir::new(root, "bench-producers-files");
    let json = out.path().join("producers.json");
    run(
        &broker,
        "producers",
        &[
            "--partitions",
            "8",
            "--producers",
            "3",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Three producers at a third of 1000/s each for 1 s; a slow machine may fall behind.
    assert!(count(&summary, "sent") >= 250, "{summary}");
    assert_eq!(count(&summary, "acked"), count(&summary, "sent"));
    let check = &summary["loss_check"];
    assert_eq!(check["ok"], true, "{summary}");
    assert_eq!(
        check["received"].as_u64(),
        Some(count(&summary, "sent")),
        "{summary}"
    );
    assert_eq!(check["duplicates"].as_u64(), Some(0), "{summary}");
    assert_eq!(check["out_of_order"].as_u64(), Some(0), "{summary}");
}
