//! The HTTP admin listener (`--admin-listen`, default 127.0.0.1:9644 as Redpanda's admin
//! port): `/metrics` for Prometheus, `/health` and `/ready` for supervisors and load balancers.
//!
//! It runs on the controller core (core 0) only, as a few tasks beside the Kafka listener: a
//! scrape every few seconds is no load worth spreading, and one listener keeps one port. The
//! socket is bound by `runtime::run` before the executors start, without SO_REUSEPORT, so a
//! second broker on the same admin port fails at startup instead of silently sharing it (as
//! glommio's own `TcpListener::bind` would let it). The listener answers from the first moment
//! core 0 runs, before recovery, so `/health` is 200 and `/ready` 503 while partitions load.
//!
//! Limits: [`CONNECTIONS_MAX`] connections at once (more are closed at once), a request head of
//! at most [`http::REQUEST_BYTES_MAX`] bytes that must arrive within [`REQUEST_TIMEOUT`], one
//! request per connection, and a metrics answer bounded by the partitions and groups the broker
//! holds.

pub mod http;

use std::cell::Cell;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::core::Core;
use crate::metrics::exposition::CONTENT_TYPE;
use crate::ops::{CoreReply, CoreRequest};
use crate::runtime::ShutdownFlag;
use http::{Method, ParseError, Status};

/// Admin connections served at once.
pub const CONNECTIONS_MAX: usize = 16;
/// How long a client may take to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cores have to answer a scrape (Prometheus' default scrape timeout is 10 s).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
const TEXT: &str = "text/plain; charset=utf-8";

/// Whether the broker is ready for clients, or why not.
///
/// # Errors
/// A short reason, sent with a 503.
pub fn readiness(core: &Core, shutdown: &ShutdownFlag) -> Result<(), &'static str> {
    if shutdown.is_triggered() {
        return Err("shutting down");
    }
    if core.config.cluster.is_some() {
        let Some(node) = core.cluster_node.get() else {
            return Err("joining the cluster");
        };
        if !node
            .membership
            .is_registered(node.node_id, node.incarnation.0)
        {
            return Err("not registered with the controller yet");
        }
    }
    if !shutdown.all_loaded(core.cores) {
        return Err("recovering partitions");
    }
    Ok(())
}

