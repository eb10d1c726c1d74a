//! One module per Kafka API. [`handle`] turns a request frame into a response frame.
//!
//! Errors from lower layers become Kafka error codes through `crate::errors`; a request whose
//! header cannot be read, or whose API or version is not advertised, closes the connection
//! (Kafka does the same: there is no response layout to answer in).

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_partition_reassignments;
#[cfg(test)]
mod api_doc_tests;
mod api_versions;
mod authorized_operations;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;
mod txn_offset_commit;
mod unregister_broker;

use bytes::{Bytes, BytesMut};
use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::{ApiKey, TopicName};
use spate_wire::kafka_protocol::protocol::{Encodable, StrBytes};
use spate_wire::request::{RequestBody, RequestLimits};
use spate_wire::types::LeaderEpoch;
use spate_wire::versions::{ApiSet, VersionTable};
use spate_wire::ErrorCode;
use tracing::{debug, warn};

use crate::connection::{Client, ResponseParts};
use crate::core::{Core, CONTROLLER_CORE};
use crate::metadata::topics::{self, TopicConfig, TopicError, TopicMeta};
use crate::ops::{CoreReply, CoreRequest, NewTopic};

/// Whether this broker runs alone or in a cluster: what it can answer differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    SingleBroker,
    Cluster,
}

/// The APIs this broker implements, and so advertises: DescribeQuorum, ElectLeaders, the
/// reassignment APIs and UnregisterBroker only in a cluster, since a single broker has no
/// metadata quorum to describe, no other replica to elect or move to, and no other broker to
/// unregister.
pub fn version_table(mode: Mode) -> VersionTable {
    let apis = ApiSet::core()
        .with(ApiKey::CreatePartitions)
        .with(ApiKey::FindCoordinator)
        .with(ApiKey::InitProducerId)
        .with(ApiKey::JoinGroup)
        .with(ApiKey::SyncGroup)
        .with(ApiKey::Heartbeat)
        .with(ApiKey::LeaveGroup)
        .with(ApiKey::OffsetCommit)
        .with(ApiKey::OffsetFetch)
        .with(ApiKey::ListGroups)
        .with(ApiKey::DescribeGroups)
        .with(ApiKey::DeleteGroups)
        .with(ApiKey::OffsetDelete)
        .with(ApiKey::DescribeCluster)
        .with(ApiKey::DeleteRecords)
        .with(ApiKey::DescribeLogDirs)
        .with(ApiKey::AlterConfigs)
        .with(ApiKey::IncrementalAlterConfigs)
        .with(ApiKey::DescribeProducers)
        // Coordinated by the leader of the id's `__transaction_state` partition (see
        // `crate::txn`); ListTransactions lists this broker's coordinators, and Kafka's admin
        // client asks every broker, as with Kafka.
        .with(ApiKey::AddPartitionsToTxn)
        .with(ApiKey::AddOffsetsToTxn)
        .with(ApiKey::EndTxn)
        .with(ApiKey::TxnOffsetCommit)
        .with(ApiKey::ListTransactions)
        .with(ApiKey::DescribeTransactions);
    VersionTable::new(match mode {
        Mode::SingleBroker => apis,
        Mode::Cluster => apis
            .with(ApiKey::DescribeQuorum)
            .with(ApiKey::ElectLeaders)
            .with(ApiKey::AlterPartitionReassignments)
            .with(ApiKey::ListPartitionReassignments)
            .with(ApiKey::UnregisterBroker),
    })
}

