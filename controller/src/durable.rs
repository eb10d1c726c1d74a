//! The on-disk form of a voter's Raft log: a file of [`PersistBatch`] records, and the replay that
//! rebuilds the durable [`RaftLogStore`] from it after a restart or a crash.
//!
//! A voter appends one record per batch the node asks it to persist, fsyncs, and only then
//! acknowledges the batch. Replaying the records in order through [`RaftLogStore::apply`] gives
//! back exactly the durable log the node had (truncations on conflict, installed snapshots and
//! compactions included), because the file holds the same batches, in the same order, that the
//! store applied. A compaction makes the file start over: [`checkpoint`] is one record holding the
//! whole store (snapshot, entries after it, hard state), written to a new file that replaces the
//! old one, so the file stays about as long as the entries after the latest snapshot.
//!
//! Record layout (big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | payload length `n` (at most [`RECORD_PAYLOAD_BYTES_MAX`]) |
//! | 4..8 | CRC-32C of the payload |
//! | 8..8+n | payload |
//!
//! Payload: format version (1 byte, [`FORMAT_VERSION`]), a flags byte (bit 0 snapshot, bit 1 hard
//! state, bit 2 compaction), the entry count (u32), then each present part as a u32 length and its
//! protobuf bytes, in the order snapshot, entries, hard state, compaction.
//!
//! A crash can leave a torn last record: replay stops at the first record that is incomplete or
//! fails its CRC and reports where the valid prefix ends, so the caller cuts the file there. Only
//! acknowledged batches matter, and each was fsynced whole before its acknowledgement, so a torn
//! record is always one nobody was told about. A record whose CRC holds but whose payload does not
//! decode is not a torn write; replay refuses it ([`DurableError::Corrupt`]) rather than guess.

use raft::eraftpb::{Entry, HardState, Snapshot};
use thiserror::Error;

use crate::ids::NodeId;
use crate::log_store::{PersistBatch, RaftLogStore};

/// The format version written by this build.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before a record's payload.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Largest payload of one record: a checkpoint holds the image's snapshot, and 256 MiB bounds what a
/// replay reads into memory for one record.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 256 << 20;
/// Most entries in one record.
pub const RECORD_ENTRIES_MAX: usize = 1 << 20;

const FLAG_SNAPSHOT: u8 = 1;
const FLAG_HARD_STATE: u8 = 2;
const FLAG_COMPACTION: u8 = 4;
const FLAGS_KNOWN: u8 = FLAG_SNAPSHOT | FLAG_HARD_STATE | FLAG_COMPACTION;

/// Why a batch could not be written, or a file not replayed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurableError {
    /// The batch encodes to more than [`RECORD_PAYLOAD_BYTES_MAX`] bytes or
    /// [`RECORD_ENTRIES_MAX`] entries.
    #[error("persist batch too large: {bytes} bytes, {entries} entries")]
    TooLarge {
        /// Its payload bytes.
        bytes: usize,
        /// Its entries.
        entries: usize,
    },
    /// A whole record with a good CRC that does not decode: not a torn write.
    #[error("metadata log record at byte {position} does not decode: {reason}")]
    Corrupt {
        /// Where the record starts.
        position: u64,
        /// What failed.
        reason: String,
    },
}

