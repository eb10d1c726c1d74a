//! An in-memory disk with deterministic faults, for tests.
//!
//! Each file has durable bytes and a log of volatile operations since its last `fdatasync`;
//! directory entries likewise are durable only after `sync_dir`. [`MemDisk::crash`] keeps the
//! durable state plus a seeded-random prefix of the volatile operations, the last of which may be
//! a write cut at an arbitrary byte: a torn write. ENOSPC comes from a byte quota that can be
//! raised again; EIO from faults armed on the n-th call of an operation, or on its next call on
//! a given path. Writes must follow O_DIRECT alignment or the call panics, so misaligned I/O is
//! caught by tests.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::{AlignedBuf, Disk, DiskFile, OpenMode, BLOCK_BYTES};

/// A write buffer for [`MemDisk`]: a plain byte vector whose length is a block multiple.
#[derive(Debug)]
pub struct MemBuf(Vec<u8>);

impl AlignedBuf for MemBuf {
    fn as_slice(&self) -> &[u8] {
        &self.0
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn shrink_to(&mut self, len: usize) {
        assert!(len <= self.0.len() && len % BLOCK_BYTES == 0);
        self.0.truncate(len);
    }
}

/// A disk operation that a fault can be armed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultOp {
    /// `write_at`.
    Write,
    /// `read_at`.
    Read,
    /// `fdatasync`.
    Sync,
    /// `pre_allocate`.
    Allocate,
    /// `open` (either mode).
    Open,
    /// `rename`.
    Rename,
    /// `truncate`.
    Truncate,
    /// `remove`.
    Remove,
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { pos: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct MemFile {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<FileOp>,
}

impl MemFile {
    fn apply(bytes: &mut Vec<u8>, op: &FileOp, cut: Option<usize>) {
        match op {
            FileOp::Write { pos, data } => {
                let len = cut.unwrap_or(data.len());
                let pos = *pos as usize;
                if bytes.len() < pos + len {
                    bytes.resize(pos + len, 0);
                }
                bytes[pos..pos + len].copy_from_slice(&data[..len]);
            }
            FileOp::SetLen(len) => bytes.resize(*len as usize, 0),
        }
    }
    fn push(&mut self, op: FileOp) {
        Self::apply(&mut self.current, &op, None);
        self.pending.push(op);
    }
    fn sync(&mut self) {
        for op in self.pending.drain(..) {
            Self::apply(&mut self.durable, &op, None);
        }
        debug_assert_eq!(self.durable, self.current);
    }
}

type FileRef = Rc<RefCell<MemFile>>;

#[derive(Debug, Clone)]
enum DirOp {
    Link(PathBuf, FileRef),
    Unlink(PathBuf),
}

#[derive(Debug, Default)]
struct State {
    names: BTreeMap<PathBuf, FileRef>,
    durable_names: BTreeMap<PathBuf, FileRef>,
    dir_pending: Vec<DirOp>,
    dirs: Vec<PathBuf>,
    quota_bytes: Option<u64>,
    faults: Vec<(FaultOp, u64)>,
    // Faults armed on the next call of an operation on one path (see `MemDisk::fail_next_on`).
    path_faults: Vec<(FaultOp, PathBuf)>,
    calls: BTreeMap<FaultOp, u64>,
    syncs: u64,
    // Bytes of all completed writes, padding included: what a device would have been sent.
    written_bytes: u64,
    // Writes submitted and not completed: (file identity, start, end). Two overlapping ones at
    // once are a bug on a real device (completion order undefined), so they panic here.
    writes_in_flight: Vec<(usize, u64, u64)>,
    // While set, submitted writes do not complete (see `MemDisk::hold_writes`).
    writes_held: bool,
    // While set, only the write at this file position does not complete.
    write_held_at: Option<u64>,
    // While set, fdatasync calls do not complete (see `MemDisk::hold_syncs`).
    syncs_held: bool,
    held_waiters: Vec<std::task::Waker>,
}

impl State {
    /// Wakes every waiter of a held operation, to look again at what is still held.
    fn wake_held(&mut self) {
        for waker in std::mem::take(&mut self.held_waiters) {
            waker.wake();
        }
    }

    fn used_bytes(&self) -> u64 {
        // Files removed from the namespace but still open count too in a real filesystem; the
        // model ignores them, which only makes ENOSPC a little later than on a real disk.
        self.names
            .values()
            .map(|f| f.borrow().current.len() as u64)
            .sum()
    }
    fn check_space(&self, extra_bytes: u64) -> io::Result<()> {
        match self.quota_bytes {
            Some(quota) if self.used_bytes() + extra_bytes > quota => {
                Err(io::Error::from_raw_os_error(28))
            }
            _ => Ok(()),
        }
    }
    fn check_fault(&mut self, op: FaultOp) -> io::Result<()> {
        let count = self.calls.entry(op).or_insert(0);
        *count += 1;
        let n = *count;
        if let Some(i) = self.faults.iter().position(|&(o, at)| o == op && at == n) {
            self.faults.swap_remove(i);
            return Err(io::Error::from_raw_os_error(5));
        }
        Ok(())
    }
    /// `check_fault`, then a fault armed on `op` for `path` (consumed when it fires).
    fn check_fault_on(&mut self, op: FaultOp, path: &Path) -> io::Result<()> {
        self.check_fault(op)?;
        if let Some(i) = self
            .path_faults
            .iter()
            .position(|(o, p)| *o == op && p == path)
        {
            self.path_faults.swap_remove(i);
            return Err(io::Error::from_raw_os_error(5));
        }
        Ok(())
    }
}

/// The in-memory disk. Cheap to clone; clones share the same files.
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    state: Rc<RefCell<State>>,
}

/// An open file on a [`MemDisk`].
#[derive(Debug, Clone)]
pub struct MemFileHandle {
    file: FileRef,
    disk: MemDisk,
    path: PathBuf,
}

/// A small deterministic generator (splitmix64), so crashes replay exactly from a seed.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }
}

