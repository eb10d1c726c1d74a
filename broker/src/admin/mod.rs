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

/// Why the broker is not ready; its `Display` is the reason `/ready` sends with a 503
/// (`not ready: <reason>`), listed in `docs/METRICS.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// A signal or a fatal error started the shutdown.
    ShuttingDown,
    /// In a cluster: the node has not started its cluster role yet.
    JoiningCluster,
    /// In a cluster: this run of the broker (its incarnation) is not registered yet.
    NotRegistered,
    /// Some core has not finished recovering its partitions.
    RecoveringPartitions,
}

impl NotReady {
    /// The reason sent after `not ready: `.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::ShuttingDown => "shutting down",
            NotReady::JoiningCluster => "joining the cluster",
            NotReady::NotRegistered => "not registered with the controller yet",
            NotReady::RecoveringPartitions => "recovering partitions",
        }
    }
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a broker in a cluster stands with the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// A single broker: no controller to register with.
    Standalone,
    /// In a cluster, before the node's cluster role has started.
    Joining,
    /// In a cluster, started but this incarnation not registered yet.
    Unregistered,
    /// In a cluster, this incarnation registered.
    Registered,
}

/// What readiness is decided from, read from the core and the shutdown flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadinessInputs {
    /// The shutdown has started.
    pub shutting_down: bool,
    /// Where the broker stands with the controller.
    pub membership: Membership,
    /// Every core has recovered its partitions.
    pub all_loaded: bool,
}

/// Whether a broker in this state is ready for clients: no I/O, the rule alone.
///
/// # Errors
/// The first reason it is not: shutting down, then the cluster, then recovery.
pub fn readiness_of(inputs: ReadinessInputs) -> Result<(), NotReady> {
    if inputs.shutting_down {
        return Err(NotReady::ShuttingDown);
    }
    match inputs.membership {
        Membership::Joining => return Err(NotReady::JoiningCluster),
        Membership::Unregistered => return Err(NotReady::NotRegistered),
        Membership::Standalone | Membership::Registered => {}
    }
    if !inputs.all_loaded {
        return Err(NotReady::RecoveringPartitions);
    }
    Ok(())
}

/// Whether the broker is ready for clients, or why not.
///
/// # Errors
/// The reason, sent with a 503.
pub fn readiness(core: &Core, shutdown: &ShutdownFlag) -> Result<(), NotReady> {
    let membership = if core.config.cluster.is_none() {
        Membership::Standalone
    } else {
        match core.cluster_node.get() {
            None => Membership::Joining,
            Some(node)
                if node
                    .membership
                    .is_registered(node.node_id, node.incarnation.0) =>
            {
                Membership::Registered
            }
            Some(_) => Membership::Unregistered,
        }
    };
    readiness_of(ReadinessInputs {
        shutting_down: shutdown.is_triggered(),
        membership,
        all_loaded: shutdown.all_loaded(core.cores),
    })
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
        "/ready" => {
            let (status, body) = ready_answer(readiness(core, shutdown));
            (status, TEXT, body)
        }
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

/// `/ready`'s status and body for a readiness verdict: 200 `ready`, or 503 `not ready: <reason>`.
fn ready_answer(verdict: Result<(), NotReady>) -> (Status, String) {
    match verdict {
        Ok(()) => (Status::OK, "ready\n".to_owned()),
        Err(reason) => (Status::UNAVAILABLE, format!("not ready: {reason}\n")),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason, in the order `readiness_of` checks them.
    const ALL: [NotReady; 4] = [
        NotReady::ShuttingDown,
        NotReady::JoiningCluster,
        NotReady::NotRegistered,
        NotReady::RecoveringPartitions,
    ];

    const READY: ReadinessInputs = ReadinessInputs {
        shutting_down: false,
        membership: Membership::Standalone,
        all_loaded: true,
    };

    #[test]
    fn a_recovered_broker_is_ready_alone_or_registered_in_a_cluster() {
        assert_eq!(readiness_of(READY), Ok(()));
        let registered = ReadinessInputs {
            membership: Membership::Registered,
            ..READY
        };
        assert_eq!(readiness_of(registered), Ok(()));
        assert_eq!(ready_answer(Ok(())), (Status::OK, "ready\n".to_owned()));
    }

    /// Each reason forced alone, every other input ready: /ready answers 503 with that reason.
    #[test]
    fn each_not_ready_reason_alone_answers_503_with_its_reason() {
        let cases = [
            (
                ReadinessInputs {
                    shutting_down: true,
                    ..READY
                },
                NotReady::ShuttingDown,
                "not ready: shutting down\n",
            ),
            (
                ReadinessInputs {
                    membership: Membership::Joining,
                    ..READY
                },
                NotReady::JoiningCluster,
                "not ready: joining the cluster\n",
            ),
            (
                ReadinessInputs {
                    membership: Membership::Unregistered,
                    ..READY
                },
                NotReady::NotRegistered,
                "not ready: not registered with the controller yet\n",
            ),
            (
                ReadinessInputs {
                    all_loaded: false,
                    ..READY
                },
                NotReady::RecoveringPartitions,
                "not ready: recovering partitions\n",
            ),
        ];
        assert_eq!(cases.len(), ALL.len());
        for (inputs, reason, body) in cases {
            assert_eq!(readiness_of(inputs), Err(reason), "{inputs:?}");
            assert_eq!(
                ready_answer(readiness_of(inputs)),
                (Status::UNAVAILABLE, body.to_owned()),
                "{inputs:?}"
            );
        }
    }

    /// Every combination of inputs: ready only when nothing is wrong, else the first reason in
    /// `ALL` order (shutdown before the cluster before recovery).
    #[test]
    fn the_first_reason_in_order_is_reported_for_every_combination() {
        let memberships = [
            Membership::Standalone,
            Membership::Joining,
            Membership::Unregistered,
            Membership::Registered,
        ];
        let mut verdicts = 0;
        for shutting_down in [false, true] {
            for membership in memberships {
                for all_loaded in [false, true] {
                    let inputs = ReadinessInputs {
                        shutting_down,
                        membership,
                        all_loaded,
                    };
                    let expected = if shutting_down {
                        Err(NotReady::ShuttingDown)
                    } else if membership == Membership::Joining {
                        Err(NotReady::JoiningCluster)
                    } else if membership == Membership::Unregistered {
                        Err(NotReady::NotRegistered)
                    } else if !all_loaded {
                        Err(NotReady::RecoveringPartitions)
                    } else {
                        Ok(())
                    };
                    assert_eq!(readiness_of(inputs), expected, "{inputs:?}");
                    verdicts += 1;
                }
            }
        }
        assert_eq!(verdicts, 16);
    }

    /// docs/METRICS.md lists every reason /ready can give, and no other.
    #[test]
    fn metrics_doc_lists_every_not_ready_reason() {
        let doc = include_str!("../../../docs/METRICS.md");
        let row = doc
            .lines()
            .find(|line| line.starts_with("| `/ready` |"))
            .expect("docs/METRICS.md has a /ready row");
        for reason in ALL {
            assert!(
                row.contains(&format!("`{reason}`")),
                "docs/METRICS.md's /ready row does not name `{reason}`"
            );
        }
        let named = row.matches('`').count() / 2;
        // `/ready`, `200 ready`, `503 not ready: <reason>`, then one per reason.
        assert_eq!(named, 3 + ALL.len(), "{row}");
    }
}
