//! Requests from brokers to the quorum's leader over the cluster listener (registration,
//! heartbeats, producer id blocks, and topic changes forwarded from any broker, as Kafka's
//! KIP-590 forwarding): the leader's side ([`serve`]) and the sender's ([`Rpc::call`]).
//!
//! A request may reach any voter; one that does not lead answers NOT_CONTROLLER with the leader
//! it knows of, and the sender asks again there on its next attempt. Responses are matched to
//! requests by correlation id; a request not answered within [`RPC_TIMEOUT`] fails, and its late
//! answer is dropped.
//!
//! Partition leaders' ISR changes (AlterPartition) and preferred-leader elections are decided by
//! pure functions ([`decide_isr_changes`], [`election_results`]) that the leader's submit calls,
//! so that their rules are tested without a quorum.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use spate_controller::controller::{
    AlterPartition, AlterPartitionError, Controller, ControllerError, CreateTopic, ElectionResult,
    IsrMember as ControllerIsrMember, RegisterBroker, ELECTION_PARTITIONS_MAX,
    FENCE_PARTITION_CHANGES_PER_BATCH_MAX,
};
use spate_controller::ids::{
    Incarnation, LeaderEpoch, NodeId, PartitionEpoch, PartitionIndex, TopicId,
};
use spate_controller::image::MetadataImage;
use spate_controller::records::{Endpoint, MetadataRecord, REPLICAS_MAX};
use spate_wire::cluster::{
    Body, ControllerAnswer, ControllerApi, ControllerRequest, ControllerResponse,
    CreateTopicResult, ElectLeadersResult, IsrChange, IsrChangeResult, PartitionName, TopicResult,
    ALTER_PARTITION_PARTITIONS_MAX, ELECT_LEADERS_PARTITIONS_MAX, REPLICAS_PER_PARTITION_MAX,
};
use spate_wire::ErrorCode;

use super::quorum::Quorum;
use super::transport::Transport;
use super::{assignment_nodes, topic_outcome};
use crate::errors::KafkaCode;

/// How long a sender waits for the leader's answer.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests awaiting an answer, at most.
pub const RPCS_IN_FLIGHT_MAX: usize = 1024;

// One AlterPartition request is one controller batch. A change is one ChangePartition with a new
// ISR and nothing else, the shape the controller sized its fence batches by: as many as one fence
// batch carries fit one batch.
const _: () = assert!(ALTER_PARTITION_PARTITIONS_MAX <= FENCE_PARTITION_CHANGES_PER_BATCH_MAX);
// ...unless the change completes a reassignment: then it also carries the replicas and the
// emptied adding and removing lists. This broker caps a partition's replicas (during a move too)
// at the replication crate's limit, so even a request of such changes fits one batch.
const _: () = {
    let replicas = spate_replication::messages::REPLICAS_MAX;
    let completing = 1 + 16 + 4 + 5 + 2 * (1 + 2 + 4 * replicas) + 8 + 2 * (1 + 2);
    assert!(
        5 + ALTER_PARTITION_PARTITIONS_MAX * completing
            <= spate_controller::records::BATCH_BYTES_MAX
    );
};
// The controller refuses a larger election as a whole; the wire never carries one.
const _: () = assert!(ELECT_LEADERS_PARTITIONS_MAX <= ELECTION_PARTITIONS_MAX);
// An ISR the wire accepts is one the controller can hold.
const _: () = assert!(REPLICAS_PER_PARTITION_MAX <= REPLICAS_MAX);

/// Why one partition of an AlterPartition request was refused (the code each maps to is in
/// `errors.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsrChangeRefused {
    /// The topic id is not in the image. The controller's `UnknownPartition` covers this and an
    /// index the topic lacks; Kafka answers UNKNOWN_TOPIC_ID for this one only.
    #[error("unknown topic id")]
    UnknownTopicId,
    /// The partition was named earlier in the same request: the controller decides a request's
    /// changes on one image, and two changes of one partition would claim the same epoch.
    #[error("partition named twice in one request")]
    NamedTwice,
    /// The controller's refusal.
    #[error(transparent)]
    Controller(#[from] AlterPartitionError),
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No leader is known, or this node would be asking itself.
    #[error("no controller to ask")]
    NoController,
    /// The request could not be queued.
    #[error("request not sent: {0}")]
    NotSent(String),
    /// No answer in time, or the connection the request went out on closed first (no answer
    /// can come then).
    #[error("no answer (timed out, or the connection closed)")]
    TimedOut,
}