impl MemDisk {
    /// An empty disk with no quota and no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits the bytes all files may hold together (`None`: unlimited). Writes and
    /// allocations beyond it fail with ENOSPC; raising it lets them succeed again.
    pub fn set_quota_bytes(&self, quota_bytes: Option<u64>) {
        self.state.borrow_mut().quota_bytes = quota_bytes;
    }

    /// Bytes all files hold now.
    pub fn used_bytes(&self) -> u64 {
        self.state.borrow().used_bytes()
    }

    /// Makes the `nth` future call (counting from 1, from now) of `op` fail with EIO.
    pub fn fail_nth(&self, op: FaultOp, nth: u64) {
        let mut state = self.state.borrow_mut();
        let done = state.calls.get(&op).copied().unwrap_or(0);
        state.faults.push((op, done + nth));
    }

    /// Makes the next call of `op` on `path` fail with EIO: for file operations the path the
    /// file was opened with, for `Rename` the source. Counts no calls, so it targets one file
    /// whatever else the log does meanwhile.
    pub fn fail_next_on(&self, op: FaultOp, path: &Path) {
        self.state
            .borrow_mut()
            .path_faults
            .push((op, path.to_owned()));
    }

    /// Simulates power loss: every file keeps its durable bytes plus a seeded-random prefix of
    /// the operations since its last sync, the last kept write possibly cut at any byte; the
    /// namespace keeps its durable entries plus a random prefix of later creates and removes.
    /// Open handles must not be used afterwards (the process "died").
    pub fn crash(&self, seed: u64) {
        let mut rng = SplitMix::new(seed);
        let mut state = self.state.borrow_mut();
        let mut all: Vec<FileRef> = state.names.values().cloned().collect();
        all.extend(state.durable_names.values().cloned());
        for op in &state.dir_pending {
            if let DirOp::Link(_, f) = op {
                all.push(f.clone());
            }
        }
        let mut seen: Vec<*const RefCell<MemFile>> = Vec::new();
        for file in all {
            if seen.contains(&Rc::as_ptr(&file)) {
                continue;
            }
            seen.push(Rc::as_ptr(&file));
            let mut f = file.borrow_mut();
            let keep = rng.up_to(f.pending.len() as u64) as usize;
            let mut bytes = f.durable.clone();
            for op in &f.pending[..keep] {
                MemFile::apply(&mut bytes, op, None);
            }
            if let Some(op @ FileOp::Write { data, .. }) = f.pending.get(keep) {
                let cut = rng.up_to(data.len() as u64) as usize;
                MemFile::apply(&mut bytes, op, Some(cut));
            }
            f.current = bytes.clone();
            f.durable = bytes;
            f.pending.clear();
        }
        let keep = rng.up_to(state.dir_pending.len() as u64) as usize;
        let mut names = state.durable_names.clone();
        for op in &state.dir_pending[..keep] {
            match op {
                DirOp::Link(p, f) => {
                    names.insert(p.clone(), f.clone());
                }
                DirOp::Unlink(p) => {
                    names.remove(p);
                }
            }
        }
        state.dir_pending.clear();
        state.durable_names = names.clone();
        state.names = names;
    }

