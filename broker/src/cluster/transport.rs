//! The cluster listener and the links to the other brokers, on the controller core.
//!
//! Each broker dials every peer once (a [`Link`], redialled with backoff when it breaks) and
//! accepts the peers' dials on its `--cluster-listen` address. Either side starts with a
//! [`Hello`] (cluster id, node id, incarnation, protocol versions); a peer with another cluster
//! id, this broker's own node id or no common version gets an Error frame and is closed. Peers
//! that are not dialled (observers, which voters do not know in advance) are accepted too. After the
//! handshake every frame either side receives goes to one inbox, tagged with the sender and the
//! connection it came on, so a request can be answered on that connection. Brokers that are not
//! voters are dialled too once the metadata image registers them ([`Transport::ensure_peer`]),
//! so a follower can fetch from any partition leader.
//!
//! Everything here runs on one executor (the controller core): links and connections are
//! `Rc`s, queues are `RefCell`s, and nothing is shared with other threads.
//!
//! Limits: a connection queues at most [`QUEUED_FRAMES_MAX`] frames and
//! [`QUEUED_BYTES_MAX`] bytes for sending; beyond that [`Link::send`] refuses (Raft resends what
//! is lost, and a request's caller gets the error). The inbox is bounded
//! ([`INBOX_FRAMES_MAX`]): a connection whose frames are not taken stops reading, and TCP slows
//! its sender.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use spate_storage::sync::Notify;
use spate_wire::cluster::{
    encode_frame, negotiate_version, Body, Envelope, ErrorBody, Frame, FrameDecoder, Hello,
    CLUSTER_PAYLOAD_BYTES_MAX, VERSION_MAX, VERSION_MIN,
};
use spate_wire::ErrorCode;
use tracing::{debug, info, warn};

use crate::runtime::ShutdownFlag;

/// Frames one connection may have queued for sending.
pub const QUEUED_FRAMES_MAX: usize = 4096;
/// Bytes one connection may have queued for sending.
pub const QUEUED_BYTES_MAX: usize = 64 << 20;
/// Frames received and not yet taken by the quorum, over all connections.
pub const INBOX_FRAMES_MAX: usize = 4096;
/// Bytes asked of a socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// How long a dial or a peer's Hello may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Redial backoff: doubles from the first to the last.
const REDIAL_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const REDIAL_BACKOFF_LAST: Duration = Duration::from_secs(2);
/// How often idle loops look at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

const _: () = assert!(QUEUED_BYTES_MAX >= CLUSTER_PAYLOAD_BYTES_MAX);

/// Who this broker is, as it says in its Hello.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The cluster's id: peers of another cluster are refused.
    pub cluster_id: String,
    /// This node.
    pub node_id: i32,
    /// This run of it.
    pub incarnation: u64,
}

/// A frame that arrived, with where to answer it.
#[derive(Debug)]
pub struct Inbound {
    /// The sender's node id (checked at the handshake).
    pub from: i32,
    /// The frame's correlation id.
    pub correlation_id: u64,
    /// The decoded body.
    pub body: Body,
    /// The connection it came on: answers go back on it.
    pub connection: Rc<Outbox>,
}

/// A connection's queue of frames to send.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: RefCell<VecDeque<Bytes>>,
    bytes: Cell<usize>,
    ready: Notify,
    closed: Cell<bool>,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection's queue is at its limit.
    #[error("send queue full")]
    Full,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

impl Outbox {
    /// Queues one frame.
    ///
    /// # Errors
    /// [`SendError`]: nothing was queued.
    pub fn send(
        &self,
        sender_node_id: i32,
        correlation_id: u64,
        body: &Body,
    ) -> Result<(), SendError> {
        if self.closed.get() {
            return Err(SendError::Closed);
        }
        // Every peer speaks version 1, the only one there is; the handshake checked it.
        let envelope = Envelope {
            version: VERSION_MAX,
            correlation_id,
            sender_node_id,
        };
        let frame = encode_frame(&envelope, body).to_bytes();
        let mut frames = self.frames.borrow_mut();
        if frames.len() >= QUEUED_FRAMES_MAX || self.bytes.get() + frame.len() > QUEUED_BYTES_MAX {
            return Err(SendError::Full);
        }
        self.bytes.set(self.bytes.get() + frame.len());
        frames.push_back(frame);
        drop(frames);
        self.ready.notify_all();
        Ok(())
    }

