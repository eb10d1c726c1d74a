//! The production disk: glommio DMA files (O_DIRECT over io_uring).

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::{AlignedBuf, Disk, DiskFile, OpenMode, BLOCK_BYTES};

/// A glommio DMA buffer as the seam's aligned buffer; written without another copy.
#[derive(Debug)]
pub struct GlommioBuf(DmaBuffer);

impl AlignedBuf for GlommioBuf {
    fn as_slice(&self) -> &[u8] {
        self.0.as_bytes()
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
    fn shrink_to(&mut self, len: usize) {
        assert!(len <= self.0.len() && len % BLOCK_BYTES == 0);
        self.0.trim_to_size(len);
    }
}

/// Upper bounds (inclusive) of the fdatasync time buckets, in microseconds: from a fast NVMe
/// flush (~50 us) to a disk that stalls for seconds.
pub const SYNC_BUCKET_BOUNDS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

/// How long this thread's fdatasync calls took since it started: a count per bucket of
/// [`SYNC_BUCKET_BOUNDS_US`] (not cumulative; the last slot counts the calls above every
/// bound), their total and their sum. Kept per thread because each glommio executor is one
/// thread, so recording takes no lock; the broker reads it on each core for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncTimes {
    /// Calls per bucket; `buckets[SYNC_BUCKET_BOUNDS_US.len()]` counts the slower ones.
    pub buckets: [u64; SYNC_BUCKET_BOUNDS_US.len() + 1],
    /// Calls recorded.
    pub count: u64,
    /// Their total time, microseconds.
    pub sum_us: u64,
}