    /// The current bytes of a file, for assertions and for planting corruption.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        state.names.get(path).map(|f| f.borrow().current.clone())
    }

    /// Flips one bit of a file, durably (bit rot).
    ///
    /// # Panics
    /// If the file does not exist or is shorter than `pos`.
    pub fn flip_bit(&self, path: &Path, pos: u64, bit: u8) {
        let state = self.state.borrow();
        let mut f = state.names[path].borrow_mut();
        f.current[pos as usize] ^= 1 << bit;
        f.durable[pos as usize] ^= 1 << bit;
    }

    /// While `held`, writes are submitted (and counted in flight) but do not complete; releasing
    /// lets them complete. Lets tests observe what the log does while its writes are pending.
    pub fn hold_writes(&self, held: bool) {
        let mut state = self.state.borrow_mut();
        state.writes_held = held;
        state.wake_held();
    }

    /// While `Some(pos)`, a write at file position `pos` (of any file) does not complete while
    /// the others do: a device completing writes out of order. `None` releases it.
    pub fn hold_write_at(&self, pos: Option<u64>) {
        let mut state = self.state.borrow_mut();
        state.write_held_at = pos;
        state.wake_held();
    }

    /// While `held`, fdatasync calls wait (they neither complete nor fail); releasing lets them
    /// go on. Lets tests observe what the log does while a sync or a segment seal is pending.
    pub fn hold_syncs(&self, held: bool) {
        let mut state = self.state.borrow_mut();
        state.syncs_held = held;
        state.wake_held();
    }

    /// Waits while `held` says the calling operation is held (`hold_writes`, `hold_write_at`,
    /// `hold_syncs`), after yielding once: real I/O completes later, and the yield lets
    /// concurrent tasks run meanwhile, as they would on a real disk.
    async fn wait_unless_held(&self, held: impl Fn(&State) -> bool) {
        crate::sync::yield_now().await;
        std::future::poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if held(&state) {
                if !state.held_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    state.held_waiters.push(cx.waker().clone());
                }
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
    }

    /// Writes submitted and not yet completed, on all files.
    pub fn writes_in_flight(&self) -> usize {
        self.state.borrow().writes_in_flight.len()
    }

    /// fdatasync calls completed so far.
    pub fn sync_count(&self) -> u64 {
        self.state.borrow().syncs
    }

    /// Bytes of all writes completed so far, on all files (a rewrite counts again).
    pub fn written_bytes(&self) -> u64 {
        self.state.borrow().written_bytes
    }

    /// Names of all files, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state.borrow().names.keys().cloned().collect()
    }
}

