//! One core's server: joins the core mesh, recovers the partitions it owns, accepts
//! connections on its listener (SO_REUSEPORT, so the kernel spreads connections over cores),
//! serves requests from other cores, and drains on shutdown.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::connection;
use crate::core::Core;
use crate::handlers;
use crate::mesh::{self, Mesh, Message};
use crate::runtime::{ShutdownFlag, TaskCounter};

/// How long shutdown waits for in-flight requests before giving up on a connection.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_POLL: Duration = Duration::from_millis(20);
const STARTUP_POLL: Duration = Duration::from_millis(1);
/// Connections handed to a core and not yet picked up: beyond this the handing core keeps
/// serving its connection.
const HANDOFFS_QUEUED_MAX: usize = 64;

/// Serves one client connection in a task of its own, counted in `connections` so shutdown
/// can wait for it; `carried` is the state of a connection another core handed over.
fn spawn_connection(
    core: &Rc<Core>,
    shutdown: &Arc<ShutdownFlag>,
    connections: &Rc<TaskCounter>,
    stream: glommio::net::TcpStream,
    carried: Option<connection::Carried>,
) {
    let guard = connections.enter();
    let core = core.clone();
    let shutdown = shutdown.clone();
    glommio::spawn_local(async move {
        let _guard = guard;
        let _counted = match carried {
            None => core.metrics.connection_opened(),
            Some(_) => core.metrics.connection_moved_in(),
        };
        let peer = stream.peer_addr().ok();
        match &carried {
            None => debug!(core = core.id, ?peer, "connection opened"),
            Some(carried) => {
                debug!(
                    core = core.id,
                    ?peer,
                    moves = carried.moves,
                    "connection handed over"
                )
            }
        }
        match connection::serve(stream, &core, &shutdown, carried).await {
            Ok(connection::Served::Closed) => {}
            Ok(connection::Served::Moved { to }) => {
                debug!(
                    core = core.id,
                    ?peer,
                    to,
                    "connection moved to its partitions' core"
                )
            }
            Err(error) => debug!(core = core.id, ?peer, %error, "connection closed with error"),
        }
    })
    .detach();
}

