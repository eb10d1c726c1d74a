//! The records of the metadata log and their encoding.
//!
//! Each Raft entry carries one [`MetadataRecord`], encoded by Spate's own compact format:
//!
//! ```text
//! record  = format_version:u8 (=1)  type:u8  fields...
//! string  = len:u16 bytes (UTF-8, len <= the field's limit)
//! list    = count:u16 items (count <= the field's limit)
//! option  = 0 | 1 value
//! integers are big-endian and fixed width
//! ```
//!
//! A Raft entry carries a *batch* of records, applied all or nothing (a topic and its partitions, or a
//! broker's fencing and its partitions losing their leader, commit together or not at all):
//!
//! ```text
//! batch   = format_version:u8 (=1)  count:u32  (type:u8 fields...){count}
//! ```
//!
//! The format is versioned as a whole (the first byte) so that a later version can add records or
//! fields; a decoder refuses versions it does not know instead of guessing. The decoder never panics:
//! it checks every length against the bytes left and against the field's limit.

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{Incarnation, LeaderEpoch, NodeId, PartitionEpoch, PartitionIndex, TopicId};

/// The format version written by this build.
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Kafka's limit on a topic name.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// A host name (RFC 1035's 253 plus room for an IPv6 literal's brackets).
pub const HOST_BYTES_MAX: usize = 255;
/// A rack name.
pub const RACK_BYTES_MAX: usize = 255;
/// A config key.
pub const CONFIG_KEY_BYTES_MAX: usize = 255;
/// A config value.
pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;
/// Configs set on one topic.
pub const CONFIGS_MAX: usize = 256;
/// Replicas of one partition (and so ISR members).
pub const REPLICAS_MAX: usize = 256;
/// The largest encoded record: a CreateTopic with every config at its limits. Each Raft entry holds one
/// record, so this also bounds an entry's payload.
pub const RECORD_BYTES_MAX: usize = 2
    + (2 + TOPIC_NAME_BYTES_MAX)
    + 16
    + 2
    + CONFIGS_MAX * (4 + CONFIG_KEY_BYTES_MAX + CONFIG_VALUE_BYTES_MAX);

/// Records in one batch: one Raft entry, applied all or nothing.
pub const RECORDS_PER_BATCH_MAX: usize = 65_536;
/// The largest encoded batch, and so the largest entry payload.
pub const BATCH_BYTES_MAX: usize = 2 * 1024 * 1024;
/// The smallest encoded record (an UnregisterBroker: tag and node id), to bound a decoder's allocation.
const RECORD_BYTES_MIN: usize = 5;

const _: () = assert!(RECORD_BYTES_MAX + 5 <= BATCH_BYTES_MAX);