    /// Resolves once the connection is gone: a request queued on it will not be answered.
    pub async fn closed(&self) {
        while !self.closed.get() {
            self.ready.notified().await;
        }
    }

    fn close(&self) {
        self.closed.set(true);
        self.frames.borrow_mut().clear();
        self.bytes.set(0);
        self.ready.notify_all();
    }

    /// Takes everything queued, as one buffer (control-plane traffic: copying is cheaper than a
    /// syscall per frame).
    fn take_all(&self) -> Option<Bytes> {
        let mut frames = self.frames.borrow_mut();
        if frames.is_empty() {
            return None;
        }
        let mut out = BytesMut::with_capacity(self.bytes.get());
        for frame in frames.drain(..) {
            out.extend_from_slice(&frame);
        }
        self.bytes.set(0);
        Some(out.freeze())
    }
}

/// This broker's dial to one peer: a queue that outlives connections (frames queued while the
/// peer is down are dropped at each reconnect, since Raft resends).
#[derive(Debug)]
pub struct Link {
    /// The peer.
    pub node_id: i32,
    /// Where it listens: fixed for a voter (`--controller-voters`), the latest registration's
    /// for a broker learnt from the metadata image.
    address: RefCell<String>,
    outbox: RefCell<Rc<Outbox>>,
    /// The incarnation the peer last said Hello as.
    incarnation: Cell<Option<u64>>,
    /// The last dial was refused (nothing listens at the peer's address) and none has
    /// succeeded since.
    refused: Cell<bool>,
}

impl Link {
    /// Queues a frame for the peer.
    ///
    /// # Errors
    /// [`SendError`].
    pub fn send(&self, me: i32, correlation_id: u64, body: &Body) -> Result<(), SendError> {
        self.outbox.borrow().send(me, correlation_id, body)
    }

    /// The queue of the current connection (or dial): [`Outbox::closed`] says when a request
    /// sent now can no longer be answered.
    pub fn outbox(&self) -> Rc<Outbox> {
        self.outbox.borrow().clone()
    }
}

/// The transport: links to every peer, the listener, and the inbox.
pub struct Transport {
    identity: Identity,
    /// The voters' links from the start, then one per broker the metadata image registers
    /// ([`Transport::ensure_peer`]); at most `BROKERS_MAX`, never removed (a broker that
    /// left costs a redial every few seconds).
    links: RefCell<Vec<Rc<Link>>>,
    shutdown: Arc<ShutdownFlag>,
    inbox_sender: LocalSender<Inbound>,
    inbox: LocalReceiver<Inbound>,
    /// Replication frames (follower fetches and their answers) go here, not to the quorum's
    /// inbox: partition data must not queue behind metadata, nor metadata behind it.
    replica_sender: LocalSender<Inbound>,
    replica_inbox: LocalReceiver<Inbound>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.identity.node_id)
            .finish()
    }
}

