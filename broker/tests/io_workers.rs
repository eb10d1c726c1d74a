//! `--io-worker-cpus`: the broker moves its io_uring worker threads (`iou-wrk-*`, which run
//! every fdatasync) to the CPUs given, and refuses to start on CPUs that are not online.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use spate_wire::batch::{BatchBuilder, BatchSpec};

fn batch() -> Bytes {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
    builder.push(0, None, Some(b"durable"), &[]);
    builder.finish();
    out.freeze()
}

/// The `Cpus_allowed_list` of a `/proc/.../status` file (None if unreadable).
fn cpus_allowed_list(status: &Path) -> Option<String> {
    let text = std::fs::read_to_string(status).ok()?;
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    Some(list.trim().to_owned())
}

/// CPUs this test process may run on (the broker inherits them).
fn allowed_cpus() -> Vec<usize> {
    let list = cpus_allowed_list(Path::new("/proc/self/status")).expect("Cpus_allowed_list");
    cpu_list(&list)
}

/// A minimal reader of the kernel's CPU list format (the broker's parser is not a library).
fn cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(a.trim().parse::<usize>().unwrap()..=b.trim().parse::<usize>().unwrap());
    }
    cpus
}

/// `Cpus_allowed_list` of every `iou-wrk-*` thread of `pid`.
fn io_worker_cpu_lists(pid: u32) -> Vec<String> {
    let mut lists = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return lists;
    };
    for task in tasks.filter_map(Result::ok) {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.starts_with("iou-wrk") {
            continue;
        }
        lists.extend(cpus_allowed_list(&path.join("status")));
    }
    lists
}

#[test]
fn io_workers_run_on_the_cpus_given() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipped: needs two CPUs, this process may use {cpus:?}");
        return;
    }
    // One core: its executor is pinned to the first allowed CPU; the workers go to the last.
    let worker_cpu = *cpus.last().expect("two CPUs");
    let worker_list = worker_cpu.to_string();
    let broker = start_broker(
        "io-workers",
        &["--io-worker-cpus", &worker_list, "--flush-mode", "group"],
    );
    let mut stream = broker.connect();
    create_topic(&mut stream, "iowq", 1);
    // acks=all under group commit waits for an fdatasync, which io_uring always runs in a
    // worker: at least one worker exists once this returns.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lists = Vec::new();
    while lists.is_empty() {
        let response = produce(&mut stream, "iowq", 0, batch(), -1);
        assert_eq!(response.error_code, 0);
        lists = io_worker_cpu_lists(broker.pid());
        assert!(Instant::now() < deadline, "no io_uring worker appeared");
    }
    assert!(
        lists.iter().all(|l| *l == worker_list),
        "workers {lists:?}, asked for {worker_list}"
    );
}

#[test]
fn the_broker_refuses_to_start_on_cpus_that_are_not_online() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("broker-io-workers-refused");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    // CPU 1023 passes the parser (below CPU_SETSIZE) but exists on no test machine. The
    // kernel itself would take it, cut the set to its CPU count and leave the workers no CPU
    // at all (a broker whose fdatasyncs never complete).
    let mut child = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "--listen",
            "127.0.0.1:1",
            "--admin-listen",
            "none",
            "--cores",
            "1",
            "--io-worker-cpus",
            "0,1023",
        ])
        .arg("--data-dir")
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spate");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the broker started with an impossible CPU");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    assert!(!output.status.success(), "exited zero");
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("io-worker-cpus") && text.contains("CPU 1023 is not online"),
        "no clear error: {text}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