/// Serves the admin listener until the executor stops. `listener` is bound and listening.
pub async fn serve(listener: std::net::TcpListener, core: Rc<Core>, shutdown: Arc<ShutdownFlag>) {
    let address = listener
        .local_addr()
        .map_or_else(|e| format!("unknown ({e})"), |a| a.to_string());
    // SAFETY: the descriptor is a bound, listening TCP socket whose ownership moves here.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    info!(core = core.id, admin_listen = %address, "admin listener serving /metrics, /health, /ready");
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                warn!(%error, "admin accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.get() >= CONNECTIONS_MAX {
            debug!(
                limit = CONNECTIONS_MAX,
                "admin connection limit reached: closing"
            );
            continue;
        }
        open.set(open.get() + 1);
        let (core, shutdown, open) = (core.clone(), shutdown.clone(), open.clone());
        glommio::spawn_local(async move {
            if let Err(error) = serve_connection(stream, &core, &shutdown).await {
                debug!(%error, "admin connection failed");
            }
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Reads one request head, answers it, closes.
async fn serve_connection(
    mut stream: TcpStream,
    core: &Core,
    shutdown: &ShutdownFlag,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; http::REQUEST_BYTES_MAX];
    let mut filled = 0;
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let (method, path) = loop {
        match http::parse(&buf[..filled]) {
            Ok(request) => break (request.method, request.path.to_owned()),
            Err(ParseError::Incomplete) => {}
            Err(error) => {
                let body = format!("{error}\n");
                send(&mut stream, error.status(), TEXT, &body, Method::Get).await?;
                return drain_and_close(stream).await;
            }
        }
        // parse refuses a full buffer as too large, so there is room here.
        assert!(filled < buf.len());
        let left = deadline.saturating_duration_since(Instant::now());
        let read = future::or(
            async { Some(stream.read(&mut buf[filled..]).await) },
            async {
                glommio::timer::sleep(left).await;
                None
            },
        )
        .await;
        match read {
            None => {
                let body = "request head not received in time\n";
                send(
                    &mut stream,
                    Status::REQUEST_TIMEOUT,
                    TEXT,
                    body,
                    Method::Get,
                )
                .await?;
                return drain_and_close(stream).await;
            }
            Some(Ok(0)) => return Ok(()),
            Some(Ok(n)) => filled += n,
            Some(Err(error)) => return Err(error),
        }
    };
    let (status, content_type, body) = answer(&path, core, shutdown).await;
    send(&mut stream, status, content_type, &body, method).await
}

/// The response to a request for `path`.
async fn answer(
    path: &str,
    core: &Core,
    shutdown: &ShutdownFlag,
) -> (Status, &'static str, String) {
    match path {
        "/health" => (Status::OK, TEXT, "ok\n".to_owned()),
        "/ready" => match readiness(core, shutdown) {
            Ok(()) => (Status::OK, TEXT, "ready\n".to_owned()),
            Err(reason) => (Status::UNAVAILABLE, TEXT, format!("not ready: {reason}\n")),
        },
        "/metrics" => match gather(core).await {
            Ok(snapshots) => {
                let health = crate::metrics::Health {
                    ready: readiness(core, shutdown).is_ok(),
                };
                (
                    Status::OK,
                    CONTENT_TYPE,
                    crate::metrics::render(&snapshots, health),
                )
            }
            Err(reason) => (Status::UNAVAILABLE, TEXT, format!("{reason}\n")),
        },
        _ => (
            Status::NOT_FOUND,
            TEXT,
            "not found: try /metrics, /health or /ready\n".to_owned(),
        ),
    }
}

/// Every core's snapshot, or why not all could be had. Partial answers are refused: a core's
/// counters missing from one scrape would look like a counter reset to `rate()`.
async fn gather(core: &Core) -> Result<Vec<crate::metrics::Snapshot>, String> {
    let replies = future::or(
        async { Some(core.broadcast(|| CoreRequest::Metrics).await) },
        async {
            glommio::timer::sleep(GATHER_TIMEOUT).await;
            None
        },
    )
    .await
    .ok_or_else(|| {
        format!(
            "the cores did not answer within {} s",
            GATHER_TIMEOUT.as_secs()
        )
    })?;
    let mut snapshots = Vec::with_capacity(replies.len());
    for (index, reply) in replies.into_iter().enumerate() {
        match reply {
            Some(CoreReply::Metrics(snapshot)) => snapshots.push(*snapshot),
            Some(other) => panic!("core {index} answered Metrics with {other:?}"),
            None => return Err(format!("core {index} did not answer")),
        }
    }
    Ok(snapshots)
}

/// After an error answer to a request that may not have been read to its end: closing a
/// socket with unread bytes makes the kernel send a reset, which can destroy the answer before
/// the client reads it. So: end our side, then read and discard what the client still sends,
/// for a bounded time and number of bytes.
async fn drain_and_close(stream: TcpStream) -> std::io::Result<()> {
    const DRAIN_BYTES_MAX: usize = 64 << 10;
    const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
    stream.shutdown(std::net::Shutdown::Write).await?;
    let mut stream = stream;
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while drained < DRAIN_BYTES_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        let read = future::or(async { Some(stream.read(&mut scratch).await) }, async {
            glommio::timer::sleep(left).await;
            None
        })
        .await;
        match read {
            Some(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
    Ok(())
}

async fn send(
    stream: &mut TcpStream,
    status: Status,
    content_type: &str,
    body: &str,
    method: Method,
) -> std::io::Result<()> {
    let bytes = http::response(status, content_type, body, method);
    let written = future::or(async { Some(stream.write_all(&bytes).await) }, async {
        glommio::timer::sleep(WRITE_TIMEOUT).await;
        None
    })
    .await;
    match written {
        Some(result) => result,
        None => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
