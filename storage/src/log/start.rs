//! The log start offset moved by a client (DeleteRecords) and its durable checkpoint.
//!
//! Kafka keeps a `log-start-offset-checkpoint` per log dir; Spate keeps one per partition
//! directory, [`LOG_START_FILE`], written atomically through the `Disk` seam (tmp, fdatasync,
//! rename, directory sync) before [`Log::delete_records`] returns. At open the log start is the
//! larger of the first segment's base and the checkpoint, never past the log end (a checkpoint
//! past it, left by a crash that took records the start had moved over, is rewritten to the log
//! end before anything is appended, so it cannot hide later records); a checkpoint
//! that does not parse is ignored with a warning (the start then falls back to the first
//! segment's base: records a client deleted may reappear, none is lost).
//!
//! Invariants kept here: the log start only grows (except when a truncation cuts the log below
//! it: it then follows the log end down, as Kafka's `truncateTo` does); it never passes the high
//! watermark when moved by a client, nor the log end ever; the checkpoint is durable before the
//! in-memory start moves, so an acknowledged move survives a crash, and a crash before the
//! rename leaves the old start; whole segments below the start are removed (now, and by every
//! retention pass after a crash), the active segment never.

use spate_wire::types::Offset;

use super::{Core, Log};
use crate::error::{Result, StorageError};
use crate::files::{read_whole, write_atomically};
use crate::io::Disk;

/// The name of a partition's log start checkpoint.
pub const LOG_START_FILE: &str = "log-start-offset-checkpoint";
/// The checkpoint format's version (the first line).
const LOG_START_VERSION: &str = "0";

/// The checkpoint's contents: a version line and the offset, as text.
pub(super) fn encode_log_start(offset: Offset) -> Vec<u8> {
    format!("{LOG_START_VERSION}\n{}\n", offset.0).into_bytes()
}

/// The offset of a checkpoint, `None` if it is not exactly what [`encode_log_start`] writes.
pub(super) fn decode_log_start(bytes: &[u8]) -> Option<Offset> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.strip_suffix('\n')?.split('\n');
    if lines.next()? != LOG_START_VERSION {
        return None;
    }
    let offset: i64 = lines.next()?.parse().ok()?;
    (lines.next().is_none() && offset >= 0).then_some(Offset(offset))
}

/// The checkpointed log start in `dir`, `None` if there is none or it does not parse (then
/// logged as a warning: the file is not trusted, and not removed, so an operator can look).
///
/// # Errors
/// I/O errors reading the file.
pub(super) async fn load_log_start<D: Disk>(
    disk: &D,
    dir: &std::path::Path,
) -> Result<Option<Offset>> {
    let path = dir.join(LOG_START_FILE);
    let Some(bytes) = read_whole(disk, &path).await? else {
        return Ok(None);
    };
    let offset = decode_log_start(&bytes);
    if offset.is_none() {
        tracing::warn!(
            path = %path.display(),
            bytes = bytes.len(),
            "log start checkpoint does not parse; ignored (the log starts at its first segment)"
        );
    }
    Ok(offset)
}

/// Writes the log start checkpoint in `dir`, atomically and durably.
///
/// # Errors
/// I/O errors; the old checkpoint is then unchanged.
pub(super) async fn save_log_start<D: Disk>(
    disk: &D,
    dir: &std::path::Path,
    offset: Offset,
) -> Result<()> {
    write_atomically(disk, dir, LOG_START_FILE, &encode_log_start(offset)).await
}

impl<D: Disk> Log<D> {
    /// Moves the log start to `offset` (DeleteRecords): records below it are no longer read,
    /// and whole segments below it are removed (the active segment stays). Durable before it
    /// returns. An `offset` at or below the current start changes nothing. Returns the log
    /// start afterwards (Kafka's low watermark).
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] if `offset` is above the high watermark;
    /// [`StorageError::Fenced`]; I/O errors. If the checkpoint write fails the start has not
    /// moved; if removing segments fails afterwards it has (the next retention pass removes
    /// them).
    pub async fn delete_records(&self, offset: Offset) -> Result<Offset> {
        let mut core = self.core.lock().await;
        // A pending seal writes the closed segment's index, which may be removed here.
        self.wait_sealed().await?;
        self.check_fenced()?;
        let high_watermark = self.high_watermark();
        if offset > high_watermark || offset.0 < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                start: self.log_start.get(),
                end: high_watermark,
            });
        }
        if offset <= self.log_start.get() {
            return Ok(self.log_start.get());
        }
        save_log_start(&self.disk, &self.dir, offset).await?;
        self.log_start.set(offset);
        self.remove_segments_below_start(&mut core).await?;
        Ok(offset)
    }

    /// Removes the closed segments that end at or below the log start (the next one starts at
    /// or before it), then what retention removes with them. Returns how many and their bytes.
    pub(super) async fn remove_segments_below_start(
        &self,
        core: &mut Core<D::File>,
    ) -> Result<(usize, u64)> {
        let mut removed = (0, 0);
        loop {
            let mut bases = core.segments.keys();
            let (Some(&oldest), Some(&next)) = (bases.next(), bases.next()) else {
                break;
            };
            if next > self.log_start.get() {
                break;
            }
            let segment = core.segments.remove(&oldest).expect("segment");
            self.remove_segment_files(&segment).await?;
            removed.0 += 1;
            removed.1 += segment.size;
        }
        self.forget_below_start(core).await?;
        Ok(removed)
    }
}
