//! The high watermark checkpoint (Kafka's `replication-offset-checkpoint`): each core writes the
//! high watermarks of the replicas it owns to one file in the data dir every
//! [`HW_CHECKPOINT_INTERVAL`] when they changed (from a task of its own, so a slow disk holds up
//! nothing else) and at a clean shutdown, and a restarted broker starts each replica from it
//! instead of from 0.
//!
//! Why: without it a restarted leader's consumers see nothing until its followers have fetched
//! again, and a leader whose followers are down serves nothing already committed until the ISR
//! shrinks (`replica.lag.time.max.ms`). With it they read what was committed before the restart
//! at once.
//!
//! Why it is safe: every value written was this replica's high watermark at that moment, so at
//! most the committed end then, which a clean election never takes back, and the replica caps it
//! at its recovered log end (`Replica::new`), so a power loss that took unsynced records cannot
//! make it point past the log. A stale file only starts the replica lower: it learns the rest
//! from the leader as before. After an unclean election (opt-in, it loses committed records
//! anyway) a checkpoint written before the truncation may name records the new leader never had
//! until the next write replaces it; the first fetch truncates them and lowers the high
//! watermark with them.
//!
//! One file per core, not per partition: one write every interval for all its replicas, not one
//! per partition (thousands). A partition may move to another core between runs (a different
//! `--cores`), so a starting core reads every core's file and takes, per partition, the largest
//! value: each is a true high watermark of some run, and values only grow. Entries are keyed by
//! topic id, so a topic deleted and created again under its name starts from 0.

use std::collections::HashMap;
use std::path::Path;

use spate_storage::files::{read_whole, write_atomically};
use spate_storage::io::glommio::GlommioDisk;
use spate_wire::types::Offset;
use tracing::warn;

/// How often a core writes its file (Kafka's `replica.high.watermark.checkpoint.interval.ms`).
pub const HW_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// The files' names: this prefix and the core's index.
pub const FILE_PREFIX: &str = "high-watermark-checkpoint-core-";
/// The format's version (the first line).
const VERSION: &str = "0";
/// Entries one file may hold: bounds what a damaged count makes the reader allocate.
pub const ENTRIES_MAX: usize = 1 << 20;

/// A partition as the checkpoint names it: its topic's id and its index.
pub type PartitionId = ([u8; 16], i32);

/// The file of core `core`.
pub fn file_name(core: usize) -> String {
    format!("{FILE_PREFIX}{core}")
}

/// The file's contents: a version line, the entry count, then `topic-id-hex partition offset`
/// per line.
///
/// # Panics
/// If there are more than [`ENTRIES_MAX`] entries (a core owns far fewer partitions).
pub fn encode(entries: &[(PartitionId, Offset)]) -> Vec<u8> {
    assert!(entries.len() <= ENTRIES_MAX, "{} entries", entries.len());
    let mut out = String::with_capacity(16 + entries.len() * 56);
    out.push_str(VERSION);
    out.push('\n');
    out.push_str(&entries.len().to_string());
    out.push('\n');
    for ((topic_id, partition), offset) in entries {
        for byte in topic_id {
            out.push_str(&format!("{byte:02x}"));
        }
        out.push_str(&format!(" {partition} {}\n", offset.0));
    }
    out.into_bytes()
}

/// The entries of a file, `None` unless it is exactly what [`encode`] writes (a torn or damaged
/// file is not trusted at all: the replicas then start from 0, as without a checkpoint).
pub fn decode(bytes: &[u8]) -> Option<Vec<(PartitionId, Offset)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.strip_suffix('\n')?.split('\n');
    if lines.next()? != VERSION {
        return None;
    }
    let count: usize = lines.next()?.parse().ok()?;
    if count > ENTRIES_MAX {
        return None;
    }
    let mut entries = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let mut fields = lines.next()?.split(' ');
        let hex = fields.next()?;
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut topic_id = [0u8; 16];
        for (i, byte) in topic_id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        let partition: i32 = fields.next()?.parse().ok()?;
        let offset: i64 = fields.next()?.parse().ok()?;
        if fields.next().is_some() || partition < 0 || offset < 0 {
            return None;
        }
        entries.push(((topic_id, partition), Offset(offset)));
    }
    lines.next().is_none().then_some(entries)
}

/// Every core's checkpoint in `data_dir`, merged (the largest value per partition). Files that
/// do not parse or cannot be read are logged and skipped.
pub async fn load(data_dir: &Path) -> HashMap<PartitionId, Offset> {
    let mut merged: HashMap<PartitionId, Offset> = HashMap::new();
    let names = match std::fs::read_dir(data_dir) {
        Ok(dir) => dir
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| {
                name.strip_prefix(FILE_PREFIX)
                    .is_some_and(|core| core.parse::<usize>().is_ok())
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            warn!(dir = %data_dir.display(), error = %e, "listing high watermark checkpoints failed; replicas start from 0");
            return merged;
        }
    };
    for name in names {
        let path = data_dir.join(&name);
        let entries = match read_whole(&GlommioDisk, &path).await {
            Ok(Some(bytes)) => decode(&bytes),
            Ok(None) => continue,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "reading a high watermark checkpoint failed; ignored");
                continue;
            }
        };
        let Some(entries) = entries else {
            warn!(path = %path.display(), "a high watermark checkpoint does not parse; ignored");
            continue;
        };
        for (id, offset) in entries {
            let known = merged.entry(id).or_insert(offset);
            *known = (*known).max(offset);
        }
    }
    merged
}

/// Replaces core `core`'s file in `data_dir` with `entries`, atomically and durably.
///
/// # Errors
/// I/O errors; the old file is then unchanged.
pub async fn save(
    data_dir: &Path,
    core: usize,
    entries: &[(PartitionId, Offset)],
) -> spate_storage::Result<()> {
    write_atomically(&GlommioDisk, data_dir, &file_name(core), &encode(entries)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_file_reads_back_as_written() {
        let entries = vec![
            (([0u8; 16], 0), Offset(0)),
            (([0xab; 16], 7), Offset(123_456_789)),
            (
                ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255], 2),
                Offset(5),
            ),
        ];
        assert_eq!(decode(&encode(&entries)), Some(entries));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn damaged_files_are_refused() {
        let good = encode(&[(([7; 16], 1), Offset(10))]);
        for cut in 0..good.len() {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        let text = String::from_utf8(good).unwrap();
        for bad in [
            text.replace("0\n1\n", "1\n1\n"), // version
            text.replace("0\n1\n", "0\n2\n"), // count above the entries
            text.replace(" 1 10", " -1 10"),  // partition
            text.replace(" 1 10", " 1 -10"),  // offset
            text.replace(" 1 10", " 1 10 3"), // extra field
            text.replace("0707", "0x07"),     // hex
            format!("{text}junk\n"),          // trailing line
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_entries_round_trip(
            entries in proptest::collection::vec(
                ((any::<[u8; 16]>(), 0i32..i32::MAX), (0i64..i64::MAX).prop_map(Offset)),
                0..50,
            )
        ) {
            prop_assert_eq!(decode(&encode(&entries)), Some(entries));
        }
    }
}