/// Requests sent to peers over the transport and the answers awaited, paired by correlation
/// id: the controller RPCs here and the followers' replication frames share it. A request is
/// answered, or fails once the connection it went out on closes (no answer can come), or at its
/// timeout; a late answer is dropped.
#[derive(Debug)]
pub struct Calls<T> {
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, oneshot::Sender<T>>>,
    in_flight_max: usize,
}

impl<T> Calls<T> {
    /// No call in flight; at most `in_flight_max` at once.
    pub fn new(in_flight_max: usize) -> Calls<T> {
        assert!(in_flight_max > 0);
        Calls {
            next_id: Cell::new(0),
            pending: RefCell::new(HashMap::new()),
            in_flight_max,
        }
    }

    /// Sends `body` to `to` and waits up to `timeout` for its answer.
    ///
    /// # Errors
    /// [`RpcError::NotSent`] (too many in flight, or the queue refused it),
    /// [`RpcError::TimedOut`] (no answer in time, or the connection closed first).
    pub async fn call(
        &self,
        transport: &Transport,
        to: i32,
        body: &Body,
        timeout: Duration,
    ) -> Result<T, RpcError> {
        if self.pending.borrow().len() >= self.in_flight_max {
            return Err(RpcError::NotSent("too many requests in flight".to_owned()));
        }
        // Correlation id 0 is the handshake's.
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let (done, answer) = oneshot::channel();
        self.pending.borrow_mut().insert(id, done);
        // A caller may give up on a call (a heartbeat whose controller lost its leadership):
        // its entry goes with it, or calls to a peer that never answers would fill the map.
        let _forget = Forget {
            pending: &self.pending,
            id,
        };
        // The queue the request goes on: once it closes (the connection broke, or a redial
        // failed) no answer can come, and waiting out the timeout would hold up the caller,
        // a heartbeat above all, long enough for the new controller to fence this broker.
        let outbox = transport.link(to).map(|link| link.outbox());
        if let Err(e) = transport.send(to, id, body) {
            return Err(RpcError::NotSent(e.to_string()));
        }
        let lost = async {
            match &outbox {
                Some(outbox) => outbox.closed().await,
                None => std::future::pending().await,
            }
            None
        };
        let answered = futures_lite::future::or(
            futures_lite::future::or(async { answer.await.ok() }, lost),
            async {
                glommio::timer::sleep(timeout).await;
                None
            },
        )
        .await;
        answered.ok_or(RpcError::TimedOut)
    }

    /// Hands an answer to the request waiting for it (a late one is dropped).
    pub fn deliver(&self, correlation_id: u64, answer: T) {
        if let Some(waiter) = self.pending.borrow_mut().remove(&correlation_id) {
            let _ = waiter.send(answer);
        }
    }
}

/// Removes a call's entry when the call ends: answered, failed, timed out, or dropped by its
/// caller.
struct Forget<'a, T> {
    pending: &'a RefCell<HashMap<u64, oneshot::Sender<T>>>,
    id: u64,
}

impl<T> Drop for Forget<'_, T> {
    fn drop(&mut self) {
        self.pending.borrow_mut().remove(&self.id);
    }
}

/// The sender's side of controller requests.
#[derive(Debug)]
pub struct Rpc {
    calls: Calls<ControllerResponse>,
}

impl Default for Rpc {
    fn default() -> Rpc {
        Rpc {
            calls: Calls::new(RPCS_IN_FLIGHT_MAX),
        }
    }
}

