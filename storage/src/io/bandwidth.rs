//! Raw sequential write bandwidth through the [`Disk`] seam: the ceiling a log writing to the
//! same directory can reach. The storage append bench and `spate-bench disk` both measure with
//! this one loop, so their "raw" numbers mean the same thing.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::{AlignedBuf, Disk, DiskFile, OpenMode, BLOCK_BYTES};
use crate::error::{Result, StorageError};

/// Largest single write: a bound on the buffers in flight (`write_bytes x writes_in_flight`).
pub const WRITE_BYTES_MAX: usize = 64 << 20;
/// Most writes in flight at once.
pub const WRITES_IN_FLIGHT_MAX: usize = 64;

/// How [`sequential_write`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSpec {
    /// Bytes to write in all; rounded up to whole writes.
    pub total_bytes: u64,
    /// Size of each write: a multiple of [`BLOCK_BYTES`], at most [`WRITE_BYTES_MAX`].
    pub write_bytes: usize,
    /// Writes submitted before the oldest is awaited (the queue depth), 1 to
    /// [`WRITES_IN_FLIGHT_MAX`].
    pub writes_in_flight: usize,
}

/// What [`sequential_write`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Bytes written (whole writes, so at least the bytes asked for).
    pub bytes: u64,
    /// From the first write's submission to the end of the final fdatasync.
    pub elapsed: Duration,
}

impl Measured {
    /// Bytes per second.
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Writes `spec.total_bytes` to a new file at `path` sequentially: `spec.write_bytes` direct
/// writes, `spec.writes_in_flight` of them at a time, each from a freshly allocated buffer
/// filled with a non-zero pattern (a device or filesystem could shortcut zeros), then one
/// fdatasync (a log under group commit also ends durable). The file is preallocated before the
/// clock starts and each write is handed to the kernel as soon as it is queued, so this is the
/// best the device does at that queue depth. Removes the file afterwards, also when a write
/// failed.
///
/// # Errors
/// [`StorageError::DiskFull`] or [`StorageError::Io`] if the file cannot be created, written,
/// synced or removed.
///
/// # Panics
/// If `spec` is outside the limits documented on [`WriteSpec`].
pub async fn sequential_write<D: Disk>(disk: &D, path: &Path, spec: WriteSpec) -> Result<Measured> {
    assert!(spec.write_bytes > 0 && spec.write_bytes <= WRITE_BYTES_MAX);
    assert_eq!(
        spec.write_bytes % BLOCK_BYTES,
        0,
        "writes must be block aligned"
    );
    assert!(spec.writes_in_flight > 0 && spec.writes_in_flight <= WRITES_IN_FLIGHT_MAX);
    let file = disk
        .open(path, OpenMode::CreateTruncate)
        .await
        .map_err(|e| StorageError::from_io("creating", path, e))?;
    // The log writes into segments preallocated ahead of its appends; raw must not pay for
    // extending the file (block allocation, a journalled size change per fdatasync) when the
    // log does not, or the baseline is low and every ratio to it flattering.
    let rounded = spec.total_bytes.div_ceil(spec.write_bytes as u64) * spec.write_bytes as u64;
    let result = match file.pre_allocate(rounded).await {
        Ok(()) => write_all(disk, &file, spec).await,
        Err(e) => Err(("preallocating", e)),
    };
    drop(file);
    let removed = disk.remove(path).await;
    let measured = result.map_err(|(op, e)| StorageError::from_io(op, path, e))?;
    removed.map_err(|e| StorageError::from_io("removing", path, e))?;
    Ok(measured)
}

async fn write_all<D: Disk>(
    disk: &D,
    file: &D::File,
    spec: WriteSpec,
) -> std::result::Result<Measured, (&'static str, io::Error)> {
    type Write<'f, B> = Pin<Box<dyn Future<Output = (io::Result<()>, Option<B>)> + 'f>>;
    let mut in_flight: VecDeque<Write<'_, <D::File as DiskFile>::Buf>> =
        VecDeque::with_capacity(spec.writes_in_flight);
    let failed = |e| ("writing", e);
    let start = Instant::now();
    let mut position = 0u64;
    while position < spec.total_bytes {
        // Fresh buffers, not the ones handed back: this is how both callers measured before
        // they shared this loop, and their recorded numbers stay comparable.
        let mut buf = file.alloc_buf(spec.write_bytes);
        buf.as_mut_slice().fill((position >> 20) as u8 | 1);
        let mut write: Write<'_, <D::File as DiskFile>::Buf> =
            Box::pin(file.write_at(buf, position));
        // Polled once so the write is queued now, not when it is awaited, then handed to the
        // kernel: without the yield it would wait in the ring while the next buffer is filled,
        // and the queue depth would be one less than asked (the log's write path yields too).
        match poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
            Poll::Pending => {
                in_flight.push_back(write);
                disk.yield_to_io().await;
            }
            Poll::Ready((result, _)) => result.map_err(failed)?,
        }
        while in_flight.len() >= spec.writes_in_flight {
            let oldest = in_flight.pop_front().expect("the queue is not empty");
            oldest.await.0.map_err(failed)?;
        }
        position += spec.write_bytes as u64;
    }
    while let Some(write) = in_flight.pop_front() {
        write.await.0.map_err(failed)?;
    }
    file.fdatasync().await.map_err(|e| ("syncing", e))?;
    let elapsed = start.elapsed();
    assert!(position >= spec.total_bytes);
    Ok(Measured {
        bytes: position,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mem::MemDisk;
    use crate::sync::block_on;

    fn spec() -> WriteSpec {
        WriteSpec {
            total_bytes: (3 << 20) + 1,
            write_bytes: 1 << 20,
            writes_in_flight: 2,
        }
    }

    #[test]
    fn measures_whole_writes_and_removes_the_file() {
        let disk = MemDisk::new();
        let dir = Path::new("/raw");
        block_on(disk.create_dir_all(dir)).unwrap();
        let measured = block_on(sequential_write(&disk, &dir.join("raw.bin"), spec())).unwrap();
        assert_eq!(measured.bytes, 4 << 20, "rounded up to whole writes");
        assert!(measured.bytes_per_second() > 0.0);
        assert!(block_on(disk.list_dir(dir, 10)).unwrap().is_empty());
    }

    #[test]
    fn a_full_disk_is_reported_and_the_file_still_removed() {
        // The whole file is preallocated first, so a disk too small fails there.
        let disk = MemDisk::new();
        let dir = Path::new("/raw");
        block_on(disk.create_dir_all(dir)).unwrap();
        disk.set_quota_bytes(Some(2 << 20));
        let result = block_on(sequential_write(&disk, &dir.join("raw.bin"), spec()));
        assert!(
            matches!(
                result,
                Err(StorageError::DiskFull {
                    op: "preallocating",
                    ..
                })
            ),
            "{result:?}"
        );
        assert!(block_on(disk.list_dir(dir, 10)).unwrap().is_empty());
    }
}