/// Handles one request frame from `client`. `None` means: close the connection.
pub async fn handle(core: &Core, frame: Bytes, client: &Client) -> Option<ResponseParts> {
    let mut rest = frame.clone();
    let header = match RequestHeader::decode(&mut rest) {
        Ok(header) => header,
        Err(error) => {
            let prefix = spate_wire::header::peek_header_prefix(&frame).ok();
            warn!(core = core.id, %error, ?prefix, "unreadable request header; closing connection");
            return None;
        }
    };
    if header.api_key == ApiKey::ApiVersions {
        // Answered for any version (KIP-511), so it is checked inside.
        return api_versions::handle(core, &header);
    }
    match core.versions.range(header.api_key) {
        Some(range) if range.contains(header.api_version) => {}
        _ => {
            // "-" for a client that sent no client id (or not UTF-8): a string either way,
            // never Debug's `Some("...")` in a JSON log.
            warn!(
                core = core.id,
                api = ?header.api_key,
                version = header.api_version,
                client = header.client_id_str().unwrap_or("-"),
                "request for an API or version this broker does not advertise; closing connection"
            );
            return None;
        }
    }
    let limits = RequestLimits::default();
    let body = match RequestBody::decode(&header, rest, &limits) {
        Ok(body) => body,
        Err(error) => {
            warn!(
                core = core.id,
                api = ?header.api_key,
                version = header.api_version,
                client = header.client_id_str().unwrap_or("-"),
                %error,
                "malformed request; closing connection"
            );
            return None;
        }
    };
    debug!(core = core.id, api = ?header.api_key, version = header.api_version, "request");
    match body {
        RequestBody::Metadata(request) => metadata::handle(core, &header, request).await,
        RequestBody::Produce(request) => {
            produce::handle(core, &header, request, &client.affinity).await
        }
        RequestBody::Fetch(request) => {
            fetch::handle(core, &header, request, &client.affinity).await
        }
        RequestBody::ListOffsets(request) => list_offsets::handle(core, &header, request).await,
        RequestBody::CreateTopics(request) => create_topics::handle(core, &header, request).await,
        RequestBody::DeleteTopics(request) => delete_topics::handle(core, &header, request).await,
        RequestBody::CreatePartitions(request) => {
            create_partitions::handle(core, &header, request).await
        }
        RequestBody::DescribeConfigs(request) => describe_configs::handle(core, &header, request),
        RequestBody::FindCoordinator(request) => {
            find_coordinator::handle(core, &header, request).await
        }
        RequestBody::InitProducerId(request) => {
            init_producer_id::handle(core, &header, request).await
        }
        RequestBody::OffsetForLeaderEpoch(request) => {
            offset_for_leader_epoch::handle(core, &header, request).await
        }
        RequestBody::JoinGroup(request) => {
            join_group::handle(core, &header, request, client.peer).await
        }
        RequestBody::SyncGroup(request) => sync_group::handle(core, &header, request).await,
        RequestBody::Heartbeat(request) => heartbeat::handle(core, &header, request).await,
        RequestBody::LeaveGroup(request) => leave_group::handle(core, &header, request).await,
        RequestBody::OffsetCommit(request) => offset_commit::handle(core, &header, request).await,
        RequestBody::OffsetFetch(request) => offset_fetch::handle(core, &header, request).await,
        RequestBody::ListGroups(request) => list_groups::handle(core, &header, request).await,
        RequestBody::DescribeGroups(request) => {
            describe_groups::handle(core, &header, request).await
        }
        RequestBody::DeleteGroups(request) => delete_groups::handle(core, &header, request).await,
        RequestBody::OffsetDelete(request) => offset_delete::handle(core, &header, request).await,
        RequestBody::DescribeCluster(request) => describe_cluster::handle(core, &header, request),
        RequestBody::UnregisterBroker(request) => {
            unregister_broker::handle(core, &header, request).await
        }
        RequestBody::DescribeQuorum(request) => {
            describe_quorum::handle(core, &header, request).await
        }
        RequestBody::DeleteRecords(request) => delete_records::handle(core, &header, request).await,
        RequestBody::ElectLeaders(request) => elect_leaders::handle(core, &header, request).await,
        RequestBody::AlterPartitionReassignments(request) => {
            alter_partition_reassignments::handle(core, &header, request).await
        }
        RequestBody::ListPartitionReassignments(request) => {
            list_partition_reassignments::handle(core, &header, request)
        }
        RequestBody::DescribeLogDirs(request) => {
            describe_log_dirs::handle(core, &header, request).await
        }
        RequestBody::AlterConfigs(request) => alter_configs::handle(core, &header, request).await,
        RequestBody::IncrementalAlterConfigs(request) => {
            incremental_alter_configs::handle(core, &header, request).await
        }
        RequestBody::AddPartitionsToTxn(request) => {
            add_partitions_to_txn::handle(core, &header, request).await
        }
        RequestBody::EndTxn(request) => end_txn::handle(core, &header, request).await,
        RequestBody::AddOffsetsToTxn(request) => {
            add_offsets_to_txn::handle(core, &header, request).await
        }
        RequestBody::TxnOffsetCommit(request) => {
            txn_offset_commit::handle(core, &header, request).await
        }
        RequestBody::ListTransactions(request) => {
            list_transactions::handle(core, &header, request).await
        }
        RequestBody::DescribeTransactions(request) => {
            describe_transactions::handle(core, &header, request).await
        }
        RequestBody::DescribeProducers(request) => {
            describe_producers::handle(core, &header, request).await
        }
        other => {
            warn!(core = core.id, api = ?other.api_key(), "advertised API without a handler; closing connection");
            None
        }
    }
}

/// The leader epoch a client sent as current, if the request's version has the field (from
/// `since`) and the client set it (-1 means "not known", and is not checked).
pub fn current_leader_epoch(version: i16, since: i16, epoch: i32) -> Option<LeaderEpoch> {
    (version >= since && epoch >= 0).then_some(LeaderEpoch(epoch))
}

/// Encodes `body` as the response to `header`, in the version the request used.
pub fn respond(header: &RequestHeader, body: &impl Encodable) -> Option<ResponseParts> {
    respond_in(header, header.api_version, body)
}