impl Transport {
    /// Binds `listen`, starts a dialer per peer (`(node id, host:port)`), and accepts peers.
    ///
    /// # Errors
    /// If the listener cannot be bound.
    pub fn start(
        identity: Identity,
        listen: SocketAddr,
        peers: Vec<(i32, String)>,
        shutdown: Arc<ShutdownFlag>,
    ) -> anyhow::Result<Rc<Transport>> {
        let listener = TcpListener::bind(listen)
            .map_err(|error| anyhow::anyhow!("binding the cluster listener {listen}: {error}"))?;
        let (inbox_sender, inbox) = local_channel::new_bounded(INBOX_FRAMES_MAX);
        let (replica_sender, replica_inbox) = local_channel::new_bounded(INBOX_FRAMES_MAX);
        let links = peers
            .iter()
            .map(|(node_id, address)| {
                Rc::new(Link {
                    node_id: *node_id,
                    address: RefCell::new(address.clone()),
                    outbox: RefCell::new(Rc::new(Outbox::default())),
                    incarnation: Cell::new(None),
                    refused: Cell::new(false),
                })
            })
            .collect();
        let transport = Rc::new(Transport {
            identity,
            links: RefCell::new(links),
            shutdown: shutdown.clone(),
            inbox_sender,
            inbox,
            replica_sender,
            replica_inbox,
        });
        info!(listen = %listen, peers = peers.len(), "cluster listener up");
        glommio::spawn_local(accept_loop(transport.clone(), listener, shutdown.clone())).detach();
        for link in transport.links.borrow().iter() {
            glommio::spawn_local(dial_loop(transport.clone(), link.clone(), shutdown.clone()))
                .detach();
        }
        Ok(transport)
    }

    /// Dials `node_id` at `address` from now on, if it is not a peer yet (or follows it to a new
    /// address). Voters know each other from their flags; every other broker (an observer) is
    /// learnt from its registration in the metadata image, so that followers can fetch from a
    /// partition leader whatever its role, and a crashed one is seen refusing connections.
    pub fn ensure_peer(self: &Rc<Self>, node_id: i32, address: String) {
        if node_id == self.identity.node_id {
            return;
        }
        if let Some(link) = self.link(node_id) {
            if *link.address.borrow() != address {
                info!(peer = node_id, %address, "cluster peer moved");
                *link.address.borrow_mut() = address;
            }
            return;
        }
        let mut links = self.links.borrow_mut();
        if links.len() >= spate_controller::image::BROKERS_MAX {
            warn!(
                peer = node_id,
                "too many cluster peers; not dialling another"
            );
            return;
        }
        let link = Rc::new(Link {
            node_id,
            address: RefCell::new(address),
            outbox: RefCell::new(Rc::new(Outbox::default())),
            incarnation: Cell::new(None),
            refused: Cell::new(false),
        });
        links.push(link.clone());
        drop(links);
        glommio::spawn_local(dial_loop(self.clone(), link, self.shutdown.clone())).detach();
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.identity.node_id
    }

    /// The link to `node_id`, if it is a peer.
    pub fn link(&self, node_id: i32) -> Option<Rc<Link>> {
        self.links
            .borrow()
            .iter()
            .find(|l| l.node_id == node_id)
            .cloned()
    }

    /// Queues a frame for a peer.
    ///
    /// # Errors
    /// [`SendError::Closed`] for an unknown peer, or as [`Link::send`].
    pub fn send(&self, to: i32, correlation_id: u64, body: &Body) -> Result<(), SendError> {
        match self.link(to) {
            Some(link) => link.send(self.identity.node_id, correlation_id, body),
            None => Err(SendError::Closed),
        }
    }

    /// The peers whose address refuses connections, each with the incarnation it last said
    /// Hello as (a peer never reached in this run is not named: there is no incarnation to
    /// fence). A process that exits, however it dies, leaves its port refusing at once, so this
    /// is how the controller tells a crashed broker from a silent one (see
    /// `Controller::set_unreachable`).
    pub fn unreachable_peers(&self) -> Vec<(i32, u64)> {
        self.links
            .borrow()
            .iter()
            .filter(|link| link.refused.get())
            .filter_map(|link| Some((link.node_id, link.incarnation.get()?)))
            .collect()
    }

    /// The next frame from any peer.
    pub async fn recv(&self) -> Inbound {
        self.inbox
            .recv()
            .await
            .expect("the transport holds a sender")
    }