// A u16 length prefix must be able to express every limit.
const _: () = assert!(TOPIC_NAME_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(CONFIG_VALUE_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(CONFIGS_MAX <= u16::MAX as usize && REPLICAS_MAX <= u16::MAX as usize);
const _: () = assert!(HOST_BYTES_MAX <= u16::MAX as usize && RACK_BYTES_MAX <= u16::MAX as usize);

/// Where a broker listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or address, at most [`HOST_BYTES_MAX`] bytes.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A change of a partition's leader carried by [`MetadataRecord::ChangePartition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaderChange {
    /// The leader stays as it is.
    Unchanged,
    /// The partition has no leader (its replicas are all fenced): it is offline.
    NoLeader,
    /// The partition is led by this broker.
    To(NodeId),
}

/// One change to the cluster's metadata: the unit the controller quorum replicates and every broker
/// replays, in log order, into its [`MetadataImage`](crate::image::MetadataImage).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetadataRecord {
    /// A broker (re)started and registered; it starts fenced until it heartbeats.
    RegisterBroker {
        /// Its id.
        node: NodeId,
        /// Its run; larger than any earlier registration of the same id.
        incarnation: Incarnation,
        /// Where Kafka clients connect.
        client: Endpoint,
        /// Where other brokers connect (Raft and replication).
        cluster: Endpoint,
        /// Its rack, for rack-aware placement later.
        rack: Option<String>,
    },
    /// The broker missed its session timeout: it may not lead partitions.
    FenceBroker {
        /// Its id.
        node: NodeId,
        /// The run being fenced; a stale incarnation is refused.
        incarnation: Incarnation,
    },
    /// The broker heartbeats again: it may lead partitions.
    UnfenceBroker {
        /// Its id.
        node: NodeId,
        /// The run being unfenced.
        incarnation: Incarnation,
    },
    /// The broker asked to stop: it leads nothing from now on and stays fenced.
    ControlledShutdown {
        /// Its id.
        node: NodeId,
        /// The run shutting down.
        incarnation: Incarnation,
    },
    /// The broker leaves the cluster for good; it must lead and host nothing.
    UnregisterBroker {
        /// Its id.
        node: NodeId,
    },
    /// A new topic, with no partitions yet (CreatePartition records follow).
    CreateTopic {
        /// Its name, at most [`TOPIC_NAME_BYTES_MAX`] bytes.
        name: String,
        /// Its id.
        topic_id: TopicId,
        /// Its configs, in the order given.
        configs: Vec<(String, String)>,
    },
    /// A new partition of an existing topic.
    CreatePartition {
        /// The topic.
        topic_id: TopicId,
        /// The next index of that topic (partitions are created in order).
        index: PartitionIndex,
        /// The brokers holding it, preferred leader first.
        replicas: Vec<NodeId>,
        /// The in-sync replicas, a subset of `replicas`.
        isr: Vec<NodeId>,
        /// The leader, a member of `isr`, or `None` when offline.
        leader: Option<NodeId>,
        /// Its first leader epoch.
        leader_epoch: LeaderEpoch,
        /// Its first partition epoch.
        partition_epoch: PartitionEpoch,
    },
    /// A partition's leader, ISR or replicas change.
    ChangePartition {
        /// The topic.
        topic_id: TopicId,
        /// The partition.
        index: PartitionIndex,
        /// The new leader.
        leader: LeaderChange,
        /// The new ISR, if it changes.
        isr: Option<Vec<NodeId>>,
        /// The new replicas, if they change.
        replicas: Option<Vec<NodeId>>,
        /// The leader epoch after the change: equal to the current one unless the leader changes, then larger.
        leader_epoch: LeaderEpoch,
        /// The partition epoch after the change: larger than the current one.
        partition_epoch: PartitionEpoch,
        /// The replicas a reassignment adds, if they change (`Some(vec![])` clears them).
        adding: Option<Vec<NodeId>>,
        /// The replicas a reassignment removes, if they change (`Some(vec![])` clears them).
        removing: Option<Vec<NodeId>>,
    },
    /// The topic and its partitions are gone.
    DeleteTopic {
        /// The topic.
        topic_id: TopicId,
    },
    /// Sets (`Some`) or removes (`None`) one config of a topic.
    SetTopicConfig {
        /// The topic.
        topic_id: TopicId,
        /// The key.
        key: String,
        /// The value, or `None` to return to the default.
        value: Option<String>,
    },
    /// An operator starts (`true`) or cancels (`false`) the decommission of a broker: while it
    /// drains, the controller moves its leaderships and then its replicas to other brokers, and
    /// places nothing new on it. The flag outlives the broker's restarts (a new incarnation
    /// keeps draining) and goes with its unregistration.
    SetBrokerDraining {
        /// Its id.
        node: NodeId,
        /// Whether it drains from now on.
        draining: bool,
    },
    /// A block of producer ids handed to one broker, `[first_id, first_id + count)`.
    AllocateProducerIds {
        /// The broker that asked.
        node: NodeId,
        /// The first id of the block; must equal the image's next producer id.
        first_id: i64,
        /// How many ids.
        count: i32,
    },
}

