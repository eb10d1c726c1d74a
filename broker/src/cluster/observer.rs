//! Brokers that are not controller voters (observers, as in Kafka's KRaft): they run no Raft
//! node and follow the committed metadata log by fetching it from the voters
//! (`MetadataFetchRequest`, long-polled), applying it in order with `MetadataFollower`, and
//! publishing each new image to every core exactly as a voter does.
//!
//! Both sides live here: [`serve_fetch`] answers a fetch on a voter from its committed log, and
//! [`Observer`] is the fetching side. An observer asks the leader it last heard of (every answer
//! carries the leader's id), and another voter in turn when that fails (the connection closed,
//! no answer in time, an error); any voter may answer, since it serves only what it has
//! committed and applied. Between losing a leader and hearing of the next, its clients are told
//! of no controller: told of a dead one, they would wait on it.
//!
//! The applied image is kept on disk (`<data-dir>/__cluster_metadata/observer.image`: the
//! image's snapshot encoding behind a magic and a CRC-32, replaced atomically after each change),
//! so a restarted observer serves its last known topics even while the quorum is down. It is a
//! cache of the quorum's log, never a source of truth: a copy that is missing or damaged is
//! dropped and the log fetched again from the start.
//!
//! Invariants: records are applied in offset order, each once; an image reaches the cores only
//! through the publish closure, in both rounds (open, then publish); an observer never proposes.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use glommio::io::OpenOptions;
use spate_controller::ids::{MetadataOffset, NodeId};
use spate_controller::image::MetadataImage;
use spate_controller::node::{CommittedRead, MetadataFollower};
use spate_controller::records::{decode_batch, encode_batch, MetadataRecord};
use spate_storage::io::glommio::GlommioDisk;
use spate_storage::io::Disk;
use spate_storage::sync::Notify;
use spate_wire::cluster::{
    Body, ControllerRequest, ControllerResponse, MetadataBatch, MetadataContent,
    MetadataFetchRequest, MetadataFetchResponse, METADATA_FETCH_BATCHES_MAX,
    METADATA_FETCH_MAX_BYTES_MAX, METADATA_SNAPSHOT_BYTES_MAX,
};
use spate_wire::ErrorCode;
use tracing::{debug, info, warn};

use super::quorum::{Publish, Published, Quorum};
use super::raft_file::METADATA_DIR_NAME;
use super::rpc::{Calls, Rpc, RpcError};
use super::transport::{Inbound, Transport};
use crate::runtime::ShutdownFlag;

/// How long a voter holds an observer's fetch when it has nothing new: an idle observer costs
/// one request a second, and a change reaches it as soon as the voter applies it.
pub const FETCH_WAIT_MS: u32 = 1000;
/// Batch bytes an observer asks for per fetch.
pub const FETCH_MAX_BYTES: u32 = 1024 * 1024;
/// How long an observer waits for an answer beyond the long poll before it asks another voter.
const FETCH_ANSWER_SLACK: Duration = Duration::from_millis(1500);
/// Pause after a failed fetch before the next voter is asked.
const FETCH_BACKOFF: Duration = Duration::from_millis(100);
/// Fetches a voter serves at once (long polls held); beyond it a fetch is refused at once.
pub const FETCHES_IN_FLIGHT_MAX: usize = 256;

const _: () = assert!(FETCH_MAX_BYTES <= METADATA_FETCH_MAX_BYTES_MAX);

const FILE_NAME: &str = "observer.image";
const NEW_FILE_NAME: &str = "observer.image.new";
/// `"SPOI"`: Spate observer image.
const FILE_MAGIC: u32 = 0x5350_4f49;
/// magic (u32), crc (u32, CRC-32 of the image bytes), image_bytes (u64).
const FILE_HEADER_BYTES: usize = 16;

