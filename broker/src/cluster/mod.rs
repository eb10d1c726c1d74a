//! A broker as a member of a cluster (`--controller-voters`): the cluster listener and links to
//! the other brokers ([`transport`]), this broker's voter of the controller quorum ([`quorum`])
//! with its Raft log on disk ([`raft_file`]) or, on a broker that is not a voter, the observer
//! that fetches the committed metadata log from the voters ([`observer`]), and the translation
//! of the committed metadata image into what the cores serve ([`apply`]: topics, placements,
//! the cluster view). Voters and observers register, heartbeat and shut down alike
//! ([`Membership`] hides which one this broker is).
//!
//! All of it runs on the controller core (core 0); the other cores receive each committed image
//! over the core mesh and apply it to their own tables, so every core sees metadata changes in
//! log order. Without `--controller-voters` none of this starts, and a broker is a cluster of
//! one exactly as before (topic files, core 0 as the controller).
//!
//! Deliberately absent for now (see the issue "A cluster of brokers"): replication factor above
//! 1, moving partitions between brokers, changing the voter set.

pub mod admin;
pub mod apply;
pub mod hw_checkpoint;
pub mod observer;
pub mod quorum;
pub mod raft_file;
pub mod replication;
pub mod rpc;
pub mod transport;
pub mod txn_rpc;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use futures::FutureExt;
use spate_controller::controller::{ControllerError, Decommission, Reassign, RegisterBroker};

use crate::errors::KafkaCode;
use spate_controller::ids::{Incarnation, MetadataOffset, NodeId};
use spate_controller::image::MetadataImage;
use spate_controller::records::Endpoint;
use spate_storage::sync::AsyncMutex;
use spate_wire::cluster::{
    ControllerAnswer, ControllerRequest, ControllerResponse, ElectLeadersResult, IsrChange,
    IsrChangeResult, PartitionName,
};
use spate_wire::ErrorCode;
use tracing::{debug, info, warn};

use crate::config::{ClusterRole, ClusterSettings};
use crate::core::Core;
use crate::ops::{CoreRequest, Phase, ValidateOnly};
use crate::runtime::ShutdownFlag;
use observer::Observer;
use quorum::{Published, Quorum};
use transport::{Identity, Transport};

/// The id of a cluster started with `--controller-voters`; peers with another id are refused.
/// One fixed value until cluster ids are generated at formatting time (Kafka's
/// `kafka-storage format`).
pub const CLUSTER_ID: &str = "spate-cluster";

/// A client's replica assignment (broker ids, per partition) as the controller takes it.
pub fn assignment_nodes(assignment: Vec<Vec<i32>>) -> Vec<Vec<NodeId>> {
    assignment
        .into_iter()
        .map(|replicas| replicas.into_iter().map(NodeId).collect())
        .collect()
}

/// One topic's answer from the controller, as the error code and message clients get.
pub fn topic_outcome(result: Result<(), ControllerError>) -> (ErrorCode, Option<String>) {
    match result {
        Ok(()) => (ErrorCode::None, None),
        Err(e) => (e.kafka_code(), Some(e.to_string())),
    }
}

/// How this broker follows the metadata log: as a voter of the quorum, or as an observer that
/// fetches it. The calls a broker makes of either are here, so registration, heartbeats,
/// controlled shutdown and forwarding are the same code for both.
#[derive(Debug, Clone)]
pub enum Membership {
    /// A voter (`--node-id` is in `--controller-voters`).
    Voter(Rc<Quorum>),
    /// An observer (it is not).
    Observer(Rc<Observer>),
}