    /// The next replication frame from any peer.
    pub async fn recv_replica(&self) -> Inbound {
        self.replica_inbox
            .recv()
            .await
            .expect("the transport holds a sender")
    }

    fn hello(&self) -> Body {
        Body::Hello(Hello {
            cluster_id: self.identity.cluster_id.clone(),
            node_id: self.identity.node_id,
            incarnation: self.identity.incarnation,
            versions_min: VERSION_MIN,
            versions_max: VERSION_MAX,
        })
    }

    /// Checks a peer's Hello: the same cluster, another node, a common version.
    ///
    /// Any node id but this broker's own is accepted: observers (brokers that are not voters)
    /// are known to nobody before they register with the controller, which they do over this
    /// very connection. What a peer may do is decided by what it sends (raft-rs refuses Raft
    /// messages from nodes outside the voter set).
    fn check_hello(&self, hello: &Hello) -> Result<(), ErrorBody> {
        if hello.cluster_id != self.identity.cluster_id {
            return Err(ErrorBody::new(
                ErrorCode::InconsistentClusterId,
                &format!(
                    "cluster id {:?}, expected {:?}",
                    hello.cluster_id, self.identity.cluster_id
                ),
            ));
        }
        if hello.node_id == self.identity.node_id || hello.node_id < 0 {
            return Err(ErrorBody::new(
                ErrorCode::InvalidRequest,
                &format!(
                    "node id {} cannot be a peer of node {}",
                    hello.node_id, self.identity.node_id
                ),
            ));
        }
        if negotiate_version(VERSION_MIN, VERSION_MAX, hello).is_none() {
            return Err(ErrorBody::new(
                ErrorCode::UnsupportedVersion,
                &format!(
                    "peer speaks versions {}-{}, this broker {VERSION_MIN}-{VERSION_MAX}",
                    hello.versions_min, hello.versions_max
                ),
            ));
        }
        Ok(())
    }
}

async fn accept_loop(transport: Rc<Transport>, listener: TcpListener, shutdown: Arc<ShutdownFlag>) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                warn!(%error, "cluster listener: accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let transport = transport.clone();
        let shutdown = shutdown.clone();
        glommio::spawn_local(async move {
            let peer = stream.peer_addr().ok();
            if let Err(error) = serve_accepted(&transport, stream, &shutdown).await {
                debug!(?peer, %error, "cluster connection closed");
            }
        })
        .detach();
    }
}

/// A peer's dial: its Hello, ours back, then frames both ways until it breaks.
async fn serve_accepted(
    transport: &Rc<Transport>,
    mut stream: TcpStream,
    shutdown: &ShutdownFlag,
) -> anyhow::Result<()> {
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let first = with_timeout(read_frame(&mut stream, &decoder, &mut buf)).await??;
    let hello = match Body::decode(&first)? {
        Body::Hello(hello) => hello,
        other => anyhow::bail!("first frame is {:?}, not a Hello", other.kind()),
    };
    if let Err(refusal) = transport.check_hello(&hello) {
        warn!(peer = hello.node_id, reason = %refusal.message, "refusing a cluster peer");
        let envelope = Envelope {
            version: VERSION_MAX,
            correlation_id: 0,
            sender_node_id: transport.node_id(),
        };
        let frame = encode_frame(&envelope, &Body::Error(refusal));
        let _ = stream.write_all(&frame.to_bytes()).await;
        anyhow::bail!("peer refused");
    }
    info!(
        peer = hello.node_id,
        incarnation = hello.incarnation,
        "cluster peer connected"
    );
    let outbox = Rc::new(Outbox::default());
    outbox
        .send(transport.node_id(), 0, &transport.hello())
        .expect("an empty queue takes a Hello");
    run_connection(
        transport,
        stream,
        decoder,
        buf,
        hello.node_id,
        outbox,
        shutdown,
    )
    .await
}

