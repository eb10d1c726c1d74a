//! What the checker knows of records: each record is one unique value, carried in real Kafka v2
//! batches, and what a replica's log holds is mirrored as one [`Rec`] per offset.

use bytes::{Bytes, BytesMut};
use spate_replication::{Batch, LeaderEpoch, Offset};
use spate_wire::batch::{batches, BatchBuilder, BatchSpec};

/// One record as the checker sees it: the leader epoch of its batch and its unique value.
///
/// The value rides in the batch header's `firstTimestamp` (the first record's value; the batch's
/// later records count up from it), which the batch CRC covers: a follower's copy, a recovered log
/// and a consumer's read are all checked through the real bytes, without decoding record bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    pub epoch: LeaderEpoch,
    pub value: u64,
}

/// What the replica core needs of a fetched batch (the bytes travel beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimBatch {
    base: Offset,
    last: Offset,
    epoch: LeaderEpoch,
}

impl Batch for SimBatch {
    fn base_offset(&self) -> Offset {
        self.base
    }
    fn last_offset(&self) -> Offset {
        self.last
    }
    fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }
}

/// Bytes of each record's value: the record bodies are not what the checker reads, but a batch of
/// a realistic size makes segments roll and the tail cache evict within a run.
const VALUE_BYTES: usize = 48;

/// A producer's batch of `count` records with values `first..first + count`.
pub fn produce_batch(first: u64, count: u64) -> BytesMut {
    assert!(count >= 1 && first <= i64::MAX as u64);
    let mut out = BytesMut::new();
    let spec = BatchSpec {
        first_timestamp_ms: first as i64,
        ..BatchSpec::default()
    };
    let mut builder = BatchBuilder::new(&mut out, spec);
    for value in first..first + count {
        let body = [(value % 251) as u8; VALUE_BYTES];
        builder.push(first as i64, None, Some(&body), &[]);
    }
    builder.finish();
    out
}

/// The records of whole batches read from a log (the bytes were checked by whoever read them).
///
/// # Panics
/// If `bytes` are not whole v2 batches: every caller has bytes a log returned.
pub fn records_of(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    for item in batches(bytes) {
        let (header, _) = item.expect("a log returns whole batches");
        let epoch = LeaderEpoch(header.partition_leader_epoch.0);
        let first = header.first_timestamp_ms as u64;
        for k in 0..=header.last_offset_delta as u64 {
            out.push(Rec {
                epoch,
                value: first + k,
            });
        }
    }
    out
}

/// The batches of `bytes` as the replica core takes them, and where the first one starts.
pub fn sim_batches_of(bytes: &Bytes) -> Vec<SimBatch> {
    batches(bytes)
        .map(|item| {
            let (header, _) = item.expect("a log returns whole batches");
            SimBatch {
                base: Offset(header.base_offset.0),
                last: Offset(header.last_offset().0),
                epoch: LeaderEpoch(header.partition_leader_epoch.0),
            }
        })
        .collect()
}

/// The checker's model of one partition.
#[derive(Debug, Default)]
pub struct PartitionModel {
    /// The committed sequence: every record that was ever below a leader's high watermark, at its
    /// offset. It only grows: a record once committed is never replaced or lost.
    pub committed: Vec<Rec>,
    /// The leader epoch in which each committed record first went below a leader's high watermark.
    pub committed_in: Vec<LeaderEpoch>,
    /// What the consumer read, in offset order from 0.
    pub consumed: Vec<Rec>,
}

impl PartitionModel {
    /// Checks `log[from..to]` against the committed sequence; records past its end join it when
    /// `leading` (a leader's high watermark commits them). Returns the first disagreement.
    pub fn check_below(
        &mut self,
        log: &[Rec],
        from: usize,
        to: usize,
        leading: Option<LeaderEpoch>,
    ) -> Result<(), String> {
        if to > log.len() {
            return Err(format!(
                "high watermark {to} past the log end {}",
                log.len()
            ));
        }
        for (o, rec) in log.iter().enumerate().take(to).skip(from) {
            match (self.committed.get(o), leading) {
                (Some(c), _) if c == rec => {}
                (Some(c), _) => {
                    return Err(format!(
                    "offset {o} is {rec:?} below the high watermark, but {c:?} was committed there"
                ))
                }
                (None, Some(epoch)) if o == self.committed.len() => {
                    self.committed.push(*rec);
                    self.committed_in.push(epoch);
                }
                (None, _) => {
                    return Err(format!(
                        "offset {o} below a high watermark is past the committed end {}",
                        self.committed.len()
                    ))
                }
            }
        }
        Ok(())
    }
}
