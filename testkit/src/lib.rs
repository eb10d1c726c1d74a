//! Test helpers shared by Spate's integration tests: start the real `spate` binary on a free
//! loopback port with a data dir of its own, and clean up after it.
//!
//! A test owns a [`Broker`]; dropping it kills the process if it still runs and removes the
//! data dir, unless the test is failing (the dir is kept and its path printed, for debugging)
//! or `SPATE_KEEP_TEST_DATA` is set. Paths that only the calling test crate knows (the binary,
//! `CARGO_TARGET_TMPDIR`) are passed in:
//!
//! ```no_run
//! use std::path::Path;
//! use spate_testkit::{Broker, TestDir};
//!
//! let dir = TestDir::new(Path::new("/path/to/target/tmp"), "broker-example");
//! let mut broker = Broker::start(Path::new("/path/to/spate"), dir, &["--log-level", "warn"]);
//! let _stream = broker.connect();
//! assert!(broker.stop().success());
//! ```
//!
//! [`Cluster`] starts several brokers as one cluster (`--controller-voters`, every broker a
//! voter) and waits until each of them lists all brokers and a controller in Metadata.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set (to anything) to keep every test's data dir.
pub const KEEP_DATA_VAR: &str = "SPATE_KEEP_TEST_DATA";

/// Brokers started before giving up on finding a port.
const START_ATTEMPTS_MAX: usize = 5;
/// How long a broker may take to accept after exec, and to exit after SIGTERM; bounds on
/// waits on a shared, busy machine, not assertions about speed.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Ports handed out: `[PORT_FIRST, PORT_FIRST + PORT_COUNT)`, below Linux's default ephemeral
/// range (32768-60999).
const PORT_FIRST: u16 = 20_000;
const PORT_COUNT: u16 = 12_000;
/// Processes (test binaries) get starting points this far apart, by pid.
const PORT_STRIDE: u16 = 25;
const _: () = assert!(PORT_FIRST as u32 + PORT_COUNT as u32 <= 32_768);

/// A fresh, empty directory for a test's data, removed when dropped (see the crate docs for
/// when it is kept).
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `<root>/<name>-<pid>`, emptied first. `root` must be on a real disk: the broker
    /// writes with O_DIRECT, which tmpfs refuses (use the test crate's `CARGO_TARGET_TMPDIR`).
    ///
    /// # Panics
    /// If the directory cannot be created.
    pub fn new(root: &Path, name: &str) -> TestDir {
        let path = root.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating test dir {}: {e}", path.display()));
        TestDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed; its data is kept in {}", self.path.display());
        } else if std::env::var_os(KEEP_DATA_VAR).is_some() {
            eprintln!(
                "{KEEP_DATA_VAR} is set; test data kept in {}",
                self.path.display()
            );
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("removing test dir {}: {e}", self.path.display());
        }
    }
}

/// A `spate` process with one core on a loopback port; killed (if still running) when dropped,
/// before its data dir is removed.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    /// Where it accepts connections.
    pub addr: SocketAddr,
    binary: PathBuf,
    args: Vec<String>,
    // Declared last: dropped after `Drop::drop` stopped the process.
    data_dir: TestDir,
}

impl Broker {
    /// Starts `binary` with `--cores 1` and `extra_args` on `data_dir` and a free port, and
    /// waits until it accepts. A broker that exits before accepting (its port was taken
    /// between the check and its bind) is started again on another port.
    ///
    /// # Panics
    /// If it does not accept within 10 s, or exits before accepting five times in a row.
    pub fn start(binary: &Path, data_dir: TestDir, extra_args: &[&str]) -> Broker {
        let args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let (child, addr) = spawn_accepting(binary, data_dir.path(), &args);
        Broker {
            child,
            addr,
            binary: binary.to_owned(),
            args,
            data_dir,
        }
    }