/// The wait before the next dial: the first step again after a connection that lived at least
/// as long as the current wait, else the current wait (which doubles after each dial, up to the
/// last step).
///
/// A connection's end is the moment to look again soon: a peer killed mid-connection is seen
/// refusing connections (and fenced) by the next dial. The wait used to start over only when a
/// dial returned cleanly, and a connection ended by the peer's death returns an error, so a
/// link whose earlier redials had grown the wait to 2 s kept it through hours of connection,
/// and the controller saw a killed leader's port refuse only 2 s after the kill (the e2e leader
/// kills measured failovers of 2-6 s in some rounds).
fn redial_wait(current: Duration, connection_lived: Option<Duration>) -> Duration {
    match connection_lived {
        Some(lived) if lived >= current => REDIAL_BACKOFF_FIRST,
        _ => current,
    }
}

async fn dial_loop(transport: Rc<Transport>, link: Rc<Link>, shutdown: Arc<ShutdownFlag>) {
    let mut backoff = REDIAL_BACKOFF_FIRST;
    while !shutdown.is_triggered() {
        let connected_at = Cell::new(None);
        let dialled = dial(&transport, &link, &shutdown, &connected_at).await;
        let lived = connected_at
            .get()
            .map(|at: std::time::Instant| at.elapsed());
        if let Err(error) = dialled {
            let refused = error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
            if refused && !link.refused.replace(true) {
                info!(
                    peer = link.node_id,
                    address = %link.address.borrow(),
                    incarnation = link.incarnation.get(),
                    "cluster peer refuses connections: its process is gone"
                );
            }
            debug!(peer = link.node_id, address = %link.address.borrow(), %error, "cluster link down");
        }
        // A fresh queue per connection: what was queued for a dead one is stale.
        link.outbox.borrow().close();
        *link.outbox.borrow_mut() = Rc::new(Outbox::default());
        let wait = redial_wait(backoff, lived);
        sleep_unless_shutdown(wait, &shutdown).await;
        backoff = (wait * 2).min(REDIAL_BACKOFF_LAST);
    }
}

/// Dials the peer and serves the connection until it ends; sets `connected_at` once the
/// peer's Hello came back.
async fn dial(
    transport: &Rc<Transport>,
    link: &Rc<Link>,
    shutdown: &ShutdownFlag,
    connected_at: &Cell<Option<std::time::Instant>>,
) -> anyhow::Result<()> {
    // Resolved at each dial, so a peer that moved is found again.
    let named = link.address.borrow().clone();
    let address = named
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{named} resolves to no address"))?;
    let mut stream = with_timeout(TcpStream::connect(address))
        .await?
        .map_err(std::io::Error::from)?;
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let hello = encode_frame(&Envelope::hello(transport.node_id(), 0), &transport.hello());
    stream.write_all(&hello.to_bytes()).await?;
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let first = with_timeout(read_frame(&mut stream, &decoder, &mut buf)).await??;
    match Body::decode(&first)? {
        Body::Hello(hello) if hello.node_id == link.node_id => {
            link.incarnation.set(Some(hello.incarnation));
            link.refused.set(false);
            connected_at.set(Some(std::time::Instant::now()));
        }
        Body::Hello(hello) => anyhow::bail!(
            "dialled node {} but node {} answered",
            link.node_id,
            hello.node_id
        ),
        Body::Error(error) => anyhow::bail!("refused by the peer: {}", error.message),
        other => anyhow::bail!("peer answered {:?}, not a Hello", other.kind()),
    }
    info!(peer = link.node_id, address = %link.address.borrow(), "cluster link up");
    let outbox = link.outbox.borrow().clone();
    run_connection(
        transport,
        stream,
        decoder,
        buf,
        link.node_id,
        outbox,
        shutdown,
    )
    .await
}