impl Rpc {
    /// Sends `request` to `to` and waits for its answer.
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn call(
        &self,
        transport: &Transport,
        to: i32,
        request: &ControllerRequest,
    ) -> Result<ControllerResponse, RpcError> {
        request
            .validate()
            .map_err(|e| RpcError::NotSent(e.to_string()))?;
        let body = Body::ControllerRequest(request.clone());
        self.calls.call(transport, to, &body, RPC_TIMEOUT).await
    }

    /// Hands an answer to the request waiting for it (a late one is dropped).
    pub fn deliver(&self, correlation_id: u64, response: ControllerResponse) {
        self.calls.deliver(correlation_id, response);
    }
}

fn refused(api: ControllerApi, error: &ControllerError) -> ControllerResponse {
    match error {
        ControllerError::NotController { leader_hint } => {
            ControllerResponse::not_controller(api, leader_hint.map(|n| n.0).filter(|id| *id >= 0))
        }
        other => ControllerResponse::failed(api, other.kafka_code(), &other.to_string()),
    }
}

/// The leader's answer to one request (a voter that does not lead answers NOT_CONTROLLER).
pub async fn serve(quorum: Rc<Quorum>, request: ControllerRequest) -> ControllerResponse {
    let api = request.api();
    if !quorum.is_leader() {
        return ControllerResponse::not_controller(api, quorum.leader().map(|n| n.0));
    }
    match request {
        ControllerRequest::RegisterBroker {
            node_id,
            incarnation,
            client_host,
            client_port,
            cluster_host,
            cluster_port,
            rack,
        } => {
            let registration = RegisterBroker {
                node: NodeId(node_id),
                incarnation: Incarnation(incarnation),
                client: Endpoint {
                    host: client_host,
                    port: client_port,
                },
                cluster: Endpoint {
                    host: cluster_host,
                    port: cluster_port,
                },
                rack,
            };
            match quorum
                .submit(Box::new(move |controller, image, _rng, now| {
                    controller.register_broker(image, now, registration)
                }))
                .await
            {
                Ok(_) => ControllerResponse::ok(ControllerAnswer::RegisterBroker),
                Err(e) => refused(api, &e),
            }
        }
        ControllerRequest::Heartbeat {
            node_id,
            incarnation,
            want_shutdown,
            metadata_offset,
        } => {
            let node = NodeId(node_id);
            quorum.note_seen(node, false, Some(metadata_offset));
            let incarnation = Incarnation(incarnation);
            let submitted = quorum
                .submit(Box::new(move |controller, image, _rng, now| {
                    if want_shutdown {
                        controller.controlled_shutdown(image, node, incarnation)
                    } else {
                        controller.heartbeat(image, now, node, incarnation)
                    }
                }))
                .await;
            match submitted {
                Ok(_) => ControllerResponse::ok(ControllerAnswer::Heartbeat {
                    fenced: quorum.is_fenced(node),
                    should_shut_down: want_shutdown,
                }),
                Err(e) => refused(api, &e),
            }
        }
        ControllerRequest::AlterPartition {
            node_id,
            incarnation,
            partitions,
        } => {
            let altered = alter_partitions(
                &quorum,
                NodeId(node_id),
                Incarnation(incarnation),
                &partitions,
            )
            .await;
            match altered {
                Ok(results) => ControllerResponse::ok(ControllerAnswer::AlterPartition { results }),
                Err(e) => refused(api, &e),
            }
        }
        ControllerRequest::ElectLeaders { partitions } => {
            match elect_preferred_leaders(&quorum, &partitions).await {
                Ok(results) => ControllerResponse::ok(ControllerAnswer::ElectLeaders { results }),
                Err(e) => refused(api, &e),
            }
        }
        ControllerRequest::DescribeQuorum => match quorum.describe() {
            Some(answer) => ControllerResponse::ok(answer),
            None => ControllerResponse::not_controller(api, quorum.leader().map(|n| n.0)),
        },
        ControllerRequest::AllocateProducerIds {
            node_id,
            incarnation,
        } => {
            match allocate_producer_ids(&quorum, NodeId(node_id), Incarnation(incarnation)).await {
                Ok((first_id, count)) => {
                    ControllerResponse::ok(ControllerAnswer::AllocateProducerIds {
                        first_id,
                        count,
                    })
                }
                Err(e) => refused(api, &e),
            }
        }
        ControllerRequest::CreateTopics { topics, .. } => {
            let mut results = Vec::with_capacity(topics.len());
            for topic in topics {
                let request = CreateTopic {
                    name: topic.name.clone(),
                    partitions: topic.partitions,
                    replication_factor: topic.replication_factor,
                    assignment: topic.assignment.map(assignment_nodes),
                    configs: topic.configs,
                };
                let created = quorum
                    .submit(Box::new(move |controller, image, rng, _now| {
                        controller.create_topic(image, rng, request)
                    }))
                    .await
                    .map(|_| ());
                if let Err(ControllerError::NotController { leader_hint }) = &created {
                    return ControllerResponse::not_controller(api, leader_hint.map(|n| n.0));
                }
                let (topic_id, partitions) = quorum.topic_id_and_partitions(&topic.name);
                let (error_code, message) = topic_outcome(created);
                results.push(CreateTopicResult {
                    name: topic.name,
                    error_code,
                    message,
                    topic_id,
                    partitions,
                });
            }
            ControllerResponse::ok(ControllerAnswer::CreateTopics { results })
        }
        ControllerRequest::DeleteTopics { names } => {
            let mut results = Vec::with_capacity(names.len());
            for name in names {
                let target = name.clone();
                let deleted = quorum
                    .submit(Box::new(move |controller, image, _rng, _now| {
                        controller.delete_topic(image, &target)
                    }))
                    .await
                    .map(|_| ());
                let (error_code, message) = topic_outcome(deleted);
                results.push(TopicResult {
                    name,
                    error_code,
                    message,
                });
            }
            ControllerResponse::ok(ControllerAnswer::DeleteTopics { results })
        }
        ControllerRequest::CreatePartitions { topics } => {
            let mut results = Vec::with_capacity(topics.len());
            for topic in topics {
                let name = topic.name.clone();
                let count = topic.count;
                let assignment = topic.assignment.map(assignment_nodes);
                let grown = quorum
                    .submit(Box::new(move |controller, image, rng, _now| {
                        controller.create_partitions(image, rng, &name, count, assignment)
                    }))
                    .await
                    .map(|_| ());
                let (error_code, message) = topic_outcome(grown);
                results.push(TopicResult {
                    name: topic.name,
                    error_code,
                    message,
                });
            }
            ControllerResponse::ok(ControllerAnswer::CreatePartitions { results })
        }
        ControllerRequest::AlterConfigs {
            topics,
            validate_only,
        } => {
            // A topic whose ops do not decode is answered alone; the others go on.
            let mut results: Vec<Option<TopicResult>> = Vec::with_capacity(topics.len());
            let mut decoded = Vec::with_capacity(topics.len());
            for topic in topics {
                let name = topic.name.clone();
                match super::admin::alter_from_wire(topic) {
                    Ok(topic) => {
                        results.push(None);
                        decoded.push(topic);
                    }
                    Err(e) => results.push(Some(TopicResult {
                        name,
                        error_code: e.kafka_code(),
                        message: Some(e.to_string()),
                    })),
                }
            }
            let validate_only = if validate_only {
                crate::ops::ValidateOnly::Yes
            } else {
                crate::ops::ValidateOnly::No
            };
            let Some((altered, metadata_offset)) =
                super::admin::alter_on_leader(&quorum, decoded, validate_only).await
            else {
                return ControllerResponse::not_controller(api, quorum.leader().map(|n| n.0));
            };
            let mut altered = altered.into_iter();
            let results = results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| altered.next().expect("one result per topic")))
                .collect();
            ControllerResponse::ok(ControllerAnswer::AlterConfigs {
                results,
                metadata_offset,
            })
        }
    }
}