/// Encodes `body` as the response to `header` in `version`.
///
/// kafka-protocol refuses to encode a field set to a non-default value in a version that lacks
/// it; handlers set version-specific fields only where they exist, so a failure here is a bug.
/// It is logged and the connection closed rather than the core brought down.
pub fn respond_in(
    header: &RequestHeader,
    version: i16,
    body: &impl Encodable,
) -> Option<ResponseParts> {
    let mut out = BytesMut::with_capacity(256);
    // The codec's own entry point, so the golden tests cover the bytes the broker sends.
    if let Err(error) = spate_wire::response::encode_response(
        &mut out,
        header.api_key,
        version,
        header.correlation_id,
        body,
    ) {
        tracing::error!(%error, "cannot encode response; closing connection");
        debug_assert!(false, "{error}");
        return None;
    }
    Some(vec![out.freeze()])
}

/// A kafka-protocol string from text.
pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A kafka-protocol topic name from text.
pub fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}

/// Checks the replicas a client assigned to partition `index`: exactly one (replication is not
/// implemented yet), and on a single broker that broker (in a cluster the controller checks
/// the broker is registered).
///
/// # Errors
/// Kafka's code and a message.
pub fn check_replicas(
    core: &Core,
    index: i32,
    replicas: &[i32],
) -> Result<(), (ErrorCode, String)> {
    match replicas {
        [] => Err((
            ErrorCode::InvalidReplicaAssignment,
            format!("partition {index} has no replica"),
        )),
        [only] if core.config.cluster.is_none() && *only != core.config.node_id => Err((
            ErrorCode::InvalidReplicaAssignment,
            format!(
                "broker {only} is not in this cluster (a single broker, node {})",
                core.config.node_id
            ),
        )),
        [_] => Ok(()),
        more if core.config.cluster.is_none() => Err((
            ErrorCode::InvalidReplicationFactor,
            format!(
                "partition {index} has {} replicas: a single broker holds exactly one",
                more.len()
            ),
        )),
        more => {
            let mut distinct = more.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() != more.len() {
                return Err((
                    ErrorCode::InvalidReplicaAssignment,
                    format!("partition {index} names a broker twice"),
                ));
            }
            if more.len() > spate_replication::messages::REPLICAS_MAX {
                return Err((
                    ErrorCode::InvalidReplicationFactor,
                    format!("partition {index} has {} replicas", more.len()),
                ));
            }
            Ok(())
        }
    }
}

/// Checks a topic to create and builds its record: name, partitions (`-1`: the broker
/// default), replication factor (`-1`: the broker default; it must come to 1 until
/// replication exists) and config overrides.
///
/// # Errors
/// The first problem found.
pub fn new_topic<'a>(
    core: &Core,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<TopicMeta, TopicError> {
    topics::validate_topic_name(name)?;
    let partitions = if partitions == -1 {
        core.config.topic_defaults.num_partitions
    } else {
        partitions
    };
    if !(1..=topics::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(TopicError::InvalidPartitions(partitions));
    }
    // -1 takes the broker's default.replication.factor, which is checked here too: above 1 it
    // asks for replication, which does not exist yet.
    let replication_factor = match replication_factor {
        -1 => core.config.topic_defaults.replication_factor,
        n => n,
    };
    // A single broker holds one replica of each partition; a cluster's controller checks the
    // factor against the brokers it has.
    let replicas_max = if core.config.cluster.is_some() {
        spate_replication::messages::REPLICAS_MAX as i16
    } else {
        1
    };
    if !(1..=replicas_max).contains(&replication_factor) {
        return Err(TopicError::InvalidReplicationFactor(replication_factor));
    }
    let mut config = TopicConfig::from_defaults(&core.config.topic_defaults);
    for (key, value) in configs {
        // A null value keeps the default.
        if let Some(value) = value {
            config.set(key, value)?;
        }
    }
    Ok(TopicMeta {
        name: name.to_owned(),
        id: topics::new_topic_id(),
        partitions,
        config,
        replica_sets: Vec::new(),
    })
}

/// Runs a topic change on the controller core; one result per topic, in order.
pub async fn call_controller(
    core: &Core,
    request: CoreRequest,
    count: usize,
) -> Vec<(ErrorCode, Option<String>)> {
    match core.call(CONTROLLER_CORE, request).await {
        Some(CoreReply::Topics(results)) => {
            assert_eq!(results.len(), count, "one result per topic");
            results
        }
        _ => vec![
            (
                ErrorCode::KafkaStorageError,
                Some("controller unreachable".to_owned())
            );
            count
        ],
    }
}

/// Creates topics through the controller core, placed by it; one result per topic, in order.
pub async fn create_via_controller(
    core: &Core,
    metas: Vec<TopicMeta>,
) -> Vec<(ErrorCode, Option<String>)> {
    let topics = metas
        .into_iter()
        .map(|meta| NewTopic {
            meta,
            assignment: None,
            replication_factor: -1,
        })
        .collect();
    create_assigned_via_controller(core, topics).await
}

/// Creates topics through the controller core, each placed as assigned or by the controller.
pub async fn create_assigned_via_controller(
    core: &Core,
    topics: Vec<NewTopic>,
) -> Vec<(ErrorCode, Option<String>)> {
    let count = topics.len();
    call_controller(core, CoreRequest::CreateTopics(topics), count).await
}
