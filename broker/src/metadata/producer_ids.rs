//! Producer id allocation for InitProducerId, on the controller core only.
//!
//! Ids must be unique for the life of the data directory, also across crashes: a partition
//! deduplicates by producer id, so an id handed out twice would make one producer's batches
//! look like another's retries. The allocator hands ids out of blocks of [`BLOCK_IDS`]; before
//! the first id of a block is handed out, the block's end is written durably to
//! `<data>/producer-id-block` (write, fsync, rename, fsync the directory). After a crash the
//! next block starts at the recorded end, so at most one block's unused ids are skipped, never
//! reused. The file holds the end as decimal text plus a crc32 line.
//!
//! The file is read and written through the storage [`Disk`] seam (`GlommioDisk` on the
//! controller core, so the block write does not block its executor; `MemDisk` in tests), with
//! `spate_storage::files::write_atomically`, the checkpoint writer the partition logs use.

use std::path::{Path, PathBuf};

use spate_storage::files::{read_whole, write_atomically};
use spate_storage::io::Disk;
use spate_storage::StorageError;
use spate_wire::types::ProducerId;

/// Ids reserved by one durable write.
pub const BLOCK_IDS: i64 = 1000;
/// File name of the allocation high-water mark in the data directory.
pub const FILE_NAME: &str = "producer-id-block";

/// Allocation errors (reported to the client as a storage error, never an id).
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// The high-water mark could not be read or written.
    #[error("producer id block file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: StorageError,
    },
    /// The file exists but is not one this broker wrote whole.
    #[error("producer id block file {0} is damaged; refusing to guess where ids end")]
    Damaged(PathBuf),
    /// Every positive 64-bit id has been used.
    #[error("producer ids exhausted")]
    Exhausted,
}

/// The allocator's state: ids `[next, end)` are reserved durably and not yet handed out.
#[derive(Debug)]
pub struct ProducerIdAllocator<D: Disk> {
    disk: D,
    dir: PathBuf,
    path: PathBuf,
    next: i64,
    end: i64,
}

fn encode(end: i64) -> String {
    let text = end.to_string();
    format!("{text}\n{}\n", crc32fast::hash(text.as_bytes()))
}

fn decode(text: &str) -> Option<i64> {
    let mut lines = text.lines();
    let value = lines.next()?;
    let crc: u32 = lines.next()?.parse().ok()?;
    if lines.next().is_some() || crc32fast::hash(value.as_bytes()) != crc {
        return None;
    }
    value.parse().ok().filter(|&end| end >= 0)
}

impl<D: Disk> ProducerIdAllocator<D> {
    /// Reads the high-water mark of `data_dir` through `disk` (none yet: ids start at 0).
    ///
    /// # Errors
    /// The file cannot be read, or is damaged (an operator must look: guessing could reuse ids).
    pub async fn load(disk: D, data_dir: &Path) -> Result<ProducerIdAllocator<D>, AllocError> {
        let path = data_dir.join(FILE_NAME);
        let end = match read_whole(&disk, &path).await {
            Ok(Some(bytes)) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(decode)
                .ok_or_else(|| AllocError::Damaged(path.clone()))?,
            Ok(None) => 0,
            Err(source) => return Err(AllocError::Io { path, source }),
        };
        Ok(ProducerIdAllocator {
            disk,
            dir: data_dir.to_owned(),
            path,
            next: end,
            end,
        })
    }