/// Decides one AlterPartition request on `image`: the records of every accepted change, as one
/// batch, and one result per change in request order (an accepted one with the partition's
/// state once the records are applied).
///
/// # Errors
/// [`ControllerError::StaleBroker`] when `node` is not registered in run `incarnation`: Kafka
/// checks the broker epoch once per request and fails it whole.
pub fn decide_isr_changes(
    controller: &mut Controller,
    image: &MetadataImage,
    node: NodeId,
    incarnation: Incarnation,
    changes: &[IsrChange],
) -> Result<(Vec<MetadataRecord>, Vec<IsrChangeResult>), ControllerError> {
    if image
        .broker(node)
        .is_none_or(|b| b.incarnation != incarnation)
    {
        return Err(ControllerError::StaleBroker { node, incarnation });
    }
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(changes.len());
    let mut named = std::collections::HashSet::with_capacity(changes.len());
    for change in changes {
        let decided = if named.insert((change.topic_id, change.partition)) {
            decide_isr_change(controller, image, node, incarnation, change)
        } else {
            Err(IsrChangeRefused::NamedTwice)
        };
        results.push(match decided {
            Ok((change_records, result)) => {
                records.extend(change_records);
                result
            }
            Err(refused) => refused_isr_change(change, &refused),
        });
    }
    Ok((records, results))
}

