//! One core's world: the topic table, the partitions this core owns, and the execution of ops
//! on them, whether they come from a local connection or another core.
//!
//! Invariants: a partition's log is opened by exactly one core, the one its entry in the
//! [`PartitionTable`] names;
//! nothing here is shared with another thread; topic metadata changes only through the
//! controller core ([`CONTROLLER_CORE`]), which writes the topic file durably before telling
//! every core, so all cores apply topic changes in the controller's order.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use glommio::channels::local_channel::LocalSender;
use spate_storage::io::glommio::GlommioDisk;
use spate_storage::Log;
use spate_wire::types::{LeaderEpoch, Offset};
use spate_wire::versions::VersionTable;
use spate_wire::ErrorCode;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::mesh::Mesh;
use crate::metadata::cluster::ClusterView;
use crate::metadata::topics::{self, TopicMeta};
use crate::ops::*;
pub use crate::partition::Partition;
use crate::partition::SINGLE_NODE_LEADER_EPOCH;
use crate::routing::{owner_core, Leader, PartitionTable, Placement, Route};

/// The core that owns topic metadata: creates and deletes topics, in one order for everyone.
pub const CONTROLLER_CORE: usize = 0;
/// How often a core looks for group-commit flushes that are due.
const FLUSH_TICK: Duration = Duration::from_millis(1);
/// How often a core applies retention to its partitions.
const RETENTION_TICK: Duration = Duration::from_secs(30);
/// How often idle partitions give their write buffers back to the core's budget: a partition
/// not appended to for one to two of these lets them go (`Log::release_idle_buffers`).
const IDLE_BUFFERS_TICK: Duration = Duration::from_millis(100);

/// An op that names a partition and can be routed to its owner.
pub trait Routable: Sized + Send + 'static {
    type Result;
    fn key(&self) -> (&str, i32);
    fn into_request(ops: Vec<Self>) -> CoreRequest;
    fn from_reply(reply: CoreReply) -> Vec<Self::Result>;
    /// The result for an op that was not run: `error` says why (no such partition here, led
    /// by another broker, owner unreachable).
    fn failed(&self, error: ErrorCode) -> Self::Result;
}

/// A core's state; see the module doc for its invariants.
pub struct Core {
    pub id: usize,
    pub cores: usize,
    pub config: Arc<Config>,
    pub versions: VersionTable,
    pub topics: RefCell<BTreeMap<String, Rc<TopicMeta>>>,
    partitions: RefCell<HashMap<String, HashMap<i32, Rc<Partition>>>>,
    /// Where every partition is led, as this core knows it.
    routes: RefCell<PartitionTable>,
    /// The cluster as clients are told of it (Metadata, DescribeCluster).
    pub cluster: RefCell<ClusterView>,
    /// Cluster mode, on the controller core only: the transport and this broker's voter.
    pub cluster_node: std::cell::OnceCell<crate::cluster::ClusterNode>,
    pub mesh: Mesh,
    /// Topic changes and producer ids, decided on the controller core.
    changes: crate::metadata::changes::Changes,
    /// The consumer groups this core coordinates (those of its `__consumer_offsets`
    /// partitions).
    pub groups: crate::group::coordinator::Coordinator,
    /// The transactional ids this core coordinates (those of its `__transaction_state`
    /// partitions) and their pending marker writes.
    pub txns: crate::txn::TxnShell,
    /// Request and append times, logged every `stats-interval-ms`.
    pub stats: crate::stats::CoreStats,
    /// Cluster mode: this core's side of partition replication.
    pub replication: crate::cluster::replication::CoreReplication,
    /// Partitions being opened now (see [`Opening`]).
    opening: RefCell<std::collections::HashSet<(String, i32)>>,
    /// Counters for the Prometheus metrics (`metrics.rs`).
    pub metrics: crate::metrics::CoreMetrics,
    /// A topic's retention settings changed: the maintenance task runs a retention pass at its
    /// next tick instead of waiting for the 30 s one.
    retention_due: std::cell::Cell<bool>,
    /// Set when [`Core::close_all`] starts: a metadata round that arrives after (the mesh keeps
    /// serving other cores until every core stops) opens no partition. One opened then would
    /// be a second log over a directory the shutdown is closing: its recovery removes the
    /// close's temporary checkpoint file under it (glommio then panics, ENOENT).
    closing: std::cell::Cell<bool>,
    /// Partitions taken out of the map whose close and directory removal are in flight: a
    /// round that places one here again waits for the removal before opening it, or the
    /// removal would delete the new replica's files.
    dropping: RefCell<std::collections::HashSet<(String, i32)>>,
    /// Cluster mode: the last metadata image this core published (ListPartitionReassignments
    /// answers from it).
    published: RefCell<Option<Arc<crate::cluster::quorum::Published>>>,
    /// Connections other cores hand to this one (see `crate::handoff`), for the accept loop,
    /// which sets this while it accepts.
    handoffs: RefCell<Option<LocalSender<crate::handoff::Handoff>>>,
}

/// A claim on opening one partition: while it lives no other round opens the same one.
struct Opening<'a> {
    set: &'a RefCell<std::collections::HashSet<(String, i32)>>,
    key: (String, i32),
}

impl<'a> Opening<'a> {
    /// The claim, or `None` if another round holds it.
    fn claim(
        set: &'a RefCell<std::collections::HashSet<(String, i32)>>,
        topic: &str,
        index: i32,
    ) -> Option<Opening<'a>> {
        let key = (topic.to_owned(), index);
        set.borrow_mut()
            .insert(key.clone())
            .then_some(Opening { set, key })
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.set.borrow_mut().remove(&self.key);
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("id", &self.id).finish()
    }
}

