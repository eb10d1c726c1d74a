//! Consumer group administration on [`Admin`]: list and describe groups, read and set their
//! committed offsets, delete them. A group's requests go to its coordinator (FindCoordinator,
//! asked again for each call: admin calls are rare); ListGroups asks every broker, since each
//! lists only the groups it coordinates.

use spate_wire::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use spate_wire::kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use spate_wire::kafka_protocol::protocol::{Decodable, StrBytes};

use crate::admin::Admin;
use crate::connection::Connection;
use crate::error::ClientError;
use crate::protocol::{
    DELETE_GROUPS_VERSION, DESCRIBE_GROUPS_VERSION, LIST_GROUPS_VERSION, OFFSET_COMMIT_VERSION,
    OFFSET_FETCH_VERSION,
};

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// The protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    pub state: String,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    pub state: String,
    /// The protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// The assignor in use (`range`, `cooperative-sticky`, ...), empty unless Stable.
    pub protocol: String,
    /// The members.
    pub members: Vec<GroupMember>,
}

/// One member and, for consumer groups, the partitions assigned to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `group.instance.id` (static membership).
    pub instance_id: Option<String>,
    /// The client id it connected with.
    pub client_id: String,
    /// Its address as the broker saw it (`/127.0.0.1`).
    pub client_host: String,
    /// (topic, partition), decoded from the consumer protocol assignment.
    pub assignment: Vec<(String, i32)>,
}

/// A committed offset of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset the group will read.
    pub offset: i64,
    /// The metadata string committed with it.
    pub metadata: String,
}

fn group_id(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_owned()))
}

