//! The one table of API versions Spate speaks, and ApiVersions answers built from it.
//!
//! [`SUPPORTED`] lists every API Spate has a decoder for, with the version range it accepts.
//! A broker does not advertise all of them: it passes the [`ApiSet`] of APIs it has handlers
//! for, and ApiVersions is answered from the intersection. Advertising an API the broker does not
//! handle makes clients switch features on (consumer groups, idempotence) and then fail.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::error::ErrorCode;

/// Versions Spate accepts for one API (both ends inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiRange {
    /// The API.
    pub api_key: ApiKey,
    /// Lowest version advertised.
    pub min: i16,
    /// Highest version advertised and decoded.
    pub max: i16,
}

impl ApiRange {
    /// Whether `version` is within the range.
    pub fn contains(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

const fn range(api_key: ApiKey, min: i16, max: i16) -> ApiRange {
    assert!(0 <= min && min <= max);
    ApiRange { api_key, min, max }
}

/// Produce versions that are advertised but refused when a request arrives: message formats
/// v0/v1 only. They stay in the advertised range because librdkafka before 2.11.1 disables
/// compression when a broker's minimum Produce version is above 0.
pub const PRODUCE_VERSION_DECODE_MIN: i16 = 3;

/// Highest ApiVersions version Spate understands; newer requests get the KIP-511 fallback.
pub const API_VERSIONS_VERSION_MAX: i16 = 4;

/// Every API Spate can decode, with the versions it accepts, sorted by API key.
///
/// Ranges come from what the clients Spate targets send (librdkafka, the Java client,
/// kafka-python, aiokafka): the old non-flexible versions stay because aiokafka only speaks
/// those, and Fetch stops at 12 because 13+ names topics by id.
pub const SUPPORTED: &[ApiRange] = &[
    range(ApiKey::Produce, 0, 11),
    range(ApiKey::Fetch, 4, 12),
    range(ApiKey::ListOffsets, 1, 7),
    range(ApiKey::Metadata, 0, 12),
    range(ApiKey::OffsetCommit, 2, 8),
    range(ApiKey::OffsetFetch, 1, 8),
    range(ApiKey::FindCoordinator, 0, 4),
    range(ApiKey::JoinGroup, 0, 7),
    range(ApiKey::Heartbeat, 0, 4),
    range(ApiKey::LeaveGroup, 0, 4),
    range(ApiKey::SyncGroup, 0, 5),
    range(ApiKey::DescribeGroups, 0, 5),
    range(ApiKey::ListGroups, 0, 4),
    range(ApiKey::ApiVersions, 0, API_VERSIONS_VERSION_MAX),
    range(ApiKey::CreateTopics, 2, 7),
    range(ApiKey::DeleteTopics, 1, 6),
    range(ApiKey::DeleteRecords, 0, 2),
    range(ApiKey::InitProducerId, 0, 4),
    range(ApiKey::OffsetForLeaderEpoch, 2, 4),
    // The transaction APIs in the form clients before KIP-890 part 2 send (AddPartitionsToTxn v4+
    // is the batched broker-to-broker form; EndTxn v5 and TxnOffsetCommit/AddOffsetsToTxn v4
    // come with transaction.version 2).
    range(ApiKey::AddPartitionsToTxn, 0, 3),
    range(ApiKey::AddOffsetsToTxn, 0, 3),
    range(ApiKey::EndTxn, 0, 3),
    range(ApiKey::TxnOffsetCommit, 0, 3),
    range(ApiKey::DescribeConfigs, 1, 4),
    range(ApiKey::AlterConfigs, 0, 2),
    range(ApiKey::DescribeLogDirs, 1, 4),
    range(ApiKey::CreatePartitions, 0, 3),
    range(ApiKey::DeleteGroups, 0, 2),
    range(ApiKey::ElectLeaders, 0, 2),
    range(ApiKey::IncrementalAlterConfigs, 0, 1),
    range(ApiKey::AlterPartitionReassignments, 0, 0),
    range(ApiKey::ListPartitionReassignments, 0, 0),
    range(ApiKey::OffsetDelete, 0, 0),
    range(ApiKey::DescribeQuorum, 0, 2),
    range(ApiKey::DescribeCluster, 0, 2),
    range(ApiKey::DescribeProducers, 0, 0),
    range(ApiKey::UnregisterBroker, 0, 0),
    range(ApiKey::DescribeTransactions, 0, 0),
    // v2 adds a transactional id pattern (KIP-1152), not implemented.
    range(ApiKey::ListTransactions, 0, 1),
];

const _: () = {
    let mut i = 1;
    while i < SUPPORTED.len() {
        assert!((SUPPORTED[i - 1].api_key as i16) < (SUPPORTED[i].api_key as i16));
        i += 1;
    }
    assert!(PRODUCE_VERSION_DECODE_MIN > SUPPORTED[0].min);
};

/// The supported range for `api_key`, if Spate decodes that API at all.
pub fn supported(api_key: ApiKey) -> Option<ApiRange> {
    SUPPORTED.iter().copied().find(|r| r.api_key == api_key)
}

/// A set of API keys (Kafka's keys are below 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ApiSet(u128);

impl ApiSet {
    /// No API.
    pub const EMPTY: ApiSet = ApiSet(0);

    /// Every API in [`SUPPORTED`].
    pub fn all_supported() -> ApiSet {
        SUPPORTED
            .iter()
            .fold(ApiSet::EMPTY, |set, r| set.with(r.api_key))
    }

    /// The APIs a broker without consumer groups or transactions serves: the data and admin
    /// paths only.
    pub fn core() -> ApiSet {
        [
            ApiKey::ApiVersions,
            ApiKey::Metadata,
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::ListOffsets,
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::DescribeConfigs,
            ApiKey::OffsetForLeaderEpoch,
        ]
        .into_iter()
        .fold(ApiSet::EMPTY, ApiSet::with)
    }

    /// This set plus `api_key`.
    ///
    /// # Panics
    /// If the key is 128 or more (Kafka has none).
    pub fn with(self, api_key: ApiKey) -> ApiSet {
        let bit = api_key as i16;
        assert!((0..128).contains(&bit));
        ApiSet(self.0 | (1u128 << bit))
    }

    /// This set without `api_key`.
    pub fn without(self, api_key: ApiKey) -> ApiSet {
        let bit = api_key as i16;
        assert!((0..128).contains(&bit));
        ApiSet(self.0 & !(1u128 << bit))
    }

    /// Whether `api_key` is in the set.
    pub fn contains(&self, api_key: ApiKey) -> bool {
        let bit = api_key as i16;
        (0..128).contains(&bit) && self.0 & (1u128 << bit) != 0
    }
}

/// What a broker advertises: the supported ranges of the APIs it has enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionTable {
    enabled: ApiSet,
}

impl VersionTable {
    /// A table advertising the APIs of `enabled` that Spate supports. ApiVersions itself is
    /// always enabled: without it no client can connect.
    pub fn new(enabled: ApiSet) -> VersionTable {
        VersionTable {
            enabled: enabled.with(ApiKey::ApiVersions),
        }
    }