/// A voter's answer to an observer's fetch, sent on the connection it came on. Long-polled:
/// with nothing at or after `from_offset` yet, the answer waits until there is or
/// `max_wait_ms` passed.
pub fn serve_fetch(quorum: Rc<Quorum>, request: MetadataFetchRequest, inbound: Inbound) {
    // DescribeQuorum's observers: when each last fetched and how far it has applied (the
    // frame's sender, which the handshake checked, not the body's node id).
    quorum.note_seen(
        NodeId(inbound.from),
        false,
        Some(request.from_offset.saturating_sub(1)),
    );
    if quorum.fetches_in_flight.get() >= FETCHES_IN_FLIGHT_MAX {
        let refused = MetadataFetchResponse::failed(
            ErrorCode::ThrottlingQuotaExceeded,
            quorum.leader().map(|n| n.0),
            quorum.term().0,
        );
        reply(&quorum, &inbound, refused);
        return;
    }
    quorum
        .fetches_in_flight
        .set(quorum.fetches_in_flight.get() + 1);
    glommio::spawn_local(async move {
        let from = MetadataOffset(request.from_offset);
        if quorum.applied_offset() < from {
            quorum
                .wait_published(
                    |image| image.last_applied() >= from,
                    Duration::from_millis(u64::from(request.max_wait_ms)),
                )
                .await;
        }
        let response = fetch_answer(&quorum, from, request.max_bytes);
        quorum
            .fetches_in_flight
            .set(quorum.fetches_in_flight.get() - 1);
        reply(&quorum, &inbound, response);
    })
    .detach();
}

fn reply(quorum: &Quorum, inbound: &Inbound, response: MetadataFetchResponse) {
    let me = quorum.node_id().0;
    let body = Body::MetadataFetchResponse(response);
    if let Err(e) = inbound.connection.send(me, inbound.correlation_id, &body) {
        debug!(to = inbound.from, error = %e, "metadata fetch answer not sent");
    }
}

/// What this voter has committed from `from` on, within `max_bytes` (the first batch whole).
fn fetch_answer(quorum: &Quorum, from: MetadataOffset, max_bytes: u32) -> MetadataFetchResponse {
    let view = VoterView {
        leader_id: quorum.leader().map(|n| n.0),
        leader_term: quorum.term().0,
        committed_offset: quorum.applied_offset().0,
    };
    answer(view, quorum.read_committed(from), max_bytes)
}

/// What a voter says of the quorum in every answer.
#[derive(Debug, Clone, Copy)]
struct VoterView {
    leader_id: Option<i32>,
    leader_term: u64,
    committed_offset: u64,
}

/// The answer to a fetch, from what the voter read of its committed log (no I/O, no clock).
fn answer(view: VoterView, read: CommittedRead, max_bytes: u32) -> MetadataFetchResponse {
    let failed = |code| MetadataFetchResponse::failed(code, view.leader_id, view.leader_term);
    let content = match read {
        CommittedRead::Snapshot(bytes) => {
            if bytes.len() > METADATA_SNAPSHOT_BYTES_MAX {
                warn!(
                    bytes = bytes.len(),
                    "metadata image too large to send to an observer in one frame"
                );
                return failed(ErrorCode::MessageTooLarge);
            }
            let offset = match MetadataImage::from_snapshot(&bytes) {
                Ok(image) => image.last_applied().0,
                Err(e) => {
                    warn!(error = %e, "this voter's own snapshot does not decode");
                    return failed(ErrorCode::KafkaStorageError);
                }
            };
            MetadataContent::Snapshot {
                offset,
                bytes: Bytes::from(bytes),
            }
        }
        CommittedRead::Records(entries) => {
            let mut batches = Vec::new();
            let mut bytes_total = 0usize;
            for (offset, records) in entries.into_iter().take(METADATA_FETCH_BATCHES_MAX) {
                let encoded = encode_entry(&records);
                // The first batch goes whole whatever its size, else an observer could never
                // get past a batch larger than its max_bytes.
                if !batches.is_empty() && bytes_total + encoded.len() > max_bytes as usize {
                    break;
                }
                bytes_total += encoded.len();
                batches.push(MetadataBatch {
                    offset: offset.0,
                    records: encoded,
                });
            }
            MetadataContent::Batches(batches)
        }
    };
    MetadataFetchResponse {
        error_code: ErrorCode::None,
        leader_id: view.leader_id,
        leader_term: view.leader_term,
        committed_offset: view.committed_offset,
        content,
    }
}