impl Membership {
    /// The quorum's leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        match self {
            Membership::Voter(quorum) => quorum.leader(),
            Membership::Observer(observer) => observer.leader(),
        }
    }

    /// Whether this broker leads the quorum (never, for an observer).
    pub fn is_leader(&self) -> bool {
        match self {
            Membership::Voter(quorum) => quorum.is_leader(),
            Membership::Observer(_) => false,
        }
    }

    /// This broker's voter, if it is one.
    pub fn quorum(&self) -> Option<&Rc<Quorum>> {
        match self {
            Membership::Voter(quorum) => Some(quorum),
            Membership::Observer(_) => None,
        }
    }

    /// Whether this broker's image has `node` registered in run `incarnation`.
    pub fn is_registered(&self, node: NodeId, incarnation: u64) -> bool {
        match self {
            Membership::Voter(quorum) => quorum.is_registered(node, incarnation),
            Membership::Observer(observer) => observer.is_registered(node, incarnation),
        }
    }

    /// How far this broker has applied the metadata log.
    pub fn applied_offset(&self) -> MetadataOffset {
        match self {
            Membership::Voter(quorum) => quorum.applied_offset(),
            Membership::Observer(observer) => observer.applied_offset(),
        }
    }

    /// Sends `request` to the quorum's leader, another broker.
    ///
    /// # Errors
    /// As [`Quorum::call_leader`] and [`Observer::call_leader`].
    pub async fn call_leader(
        &self,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, rpc::RpcError> {
        match self {
            Membership::Voter(quorum) => quorum.call_leader(request).await,
            Membership::Observer(observer) => observer.call_leader(request).await,
        }
    }

    /// Proposes a request's records on the leader ([`Quorum::submit`]).
    ///
    /// # Errors
    /// As [`Quorum::submit`]; NOT_CONTROLLER on an observer.
    pub async fn submit(
        &self,
        build: Box<quorum::Build<'_>>,
    ) -> Result<MetadataOffset, ControllerError> {
        match self {
            Membership::Voter(quorum) => quorum.submit(build).await,
            Membership::Observer(observer) => Err(ControllerError::NotController {
                leader_hint: observer.leader(),
            }),
        }
    }

    /// Waits until this broker's published image satisfies `done`, or `timeout` passes.
    pub async fn wait_published(
        &self,
        done: impl Fn(&MetadataImage) -> bool,
        timeout: std::time::Duration,
    ) {
        match self {
            Membership::Voter(quorum) => quorum.wait_published(done, timeout).await,
            Membership::Observer(observer) => observer.wait_published(done, timeout).await,
        }
    }
}

/// The cluster side of this broker, on the controller core.
#[derive(Debug)]
pub struct ClusterNode {
    /// This broker's voter, or its observer.
    pub membership: Membership,
    /// This broker.
    pub node_id: NodeId,
    /// This run of the broker: larger than any earlier one of this node id.
    pub incarnation: Incarnation,
    /// The producer ids of the block the controller gave this broker: `[next, end)`.
    producer_ids: Cell<(i64, i64)>,
    /// Held while a new block is fetched, so two InitProducerIds never fetch two.
    producer_id_refill: AsyncMutex<()>,
    /// Stops the transport and the quorum: set by [`ClusterNode::leave`], after the broker's
    /// shutdown, so that the controller hears of the shutdown first.
    stop: Arc<ShutdownFlag>,
    /// What this broker registers as.
    registration: RegisterBroker,
    /// How often it heartbeats, and the session that keeps alive.
    beat_timing: BeatTiming,
    /// The links to the other brokers (replication frames go out through them).
    pub transport: Rc<Transport>,
    /// Answers to this broker's replication frames.
    pub replica_rpc: Rc<replication::ReplicaRpc>,
    /// Answers to this broker's transaction frames (markers, verifications).
    pub txn_rpc: Rc<txn_rpc::TxnRpc>,
}