    /// The broker process's id (for reading its `/proc` entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker's data dir.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// A connection with a 10 s read timeout.
    ///
    /// # Panics
    /// If the broker does not accept.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connecting to the broker");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("setting a read timeout");
        stream
    }

    /// Sends SIGTERM (once: a second one makes the broker exit at once with status 2).
    pub fn sigterm(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // exited (and now reaped): its pid may be reused
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child, not reaped yet (only this struct reaps it), so the
        // pid is still its own even if it exited meanwhile.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit (after [`Broker::sigterm`]).
    ///
    /// # Panics
    /// If it is still running after 20 s.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the broker") {
                return status;
            }
            assert!(
                started.elapsed() < STOP_TIMEOUT,
                "broker did not exit within {STOP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status. The data dir stays until the `Broker` is dropped.
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed or closed) and reaps it.
    ///
    /// # Panics
    /// If it cannot be reaped.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reaping the killed broker")
    }

    /// Starts the broker again on the same data dir with the same arguments (on a new port:
    /// see `addr`), after [`Broker::stop`].
    ///
    /// # Panics
    /// If the broker is still running, or does not start (as [`Broker::start`]).
    pub fn restart(&mut self) {
        assert!(
            matches!(self.child.try_wait(), Ok(Some(_))),
            "restart of a broker that is still running"
        );
        let (child, addr) = spawn_accepting(&self.binary, self.data_dir.path(), &self.args);
        self.child = child;
        self.addr = addr;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a cluster may take until every broker lists every broker and a controller (a
/// Raft election and each broker's registration, on a busy machine).
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Brokers of one [`Cluster`], at most (node ids are 1..=count).
pub const CLUSTER_BROKERS_MAX: usize = 9;

/// Several `spate` processes (one core each) forming one cluster: node ids 1..=N, each with a
/// cluster listener on a free port, all of them controller voters.
#[derive(Debug)]
pub struct Cluster {
    /// The brokers, `brokers[i]` has node id `i + 1`.
    pub brokers: Vec<Broker>,
}

impl Cluster {
    /// Starts `count` brokers on fresh data dirs `<root>/<name>-node<i>-<pid>` with
    /// `extra_args`, and waits until every broker's Metadata lists `count` brokers and a
    /// controller.
    ///
    /// # Panics
    /// If `count` is 0 or above [`CLUSTER_BROKERS_MAX`], a broker does not start (as
    /// [`Broker::start`]), or the cluster is not ready within 60 s.
    pub fn start(
        binary: &Path,
        root: &Path,
        name: &str,
        count: usize,
        extra_args: &[&str],
    ) -> Cluster {
        assert!(count > 0 && count <= CLUSTER_BROKERS_MAX, "{count} brokers");
        let cluster_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let voters = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let brokers: Vec<Broker> = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let node_id = (i + 1).to_string();
                let cluster_listen = format!("127.0.0.1:{port}");
                let mut args: Vec<&str> = vec![
                    "--node-id",
                    &node_id,
                    "--cluster-listen",
                    &cluster_listen,
                    "--controller-voters",
                    &voters,
                ];
                args.extend_from_slice(extra_args);
                let dir = TestDir::new(root, &format!("{name}-node{}", i + 1));
                Broker::start(binary, dir, &args)
            })
            .collect();
        let cluster = Cluster { brokers };
        cluster.wait_ready(count);
        cluster
    }

    /// Waits until every running broker's Metadata lists `count` brokers and a controller.
    ///
    /// # Panics
    /// If that takes over 60 s.
    pub fn wait_ready(&self, count: usize) {
        let started = Instant::now();
        for b in &self.brokers {
            loop {
                let seen = cluster_view(b.addr);
                if let Ok((brokers, controller)) = seen {
                    if brokers == count && controller >= 0 {
                        break;
                    }
                }
                assert!(
                    started.elapsed() < CLUSTER_READY_TIMEOUT,
                    "broker {} not ready within {CLUSTER_READY_TIMEOUT:?}: (brokers, controller) {seen:?}",
                    b.addr
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Asks the broker at `addr` for Metadata v1 with no topics: (brokers listed, controller id).
///
/// # Errors
/// I/O errors, or `InvalidData` for a response too short to hold those fields.
pub fn cluster_view(addr: SocketAddr) -> std::io::Result<(usize, i32)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    const CLIENT_ID: &[u8] = b"testkit";
    let mut request = Vec::new();
    request.extend_from_slice(&3i16.to_be_bytes()); // api key: Metadata
    request.extend_from_slice(&1i16.to_be_bytes()); // version 1
    request.extend_from_slice(&1i32.to_be_bytes()); // correlation id
    request.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    request.extend_from_slice(CLIENT_ID);
    request.extend_from_slice(&0i32.to_be_bytes()); // topics: none
    let mut frame = (request.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&request);
    stream.write_all(&frame)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(0);
    if size > 1 << 20 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "metadata response over 1 MiB",
        ));
    }
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body)?;
    parse_cluster_view(&body).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "short metadata response")
    })
}

/// (broker count, controller id) from a Metadata v1 response (after the size prefix).
fn parse_cluster_view(body: &[u8]) -> Option<(usize, i32)> {
    let mut at = 4; // correlation id
    let i32_at = |at: usize| Some(i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?));
    let i16_at = |at: usize| Some(i16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let brokers = usize::try_from(i32_at(at)?).ok()?;
    at += 4;
    for _ in 0..brokers {
        at += 4; // node id
        let host = usize::try_from(i16_at(at)?).ok()?;
        at += 2 + host + 4; // host, port
        let rack = i16_at(at)?;
        at += 2 + usize::try_from(rack).unwrap_or(0);
    }
    Some((brokers, i32_at(at)?))
}