/// An entry's records as the log holds them; none (an empty entry, or one every node refused
/// alike as undecodable) as no bytes.
fn encode_entry(records: &[MetadataRecord]) -> Bytes {
    if records.is_empty() {
        return Bytes::new();
    }
    // They were decoded from a committed entry within the batch limits, so they encode again.
    Bytes::from(encode_batch(records).expect("a committed batch encodes again"))
}

/// Whom an observer asks: the leader the voters last named, else each voter in turn.
#[derive(Debug)]
struct LeaderTracker {
    voters: Vec<NodeId>,
    /// The quorum's leader as the last answer said.
    leader: Cell<Option<NodeId>>,
    /// The voter to ask when no leader is known.
    next_voter: Cell<usize>,
}

impl LeaderTracker {
    fn new(voters: Vec<NodeId>) -> Self {
        assert!(!voters.is_empty());
        LeaderTracker {
            voters,
            leader: Cell::new(None),
            next_voter: Cell::new(0),
        }
    }

    fn get(&self) -> Option<NodeId> {
        self.leader.get()
    }

    /// The leader if known, else the voter whose turn it is.
    fn target(&self) -> NodeId {
        self.leader
            .get()
            .unwrap_or_else(|| self.voters[self.next_voter.get() % self.voters.len()])
    }

    /// Voter `from` named `hint` as the leader (or none).
    fn learn(&self, from: NodeId, hint: Option<NodeId>) {
        match hint {
            Some(leader) if self.voters.contains(&leader) => self.leader.set(Some(leader)),
            _ => self.lost(from),
        }
    }

    /// Voter `voter` did not answer, or knows no leader: unless another voter has named a
    /// leader meanwhile (heartbeats and fetches ask independently, and a late failure must not
    /// undo a newer hint), forget the leader and ask a voter other than this one next.
    fn lost(&self, voter: NodeId) {
        if self.leader.get().is_some_and(|leader| leader != voter) {
            return;
        }
        self.leader.set(None);
        if self.target() == voter {
            self.next_voter.set(self.next_voter.get().wrapping_add(1));
        }
    }
}

/// See the module docs.
pub struct Observer {
    me: NodeId,
    transport: Rc<Transport>,
    follower: RefCell<MetadataFollower>,
    /// Whom to ask.
    leader: LeaderTracker,
    rpc: Rpc,
    /// The metadata fetch awaiting an answer (the fetch loop sends one at a time).
    fetches: Calls<MetadataFetchResponse>,
    publish: Publish,
    published: Notify,
    /// The offset of the image the cores last finished applying.
    published_offset: Cell<MetadataOffset>,
    /// The leader the cores were last told of.
    published_leader: Cell<Option<NodeId>>,
    file: ImageFile,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("me", &self.me)
            .field("leader", &self.leader.get())
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// Loads the image kept on disk, publishes it to every core, and starts fetching.
    ///
    /// # Errors
    /// If the metadata directory cannot be created.
    pub async fn start(
        data_dir: &Path,
        me: NodeId,
        voters: Vec<NodeId>,
        transport: Rc<Transport>,
        publish: Publish,
        shutdown: Arc<ShutdownFlag>,
    ) -> anyhow::Result<Rc<Observer>> {
        assert!(!voters.is_empty() && !voters.contains(&me));
        let file = ImageFile::open(data_dir)?;
        let mut follower = MetadataFollower::new();
        if let Some(snapshot) = file.load() {
            follower
                .apply(CommittedRead::Snapshot(snapshot))
                .expect("load checked the image decodes");
            info!(
                offset = follower.image().last_applied().0,
                "observer: metadata image loaded from disk"
            );
        }
        let observer = Rc::new(Observer {
            me,
            transport,
            follower: RefCell::new(follower),
            leader: LeaderTracker::new(voters),
            rpc: Rpc::default(),
            fetches: Calls::new(1),
            publish,
            published: Notify::default(),
            published_offset: Cell::new(MetadataOffset(0)),
            published_leader: Cell::new(None),
            file,
        });
        // The image from disk reaches the cores before any client, as a voter's replayed log.
        observer.publish_now().await;
        glommio::spawn_local(observer.clone().read_inbox(shutdown.clone())).detach();
        glommio::spawn_local(observer.clone().fetch_loop(shutdown)).detach();
        Ok(observer)
    }