mod tag {
    pub const REGISTER_BROKER: u8 = 1;
    pub const FENCE_BROKER: u8 = 2;
    pub const UNFENCE_BROKER: u8 = 3;
    pub const CONTROLLED_SHUTDOWN: u8 = 4;
    pub const UNREGISTER_BROKER: u8 = 5;
    pub const CREATE_TOPIC: u8 = 6;
    pub const CREATE_PARTITION: u8 = 7;
    pub const CHANGE_PARTITION: u8 = 8;
    pub const DELETE_TOPIC: u8 = 9;
    pub const SET_TOPIC_CONFIG: u8 = 10;
    pub const ALLOCATE_PRODUCER_IDS: u8 = 11;
    /// A ChangePartition that also changes a reassignment's adding or removing replicas: tag 8's
    /// fields, then `adding` and `removing` as optional lists. A change that touches neither is
    /// still written as tag 8, so logs written before reassignment existed read the same.
    pub const CHANGE_PARTITION_REASSIGNMENT: u8 = 12;
    pub const SET_BROKER_DRAINING: u8 = 13;
}

impl MetadataRecord {
    /// Encodes the record.
    ///
    /// # Panics
    ///
    /// Panics if a string or list is above its limit: records are built by the controller from validated
    /// input, so that is a programmer error.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let mut w = Writer { out: &mut out };
        w.u8(RECORD_FORMAT_VERSION);
        self.write(&mut w);
        assert!(out.len() <= RECORD_BYTES_MAX);
        out
    }

    /// Decodes a record written by [`MetadataRecord::to_bytes`].
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for truncated input, an unknown version or type, a length above its limit,
    /// non-UTF-8 text or trailing bytes. Never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<MetadataRecord, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("record version")?;
        if version != RECORD_FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: "record",
                version,
            });
        }
        let record = Self::read(&mut r)?;
        r.finish("record")?;
        Ok(record)
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        match self {
            MetadataRecord::RegisterBroker {
                node,
                incarnation,
                client,
                cluster,
                rack,
            } => {
                w.u8(tag::REGISTER_BROKER);
                w.i32(node.0);
                w.u64(incarnation.0);
                write_endpoint(w, client);
                write_endpoint(w, cluster);
                write_opt_str(w, rack.as_deref(), RACK_BYTES_MAX);
            }
            MetadataRecord::FenceBroker { node, incarnation } => {
                w.u8(tag::FENCE_BROKER);
                w.i32(node.0);
                w.u64(incarnation.0);
            }
            MetadataRecord::UnfenceBroker { node, incarnation } => {
                w.u8(tag::UNFENCE_BROKER);
                w.i32(node.0);
                w.u64(incarnation.0);
            }
            MetadataRecord::ControlledShutdown { node, incarnation } => {
                w.u8(tag::CONTROLLED_SHUTDOWN);
                w.i32(node.0);
                w.u64(incarnation.0);
            }
            MetadataRecord::UnregisterBroker { node } => {
                w.u8(tag::UNREGISTER_BROKER);
                w.i32(node.0);
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                configs,
            } => {
                w.u8(tag::CREATE_TOPIC);
                w.str(name, TOPIC_NAME_BYTES_MAX);
                w.bytes16(&topic_id.0);
                w.count(configs.len(), CONFIGS_MAX);
                for (k, v) in configs {
                    w.str(k, CONFIG_KEY_BYTES_MAX);
                    w.str(v, CONFIG_VALUE_BYTES_MAX);
                }
            }
            MetadataRecord::CreatePartition {
                topic_id,
                index,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                w.u8(tag::CREATE_PARTITION);
                w.bytes16(&topic_id.0);
                w.i32(index.0);
                write_nodes(w, replicas);
                write_nodes(w, isr);
                write_opt_node(w, *leader);
                w.i32(leader_epoch.0);
                w.i32(partition_epoch.0);
            }
            MetadataRecord::ChangePartition {
                topic_id,
                index,
                leader,
                isr,
                replicas,
                leader_epoch,
                partition_epoch,
                adding,
                removing,
            } => {
                let reassignment = adding.is_some() || removing.is_some();
                w.u8(if reassignment {
                    tag::CHANGE_PARTITION_REASSIGNMENT
                } else {
                    tag::CHANGE_PARTITION
                });
                w.bytes16(&topic_id.0);
                w.i32(index.0);
                match leader {
                    LeaderChange::Unchanged => w.u8(0),
                    LeaderChange::NoLeader => w.u8(1),
                    LeaderChange::To(node) => {
                        w.u8(2);
                        w.i32(node.0);
                    }
                }
                for list in [isr, replicas] {
                    match list {
                        None => w.u8(0),
                        Some(nodes) => {
                            w.u8(1);
                            write_nodes(w, nodes);
                        }
                    }
                }
                w.i32(leader_epoch.0);
                w.i32(partition_epoch.0);
                if reassignment {
                    for list in [adding, removing] {
                        match list {
                            None => w.u8(0),
                            Some(nodes) => {
                                w.u8(1);
                                write_nodes(w, nodes);
                            }
                        }
                    }
                }
            }
            MetadataRecord::DeleteTopic { topic_id } => {
                w.u8(tag::DELETE_TOPIC);
                w.bytes16(&topic_id.0);
            }
            MetadataRecord::SetTopicConfig {
                topic_id,
                key,
                value,
            } => {
                w.u8(tag::SET_TOPIC_CONFIG);
                w.bytes16(&topic_id.0);
                w.str(key, CONFIG_KEY_BYTES_MAX);
                write_opt_str(w, value.as_deref(), CONFIG_VALUE_BYTES_MAX);
            }
            MetadataRecord::SetBrokerDraining { node, draining } => {
                w.u8(tag::SET_BROKER_DRAINING);
                w.i32(node.0);
                w.bool(*draining);
            }
            MetadataRecord::AllocateProducerIds {
                node,
                first_id,
                count,
            } => {
                w.u8(tag::ALLOCATE_PRODUCER_IDS);
                w.i32(node.0);
                w.i64(*first_id);
                w.i32(*count);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<MetadataRecord, DecodeError> {
        let t = r.u8("record type")?;
        Ok(match t {
            tag::REGISTER_BROKER => MetadataRecord::RegisterBroker {
                node: NodeId(r.i32("node")?),
                incarnation: Incarnation(r.u64("incarnation")?),
                client: read_endpoint(r)?,
                cluster: read_endpoint(r)?,
                rack: read_opt_str(r, "rack", RACK_BYTES_MAX)?,
            },
            tag::FENCE_BROKER => MetadataRecord::FenceBroker {
                node: NodeId(r.i32("node")?),
                incarnation: Incarnation(r.u64("incarnation")?),
            },
            tag::UNFENCE_BROKER => MetadataRecord::UnfenceBroker {
                node: NodeId(r.i32("node")?),
                incarnation: Incarnation(r.u64("incarnation")?),
            },
            tag::CONTROLLED_SHUTDOWN => MetadataRecord::ControlledShutdown {
                node: NodeId(r.i32("node")?),
                incarnation: Incarnation(r.u64("incarnation")?),
            },
            tag::UNREGISTER_BROKER => MetadataRecord::UnregisterBroker {
                node: NodeId(r.i32("node")?),
            },
            tag::CREATE_TOPIC => {
                let name = r.str("topic name", TOPIC_NAME_BYTES_MAX)?;
                let topic_id = TopicId(r.bytes16("topic id")?);
                let n = r.count("configs", CONFIGS_MAX)?;
                let mut configs = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = r.str("config key", CONFIG_KEY_BYTES_MAX)?;
                    let v = r.str("config value", CONFIG_VALUE_BYTES_MAX)?;
                    configs.push((k, v));
                }
                MetadataRecord::CreateTopic {
                    name,
                    topic_id,
                    configs,
                }
            }
            tag::CREATE_PARTITION => MetadataRecord::CreatePartition {
                topic_id: TopicId(r.bytes16("topic id")?),
                index: PartitionIndex(r.i32("partition index")?),
                replicas: read_nodes(r, "replicas")?,
                isr: read_nodes(r, "isr")?,
                leader: read_opt_node(r)?,
                leader_epoch: LeaderEpoch(r.i32("leader epoch")?),
                partition_epoch: PartitionEpoch(r.i32("partition epoch")?),
            },
            t @ (tag::CHANGE_PARTITION | tag::CHANGE_PARTITION_REASSIGNMENT) => {
                let topic_id = TopicId(r.bytes16("topic id")?);
                let index = PartitionIndex(r.i32("partition index")?);
                let leader = match r.u8("leader change")? {
                    0 => LeaderChange::Unchanged,
                    1 => LeaderChange::NoLeader,
                    2 => LeaderChange::To(NodeId(r.i32("leader")?)),
                    tag => {
                        return Err(DecodeError::InvalidTag {
                            field: "leader change",
                            tag,
                        })
                    }
                };
                let isr = read_opt_nodes(r, "isr")?;
                let replicas = read_opt_nodes(r, "replicas")?;
                let leader_epoch = LeaderEpoch(r.i32("leader epoch")?);
                let partition_epoch = PartitionEpoch(r.i32("partition epoch")?);
                let (adding, removing) = if t == tag::CHANGE_PARTITION_REASSIGNMENT {
                    let adding = read_opt_nodes(r, "adding replicas")?;
                    let removing = read_opt_nodes(r, "removing replicas")?;
                    if adding.is_none() && removing.is_none() {
                        // The encoder writes tag 8 for this: only one encoding per record.
                        return Err(DecodeError::Invalid {
                            what: "reassignment change",
                            reason: "neither adding nor removing replicas".into(),
                        });
                    }
                    (adding, removing)
                } else {
                    (None, None)
                };
                MetadataRecord::ChangePartition {
                    topic_id,
                    index,
                    leader,
                    isr,
                    replicas,
                    leader_epoch,
                    partition_epoch,
                    adding,
                    removing,
                }
            }
            tag::DELETE_TOPIC => MetadataRecord::DeleteTopic {
                topic_id: TopicId(r.bytes16("topic id")?),
            },
            tag::SET_TOPIC_CONFIG => MetadataRecord::SetTopicConfig {
                topic_id: TopicId(r.bytes16("topic id")?),
                key: r.str("config key", CONFIG_KEY_BYTES_MAX)?,
                value: read_opt_str(r, "config value", CONFIG_VALUE_BYTES_MAX)?,
            },
            tag::SET_BROKER_DRAINING => MetadataRecord::SetBrokerDraining {
                node: NodeId(r.i32("node")?),
                draining: r.bool("draining")?,
            },
            tag::ALLOCATE_PRODUCER_IDS => MetadataRecord::AllocateProducerIds {
                node: NodeId(r.i32("node")?),
                first_id: r.i64("first producer id")?,
                count: r.i32("producer id count")?,
            },
            tag => {
                return Err(DecodeError::InvalidTag {
                    field: "record type",
                    tag,
                })
            }
        })
    }
}