    /// The advertised range of `api_key`, or `None` if it is not advertised.
    pub fn range(&self, api_key: ApiKey) -> Option<ApiRange> {
        supported(api_key).filter(|_| self.enabled.contains(api_key))
    }

    /// Whether a request of `api_key` at `version` is advertised here and decodable: the check
    /// a broker makes before dispatching (Produce v0-v2 are advertised but not decodable).
    pub fn allows(&self, api_key: ApiKey, version: i16) -> bool {
        let decodable = api_key != ApiKey::Produce || version >= PRODUCE_VERSION_DECODE_MIN;
        decodable && self.range(api_key).is_some_and(|r| r.contains(version))
    }

    /// Every advertised range, sorted by API key.
    pub fn ranges(&self) -> impl Iterator<Item = ApiRange> + '_ {
        SUPPORTED
            .iter()
            .copied()
            .filter(|r| self.enabled.contains(r.api_key))
    }

    /// The ApiVersions answer to a request of `request_version`, and the version to encode it in.
    ///
    /// A request newer than [`API_VERSIONS_VERSION_MAX`] gets the KIP-511 answer: version 0,
    /// error UNSUPPORTED_VERSION, and the full list, so the client can retry with a version it
    /// finds there.
    pub fn api_versions_response(&self, request_version: i16) -> (ApiVersionsResponse, i16) {
        let mut response = ApiVersionsResponse::default();
        response.api_keys = self
            .ranges()
            .map(|r| {
                let mut v = ApiVersion::default();
                v.api_key = r.api_key as i16;
                v.min_version = r.min;
                v.max_version = r.max;
                v
            })
            .collect();
        if (0..=API_VERSIONS_VERSION_MAX).contains(&request_version) {
            response.error_code = ErrorCode::None.code();
            (response, request_version)
        } else {
            response.error_code = ErrorCode::UnsupportedVersion.code();
            (response, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_issue_ranges() {
        let r = |k| supported(k).map(|r: ApiRange| (r.min, r.max));
        assert_eq!(r(ApiKey::ApiVersions), Some((0, 4)));
        assert_eq!(r(ApiKey::Metadata), Some((0, 12)));
        assert_eq!(r(ApiKey::Produce).map(|(min, _)| min), Some(0));
        assert!(r(ApiKey::Produce).unwrap().1 >= 9);
        assert_eq!(r(ApiKey::Fetch), Some((4, 12)));
        assert_eq!(r(ApiKey::ListOffsets), Some((1, 7)));
        assert_eq!(r(ApiKey::CreateTopics), Some((2, 7)));
        assert_eq!(r(ApiKey::DeleteTopics), Some((1, 6)));
        assert_eq!(r(ApiKey::DescribeConfigs), Some((1, 4)));
        assert_eq!(r(ApiKey::OffsetForLeaderEpoch), Some((2, 4)));
        assert_eq!(r(ApiKey::FindCoordinator), Some((0, 4)));
        assert_eq!(r(ApiKey::JoinGroup), Some((0, 7)));
        assert_eq!(r(ApiKey::SyncGroup), Some((0, 5)));
        assert_eq!(r(ApiKey::Heartbeat), Some((0, 4)));
        assert_eq!(r(ApiKey::LeaveGroup), Some((0, 4)));
        assert_eq!(r(ApiKey::OffsetCommit), Some((2, 8)));
        assert_eq!(r(ApiKey::OffsetFetch), Some((1, 8)));
        assert_eq!(r(ApiKey::InitProducerId), Some((0, 4)));
        assert_eq!(r(ApiKey::CreatePartitions), Some((0, 3)));
        assert_eq!(r(ApiKey::DescribeGroups), Some((0, 5)));
        assert_eq!(r(ApiKey::ListGroups), Some((0, 4)));
        assert_eq!(r(ApiKey::DeleteGroups), Some((0, 2)));
        assert_eq!(r(ApiKey::OffsetDelete), Some((0, 0)));
        assert_eq!(r(ApiKey::DescribeQuorum), Some((0, 2)));
        assert_eq!(r(ApiKey::DeleteRecords), Some((0, 2)));
        assert_eq!(r(ApiKey::DescribeLogDirs), Some((1, 4)));
        assert_eq!(r(ApiKey::ElectLeaders), Some((0, 2)));
        assert_eq!(r(ApiKey::AlterConfigs), Some((0, 2)));
        assert_eq!(r(ApiKey::IncrementalAlterConfigs), Some((0, 1)));
        assert_eq!(r(ApiKey::AlterPartitionReassignments), Some((0, 0)));
        assert_eq!(r(ApiKey::ListPartitionReassignments), Some((0, 0)));
        assert_eq!(r(ApiKey::AddPartitionsToTxn), Some((0, 3)));
        assert_eq!(r(ApiKey::AddOffsetsToTxn), Some((0, 3)));
        assert_eq!(r(ApiKey::EndTxn), Some((0, 3)));
        assert_eq!(r(ApiKey::TxnOffsetCommit), Some((0, 3)));
        assert_eq!(r(ApiKey::DescribeProducers), Some((0, 0)));
        assert_eq!(r(ApiKey::DescribeTransactions), Some((0, 0)));
        assert_eq!(r(ApiKey::ListTransactions), Some((0, 1)));
        assert_eq!(SUPPORTED.len(), 39);
        assert_eq!(r(ApiKey::ConsumerGroupHeartbeat), None);
    }

    #[test]
    fn disabled_apis_are_not_advertised() {
        let table = VersionTable::new(ApiSet::core());
        let (response, version) = table.api_versions_response(3);
        assert_eq!(version, 3);
        assert_eq!(response.error_code, 0);
        let keys: Vec<i16> = response.api_keys.iter().map(|k| k.api_key).collect();
        assert_eq!(keys, vec![0, 1, 2, 3, 18, 19, 20, 23, 32]);
        assert!(table.range(ApiKey::JoinGroup).is_none());
        let produce = &response.api_keys[0];
        assert_eq!((produce.min_version, produce.max_version), (0, 11));
    }

    #[test]
    fn allows_checks_enabled_set_range_and_produce_minimum() {
        let table = VersionTable::new(ApiSet::core());
        assert!(table.allows(ApiKey::Fetch, 12));
        assert!(!table.allows(ApiKey::Fetch, 13));
        assert!(!table.allows(ApiKey::Fetch, 3));
        assert!(
            !table.allows(ApiKey::JoinGroup, 5),
            "group APIs are off in the core set"
        );
        assert!(!table.allows(ApiKey::Produce, 2));
        assert!(table.allows(ApiKey::Produce, 3));
        assert!(table.allows(ApiKey::ApiVersions, 0));
    }

    #[test]
    fn api_versions_is_always_advertised() {
        let table = VersionTable::new(ApiSet::EMPTY);
        let keys: Vec<ApiKey> = table.ranges().map(|r| r.api_key).collect();
        assert_eq!(keys, vec![ApiKey::ApiVersions]);
    }

    #[test]
    fn too_new_api_versions_request_gets_the_kip_511_fallback() {
        let table = VersionTable::new(ApiSet::all_supported());
        let (response, version) = table.api_versions_response(API_VERSIONS_VERSION_MAX + 1);
        assert_eq!(version, 0);
        assert_eq!(response.error_code, ErrorCode::UnsupportedVersion.code());
        assert_eq!(response.api_keys.len(), SUPPORTED.len());
        let av = response.api_keys.iter().find(|k| k.api_key == 18).unwrap();
        assert_eq!(
            (av.min_version, av.max_version),
            (0, API_VERSIONS_VERSION_MAX)
        );
    }

    #[test]
    fn api_set_adds_and_removes() {
        let set = ApiSet::EMPTY.with(ApiKey::Fetch).with(ApiKey::Produce);
        assert!(set.contains(ApiKey::Fetch));
        assert!(!set.contains(ApiKey::Metadata));
        assert!(!set.without(ApiKey::Fetch).contains(ApiKey::Fetch));
        assert!(set.without(ApiKey::Fetch).contains(ApiKey::Produce));
    }
}