fn decide_isr_change(
    controller: &mut Controller,
    image: &MetadataImage,
    node: NodeId,
    incarnation: Incarnation,
    change: &IsrChange,
) -> Result<(Vec<MetadataRecord>, IsrChangeResult), IsrChangeRefused> {
    let topic_id = TopicId(change.topic_id);
    let request = AlterPartition {
        node,
        incarnation,
        topic_id,
        index: PartitionIndex(change.partition),
        leader_epoch: LeaderEpoch(change.leader_epoch),
        partition_epoch: PartitionEpoch(change.partition_epoch),
        new_isr: change
            .new_isr
            .iter()
            .map(|m| ControllerIsrMember {
                node: NodeId(m.node_id),
                incarnation: m.incarnation.map(Incarnation),
            })
            .collect(),
    };
    let outcome = controller
        .alter_partition(image, &request)
        .map_err(|e| match e {
            AlterPartitionError::UnknownPartition { .. } if image.topic(topic_id).is_none() => {
                IsrChangeRefused::UnknownTopicId
            }
            other => IsrChangeRefused::Controller(other),
        })?;
    if outcome.reassignment_completed {
        // Kafka's answer when an AlterPartition completes a reassignment (KIP-455): the records
        // commit, but the sender must take the new state (replicas gone, a new leader epoch,
        // maybe a new leader) from the metadata, not from this answer.
        let result = IsrChangeResult {
            topic_id: change.topic_id,
            partition: change.partition,
            error_code: ErrorCode::NewLeaderElected,
            leader: -1,
            leader_epoch: -1,
            partition_epoch: -1,
            isr: Vec::new(),
        };
        return Ok((outcome.records, result));
    }
    let p = outcome.partition;
    let result = IsrChangeResult {
        topic_id: change.topic_id,
        partition: change.partition,
        error_code: ErrorCode::None,
        leader: p.leader.map_or(-1, |n| n.0),
        leader_epoch: p.leader_epoch.0,
        partition_epoch: p.partition_epoch.0,
        isr: p.isr.iter().map(|n| n.0).collect(),
    };
    Ok((outcome.records, result))
}

fn refused_isr_change(change: &IsrChange, refused: &IsrChangeRefused) -> IsrChangeResult {
    IsrChangeResult {
        topic_id: change.topic_id,
        partition: change.partition,
        error_code: refused.kafka_code(),
        leader: -1,
        leader_epoch: -1,
        partition_epoch: -1,
        isr: Vec::new(),
    }
}

/// Serves an AlterPartition request on the leader: one batch for all its changes, answered once
/// it committed (at once when nothing changes: then the state answered is one the sender has
/// seen, since its partition epoch had to match it).
///
/// # Errors
/// NOT_CONTROLLER (this node does not lead, or lost leadership before the batch committed), or
/// STALE_BROKER_EPOCH for the whole request.
pub async fn alter_partitions(
    quorum: &Quorum,
    node: NodeId,
    incarnation: Incarnation,
    changes: &[IsrChange],
) -> Result<Vec<IsrChangeResult>, ControllerError> {
    let mut results = Vec::new();
    quorum
        .submit(Box::new(|controller, image, _rng, _now| {
            let (records, decided) =
                decide_isr_changes(controller, image, node, incarnation, changes)?;
            results = decided;
            Ok(records)
        }))
        .await?;
    assert_eq!(results.len(), changes.len(), "one result per change");
    Ok(results)
}

