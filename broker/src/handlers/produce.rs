//! Produce (key 0): append record batches to partitions, each on its owning core.
//!
//! The records of a partition are checked whole (framing, CRC32C, record counts, size) before
//! any is appended. acks=0 gets no response at all (as in Kafka); acks=1 is answered once the
//! batches are in the log; acks=-1 once they are durable under the topic's flush policy.
//!
//! Transactional batches are accepted only for partitions the producer's transaction
//! coordinator confirms are in its open transaction (one Verify call per request).

use spate_wire::batch::BatchHeader;
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::produce_request::ProduceRequest;
use spate_wire::kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, NodeEndpoint, PartitionProduceResponse, ProduceResponse,
    TopicProduceResponse,
};
use spate_wire::kafka_protocol::messages::BrokerId;
use spate_wire::ErrorCode;

use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::handoff::Affinity;
use crate::ops::{Durability, ProduceOp, ProduceResult, TxnCheck};
use crate::routing::Leader;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: ProduceRequest,
    affinity: &Affinity,
) -> Option<ResponseParts> {
    let durability = match request.acks {
        -1 => Some(Durability::Flushed),
        0 | 1 => Some(Durability::Appended),
        _ => None,
    };
    let mut ops = Vec::new();
    // Per partition: Ok(index into ops, with its bytes and records for the metrics) or an
    // error decided here.
    let mut plan: Vec<Result<(usize, u64, u64), ErrorCode>> = Vec::new();
    for topic in &request.topic_data {
        for partition in &topic.partition_data {
            let step = match (durability, &partition.records) {
                (None, _) => Err(ErrorCode::InvalidRequiredAcks),
                (Some(_), None) => Err(ErrorCode::CorruptMessage),
                (Some(durability), Some(records)) => {
                    let bytes = records.len() as u64;
                    let count = crate::metrics::record_count(std::slice::from_ref(records));
                    ops.push(ProduceOp {
                        topic: topic.name.0.to_string(),
                        partition: partition.index,
                        records: records.clone(),
                        durability,
                        timeout_ms: u64::try_from(request.timeout_ms).unwrap_or(0),
                        transaction: TxnCheck::Unverified,
                    });
                    Ok((ops.len() - 1, bytes, count))
                }
            };
            plan.push(step);
        }
    }
    if let Some(id) = request
        .transactional_id
        .as_ref()
        .filter(|id| !id.0.is_empty())
    {
        verify_transaction(core, id.0.as_str(), &mut ops).await;
    }
    let results: Vec<ProduceResult> = core.scatter_noting(ops, affinity).await;
    count(core, &request, &plan, &results);
    if request.acks == 0 {
        return Some(Vec::new());
    }
    let version = header.api_version;
    let mut plan = plan.into_iter();
    let mut response = ProduceResponse::default();
    // KIP-951 (v10+): a partition answered NOT_LEADER_OR_FOLLOWER carries its current leader,
    // and the response the leaders' endpoints, so the client moves without a Metadata round trip.
    let mut leaders_named: Vec<i32> = Vec::new();
    for topic in &request.topic_data {
        let mut out = TopicProduceResponse::default();
        out.name = topic.name.clone();
        for partition in &topic.partition_data {
            let mut p = PartitionProduceResponse::default();
            p.index = partition.index;
            p.log_append_time_ms = -1;
            match plan.next().expect("one step per partition") {
                Ok((i, _, _)) => {
                    let result = &results[i];
                    p.error_code = result.error.code();
                    p.base_offset = result.base_offset.0;
                    if version >= 2 {
                        p.log_append_time_ms = result.log_append_time_ms;
                    }
                    if version >= 5 {
                        p.log_start_offset = result.log_start_offset.0;
                    }
                    if version >= 8 {
                        p.error_message = result.message.as_deref().map(str_bytes);
                        // KIP-467: which records got the batch refused, so the client fails
                        // exactly those with the reason.
                        p.record_errors = result
                            .record_errors
                            .iter()
                            .map(|&index| {
                                let mut e = BatchIndexAndErrorMessage::default();
                                e.batch_index = index;
                                e.batch_index_error_message =
                                    result.message.as_deref().map(str_bytes);
                                e
                            })
                            .collect();
                    }
                    if version >= 10 && result.error == ErrorCode::NotLeaderOrFollower {
                        if let Some(placed) = core.placement(&topic.name.0, partition.index) {
                            let leader = match placed.leader {
                                Leader::Core(_) => Some(core.config.node_id),
                                Leader::Broker(node) => Some(node.0),
                                Leader::None => None,
                            };
                            p.current_leader.leader_id = BrokerId(leader.unwrap_or(-1));
                            p.current_leader.leader_epoch = placed.leader_epoch.0;
                            leaders_named.extend(leader);
                        }
                    }
                }
                Err(error) => {
                    p.error_code = error.code();
                    p.base_offset = -1;
                }
            }
            out.partition_responses.push(p);
        }
        response.responses.push(out);
    }
    if !leaders_named.is_empty() {
        leaders_named.sort_unstable();
        leaders_named.dedup();
        let view = core.cluster.borrow();
        response.node_endpoints = view
            .brokers
            .iter()
            .filter(|b| leaders_named.binary_search(&b.node_id).is_ok())
            .map(|b| {
                let mut endpoint = NodeEndpoint::default();
                endpoint.node_id = BrokerId(b.node_id);
                endpoint.host = str_bytes(&b.host);
                endpoint.port = i32::from(b.port);
                endpoint.rack = b.rack.as_deref().map(str_bytes);
                endpoint
            })
            .collect();
    }
    respond(header, &response)
}