impl Core {
    /// A core with no topics yet; [`Core::load`] opens what is on disk.
    pub fn new(
        id: usize,
        cores: usize,
        config: Arc<Config>,
        versions: VersionTable,
        mesh: Mesh,
    ) -> Core {
        Core {
            id,
            cores,
            stats: crate::stats::CoreStats::default(),
            metrics: crate::metrics::CoreMetrics::default(),
            groups: crate::group::coordinator::Coordinator::new(
                config.groups.limits,
                config.groups.groups_per_core_max,
            ),
            txns: crate::txn::TxnShell::new(config.transactions),
            cluster: RefCell::new(ClusterView::single_node(&config)),
            cluster_node: std::cell::OnceCell::new(),
            config,
            versions,
            topics: RefCell::new(BTreeMap::new()),
            partitions: RefCell::new(HashMap::new()),
            routes: RefCell::new(PartitionTable::new(id)),
            mesh,
            changes: crate::metadata::changes::Changes::default(),
            replication: crate::cluster::replication::CoreReplication::default(),
            published: RefCell::new(None),
            opening: RefCell::new(std::collections::HashSet::new()),
            retention_due: std::cell::Cell::new(false),
            closing: std::cell::Cell::new(false),
            dropping: RefCell::new(std::collections::HashSet::new()),
            handoffs: RefCell::new(None),
        }
    }

    /// Lets other cores hand connections to this one: they arrive on `sender`'s receiver.
    /// `None` when the accept loop stops: a connection handed over after that would have
    /// nobody to serve it, so it stays where it is.
    pub fn accept_handoffs(&self, sender: Option<LocalSender<crate::handoff::Handoff>>) {
        *self.handoffs.borrow_mut() = sender;
    }

    /// Takes a connection another core hands over, unless this core no longer accepts
    /// connections, is at its connection limit, or has a full queue of them; then the
    /// other core keeps serving it.
    fn adopt(&self, handoff: crate::handoff::Handoff) -> bool {
        let handoffs = self.handoffs.borrow();
        let Some(sender) = handoffs.as_ref() else {
            return false;
        };
        if self.metrics.connections_active() >= self.config.connections_per_core_max as u64 {
            return false;
        }
        sender.try_send(handoff).is_ok()
    }