    /// The quorum's leader, as the voters last said.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader.get()
    }

    /// The offset of the last record applied to this broker's image.
    pub fn applied_offset(&self) -> MetadataOffset {
        self.follower.borrow().image().last_applied()
    }

    /// Whether the image has `node` registered in run `incarnation`.
    pub fn is_registered(&self, node: NodeId, incarnation: u64) -> bool {
        self.follower
            .borrow()
            .image()
            .broker(node)
            .is_some_and(|b| b.incarnation.0 == incarnation)
    }

    /// Sends `request` to the quorum's leader (or, not knowing it, to a voter, which answers
    /// NOT_CONTROLLER with the leader it knows: remembered for the next call).
    ///
    /// # Errors
    /// The transport's, or [`RpcError::TimedOut`].
    pub async fn call_leader(
        &self,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, RpcError> {
        let to = self.target();
        let answer = self.rpc.call(&self.transport, to.0, request).await;
        match &answer {
            Ok(response) if response.error_code == ErrorCode::NotController => {
                self.learn_leader(to, response.leader_hint.map(NodeId));
            }
            Ok(_) => {}
            Err(_) => self.lost(to),
        }
        answer
    }

    /// Waits until the published image satisfies `done`, or `timeout` passes.
    pub async fn wait_published(&self, done: impl Fn(&MetadataImage) -> bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // The predicate is asked of the applied image; the cores have it once an image at
        // least as new was published to them.
        let published = |offset: MetadataOffset| self.published_offset.get() >= offset;
        loop {
            let satisfied_at = {
                let held = self.follower.borrow();
                let image = held.image();
                done(image).then(|| image.last_applied())
            };
            if satisfied_at.is_some_and(published) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            futures_lite::future::or(self.published.notified(), async {
                glommio::timer::sleep(left).await;
            })
            .await;
        }
    }

    fn target(&self) -> NodeId {
        self.leader.target()
    }

    fn learn_leader(&self, from: NodeId, hint: Option<NodeId>) {
        self.leader.learn(from, hint);
    }

    fn lost(&self, voter: NodeId) {
        self.leader.lost(voter);
    }

    async fn read_inbox(self: Rc<Self>, shutdown: Arc<ShutdownFlag>) {
        loop {
            let inbound =
                futures_lite::future::or(async { Some(self.transport.recv().await) }, async {
                    shutdown.wait().await;
                    None
                })
                .await;
            let Some(inbound) = inbound else { return };
            match inbound.body {
                Body::ControllerResponse(response) => {
                    self.rpc.deliver(inbound.correlation_id, response)
                }
                Body::MetadataFetchResponse(response) => {
                    self.fetches.deliver(inbound.correlation_id, response)
                }
                Body::ControllerRequest(request) => {
                    // Another broker took this one for a voter: point it at the leader.
                    let body = Body::ControllerResponse(ControllerResponse::not_controller(
                        request.api(),
                        self.leader.get().map(|n| n.0),
                    ));
                    let _ = inbound
                        .connection
                        .send(self.me.0, inbound.correlation_id, &body);
                }
                Body::Error(error) => {
                    warn!(from = inbound.from, message = %error.message, "cluster peer reported an error")
                }
                other => {
                    debug!(from = inbound.from, kind = ?other.kind(), "cluster frame not handled by an observer")
                }
            }
        }
    }

    async fn fetch_loop(self: Rc<Self>, shutdown: Arc<ShutdownFlag>) {
        while !shutdown.is_triggered() {
            let to = self.target();
            match self.fetch_once(to).await {
                Ok(response) if response.error_code == ErrorCode::None => {
                    match response.leader_id.map(NodeId) {
                        Some(leader) => self.learn_leader(to, Some(leader)),
                        // Mid-election: the voter still serves what it committed; the next
                        // fetch goes to another voter, which may know the new leader.
                        None => self.lost(to),
                    }
                    let applied = self.apply(response.content);
                    if applied {
                        self.persist().await;
                    }
                    if applied || self.leader.get() != self.published_leader.get() {
                        self.publish_now().await;
                    }
                }
                Ok(response) => {
                    debug!(voter = to.0, code = ?response.error_code, "metadata fetch refused");
                    self.learn_leader(to, response.leader_id.map(NodeId));
                    if self.leader.get() == Some(to) {
                        // It names itself but cannot serve: ask another.
                        self.lost(to);
                    }
                    if self.leader.get() != self.published_leader.get() {
                        self.publish_now().await;
                    }
                    glommio::timer::sleep(FETCH_BACKOFF).await;
                }
                Err(e) => {
                    debug!(voter = to.0, error = %e, "metadata fetch failed; asking another voter");
                    self.lost(to);
                    // Clients told of a controller that is gone wait on it; told of none, they
                    // ask again until one is named.
                    if self.leader.get() != self.published_leader.get() {
                        self.publish_now().await;
                    }
                    glommio::timer::sleep(FETCH_BACKOFF).await;
                }
            }
        }
    }

    /// One fetch from `to`, from the offset after the last applied one. A voter that died is
    /// noticed when the connection closes, not after the timeout.
    async fn fetch_once(&self, to: NodeId) -> Result<MetadataFetchResponse, RpcError> {
        let request = MetadataFetchRequest {
            node_id: self.me.0,
            from_offset: self.follower.borrow().next_offset().0,
            max_wait_ms: FETCH_WAIT_MS,
            max_bytes: FETCH_MAX_BYTES,
        };
        let timeout = Duration::from_millis(u64::from(FETCH_WAIT_MS)) + FETCH_ANSWER_SLACK;
        let body = Body::MetadataFetchRequest(request);
        self.fetches
            .call(&self.transport, to.0, &body, timeout)
            .await
    }

    /// Applies a fetch's content; whether the image changed.
    fn apply(&self, content: MetadataContent) -> bool {
        let mut follower = self.follower.borrow_mut();
        let before = follower.image().last_applied();
        let read = committed_read(content);
        if let Err(e) = follower.apply(read) {
            warn!(error = %e, "metadata snapshot from a voter does not decode");
        }
        let after = follower.image().last_applied();
        assert!(after >= before, "the applied metadata offset only grows");
        after > before
    }

    /// Keeps the image on disk. A failure is logged, not fatal: the copy is only a cache of the
    /// quorum's log, for restarts while the quorum is down.
    async fn persist(&self) {
        let snapshot = self.follower.borrow().image().to_snapshot();
        if let Err(e) = self.file.store(snapshot).await {
            warn!(error = %e, "observer: metadata image not kept on disk");
        }
    }

    async fn publish_now(&self) {
        self.published_leader.set(self.leader.get());
        let published = Arc::new(Published {
            image: self.follower.borrow().image().clone(),
            leader: self.leader.get(),
        });
        let offset = published.image.last_applied();
        (self.publish)(published).await;
        self.published_offset.set(offset);
        self.published.notify_all();
    }
}

