//! Producer id allocation for InitProducerId, on the controller core only.
//!
//! Ids must be unique for the life of the data directory, also across crashes: a partition
//! deduplicates by producer id, so an id handed out twice would make one producer's batches
//! look like another's retries. The allocator hands ids out of blocks of [`BLOCK_IDS`]; before
//! the first id of a block is handed out, the block's end is written durably to
//! `<data>/producer-id-block` (write, fsync, rename, fsync the directory). After a crash the
//! next block starts at the recorded end, so at most one block's unused ids are skipped, never
//! reused. The file holds the end as decimal text plus a crc32 line.

use std::io::Write;
use std::path::{Path, PathBuf};

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
        source: std::io::Error,
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
pub struct ProducerIdAllocator {
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

impl ProducerIdAllocator {
    /// Reads the high-water mark of `data_dir` (none yet: ids start at 0).
    ///
    /// # Errors
    /// The file cannot be read, or is damaged (an operator must look: guessing could reuse ids).
    pub fn load(data_dir: &Path) -> Result<ProducerIdAllocator, AllocError> {
        let path = data_dir.join(FILE_NAME);
        let end = match std::fs::read_to_string(&path) {
            Ok(text) => decode(&text).ok_or_else(|| AllocError::Damaged(path.clone()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(AllocError::Io { path, source }),
        };
        Ok(ProducerIdAllocator {
            path,
            next: end,
            end,
        })
    }

    /// Hands out the next id, first reserving a new block durably when the current one is used
    /// up. Synchronous on purpose: nothing else runs on the core between the check and the
    /// write, so two callers can never get the same id (one fsync per [`BLOCK_IDS`] ids).
    ///
    /// # Errors
    /// The block could not be written (no id is handed out), or ids are exhausted.
    pub fn allocate(&mut self) -> Result<ProducerId, AllocError> {
        assert!(self.next <= self.end);
        if self.next == self.end {
            let end = self
                .end
                .checked_add(BLOCK_IDS)
                .ok_or(AllocError::Exhausted)?;
            self.persist(end).map_err(|source| AllocError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(ProducerId(id))
    }

    fn persist(&self, end: i64) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(encode(end).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spate-pid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn ids_are_unique_across_restarts_and_skip_at_most_one_block() {
        let dir = temp_dir("restart");
        let mut a = ProducerIdAllocator::load(&dir).unwrap();
        let first: Vec<i64> = (0..1500).map(|_| a.allocate().unwrap().0).collect();
        assert_eq!(first, (0..1500).collect::<Vec<_>>());
        assert_eq!(
            decode(&std::fs::read_to_string(dir.join(FILE_NAME)).unwrap()),
            Some(2000)
        );
        // A crash right now: the next start resumes after the reserved block.
        drop(a);
        let mut b = ProducerIdAllocator::load(&dir).unwrap();
        assert_eq!(b.allocate().unwrap(), ProducerId(2000));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_refused_not_guessed() {
        let dir = temp_dir("damaged");
        std::fs::write(dir.join(FILE_NAME), "5000\n12345\n").unwrap();
        assert!(matches!(
            ProducerIdAllocator::load(&dir),
            Err(AllocError::Damaged(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
