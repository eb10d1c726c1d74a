//! Changing a live topic's configs: Kafka's IncrementalAlterConfigs operations (SET, DELETE,
//! APPEND, SUBTRACT) and legacy AlterConfigs (replace every override) applied to a topic's
//! overrides, and the check of the result. Pure: the single broker's controller core
//! (`metadata::changes`) and the cluster's controller (`cluster::admin`, inside a submit, on
//! the image it proposes against) both call [`alter`], so the two modes decide alike.
//!
//! A topic's state here is its overrides: the keys set on the topic, each with its text value
//! (the metadata log's `configs` in a cluster, `TopicConfig::override_map` on a single broker).
//! Everything else takes the broker's default, and a change rebuilds the whole config from the
//! defaults and the new overrides ([`TopicConfig::from_overrides`]), so a deleted override goes
//! back to the broker's current default.
//!
//! Kafka's rules, as its KRaft controller applies them (`ConfigurationControlManager`,
//! `ConfigAdminManager.preprocess`): a key named twice in one resource and a null value for
//! anything but DELETE are INVALID_REQUEST; an unknown operation is INVALID_REQUEST; APPEND and
//! SUBTRACT work on list configs only (INVALID_CONFIG otherwise), on the current value or else
//! the default, keep the order, add only missing items and remove every copy; the result is then
//! checked whole (unknown keys and bad values: INVALID_CONFIG with the reason). A key whose value
//! does not change produces no record.

use std::collections::BTreeMap;

use crate::config::TopicDefaults;
use crate::metadata::topics::{TopicConfig, TopicError, STORED_ONLY_CONFIGS};

/// A topic's overrides: key to text value.
pub type Overrides = BTreeMap<String, String>;

/// One IncrementalAlterConfigs operation, Kafka's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOp {
    /// 0: set the value.
    Set,
    /// 1: remove the override (back to the default).
    Delete,
    /// 2: add items to a list config.
    Append,
    /// 3: remove items from a list config.
    Subtract,
}

impl TryFrom<i8> for AlterOp {
    type Error = AlterError;

    fn try_from(code: i8) -> Result<AlterOp, AlterError> {
        Ok(match code {
            0 => AlterOp::Set,
            1 => AlterOp::Delete,
            2 => AlterOp::Append,
            3 => AlterOp::Subtract,
            other => {
                return Err(AlterError::InvalidRequest(format!(
                    "Unknown operations type {other}"
                )))
            }
        })
    }
}

impl AlterOp {
    /// Kafka's number for it.
    pub fn code(self) -> i8 {
        match self {
            AlterOp::Set => 0,
            AlterOp::Delete => 1,
            AlterOp::Append => 2,
            AlterOp::Subtract => 3,
        }
    }
}

/// One config change asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// The config's name.
    pub key: String,
    /// What to do.
    pub op: AlterOp,
    /// The operand (`None` is only valid for DELETE).
    pub value: Option<String>,
}

/// What a client asked for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alteration {
    /// IncrementalAlterConfigs: these operations, in order, on the current overrides.
    Incremental(Vec<ConfigChange>),
    /// Legacy AlterConfigs: exactly these overrides (`None` values are refused), the rest
    /// removed.
    Replace(Vec<(String, Option<String>)>),
}

impl Alteration {
    /// The config names it touches, in request order.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Alteration::Incremental(changes) => changes.iter().map(|c| c.key.as_str()).collect(),
            Alteration::Replace(configs) => configs.iter().map(|(k, _)| k.as_str()).collect(),
        }
    }
}

/// Why an alteration was refused; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlterError {
    /// INVALID_REQUEST: the request itself is malformed (duplicate keys, null values,
    /// unknown operations).
    #[error("{0}")]
    InvalidRequest(String),
    /// INVALID_CONFIG: an operation that does not fit the config, or a result that fails the
    /// topic config checks.
    #[error("{0}")]
    InvalidConfig(String),
}

