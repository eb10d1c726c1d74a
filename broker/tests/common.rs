//! Test helpers: start the real `spate` binary on a free loopback port and talk raw Kafka to it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A broker process; killed on drop if still running.
pub struct Broker {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

/// A directory for a test's data, on the real disk (O_DIRECT does not work on tmpfs), empty.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("broker-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port no other test of this run uses. Not an ephemeral port from the kernel: the broker
/// binds with SO_REUSEPORT, so two brokers handed the same just-freed port would both start and
/// split each other's connections. Ports below the ephemeral range, one counter per process,
/// offset by the pid so concurrent test binaries rarely meet; a port still taken is skipped.
/// Brokers started before giving up on finding a port.
const START_ATTEMPTS_MAX: usize = 5;

fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 400) as u16 * 25;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 10_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Broker {
    /// Starts a broker with one core on a fresh data dir and waits until it accepts.
    pub fn start(name: &str, extra_args: &[&str]) -> Broker {
        Broker::start_in(test_dir(name), extra_args)
    }

    /// Starts a broker on an existing data dir.
    pub fn start_in(data_dir: PathBuf, extra_args: &[&str]) -> Broker {
        // A port found free can be taken before the broker binds it (by another test's
        // outgoing connection: the range overlaps the ephemeral ports); the broker then exits
        // at once, and another port is tried.
        for _ in 0..START_ATTEMPTS_MAX {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_spate"))
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(&data_dir)
                .arg("--cores")
                .arg("1")
                .args(extra_args)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawning spate");
            let mut broker = Broker {
                child,
                addr,
                data_dir: data_dir.clone(),
            };
            if broker.wait_accepting(Duration::from_secs(10)) {
                return broker;
            }
        }
        panic!("broker did not start in {START_ATTEMPTS_MAX} attempts");
    }

    /// Whether the broker accepts within `limit`; `false` if it exited first.
    fn wait_accepting(&mut self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if TcpStream::connect(self.addr).is_ok() {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("broker on {} exited before accepting: {status}", self.addr);
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("broker did not accept on {} within {limit:?}", self.addr);
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "broker did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one frame (prefix added here) and reads one response frame body.
pub fn round_trip(stream: &mut TcpStream, body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
    read_frame(stream)
}

pub fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

/// An ApiVersions request (header v1 for versions 0-2, v2 for 3+).
pub fn api_versions_request(version: i16, correlation_id: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&18i16.to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&4i16.to_be_bytes());
    b.extend_from_slice(b"test");
    if version >= 3 {
        b.push(0); // header tagged fields
        b.push(5); // compact string "spate" length + 1
        b.extend_from_slice(b"test");
        b.push(4);
        b.extend_from_slice(b"0.1");
        b.push(0); // body tagged fields
    }
    b
}

/// Whether the peer closed the connection (read returns 0 or an error) within `limit`.
pub fn is_closed(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
        && !matches!(stream.read(&mut byte), Ok(n) if n > 0)
}

/// Encodes a request with kafka-protocol: header (in the layout the API version needs) + body.
pub fn encode_request<B: spate_wire::kafka_protocol::protocol::Encodable>(
    api_key: spate_wire::kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    body: &B,
) -> Vec<u8> {
    use spate_wire::header::{request_header_version, CorrelationId, RequestHeader};
    let mut out = bytes::BytesMut::new();
    RequestHeader {
        api_key,
        api_version: version,
        correlation_id: CorrelationId(correlation_id),
        client_id: Some(bytes::Bytes::from_static(b"spate-test")),
        version: request_header_version(api_key, version),
    }
    .encode(&mut out);
    body.encode(&mut out, version).unwrap();
    out.to_vec()
}

/// Sends a request and decodes the response body (after the response header).
pub fn call<Req, Resp>(
    stream: &mut TcpStream,
    api_key: spate_wire::kafka_protocol::messages::ApiKey,
    version: i16,
    request: &Req,
) -> Resp
where
    Req: spate_wire::kafka_protocol::protocol::Encodable,
    Resp: spate_wire::kafka_protocol::protocol::Decodable,
{
    use spate_wire::header::{response_header_version, ResponseHeaderVersion};
    let response = round_trip(stream, &encode_request(api_key, version, 77, request));
    let mut body = bytes::Bytes::from(response);
    assert_eq!(&body[..4], &77i32.to_be_bytes(), "correlation id");
    let mut skip = 4;
    if response_header_version(api_key, version) == ResponseHeaderVersion::V1 {
        skip += 1; // empty tagged fields
    }
    let _ = body.split_to(skip);
    Resp::decode(&mut body, version).unwrap()
}
