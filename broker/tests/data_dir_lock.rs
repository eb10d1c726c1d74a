//! One broker per data dir: a second `spate` on a data dir in use exits at once with an error
//! naming the first, which keeps serving; a broker killed with SIGKILL leaves no lock behind.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use spate_wire::batch::{BatchBuilder, BatchSpec};

const TOPIC: &str = "locked";
const RECORDS_PER_BATCH: i64 = 10;
const ACKS_ALL: i16 = -1;

fn batch() -> Bytes {
    let mut out = BytesMut::new();
    let mut builder = BatchBuilder::new(&mut out, BatchSpec::default());
    for i in 0..RECORDS_PER_BATCH {
        builder.push(0, None, Some(format!("value-{i}").as_bytes()), &[]);
    }
    builder.finish();
    out.freeze()
}

/// Produces `batches` batches with acks=all and checks their offsets follow `first_offset`.
fn produce_from(broker: &Broker, batches: i64, first_offset: i64) {
    let mut stream = broker.connect();
    for n in 0..batches {
        let answer = produce(&mut stream, TOPIC, 0, batch(), ACKS_ALL);
        assert_eq!(answer.error_code, 0);
        assert_eq!(answer.base_offset, first_offset + n * RECORDS_PER_BATCH);
    }
}

#[test]
fn a_second_broker_on_a_used_data_dir_exits_and_the_first_keeps_serving() {
    let mut broker = start_broker("data-dir-lock", &[]);
    create_topic(&mut broker.connect(), TOPIC, 1);
    produce_from(&broker, 10, 0);
    let lock_content = std::fs::read_to_string(broker.data_dir().join(".lock")).unwrap();
    assert_eq!(lock_content.trim(), broker.pid().to_string());

    // Another listen address, the same data dir: the reproduction of the data-loss bug.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
    command
        .args(["--listen", &format!("127.0.0.1:{port}"), "--cores", "1"])
        .args(["--admin-listen", "none"])
        .arg("--data-dir")
        .arg(broker.data_dir())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SPATE_") {
            command.env_remove(name);
        }
    }
    let mut second = command.spawn().expect("spawning the second broker");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            panic!("the second broker is still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "the second broker exited with {status}");
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", broker.pid())),
        "names the first broker: {stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the second broker never listened"
    );

    // The first broker serves on: offsets continue where they were.
    produce_from(&broker, 10, 10 * RECORDS_PER_BATCH);

    // A crash releases the lock (the file stays, with a dead pid in it): a restart on the same
    // dir starts and keeps every acknowledged record.
    broker.kill();
    broker.restart();
    produce_from(&broker, 1, 20 * RECORDS_PER_BATCH);
    assert_eq!(
        std::fs::read_to_string(broker.data_dir().join(".lock"))
            .unwrap()
            .trim(),
        broker.pid().to_string()
    );
}