impl From<TopicError> for AlterError {
    fn from(error: TopicError) -> AlterError {
        AlterError::InvalidConfig(error.to_string())
    }
}

/// The outcome of an accepted alteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Altered {
    /// The topic's overrides afterwards, values as the topic config writes them.
    pub overrides: Overrides,
    /// The whole config they give over the defaults.
    pub config: TopicConfig,
    /// The keys that changed: a new value, or `None` for an override removed. Empty when the
    /// alteration changes nothing.
    pub changed: Vec<(String, Option<String>)>,
}

/// The topic configs whose values are lists (Kafka's `ConfigDef.Type.LIST`), which APPEND and
/// SUBTRACT work on.
pub fn is_list_config(key: &str) -> bool {
    matches!(
        key,
        "cleanup.policy"
            | "follower.replication.throttled.replicas"
            | "leader.replication.throttled.replicas"
    )
}

/// The default a list config starts from when it has no override.
fn list_default(key: &str, defaults: &TopicDefaults) -> String {
    if key == "cleanup.policy" {
        return TopicConfig::from_defaults(defaults)
            .get(key)
            .expect("a topic key");
    }
    STORED_ONLY_CONFIGS
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, default, ..)| (*default).to_owned())
        .unwrap_or_default()
}

/// Kafka's `getParts`: the items of a list value, empty ones dropped.
fn parts(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn refuse_duplicates<'a>(keys: impl Iterator<Item = &'a str>) -> Result<(), AlterError> {
    let mut seen = std::collections::BTreeSet::new();
    for key in keys {
        if !seen.insert(key) {
            return Err(AlterError::InvalidRequest(
                "Error due to duplicate config keys".to_owned(),
            ));
        }
    }
    Ok(())
}

fn refuse_nulls<'a>(nulls: impl Iterator<Item = &'a str>) -> Result<(), AlterError> {
    let nulls: Vec<&str> = nulls.collect();
    if nulls.is_empty() {
        return Ok(());
    }
    Err(AlterError::InvalidRequest(format!(
        "Null value not supported for : {}",
        nulls.join(", ")
    )))
}

/// Checks the parts of `alteration` that do not depend on the topic: duplicate keys, nulls,
/// (Kafka's broker-side preprocessing, done before anything is forwarded).
///
/// # Errors
/// [`AlterError::InvalidRequest`].
pub fn precheck(alteration: &Alteration) -> Result<(), AlterError> {
    match alteration {
        Alteration::Incremental(changes) => {
            refuse_duplicates(changes.iter().map(|c| c.key.as_str()))?;
            refuse_nulls(
                changes
                    .iter()
                    .filter(|c| c.op != AlterOp::Delete && c.value.is_none())
                    .map(|c| c.key.as_str()),
            )
        }
        Alteration::Replace(configs) => {
            refuse_duplicates(configs.iter().map(|(k, _)| k.as_str()))?;
            refuse_nulls(
                configs
                    .iter()
                    .filter(|(_, v)| v.is_none())
                    .map(|(k, _)| k.as_str()),
            )
        }
    }
}

