//! The single broker's controller: topic changes and producer ids, decided on the controller
//! core (core 0) and written durably before every core is told. In cluster mode the same
//! requests go to the Raft-backed controller instead (`crate::cluster::admin`); these functions
//! forward there first thing.
//!
//! Changes are serialized: a change is checked, written and broadcast to every core before the
//! next one is even checked. Without it, two clients auto-creating one topic at once both
//! passed the existence check while the first broadcast was in flight, and every core opened
//! the partitions twice, the second log replacing the first and losing what had been
//! acknowledged to it.

use spate_storage::io::glommio::GlommioDisk;
use spate_storage::sync::AsyncMutex;
use spate_wire::ErrorCode;
use tracing::{error, info};

use crate::core::{Core, CONTROLLER_CORE};
use crate::errors::KafkaCode;
use crate::metadata::alter;
use crate::metadata::producer_ids::ProducerIdAllocator;
use crate::metadata::topics::{self, TopicMeta};
use crate::ops::{AlterTopic, CoreReply, CoreRequest, GrowTopic, NewTopic, Phase, ValidateOnly};

/// The controller core's topic-change lock and producer id allocator.
pub struct Changes {
    /// Held for a whole topic change (see the module docs).
    serialized: AsyncMutex<()>,
    /// Loaded on first use; held for a whole allocation, block write included (see
    /// [`Changes::allocate_producer_id`]).
    producer_ids: AsyncMutex<Option<ProducerIdAllocator<GlommioDisk>>>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            serialized: AsyncMutex::new(()),
            producer_ids: AsyncMutex::new(None),
        }
    }
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").finish_non_exhaustive()
    }
}

impl Changes {
    /// A new producer id from the durable allocator (controller core only). The block write
    /// goes through the `Disk` seam, so it awaits; the allocator's lock is held across it, from
    /// the check of the block's end to the hand-out, so another allocation waits for this one
    /// and the two cannot interleave (what the synchronous version had from awaiting nothing).
    /// A call dropped midway releases the lock with no id handed out and the reserved end
    /// unchanged in memory (at worst the block on disk is already written, and is rewritten).
    pub async fn allocate_producer_id(&self, core: &Core) -> Result<i64, String> {
        assert_eq!(core.id, CONTROLLER_CORE);
        let mut slot = self.producer_ids.lock().await;
        if slot.is_none() {
            let loaded = ProducerIdAllocator::load(GlommioDisk, &core.config.data_dir).await;
            *slot = Some(loaded.map_err(|e| e.to_string())?);
        }
        let allocator = slot.as_mut().expect("loaded above");
        allocator
            .allocate()
            .await
            .map(|id| id.0)
            .map_err(|e| e.to_string())
    }

    pub async fn create_topics(
        &self,
        core: &Core,
        topics: Vec<NewTopic>,
    ) -> Vec<(ErrorCode, Option<String>)> {
        assert_eq!(core.id, CONTROLLER_CORE);
        let _serialized = self.serialized.lock().await;
        if let Some(node) = core.cluster_node.get() {
            return crate::cluster::admin::create_topics(node, topics).await;
        }
        // A single broker holds every partition; the handler checked an assignment names it.
        let metas: Vec<TopicMeta> = topics.into_iter().map(|t| t.meta).collect();
        let mut results = Vec::with_capacity(metas.len());
        for meta in metas {
            if core.topic(&meta.name).is_some() {
                results.push((
                    ErrorCode::TopicAlreadyExists,
                    Some(format!("topic {} already exists", meta.name)),
                ));
                continue;
            }
            let collides = core
                .topics
                .borrow()
                .keys()
                .find(|existing| spate_controller::image::topic_names_collide(existing, &meta.name))
                .cloned();
            if let Some(existing) = collides {
                results.push((
                    ErrorCode::InvalidTopicException,
                    Some(format!(
                        "topic {} collides with existing topic {existing}",
                        meta.name
                    )),
                ));
                continue;
            }
            if core.topics.borrow().len() >= topics::TOPICS_MAX {
                results.push((
                    ErrorCode::PolicyViolation,
                    Some(format!("at most {} topics", topics::TOPICS_MAX)),
                ));
                continue;
            }
            if let Err(e) = topics::save(&GlommioDisk, &core.config.data_dir, &meta).await {
                error!(topic = %meta.name, error = %e, "writing topic file");
                results.push((ErrorCode::KafkaStorageError, Some(e.to_string())));
                continue;
            }
            info!(topic = %meta.name, partitions = meta.partitions, "topic created");
            results.push(broadcast_upsert(core, &meta).await);
        }
        results
    }

    pub async fn delete_topics(
        &self,
        core: &Core,
        names: Vec<String>,
    ) -> Vec<(ErrorCode, Option<String>)> {
        assert_eq!(core.id, CONTROLLER_CORE);
        let _serialized = self.serialized.lock().await;
        if let Some(node) = core.cluster_node.get() {
            return crate::cluster::admin::delete_topics(node, names).await;
        }
        let mut results = Vec::with_capacity(names.len());
        for name in names {
            if core.topic(&name).is_none() {
                results.push((ErrorCode::UnknownTopicOrPartition, None));
                continue;
            }
            if let Err(e) = topics::remove(&GlommioDisk, &core.config.data_dir, &name).await {
                results.push((ErrorCode::KafkaStorageError, Some(e.to_string())));
                continue;
            }
            info!(topic = %name, "topic deleted");
            core.broadcast(|| CoreRequest::TopicRemoved(name.clone()))
                .await;
            results.push((ErrorCode::None, None));
        }
        results
    }