fn spawn_accepting(binary: &Path, data_dir: &Path, args: &[String]) -> (Child, SocketAddr) {
    for _ in 0..START_ATTEMPTS_MAX {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(binary);
        // Every broker gets its own admin port (port 0: the kernel picks a free one), so
        // brokers of parallel tests never clash on the default 9644; a test may name its own.
        if !args.iter().any(|a| a.starts_with("--admin-listen")) {
            command.args(["--admin-listen", "127.0.0.1:0"]);
        }
        command
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--cores")
            .arg("1")
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // The broker reads SPATE_* variables as settings; the tests' own (SPATE_BIN,
        // SPATE_KEEP_TEST_DATA) are not for it, and a developer's must not change the tests.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SPATE_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
        if wait_accepting(&mut child, addr) {
            return (child, addr);
        }
    }
    panic!("broker did not start in {START_ATTEMPTS_MAX} attempts");
}

/// Whether the broker accepts on `addr`; `false` if it exited first.
fn wait_accepting(child: &mut Child, addr: SocketAddr) -> bool {
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("broker on {addr} exited before accepting: {status}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("broker did not accept on {addr} within {START_TIMEOUT:?}");
}

/// A port no other broker of this process uses. Not an ephemeral port from the kernel: the
/// broker binds with SO_REUSEPORT, so two brokers handed the same just-freed port would both
/// start and split each other's connections. One counter per process, starting at an offset
/// by pid so that test binaries running at once rarely meet; a port still taken is skipped.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(PORT_COUNT / PORT_STRIDE)) as u16 * PORT_STRIDE;
    for _ in 0..PORT_COUNT {
        let port =
            PORT_FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed) % PORT_COUNT) % PORT_COUNT;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_FIRST}..{}", PORT_FIRST + PORT_COUNT);
}

/// The `spate` binary for a crate other than the broker (`CARGO_BIN_EXE_spate` exists only
/// inside the broker crate): (1) `$SPATE_BIN`, (2) `target/<profile>/spate` next to the
/// running test (present whenever `cargo test --workspace` ran, since it builds every binary
/// before running tests; under `cargo test -p <crate>` it may be older than the broker's
/// sources: run `cargo build -p spate-broker` first or set `SPATE_BIN`), or else (3) builds it
/// with `cargo build -p spate-broker` into a separate target dir (the outer cargo holds the
/// lock on ours). Built at most once per process.
///
/// # Panics
/// If the build fails.
pub fn spate_binary() -> PathBuf {
    use std::sync::OnceLock;
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
            .join("tests-broker");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_not_handed_out_twice_in_a_process() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        assert!(ports
            .iter()
            .all(|p| (PORT_FIRST..PORT_FIRST + PORT_COUNT).contains(p)));
    }

    #[test]
    fn a_metadata_v1_answer_gives_brokers_and_controller() {
        let mut body = Vec::new();
        body.extend_from_slice(&9i32.to_be_bytes()); // correlation id
        body.extend_from_slice(&2i32.to_be_bytes()); // brokers
        for (id, rack) in [(1i32, None), (2, Some(&b"r1"[..]))] {
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&9i16.to_be_bytes());
            body.extend_from_slice(b"127.0.0.1");
            body.extend_from_slice(&9092i32.to_be_bytes());
            match rack {
                None => body.extend_from_slice(&(-1i16).to_be_bytes()),
                Some(r) => {
                    body.extend_from_slice(&(r.len() as i16).to_be_bytes());
                    body.extend_from_slice(r);
                }
            }
        }
        body.extend_from_slice(&2i32.to_be_bytes()); // controller
        body.extend_from_slice(&0i32.to_be_bytes()); // topics
        assert_eq!(parse_cluster_view(&body), Some((2, 2)));
        assert_eq!(parse_cluster_view(&body[..20]), None);
    }

    #[test]
    fn a_test_dir_is_removed_when_dropped() {
        let root = std::env::temp_dir();
        let dir = TestDir::new(&root, "spate-testkit-removed");
        let path = dir.path().to_owned();
        std::fs::write(path.join("f"), b"x").unwrap();
        drop(dir);
        if std::env::var_os(KEEP_DATA_VAR).is_none() {
            assert!(!path.exists());
        }
    }

    #[test]
    fn a_failing_tests_dir_is_kept() {
        let root = std::env::temp_dir();
        let path = root.join(format!("spate-testkit-kept-{}", std::process::id()));
        let result = std::panic::catch_unwind(|| {
            let _dir = TestDir::new(&root, "spate-testkit-kept");
            panic!("the test fails");
        });
        assert!(result.is_err());
        assert!(path.is_dir(), "kept for debugging");
        std::fs::remove_dir_all(&path).unwrap();
    }
}