/// Applies `alteration` to a topic whose overrides are `current`, over `defaults`.
///
/// # Errors
/// [`AlterError`]: nothing is changed then.
pub fn alter(
    current: &Overrides,
    alteration: &Alteration,
    defaults: &TopicDefaults,
) -> Result<Altered, AlterError> {
    precheck(alteration)?;
    let mut next = match alteration {
        Alteration::Replace(configs) => configs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().expect("prechecked")))
            .collect(),
        Alteration::Incremental(changes) => {
            let mut next = current.clone();
            for change in changes {
                apply(&mut next, change, defaults)?;
            }
            next
        }
    };
    let config = TopicConfig::from_overrides(defaults, &next)?;
    // Values as the config writes them back, so equal settings compare equal.
    for (key, value) in next.iter_mut() {
        *value = config.get(key).expect("set above");
    }
    let mut changed: Vec<(String, Option<String>)> = next
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    changed.extend(
        current
            .keys()
            .filter(|k| !next.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    Ok(Altered {
        overrides: next,
        config,
        changed,
    })
}

fn apply(
    overrides: &mut Overrides,
    change: &ConfigChange,
    defaults: &TopicDefaults,
) -> Result<(), AlterError> {
    let key = change.key.as_str();
    match change.op {
        AlterOp::Set => {
            let value = change.value.clone().expect("prechecked");
            overrides.insert(key.to_owned(), value);
        }
        AlterOp::Delete => {
            overrides.remove(key);
        }
        AlterOp::Append | AlterOp::Subtract => {
            if !is_list_config(key) {
                let op = if change.op == AlterOp::Append {
                    "APPEND"
                } else {
                    "SUBTRACT"
                };
                return Err(AlterError::InvalidConfig(format!(
                    "Can't {op} to key {key} because its type is not LIST."
                )));
            }
            let old = overrides
                .get(key)
                .cloned()
                .unwrap_or_else(|| list_default(key, defaults));
            let mut items = parts(&old);
            let operand = change.value.as_deref().expect("prechecked");
            for item in operand.split(',') {
                if change.op == AlterOp::Append {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_owned());
                    }
                } else {
                    items.retain(|i| i != item);
                }
            }
            overrides.insert(key.to_owned(), items.join(","));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Settings};

    fn defaults() -> TopicDefaults {
        Config::resolve(Settings::default()).unwrap().topic_defaults
    }

    fn set(key: &str, value: &str) -> ConfigChange {
        ConfigChange {
            key: key.to_owned(),
            op: AlterOp::Set,
            value: Some(value.to_owned()),
        }
    }

    fn op(key: &str, op: AlterOp, value: Option<&str>) -> ConfigChange {
        ConfigChange {
            key: key.to_owned(),
            op,
            value: value.map(str::to_owned),
        }
    }

    fn overrides(pairs: &[(&str, &str)]) -> Overrides {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn incremental(current: &Overrides, changes: Vec<ConfigChange>) -> Result<Altered, AlterError> {
        alter(current, &Alteration::Incremental(changes), &defaults())
    }

    #[test]
    fn set_and_delete_change_only_the_keys_named() {
        let current = overrides(&[("retention.ms", "1000"), ("segment.bytes", "16384")]);
        let altered = incremental(
            &current,
            vec![
                set("retention.bytes", "1048576"),
                op("segment.bytes", AlterOp::Delete, None),
                set("retention.ms", "1000"),
            ],
        )
        .unwrap();
        assert_eq!(
            altered.overrides,
            overrides(&[("retention.bytes", "1048576"), ("retention.ms", "1000")])
        );
        assert_eq!(
            altered.changed,
            vec![
                ("retention.bytes".to_owned(), Some("1048576".to_owned())),
                ("segment.bytes".to_owned(), None),
            ]
        );
        // The deleted override is back at the broker's default.
        assert_eq!(
            altered.config.segment_bytes,
            TopicConfig::from_defaults(&defaults()).segment_bytes
        );
        assert!(!altered.config.is_override("segment.bytes"));
        assert!(altered.config.is_override("retention.bytes"));
        // Deleting an override that is not there changes nothing.
        let none = incremental(&current, vec![op("segment.ms", AlterOp::Delete, None)]).unwrap();
        assert!(none.changed.is_empty());
    }

    #[test]
    fn append_and_subtract_work_on_lists_from_the_default_and_keep_order() {
        let empty = Overrides::new();
        let appended = incremental(
            &empty,
            vec![op("cleanup.policy", AlterOp::Append, Some("compact"))],
        )
        .unwrap();
        // From the default `delete`, Kafka's order kept, written canonically.
        assert_eq!(appended.overrides["cleanup.policy"], "compact,delete");
        assert!(appended.config.cleanup_policy.compacts());
        assert!(appended.config.cleanup_policy.deletes());
        let current = overrides(&[("cleanup.policy", "compact,delete")]);
        let subtracted = incremental(
            &current,
            vec![op("cleanup.policy", AlterOp::Subtract, Some("delete"))],
        )
        .unwrap();
        assert_eq!(subtracted.overrides["cleanup.policy"], "compact");
        // Appending what is there changes nothing.
        let same = incremental(
            &current,
            vec![op("cleanup.policy", AlterOp::Append, Some("delete"))],
        )
        .unwrap();
        assert!(same.changed.is_empty());
        // Subtracting everything leaves an empty policy, which Spate refuses.
        let err = incremental(
            &overrides(&[("cleanup.policy", "compact")]),
            vec![op("cleanup.policy", AlterOp::Subtract, Some("compact"))],
        )
        .unwrap_err();
        assert!(matches!(err, AlterError::InvalidConfig(_)), "{err:?}");
        let throttled = incremental(
            &empty,
            vec![op(
                "leader.replication.throttled.replicas",
                AlterOp::Append,
                Some("0:1,1:2"),
            )],
        )
        .unwrap();
        assert_eq!(
            throttled.overrides["leader.replication.throttled.replicas"],
            "0:1,1:2"
        );
    }

    #[test]
    fn kafkas_refusals_with_kafkas_codes() {
        let empty = Overrides::new();
        let not_list = incremental(&empty, vec![op("retention.ms", AlterOp::Append, Some("1"))]);
        assert_eq!(
            not_list,
            Err(AlterError::InvalidConfig(
                "Can't APPEND to key retention.ms because its type is not LIST.".to_owned()
            ))
        );
        let unknown = incremental(&empty, vec![set("no.such.config", "1")]).unwrap_err();
        assert!(
            matches!(&unknown, AlterError::InvalidConfig(m) if m.contains("no.such.config")),
            "{unknown:?}"
        );
        let bad = incremental(&empty, vec![set("retention.ms", "soon")]).unwrap_err();
        assert!(
            matches!(&bad, AlterError::InvalidConfig(m) if m.contains("not an integer")),
            "{bad:?}"
        );
        assert_eq!(
            incremental(
                &empty,
                vec![set("retention.ms", "1"), set("retention.ms", "2")]
            ),
            Err(AlterError::InvalidRequest(
                "Error due to duplicate config keys".to_owned()
            ))
        );
        assert_eq!(
            incremental(&empty, vec![op("retention.ms", AlterOp::Set, None)]),
            Err(AlterError::InvalidRequest(
                "Null value not supported for : retention.ms".to_owned()
            ))
        );
        assert!(matches!(
            AlterOp::try_from(4),
            Err(AlterError::InvalidRequest(_))
        ));
        for code in 0..4 {
            assert_eq!(AlterOp::try_from(code).unwrap().code(), code);
        }
    }

    #[test]
    fn replace_sets_exactly_the_overrides_given() {
        let current = overrides(&[("retention.ms", "1000"), ("segment.bytes", "16384")]);
        let replaced = alter(
            &current,
            &Alteration::Replace(vec![
                ("retention.ms".to_owned(), Some("2000".to_owned())),
                ("cleanup.policy".to_owned(), Some("compact".to_owned())),
            ]),
            &defaults(),
        )
        .unwrap();
        assert_eq!(
            replaced.overrides,
            overrides(&[("cleanup.policy", "compact"), ("retention.ms", "2000")])
        );
        assert_eq!(replaced.changed.len(), 3, "{:?}", replaced.changed);
        assert!(replaced
            .changed
            .contains(&("segment.bytes".to_owned(), None)));
        let null = alter(
            &current,
            &Alteration::Replace(vec![("retention.ms".to_owned(), None)]),
            &defaults(),
        );
        assert!(matches!(null, Err(AlterError::InvalidRequest(_))));
        // An empty set removes every override.
        let cleared = alter(&current, &Alteration::Replace(Vec::new()), &defaults()).unwrap();
        assert!(cleared.overrides.is_empty());
        assert_eq!(cleared.changed.len(), 2);
    }
}
