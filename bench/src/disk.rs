//! Raw sequential O_DIRECT write bandwidth of a directory: the ceiling a broker writing its log
//! there can reach, measured by the same command as the produce rate it is compared with (the
//! virtual disk of a shared machine drifts too much between commands for separate runs to be
//! compared).

use std::path::{Path, PathBuf};

use anyhow::Context;
use glommio::{LocalExecutorBuilder, Placement};
use serde::{Deserialize, Serialize};
use spate_storage::io::bandwidth::{sequential_write, WriteSpec};
use spate_storage::io::glommio::GlommioDisk;

/// Size of each write: the broker's write-behind buffer is 1 MiB.
pub const WRITE_BYTES: usize = 1 << 20;
/// Writes in flight: the depth of the broker's pipelined segment writes.
pub const WRITES_IN_FLIGHT: usize = 2;

/// Raw bandwidth measured around a run.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct RawDisk {
    /// Directory written to.
    pub dir: String,
    /// Bytes written by each measurement.
    pub bytes: u64,
    /// MB/s (10^6 bytes) measured just before the run.
    pub before_mb_s: f64,
    /// MB/s measured just after the run.
    pub after_mb_s: f64,
    /// Produced payload MB/s divided by the mean of the two measurements.
    pub produce_ratio: f64,
}

/// Measures on a fresh executor (on `cpu` if given): writes `bytes` to a scratch file in `dir`
/// with [`WRITE_BYTES`] O_DIRECT writes, [`WRITES_IN_FLIGHT`] at a time, then one fdatasync (a
/// log under group commit also ends durable), and deletes the file; the loop is
/// `spate_storage::io::bandwidth::sequential_write`, shared with the storage append bench.
/// Returns MB/s.
///
/// # Errors
/// If the file cannot be created, written or synced.
pub fn measure(
    dir: &Path,
    bytes: u64,
    cpu: Option<usize>,
    io_memory_bytes: usize,
) -> anyhow::Result<f64> {
    let placement = match cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    // glommio opens paths relative to nothing (openat(-1, ...)): make the path absolute.
    let path: PathBuf = std::fs::canonicalize(dir)
        .with_context(|| format!("raw disk dir {}", dir.display()))?
        .join(format!("spate-bench-raw-{}.bin", std::process::id()));
    LocalExecutorBuilder::new(placement)
        .name("spate-bench-disk")
        .io_memory(io_memory_bytes)
        .spawn(move || async move { write_sequentially(&path, bytes).await })
        .map_err(|e| anyhow::anyhow!("starting the glommio executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("disk executor failed: {e}"))?
}

async fn write_sequentially(path: &Path, total: u64) -> anyhow::Result<f64> {
    let spec = WriteSpec {
        total_bytes: total,
        write_bytes: WRITE_BYTES,
        writes_in_flight: WRITES_IN_FLIGHT,
    };
    let measured = sequential_write(&GlommioDisk, path, spec).await?;
    let secs = measured.elapsed.as_secs_f64();
    anyhow::ensure!(secs > 0.0, "raw write took no time");
    Ok(measured.bytes as f64 / 1e6 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_positive_bandwidth_and_leaves_no_file() {
        let dir =
            std::env::temp_dir().join(format!("spate-bench-disk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mb_s = measure(&dir, 8 << 20, None, 512 << 10).unwrap();
        assert!(mb_s > 0.0 && mb_s.is_finite(), "{mb_s}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "scratch file removed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