    /// The partitions this core owns that replicate (cluster mode).
    pub fn replicated_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|m| m.values())
            .filter(|p| p.replica.is_some())
            .cloned()
            .collect()
    }

    /// Reads every topic file and opens (recovers) the partitions this core owns.
    ///
    /// # Errors
    /// If the topic files cannot be read, or a partition cannot be opened.
    pub async fn load(&self) -> anyhow::Result<()> {
        if self.config.cluster.is_some() {
            // The metadata log is the source of topics; they arrive with its first image.
            return Ok(());
        }
        let all = topics::load_all(&self.config.data_dir)?;
        for meta in all.into_values() {
            self.upsert_topic(meta.clone(), Phase::Open).await?;
            self.upsert_topic(meta, Phase::Publish).await?;
        }
        self.groups.load(self).await?;
        self.txns.load(self).await
    }

    /// Where work for a partition goes, as this core's partition table says.
    pub fn route(&self, topic: &str, partition: i32) -> Route {
        self.routes.borrow().route(topic, partition)
    }

    /// A partition's leader and leader epoch, if the table knows it (on any core).
    pub fn placement(&self, topic: &str, partition: i32) -> Option<Placement> {
        self.routes.borrow().placement(topic, partition)
    }

    /// Every topic's name by its id (cluster frames name topics by id).
    pub fn topic_names_by_id(&self) -> HashMap<[u8; 16], String> {
        self.topics
            .borrow()
            .values()
            .map(|m| (m.id, m.name.clone()))
            .collect()
    }

    /// A topic's metadata, if it exists.
    pub fn topic(&self, name: &str) -> Option<Rc<TopicMeta>> {
        self.topics.borrow().get(name).cloned()
    }

    /// A topic named by name, or by id when the name is absent (Metadata v10+, DeleteTopics v6+).
    pub fn topic_by_name_or_id(&self, name: Option<&str>, id: [u8; 16]) -> Option<Rc<TopicMeta>> {
        match name {
            Some(name) => self.topic(name),
            None => self.topics.borrow().values().find(|m| m.id == id).cloned(),
        }
    }

    /// A partition this core owns.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(topic)?
            .get(&partition)
            .cloned()
    }

    /// The placements of a topic of a single broker, and which of its partitions this core owns.
    fn single_broker_placement(&self, meta: &TopicMeta) -> (Vec<Placement>, Vec<bool>) {
        let placements: Vec<Placement> = (0..meta.partitions)
            .map(|index| Placement {
                leader: Leader::Core(owner_core(&meta.name, index, self.cores)),
                leader_epoch: SINGLE_NODE_LEADER_EPOCH,
            })
            .collect();
        let hosted: Vec<bool> = (0..meta.partitions)
            .map(|index| owner_core(&meta.name, index, self.cores) == self.id)
            .collect();
        (placements, hosted)
    }

    /// Applies one round of a topic change of a single broker (see [`Phase`]).
    async fn upsert_topic(&self, meta: TopicMeta, phase: Phase) -> anyhow::Result<()> {
        let (placements, hosted) = self.single_broker_placement(&meta);
        match phase {
            Phase::Open => self.open_hosted(&meta, &placements, &hosted).await,
            Phase::Publish => {
                self.publish_topic(meta, placements);
                Ok(())
            }
        }
    }

    /// Applies one round of a committed metadata image (cluster mode): first every core opens
    /// the partitions it keeps; then the cluster view, every topic with its placements, and the
    /// removal of topics that are gone.
    pub async fn apply_published(
        &self,
        published: &Arc<crate::cluster::quorum::Published>,
        phase: Phase,
        gone: &[i32],
    ) {
        let plan = crate::cluster::apply::plan(
            &published.image,
            published.leader,
            crate::cluster::CLUSTER_ID,
            self.config.node_id,
            self.id,
            self.cores,
            &self.config.topic_defaults,
        );
        if phase == Phase::Open {
            for topic in &plan.topics {
                if let Err(e) = self
                    .open_hosted(&topic.meta, &topic.placements, &topic.hosted_here)
                    .await
                {
                    error!(core = self.id, topic = %topic.meta.name, error = %e, "cannot open topic partitions");
                }
            }
            return;
        }
        let registered = published
            .image
            .broker(spate_controller::ids::NodeId(self.config.node_id))
            .is_some_and(|b| b.incarnation.0 == crate::cluster::replication::incarnation());
        let mut view = ClusterView {
            caught_up: registered,
            ..plan.view
        };
        if let Some(cluster) = &self.config.cluster {
            // Brokers seen gone and fenced since the last image stay in Metadata for a
            // session's length.
            view.linger_after(
                &self.cluster.borrow(),
                gone,
                Instant::now(),
                Duration::from_millis(cluster.session_timeout_ms),
            );
        }
        *self.cluster.borrow_mut() = view;
        *self.published.borrow_mut() = Some(published.clone());
        let mut current: std::collections::BTreeSet<String> =
            self.topics.borrow().keys().cloned().collect();
        let states: Vec<_> = plan
            .topics
            .iter()
            .map(|t| (t.meta.name.clone(), t.hosted_here.clone(), t.states.clone()))
            .collect();
        for topic in plan.topics {
            current.remove(&topic.meta.name);
            // A partition that failed to open in the first round is tried once more here.
            let name = topic.meta.name.clone();
            if let Err(e) = self
                .open_hosted(&topic.meta, &topic.placements, &topic.hosted_here)
                .await
            {
                error!(core = self.id, topic = %name, error = %e, "cannot open topic partitions");
            }
            let hosted = topic.hosted_here.clone();
            self.publish_topic(topic.meta, topic.placements);
            self.close_unhosted(&name, &hosted).await;
        }
        for gone in current {
            info!(core = self.id, topic = %gone, "topic gone from the metadata log");
            self.remove_topic(&gone).await;
        }
        if registered {
            crate::cluster::replication::apply_states(self, &states).await;
        }
        // The groups of an offsets partition are rebuilt from its log whenever this broker
        // becomes its leader (`apply_states`): a coordinator moves with the leadership.
    }

    /// Opens the partitions of a topic marked `hosted` that this core has not opened yet, and
    /// moves the leader epoch of those it has. Clients see none of it until
    /// [`Self::publish_topic`]: requests reach a partition only through a route.
    async fn open_hosted(
        &self,
        meta: &TopicMeta,
        placements: &[Placement],
        hosted: &[bool],
    ) -> anyhow::Result<()> {
        assert_eq!(placements.len(), meta.partitions as usize);
        assert_eq!(hosted.len(), meta.partitions as usize);
        let log_config = self.log_config(meta);
        let mut opened = 0usize;
        for index in 0..meta.partitions {
            if let Some(open) = self.partition(&meta.name, index) {
                // A new leadership of a partition this broker keeps (cluster mode).
                let epoch = placements[index as usize].leader_epoch;
                if epoch > open.leader_epoch() {
                    open.set_leader_epoch(epoch);
                }
                continue;
            }
            if !hosted[index as usize] {
                continue;
            }
            // Opening awaits, and another round of changes to this topic may try to open the
            // same partition meanwhile: two logs over one directory would overwrite each
            // other's files (recovery, checkpoints, snapshots), so the later round skips it.
            let Some(_opening) = Opening::claim(&self.opening, &meta.name, index) else {
                continue;
            };
            let key = (meta.name.clone(), index);
            while self.dropping.borrow().contains(&key) && !self.closing.get() {
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            }
            if self.closing.get() {
                return Ok(());
            }
            let dir = topics::partition_dir(&self.config.data_dir, &meta.name, index);
            let log = Log::open(GlommioDisk, &dir, log_config)
                .await
                .map_err(|e| anyhow::anyhow!("opening partition {}-{index}: {e}", meta.name))?;
            if self.closing.get() {
                // The shutdown began while this log opened: close it here, since `close_all`
                // has already taken the map it would have been in.
                if let Err(e) = log.close().await {
                    warn!(core = self.id, topic = %meta.name, partition = index, error = %e, "closing a partition opened during shutdown");
                }
                return Ok(());
            }
            let compacted = meta.config.cleanup_policy.compacts();
            let cleaner = if compacted {
                log.load_cleaner_state().await.unwrap_or_else(|e| {
                    warn!(core = self.id, topic = %meta.name, partition = index, error = %e,
                        "reading the cleaner checkpoint; cleaning from the start");
                    spate_storage::CleanerState::default()
                })
            } else {
                spate_storage::CleanerState::default()
            };
            // One line per partition only where there was something to recover: a new topic
            // of fifty partitions (the offsets topic) is one summary line below, not fifty.
            if log.log_end_offset() > log.log_start_offset() {
                info!(
                    core = self.id,
                    topic = %meta.name,
                    partition = index,
                    log_start = %log.log_start_offset(),
                    log_end = %log.log_end_offset(),
                    producers = log.producer_count().await,
                    "partition opened"
                );
            } else {
                debug!(core = self.id, topic = %meta.name, partition = index, "partition opened empty");
            }
            opened += 1;
            let settings = crate::partition::Settings::of(meta);
            let replica = if self.config.cluster.is_some() {
                Some(crate::cluster::replication::new_slot(self, meta, index, &log).await?)
            } else {
                None
            };
            let mut partition = Partition::new(
                log,
                settings,
                cleaner,
                placements[index as usize].leader_epoch.max(LeaderEpoch(0)),
            );
            partition.replica = replica;
            let partition = Rc::new(partition);
            self.partitions
                .borrow_mut()
                .entry(meta.name.clone())
                .or_default()
                .insert(index, partition);
        }
        if opened > 0 {
            info!(core = self.id, topic = %meta.name, partitions = opened, "partitions opened");
        }
        Ok(())
    }

    /// The settings of a log of `meta`'s partitions on this broker.
    fn log_config(&self, meta: &TopicMeta) -> spate_storage::LogConfig {
        let mut log_config = meta.config.log_config();
        log_config.producer_id_expiration_ms = self.config.producer_id_expiration_ms;
        log_config.producers_per_partition_max = self.config.producers_per_partition_max;
        log_config
    }

    /// Applies a topic's changed configs to the partitions this core owns (a live
    /// AlterConfigs, from a topic file or a metadata image): each log's and partition's
    /// settings are replaced in place, so the next op sees them; a retention pass follows at
    /// the next maintenance tick. Never awaits.
    fn apply_config_change(&self, old: &TopicMeta, new: &TopicMeta) {
        if old.config == new.config {
            return;
        }
        let log_config = self.log_config(new);
        let settings = crate::partition::Settings::of(new);
        let mut changed = 0usize;
        if let Some(owned) = self.partitions.borrow().get(&new.name) {
            for partition in owned.values() {
                partition.log.set_config(log_config);
                partition.set_settings(settings);
                if let Some(slot) = &partition.replica {
                    slot.set_min_insync_replicas(new.config.min_insync_replicas);
                }
                changed += 1;
            }
        }
        self.retention_due.set(true);
        if changed > 0 {
            info!(core = self.id, topic = %new.name, partitions = changed, "topic config applied");
        }
    }

    /// Shows a topic to clients: its metadata and its routes. Never awaits, so a core's view
    /// of a topic changes in one step.
    fn publish_topic(&self, meta: TopicMeta, placements: Vec<Placement>) {
        assert_eq!(placements.len(), meta.partitions as usize);
        if let Some(old) = self.topic(&meta.name) {
            if old.id == meta.id {
                self.apply_config_change(&old, &meta);
            }
        }
        self.routes.borrow_mut().set_topic(&meta.name, placements);
        debug!(core = self.id, topic = %meta.name, revision = self.routes.borrow().revision().0, "partition table updated");
        self.topics
            .borrow_mut()
            .insert(meta.name.clone(), Rc::new(meta));
    }

    async fn remove_topic(&self, name: &str) {
        self.routes.borrow_mut().remove_topic(name);
        self.topics.borrow_mut().remove(name);
        let owned = self
            .partitions
            .borrow_mut()
            .remove(name)
            .unwrap_or_default();
        for (index, partition) in owned {
            self.drop_partition(name, index, partition).await;
        }
    }

    /// The last metadata image this core published (cluster mode), `None` before the first.
    pub fn published(&self) -> Option<Arc<crate::cluster::quorum::Published>> {
        self.published.borrow().clone()
    }

    /// Closes the partitions of `topic` this core keeps that the image no longer places here
    /// (a reassignment moved them to other brokers) and deletes their data, as Kafka's brokers
    /// delete a replica they stop hosting. Their routes already point elsewhere.
    async fn close_unhosted(&self, topic: &str, hosted: &[bool]) {
        let gone: Vec<(i32, Rc<Partition>)> = {
            let mut partitions = self.partitions.borrow_mut();
            let Some(owned) = partitions.get_mut(topic) else {
                return;
            };
            let indexes: Vec<i32> = owned
                .keys()
                .copied()
                .filter(|i| !usize::try_from(*i).is_ok_and(|i| hosted.get(i) == Some(&true)))
                .collect();
            indexes
                .into_iter()
                .filter_map(|i| owned.remove(&i).map(|p| (i, p)))
                .collect()
        };
        for (index, partition) in gone {
            info!(
                core = self.id,
                topic,
                partition = index,
                "replica moved off this broker; deleting it"
            );
            self.drop_partition(topic, index, partition).await;
        }
    }

    /// Closes a partition taken out of this core's map and deletes its directory.
    async fn drop_partition(&self, name: &str, index: i32, partition: Rc<Partition>) {
        let key = (name.to_owned(), index);
        self.dropping.borrow_mut().insert(key.clone());
        self.drop_partition_files(name, index, partition).await;
        self.dropping.borrow_mut().remove(&key);
    }

    /// [`Self::drop_partition`]'s work, while its key is in `dropping`.
    async fn drop_partition_files(&self, name: &str, index: i32, partition: Rc<Partition>) {
        // Wake long-polls so they see the partition is gone.
        partition.appended.notify_all();
        if let Some(slot) = &partition.replica {
            slot.close().await;
        }
        let dir = topics::partition_dir(&self.config.data_dir, name, index);
        if let Ok(partition) = Rc::try_unwrap(partition) {
            if let Err(e) = partition.log.close().await {
                warn!(core = self.id, topic = name, partition = index, error = %e, "closing a removed partition");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!(core = self.id, dir = %dir.display(), error = %e, "removing a partition's data");
        }
    }

    /// Runs a request on this core (from a local handler or another core).
    pub async fn run(&self, request: CoreRequest) -> CoreReply {
        match request {
            // The partitions of one request proceed concurrently: an acks=all produce to eight
            // partitions waits for eight group commits at once, not one after another.
            CoreRequest::Produce(ops) => {
                CoreReply::Produce(join_all(ops.into_iter().map(|op| self.produce(op))).await)
            }
            CoreRequest::Fetch(ops) => {
                CoreReply::Fetch(join_all(ops.into_iter().map(|op| self.fetch(op))).await)
            }
            CoreRequest::ListOffsets(ops) => CoreReply::ListOffsets(
                join_all(ops.into_iter().map(|op| self.list_offsets(op))).await,
            ),
            CoreRequest::EpochEnd(ops) => {
                CoreReply::EpochEnd(join_all(ops.into_iter().map(|op| self.epoch_end(op))).await)
            }
            CoreRequest::DeleteRecords(ops) => CoreReply::DeleteRecords(
                join_all(ops.into_iter().map(|op| self.delete_records(op))).await,
            ),
            CoreRequest::LogSize(ops) => {
                CoreReply::LogSize(join_all(ops.into_iter().map(|op| self.log_size(op))).await)
            }
            CoreRequest::Producers(ops) => {
                CoreReply::Producers(join_all(ops.into_iter().map(|op| self.producers(op))).await)
            }
            CoreRequest::WaitForData {
                partitions,
                wait_ms,
                reader,
            } => {
                self.wait_for_data(&partitions, wait_ms, reader).await;
                CoreReply::Done
            }
            CoreRequest::CreateTopics(metas) => {
                CoreReply::Topics(self.changes.create_topics(self, metas).await)
            }
            CoreRequest::DeleteTopics(names) => {
                CoreReply::Topics(self.changes.delete_topics(self, names).await)
            }
            CoreRequest::CreatePartitions(grown) => {
                CoreReply::Topics(self.changes.create_partitions(self, grown).await)
            }
            CoreRequest::AlterConfigs(topics, validate_only) => CoreReply::Topics(
                self.changes
                    .alter_configs(self, topics, validate_only)
                    .await,
            ),
            CoreRequest::TopicUpserted(meta, phase) => {
                let name = meta.name.clone();
                match self.upsert_topic(meta, phase).await {
                    Ok(()) => CoreReply::Topics(vec![(ErrorCode::None, None)]),
                    Err(e) => {
                        error!(core = self.id, topic = %name, error = %e, "cannot open topic partitions");
                        CoreReply::Topics(vec![(ErrorCode::KafkaStorageError, Some(e.to_string()))])
                    }
                }
            }
            CoreRequest::TopicRemoved(name) => {
                self.remove_topic(&name).await;
                CoreReply::Done
            }
            CoreRequest::AllocateProducerId => match self.cluster_node.get() {
                Some(node) => CoreReply::ProducerId(node.allocate_producer_id().await),
                None => CoreReply::ProducerId(self.changes.allocate_producer_id(self).await),
            },
            CoreRequest::DescribeQuorum => CoreReply::Quorum(match self.cluster_node.get() {
                Some(node) => node.describe_quorum().await,
                // Advertised in cluster mode only: a single broker has no quorum.
                None => Err(ErrorCode::UnsupportedVersion),
            }),
            CoreRequest::ClusterMetadata(published, phase, gone) => {
                self.apply_published(&published, phase, &gone).await;
                CoreReply::Done
            }
            CoreRequest::ReplicaSend { to, request } => {
                let answer = match self.cluster_node.get() {
                    Some(node) => node.replica_rpc.call(&node.transport, to, request).await,
                    None => None,
                };
                CoreReply::ReplicaFetched(answer)
            }
            CoreRequest::TxnPeer { to, call } => {
                let answer = match self.cluster_node.get() {
                    Some(node) => node.txn_rpc.call(&node.transport, to, call).await,
                    None => None,
                };
                CoreReply::TxnPeer(answer)
            }
            CoreRequest::ReplicaServe(op) => {
                CoreReply::ReplicaServed(crate::cluster::replication::serve(self, op).await)
            }
            CoreRequest::ElectPreferred(partitions) => {
                CoreReply::Elected(match self.cluster_node.get() {
                    Some(node) => node.elect_preferred_leaders(partitions).await,
                    None => Err(ErrorCode::NotController),
                })
            }
            CoreRequest::Reassign(requests) => {
                CoreReply::Reassigned(match self.cluster_node.get() {
                    Some(node) => node.alter_partition_reassignments(requests).await,
                    None => Err(ErrorCode::NotController),
                })
            }
            CoreRequest::Decommission(node, request, validate_only) => {
                let (code, message) = match self.cluster_node.get() {
                    Some(cluster) => {
                        cluster
                            .decommission_broker(node, request, validate_only)
                            .await
                    }
                    None => (
                        ErrorCode::InvalidRequest,
                        Some("a single broker cannot be decommissioned".to_owned()),
                    ),
                };
                CoreReply::Decommissioned(code, message)
            }
            CoreRequest::SetThrottle(throttle) => {
                self.replication.dynamic_throttle.set(throttle);
                CoreReply::ThrottleSet
            }
            CoreRequest::Unregister(node) => {
                let (code, message) = match self.cluster_node.get() {
                    Some(cluster) => cluster.unregister_broker(node).await,
                    None => (ErrorCode::UnsupportedVersion, None),
                };
                CoreReply::Unregistered(code, message)
            }
            CoreRequest::AlterIsr(change) => CoreReply::IsrChanged(match self.cluster_node.get() {
                Some(node) => node
                    .alter_partition(vec![change])
                    .await
                    .and_then(|mut results| results.pop().ok_or(ErrorCode::UnknownServerError)),
                None => Err(ErrorCode::NotController),
            }),
            CoreRequest::Group(call) => {
                CoreReply::Group(Box::new(crate::group::run(self, *call).await))
            }
            CoreRequest::Txn(call) => CoreReply::Txn(Box::new(crate::txn::run(self, *call).await)),
            CoreRequest::WriteTxnMarker(op) => {
                CoreReply::Marker(crate::txn::write_marker(self, op).await)
            }
            CoreRequest::AdoptConnection(handoff) => CoreReply::Adopted(self.adopt(*handoff)),
            CoreRequest::Metrics => {
                CoreReply::Metrics(Box::new(crate::metrics::snapshot(self).await))
            }
        }
    }

    /// Runs `request` on core `to`, directly if that is this core.
    pub async fn call(&self, to: usize, request: CoreRequest) -> Option<CoreReply> {
        if to == self.id {
            return Some(Box::pin(self.run(request)).await);
        }
        match self.mesh.call(self.id, to, request).await {
            Ok(reply) => Some(reply),
            Err(e) => {
                warn!(core = self.id, error = %e, "cross-core call failed");
                None
            }
        }
    }

    /// Runs each op on the core owning its partition, all cores in parallel, and returns the
    /// results in the order of `ops`. Ops for partitions another broker leads (or nobody)
    /// fail with NOT_LEADER_OR_FOLLOWER.
    pub async fn scatter<O: Routable>(&self, ops: Vec<O>) -> Vec<O::Result> {
        self.scatter_by(ops, |topic, partition| self.leading_core(topic, partition))
            .await
    }

    /// As [`Self::scatter`], and notes the core of each op routed within this broker in
    /// `affinity`, the connection's tally (see `crate::handoff`).
    pub async fn scatter_noting<O: Routable>(
        &self,
        ops: Vec<O>,
        affinity: &crate::handoff::Affinity,
    ) -> Vec<O::Result> {
        self.scatter_by(ops, |topic, partition| {
            let core = self.leading_core(topic, partition)?;
            affinity.note(core);
            Ok(core)
        })
        .await
    }

    /// The core of this broker that leads a partition, or the error an op for it gets.
    fn leading_core(&self, topic: &str, partition: i32) -> Result<usize, ErrorCode> {
        match self.route(topic, partition) {
            Route::ThisCore => Ok(self.id),
            Route::OtherCore(core) => Ok(core),
            Route::OtherBroker(_) | Route::NoLeader => Err(ErrorCode::NotLeaderOrFollower),
            Route::NotHere => Err(ErrorCode::UnknownTopicOrPartition),
        }
    }

    /// As [`Self::scatter`], but to the core that holds this broker's replica of each
    /// partition whoever leads it: a follower's replica too (DescribeLogDirs lists every
    /// replica in a broker's log dirs, as Kafka's does). A partition this broker holds no
    /// replica of fails on that core with UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn scatter_to_replicas<O: Routable>(&self, ops: Vec<O>) -> Vec<O::Result> {
        self.scatter_by(ops, |topic, partition| {
            Ok(owner_core(topic, partition, self.cores))
        })
        .await
    }

    /// Runs each op on the core `core_of` names for its partition, or fails it with the error
    /// `core_of` gives, and returns the results in the order of `ops`.
    async fn scatter_by<O: Routable>(
        &self,
        ops: Vec<O>,
        core_of: impl Fn(&str, i32) -> Result<usize, ErrorCode>,
    ) -> Vec<O::Result> {
        let count = ops.len();
        let mut by_core: Vec<(Vec<usize>, Vec<O>)> =
            (0..self.cores).map(|_| (Vec::new(), Vec::new())).collect();
        let mut slots: Vec<Option<O::Result>> = (0..count).map(|_| None).collect();
        for (i, op) in ops.into_iter().enumerate() {
            let (topic, partition) = op.key();
            let owner = match core_of(topic, partition) {
                Ok(core) => core,
                Err(error) => {
                    slots[i] = Some(op.failed(error));
                    continue;
                }
            };
            assert!(owner < self.cores, "core {owner} of {}", self.cores);
            by_core[owner].0.push(i);
            by_core[owner].1.push(op);
        }
        let mut calls = Vec::new();
        let mut fallbacks = Vec::new();
        for (core, (indexes, ops)) in by_core.into_iter().enumerate() {
            if ops.is_empty() {
                continue;
            }
            fallbacks.push(
                ops.iter()
                    .map(|op| op.failed(ErrorCode::NotLeaderOrFollower))
                    .collect::<Vec<_>>(),
            );
            calls.push(async move { (indexes, self.call(core, O::into_request(ops)).await) });
        }
        for ((indexes, reply), fallback) in join_all(calls).await.into_iter().zip(fallbacks) {
            let results = match reply {
                Some(reply) => O::from_reply(reply),
                None => fallback,
            };
            assert_eq!(results.len(), indexes.len(), "one result per op");
            for (i, result) in indexes.into_iter().zip(results) {
                slots[i] = Some(result);
            }
        }
        slots
            .into_iter()
            .map(|r| r.expect("every op has a result"))
            .collect()
    }

    /// Sends `make()` to every core (this one included) and waits for all.
    pub async fn broadcast(&self, make: impl Fn() -> CoreRequest) -> Vec<Option<CoreReply>> {
        let calls = (0..self.cores).map(|core| self.call(core, make()));
        join_all(calls).await
    }

    async fn produce(&self, op: ProduceOp) -> ProduceResult {
        let Some(partition) = self.partition(&op.topic, op.partition) else {
            return ProduceResult {
                error: ErrorCode::UnknownTopicOrPartition,
                base_offset: Offset(-1),
                log_start_offset: Offset(-1),
                message: Some(format!("{}-{} is not here", op.topic, op.partition)),
                record_errors: Vec::new(),
                log_append_time_ms: -1,
            };
        };
        partition.produce(op, &self.stats).await
    }

    async fn fetch(&self, op: FetchOp) -> FetchResult {
        match self.partition(&op.topic, op.partition) {
            Some(partition) => partition.fetch(&op).await,
            None => FetchResult::failed(ErrorCode::UnknownTopicOrPartition),
        }
    }

    async fn list_offsets(&self, op: ListOffsetsOp) -> ListOffsetsResult {
        match self.partition(&op.topic, op.partition) {
            Some(partition) => partition.list_offsets(&op).await,
            None => ListOffsetsResult {
                error: ErrorCode::UnknownTopicOrPartition,
                offset: Offset(-1),
                timestamp_ms: -1,
                leader_epoch: LeaderEpoch(-1),
            },
        }
    }

    /// DeleteRecords on an owned partition: refused, as Kafka refuses it, for the internal
    /// offsets topic (INVALID_TOPIC_EXCEPTION) and for a topic whose `cleanup.policy` does not
    /// include `delete` (POLICY_VIOLATION).
    async fn delete_records(&self, op: DeleteRecordsOp) -> DeleteRecordsResult {
        let failed = |error| DeleteRecordsResult {
            error,
            low_watermark: Offset(-1),
        };
        let Some(partition) = self.partition(&op.topic, op.partition) else {
            return failed(ErrorCode::UnknownTopicOrPartition);
        };
        if op.topic == crate::group::OFFSETS_TOPIC {
            return failed(ErrorCode::InvalidTopicException);
        }
        let deletes = self
            .topic(&op.topic)
            .is_none_or(|meta| meta.config.cleanup_policy.deletes());
        if !deletes {
            return failed(ErrorCode::PolicyViolation);
        }
        partition.delete_records(&op).await
    }

    async fn log_size(&self, op: LogSizeOp) -> LogSizeResult {
        match self.partition(&op.topic, op.partition) {
            Some(partition) => {
                let size_bytes = partition.log.size_bytes().await;
                // Both read after the await with none between them, so they are of one
                // moment (an append during the size's read cannot fall between them).
                LogSizeResult {
                    error: ErrorCode::None,
                    size_bytes,
                    log_end_offset: partition.log.log_end_offset(),
                    high_watermark: partition.high_watermark(),
                }
            }
            None => LogSizeResult {
                error: ErrorCode::UnknownTopicOrPartition,
                size_bytes: 0,
                log_end_offset: Offset(-1),
                high_watermark: Offset(-1),
            },
        }
    }

    async fn producers(&self, op: ProducersOp) -> ProducersResult {
        match self.partition(&op.topic, op.partition) {
            Some(partition) => ProducersResult {
                error: ErrorCode::None,
                producers: partition.log.active_producers().await,
            },
            None => ProducersResult {
                error: ErrorCode::UnknownTopicOrPartition,
                producers: Vec::new(),
            },
        }
    }

    async fn epoch_end(&self, op: EpochEndOp) -> EpochEndResult {
        match self.partition(&op.topic, op.partition) {
            Some(partition) => partition.epoch_end(&op).await,
            None => EpochEndResult {
                error: ErrorCode::UnknownTopicOrPartition,
                leader_epoch: -1,
                end_offset: Offset(-1),
            },
        }
    }

    /// Waits until one of `partitions` (owned here) has data beyond the given offset for
    /// `reader`, or `wait_ms` passes.
    pub async fn wait_for_data(
        &self,
        partitions: &[(String, i32, Offset)],
        wait_ms: u64,
        reader: crate::partition::Reader,
    ) {
        let mut waits = Vec::new();
        for (topic, index, offset) in partitions {
            let Some(partition) = self.partition(topic, *index) else {
                return;
            };
            if partition.readable_end(reader) > *offset {
                return;
            }
            waits.push(partition);
        }
        if waits.is_empty() {
            return;
        }
        let notified = futures::future::select_all(
            waits
                .iter()
                .map(|p| Box::pin(p.more_for(reader).notified())),
        );
        futures_lite::future::or(
            async {
                notified.await;
            },
            async {
                glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
            },
        )
        .await;
    }

    /// In a cluster, a log fenced by an I/O failure (a full or failing disk) stops the broker,
    /// as Kafka halts a broker whose only log dir failed: its controlled shutdown moves the
    /// leaderships it holds to in-sync replicas on healthy disks, where a broker that stayed
    /// up would refuse that partition's writes until restarted. A single broker keeps serving
    /// reads and its other partitions instead (it has no replica to hand over to). The process
    /// exits non-zero, so a supervisor restarts it; recovery reads the files as they are.
    fn stop_if_a_log_failed(&self, shutdown: &crate::runtime::ShutdownFlag) {
        if self.config.cluster.is_none() || shutdown.is_triggered() {
            return;
        }
        let failed = self
            .partitions
            .borrow()
            .iter()
            .find_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .find(|(_, p)| p.log.is_fenced())
                    .map(|(index, _)| (topic.clone(), *index))
            });
        let Some((topic, index)) = failed else {
            return;
        };
        let reason = format!(
            "the log of {topic}-{index} failed (an i/o error: disk full or failing, see the error above); \
             stopping the broker so that its partitions' leadership moves to replicas on healthy \
             disks; free space or replace the disk, then start it again"
        );
        error!(core = self.id, "{reason}");
        shutdown.fail(reason);
    }

    /// Writes this core's high watermark checkpoint file with `entries`, unless unchanged.
    async fn checkpoint_high_watermarks(
        &self,
        entries: Vec<(crate::cluster::hw_checkpoint::PartitionId, Offset)>,
    ) {
        crate::cluster::replication::checkpoint_high_watermarks(
            &self.replication,
            &self.config.data_dir,
            self.id,
            entries,
        )
        .await;
    }

    /// Writes this core's high watermark checkpoint every
    /// [`HW_CHECKPOINT_INTERVAL`](crate::cluster::hw_checkpoint::HW_CHECKPOINT_INTERVAL) when
    /// its replicas' high watermarks changed, until shutdown (whose
    /// [`close_all`](Core::close_all) writes the last one). A task of its own: the write's
    /// fdatasync holds up nothing but the next write.
    pub async fn checkpoint_loop(self: Rc<Self>, shutdown: Arc<crate::runtime::ShutdownFlag>) {
        loop {
            futures_lite::future::or(
                glommio::timer::sleep(crate::cluster::hw_checkpoint::HW_CHECKPOINT_INTERVAL),
                shutdown.wait(),
            )
            .await;
            if shutdown.is_triggered() || self.closing.get() {
                return;
            }
            let high_watermarks = {
                let partitions = self.partitions.borrow();
                high_watermarks_of(partitions.values().flat_map(|m| m.values()))
            };
            self.checkpoint_high_watermarks(high_watermarks).await;
        }
    }

    /// Background work of this core: driving every partition's pending writes and seal,
    /// group-commit flushes and retention. Runs until shutdown.
    pub async fn maintain(self: Rc<Self>, shutdown: Arc<crate::runtime::ShutdownFlag>) {
        let mut since_retention = Duration::ZERO;
        let mut since_idle_check = Duration::ZERO;
        // Reused every tick (one allocation, not one per millisecond); emptied before each sleep
        // so a deleted partition is not kept alive by it.
        let mut owned: Vec<Rc<Partition>> = Vec::new();
        while !shutdown.is_triggered() {
            glommio::timer::sleep(FLUSH_TICK).await;
            since_retention += FLUSH_TICK;
            since_idle_check += FLUSH_TICK;
            owned.extend(
                self.partitions
                    .borrow()
                    .values()
                    .flat_map(|m| m.values().cloned()),
            );
            let now = Instant::now();
            for partition in &owned {
                // Writes are driven by whoever polls them: without this, a partition that went
                // idle under flush mode `never` would keep its queued buffers in memory and a
                // roll's seal parked until its next append. Never waits; a no-op when nothing
                // is pending.
                if let Err(e) = partition.log.drive_io().await {
                    error!(core = self.id, error = %e, "driving partition writes failed");
                }
                if partition.flush_due(now) {
                    partition.flushed_at.set(now);
                    if let Err(e) = partition.log.flush().await {
                        error!(core = self.id, error = %e, "group commit flush failed");
                    }
                }
                // Flushes also happen inside appends (flush-bytes-max) and for other
                // requests' acks=all waits: catch every high watermark move here.
                partition.notify_if_advanced();
            }
            self.stop_if_a_log_failed(&shutdown);
            if since_idle_check >= IDLE_BUFFERS_TICK {
                since_idle_check = Duration::ZERO;
                for partition in &owned {
                    partition.log.release_idle_buffers();
                }
            }
            if since_retention >= RETENTION_TICK || self.retention_due.take() {
                since_retention = Duration::ZERO;
                let now_ms = now_ms();
                for partition in &owned {
                    partition.log.remove_expired_producers(now_ms).await;
                    match partition.log.apply_retention(now_ms).await {
                        Ok(outcome) if outcome.segments_deleted > 0 => info!(
                            core = self.id,
                            segments = outcome.segments_deleted,
                            bytes = outcome.bytes_deleted,
                            log_start = %outcome.log_start_offset,
                            "retention deleted segments"
                        ),
                        Ok(_) => {}
                        Err(e) => warn!(core = self.id, error = %e, "retention failed"),
                    }
                }
            }
            owned.clear();
        }
    }

    /// The partitions of compacted topics this core owns, with their cleaning settings.
    pub fn compacted_partitions(
        &self,
    ) -> Vec<(String, i32, Rc<Partition>, spate_storage::CleanConfig)> {
        let topics = self.topics.borrow();
        let mut out = Vec::new();
        for (name, partitions) in self.partitions.borrow().iter() {
            let Some(clean) = topics.get(name).and_then(|m| m.config.clean_config()) else {
                continue;
            };
            for (&index, partition) in partitions {
                out.push((name.clone(), index, partition.clone(), clean.clone()));
            }
        }
        out
    }

    /// Flushes and closes every partition (clean shutdown: the next start needs no scan).
    pub async fn close_all(&self) {
        self.closing.set(true);
        let owned: Vec<(String, i32, Rc<Partition>)> = self
            .partitions
            .borrow_mut()
            .drain()
            .flat_map(|(topic, m)| m.into_iter().map(move |(i, p)| (topic.clone(), i, p)))
            .collect();
        // Replication first: a follower's append in progress finishes, and none starts after.
        for (_, _, partition) in &owned {
            if let Some(slot) = &partition.replica {
                slot.close().await;
            }
        }
        // The high watermarks as they end, so the next start serves what was committed at once;
        // read now (no await since the replicas closed), written once the logs are closed, so
        // the write adds no wait between the two (a removal racing the close would find more
        // time to delete a partition's directory under it).
        let high_watermarks = high_watermarks_of(owned.iter().map(|(_, _, p)| p));
        for (topic, index, partition) in owned {
            match Rc::try_unwrap(partition) {
                Ok(partition) => {
                    if let Err(e) = partition.log.close().await {
                        error!(core = self.id, topic = %topic, partition = index, error = %e, "closing partition");
                    }
                }
                Err(partition) => {
                    // Still referenced by a request that outlived the drain: flush at least.
                    if let Err(e) = partition.log.flush().await {
                        error!(core = self.id, topic = %topic, partition = index, error = %e, "flushing partition");
                    }
                }
            }
        }
        if !high_watermarks.is_empty() || self.config.cluster.is_some() {
            self.checkpoint_high_watermarks(high_watermarks).await;
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

macro_rules! routable {
    ($op:ty, $result:ty, $variant:ident, |$error:ident| $failed:expr) => {
        impl Routable for $op {
            type Result = $result;
            fn key(&self) -> (&str, i32) {
                (&self.topic, self.partition)
            }
            fn into_request(ops: Vec<Self>) -> CoreRequest {
                CoreRequest::$variant(ops)
            }
            fn from_reply(reply: CoreReply) -> Vec<Self::Result> {
                match reply {
                    CoreReply::$variant(results) => results,
                    other => panic!("expected a {} reply, got {other:?}", stringify!($variant)),
                }
            }
            fn failed(&self, $error: ErrorCode) -> Self::Result {
                $failed
            }
        }
    };
}

routable!(ProduceOp, ProduceResult, Produce, |error| ProduceResult {
    error,
    base_offset: Offset(-1),
    log_start_offset: Offset(-1),
    message: None,
    record_errors: Vec::new(),
    log_append_time_ms: -1,
});
routable!(FetchOp, FetchResult, Fetch, |error| FetchResult::failed(
    error
));
routable!(ListOffsetsOp, ListOffsetsResult, ListOffsets, |error| {
    ListOffsetsResult {
        error,
        offset: Offset(-1),
        timestamp_ms: -1,
        leader_epoch: LeaderEpoch(-1),
    }
});
routable!(
    DeleteRecordsOp,
    DeleteRecordsResult,
    DeleteRecords,
    |error| {
        DeleteRecordsResult {
            error,
            low_watermark: Offset(-1),
        }
    }
);
routable!(LogSizeOp, LogSizeResult, LogSize, |error| LogSizeResult {
    error,
    size_bytes: 0,
    log_end_offset: Offset(-1),
    high_watermark: Offset(-1),
});
routable!(ProducersOp, ProducersResult, Producers, |error| {
    ProducersResult {
        error,
        producers: Vec::new(),
    }
});
routable!(EpochEndOp, EpochEndResult, EpochEnd, |error| {
    EpochEndResult {
        error,
        leader_epoch: -1,
        end_offset: Offset(-1),
    }
});

/// Each replicated partition's high watermark, keyed as the checkpoint keys it (partitions
/// without a replica, on a single broker, have none to keep).
fn high_watermarks_of<'a>(
    partitions: impl Iterator<Item = &'a Rc<Partition>>,
) -> Vec<(crate::cluster::hw_checkpoint::PartitionId, Offset)> {
    partitions
        .filter_map(|p| {
            let slot = p.replica.as_ref()?;
            let key = slot.key();
            Some(((key.topic_id, key.partition), slot.high_watermark()))
        })
        .collect()
}
