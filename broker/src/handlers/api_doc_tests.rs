//! `docs/KAFKA-APIS.md` and the code agree: each row's API, version range and where it is
//! advertised (single broker, or cluster only) are what `wire/src/versions.rs` and
//! [`super::version_table`] advertise, and every advertised API has a row. A change of either
//! without the other fails here. A row whose status is "partial" must be in [`PARTIAL`], with
//! the gap it names and why the versions are advertised anyway.

use std::ops::RangeInclusive;

use spate_wire::kafka_protocol::messages::ApiKey;
use spate_wire::versions::{ApiRange, SUPPORTED};

use super::{version_table, Mode};

const DOC: &str = include_str!("../../../docs/KAFKA-APIS.md");

/// An API advertised although a version of it is partly honoured.
struct Partial {
    api_key: ApiKey,
    /// The versions the gap concerns.
    versions: RangeInclusive<i16>,
    /// Words of the row's "partial:" text that name the gap.
    gap: &'static str,
    /// Why advertising those versions anyway is right.
    why: &'static str,
}

/// Every row whose status says "partial", and nothing else: a new partial row, a row no longer
/// partial, or a gap described differently fails `partial_rows_are_the_allowed_ones`.
const PARTIAL: &[Partial] = &[
    Partial {
        api_key: ApiKey::Fetch,
        versions: 12..=12,
        gap: "v12's last fetched epoch is not checked for a diverging epoch",
        why: "v12 is the first flexible Fetch and the highest Spate has (v13+ names topics by \
              id), so librdkafka, kafka-python and the Java client all use it; a consumer reads \
              below the high watermark, which only an unclean election can truncate",
    },
    Partial {
        api_key: ApiKey::OffsetCommit,
        versions: 2..=4,
        gap: "v2-v4 `retention_time_ms` is ignored",
        why: "aiokafka commits with v2-v3 (its maximum) and must keep working; an offset kept \
              longer than asked harms no client, and it goes with DeleteGroups or OffsetDelete",
    },
    Partial {
        api_key: ApiKey::DescribeConfigs,
        versions: 3..=4,
        gap: "`include_documentation` is not honoured",
        why: "documentation is nullable in the schema, and v4 is what the Java admin client sends",
    },
];

/// One row of the table.
#[derive(Debug)]
struct Row {
    name: String,
    key: i16,
    min: i16,
    max: i16,
    cluster_only: bool,
    single_only: bool,
    status: String,
}

/// The table's rows: lines `| Name (key) | min-max | ... | status |`.
fn rows() -> Vec<Row> {
    DOC.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // "", api, advertised, adds, status, ""
            if cells.len() != 6 {
                return None;
            }
            let (name, key) = cells[1].strip_suffix(')')?.split_once(" (")?;
            let key: i16 = key.parse().ok()?;
            let (min, max) = cells[2].split_once('-')?;
            Some(Row {
                name: name.to_owned(),
                key,
                min: min.parse().expect("a version"),
                max: max.parse().expect("a version"),
                cluster_only: cells[4].contains("cluster only"),
                single_only: cells[4].contains("single broker only"),
                status: cells[4].to_owned(),
            })
        })
        .collect()
}

fn advertised(mode: Mode) -> Vec<ApiRange> {
    version_table(mode).ranges().collect()
}

#[test]
fn the_doc_table_has_one_row_per_supported_api_with_its_range() {
    let rows = rows();
    assert_eq!(rows.len(), SUPPORTED.len(), "{rows:#?}");
    for (row, range) in rows.iter().zip(SUPPORTED) {
        assert_eq!(row.key, range.api_key as i16, "{row:?} vs {range:?}");
        assert_eq!(row.name, format!("{:?}", range.api_key), "{row:?}");
        assert_eq!((row.min, row.max), (range.min, range.max), "{row:?}");
    }
}

#[test]
fn the_doc_table_says_where_each_api_is_advertised() {
    let single = advertised(Mode::SingleBroker);
    let cluster = advertised(Mode::Cluster);
    for row in rows() {
        let in_single = single.iter().any(|r| r.api_key as i16 == row.key);
        let in_cluster = cluster.iter().any(|r| r.api_key as i16 == row.key);
        assert!(
            in_single || in_cluster,
            "{} is in the doc but not advertised",
            row.name
        );
        assert_eq!(
            in_cluster, !row.single_only,
            "{}: the doc's \"single broker only\" and the cluster's table disagree",
            row.name
        );
        assert_eq!(
            in_single, !row.cluster_only,
            "{}: the doc's \"cluster only\" and the single broker's table disagree",
            row.name
        );
    }
}

#[test]
fn every_advertised_api_is_documented_as_working() {
    let rows = rows();
    let both = advertised(Mode::SingleBroker)
        .into_iter()
        .chain(advertised(Mode::Cluster));
    for range in both {
        let row = rows
            .iter()
            .find(|r| r.key == range.api_key as i16)
            .unwrap_or_else(|| panic!("{:?} is advertised without a row", range.api_key));
        // An API or version is advertised only if it works; "partial" rows say what is missing.
        assert!(row.status.starts_with("works"), "{row:?}");
    }
}

#[test]
fn partial_rows_are_the_allowed_ones() {
    let rows = rows();
    for row in &rows {
        let Some((_, gap_text)) = row.status.split_once("partial") else {
            continue;
        };
        let allowed = PARTIAL
            .iter()
            .find(|p| p.api_key as i16 == row.key)
            .unwrap_or_else(|| {
                panic!(
                    "{} is partial in the doc but not in PARTIAL: finish it, stop advertising \
                     the versions it misses, or add it with a reason",
                    row.name
                )
            });
        assert!(
            gap_text.contains(allowed.gap),
            "{}: the doc's partial text no longer names the allowed gap {:?}: {gap_text}",
            row.name,
            allowed.gap
        );
        assert!(
            row.min <= *allowed.versions.start() && *allowed.versions.end() <= row.max,
            "{}: PARTIAL's versions {:?} are not all advertised ({}-{})",
            row.name,
            allowed.versions,
            row.min,
            row.max
        );
        assert!(!allowed.why.is_empty());
    }
    for allowed in PARTIAL {
        let row = rows
            .iter()
            .find(|r| r.key == allowed.api_key as i16)
            .unwrap_or_else(|| panic!("PARTIAL lists {:?}, which has no row", allowed.api_key));
        assert!(
            row.status.contains("partial"),
            "{} is no longer partial: remove it from PARTIAL",
            row.name
        );
    }
}