/// Encodes one batch as a record, appended to `out`.
///
/// # Errors
/// [`DurableError::TooLarge`].
pub fn encode_record(batch: &PersistBatch, out: &mut Vec<u8>) -> Result<(), DurableError> {
    if batch.entries.len() > RECORD_ENTRIES_MAX {
        return Err(DurableError::TooLarge {
            bytes: 0,
            entries: batch.entries.len(),
        });
    }
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    let mut flags = 0;
    if batch.snapshot.is_some() {
        flags |= FLAG_SNAPSHOT;
    }
    if batch.hard_state.is_some() {
        flags |= FLAG_HARD_STATE;
    }
    if batch.compaction.is_some() {
        flags |= FLAG_COMPACTION;
    }
    out.push(FORMAT_VERSION);
    out.push(flags);
    out.extend_from_slice(&(batch.entries.len() as u32).to_be_bytes());
    let put = |out: &mut Vec<u8>, message: &dyn protobuf::Message| {
        let bytes = message
            .write_to_bytes()
            .expect("raft's protobuf messages always encode");
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    };
    if let Some(snapshot) = &batch.snapshot {
        put(out, snapshot);
    }
    for entry in &batch.entries {
        put(out, entry);
    }
    if let Some(hard_state) = &batch.hard_state {
        put(out, hard_state);
    }
    if let Some(compaction) = &batch.compaction {
        put(out, compaction);
    }
    let payload_bytes = out.len() - start - RECORD_HEADER_BYTES;
    if payload_bytes > RECORD_PAYLOAD_BYTES_MAX {
        let entries = batch.entries.len();
        out.truncate(start);
        return Err(DurableError::TooLarge {
            bytes: payload_bytes,
            entries,
        });
    }
    let crc = crc32c::crc32c(&out[start + RECORD_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&(payload_bytes as u32).to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// One record holding the whole of `store`: the first record of a new file after a compaction.
///
/// # Errors
/// [`DurableError::TooLarge`].
pub fn checkpoint(store: &RaftLogStore) -> Result<Vec<u8>, DurableError> {
    let snapshot = (store.snapshot_index() > 0).then(|| store.snapshot_ref().clone());
    let batch = PersistBatch {
        token: None,
        snapshot,
        entries: store.entries_ref().to_vec(),
        hard_state: Some(store.hard_state().clone()),
        compaction: None,
    };
    let mut out = Vec::new();
    encode_record(&batch, &mut out)?;
    Ok(out)
}

/// What a replay found.
#[derive(Debug)]
pub struct Replayed {
    /// The durable log.
    pub store: RaftLogStore,
    /// Bytes of whole, valid records: the file is cut here before appending.
    pub valid_bytes: u64,
    /// Records applied.
    pub records: usize,
    /// Whether bytes after `valid_bytes` were dropped (a torn last write).
    pub torn_tail: bool,
}

/// Rebuilds the durable log of a voter of `voters` from a file's bytes.
///
/// # Errors
/// [`DurableError::Corrupt`] for a record with a good CRC that does not decode, or that the log
/// cannot apply (a gap: the file was not written by this code in order).
pub fn replay(voters: &[NodeId], bytes: &[u8]) -> Result<Replayed, DurableError> {
    let mut store = RaftLogStore::new(voters);
    let mut position = 0usize;
    let mut records = 0;
    loop {
        let rest = &bytes[position..];
        if rest.len() < RECORD_HEADER_BYTES {
            break;
        }
        let length = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
        if length > RECORD_PAYLOAD_BYTES_MAX || rest.len() - RECORD_HEADER_BYTES < length {
            break;
        }
        let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + length];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let corrupt = |reason: String| DurableError::Corrupt {
            position: position as u64,
            reason,
        };
        let batch = decode_payload(payload).map_err(corrupt)?;
        if !store.can_apply(&batch) {
            return Err(corrupt("its entries leave a gap in the log".to_owned()));
        }
        store.apply(&batch);
        records += 1;
        position += RECORD_HEADER_BYTES + length;
    }
    Ok(Replayed {
        store,
        valid_bytes: position as u64,
        records,
        torn_tail: position < bytes.len(),
    })
}

/// Decodes a record's payload (after its CRC was checked).
fn decode_payload(payload: &[u8]) -> Result<PersistBatch, String> {
    let mut rest = payload;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err(format!("needs {n} more bytes, has {}", rest.len()));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let version = take(1)?[0];
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let flags = take(1)?[0];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let entry_count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
    if entry_count > RECORD_ENTRIES_MAX {
        return Err(format!("{entry_count} entries"));
    }
    let mut message = |what: &str| -> Result<&[u8], String> {
        let length = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        take(length).map_err(|e| format!("{what}: {e}"))
    };
    let snapshot = if flags & FLAG_SNAPSHOT != 0 {
        Some(parse::<Snapshot>(message("snapshot")?, "snapshot")?)
    } else {
        None
    };
    // Each entry takes at least its 4-byte length: checked before reserving.
    let mut entries = Vec::with_capacity(entry_count.min(payload.len() / 4));
    for _ in 0..entry_count {
        entries.push(parse::<Entry>(message("entry")?, "entry")?);
    }
    let hard_state = if flags & FLAG_HARD_STATE != 0 {
        Some(parse::<HardState>(message("hard state")?, "hard state")?)
    } else {
        None
    };
    let compaction = if flags & FLAG_COMPACTION != 0 {
        Some(parse::<Snapshot>(message("compaction")?, "compaction")?)
    } else {
        None
    };
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(PersistBatch {
        token: None,
        snapshot,
        entries,
        hard_state,
        compaction,
    })
}

fn parse<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M, String> {
    M::parse_from_bytes(bytes).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn hard_state(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote: 1,
            commit,
            ..Default::default()
        }
    }

    fn voters() -> Vec<NodeId> {
        vec![NodeId(1), NodeId(2), NodeId(3)]
    }

    fn batches() -> Vec<PersistBatch> {
        vec![
            PersistBatch {
                entries: vec![entry(1, 1, b""), entry(2, 1, b"a")],
                hard_state: Some(hard_state(1, 0)),
                ..PersistBatch::default()
            },
            PersistBatch {
                entries: vec![entry(3, 1, b"b")],
                hard_state: Some(hard_state(1, 2)),
                ..PersistBatch::default()
            },
            // A new leader overwrote entry 3.
            PersistBatch {
                entries: vec![entry(3, 2, b"c"), entry(4, 2, b"d")],
                hard_state: Some(hard_state(2, 3)),
                ..PersistBatch::default()
            },
        ]
    }

    fn file_of(batches: &[PersistBatch]) -> Vec<u8> {
        let mut out = Vec::new();
        for batch in batches {
            encode_record(batch, &mut out).unwrap();
        }
        out
    }

    fn applied(batches: &[PersistBatch]) -> RaftLogStore {
        let mut store = RaftLogStore::new(&voters());
        for batch in batches {
            store.apply(batch);
        }
        store
    }

    #[test]
    fn replay_gives_back_the_store_the_batches_built() {
        let file = file_of(&batches());
        let replayed = replay(&voters(), &file).unwrap();
        assert_eq!(replayed.store, applied(&batches()));
        assert_eq!(replayed.records, 3);
        assert_eq!(replayed.valid_bytes, file.len() as u64);
        assert!(!replayed.torn_tail);
        let terms: Vec<u64> = replayed
            .store
            .entries_ref()
            .iter()
            .map(|e| e.term)
            .collect();
        assert_eq!(terms, [1, 1, 2, 2]);
    }

    #[test]
    fn a_torn_or_flipped_last_record_is_cut_and_the_prefix_kept() {
        let file = file_of(&batches());
        let first_two = file_of(&batches()[..2]).len();
        for cut in first_two..file.len() {
            let replayed = replay(&voters(), &file[..cut]).unwrap();
            assert_eq!(replayed.store, applied(&batches()[..2]), "cut at {cut}");
            assert_eq!(replayed.valid_bytes, first_two as u64);
            assert_eq!(replayed.torn_tail, cut > first_two);
        }
        for at in first_two..file.len() {
            let mut flipped = file.clone();
            flipped[at] ^= 0x10;
            let replayed = replay(&voters(), &flipped).unwrap();
            assert_eq!(replayed.store, applied(&batches()[..2]), "flip at {at}");
            assert!(replayed.torn_tail);
        }
    }

    #[test]
    fn a_checkpoint_replays_to_the_same_store() {
        let store = applied(&batches());
        let file = checkpoint(&store).unwrap();
        let replayed = replay(&voters(), &file).unwrap();
        assert_eq!(replayed.store, store);
        assert_eq!(replayed.records, 1);
    }

    #[test]
    fn a_record_with_a_good_crc_that_does_not_decode_is_refused() {
        let mut file = Vec::new();
        let payload = [FORMAT_VERSION, 0x80, 0, 0, 0, 0];
        file.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        file.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        file.extend_from_slice(&payload);
        assert!(matches!(
            replay(&voters(), &file),
            Err(DurableError::Corrupt { position: 0, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = replay(&voters(), &bytes);
        }

        #[test]
        fn arbitrary_payloads_behind_a_good_crc_never_panic(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut file = Vec::new();
            file.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            file.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            file.extend_from_slice(&payload);
            let _ = replay(&voters(), &file);
        }
    }
}
