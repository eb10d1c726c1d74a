//! `docs/KAFKA-APIS.md` and the code agree: each row's API, version range and where it is
//! advertised (single broker, or cluster only) are what `wire/src/versions.rs` and
//! [`super::version_table`] advertise, and every advertised API has a row. A change of either
//! without the other fails here.

use spate_wire::versions::{ApiRange, SUPPORTED};

use super::{version_table, Mode};

const DOC: &str = include_str!("../../../docs/KAFKA-APIS.md");

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
