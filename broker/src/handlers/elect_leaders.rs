//! ElectLeaders (key 43, v0-2): `kafka-leader-election --election-type PREFERRED` and the
//! AdminClient's `electLeaders`. A preferred election moves each partition's leadership back to
//! its first replica when that replica is in sync and live; the controller decides it (Kafka's
//! brokers forward this request to the active controller, Spate's to the quorum's leader).
//!
//! Answers per partition as Kafka's controller does: NONE once the election committed,
//! ELECTION_NOT_NEEDED when the preferred replica already leads, PREFERRED_LEADER_NOT_AVAILABLE
//! when it is out of sync or fenced, UNKNOWN_TOPIC_OR_PARTITION. Unclean elections (type 1) are
//! not run on request: a partition with a leader answers ELECTION_NOT_NEEDED, one without
//! ELIGIBLE_LEADERS_NOT_AVAILABLE (the controller elects out of the ISR on its own only for
//! topics with `unclean.leader.election.enable=true`). A null partition list means every
//! partition, as in Kafka. Advertised in cluster mode only.

use std::collections::BTreeMap;

use spate_wire::cluster::{PartitionName, ELECT_LEADERS_PARTITIONS_MAX};
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::elect_leaders_request::ElectLeadersRequest;
use spate_wire::kafka_protocol::messages::elect_leaders_response::{
    ElectLeadersResponse, PartitionResult, ReplicaElectionResult,
};
use spate_wire::ErrorCode;

use super::{respond, str_bytes, topic_name};
use crate::connection::ResponseParts;
use crate::core::{Core, CONTROLLER_CORE};
use crate::ops::{CoreReply, CoreRequest};
use crate::routing::Leader;

/// Kafka's election types.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: ElectLeadersRequest,
) -> Option<ResponseParts> {
    let version = header.api_version;
    let election_type = if version >= 1 {
        request.election_type
    } else {
        PREFERRED
    };
    // Every partition named (or all of them), deduplicated, in a stable order.
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    match &request.topic_partitions {
        Some(topics) => {
            for topic in topics {
                let partitions = wanted.entry(topic.topic.0.as_str().to_owned()).or_default();
                partitions.extend(topic.partitions.iter().copied());
            }
        }
        None => {
            for (name, meta) in core.topics.borrow().iter() {
                wanted.insert(name.clone(), (0..meta.partitions).collect());
            }
        }
    }
    for partitions in wanted.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    let names: Vec<PartitionName> = wanted
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions.iter().map(|&partition| PartitionName {
                topic: topic.clone(),
                partition,
            })
        })
        .collect();
    let mut response = ElectLeadersResponse::default();
    let outcomes: Vec<(ErrorCode, Option<String>)> = match election_type {
        PREFERRED if names.len() > ELECT_LEADERS_PARTITIONS_MAX => {
            response.error_code = ErrorCode::InvalidRequest.code();
            vec![
                (
                    ErrorCode::InvalidRequest,
                    Some(format!(
                        "at most {ELECT_LEADERS_PARTITIONS_MAX} partitions per request"
                    ))
                );
                names.len()
            ]
        }
        PREFERRED => {
            let reply = core
                .call(CONTROLLER_CORE, CoreRequest::ElectPreferred(names.clone()))
                .await;
            match reply {
                Some(CoreReply::Elected(Ok(results))) if results.len() == names.len() => results
                    .into_iter()
                    .map(|r| (r.error_code, r.message))
                    .collect(),
                Some(CoreReply::Elected(Err(code))) => {
                    response.error_code = code.code();
                    vec![(code, None); names.len()]
                }
                _ => vec![(ErrorCode::UnknownServerError, None); names.len()],
            }
        }
        UNCLEAN => names
            .iter()
            .map(|name| match core.placement(&name.topic, name.partition) {
                None => (ErrorCode::UnknownTopicOrPartition, None),
                Some(p) if p.leader == Leader::None => (
                    ErrorCode::EligibleLeadersNotAvailable,
                    Some("unclean elections are not run on request".to_owned()),
                ),
                Some(_) => (ErrorCode::ElectionNotNeeded, None),
            })
            .collect(),
        other => {
            response.error_code = ErrorCode::InvalidRequest.code();
            vec![
                (
                    ErrorCode::InvalidRequest,
                    Some(format!("unknown election type {other}"))
                );
                names.len()
            ]
        }
    };
    let mut by_topic: BTreeMap<&str, ReplicaElectionResult> = BTreeMap::new();
    for (name, (code, message)) in names.iter().zip(outcomes) {
        let entry = by_topic.entry(&name.topic).or_insert_with(|| {
            let mut r = ReplicaElectionResult::default();
            r.topic = topic_name(&name.topic);
            r
        });
        let mut p = PartitionResult::default();
        p.partition_id = name.partition;
        p.error_code = code.code();
        p.error_message = message.as_deref().map(str_bytes);
        entry.partition_result.push(p);
    }
    response.replica_election_results = by_topic.into_values().collect();
    let _ = version;
    respond(header, &response)
}
