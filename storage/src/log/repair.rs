//! Repairing a closed segment from another replica: [`Log::repair_segment`].
//!
//! A batch that fails its CRC on a read (bit rot, a bad sector) is never served
//! ([`super::FileRange::load_valid`] stops before it). Replicas hold the same batches at the same
//! offsets, byte for byte, so the damaged segment can be rebuilt from this log's intact batches
//! before the damage and another replica's batches from there to the segment's end, written as a
//! new file and swapped in exactly as the cleaner swaps a cleaned segment (`.cleaned`, fdatasync,
//! rename to `.swap` as the commit point, recovery completes a swap), so a crash part way leaves
//! the damaged segment or the repaired one, never a mix.
//!
//! Invariants kept here: only a closed segment is rewritten; every batch written passed its CRC
//! (ours were checked on the read, the replica's here); offsets only grow and stay inside the
//! segment's range; the swap happens only if the segment is unchanged since it was read (a
//! cleaning or retention meanwhile wins, and the repair reports it).

use std::future::Future;

use bytes::Bytes;
use spate_wire::batch::{batches, verify_crc};
use spate_wire::types::Offset;

use super::clean::{
    swap_name, CleanedWriter, RemovedMarkers, SegmentReader, Snapshot, StoredBatch, CLEANED_SUFFIX,
};
use super::{io_err, Log, Unthrottled};
use crate::compaction::ParsedBatch;
use crate::error::{Result, StorageError};
use crate::io::{Disk, OpenMode};

/// Bytes asked of the other replica at a time (its answers may be shorter).
pub const REPAIR_FETCH_BYTES_MAX: usize = 4 << 20;

/// What [`Log::repair_segment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairOutcome {
    /// The repaired segment's base offset.
    pub segment: Offset,
    /// Batches kept from this log (before the damage).
    pub batches_kept: usize,
    /// Batches taken from the other replica.
    pub batches_fetched: usize,
    /// The segment changed while it was being repaired (cleaned, removed): nothing was
    /// swapped; the caller reads again and repairs again if the damage is still there.
    pub superseded: bool,
}

impl<D: Disk> Log<D> {
    /// Rewrites the closed segment holding `damaged` (the first offset a read could not return)
    /// from this log's batches before it and another replica's from it on. `fetch(from)` returns
    /// whole batches of the other replica's log starting with the one holding `from` (or the
    /// next one), empty when it has nothing more below its high watermark, or an error (the
    /// repair then stops, changing nothing).
    ///
    /// # Errors
    /// [`StorageError::NotRepairable`] if `damaged` is not in a closed segment, or the other
    /// replica's batches do not fit (a batch across `damaged`, offsets going back, a bad CRC);
    /// I/O errors. Nothing is swapped in on any error.
    pub async fn repair_segment<F, Fut>(
        &self,
        damaged: Offset,
        mut fetch: F,
    ) -> Result<RepairOutcome>
    where
        F: FnMut(Offset) -> Fut,
        Fut: Future<Output = std::result::Result<Bytes, String>>,
    {
        let not_repairable = |reason: String| StorageError::NotRepairable {
            offset: damaged,
            reason,
        };
        let segment = {
            let core = self.core.lock().await;
            let active = *core
                .segments
                .keys()
                .next_back()
                .expect("a log has a segment");
            let (&base, s) = core
                .segments
                .range(..=damaged)
                .next_back()
                .ok_or_else(|| not_repairable("below the log start".into()))?;
            if base == active || damaged >= s.next_offset {
                return Err(not_repairable("not in a closed segment".into()));
            }
            Snapshot {
                base,
                next_offset: s.next_offset,
                size: s.size,
                file: s.file.clone(),
                path: s.path.clone(),
            }
        };
        // A closed segment still being sealed may have writes in flight.
        self.wait_sealed().await?;
        let config = self.config();
        let (base, end) = (segment.base, segment.next_offset);
        let cleaned_path = self.dir.join(swap_name(base, end, CLEANED_SUFFIX));
        let file = self
            .disk
            .open(&cleaned_path, OpenMode::CreateTruncate)
            .await
            .map_err(io_err("creating", &cleaned_path))?;
        let mut writer = CleanedWriter::new(file, base, &config);
        let mut budget = Unthrottled;
        let mut outcome = RepairOutcome {
            segment: base,
            batches_kept: 0,
            batches_fetched: 0,
            superseded: false,
        };
        let written = async {
            // Ours, up to the damage (each CRC-checked as it is read).
            let mut reader = SegmentReader::new(&segment);
            let mut next = base;
            while let Ok(Some(StoredBatch { header, bytes, .. })) = reader.next(&mut budget).await {
                if header.last_offset() >= damaged {
                    break;
                }
                writer
                    .push(ParsedBatch::new(header, &bytes), &cleaned_path, &mut budget)
                    .await?;
                next = header.last_offset().next();
                outcome.batches_kept += 1;
            }
            // The other replica's, from the damage to the segment's end.
            // From where ours stopped: the damage, or a bad batch before it (repaired too).
            let mut from = next;
            while from < end {
                let bytes = fetch(from).await.map_err(not_repairable)?;
                if bytes.is_empty() {
                    break;
                }
                let mut progressed = false;
                for item in batches(&bytes) {
                    let (header, raw) =
                        item.map_err(|e| not_repairable(format!("the replica's batch: {e}")))?;
                    if header.base_offset >= end {
                        from = end;
                        break;
                    }
                    if header.base_offset < from {
                        // Its batch boundaries differ from ours (one of the two was compacted).
                        return Err(not_repairable(format!(
                            "the replica's batch at {} starts before {}",
                            header.base_offset.0, from.0
                        )));
                    }
                    if header.last_offset() >= end {
                        return Err(not_repairable(format!(
                            "the replica's batch at {} crosses the segment's end {}",
                            header.base_offset.0, end.0
                        )));
                    }
                    verify_crc(raw)
                        .map_err(|e| not_repairable(format!("the replica's batch: {e}")))?;
                    writer
                        .push(ParsedBatch::new(header, raw), &cleaned_path, &mut budget)
                        .await?;
                    from = header.last_offset().next();
                    outcome.batches_fetched += 1;
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            writer.finish(&cleaned_path, &mut budget).await
        }
        .await;
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                let _ = self.disk.remove(&cleaned_path).await;
                return Err(e);
            }
        };
        if outcome.batches_fetched == 0 {
            let _ = self.disk.remove(&cleaned_path).await;
            return Err(not_repairable("the replica had nothing from there".into()));
        }
        outcome.superseded = !self
            .install(&[&segment], base, end, written, &RemovedMarkers::default())
            .await?;
        Ok(outcome)
    }
}
