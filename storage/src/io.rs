//! The I/O seam: the handful of file operations the log needs.
//!
//! The same log code runs on glommio DMA files in production ([`glommio::GlommioDisk`]) and on
//! an in-memory disk that injects torn writes, ENOSPC, EIO and crashes in tests ([`mem::MemDisk`]).
//! Writes follow O_DIRECT rules on both: position and length are multiples of [`BLOCK_BYTES`]
//! and the buffer comes from [`DiskFile::alloc_buf`], so a misaligned write fails in tests too.
//!
//! The futures are deliberately not `Send`: a partition's log lives on one executor (one core).

// `async fn` in a public trait cannot promise `Send` futures; that is intended here (glommio's
// futures are `!Send` and the log is pinned to one core), so the lint does not apply.
#![allow(async_fn_in_trait)]

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

pub mod bandwidth;
pub mod glommio;
pub mod mem;

/// The alignment unit of direct I/O: write positions and lengths are multiples of it.
pub const BLOCK_BYTES: usize = 4096;

/// Rounds `value` up to a multiple of [`BLOCK_BYTES`].
pub const fn align_up(value: u64) -> u64 {
    value.div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64
}

/// Rounds `value` down to a multiple of [`BLOCK_BYTES`].
pub const fn align_down(value: u64) -> u64 {
    value / BLOCK_BYTES as u64 * BLOCK_BYTES as u64
}

/// A buffer suitable for a direct-I/O write (aligned in memory, length a block multiple).
pub trait AlignedBuf: std::fmt::Debug {
    /// The buffer's bytes.
    fn as_slice(&self) -> &[u8];
    /// The buffer's bytes, writable.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// Shrinks the buffer to `len` bytes (a block multiple) before writing it.
    ///
    /// # Panics
    /// If `len` is larger than the buffer or not a multiple of [`BLOCK_BYTES`].
    fn shrink_to(&mut self, len: usize);
}

/// How [`Disk::open`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading and writing.
    Existing,
    /// Create the file, or truncate it to zero if it exists.
    CreateTruncate,
}

/// A directory tree of files: the namespace operations.
/// Cheap to clone (a handle): a segment's seal runs in a future that outlives the borrow of the
/// log that started it.
pub trait Disk: std::fmt::Debug + Clone + 'static {
    /// An open file.
    type File: DiskFile;

    /// Opens or creates a file. A created file's directory entry is durable only after
    /// [`Disk::sync_dir`].
    ///
    /// # Errors
    /// NotFound if `mode` is `Existing` and there is no such file; others from the OS.
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    /// Removes a file's directory entry; open handles keep working (POSIX unlink semantics).
    ///
    /// # Errors
    /// NotFound, or others from the OS.
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file, replacing `to`.
    ///
    /// # Errors
    /// From the OS.
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names (not paths) of the regular files in `dir`, at most `entries_max` of them.
    ///
    /// # Errors
    /// From the OS, or `Other` if the directory holds more than `entries_max` files.
    async fn list_dir(&self, dir: &Path, entries_max: usize) -> io::Result<Vec<String>>;
    /// Creates a directory and its parents.
    ///
    /// # Errors
    /// From the OS.
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Lets the runtime submit I/O queued by writes that are in flight but not awaited. glommio
    /// hands queued requests to the kernel only when the running task yields, so without this a
    /// write "in flight" would not start until the log next waits.
    async fn yield_to_io(&self);
    /// Makes the directory's entries (created, renamed, removed files) durable.
    ///
    /// # Errors
    /// From the OS.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file, used with direct I/O.
pub trait DiskFile: std::fmt::Debug + 'static {
    /// The aligned buffer type writes take.
    type Buf: AlignedBuf;

    /// Allocates an aligned write buffer of `len` bytes (a block multiple). Contents unspecified.
    fn alloc_buf(&self, len: usize) -> Self::Buf;
    /// Writes the whole buffer at `pos`. Durable only after [`DiskFile::fdatasync`]. Hands the
    /// buffer back when it can, so the caller reuses it (a fresh buffer costs page faults).
    ///
    /// # Errors
    /// ENOSPC, EIO, ...; after an error the written range's contents are unspecified.
    ///
    /// # Panics
    /// If `pos` or the buffer length is not a multiple of [`BLOCK_BYTES`].
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> (io::Result<()>, Option<Self::Buf>);
    /// Reads up to `len` bytes at `pos` (any alignment); short only at the end of the file.
    ///
    /// # Errors
    /// EIO and others from the OS.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Makes all completed writes, truncations and allocations of this file durable.
    ///
    /// # Errors
    /// EIO: the state of unsynced writes is then unknown, and must not be retried blindly.
    async fn fdatasync(&self) -> io::Result<()>;
    /// Sets the file's size to `len`.
    ///
    /// # Errors
    /// From the OS.
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Reserves space so the file is at least `len` bytes long; new bytes read as zeros.
    ///
    /// # Errors
    /// ENOSPC if the space is not there.
    async fn pre_allocate(&self, len: u64) -> io::Result<()>;
    /// The file's size in bytes.
    ///
    /// # Errors
    /// From the OS.
    async fn size(&self) -> io::Result<u64>;
    /// The file's path (for error messages).
    fn path(&self) -> PathBuf;
}