/// A fetch's content as `MetadataFollower` takes it.
fn committed_read(content: MetadataContent) -> CommittedRead {
    match content {
        MetadataContent::Snapshot { bytes, .. } => CommittedRead::Snapshot(bytes.to_vec()),
        MetadataContent::Batches(batches) => CommittedRead::Records(
            batches
                .into_iter()
                .map(|b| {
                    // An entry that does not decode is skipped by every voter's image alike
                    // (the controller's `apply_entry`): an empty one does the same here.
                    let records = if b.records.is_empty() {
                        Vec::new()
                    } else {
                        decode_batch(&b.records).unwrap_or_else(|e| {
                            warn!(offset = b.offset, error = %e, "undecodable metadata batch skipped");
                            Vec::new()
                        })
                    };
                    (MetadataOffset(b.offset), records)
                })
                .collect(),
        ),
    }
}

/// The observer's copy of the image on disk; see the module docs.
#[derive(Debug)]
struct ImageFile {
    dir: PathBuf,
}

impl ImageFile {
    fn open(data_dir: &Path) -> anyhow::Result<ImageFile> {
        let dir = data_dir.join(METADATA_DIR_NAME);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // A copy that was not renamed into place was never complete.
        let _ = std::fs::remove_file(dir.join(NEW_FILE_NAME));
        Ok(ImageFile { dir })
    }

