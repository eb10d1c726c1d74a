//! The controller quorum's Raft log on this broker's disk: `<data-dir>/__cluster_metadata/raft.log`,
//! in the record format of `spate_controller::durable`.
//!
//! Each batch the node asks to persist is appended as one record and fdatasynced before the
//! node is told it is durable. After a compaction the file starts over with one checkpoint
//! record (written to `raft.log.new`, fsynced, renamed over `raft.log`, directory fsynced), so it
//! holds about the entries after the latest snapshot. At startup the file is replayed; a torn
//! last record (a crash mid-write: never acknowledged) is cut off.
//!
//! Writes go through glommio's buffered file API on the controller core, so an fdatasync waits
//! in io_uring rather than blocking the core; the startup read is blocking, before any client.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::Context;
use glommio::io::{BufferedFile, OpenOptions};
use spate_controller::durable::{checkpoint, encode_record, replay};
use spate_controller::ids::NodeId;
use spate_controller::log_store::{PersistBatch, RaftLogStore};
use spate_storage::io::glommio::GlommioDisk;
use spate_storage::io::Disk;
use tracing::{info, warn};

/// The directory of the metadata log, under the data dir (Kafka's name for its KRaft log).
pub const METADATA_DIR_NAME: &str = "__cluster_metadata";
const FILE_NAME: &str = "raft.log";
const NEW_FILE_NAME: &str = "raft.log.new";

/// The open log file; see the module docs.
pub struct RaftFile {
    dir: PathBuf,
    file: RefCell<Rc<BufferedFile>>,
    end: Cell<u64>,
    /// What the file holds, replayed: the source of a checkpoint after a compaction.
    durable: RefCell<RaftLogStore>,
}

impl std::fmt::Debug for RaftFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftFile")
            .field("dir", &self.dir)
            .field("end", &self.end.get())
            .finish()
    }
}

impl RaftFile {
    /// Opens (or creates) the log under `data_dir` and replays it.
    ///
    /// # Errors
    /// If it cannot be read or written, or a record with a good CRC does not decode.
    pub async fn open(
        data_dir: &Path,
        voters: &[NodeId],
    ) -> anyhow::Result<(RaftFile, RaftLogStore)> {
        let dir = data_dir.join(METADATA_DIR_NAME);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        // A checkpoint that was not renamed into place is not the log yet.
        let _ = std::fs::remove_file(dir.join(NEW_FILE_NAME));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let replayed =
            replay(voters, &bytes).with_context(|| format!("replaying {}", path.display()))?;
        if replayed.torn_tail {
            warn!(
                path = %path.display(),
                valid_bytes = replayed.valid_bytes,
                dropped_bytes = bytes.len() as u64 - replayed.valid_bytes,
                "metadata log: cutting a torn last record (a write the crash interrupted)"
            );
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .buffered_open(&path)
            .await
            .map_err(std::io::Error::from)
            .with_context(|| format!("opening {}", path.display()))?;
        if replayed.torn_tail {
            file.truncate(replayed.valid_bytes)
                .await
                .map_err(std::io::Error::from)?;
            file.fdatasync().await.map_err(std::io::Error::from)?;
        }
        info!(
            records = replayed.records,
            bytes = replayed.valid_bytes,
            last_index = replayed
                .store
                .entries_ref()
                .last()
                .map_or(replayed.store.snapshot_index(), |e| e.index),
            "metadata log replayed"
        );
        let store = replayed.store.clone();
        Ok((
            RaftFile {
                dir,
                file: RefCell::new(Rc::new(file)),
                end: Cell::new(replayed.valid_bytes),
                durable: RefCell::new(replayed.store),
            },
            store,
        ))
    }

    /// Appends `batch` and makes it durable.
    ///
    /// # Errors
    /// I/O errors. The caller must stop: the node may not be told a batch is durable that is not.
    pub async fn append(&self, batch: &PersistBatch) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        encode_record(batch, &mut bytes)?;
        let at = self.end.get();
        let length = bytes.len() as u64;
        let file = self.file.borrow().clone();
        self.write_all(&file, bytes, at).await?;
        file.fdatasync().await.map_err(std::io::Error::from)?;
        self.end.set(at + length);
        self.durable.borrow_mut().apply(batch);
        if batch.compaction.is_some() || batch.snapshot.is_some() {
            self.start_over().await?;
        }
        Ok(())
    }

    /// Replaces the file with one checkpoint record of what it holds.
    async fn start_over(&self) -> anyhow::Result<()> {
        let bytes = checkpoint(&self.durable.borrow())?;
        debug_assert!(!bytes.is_empty());
        let length = bytes.len() as u64;
        let new_path = self.dir.join(NEW_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(&new_path)
            .await
            .map_err(std::io::Error::from)?;
        self.write_all(&file, bytes, 0).await?;
        file.fdatasync().await.map_err(std::io::Error::from)?;
        glommio::io::rename(&new_path, self.dir.join(FILE_NAME))
            .await
            .map_err(std::io::Error::from)?;
        GlommioDisk.sync_dir(&self.dir).await?;
        // The old file's descriptor closes when its last user drops it.
        drop(self.file.replace(Rc::new(file)));
        self.end.set(length);
        Ok(())
    }

    async fn write_all(
        &self,
        file: &BufferedFile,
        mut bytes: Vec<u8>,
        mut at: u64,
    ) -> anyhow::Result<()> {
        while !bytes.is_empty() {
            let written = file
                .write_at(bytes.clone(), at)
                .await
                .map_err(std::io::Error::from)?;
            anyhow::ensure!(written > 0, "wrote nothing at {at}");
            bytes.drain(..written);
            at += written as u64;
        }
        Ok(())
    }
}