    /// Hands out the next id, first reserving a new block durably when the current one is used
    /// up (one fsync per [`BLOCK_IDS`] ids). Takes `&mut self`, so two calls never run at once on
    /// one allocator: the caller that shares it across tasks keeps it behind an async lock held
    /// for the whole call (see `Core::allocate_producer_id`), so the check of the block's end,
    /// the block write and the hand-out cannot interleave with another allocation. If the call
    /// is dropped during the block write, no id of the block was handed out and `end` is
    /// unchanged: the next call writes the block again.
    ///
    /// # Errors
    /// The block could not be written (no id is handed out), or ids are exhausted.
    pub async fn allocate(&mut self) -> Result<ProducerId, AllocError> {
        assert!(self.next <= self.end);
        if self.next == self.end {
            let end = self
                .end
                .checked_add(BLOCK_IDS)
                .ok_or(AllocError::Exhausted)?;
            self.persist(end).await.map_err(|source| AllocError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(ProducerId(id))
    }

    /// Writes `end` durably: `producer-id-block.tmp` written and fdatasynced, renamed over the
    /// file, the directory fsynced (`write_atomically`), so a crash leaves the old end or the
    /// new one, whole.
    async fn persist(&self, end: i64) -> Result<(), StorageError> {
        self.disk
            .create_dir_all(&self.dir)
            .await
            .map_err(|e| StorageError::from_io("creating", &self.dir, e))?;
        write_atomically(&self.disk, &self.dir, FILE_NAME, encode(end).as_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use spate_storage::block_on;
    use spate_storage::io::mem::{FaultOp, MemDisk};

    use super::*;

    const DATA: &str = "/data";

    fn load(disk: &MemDisk) -> Result<ProducerIdAllocator<MemDisk>, AllocError> {
        block_on(ProducerIdAllocator::load(disk.clone(), Path::new(DATA)))
    }

    fn block_end(disk: &MemDisk) -> Option<i64> {
        let bytes = disk.file_bytes(&Path::new(DATA).join(FILE_NAME))?;
        decode(std::str::from_utf8(&bytes).ok()?)
    }

    #[test]
    fn ids_are_unique_across_restarts_and_skip_at_most_one_block() {
        let disk = MemDisk::new();
        let mut a = load(&disk).unwrap();
        let first: Vec<i64> = (0..1500)
            .map(|_| block_on(a.allocate()).unwrap().0)
            .collect();
        assert_eq!(first, (0..1500).collect::<Vec<_>>());
        assert_eq!(block_end(&disk), Some(2000));
        // A restart right now: the next start resumes after the reserved block.
        drop(a);
        let mut b = load(&disk).unwrap();
        assert_eq!(block_on(b.allocate()).unwrap(), ProducerId(2000));
    }

    #[test]
    fn a_damaged_file_is_refused_not_guessed() {
        let disk = MemDisk::new();
        let dir = Path::new(DATA);
        block_on(disk.create_dir_all(dir)).unwrap();
        block_on(write_atomically(&disk, dir, FILE_NAME, b"5000\n12345\n")).unwrap();
        assert!(matches!(load(&disk), Err(AllocError::Damaged(_))));
        block_on(write_atomically(
            &disk,
            dir,
            FILE_NAME,
            &[0xff, 0xfe, b'\n'],
        ))
        .unwrap();
        assert!(matches!(load(&disk), Err(AllocError::Damaged(_))));
    }

    /// Power loss at random points, with and without a failed block write before it: every
    /// block whose write returned is still reserved after the crash, so no id is handed out
    /// twice, and a failed block write hands out no id.
    #[test]
    fn blocks_survive_crashes_and_no_id_is_handed_out_twice() {
        let faults = [
            None,
            Some(FaultOp::Open),
            Some(FaultOp::Write),
            Some(FaultOp::Truncate),
            Some(FaultOp::Sync),
            Some(FaultOp::Rename),
        ];
        let mut failed_writes = 0;
        for seed in 0..120u64 {
            let disk = MemDisk::new();
            let mut handed_out = HashSet::new();
            for life in 0..4u64 {
                let mut allocator = load(&disk).unwrap();
                let count = 300 + (seed * 7 + life * 311) % 1500;
                for _ in 0..count {
                    let id = block_on(allocator.allocate()).unwrap().0;
                    assert!(
                        handed_out.insert(id),
                        "seed {seed}: id {id} handed out twice"
                    );
                }
                // The next allocation that needs a block write fails.
                if let Some(op) = faults[((seed + life) % faults.len() as u64) as usize] {
                    while allocator.next < allocator.end {
                        let id = block_on(allocator.allocate()).unwrap().0;
                        assert!(
                            handed_out.insert(id),
                            "seed {seed}: id {id} handed out twice"
                        );
                    }
                    let end = allocator.end;
                    disk.fail_next_on(op, &Path::new(DATA).join(format!("{FILE_NAME}.tmp")));
                    match block_on(allocator.allocate()) {
                        Err(AllocError::Io { .. }) => failed_writes += 1,
                        other => panic!("seed {seed}: {op:?} on the block write gave {other:?}"),
                    }
                    // No id of the failed block was handed out, and none was reserved.
                    assert_eq!((allocator.next, allocator.end), (end, end));
                }
                disk.crash(seed * 10 + life);
            }
            let max = handed_out.iter().copied().max().unwrap();
            assert!(block_end(&disk).unwrap() > max, "seed {seed}");
        }
        assert!(
            failed_writes >= 100,
            "only {failed_writes} block writes failed"
        );
    }
}
