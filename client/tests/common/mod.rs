//! Starts the real `spate` broker binary for integration tests.
//!
//! Finding the binary: `CARGO_BIN_EXE_spate` exists only inside the broker crate, so this
//! looks for it (1) at `$SPATE_BIN`, (2) next to this test's own target profile dir
//! (`target/<profile>/spate`, present whenever `cargo test --workspace` ran, since it builds
//! every binary before running tests), and otherwise (3) builds it with
//! `$CARGO build -p spate-broker` into a separate target dir (the outer cargo holds the lock
//! on ours). With (2) under `cargo test -p spate-client` the binary may be older than the
//! broker's sources: run `cargo build -p spate-broker` first or set `SPATE_BIN`.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

fn spate_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("SPATE_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>/spate
        let profile_dir = exe.parent().and_then(|d| d.parent()).expect("profile dir");
        let candidate = profile_dir.join("spate");
        if candidate.exists() {
            return candidate;
        }
        let target = profile_dir
            .parent()
            .expect("target dir")
            .join("client-tests-broker");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "spate-broker",
                "--bin",
                "spate",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build -p spate-broker failed");
        target.join("debug").join("spate")
    })
    .clone()
}

/// Brokers started before giving up on finding a port.
const START_ATTEMPTS_MAX: usize = 5;

fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Not a kernel-chosen ephemeral port: the broker binds with SO_REUSEPORT, so two brokers
    // given the same just-freed port would both start. A range apart from the broker's tests.
    let base = 31_000 + (std::process::id() % 300) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 6_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Broker {
    pub fn start(name: &str) -> Broker {
        let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("client-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir).unwrap();
        // A port found free can be taken before the broker binds it (by another test's
        // outgoing connection: the range overlaps the ephemeral ports); the broker then exits
        // at once, and another port is tried.
        for _ in 0..START_ATTEMPTS_MAX {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut child = Command::new(spate_binary())
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(&data_dir)
                .arg("--cores")
                .arg("1")
                .args(["--log-level", "warn"])
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawning spate");
            let started = Instant::now();
            loop {
                if TcpStream::connect(addr).is_ok() {
                    return Broker {
                        child,
                        addr,
                        data_dir,
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("broker on {addr} exited before accepting: {status}");
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "broker did not start"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("broker did not start in {START_ATTEMPTS_MAX} attempts");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Runs `fut` on a fresh glommio executor with little locked memory (a broker is running too).
pub fn run<T: 'static>(fut: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .make()
        .expect("glommio executor")
        .run(fut)
}