/// How long a stopping broker waits for the controller to take note of it.
pub const CONTROLLED_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl ClusterNode {
    /// Controlled shutdown: tells the controller this broker is stopping (it is fenced, and its
    /// partitions lose their leader at once rather than after a session timeout), then stops
    /// the transport and the quorum. Bounded by [`CONTROLLED_SHUTDOWN_TIMEOUT`]: a broker
    /// whose controller cannot be reached still stops.
    pub async fn leave(&self) {
        let node = self.node_id;
        let incarnation = self.incarnation;
        let told = futures_lite::future::or(
            async {
                // A broker stopped right after it started may not know the leader yet, or not
                // be registered in this run: wait for both (within the bound) so that the
                // controller can fence exactly this run.
                while self.membership.leader().is_none() {
                    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
                }
                // The membership loop stopped with the shutdown: register this run here if
                // it had not been yet, so the controller fences this run, not a stale one.
                while !self.membership.is_registered(node, incarnation.0) {
                    if let Err(e) =
                        beat(&self.membership, &self.registration, self.beat_timing).await
                    {
                        debug!(error = %e, "registration before controlled shutdown");
                    }
                    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
                }
                if self.membership.is_leader() {
                    self.membership
                        .submit(Box::new(move |controller, image, _rng, _now| {
                            controller.controlled_shutdown(image, node, incarnation)
                        }))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                } else {
                    let request = ControllerRequest::Heartbeat {
                        node_id: node.0,
                        incarnation: incarnation.0,
                        want_shutdown: true,
                        metadata_offset: self.membership.applied_offset().0,
                    };
                    match self.membership.call_leader(&request).await {
                        Ok(response) if response.error_code == ErrorCode::None => Ok(()),
                        Ok(response) => Err(format!("{:?}", response.error_code)),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
            async {
                glommio::timer::sleep(CONTROLLED_SHUTDOWN_TIMEOUT).await;
                Err(format!("no answer within {CONTROLLED_SHUTDOWN_TIMEOUT:?}"))
            },
        )
        .await;
        match told {
            Ok(()) => info!(
                node = node.0,
                "controlled shutdown: the controller fenced this broker"
            ),
            Err(e) => {
                warn!(node = node.0, error = %e, "controlled shutdown not confirmed; stopping anyway")
            }
        }
        self.stop.trigger();
    }

    /// The metadata quorum as its leader sees it (DescribeQuorum): answered here when this
    /// broker leads, else asked of the leader, as Kafka's brokers forward it.
    ///
    /// # Errors
    /// NOT_LEADER_OR_FOLLOWER when no leader answered (the client retries).
    pub async fn describe_quorum(&self) -> Result<ControllerAnswer, ErrorCode> {
        if let Some(answer) = self.membership.quorum().and_then(|q| q.describe()) {
            return Ok(answer);
        }
        let response = self
            .membership
            .call_leader(&ControllerRequest::DescribeQuorum)
            .await
            .map_err(|e| {
                debug!(error = %e, "DescribeQuorum not answered by the quorum's leader");
                ErrorCode::NotLeaderOrFollower
            })?;
        match response.answer {
            answer @ ControllerAnswer::DescribeQuorum { .. }
                if response.error_code == ErrorCode::None =>
            {
                Ok(answer)
            }
            // The leader moved between the hint and the call: the client retries.
            _ => Err(ErrorCode::NotLeaderOrFollower),
        }
    }

    /// This broker, as a partition leader, asks the controller for new ISRs (AlterPartition,
    /// KIP-497): decided here when this broker leads the quorum, else by the leader. One result
    /// per change, in order, each given once the change committed; per-partition refusals are
    /// in the results (`INVALID_UPDATE_VERSION`, `FENCED_LEADER_EPOCH`, `INELIGIBLE_REPLICA`...).
    ///
    /// # Errors
    /// A failure of the whole request: `NOT_CONTROLLER` when no leader answered or leadership
    /// moved (retry after a backoff), `STALE_BROKER_EPOCH` when this run is not registered yet,
    /// `INVALID_REQUEST` for a request over the wire limits, `UNKNOWN_SERVER_ERROR` for an
    /// answer that does not match the request.
    pub async fn alter_partition(
        &self,
        changes: Vec<IsrChange>,
    ) -> Result<Vec<IsrChangeResult>, ErrorCode> {
        let request = ControllerRequest::AlterPartition {
            node_id: self.node_id.0,
            incarnation: self.incarnation.0,
            partitions: changes,
        };
        within_limits(&request)?;
        let ControllerRequest::AlterPartition {
            partitions: changes,
            ..
        } = &request
        else {
            unreachable!("built above")
        };
        if let Some(quorum) = self.membership.quorum().filter(|q| q.is_leader()) {
            return rpc::alter_partitions(quorum, self.node_id, self.incarnation, changes)
                .await
                .map_err(|e| e.kafka_code());
        }
        let response = self.forward(&request).await?;
        match response.answer {
            ControllerAnswer::AlterPartition { results } if results.len() == changes.len() => {
                Ok(results)
            }
            _ => Err(ErrorCode::UnknownServerError),
        }
    }

    /// Moves the leadership of each partition to its preferred replica (a client's
    /// ElectLeaders, type PREFERRED): here when this broker leads the quorum, else at the
    /// leader. One result per partition, in order: NONE (elected, once committed),
    /// `ELECTION_NOT_NEEDED`, `PREFERRED_LEADER_NOT_AVAILABLE`, `UNKNOWN_TOPIC_OR_PARTITION`.
    ///
    /// # Errors
    /// As [`ClusterNode::alter_partition`], for the whole request.
    pub async fn elect_preferred_leaders(
        &self,
        partitions: Vec<PartitionName>,
    ) -> Result<Vec<ElectLeadersResult>, ErrorCode> {
        let request = ControllerRequest::ElectLeaders { partitions };
        within_limits(&request)?;
        let ControllerRequest::ElectLeaders { partitions } = &request else {
            unreachable!("built above")
        };
        if let Some(quorum) = self.membership.quorum().filter(|q| q.is_leader()) {
            return rpc::elect_preferred_leaders(quorum, partitions)
                .await
                .map_err(|e| e.kafka_code());
        }
        let response = self.forward(&request).await?;
        match response.answer {
            ControllerAnswer::ElectLeaders { results } if results.len() == partitions.len() => {
                Ok(results)
            }
            _ => Err(ErrorCode::UnknownServerError),
        }
    }

    /// Starts, replaces or cancels partition reassignments (a client's
    /// AlterPartitionReassignments): one result per partition, in order, given once the batch
    /// committed and every core of this broker shows it. Decided only here on the quorum's
    /// leader: another broker answers NOT_CONTROLLER, and clients retry at the controller their
    /// Metadata names (as they did with Kafka's ZooKeeper-era brokers), so this needs no
    /// controller RPC of its own.
    ///
    /// # Errors
    /// `NOT_CONTROLLER` (this broker does not lead the quorum, or stopped before the batch
    /// committed), `INVALID_REQUEST` for more partitions than one batch holds.
    pub async fn alter_partition_reassignments(
        &self,
        requests: Vec<Reassign>,
    ) -> Result<Vec<(ErrorCode, Option<String>)>, ErrorCode> {
        let Some(quorum) = self.membership.quorum().filter(|q| q.is_leader()) else {
            return Err(ErrorCode::NotController);
        };
        let mut decided = Vec::new();
        quorum
            .submit(Box::new(|controller, image, _rng, _now| {
                let out = controller.alter_partition_reassignments(image, &requests)?;
                decided = out.results;
                Ok(out.records)
            }))
            .await
            .map_err(|e| e.kafka_code())?;
        assert_eq!(decided.len(), requests.len(), "one result per partition");
        Ok(decided
            .into_iter()
            .map(|result| match result {
                Ok(()) => (ErrorCode::None, None),
                Err(e) => (e.kafka_code(), Some(e.to_string())),
            })
            .collect())
    }

    /// Starts or cancels the decommission of `node` (the broker config `spate.decommission`,
    /// see `handlers/alter_configs.rs`), answered once the record committed and every core of
    /// this broker shows it. Decided only here on the quorum's leader, as reassignments are:
    /// another broker answers NOT_CONTROLLER and the client retries at the controller.
    /// `ValidateOnly::Yes` decides without proposing. The error code and message, NONE when
    /// accepted: BROKER_ID_NOT_REGISTERED, INVALID_REPLICATION_FACTOR (the brokers left could
    /// not hold some partition's replicas), NOT_CONTROLLER.
    pub async fn decommission_broker(
        &self,
        node: NodeId,
        request: Decommission,
        validate_only: ValidateOnly,
    ) -> (ErrorCode, Option<String>) {
        let Some(quorum) = self.membership.quorum().filter(|q| q.is_leader()) else {
            return (ErrorCode::NotController, None);
        };
        let submitted = quorum
            .submit(Box::new(move |controller, image, _rng, _now| {
                let records = controller.decommission_broker(image, node, request)?;
                Ok(match validate_only {
                    ValidateOnly::Yes => Vec::new(),
                    ValidateOnly::No => records,
                })
            }))
            .await;
        match submitted {
            Ok(_) => {
                info!(node = node.0, ?request, "decommission");
                (ErrorCode::None, None)
            }
            Err(e) => (e.kafka_code(), Some(e.to_string())),
        }
    }

    /// Removes `node`'s registration (a client's UnregisterBroker), once it hosts no replica,
    /// answered once the record committed and every core of this broker shows it. Decided only
    /// here on the quorum's leader: another broker answers NOT_CONTROLLER. The error code and
    /// message: NONE, BROKER_ID_NOT_REGISTERED, INVALID_REQUEST (still a replica), NOT_CONTROLLER.
    pub async fn unregister_broker(&self, node: NodeId) -> (ErrorCode, Option<String>) {
        let Some(quorum) = self.membership.quorum().filter(|q| q.is_leader()) else {
            return (ErrorCode::NotController, None);
        };
        let submitted = quorum
            .submit(Box::new(move |controller, image, _rng, _now| {
                controller.unregister_broker(image, node)
            }))
            .await;
        match submitted {
            Ok(_) => {
                info!(node = node.0, "broker unregistered");
                (ErrorCode::None, None)
            }
            Err(e) => (e.kafka_code(), Some(e.to_string())),
        }
    }

    /// Sends `request` to the quorum's leader; its answer when it succeeded as a whole.
    async fn forward(&self, request: &ControllerRequest) -> Result<ControllerResponse, ErrorCode> {
        let response = self.membership.call_leader(request).await.map_err(|e| {
            debug!(error = %e, api = ?request.api(), "not answered by the quorum's leader");
            ErrorCode::NotController
        })?;
        match response.error_code {
            ErrorCode::None => Ok(response),
            code => Err(code),
        }
    }

    /// A producer id unique in the cluster, from this broker's block (a new block from the
    /// controller when it is used up).
    ///
    /// # Errors
    /// Why no block could be had (no controller, or it refused).
    pub async fn allocate_producer_id(&self) -> Result<i64, String> {
        loop {
            let (next, end) = self.producer_ids.get();
            if next < end {
                self.producer_ids.set((next + 1, end));
                return Ok(next);
            }
            let _refill = self.producer_id_refill.lock().await;
            if self.producer_ids.get().0 < self.producer_ids.get().1 {
                continue; // another caller refilled it meanwhile
            }
            let leading = self.membership.quorum().filter(|q| q.is_leader());
            let (first, count) = if let Some(quorum) = leading {
                rpc::allocate_producer_ids(quorum, self.node_id, self.incarnation)
                    .await
                    .map_err(|e| e.to_string())?
            } else {
                let request = ControllerRequest::AllocateProducerIds {
                    node_id: self.node_id.0,
                    incarnation: self.incarnation.0,
                };
                let response = self
                    .membership
                    .call_leader(&request)
                    .await
                    .map_err(|e| e.to_string())?;
                match response.answer {
                    ControllerAnswer::AllocateProducerIds { first_id, count }
                        if response.error_code == ErrorCode::None && count > 0 =>
                    {
                        (first_id, count)
                    }
                    _ => {
                        return Err(format!(
                            "the controller refused a producer id block: {:?} {}",
                            response.error_code,
                            response.message.unwrap_or_default()
                        ))
                    }
                }
            };
            info!(
                first_id = first,
                count, "producer id block from the controller"
            );
            self.producer_ids.set((first, first + i64::from(count)));
        }
    }
}

/// Refuses a request over the wire limits whether it would be decided here or sent: the limits
/// also bound the controller's batch (a request over them is this broker's bug or its client's).
fn within_limits(request: &ControllerRequest) -> Result<(), ErrorCode> {
    request.validate().map_err(|e| {
        debug!(error = %e, api = ?request.api(), "controller request over a limit");
        ErrorCode::InvalidRequest
    })
}

/// Starts the transport and the quorum on the controller core; every committed image is then
/// broadcast to all cores.
///
/// # Errors
/// If the cluster listener cannot be bound or the metadata log cannot be replayed.
pub async fn start(
    core: Rc<Core>,
    settings: &ClusterSettings,
    shutdown: Arc<ShutdownFlag>,
) -> anyhow::Result<ClusterNode> {
    let me = core.config.node_id;
    // Wall-clock milliseconds: a restarted broker's incarnation is larger than its last one's
    // (unless the clock went back by more than the restart took).
    let incarnation = replication::incarnation();
    // A voter dials the other voters; an observer dials every voter. Every other registered
    // broker (observers) is dialled once the metadata image names it (`publish` below).
    let peers = settings
        .voters
        .iter()
        .filter(|v| v.node_id != me)
        .map(|v| (v.node_id, format!("{}:{}", v.host, v.port)))
        .collect();
    // The transport and the quorum outlive the broker's own shutdown until `leave` has told
    // the controller.
    let stop = Arc::new(ShutdownFlag::default());
    let transport = Transport::start(
        Identity {
            cluster_id: CLUSTER_ID.to_owned(),
            node_id: me,
            incarnation,
        },
        settings.listen,
        peers,
        stop.clone(),
    )?;
    let voters: Vec<NodeId> = settings.voters.iter().map(|v| NodeId(v.node_id)).collect();
    let publisher = core.clone();
    let dialler = transport.clone();
    let publish: quorum::Publish = Box::new(move |published: Arc<Published>| {
        let core = publisher.clone();
        // Every registered broker becomes a peer (observers are not in the voters' flags):
        // followers fetch from whichever broker leads their partition.
        for (node, broker) in published.image.brokers() {
            dialler.ensure_peer(
                node.0,
                format!("{}:{}", broker.cluster.host, broker.cluster.port),
            );
        }
        let gone: Arc<[i32]> = dialler
            .unreachable_peers()
            .into_iter()
            .map(|(node, _)| node)
            .collect();
        async move {
            for phase in [Phase::Open, Phase::Publish] {
                core.broadcast(|| {
                    CoreRequest::ClusterMetadata(published.clone(), phase, gone.clone())
                })
                .await;
            }
        }
        .boxed_local()
    });
    let membership = match settings.role {
        ClusterRole::Voter => Membership::Voter(
            Quorum::start(
                &core.config.data_dir,
                quorum::VoterIdentity {
                    me: NodeId(me),
                    voters,
                    seed: incarnation,
                },
                transport.clone(),
                publish,
                controller_config(&core.config, settings)?,
                core.config.topic_defaults.clone(),
                stop.clone(),
            )
            .await?,
        ),
        ClusterRole::Observer => {
            info!(
                node = me,
                voters = ?voters,
                "not a controller voter: following the metadata log as an observer"
            );
            Membership::Observer(
                Observer::start(
                    &core.config.data_dir,
                    NodeId(me),
                    voters,
                    transport.clone(),
                    publish,
                    stop.clone(),
                )
                .await?,
            )
        }
    };
    let registration = RegisterBroker {
        node: NodeId(me),
        incarnation: Incarnation(incarnation),
        client: Endpoint {
            host: core.config.advertised_host.clone(),
            port: core.config.advertised_port,
        },
        cluster: Endpoint {
            host: settings.advertised_host.clone(),
            port: settings.listen.port(),
        },
        rack: None,
    };
    let beat_timing = BeatTiming {
        interval: std::time::Duration::from_millis(settings.heartbeat_interval_ms),
        session: std::time::Duration::from_millis(settings.session_timeout_ms),
    };
    glommio::spawn_local(membership_loop(
        membership.clone(),
        registration.clone(),
        beat_timing,
        shutdown,
    ))
    .detach();
    let replica_rpc = Rc::new(replication::ReplicaRpc::default());
    let txn_rpc = Rc::new(txn_rpc::TxnRpc::default());
    glommio::spawn_local(replication::serve_inbox(
        core.clone(),
        transport.clone(),
        replica_rpc.clone(),
        txn_rpc.clone(),
        stop.clone(),
    ))
    .detach();
    Ok(ClusterNode {
        transport,
        replica_rpc,
        txn_rpc,
        membership,
        node_id: NodeId(me),
        incarnation: Incarnation(incarnation),
        producer_ids: Cell::new((0, 0)),
        producer_id_refill: AsyncMutex::new(()),
        stop,
        registration,
        beat_timing,
    })
}

/// The controller's settings from the broker's flags.
fn controller_config(
    config: &crate::config::Config,
    settings: &ClusterSettings,
) -> anyhow::Result<spate_controller::controller::ControllerConfig> {
    let controller = spate_controller::controller::ControllerConfig {
        session_timeout_ms: settings.session_timeout_ms,
        replication_factor_max: spate_replication::messages::REPLICAS_MAX as i16,
        default_replication_factor: config.topic_defaults.replication_factor,
    };
    controller
        .validate()
        .map_err(|e| anyhow::anyhow!("controller settings: {e}"))?;
    Ok(controller)
}

/// Registers this broker (once per run) and heartbeats it, so the controller places partitions
/// on it and keeps it unfenced.
async fn membership_loop(
    membership: Membership,
    registration: RegisterBroker,
    timing: BeatTiming,
    shutdown: Arc<ShutdownFlag>,
) {
    while !shutdown.is_triggered() {
        if let Err(e) = beat(&membership, &registration, timing).await {
            debug!(error = %e, "registration or heartbeat not answered");
        }
        glommio::timer::sleep(timing.interval).await;
    }
}

/// How often a broker heartbeats, and the session its heartbeats keep alive.
#[derive(Debug, Clone, Copy)]
struct BeatTiming {
    interval: std::time::Duration,
    session: std::time::Duration,
}

/// How often a heartbeat on its way checks whether the quorum's leader it was sent to still
/// leads.
const BEAT_LEADER_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Resolves once the quorum's leader, as this broker sees it, is no longer `called`, or once
/// `limit` has passed.
async fn leader_moved(membership: &Membership, called: Option<NodeId>, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while membership.leader() == called && std::time::Instant::now() < deadline {
        glommio::timer::sleep(BEAT_LEADER_POLL).await;
    }
}

/// One registration (if this run is not registered yet) or heartbeat: proposed here on the
/// quorum's leader, sent to the leader from anywhere else.
///
/// A heartbeat sent to the leader is given up as soon as another node leads, and after one
/// session timeout at most: a call waiting for an answer from a stopped controller (SIGSTOP,
/// a hung host) would otherwise hold every later heartbeat for the RPC timeout, longer than the
/// session, and the new controller would fence this live broker (every broker, itself
/// included, when the stopped one led the quorum).
async fn beat(
    membership: &Membership,
    registration: &RegisterBroker,
    timing: BeatTiming,
) -> Result<(), String> {
    let node = registration.node;
    let incarnation = registration.incarnation;
    let registered = membership.is_registered(node, incarnation.0);
    if membership.is_leader() {
        let result = if registered {
            membership
                .submit(Box::new(move |controller, image, _rng, now| {
                    controller.heartbeat(image, now, node, incarnation)
                }))
                .await
        } else {
            let registration = registration.clone();
            membership
                .submit(Box::new(move |controller, image, _rng, now| {
                    controller.register_broker(image, now, registration)
                }))
                .await
        };
        result.map_err(|e| e.to_string())?;
    } else {
        if membership.leader().is_none() {
            return Err("no controller known yet".to_owned());
        }
        let request = if registered {
            ControllerRequest::Heartbeat {
                node_id: node.0,
                incarnation: incarnation.0,
                want_shutdown: false,
                metadata_offset: membership.applied_offset().0,
            }
        } else {
            ControllerRequest::RegisterBroker {
                node_id: node.0,
                incarnation: incarnation.0,
                client_host: registration.client.host.clone(),
                client_port: registration.client.port,
                cluster_host: registration.cluster.host.clone(),
                cluster_port: registration.cluster.port,
                rack: registration.rack.clone(),
            }
        };
        let called = membership.leader();
        let answer = futures_lite::future::or(
            async { Some(membership.call_leader(&request).await) },
            async {
                leader_moved(membership, called, timing.session).await;
                None
            },
        )
        .await;
        let Some(answer) = answer else {
            return Err(format!(
                "abandoned: the quorum's leader moved from {:?} or did not answer within the session",
                called.map(|n| n.0)
            ));
        };
        let response = answer.map_err(|e| e.to_string())?;
        if response.error_code != ErrorCode::None {
            return Err(format!(
                "{:?} {}",
                response.error_code,
                response.message.unwrap_or_default()
            ));
        }
    }
    if !registered {
        info!(
            node = node.0,
            incarnation = incarnation.0,
            "broker registered with the controller"
        );
    }
    Ok(())
}