/// Asks the transactional id's coordinator which partitions are in the open transaction of the
/// producer id and epoch of the request's transactional batches (one call per request), and
/// marks those ops verified; the partitions refuse transactional batches of the others
/// (KIP-890's defence against a late or misdirected write).
async fn verify_transaction(core: &Core, id: &str, ops: &mut [ProduceOp]) {
    let mut producer = None;
    let mut asked = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Ok(header) = BatchHeader::parse(&op.records) else {
            continue;
        };
        if !header.is_transactional() {
            continue;
        }
        let this = (header.producer_id, header.producer_epoch);
        if *producer.get_or_insert(this) != this {
            // A request mixing producers is refused for the others.
            continue;
        }
        asked.push(i);
    }
    let Some((producer_id, epoch)) = producer else {
        return;
    };
    let partitions = asked
        .iter()
        .map(|&i| (ops[i].topic.clone(), ops[i].partition))
        .collect();
    match crate::txn::verify(core, id, producer_id, epoch, partitions).await {
        // Those not in the transaction stay unverified: INVALID_TXN_STATE.
        Ok(verified) => {
            for (&i, ok) in asked.iter().zip(verified) {
                if ok {
                    ops[i].transaction = TxnCheck::Verified;
                }
            }
        }
        Err(error) => {
            // Kafka's ReplicaManager: a coordinator that moved, loads or cannot be reached is
            // answered NOT_ENOUGH_REPLICAS, retriable for every client and without a metadata
            // refresh; other errors (a fenced producer) go back as they are.
            let code = match error {
                ErrorCode::ConcurrentTransactions
                | ErrorCode::NetworkException
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::NotCoordinator => ErrorCode::NotEnoughReplicas,
                other => other,
            };
            for &i in &asked {
                ops[i].transaction = TxnCheck::Failed(code);
            }
        }
    }
}

/// Counts what was appended and what was refused, per partition (before an acks=0 request
/// returns without an answer, so those count too).
fn count(
    core: &Core,
    request: &ProduceRequest,
    plan: &[Result<(usize, u64, u64), ErrorCode>],
    results: &[ProduceResult],
) {
    let partitions = request
        .topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter().map(move |p| (t, p)));
    for ((topic, partition), step) in partitions.zip(plan) {
        let error = match step {
            Ok((i, bytes, records)) if results[*i].error == ErrorCode::None => {
                core.metrics
                    .produced(&topic.name.0, partition.index, *bytes, *records);
                continue;
            }
            Ok((i, _, _)) => results[*i].error,
            Err(error) => *error,
        };
        core.metrics.produce_error(error);
    }
}