    pub async fn create_partitions(
        &self,
        core: &Core,
        changes: Vec<GrowTopic>,
    ) -> Vec<(ErrorCode, Option<String>)> {
        assert_eq!(core.id, CONTROLLER_CORE);
        let _serialized = self.serialized.lock().await;
        if let Some(node) = core.cluster_node.get() {
            return crate::cluster::admin::create_partitions(node, changes).await;
        }
        // A single broker holds every partition; the handler checked an assignment names it.
        let changes: Vec<(String, i32)> = changes.into_iter().map(|g| (g.name, g.count)).collect();
        let mut results = Vec::with_capacity(changes.len());
        for (name, count) in changes {
            let Some(current) = core.topic(&name) else {
                results.push((ErrorCode::UnknownTopicOrPartition, None));
                continue;
            };
            if count <= current.partitions || count > topics::PARTITIONS_PER_TOPIC_MAX {
                results.push((
                    ErrorCode::InvalidPartitions,
                    Some(format!(
                        "topic has {} partitions; asked for {count}",
                        current.partitions
                    )),
                ));
                continue;
            }
            let mut meta = (*current).clone();
            meta.partitions = count;
            if let Err(e) = topics::save(&GlommioDisk, &core.config.data_dir, &meta).await {
                results.push((ErrorCode::KafkaStorageError, Some(e.to_string())));
                continue;
            }
            results.push(broadcast_upsert(core, &meta).await);
        }
        results
    }
}

impl Changes {
    /// Changes topics' configs (IncrementalAlterConfigs, AlterConfigs), one topic at a time: the
    /// alteration is decided on the topic's current overrides (`metadata::alter`), the topic
    /// file rewritten durably, then every core applies the new config to the partitions it
    /// owns. `ValidateOnly::Yes` decides and stops. In cluster mode the controller decides and
    /// the change arrives with the next image.
    pub async fn alter_configs(
        &self,
        core: &Core,
        topics: Vec<AlterTopic>,
        validate_only: ValidateOnly,
    ) -> Vec<(ErrorCode, Option<String>)> {
        assert_eq!(core.id, CONTROLLER_CORE);
        let _serialized = self.serialized.lock().await;
        if let Some(node) = core.cluster_node.get() {
            return crate::cluster::admin::alter_configs(node, topics, validate_only).await;
        }
        let defaults = &core.config.topic_defaults;
        let mut results = Vec::with_capacity(topics.len());
        for topic in topics {
            let current = core.topic(&topic.name);
            let overrides = current
                .as_ref()
                .map(|meta| meta.config.override_map())
                .unwrap_or_default();
            let altered = match alter::alter(&overrides, &topic.alteration, defaults) {
                Ok(altered) => altered,
                Err(e) => {
                    results.push((e.kafka_code(), Some(e.to_string())));
                    continue;
                }
            };
            let Some(current) = current else {
                results.push((
                    ErrorCode::UnknownTopicOrPartition,
                    Some(format!("topic {} does not exist", topic.name)),
                ));
                continue;
            };
            if validate_only == ValidateOnly::Yes || altered.changed.is_empty() {
                results.push((ErrorCode::None, None));
                continue;
            }
            let mut meta = (*current).clone();
            meta.config = altered.config;
            if let Err(e) = topics::save(&GlommioDisk, &core.config.data_dir, &meta).await {
                error!(topic = %meta.name, error = %e, "writing topic file");
                results.push((ErrorCode::KafkaStorageError, Some(e.to_string())));
                continue;
            }
            info!(topic = %meta.name, changed = %changed_text(&altered.changed), "topic configs altered");
            results.push(broadcast_upsert(core, &meta).await);
        }
        results
    }
}

/// Tells every core about a new or grown topic, in two rounds (see [`Phase`]); the first
/// core's failure to open its partitions, if any, as the topic's result (the topic is shown
/// all the same, with those partitions unavailable: its file stays, and a restart retries).
async fn broadcast_upsert(core: &Core, meta: &TopicMeta) -> (ErrorCode, Option<String>) {
    let mut outcome = (ErrorCode::None, None);
    for phase in [Phase::Open, Phase::Publish] {
        for reply in core
            .broadcast(|| CoreRequest::TopicUpserted(meta.clone(), phase))
            .await
        {
            let failure = match reply {
                Some(CoreReply::Topics(mut results)) => match results.pop() {
                    Some((ErrorCode::None, _)) | None => continue,
                    Some(failure) => failure,
                },
                _ => (
                    ErrorCode::KafkaStorageError,
                    Some("a core did not confirm the topic".to_owned()),
                ),
            };
            if outcome.0 == ErrorCode::None {
                outcome = failure;
            }
        }
    }
    outcome
}

/// The altered keys as one log field, `key=value` or `key (default)` for an override removed,
/// comma-separated: Debug of the list would put `Some("...")` and `None` into JSON logs.
fn changed_text(changed: &[(String, Option<String>)]) -> String {
    let parts: Vec<String> = changed
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => format!("{key} (default)"),
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::changed_text;

    #[test]
    fn altered_configs_log_as_plain_text_without_option_debug() {
        let changed = vec![
            ("retention.ms".to_owned(), Some("1000".to_owned())),
            ("cleanup.policy".to_owned(), None),
        ];
        let text = changed_text(&changed);
        assert_eq!(text, "retention.ms=1000, cleanup.policy (default)");
        assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
    }
}