/// Why a batch cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// No records: a batch must change something.
    #[error("empty batch")]
    Empty,
    /// Above [`RECORDS_PER_BATCH_MAX`] records or [`BATCH_BYTES_MAX`] bytes.
    #[error("batch of {records} records and {bytes} bytes is above the limits")]
    TooLarge {
        /// Records in the batch.
        records: usize,
        /// Its encoded size.
        bytes: usize,
    },
}

/// Encodes a batch of records: the payload of one Raft entry.
///
/// # Errors
///
/// [`BatchError`] for an empty batch or one above the limits (the caller splits or refuses it).
///
/// # Panics
///
/// Panics if a record is above its own limits, as [`MetadataRecord::to_bytes`].
pub fn encode_batch(records: &[MetadataRecord]) -> Result<Vec<u8>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::with_capacity(64 * records.len());
    let mut w = Writer { out: &mut out };
    w.u8(RECORD_FORMAT_VERSION);
    w.u32(u32::try_from(records.len()).unwrap_or(u32::MAX));
    for r in records {
        r.write(&mut w);
    }
    if records.len() > RECORDS_PER_BATCH_MAX || out.len() > BATCH_BYTES_MAX {
        return Err(BatchError::TooLarge {
            records: records.len(),
            bytes: out.len(),
        });
    }
    Ok(out)
}