/// The partitions of a consumer protocol assignment (`version: i16` then the struct).
fn decode_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut rest = bytes::Bytes::copy_from_slice(&bytes[2..]);
    match ConsumerProtocolAssignment::decode(&mut rest, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn list_groups_at(conn: &mut Connection) -> Result<Vec<GroupListing>, ClientError> {
    let response: ListGroupsResponse = conn
        .call(
            ApiKey::ListGroups,
            LIST_GROUPS_VERSION,
            &ListGroupsRequest::default(),
        )
        .await?;
    ClientError::check(response.error_code, || "list groups".to_owned())?;
    Ok(response
        .groups
        .into_iter()
        .map(|g| GroupListing {
            group_id: g.group_id.0.to_string(),
            protocol_type: g.protocol_type.to_string(),
            state: g.group_state.to_string(),
        })
        .collect())
}

/// Runs a group call, again after the backoff (up to `retries_max` times) while the answer
/// says the coordinator moved or is not ready (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
/// COORDINATOR_LOAD_IN_PROGRESS): each attempt asks FindCoordinator afresh.
macro_rules! at_coordinator {
    ($admin:ident, $call:expr) => {{
        let mut attempts = 0;
        loop {
            match $call {
                Err(e)
                    if e.finds_coordinator() && attempts < $admin.cluster.config().retries_max =>
                {
                    attempts += 1;
                    $admin.cluster.backoff().await;
                }
                result => break result,
            }
        }
    }};
}

impl Admin {
    /// A group's state and members (state `Dead` if the broker does not know it).
    ///
    /// # Errors
    /// Connection or codec errors, or the group's error code (after retries while the
    /// coordinator moves).
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        at_coordinator!(self, self.describe_group_once(group).await)
    }

    /// Every committed offset of a group.
    ///
    /// # Errors
    /// Connection or codec errors, or the broker's error code (after retries while the
    /// coordinator moves).
    pub async fn committed_offsets(
        &mut self,
        group: &str,
    ) -> Result<Vec<CommittedOffset>, ClientError> {
        at_coordinator!(self, self.committed_offsets_once(group).await)
    }

    /// Commits offsets for a group that has no active members (the broker refuses otherwise
    /// with UNKNOWN_MEMBER_ID): `(topic, partition, offset)`.
    ///
    /// # Errors
    /// Connection or codec errors, or the first partition's error code (after retries while
    /// the coordinator moves).
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), ClientError> {
        at_coordinator!(self, self.commit_offsets_once(group, offsets).await)
    }

    /// Deletes an empty group and its committed offsets.
    ///
    /// # Errors
    /// Connection or codec errors, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND (after retries while
    /// the coordinator moves).
    pub async fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        at_coordinator!(self, self.delete_group_once(group).await)
    }

    /// The connection to `group`'s coordinator.
    async fn coordinator_connection(
        &mut self,
        group: &str,
    ) -> Result<&mut Connection, ClientError> {
        let coordinator = self.cluster.coordinator(group).await?;
        self.cluster.broker_connection(coordinator).await
    }

    /// Every consumer group of the cluster: ListGroups at every broker (each lists the groups
    /// it coordinates), merged.
    ///
    /// # Errors
    /// Connection or codec errors, or a broker's error code.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        let brokers: Vec<_> = self.cluster.broker_ids().collect();
        let mut groups: Vec<GroupListing> = Vec::new();
        if brokers.is_empty() {
            let conn = self.cluster.connection().await?;
            groups.extend(list_groups_at(conn).await?);
        }
        for broker in brokers {
            let conn = self.cluster.broker_connection(broker).await?;
            for g in list_groups_at(conn).await? {
                if !groups.iter().any(|x| x.group_id == g.group_id) {
                    groups.push(g);
                }
            }
        }
        Ok(groups)
    }

    async fn describe_group_once(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let conn = self.coordinator_connection(group).await?;
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let response: DescribeGroupsResponse = conn
            .call(ApiKey::DescribeGroups, DESCRIBE_GROUPS_VERSION, &request)
            .await?;
        let g = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::InvalidArgument(format!("no result for group {group}")))?;
        ClientError::check(g.error_code, || format!("describe group {group}"))?;
        let consumer = g.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: group.to_owned(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(&m.member_assignment)
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }

    async fn committed_offsets_once(
        &mut self,
        group: &str,
    ) -> Result<Vec<CommittedOffset>, ClientError> {
        let conn = self.coordinator_connection(group).await?;
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(None);
        let response: OffsetFetchResponse = conn
            .call(ApiKey::OffsetFetch, OFFSET_FETCH_VERSION, &request)
            .await?;
        ClientError::check(response.error_code, || format!("fetch offsets of {group}"))?;
        let mut out = Vec::new();
        for t in response.topics {
            for p in t.partitions {
                ClientError::check(p.error_code, || {
                    format!("offset of {group} {}/{}", t.name.0, p.partition_index)
                })?;
                if p.committed_offset >= 0 {
                    out.push(CommittedOffset {
                        topic: t.name.0.to_string(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        metadata: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    async fn commit_offsets_once(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), ClientError> {
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let p = OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset);
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(topics);
        let conn = self.coordinator_connection(group).await?;
        let response: OffsetCommitResponse = conn
            .call(ApiKey::OffsetCommit, OFFSET_COMMIT_VERSION, &request)
            .await?;
        for t in &response.topics {
            for p in &t.partitions {
                ClientError::check(p.error_code, || {
                    format!("commit {group} {}/{}", t.name.0, p.partition_index)
                })?;
            }
        }
        Ok(())
    }

    async fn delete_group_once(&mut self, group: &str) -> Result<(), ClientError> {
        let conn = self.coordinator_connection(group).await?;
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let response: DeleteGroupsResponse = conn
            .call(ApiKey::DeleteGroups, DELETE_GROUPS_VERSION, &request)
            .await?;
        let r = response
            .results
            .iter()
            .find(|r| r.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::InvalidArgument(format!("no result for group {group}")))?;
        ClientError::check(r.error_code, || format!("delete group {group}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_wire::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use spate_wire::kafka_protocol::protocol::Encodable;

    #[test]
    fn consumer_assignments_decode_to_topic_partitions() {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut bytes = bytes::BytesMut::new();
        bytes.extend_from_slice(&1i16.to_be_bytes());
        assignment.encode(&mut bytes, 1).unwrap();
        assert_eq!(
            decode_assignment(&bytes),
            vec![("t".to_owned(), 0), ("t".to_owned(), 2)]
        );
        assert!(decode_assignment(&[0]).is_empty());
    }
}