/// A write in flight on a [`MemDisk`], forgotten when dropped.
struct InFlight<'a> {
    disk: &'a MemDisk,
    key: usize,
    pos: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.disk.state.borrow_mut();
        if let Some(i) = state
            .writes_in_flight
            .iter()
            .position(|&(k, start, _)| k == self.key && start == self.pos)
        {
            state.writes_in_flight.swap_remove(i);
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl Disk for MemDisk {
    type File = MemFileHandle;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<MemFileHandle> {
        let mut state = self.state.borrow_mut();
        state.check_fault_on(FaultOp::Open, path)?;
        let file = match mode {
            OpenMode::Existing => state
                .names
                .get(path)
                .cloned()
                .ok_or_else(|| not_found(path))?,
            OpenMode::CreateTruncate => {
                if let Some(f) = state.names.get(path).cloned() {
                    f.borrow_mut().push(FileOp::SetLen(0));
                    f
                } else {
                    let f: FileRef = Rc::default();
                    state.names.insert(path.to_owned(), f.clone());
                    state
                        .dir_pending
                        .push(DirOp::Link(path.to_owned(), f.clone()));
                    f
                }
            }
        };
        Ok(MemFileHandle {
            file,
            disk: self.clone(),
            path: path.to_owned(),
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.check_fault_on(FaultOp::Remove, path)?;
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        state.dir_pending.push(DirOp::Unlink(path.to_owned()));
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.check_fault_on(FaultOp::Rename, from)?;
        let f = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_owned(), f.clone());
        // Recorded as link-then-unlink, so a crash can keep both names but never neither: the
        // log only renames `*.tmp` files into place and deletes leftover `*.tmp` files on open.
        state.dir_pending.push(DirOp::Link(to.to_owned(), f));
        state.dir_pending.push(DirOp::Unlink(from.to_owned()));
        Ok(())
    }

    async fn list_dir(&self, dir: &Path, entries_max: usize) -> io::Result<Vec<String>> {
        let state = self.state.borrow();
        if !state.dirs.iter().any(|d| d == dir) {
            return Err(not_found(dir));
        }
        let names: Vec<String> = state
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        if names.len() > entries_max {
            return Err(io::Error::other(format!(
                "{} holds more than {entries_max} files",
                dir.display()
            )));
        }
        Ok(names)
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        if !state.dirs.iter().any(|d| d == dir) {
            state.dirs.push(dir.to_owned());
        }
        Ok(())
    }

    async fn yield_to_io(&self) {
        crate::sync::yield_now().await;
    }

    async fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.dir_pending.clear();
        state.durable_names = state.names.clone();
        Ok(())
    }
}

impl DiskFile for MemFileHandle {
    type Buf = MemBuf;

    fn alloc_buf(&self, len: usize) -> MemBuf {
        assert!(
            len % BLOCK_BYTES == 0,
            "buffer length {len} not block aligned"
        );
        // Filled with a marker, not zeros, so code that forgets to clear padding is caught.
        MemBuf(vec![0xA5; len])
    }

    async fn write_at(&self, buf: MemBuf, pos: u64) -> (io::Result<()>, Option<MemBuf>) {
        assert!(
            pos % BLOCK_BYTES as u64 == 0,
            "write position {pos} not block aligned"
        );
        assert!(
            buf.0.len() % BLOCK_BYTES == 0,
            "write length not block aligned"
        );
        let key = Rc::as_ptr(&self.file) as usize;
        let end = pos + buf.0.len() as u64;
        {
            let mut state = self.disk.state.borrow_mut();
            if let Some(&(_, start, stop)) = state
                .writes_in_flight
                .iter()
                .find(|&&(k, start, stop)| k == key && start < end && pos < stop)
            {
                panic!(
                    "overlapping writes in flight on {}: [{pos}, {end}) and [{start}, {stop})",
                    self.path.display()
                );
            }
            state.writes_in_flight.push((key, pos, end));
        }
        // Removed on completion or when the write's future is dropped.
        let _in_flight = InFlight {
            disk: &self.disk,
            key,
            pos,
        };
        // Completing later lets the log keep writes in flight here too.
        self.disk
            .wait_unless_held(|state| state.writes_held || state.write_held_at == Some(pos))
            .await;
        let mut state = self.disk.state.borrow_mut();
        if let Err(e) = state.check_fault_on(FaultOp::Write, &self.path) {
            return (Err(e), Some(buf));
        }
        let mut f = self.file.borrow_mut();
        let grow = end.saturating_sub(f.current.len() as u64);
        drop(f);
        if let Err(e) = state.check_space(grow) {
            return (Err(e), Some(buf));
        }
        state.written_bytes += buf.0.len() as u64;
        f = self.file.borrow_mut();
        f.push(FileOp::Write {
            pos,
            data: buf.0.clone(),
        });
        (Ok(()), Some(buf))
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.disk
            .state
            .borrow_mut()
            .check_fault_on(FaultOp::Read, &self.path)?;
        let f = self.file.borrow();
        let start = (pos as usize).min(f.current.len());
        let end = (start + len).min(f.current.len());
        Ok(Bytes::copy_from_slice(&f.current[start..end]))
    }

    async fn fdatasync(&self) -> io::Result<()> {
        // Completing later lets tests observe group commit.
        self.disk.wait_unless_held(|state| state.syncs_held).await;
        let mut state = self.disk.state.borrow_mut();
        state.check_fault_on(FaultOp::Sync, &self.path)?;
        state.syncs += 1;
        self.file.borrow_mut().sync();
        Ok(())
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.disk
            .state
            .borrow_mut()
            .check_fault_on(FaultOp::Truncate, &self.path)?;
        self.file.borrow_mut().push(FileOp::SetLen(len));
        Ok(())
    }

    async fn pre_allocate(&self, len: u64) -> io::Result<()> {
        let mut state = self.disk.state.borrow_mut();
        state.check_fault_on(FaultOp::Allocate, &self.path)?;
        let size = self.file.borrow().current.len() as u64;
        if len > size {
            state.check_space(len - size)?;
            self.file.borrow_mut().push(FileOp::SetLen(len));
        }
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.borrow().current.len() as u64)
    }

    fn path(&self) -> PathBuf {
        self.path.clone()
    }
}