/// Decodes a batch written by [`encode_batch`].
///
/// # Errors
///
/// [`DecodeError`] as [`MetadataRecord::from_bytes`], or for a count of 0 or above
/// [`RECORDS_PER_BATCH_MAX`], or input above [`BATCH_BYTES_MAX`]. Never panics.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>, DecodeError> {
    if bytes.len() > BATCH_BYTES_MAX {
        return Err(DecodeError::TooLong {
            field: "batch",
            len: bytes.len(),
            max: BATCH_BYTES_MAX,
        });
    }
    let mut r = Reader::new(bytes);
    let version = r.u8("batch version")?;
    if version != RECORD_FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion {
            what: "batch",
            version,
        });
    }
    let count = r.count32("batch records", RECORDS_PER_BATCH_MAX)?;
    if count == 0 {
        return Err(DecodeError::Invalid {
            what: "batch",
            reason: "no records".into(),
        });
    }
    // A lying count cannot make us allocate more than the input could hold.
    let mut records = Vec::with_capacity(count.min(bytes.len() / RECORD_BYTES_MIN));
    for _ in 0..count {
        records.push(MetadataRecord::read(&mut r)?);
    }
    r.finish("batch")?;
    Ok(records)
}

pub(crate) fn write_endpoint(w: &mut Writer<'_>, e: &Endpoint) {
    w.str(&e.host, HOST_BYTES_MAX);
    w.u16(e.port);
}