    /// The image's snapshot bytes, if a whole and valid copy is there. Blocking read, at
    /// startup only, before any client (as the voters' log replay).
    fn load(&self) -> Option<Vec<u8>> {
        let path = self.dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "observer image unreadable; fetching the log again");
                return None;
            }
        };
        match decode_file(&bytes) {
            Ok(snapshot) => Some(snapshot.to_vec()),
            Err(reason) => {
                warn!(path = %path.display(), reason, "observer image damaged; fetching the log again");
                None
            }
        }
    }

    /// Replaces the copy: written aside, fdatasynced, renamed into place, directory synced.
    async fn store(&self, snapshot: Vec<u8>) -> anyhow::Result<()> {
        let bytes = encode_file(&snapshot);
        let new_path = self.dir.join(NEW_FILE_NAME);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(&new_path)
            .await
            .map_err(std::io::Error::from)?;
        let mut at = 0usize;
        while at < bytes.len() {
            let written = file
                .write_at(bytes[at..].to_vec(), at as u64)
                .await
                .map_err(std::io::Error::from)?;
            anyhow::ensure!(written > 0, "wrote nothing at {at}");
            at += written;
        }
        file.fdatasync().await.map_err(std::io::Error::from)?;
        file.close().await.map_err(std::io::Error::from)?;
        glommio::io::rename(&new_path, self.dir.join(FILE_NAME))
            .await
            .map_err(std::io::Error::from)?;
        GlommioDisk.sync_dir(&self.dir).await?;
        Ok(())
    }
}

fn encode_file(snapshot: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER_BYTES + snapshot.len());
    out.extend_from_slice(&FILE_MAGIC.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(snapshot).to_be_bytes());
    out.extend_from_slice(&(snapshot.len() as u64).to_be_bytes());
    out.extend_from_slice(snapshot);
    out
}

