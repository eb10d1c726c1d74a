//! Consumer groups (the classic protocol) and committed offsets.
//!
//! A group is coordinated by the core that owns its partition of `__consumer_offsets`
//! ([`partition_for`], Kafka's placement), so its membership and its offsets live on one core
//! and need no locks. `state` is the sans-I/O membership state machine, `coordinator` the
//! per-core shell around it (parked calls, timers, the offsets log), `records` the layout of
//! `__consumer_offsets` records.
//!
//! A group request arriving on any core is turned by its handler into a [`GroupCall`] and sent
//! to the coordinating core ([`coordinator_core`]) with `Core::call`; the answer comes back as a
//! [`GroupAnswer`], which the handler encodes in the request's version.

pub mod coordinator;
pub mod records;
pub mod state;

use records::OffsetValue;
use spate_wire::ErrorCode;
use state::{JoinRequest, JoinResponse, LeavingMember, SyncRequest, SyncResponse};

use crate::core::Core;
use crate::ops::{CoreReply, CoreRequest};
use crate::routing::Route;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The `__consumer_offsets` partition of a group: Kafka's `abs(groupId.hashCode) % partitions`,
/// with Java's `String.hashCode` over UTF-16 code units, so a group lands on the same partition
/// number as in Kafka. The same rule places a transactional id in `__transaction_state`, so
/// one function (`spate_txn::records::partition_for`) computes both.
///
/// # Panics
/// If `partitions` is not positive.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    spate_txn::records::partition_for(group_id, partitions)
}

/// A group request, as plain data that can cross cores.
#[derive(Debug)]
pub enum GroupCall {
    Join {
        group: String,
        request: JoinRequest,
    },
    Sync {
        group: String,
        request: SyncRequest,
    },
    Heartbeat {
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation_id: i32,
    },
    Leave {
        group: String,
        members: Vec<LeavingMember>,
    },
    Commit {
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation_id: i32,
        offsets: Vec<(String, i32, OffsetValue)>,
    },
    /// TxnOffsetCommit (the caller checked the transaction).
    TxnCommit {
        group: String,
        producer_id: spate_wire::types::ProducerId,
        epoch: spate_wire::types::ProducerEpoch,
        /// TxnOffsetCommit v3+ (KIP-447): the committing consumer's membership, checked as an
        /// OffsetCommit's is (generation -1 and no member: not checked).
        member: coordinator::CommitMember,
        offsets: Vec<(String, i32, OffsetValue)>,
    },
    /// `partitions: None` asks for every committed partition. `require_stable` (OffsetFetch
    /// v7+, KIP-447): a partition with offsets pending in an open transaction answers
    /// UNSTABLE_OFFSET_COMMIT instead of its last committed offset.
    FetchOffsets {
        group: String,
        partitions: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    },
    /// Every group of the receiving core.
    List,
    Describe {
        groups: Vec<String>,
    },
    Delete {
        group: String,
    },
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
    },
}