/// Serves one core until shutdown; returns once its connections have drained and its
/// partitions are flushed and closed.
///
/// # Errors
/// If the mesh cannot be joined, the partitions cannot be recovered, or the listener cannot be
/// bound.
pub async fn serve_core(
    config: Arc<Config>,
    mesh_builder: Option<mesh::Builder>,
    admin_listener: Option<std::net::TcpListener>,
    shutdown: Arc<ShutdownFlag>,
) -> anyhow::Result<()> {
    let (id, senders, receivers) = match mesh_builder {
        Some(builder) => {
            let (senders, receivers) = builder
                .join()
                .await
                .map_err(|e| anyhow::anyhow!("joining the core mesh: {e}"))?;
            (senders.peer_id(), Some(senders), Some(receivers))
        }
        None => (0, None, None),
    };
    // Before any other DMA file: see the storage crate's note on glommio's io-poll probe.
    spate_storage::io::glommio::prime_io_poll_probe(Path::new(&config.data_dir))
        .await
        .map_err(|e| anyhow::anyhow!("core {id}: priming the io-poll probe: {e}"))?;
    let core = Rc::new(Core::new(
        id,
        config.cores,
        config.clone(),
        handlers::version_table(if config.cluster.is_some() {
            handlers::Mode::Cluster
        } else {
            handlers::Mode::SingleBroker
        }),
        Mesh::new(senders),
    ));
    if let Some(mut receivers) = receivers {
        for (_peer, stream) in receivers.streams() {
            let core = core.clone();
            glommio::spawn_local(async move {
                while let Some(message) = stream.recv().await {
                    match message {
                        Message::Reply { id, reply } => core.mesh.deliver(id, reply),
                        Message::Request { from, id, request } => {
                            let core = core.clone();
                            glommio::spawn_local(async move {
                                let reply = core.run(request).await;
                                core.mesh.reply(from, id, reply).await;
                            })
                            .detach();
                        }
                    }
                }
            })
            .detach();
        }
    }
    // Before recovery, so /health answers and /ready says why not while partitions load.
    if let Some(listener) = admin_listener {
        glommio::spawn_local(crate::admin::serve(
            listener,
            core.clone(),
            shutdown.clone(),
        ))
        .detach();
    }
    let started = Instant::now();
    core.load().await?;
    info!(
        core = id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "partitions recovered"
    );
    let maintenance = glommio::spawn_local(core.clone().maintain(shutdown.clone()));
    let cleaner = crate::cleaner::spawn(core.clone(), shutdown.clone());
    if let Some(interval) = config.stats_interval {
        glommio::spawn_local(crate::stats::log_loop(
            core.clone(),
            interval,
            shutdown.clone(),
        ))
        .detach();
    }
    glommio::spawn_local(crate::group::coordinator::tick_loop(
        core.clone(),
        shutdown.clone(),
    ))
    .detach();
    glommio::spawn_local(crate::txn::txn_loop(core.clone(), shutdown.clone())).detach();
    if config.cluster.is_some() {
        glommio::spawn_local(crate::cluster::replication::run(
            core.clone(),
            shutdown.clone(),
        ))
        .detach();
        glommio::spawn_local(core.clone().checkpoint_loop(shutdown.clone())).detach();
    }
    // Cluster mode: the controller core joins the quorum; the image replayed from the metadata
    // log reaches every core (opening its partitions) before this returns.
    if let (Some(settings), crate::core::CONTROLLER_CORE) = (&config.cluster, id) {
        let node = crate::cluster::start(core.clone(), settings, shutdown.clone()).await?;
        core.cluster_node
            .set(node)
            .expect("the cluster starts once, on the controller core");
    }
    // Accept no client before every core has its partitions open: a request landing here may
    // name a partition another core is still recovering.
    shutdown.core_loaded();
    while !shutdown.all_loaded(config.cores) {
        if shutdown.is_triggered() {
            break;
        }
        glommio::timer::sleep(STARTUP_POLL).await;
    }

    let listener = TcpListener::bind(config.listen)
        .map_err(|error| anyhow::anyhow!("core {id}: binding {}: {error}", config.listen))?;
    info!(core = id, listen = %config.listen, "accepting connections");
    let connections = Rc::new(TaskCounter::default());
    // Connections other cores hand to this one, served like those accepted here. A task of
    // its own: glommio's accept is not cancel-safe (a connection accepted as the future is
    // dropped would be lost), so the accept loop below waits on nothing else but shutdown.
    let (handoffs, handed) = glommio::channels::local_channel::new_bounded(HANDOFFS_QUEUED_MAX);
    core.accept_handoffs(Some(handoffs));
    {
        let core = core.clone();
        let shutdown = shutdown.clone();
        let connections = connections.clone();
        glommio::spawn_local(async move {
            while let Some(handoff) = handed.recv().await {
                // SAFETY: the handoff owns this descriptor (a duplicate of the socket made
                // for it); the stream takes it over.
                let stream =
                    unsafe { glommio::net::TcpStream::from_raw_fd(handoff.socket.into_raw_fd()) };
                let carried = connection::Carried {
                    unread: handoff.unread,
                    peer: handoff.peer,
                    moves: handoff.moves,
                    moved_at: handoff.moved_at,
                };
                spawn_connection(&core, &shutdown, &connections, stream, Some(carried));
            }
        })
        .detach();
    }
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                // EMFILE and friends: keep serving the connections we have.
                warn!(core = id, %error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if connections.count() >= config.connections_per_core_max {
            warn!(
                core = id,
                limit = config.connections_per_core_max,
                "connection limit reached: closing new connection"
            );
            drop(stream);
            core.metrics.connection_refused();
            continue;
        }
        spawn_connection(&core, &shutdown, &connections, stream, None);
    }
    drop(listener);
    // Connections handed over from now on stay on their cores (see `Core::accept_handoffs`).
    core.accept_handoffs(None);
    if let Some(node) = core.cluster_node.get() {
        // Before draining: clients that reconnect elsewhere find the partitions already marked
        // leaderless instead of waiting out a session timeout.
        node.leave().await;
    }
    info!(
        core = id,
        open = connections.count(),
        "stopped accepting; draining connections"
    );
    let drain_started = Instant::now();
    while connections.count() > 0 && drain_started.elapsed() < DRAIN_TIMEOUT {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    if connections.count() > 0 {
        warn!(core = id, open = connections.count(), "drain timed out");
    }
    // Keep serving other cores' requests (this executor's mesh tasks stay alive) until every
    // core has drained: a connection elsewhere may be waiting on a reply from this core.
    shutdown.core_drained();
    debug!(core = id, "drained; waiting for the other cores");
    let barrier_started = Instant::now();
    while !shutdown.all_drained(config.cores) && barrier_started.elapsed() < DRAIN_TIMEOUT {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    maintenance.await;
    cleaner.await;
    info!(core = id, "closing partitions");
    core.close_all().await;
    // Other cores may still forward work to us until they stop; the mesh closes with us.
    core.mesh.close();
    info!(core = id, "core stopped");
    Ok(())
}