/// The answer to each partition of a preferred-leader election, as Kafka's controller gives it
/// for partitions named in the request (it leaves out ELECTION_NOT_NEEDED only when asked to
/// elect every partition, which this request cannot say).
pub fn election_results(
    partitions: &[PartitionName],
    decided: &[ElectionResult],
) -> Vec<ElectLeadersResult> {
    assert_eq!(partitions.len(), decided.len(), "one result per partition");
    partitions
        .iter()
        .zip(decided)
        .map(|(p, result)| {
            let message = match result {
                ElectionResult::Elected => None,
                ElectionResult::NotNeeded => Some("the preferred replica leads already"),
                ElectionResult::PreferredLeaderNotAvailable => {
                    Some("the preferred replica is out of the isr, fenced or shutting down")
                }
                ElectionResult::UnknownTopicOrPartition => Some("no such topic or partition"),
            };
            ElectLeadersResult {
                topic: p.topic.clone(),
                partition: p.partition,
                error_code: result.kafka_code(),
                message: message.map(str::to_owned),
            }
        })
        .collect()
}

/// Serves a preferred-leader election on the leader, answered once its records committed.
///
/// # Errors
/// NOT_CONTROLLER, or the controller's refusal of the whole request.
pub async fn elect_preferred_leaders(
    quorum: &Quorum,
    partitions: &[PartitionName],
) -> Result<Vec<ElectLeadersResult>, ControllerError> {
    let targets: Vec<(String, PartitionIndex)> = partitions
        .iter()
        .map(|p| (p.topic.clone(), PartitionIndex(p.partition)))
        .collect();
    let mut decided = Vec::new();
    quorum
        .submit(Box::new(|controller, image, _rng, _now| {
            let elections = controller.elect_preferred_leaders(image, &targets)?;
            decided = elections.results;
            Ok(elections.records)
        }))
        .await?;
    Ok(election_results(partitions, &decided))
}