impl SyncTimes {
    fn add(&mut self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = SYNC_BUCKET_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

/// One thread's [`SyncTimes`], behind a `Cell` (the executor's thread owns it).
#[derive(Debug, Default)]
struct SyncTimesCell(std::cell::Cell<SyncTimes>);

impl SyncTimesCell {
    fn record(&self, elapsed: std::time::Duration) {
        let mut times = self.0.get();
        times.add(elapsed);
        self.0.set(times);
    }
}

thread_local! {
    static SYNC_TIMES: SyncTimesCell = SyncTimesCell::default();
}

/// The fdatasync times of [`GlommioFile`]s on the calling thread (one executor) so far.
pub fn sync_times() -> SyncTimes {
    SYNC_TIMES.with(|times| times.0.get())
}

/// Files on a real filesystem through glommio. Must be used inside a glommio executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlommioDisk;

/// An open DMA file.
#[derive(Debug)]
pub struct GlommioFile {
    file: DmaFile,
    // Kept for error messages; glommio's own copy is behind a RefCell borrow.
    path: PathBuf,
}

fn to_io(error: glommio::GlommioError<()>) -> io::Error {
    error.into()
}

impl Disk for GlommioDisk {
    type File = GlommioFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<GlommioFile> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if mode == OpenMode::CreateTruncate {
            options.create(true).truncate(true);
        }
        let file = options.dma_open(path).await.map_err(to_io)?;
        Ok(GlommioFile {
            file,
            path: path.to_owned(),
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        glommio::io::remove(path).await.map_err(to_io)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        glommio::io::rename(from, to).await.map_err(to_io)
    }

    async fn list_dir(&self, dir: &Path, entries_max: usize) -> io::Result<Vec<String>> {
        // Listing happens only when a partition opens; a blocking readdir is acceptable there.
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            if names.len() == entries_max {
                return Err(io::Error::other(format!(
                    "{} holds more than {entries_max} files",
                    dir.display()
                )));
            }
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Rare (once per partition creation); blocking is acceptable.
        std::fs::create_dir_all(dir)
    }

    async fn yield_to_io(&self) {
        // Leaves the task queue so the executor runs its reactor, which submits queued I/O.
        glommio::executor().yield_task_queue_now().await;
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let directory = glommio::io::Directory::open(dir).await.map_err(to_io)?;
        directory.sync().await.map_err(to_io)?;
        directory.close().await.map_err(to_io)
    }
}

impl DiskFile for GlommioFile {
    type Buf = GlommioBuf;

    fn alloc_buf(&self, len: usize) -> GlommioBuf {
        assert!(
            len % BLOCK_BYTES == 0,
            "buffer length {len} not block aligned"
        );
        GlommioBuf(self.file.alloc_dma_buffer(len))
    }

    async fn write_at(&self, buf: GlommioBuf, pos: u64) -> (io::Result<()>, Option<GlommioBuf>) {
        assert!(
            pos % BLOCK_BYTES as u64 == 0,
            "write position {pos} not block aligned"
        );
        let len = buf.0.len();
        assert!(
            len % BLOCK_BYTES == 0,
            "write length {len} not block aligned"
        );
        // Shared, not owned, so the buffer comes back after the write and can be reused.
        let shared = Rc::new(buf.0);
        let result = self
            .file
            .write_rc_at(shared.clone(), pos)
            .await
            .map_err(to_io);
        let back = Rc::try_unwrap(shared).ok().map(GlommioBuf);
        let result = match result {
            // A short direct write happens only when the device runs out of space mid-way.
            Ok(written) if written != len => Err(io::Error::from_raw_os_error(28)),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        (result, back)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let result = self.file.read_at(pos, len).await.map_err(to_io)?;
        Ok(Bytes::copy_from_slice(&result))
    }

    async fn fdatasync(&self) -> io::Result<()> {
        let started = std::time::Instant::now();
        let result = self.file.fdatasync().await.map_err(to_io);
        SYNC_TIMES.with(|times| times.record(started.elapsed()));
        result
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len).await.map_err(to_io)
    }

    async fn pre_allocate(&self, len: u64) -> io::Result<()> {
        let size = self.file.file_size().await.map_err(to_io)?;
        if len > size {
            // Not KEEP_SIZE: the file grows, so later writes inside it change no file size and
            // fdatasync has less metadata to commit. Recovery reads the zeros as end of data.
            self.file.pre_allocate(len, false).await.map_err(to_io)?;
        }
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(to_io)
    }

    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}

/// Works around glommio 0.9's io-poll probe bug (upstream #605, #670): the first DMA file
/// glommio opens decides whether reads are polled, and if that file is empty the probe caches a
/// wrong answer, after which every DMA read fails with EOPNOTSUPP. Call this once per executor
/// at startup, before opening any other DMA file on the device: it writes (if needed) a small
/// non-empty file in `dir` with ordinary I/O and reads one block of it through `DmaFile`.
///
/// # Errors
/// Any I/O error creating or reading the probe file.
pub async fn prime_io_poll_probe(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".spate-io-probe");
    let needs_write = std::fs::metadata(&path)
        .map(|m| m.len() < BLOCK_BYTES as u64)
        .unwrap_or(true);
    if needs_write {
        // Written aside and renamed into place: every executor primes at once, and one that
        // opened the file while another had just truncated it would probe an empty file, the
        // very misfire this avoids (seen as EOPNOTSUPP on a two-core start).
        let tmp = dir.join(format!(
            ".spate-io-probe.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&tmp, vec![0x5Au8; BLOCK_BYTES])?;
        std::fs::rename(&tmp, &path)?;
    }
    let file = Rc::new(DmaFile::open(&path).await.map_err(to_io)?);
    let block = file.read_at_aligned(0, BLOCK_BYTES).await.map_err(to_io)?;
    if block.len() != BLOCK_BYTES {
        return Err(io::Error::other("io probe file read short"));
    }
    drop(block);
    if let Ok(file) = Rc::try_unwrap(file) {
        file.close().await.map_err(to_io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sync_times_land_in_the_first_bucket_whose_bound_covers_them() {
        let mut times = SyncTimes::default();
        times.add(Duration::from_micros(50)); // on a bound: that bucket
        times.add(Duration::from_micros(51));
        times.add(Duration::from_secs(60)); // above every bound
        assert_eq!(times.buckets[0], 1);
        assert_eq!(times.buckets[1], 1);
        assert_eq!(times.buckets[SYNC_BUCKET_BOUNDS_US.len()], 1);
        assert_eq!(times.count, 3);
        assert_eq!(times.sum_us, 50 + 51 + 60_000_000);
    }
}
