//! Requests from brokers to the quorum's leader over the cluster listener (registration,
//! heartbeats, producer id blocks, and topic changes forwarded from any broker, as Kafka's
//! KIP-590 forwarding): the leader's side ([`serve`]) and the sender's ([`Rpc::call`]).
//!
//! A request may reach any voter; one that does not lead answers NOT_CONTROLLER with the leader
//! it knows of, and the sender asks again there on its next attempt. Responses are matched to
//! requests by correlation id; a request not answered within [`RPC_TIMEOUT`] fails, and its late
//! answer is dropped.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use spate_controller::controller::{ControllerError, CreateTopic, RegisterBroker};
use spate_controller::ids::{Incarnation, NodeId};
use spate_controller::records::{Endpoint, MetadataRecord};
use spate_wire::cluster::{
    Body, ControllerAnswer, ControllerApi, ControllerRequest, ControllerResponse,
    CreateTopicResult, TopicResult,
};

use super::quorum::Quorum;
use super::transport::Transport;
use super::{assignment_nodes, topic_outcome};
use crate::errors::KafkaCode;

/// How long a sender waits for the leader's answer.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests awaiting an answer, at most.
pub const RPCS_IN_FLIGHT_MAX: usize = 1024;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No leader is known, or this node would be asking itself.
    #[error("no controller to ask")]
    NoController,
    /// The request could not be queued.
    #[error("request not sent: {0}")]
    NotSent(String),
    /// No answer in time.
    #[error("no answer within {RPC_TIMEOUT:?}")]
    TimedOut,
}

/// The sender's side: correlation ids and the answers awaited.
#[derive(Debug, Default)]
pub struct Rpc {
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, oneshot::Sender<ControllerResponse>>>,
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
        if self.pending.borrow().len() >= RPCS_IN_FLIGHT_MAX {
            return Err(RpcError::NotSent("too many requests in flight".to_owned()));
        }
        request
            .validate()
            .map_err(|e| RpcError::NotSent(e.to_string()))?;
        // Correlation id 0 is the handshake's.
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let (done, answer) = oneshot::channel();
        self.pending.borrow_mut().insert(id, done);
        let body = Body::ControllerRequest(request.clone());
        if let Err(e) = transport.send(to, id, &body) {
            self.pending.borrow_mut().remove(&id);
            return Err(RpcError::NotSent(e.to_string()));
        }
        let answered = futures_lite::future::or(async { answer.await.ok() }, async {
            glommio::timer::sleep(RPC_TIMEOUT).await;
            None
        })
        .await;
        self.pending.borrow_mut().remove(&id);
        answered.ok_or(RpcError::TimedOut)
    }

    /// Hands an answer to the request waiting for it (a late one is dropped).
    pub fn deliver(&self, correlation_id: u64, response: ControllerResponse) {
        if let Some(waiter) = self.pending.borrow_mut().remove(&correlation_id) {
            let _ = waiter.send(response);
        }
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
    }
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
