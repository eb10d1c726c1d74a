//! `docs/TOPIC-CONFIGS.md` and the code agree: the "Applied" and "Accepted, stored and
//! reported" tables together name exactly the keys in [`TOPIC_CONFIG_KEYS`], each once; the
//! stored-only table is [`STORED_ONLY_CONFIGS`] with its Kafka defaults; every key the tables
//! (and the live-change table) name is one [`TopicConfig::set`] accepts. A config added to or
//! removed from either side without the other fails here.

use std::collections::BTreeSet;

use super::topics::{TopicConfig, STORED_ONLY_CONFIGS, TOPIC_CONFIG_KEYS};
use crate::config::{Config, Settings};

const DOC: &str = include_str!("../../../docs/TOPIC-CONFIGS.md");

/// The table rows of the section headed `## <heading>`, each as its trimmed cells, without
/// the header row and the `|---|` line.
fn section_rows(heading: &str) -> Vec<Vec<String>> {
    let start = DOC
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("docs/TOPIC-CONFIGS.md has no section {heading:?}"));
    let body = &DOC[start + heading.len() + 5..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let rows: Vec<Vec<String>> = body
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').collect();
            cells[1..cells.len() - 1]
                .iter()
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect();
    assert!(rows.len() >= 3, "section {heading:?} has no table: {body}");
    assert!(
        rows[1].iter().all(|cell| cell.starts_with("---")),
        "{heading:?}: {:?}",
        rows[1]
    );
    rows[2..].to_vec()
}

/// The config key a row names in its first cell: "`flush.policy` (Spate's)" is flush.policy.
fn row_key(row: &[String]) -> String {
    let cell = &row[0];
    let key = cell
        .strip_prefix('`')
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key)
        .unwrap_or_else(|| panic!("a row whose first cell is not a `key`: {row:?}"));
    key.to_owned()
}

/// Every backticked word in a cell: "`flush.policy`, `flush.ms`" names two keys.
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

fn unique(keys: &[String], table: &str) -> BTreeSet<String> {
    let set: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "{table} names a key twice: {keys:?}");
    set
}

fn default_config() -> TopicConfig {
    TopicConfig::from_defaults(&Config::resolve(Settings::default()).unwrap().topic_defaults)
}

#[test]
fn the_doc_tables_name_every_accepted_topic_config_and_no_other() {
    let applied: Vec<String> = section_rows("Applied").iter().map(|r| row_key(r)).collect();
    let stored: Vec<String> = section_rows("Accepted, stored and reported, not acted on")
        .iter()
        .map(|r| row_key(r))
        .collect();
    let applied = unique(&applied, "Applied");
    let stored = unique(&stored, "the stored-only table");
    let both: Vec<&String> = applied.intersection(&stored).collect();
    assert!(both.is_empty(), "in both tables: {both:?}");

    let code: BTreeSet<String> = TOPIC_CONFIG_KEYS.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(
        code.len(),
        TOPIC_CONFIG_KEYS.len(),
        "TOPIC_CONFIG_KEYS repeats a key"
    );
    let documented: BTreeSet<String> = applied.union(&stored).cloned().collect();
    let undocumented: Vec<&String> = code.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "accepted but missing from docs/TOPIC-CONFIGS.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "in docs/TOPIC-CONFIGS.md but not accepted: {unknown:?}"
    );
    // At least the configs issue 19 names, so an empty parse cannot pass.
    assert!(documented.len() >= 30, "{documented:?}");
}

#[test]
fn the_stored_only_table_is_stored_only_configs_with_kafkas_defaults() {
    let rows = section_rows("Accepted, stored and reported, not acted on");
    assert_eq!(rows.len(), STORED_ONLY_CONFIGS.len(), "{rows:?}");
    for row in &rows {
        let key = row_key(row);
        let (_, default, ..) = STORED_ONLY_CONFIGS
            .iter()
            .find(|(k, ..)| *k == key)
            .unwrap_or_else(|| {
                panic!("{key} is in the stored-only table, not STORED_ONLY_CONFIGS")
            });
        let documented = match row[1].trim_matches('`') {
            "empty" => "",
            other => other,
        };
        assert_eq!(documented, *default, "{key}'s default");
    }
}

/// Setting a documented key to its own current value is accepted; a key the code does not
/// know is refused, so acceptance is what `set` says and not a list of its own.
#[test]
fn every_key_the_doc_names_is_accepted_by_the_topic_config() {
    let mut config = default_config();
    let mut named: Vec<String> = Vec::new();
    for heading in ["Applied", "Accepted, stored and reported, not acted on"] {
        named.extend(section_rows(heading).iter().map(|r| row_key(r)));
    }
    // The live-change table names keys in its first cell, several per row.
    let live = section_rows("Changing a live topic");
    assert!(live.len() >= 10, "{live:?}");
    for row in &live {
        named.extend(backticked(&row[0]).into_iter().map(str::to_owned));
    }
    for key in &named {
        let value = config
            .get(key)
            .unwrap_or_else(|| panic!("docs/TOPIC-CONFIGS.md names {key}, which has no value"));
        config
            .set(key, &value)
            .unwrap_or_else(|e| panic!("docs/TOPIC-CONFIGS.md names {key}, refused: {e}"));
    }
    assert!(config.set("no.such.config", "1").is_err());
}