/// Allocates a producer id block for `node` on the leader: `(first id, count)`.
///
/// # Errors
/// The controller's refusal, or NOT_CONTROLLER.
pub async fn allocate_producer_ids(
    quorum: &Quorum,
    node: NodeId,
    incarnation: Incarnation,
) -> Result<(i64, i32), ControllerError> {
    let block = Rc::new(Cell::new((-1i64, 0i32)));
    let seen = block.clone();
    quorum
        .submit(Box::new(move |controller, image, _rng, _now| {
            let records = controller.allocate_producer_ids(image, node, incarnation)?;
            for record in &records {
                if let MetadataRecord::AllocateProducerIds {
                    first_id, count, ..
                } = record
                {
                    seen.set((*first_id, *count));
                }
            }
            Ok(records)
        }))
        .await?;
    let (first_id, count) = block.get();
    assert!(
        first_id >= 0 && count > 0,
        "an allocation carries its block"
    );
    Ok((first_id, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_controller::controller::ControllerConfig;
    use spate_controller::ids::MetadataOffset;
    use spate_wire::cluster::IsrMember;

    const TOPIC: [u8; 16] = [7; 16];

    fn nodes(ids: &[i32]) -> Vec<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    /// Brokers 1 to 3 registered (run 10) and unfenced; topic "t" with partitions 0 (replicas
    /// and ISR 1, 2, 3), 1 (replicas 2, 1, ISR 1, 2, partition epoch 2) and 2 (replicas 3, 1,
    /// ISR 1), all led by 1 in leader epoch 4.
    fn image() -> MetadataImage {
        let mut records = Vec::new();
        for node in [1, 2, 3] {
            let endpoint = Endpoint {
                host: format!("b{node}"),
                port: 9090,
            };
            records.push(MetadataRecord::RegisterBroker {
                node: NodeId(node),
                incarnation: Incarnation(10),
                client: endpoint.clone(),
                cluster: endpoint,
                rack: None,
            });
            records.push(MetadataRecord::UnfenceBroker {
                node: NodeId(node),
                incarnation: Incarnation(10),
            });
        }
        records.push(MetadataRecord::CreateTopic {
            name: "t".to_owned(),
            topic_id: TopicId(TOPIC),
            configs: Vec::new(),
        });
        let partitions = [
            (&[1, 2, 3][..], &[1, 2, 3][..], 0),
            (&[2, 1][..], &[1, 2][..], 2),
            (&[3, 1][..], &[1][..], 0),
        ];
        for (index, (replicas, isr, partition_epoch)) in partitions.into_iter().enumerate() {
            records.push(MetadataRecord::CreatePartition {
                topic_id: TopicId(TOPIC),
                index: PartitionIndex(index as i32),
                replicas: nodes(replicas),
                isr: nodes(isr),
                leader: Some(NodeId(1)),
                leader_epoch: LeaderEpoch(4),
                partition_epoch: PartitionEpoch(partition_epoch),
            });
        }
        let mut image = MetadataImage::new();
        for (offset, record) in records.iter().enumerate() {
            image
                .apply(MetadataOffset(offset as u64 + 1), record)
                .unwrap_or_else(|e| panic!("{record:?}: {e}"));
        }
        image
    }

    fn change(topic_id: [u8; 16], partition: i32, partition_epoch: i32, isr: &[i32]) -> IsrChange {
        IsrChange {
            topic_id,
            partition,
            leader_epoch: 4,
            partition_epoch,
            new_isr: isr
                .iter()
                .map(|&node_id| IsrMember {
                    node_id,
                    incarnation: Some(10),
                })
                .collect(),
        }
    }

    #[test]
    fn an_alter_partition_request_is_one_batch_with_a_result_per_change_in_order() {
        let mut image = image();
        let mut controller = Controller::new(ControllerConfig::default());
        let changes = [
            change(TOPIC, 0, 0, &[1, 2]),
            change(TOPIC, 0, 0, &[1]),
            change([9; 16], 0, 0, &[1]),
            change(TOPIC, 7, 0, &[1]),
            change(TOPIC, 1, 1, &[1]),
            IsrChange {
                leader_epoch: 3,
                ..change(TOPIC, 2, 0, &[1])
            },
            change(TOPIC, 2, 0, &[1, 2]),
        ];
        let (records, results) = decide_isr_changes(
            &mut controller,
            &image,
            NodeId(1),
            Incarnation(10),
            &changes,
        )
        .unwrap();
        let codes: Vec<ErrorCode> = results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            [
                ErrorCode::None,
                ErrorCode::InvalidRequest, // partition 0 named twice
                ErrorCode::UnknownTopicId,
                ErrorCode::UnknownTopicOrPartition,
                ErrorCode::InvalidUpdateVersion,
                ErrorCode::FencedLeaderEpoch,
                ErrorCode::InvalidRequest, // 2 is not a replica of partition 2
            ]
        );
        for (result, change) in results.iter().zip(&changes) {
            assert_eq!(
                (result.topic_id, result.partition),
                (change.topic_id, change.partition)
            );
        }
        assert_eq!(
            results[0],
            IsrChangeResult {
                topic_id: TOPIC,
                partition: 0,
                error_code: ErrorCode::None,
                leader: 1,
                leader_epoch: 4,
                partition_epoch: 1,
                isr: vec![1, 2],
            }
        );
        assert!(results[1..]
            .iter()
            .all(|r| r.leader == -1 && r.partition_epoch == -1 && r.isr.is_empty()));
        // The accepted change is the whole batch, and the image takes it as answered.
        assert_eq!(records.len(), 1);
        let next = MetadataOffset(image.last_applied().0 + 1);
        image.apply_batch(next, &records).unwrap();
        let p = &image.topic(TopicId(TOPIC)).unwrap().partitions[0];
        assert_eq!(
            (p.isr.clone(), p.partition_epoch),
            (nodes(&[1, 2]), PartitionEpoch(1))
        );
    }

    #[test]
    fn an_isr_change_that_completes_a_reassignment_is_answered_new_leader_elected() {
        let mut image = image();
        let mut controller = Controller::new(ControllerConfig {
            replication_factor_max: 3,
            ..ControllerConfig::default()
        });
        // Partition 2 (replicas 3, 1, ISR 1) moves to 1, 2: 2 is added, 3 removed.
        let moved = controller
            .alter_partition_reassignments(
                &image,
                &[spate_controller::controller::Reassign {
                    topic: "t".into(),
                    index: PartitionIndex(2),
                    target: Some(nodes(&[1, 2])),
                }],
            )
            .unwrap();
        let next = MetadataOffset(image.last_applied().0 + 1);
        image.apply_batch(next, &moved.records).unwrap();
        let p = image.topic(TopicId(TOPIC)).unwrap().partitions[2].clone();
        assert!(p.is_reassigning());
        let (records, results) = decide_isr_changes(
            &mut controller,
            &image,
            NodeId(1),
            Incarnation(10),
            &[change(TOPIC, 2, p.partition_epoch.0, &[1, 2])],
        )
        .unwrap();
        assert_eq!(results[0].error_code, ErrorCode::NewLeaderElected);
        assert_eq!((results[0].leader, results[0].leader_epoch), (-1, -1));
        let next = MetadataOffset(image.last_applied().0 + 1);
        image.apply_batch(next, &records).unwrap();
        let done = &image.topic(TopicId(TOPIC)).unwrap().partitions[2];
        assert_eq!(
            (done.replicas.clone(), done.isr.clone()),
            (nodes(&[1, 2]), nodes(&[1, 2]))
        );
        assert_eq!(done.leader, Some(NodeId(1)));
        assert_eq!(
            done.leader_epoch,
            p.leader_epoch.next(),
            "3 left the replicas"
        );
    }

    #[test]
    fn a_stale_incarnation_fails_the_whole_alter_partition_request() {
        let mut controller = Controller::new(ControllerConfig::default());
        for (node, incarnation) in [(1, 9), (5, 10)] {
            let refused = decide_isr_changes(
                &mut controller,
                &image(),
                NodeId(node),
                Incarnation(incarnation),
                &[],
            )
            .unwrap_err();
            assert_eq!(
                refused.kafka_code(),
                ErrorCode::StaleBrokerEpoch,
                "{refused}"
            );
        }
    }

    #[test]
    fn preferred_elections_answer_as_kafkas_controller_does() {
        let mut controller = Controller::new(ControllerConfig::default());
        let named = |topic: &str, partition| PartitionName {
            topic: topic.to_owned(),
            partition,
        };
        let partitions = vec![
            named("t", 0), // led by its first replica already
            named("t", 1), // 2 is in the ISR: elected
            named("t", 2), // 3 is not
            named("t", 3),
            named("nope", 0),
        ];
        let targets: Vec<(String, PartitionIndex)> = partitions
            .iter()
            .map(|p| (p.topic.clone(), PartitionIndex(p.partition)))
            .collect();
        let elections = controller
            .elect_preferred_leaders(&image(), &targets)
            .unwrap();
        assert_eq!(elections.records.len(), 1);
        let results = election_results(&partitions, &elections.results);
        let codes: Vec<ErrorCode> = results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            [
                ErrorCode::ElectionNotNeeded,
                ErrorCode::None,
                ErrorCode::PreferredLeaderNotAvailable,
                ErrorCode::UnknownTopicOrPartition,
                ErrorCode::UnknownTopicOrPartition,
            ]
        );
        for (result, asked) in results.iter().zip(&partitions) {
            assert_eq!(
                (&result.topic, result.partition),
                (&asked.topic, asked.partition)
            );
            assert_eq!(
                result.message.is_none(),
                result.error_code == ErrorCode::None
            );
        }
    }
}