/// Reads frames into the inbox and writes the outbox, until either side fails or shutdown.
async fn run_connection(
    transport: &Rc<Transport>,
    stream: TcpStream,
    decoder: FrameDecoder,
    mut buf: BytesMut,
    peer: i32,
    outbox: Rc<Outbox>,
    shutdown: &ShutdownFlag,
) -> anyhow::Result<()> {
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let writing = {
        let outbox = outbox.clone();
        async move {
            loop {
                match outbox.take_all() {
                    Some(bytes) => {
                        if let Err(error) = writer.write_all(&bytes).await {
                            return anyhow::Result::<()>::Err(error.into());
                        }
                    }
                    None if outbox.closed.get() => return Ok(()),
                    None => outbox.ready.notified().await,
                }
            }
        }
    };
    let reading = async {
        loop {
            let frame = read_frame(&mut reader, &decoder, &mut buf).await?;
            let body = match Body::decode(&frame) {
                Ok(body) => body,
                Err(error) => {
                    warn!(peer, %error, "undecodable cluster frame; closing the connection");
                    return Err(error.into());
                }
            };
            let replication = matches!(
                body,
                Body::ReplicaFetchRequest(_)
                    | Body::ReplicaFetchResponse(_)
                    | Body::TxnMarkersRequest(_)
                    | Body::TxnMarkersResponse(_)
                    | Body::TxnVerifyRequest(_)
                    | Body::TxnVerifyResponse(_)
            );
            let inbound = Inbound {
                from: peer,
                correlation_id: frame.envelope.correlation_id,
                body,
                connection: outbox.clone(),
            };
            let inbox = if replication {
                &transport.replica_sender
            } else {
                &transport.inbox_sender
            };
            if inbox.send(inbound).await.is_err() {
                return anyhow::Result::<()>::Ok(());
            }
        }
    };
    let stop = async {
        shutdown.wait().await;
        Ok(())
    };
    let result = futures_lite::future::or(futures_lite::future::or(writing, reading), stop).await;
    outbox.close();
    result
}

/// Reads until one whole frame is in `buf`.
async fn read_frame<R: futures_lite::AsyncRead + Unpin>(
    stream: &mut R,
    decoder: &FrameDecoder,
    buf: &mut BytesMut,
) -> anyhow::Result<Frame> {
    loop {
        if let Some(frame) = decoder.decode(buf)? {
            return Ok(frame);
        }
        let start = buf.len();
        buf.resize(start + READ_CHUNK_BYTES, 0);
        let read = stream.read(&mut buf[start..]).await?;
        buf.truncate(start + read);
        if read == 0 {
            anyhow::bail!("peer closed the connection");
        }
    }
}

async fn with_timeout<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    futures_lite::future::or(async { Ok(work.await) }, async {
        glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
        Err(anyhow::anyhow!("timed out after {HANDSHAKE_TIMEOUT:?}"))
    })
    .await
}

async fn sleep_unless_shutdown(duration: Duration, shutdown: &ShutdownFlag) {
    let mut left = duration;
    while !left.is_zero() && !shutdown.is_triggered() {
        let step = left.min(SHUTDOWN_POLL);
        glommio::timer::sleep(step).await;
        left -= step;
    }
}

#[cfg(test)]
mod redial_tests {
    use super::*;

    #[test]
    fn the_wait_starts_over_after_a_connection_that_lived() {
        let ms = Duration::from_millis;
        // Failed dials keep the current wait (the loop doubles it).
        assert_eq!(redial_wait(ms(50), None), ms(50));
        assert_eq!(redial_wait(REDIAL_BACKOFF_LAST, None), REDIAL_BACKOFF_LAST);
        // A connection that lived for an hour and then broke (its peer was killed): look again
        // at once, whatever the wait had grown to before it.
        assert_eq!(
            redial_wait(REDIAL_BACKOFF_LAST, Some(Duration::from_secs(3600))),
            REDIAL_BACKOFF_FIRST
        );
        // A peer that accepts and drops at once is not redialled in a tight loop.
        assert_eq!(redial_wait(ms(800), Some(ms(5))), ms(800));
    }
}