fn decode_file(bytes: &[u8]) -> Result<&[u8], &'static str> {
    let header = bytes
        .get(..FILE_HEADER_BYTES)
        .ok_or("shorter than its header")?;
    let field = |at: usize, n: usize| -> u64 {
        header[at..at + n]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    if field(0, 4) != u64::from(FILE_MAGIC) {
        return Err("bad magic");
    }
    let snapshot = &bytes[FILE_HEADER_BYTES..];
    if field(8, 8) != snapshot.len() as u64 {
        return Err("length is not the file's");
    }
    if field(4, 4) != u64::from(crc32fast::hash(snapshot)) {
        return Err("crc mismatch");
    }
    MetadataImage::from_snapshot(snapshot).map_err(|_| "image does not decode")?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_file_round_trips_and_damage_is_refused() {
        let snapshot = MetadataImage::new().to_snapshot();
        let bytes = encode_file(&snapshot);
        assert_eq!(decode_file(&bytes), Ok(&snapshot[..]));
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(decode_file(&damaged).is_err(), "byte {at} flipped");
        }
        assert!(decode_file(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_file(&[]).is_err());
    }

    fn register(node: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node: NodeId(node),
            incarnation: spate_controller::ids::Incarnation(7),
            client: spate_controller::records::Endpoint {
                host: "127.0.0.1".into(),
                port: 9092,
            },
            cluster: spate_controller::records::Endpoint {
                host: "127.0.0.1".into(),
                port: 9192,
            },
            rack: None,
        }
    }

    const VIEW: VoterView = VoterView {
        leader_id: Some(2),
        leader_term: 5,
        committed_offset: 3,
    };

    /// Entries 1..=3 of a log: two registrations around an empty entry.
    fn entries() -> Vec<(MetadataOffset, Vec<MetadataRecord>)> {
        vec![
            (MetadataOffset(1), vec![register(1)]),
            (MetadataOffset(2), Vec::new()),
            (MetadataOffset(3), vec![register(2), register(3)]),
        ]
    }

    fn applied_directly() -> MetadataImage {
        let mut image = MetadataImage::new();
        for (offset, records) in entries() {
            if records.is_empty() {
                image.skip(offset);
            } else {
                image.apply_batch(offset, &records).unwrap();
            }
        }
        image
    }

    #[test]
    fn an_observer_fed_a_voters_answers_builds_the_voters_image() {
        let answered = answer(VIEW, CommittedRead::Records(entries()), FETCH_MAX_BYTES);
        assert_eq!(answered.error_code, ErrorCode::None);
        assert_eq!(
            (
                answered.leader_id,
                answered.leader_term,
                answered.committed_offset
            ),
            (Some(2), 5, 3)
        );
        let MetadataContent::Batches(batches) = &answered.content else {
            panic!("batches expected")
        };
        assert_eq!(
            batches.iter().map(|b| b.offset).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(batches[1].records.is_empty(), "an empty entry is no bytes");
        let mut follower = MetadataFollower::new();
        assert_eq!(follower.apply(committed_read(answered.content)), Ok(3));
        assert_eq!(follower.image(), &applied_directly());
        assert_eq!(follower.next_offset(), MetadataOffset(4));
    }

    #[test]
    fn max_bytes_cuts_between_batches_but_the_first_goes_whole() {
        let answered = answer(VIEW, CommittedRead::Records(entries()), 1);
        let MetadataContent::Batches(batches) = &answered.content else {
            panic!("batches expected")
        };
        // The first batch is over 1 byte and goes anyway; the empty second one fits no more.
        assert_eq!(batches.len(), 1);
        assert!(batches[0].records.len() > 1);
        let mut follower = MetadataFollower::new();
        assert_eq!(follower.apply(committed_read(answered.content)), Ok(1));
        assert_eq!(follower.next_offset(), MetadataOffset(2));
    }

    #[test]
    fn a_compacted_offset_is_answered_with_the_snapshot_and_its_offset() {
        let image = applied_directly();
        let answered = answer(
            VIEW,
            CommittedRead::Snapshot(image.to_snapshot()),
            FETCH_MAX_BYTES,
        );
        let MetadataContent::Snapshot { offset, .. } = &answered.content else {
            panic!("a snapshot expected")
        };
        assert_eq!(*offset, 3);
        let mut follower = MetadataFollower::new();
        follower.apply(committed_read(answered.content)).unwrap();
        assert_eq!(follower.image(), &image);
        let garbage = answer(
            VIEW,
            CommittedRead::Snapshot(vec![0xff; 8]),
            FETCH_MAX_BYTES,
        );
        assert_eq!(garbage.error_code, ErrorCode::KafkaStorageError);
        assert_eq!(
            garbage.leader_id,
            Some(2),
            "a refusal still names the leader"
        );
    }

    #[test]
    fn an_undecodable_batch_is_skipped_like_the_voters_skip_it() {
        let content = MetadataContent::Batches(vec![MetadataBatch {
            offset: 1,
            records: Bytes::from_static(b"not a batch"),
        }]);
        let mut follower = MetadataFollower::new();
        assert_eq!(follower.apply(committed_read(content)), Ok(1));
        assert_eq!(follower.next_offset(), MetadataOffset(2));
    }

    #[test]
    fn an_observer_asks_the_named_leader_else_each_voter_in_turn() {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        let tracker = LeaderTracker::new(voters.to_vec());
        assert_eq!(tracker.target(), NodeId(1));
        // Voter 1 is down: the next one.
        tracker.lost(NodeId(1));
        assert_eq!(tracker.target(), NodeId(2));
        // Voter 2 names 3; a non-voter named as leader is not believed.
        tracker.learn(NodeId(2), Some(NodeId(3)));
        assert_eq!(
            (tracker.get(), tracker.target()),
            (Some(NodeId(3)), NodeId(3))
        );
        tracker.learn(NodeId(3), Some(NodeId(9)));
        assert_eq!(tracker.get(), None);
        assert_ne!(
            tracker.target(),
            NodeId(3),
            "not the voter that just failed us"
        );
        // A late failure of an old leader does not undo a newer hint.
        tracker.learn(NodeId(1), Some(NodeId(2)));
        tracker.lost(NodeId(3));
        assert_eq!(tracker.get(), Some(NodeId(2)));
        // The leader itself failing: forgotten, and another voter asked.
        tracker.lost(NodeId(2));
        assert_eq!(tracker.get(), None);
        assert_ne!(tracker.target(), NodeId(2));
    }

    #[test]
    fn entries_without_records_travel_as_no_bytes() {
        assert!(encode_entry(&[]).is_empty());
        let records = [MetadataRecord::UnregisterBroker { node: NodeId(4) }];
        let encoded = encode_entry(&records);
        assert_eq!(decode_batch(&encoded).unwrap(), records.to_vec());
    }
}