/// The answer to a [`GroupCall`].
#[derive(Debug)]
pub enum GroupAnswer {
    Join(JoinResponse),
    Sync(SyncResponse),
    /// Heartbeat and Delete; Leave for a group that does not exist.
    Error(ErrorCode),
    /// One error per member (Leave) or partition (Commit).
    Errors(Vec<ErrorCode>),
    Offsets(Vec<(String, i32, coordinator::FetchedOffset)>),
    /// (group, protocol type, state).
    List(Vec<(String, String, &'static str)>),
    Describe(Vec<coordinator::GroupDescription>),
    DeleteOffsets(Result<Vec<ErrorCode>, ErrorCode>),
}

/// The core coordinating `group`: the owner of its `__consumer_offsets` partition; `None`
/// when that partition is not led on this broker.
pub fn coordinator_core(core: &Core, group: &str) -> Option<usize> {
    let partitions = core
        .topic(OFFSETS_TOPIC)
        .map_or(core.config.groups.offsets_partitions, |t| t.partitions);
    match core.route(OFFSETS_TOPIC, partition_for(group, partitions)) {
        Route::ThisCore => Some(core.id),
        Route::OtherCore(owner) => Some(owner),
        Route::OtherBroker(_) | Route::NoLeader | Route::NotHere => None,
    }
}

/// Runs `call` on core `to`; `None` if that core cannot be reached.
pub async fn call_on(core: &Core, to: usize, call: GroupCall) -> Option<GroupAnswer> {
    match core.call(to, CoreRequest::Group(Box::new(call))).await {
        Some(CoreReply::Group(answer)) => Some(*answer),
        _ => None,
    }
}

/// Runs `call` on the core coordinating `group`.
pub async fn call(core: &Core, group: &str, call: GroupCall) -> Option<GroupAnswer> {
    call_on(core, coordinator_core(core, group)?, call).await
}

/// Executes a call on this (the coordinating) core.
pub async fn run(core: &Core, call: GroupCall) -> GroupAnswer {
    let groups = &core.groups;
    match call {
        GroupCall::Join { group, request } => {
            GroupAnswer::Join(groups.join(core, &group, request).await)
        }
        GroupCall::Sync { group, request } => {
            GroupAnswer::Sync(groups.sync(core, &group, request).await)
        }
        GroupCall::Heartbeat {
            group,
            member_id,
            instance_id,
            generation_id,
        } => GroupAnswer::Error(groups.heartbeat(
            core,
            &group,
            &member_id,
            instance_id.as_deref(),
            generation_id,
        )),
        GroupCall::Leave { group, members } => match groups.leave(core, &group, &members) {
            Ok(errors) => GroupAnswer::Errors(errors),
            Err(error) => GroupAnswer::Error(error),
        },
        GroupCall::Commit {
            group,
            member_id,
            instance_id,
            generation_id,
            offsets,
        } => GroupAnswer::Errors(
            groups
                .commit(
                    core,
                    &group,
                    &member_id,
                    instance_id.as_deref(),
                    generation_id,
                    offsets,
                )
                .await,
        ),
        GroupCall::TxnCommit {
            group,
            producer_id,
            epoch,
            member,
            offsets,
        } => GroupAnswer::Errors(
            groups
                .txn_commit(core, &group, producer_id, epoch, &member, offsets)
                .await,
        ),
        GroupCall::FetchOffsets {
            group,
            partitions,
            require_stable,
        } => GroupAnswer::Offsets(groups.fetch_offsets(&group, partitions, require_stable)),
        GroupCall::List => GroupAnswer::List(groups.list()),
        GroupCall::Describe { groups: ids } => {
            GroupAnswer::Describe(ids.iter().map(|id| groups.describe(id)).collect())
        }
        GroupCall::Delete { group } => GroupAnswer::Error(groups.delete(core, &group).await),
        GroupCall::DeleteOffsets { group, partitions } => {
            GroupAnswer::DeleteOffsets(groups.delete_offsets(core, &group, partitions).await)
        }
    }
}

/// Bytes of the client id kept in a member id: member ids are stored as Kafka strings (i16
/// length) and a client id may itself be 32,767 bytes long.
const MEMBER_ID_CLIENT_BYTES_MAX: usize = 255;

/// A new member id: the client id (cut to [`MEMBER_ID_CLIENT_BYTES_MAX`]) and a random UUID,
/// like Kafka's.
pub fn new_member_id(client_id: &str) -> String {
    let mut end = client_id.len().min(MEMBER_ID_CLIENT_BYTES_MAX);
    while !client_id.is_char_boundary(end) {
        end -= 1;
    }
    let client_id = &client_id[..end];
    let id = crate::metadata::topics::new_topic_id();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{client_id}-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The replication factor `__consumer_offsets` and `__transaction_state` are created with:
/// `offsets.topic.replication.factor` (Kafka's default 3) capped at the live brokers, since
/// Kafka refuses to create them with fewer and Spate takes what there is (a cluster of one or
/// two brokers has groups and transactions too); 1 on a single broker.
pub fn internal_topic_replication_factor(core: &Core) -> i16 {
    if core.config.cluster.is_none() {
        return 1;
    }
    let live = core.cluster.borrow().brokers.len().max(1);
    core.config
        .groups
        .offsets_replication_factor
        .min(i16::try_from(live).unwrap_or(i16::MAX))
}

/// The `__consumer_offsets` topic as created at first start: compacted like Kafka's (the last
/// commit per group, topic and partition stays; tombstones of deleted offsets and groups go
/// after `delete.retention.ms`), never deleted by time or size. Small segments so the cleaner,
/// which never touches the active segment, has closed ones to compact (and a segment file is
/// preallocated in steps up to `segment.bytes`, starting at 16 KiB).
pub fn offsets_topic_meta(config: &crate::config::Config) -> crate::metadata::topics::TopicMeta {
    let mut topic_config =
        crate::metadata::topics::TopicConfig::from_defaults(&config.topic_defaults);
    for (key, value) in [
        ("cleanup.policy", "compact"),
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("segment.bytes", "1048576"),
        ("max.message.bytes", "1000000"),
    ] {
        topic_config
            .set(key, value)
            .expect("valid offsets topic config");
    }
    crate::metadata::topics::TopicMeta {
        name: OFFSETS_TOPIC.to_owned(),
        id: crate::metadata::topics::new_topic_id(),
        partitions: config.groups.offsets_partitions,
        config: topic_config,
        replica_sets: Vec::new(),
    }
}

/// Creates the `__consumer_offsets` topic file before the cores start, so every core opens its
/// partitions while loading like any other topic's. An existing file keeps its partition count
/// (groups must not move), which overrides the configured one.
///
/// # Errors
/// If the topic files cannot be read or written.
pub fn ensure_offsets_topic(config: &mut crate::config::Config) -> anyhow::Result<()> {
    let existing = crate::metadata::topics::load_all(&config.data_dir)?;
    match existing.get(OFFSETS_TOPIC) {
        Some(meta) => {
            if meta.partitions != config.groups.offsets_partitions {
                tracing::warn!(
                    configured = config.groups.offsets_partitions,
                    existing = meta.partitions,
                    "__consumer_offsets exists with another partition count; keeping it"
                );
                config.groups.offsets_partitions = meta.partitions;
            }
        }
        None => {
            let meta = offsets_topic_meta(config);
            // Before the executors start: no executor to run the `Disk` path on, none to block.
            crate::metadata::topics::save_blocking(&config.data_dir, &meta)?;
            tracing::info!(partitions = meta.partitions, "created __consumer_offsets");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_on_kafkas_partitions() {
        // "test".hashCode() == 3556498 in Java.
        assert_eq!(partition_for("test", 50), 3_556_498 % 50);
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash: "my-group-é" mixes in a non-ASCII code unit.
        let p = partition_for("consumer-group-42", 50);
        assert!((0..50).contains(&p));
    }

    #[test]
    fn the_offsets_topic_is_never_cleaned_by_retention() {
        let config =
            crate::config::Config::resolve(crate::config::Settings::default()).expect("defaults");
        let meta = offsets_topic_meta(&config);
        assert_eq!(meta.name, OFFSETS_TOPIC);
        assert_eq!(meta.partitions, 50);
        let log = meta.config.log_config();
        log.validate();
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.retention_bytes, None);
        assert_eq!(log.segment_bytes_max, 1 << 20);
        assert!(log.batch_bytes_max <= log.segment_bytes_max as usize);
    }

    #[test]
    fn member_ids_are_bounded_whatever_the_client_id() {
        let id = new_member_id("rdkafka");
        assert!(
            id.starts_with("rdkafka-") && id.len() == "rdkafka-".len() + 36,
            "{id}"
        );
        let long = "é".repeat(20_000);
        let id = new_member_id(&long);
        assert!(id.len() <= MEMBER_ID_CLIENT_BYTES_MAX + 37, "{}", id.len());
        assert_ne!(new_member_id("c"), new_member_id("c"));
    }
}