pub(crate) fn read_endpoint(r: &mut Reader<'_>) -> Result<Endpoint, DecodeError> {
    Ok(Endpoint {
        host: r.str("host", HOST_BYTES_MAX)?,
        port: r.u16("port")?,
    })
}

pub(crate) fn write_opt_str(w: &mut Writer<'_>, v: Option<&str>, max: usize) {
    match v {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.str(s, max);
        }
    }
}

pub(crate) fn read_opt_str(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    Ok(if r.bool(field)? {
        Some(r.str(field, max)?)
    } else {
        None
    })
}

pub(crate) fn write_nodes(w: &mut Writer<'_>, nodes: &[NodeId]) {
    w.count(nodes.len(), REPLICAS_MAX);
    for n in nodes {
        w.i32(n.0);
    }
}

pub(crate) fn read_nodes(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Vec<NodeId>, DecodeError> {
    let n = r.count(field, REPLICAS_MAX)?;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(NodeId(r.i32(field)?));
    }
    Ok(nodes)
}

fn read_opt_nodes(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<Vec<NodeId>>, DecodeError> {
    Ok(if r.bool(field)? {
        Some(read_nodes(r, field)?)
    } else {
        None
    })
}

pub(crate) fn write_opt_node(w: &mut Writer<'_>, node: Option<NodeId>) {
    match node {
        None => w.u8(0),
        Some(n) => {
            w.u8(1);
            w.i32(n.0);
        }
    }
}

pub(crate) fn read_opt_node(r: &mut Reader<'_>) -> Result<Option<NodeId>, DecodeError> {
    Ok(if r.bool("leader")? {
        Some(NodeId(r.i32("leader")?))
    } else {
        None
    })
}

#[cfg(test)]
pub(crate) mod strategies {
    //! proptest generators of records within their limits, shared with the image's tests.
    use super::*;
    use proptest::prelude::*;

    pub fn node() -> impl Strategy<Value = NodeId> {
        (-2i32..8).prop_map(NodeId)
    }

    pub fn nodes() -> impl Strategy<Value = Vec<NodeId>> {
        proptest::collection::vec(node(), 0..5)
    }

    pub fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[a-z0-9._\\-é]{{0,{}}}", max.min(40))).unwrap()
    }

    pub fn topic_id() -> impl Strategy<Value = TopicId> {
        (0u8..4).prop_map(|b| TopicId([b; 16]))
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        (text(HOST_BYTES_MAX), any::<u16>()).prop_map(|(host, port)| Endpoint { host, port })
    }

    fn leader_change() -> impl Strategy<Value = LeaderChange> {
        prop_oneof![
            Just(LeaderChange::Unchanged),
            Just(LeaderChange::NoLeader),
            node().prop_map(LeaderChange::To)
        ]
    }

    pub fn record() -> impl Strategy<Value = MetadataRecord> {
        prop_oneof![
            (
                node(),
                0u64..4,
                endpoint(),
                endpoint(),
                proptest::option::of(text(RACK_BYTES_MAX))
            )
                .prop_map(|(node, inc, client, cluster, rack)| {
                    MetadataRecord::RegisterBroker {
                        node,
                        incarnation: Incarnation(inc),
                        client,
                        cluster,
                        rack,
                    }
                }),
            (node(), 0u64..4).prop_map(|(node, i)| MetadataRecord::FenceBroker {
                node,
                incarnation: Incarnation(i)
            }),
            (node(), 0u64..4).prop_map(|(node, i)| MetadataRecord::UnfenceBroker {
                node,
                incarnation: Incarnation(i)
            }),
            (node(), 0u64..4).prop_map(|(node, i)| MetadataRecord::ControlledShutdown {
                node,
                incarnation: Incarnation(i)
            }),
            node().prop_map(|node| MetadataRecord::UnregisterBroker { node }),
            (node(), any::<bool>())
                .prop_map(|(node, draining)| MetadataRecord::SetBrokerDraining { node, draining }),
            (
                text(TOPIC_NAME_BYTES_MAX),
                topic_id(),
                proptest::collection::vec(
                    (text(CONFIG_KEY_BYTES_MAX), text(CONFIG_VALUE_BYTES_MAX)),
                    0..4
                )
            )
                .prop_map(|(name, topic_id, configs)| MetadataRecord::CreateTopic {
                    name,
                    topic_id,
                    configs
                }),
            (
                topic_id(),
                0i32..4,
                nodes(),
                nodes(),
                proptest::option::of(node()),
                0i32..4,
                0i32..4
            )
                .prop_map(|(topic_id, index, replicas, isr, leader, le, pe)| {
                    MetadataRecord::CreatePartition {
                        topic_id,
                        index: PartitionIndex(index),
                        replicas,
                        isr,
                        leader,
                        leader_epoch: LeaderEpoch(le),
                        partition_epoch: PartitionEpoch(pe),
                    }
                }),
            (
                topic_id(),
                0i32..4,
                leader_change(),
                proptest::option::of(nodes()),
                proptest::option::of(nodes()),
                0i32..4,
                0i32..4,
                proptest::option::of(nodes()),
                proptest::option::of(nodes()),
            )
                .prop_map(
                    |(topic_id, index, leader, isr, replicas, le, pe, adding, removing)| {
                        MetadataRecord::ChangePartition {
                            topic_id,
                            index: PartitionIndex(index),
                            leader,
                            isr,
                            replicas,
                            leader_epoch: LeaderEpoch(le),
                            partition_epoch: PartitionEpoch(pe),
                            adding,
                            removing,
                        }
                    }
                ),
            topic_id().prop_map(|topic_id| MetadataRecord::DeleteTopic { topic_id }),
            (
                topic_id(),
                text(CONFIG_KEY_BYTES_MAX),
                proptest::option::of(text(CONFIG_VALUE_BYTES_MAX))
            )
                .prop_map(|(topic_id, key, value)| MetadataRecord::SetTopicConfig {
                    topic_id,
                    key,
                    value
                }),
            (node(), any::<i64>(), any::<i32>()).prop_map(|(node, first_id, count)| {
                MetadataRecord::AllocateProducerIds {
                    node,
                    first_id,
                    count,
                }
            }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_record_round_trips(record in strategies::record()) {
            let bytes = record.to_bytes();
            prop_assert_eq!(MetadataRecord::from_bytes(&bytes), Ok(record));
        }

        #[test]
        fn arbitrary_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MetadataRecord::from_bytes(&bytes);
        }

        #[test]
        fn a_record_with_a_byte_flipped_or_cut_never_panics(
            record in strategies::record(), at in any::<usize>(), xor in 1u8..=255, cut in any::<bool>()
        ) {
            let mut bytes = record.to_bytes();
            let at = at % bytes.len();
            if cut { bytes.truncate(at) } else { bytes[at] ^= xor }
            let _ = MetadataRecord::from_bytes(&bytes);
        }
    }

    proptest! {
        #[test]
        fn any_batch_round_trips(records in proptest::collection::vec(strategies::record(), 1..8)) {
            let bytes = encode_batch(&records).unwrap();
            prop_assert_eq!(decode_batch(&bytes), Ok(records));
        }

        #[test]
        fn arbitrary_bytes_decode_as_a_batch_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_batch(&bytes);
            let mut versioned = vec![RECORD_FORMAT_VERSION];
            versioned.extend_from_slice(&bytes);
            let _ = decode_batch(&versioned);
        }

        #[test]
        fn a_batch_with_a_byte_flipped_or_cut_never_panics(
            records in proptest::collection::vec(strategies::record(), 1..6),
            at in any::<usize>(), xor in 1u8..=255, cut in any::<bool>()
        ) {
            let mut bytes = encode_batch(&records).unwrap();
            let at = at % bytes.len();
            if cut { bytes.truncate(at) } else { bytes[at] ^= xor }
            let _ = decode_batch(&bytes);
        }
    }

    #[test]
    fn empty_and_oversized_batches_are_refused() {
        assert_eq!(encode_batch(&[]), Err(BatchError::Empty));
        let huge =
            vec![MetadataRecord::UnregisterBroker { node: NodeId(1) }; RECORDS_PER_BATCH_MAX + 1];
        assert!(matches!(
            encode_batch(&huge),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_batch(&[RECORD_FORMAT_VERSION, 0, 0, 0, 0]),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            decode_batch(&[RECORD_FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn a_change_without_reassignment_lists_keeps_the_old_layout() {
        let change = |adding: Option<Vec<NodeId>>| MetadataRecord::ChangePartition {
            topic_id: TopicId([1; 16]),
            index: PartitionIndex(0),
            leader: LeaderChange::Unchanged,
            isr: None,
            replicas: None,
            leader_epoch: LeaderEpoch(1),
            partition_epoch: PartitionEpoch(2),
            adding,
            removing: None,
        };
        let old = change(None).to_bytes();
        assert_eq!(old[1], tag::CHANGE_PARTITION);
        assert_eq!(old.len(), 2 + 16 + 4 + 1 + 1 + 1 + 4 + 4);
        let new = change(Some(vec![NodeId(4)])).to_bytes();
        assert_eq!(new[1], tag::CHANGE_PARTITION_REASSIGNMENT);
        assert_eq!(&new[2..old.len()], &old[2..]);
        // The new tag with neither list is not a second encoding of the old record.
        let mut neither = old.clone();
        neither[1] = tag::CHANGE_PARTITION_REASSIGNMENT;
        neither.extend_from_slice(&[0, 0]);
        assert!(matches!(
            MetadataRecord::from_bytes(&neither),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn a_truncated_record_is_refused() {
        let record = MetadataRecord::FenceBroker {
            node: NodeId(3),
            incarnation: Incarnation(9),
        };
        let bytes = record.to_bytes();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    MetadataRecord::from_bytes(&bytes[..len]),
                    Err(DecodeError::Truncated { .. })
                ),
                "{len}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            MetadataRecord::from_bytes(&long),
            Err(DecodeError::TrailingBytes {
                what: "record",
                len: 1
            })
        );
    }

    #[test]
    fn an_unknown_version_or_type_or_long_name_is_refused() {
        let mut bytes = MetadataRecord::DeleteTopic {
            topic_id: TopicId([1; 16]),
        }
        .to_bytes();
        bytes[0] = 2;
        assert_eq!(
            MetadataRecord::from_bytes(&bytes),
            Err(DecodeError::UnknownVersion {
                what: "record",
                version: 2
            })
        );
        assert_eq!(
            MetadataRecord::from_bytes(&[RECORD_FORMAT_VERSION, 200]),
            Err(DecodeError::InvalidTag {
                field: "record type",
                tag: 200
            })
        );
        let mut long = vec![RECORD_FORMAT_VERSION, tag::CREATE_TOPIC];
        long.extend_from_slice(&250u16.to_be_bytes());
        long.extend_from_slice(&[b'a'; 250]);
        assert!(matches!(
            MetadataRecord::from_bytes(&long),
            Err(DecodeError::TooLong { len: 250, .. })
        ));
    }
}
