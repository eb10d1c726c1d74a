//! Small whole-file helpers over the I/O seam, for checkpoint files.

use std::path::Path;

use bytes::Bytes;

use crate::error::{Result, StorageError};
use crate::io::{align_up, AlignedBuf, Disk, DiskFile, OpenMode};
use crate::segment::TMP_SUFFIX;

/// Largest checkpoint file read back whole.
pub const CHECKPOINT_BYTES_MAX: usize = 1 << 30;

/// Replaces `dir/name` with `bytes` so a crash leaves either the old or the new file whole:
/// write `name.tmp` (direct I/O, padded, then truncated to length), sync it, rename, sync the
/// directory.
///
/// # Errors
/// Any I/O error; `dir/name` is then unchanged, and a leftover `.tmp` is removed on next open.
pub async fn write_atomically<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    write_atomically_via(disk, dir, name, "", bytes).await
}

/// [`write_atomically`] through the temporary file `name{tag}.tmp`: two writers that may
/// replace the same file at once (the active segment's checkpoint outside the log lock, and a
/// roll's full index under it) need their own temporary files, or one renames the other's
/// away and fails with not-found.
///
/// # Errors
/// As [`write_atomically`].
pub async fn write_atomically_via<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    tag: &str,
    bytes: &[u8],
) -> Result<()> {
    let tmp = dir.join(format!("{name}{tag}{TMP_SUFFIX}"));
    let path = dir.join(name);
    let io = |op| move |e| StorageError::from_io(op, dir.join(name), e);
    let file = disk
        .open(&tmp, OpenMode::CreateTruncate)
        .await
        .map_err(io("creating checkpoint"))?;
    let padded = align_up(bytes.len() as u64) as usize;
    if padded > 0 {
        let mut buf = file.alloc_buf(padded);
        buf.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        buf.as_mut_slice()[bytes.len()..].fill(0);
        let (result, _) = file.write_at(buf, 0).await;
        result.map_err(io("writing checkpoint"))?;
    }
    file.truncate(bytes.len() as u64)
        .await
        .map_err(io("sizing checkpoint"))?;
    file.fdatasync().await.map_err(io("syncing checkpoint"))?;
    drop(file);
    disk.rename(&tmp, &path)
        .await
        .map_err(io("renaming checkpoint"))?;
    disk.sync_dir(dir).await.map_err(io("syncing directory"))?;
    Ok(())
}

/// Reads a whole file, `None` if it does not exist.
///
/// # Errors
/// I/O errors other than not-found, or a file over [`CHECKPOINT_BYTES_MAX`].
pub async fn read_whole<D: Disk>(disk: &D, path: &Path) -> Result<Option<Bytes>> {
    let file = match disk.open(path, OpenMode::Existing).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::from_io("opening", path, e)),
    };
    let size = file
        .size()
        .await
        .map_err(|e| StorageError::from_io("sizing", path, e))?;
    if size > CHECKPOINT_BYTES_MAX as u64 {
        return Err(StorageError::BadCheckpoint {
            path: path.to_owned(),
            reason: "file too large",
        });
    }
    let bytes = file
        .read_at(0, size as usize)
        .await
        .map_err(|e| StorageError::from_io("reading", path, e))?;
    Ok(Some(bytes))
}
