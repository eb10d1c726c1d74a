//! One segment file's writes that have not completed yet: the active segment's, and after a
//! roll, until its seal finished, the closed segment's (a queue of its own, *retired*).
//!
//! Shared (`Rc`) by the holders of the core lock, which add writes (an append submits a full
//! buffer; a sync, roll, truncation or timestamp lookup writes the partial tail) and by syncs,
//! which wait for their writes and then run the fdatasync *without* the lock. Whoever waits
//! drives: every wait polls all writes, so a task dropped while waiting loses nothing (the writes
//! stay here for the next waiter), and a write completes no matter which task observes it.
//!
//! A roll does not wait for the old segment's queue: it adds the old segment's tail write,
//! *retires* the queue (no write is added to it again) and starts a new one for the new file.
//! The retired queue lives on in the seal, which waits until it is empty before its
//! fdatasync, in the log's seal slot, where reads find the closed segment's written position,
//! and in any sync that was waiting for its writes. A new object, not the old one reset: a
//! sync holding the old `Rc` must go on waiting for the old file's writes.
//!
//! Two writes to the same blocks are never in flight together (their completion order is
//! undefined on a real device): a write that overlaps an earlier one that has not completed is
//! *chained*: it keeps its buffer and is submitted by whoever drives once every earlier
//! overlapping write completed. This is what lets an append fill and hand over the buffer whose
//! first blocks a sync's tail write is still writing, without waiting for that write.
//!
//! Write futures wake only the waker they were last polled with, and several tasks poll them, so
//! they are always polled with one waker of their own (`FanOut`) that wakes every task that
//! waits here.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::error::StorageError;
use crate::io::{AlignedBuf, DiskFile, BLOCK_BYTES};
use crate::pool::Grant;
use crate::sync::WAITERS_MAX;

/// Most full-buffer writes queued (in flight or chained) per queue. While a seal is pending
/// there are two queues (the closed segment's, retired, and the new segment's), so twice this.
pub(super) const FULL_WRITES_MAX: usize = super::FULL_WRITES_QUEUED_MAX;
/// Most writes submitted at once per queue; the others wait in the queue, in order. Twice this
/// per log while a seal is pending (the two queues write different files).
const SUBMITTED_MAX: usize = super::WRITES_IN_FLIGHT_MAX;
/// Spare buffers kept for reuse: enough for the writes in flight; the buffers of a queue that
/// grew while the device lagged are freed as their writes complete.
const SPARE_BUFFERS_MAX: usize = super::WRITES_IN_FLIGHT_MAX;
/// Most tail writes queued: one per sync, and one sync runs at a time; only a sync dropped
/// before its writes completed leaves one behind, which the next sync waits for first.
pub(super) const TAIL_WRITES_MAX: usize = 1;
const QUEUED_WRITES_MAX: usize = FULL_WRITES_MAX + TAIL_WRITES_MAX;
/// Most completed writes whose ranges wait for an earlier write (a hole) before `written` can
/// pass them. A write leaves the queue when it completes, so without this bound a device that
/// completes writes out of order would let appends go on adding writes behind one stuck write.
/// New full-buffer writes wait below `QUEUED_WRITES_MAX` of them; the queued writes behind the
/// hole and the tails of at most two syncs (the second waits for the hole) can still
/// complete, hence the larger hard limit.
const DONE_RANGES_MAX: usize = 2 * QUEUED_WRITES_MAX;
const _: () = assert!(FULL_WRITES_MAX >= 1 && TAIL_WRITES_MAX >= 1);

type WriteFuture<B> = Pin<Box<dyn Future<Output = (io::Result<()>, Option<B>)>>>;

/// What a queued write carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteKind {
    /// A full write buffer, moved in; handed back to the spare pool when the write completes.
    Full,
    /// A copy of the unwritten tail, its last block zero-padded.
    Tail,
}

/// What a waiter waits for (besides a failure, which ends every wait).
#[derive(Debug, Clone, Copy)]
pub(super) enum Until {
    /// Fewer than this many full-buffer writes queued, and fewer than `QUEUED_WRITES_MAX`
    /// completed writes waiting behind an earlier one (`DONE_RANGES_MAX`).
    FullBelow(usize),
    /// No tail write queued.
    NoTail,
    /// Every write added before the one numbered `seq` completed.
    Before(u64),
    /// Nothing queued.
    Empty,
}

enum Stage<B> {
    /// Waits for an earlier overlapping write or for a device slot (`SUBMITTED_MAX`); holds
    /// its buffer until submitted.
    Chained(Option<B>),
    Submitted(WriteFuture<B>),
}

struct Queued<F: DiskFile> {
    seq: u64,
    kind: WriteKind,
    // Block-aligned file range written.
    start: u64,
    end: u64,
    // File bytes below this are data; the rest of the range is zero padding.
    data_end: u64,
    file: Rc<F>,
    stage: Stage<F::Buf>,
    // A full buffer's share of the core's write-buffer budget, kept until it completes.
    grant: Option<Grant>,
}

impl<F: DiskFile> Queued<F> {
    fn overlaps(&self, other: &Queued<F>) -> bool {
        self.start < other.end && other.start < self.end
    }
}

struct State<F: DiskFile> {
    // In the order added (`seq` increasing); a write leaves when it completes.
    queue: VecDeque<Queued<F>>,
    next_seq: u64,
    // Bumped when a truncation moves the queue to another position space (a roll retires the
    // queue instead).
    generation: u64,
    // Every data byte below it reached the file (completed writes only).
    written: u64,
    // Every data byte below it is covered by a write added (queued or completed).
    issued: u64,
    // Data ranges of completed writes not yet joined to `written` (an earlier write is pending).
    done: Vec<(u64, u64)>,
    // Buffers back from completed full-buffer writes, reused so appends cause no page faults,
    // each with its grant from the core's budget.
    spare: Vec<(F::Buf, Grant)>,
    buffer_bytes: usize,
    // The segment was rolled away from: no write is added any more, and buffers back from
    // completed writes are freed (the new segment's queue took the spare ones).
    retired: bool,
    failed: bool,
    // The first failure, until someone reports it.
    error: Option<(PathBuf, io::Error)>,
    // A write was added and not polled yet.
    added: bool,
}

impl<F: DiskFile> State<F> {
    fn count(&self, kind: WriteKind) -> usize {
        self.queue.iter().filter(|w| w.kind == kind).count()
    }

    fn reached(&self, until: Until) -> bool {
        match until {
            Until::FullBelow(n) => {
                self.count(WriteKind::Full) < n && self.done.len() < QUEUED_WRITES_MAX
            }
            Until::NoTail => self.count(WriteKind::Tail) == 0,
            Until::Before(seq) => self.queue.front().is_none_or(|w| w.seq >= seq),
            Until::Empty => self.queue.is_empty(),
        }
    }

    /// Keeps `buf` for reuse if it is a write buffer no larger than the usual size (a short
    /// budget gives smaller ones), fewer than `SPARE_BUFFERS_MAX` are kept and the queue is not
    /// retired; drops it (and gives its grant back) otherwise. A second spare is kept only
    /// while the core's budget could grant one like it anyway: when the budget is short, it
    /// serves partitions that hold no buffer better than an idle spare here.
    fn keep_spare(&mut self, buf: F::Buf, grant: Grant) {
        let len = buf.as_slice().len();
        if !self.retired
            && (self.spare.is_empty() || !crate::pool::is_short_of(len))
            && self.spare.len() < SPARE_BUFFERS_MAX
            && len <= self.buffer_bytes
            && len == grant.bytes()
        {
            self.spare.push((buf, grant));
        }
    }

    fn complete(&mut self, mut write: Queued<F>, result: io::Result<()>, back: Option<F::Buf>) {
        let grant = write.grant.take();
        if let (Some(buf), Some(grant)) = (back.filter(|_| write.kind == WriteKind::Full), grant) {
            self.keep_spare(buf, grant);
        }
        match result {
            Ok(()) => {
                self.done.push((write.start, write.data_end));
                self.join_done();
            }
            Err(e) => {
                // Which blocks reached the disk is unknown; only a reopen (rescan) can tell. The
                // log is fenced: chained writes are never submitted.
                self.failed = true;
                if self.error.is_none() {
                    self.error = Some((write.file.path(), e));
                }
                self.queue
                    .retain(|w| matches!(w.stage, Stage::Submitted(_)));
            }
        }
    }

    /// Advances `written` over completed data ranges that join it. Writes are added so that
    /// each starts at or below `issued` when added, so the data ranges cover `[.., issued)`
    /// without holes and `written` reaches `issued` once all completed.
    fn join_done(&mut self) {
        join_ranges(&mut self.written, &mut self.done);
        assert!(self.done.len() <= DONE_RANGES_MAX);
        assert!(self.written <= self.issued);
    }

    /// Submits, in queue order and up to `SUBMITTED_MAX` in flight, the waiting writes that no
    /// earlier queued write overlaps. Returns whether it submitted any.
    fn submit_unblocked(&mut self) -> bool {
        if self.failed {
            return false;
        }
        let mut submitted = false;
        let mut in_flight = self
            .queue
            .iter()
            .filter(|w| matches!(w.stage, Stage::Submitted(_)))
            .count();
        for i in 0..self.queue.len() {
            if in_flight >= SUBMITTED_MAX {
                break;
            }
            if !matches!(self.queue[i].stage, Stage::Chained(_)) {
                continue;
            }
            let blocked = (0..i).any(|j| self.queue[j].overlaps(&self.queue[i]));
            if blocked {
                continue;
            }
            // Later writes never overlap a submitted one either: they would be chained behind
            // this one (or behind whatever it was chained behind).
            for (j, other) in self.queue.iter().enumerate() {
                assert!(
                    j == i
                        || !matches!(other.stage, Stage::Submitted(_))
                        || !other.overlaps(&self.queue[i]),
                    "overlapping writes in flight"
                );
            }
            let write = &mut self.queue[i];
            let Stage::Chained(buf) = &mut write.stage else {
                unreachable!("checked above");
            };
            let buf = buf.take().expect("a chained write holds its buffer");
            let file = write.file.clone();
            let position = write.start;
            write.stage =
                Stage::Submitted(Box::pin(async move { file.write_at(buf, position).await }));
            submitted = true;
            in_flight += 1;
        }
        submitted
    }
}

/// Advances `written` over the ranges in `done` that start at or below it (each range's bytes
/// are on the file), removing them; ranges beyond a hole stay until the hole is filled.
fn join_ranges(written: &mut u64, done: &mut Vec<(u64, u64)>) {
    while let Some(i) = done.iter().position(|&(start, _)| start <= *written) {
        let (_, data_end) = done.swap_remove(i);
        *written = (*written).max(data_end);
    }
}

/// One segment file's queued writes; see the module documentation.
pub(super) struct Writes<F: DiskFile> {
    state: RefCell<State<F>>,
    fan_out: Arc<FanOut>,
    waker: Waker,
}

impl<F: DiskFile> std::fmt::Debug for Writes<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("Writes")
            .field("queued", &state.queue.len())
            .field("written", &state.written)
            .field("issued", &state.issued)
            .field("failed", &state.failed)
            .field("retired", &state.retired)
            .finish()
    }
}

impl<F: DiskFile> Writes<F> {
    /// No writes; the file holds its data up to `position`.
    pub(super) fn new(position: u64, buffer_bytes: usize) -> Self {
        let fan_out = Arc::new(FanOut::default());
        Writes {
            state: RefCell::new(State {
                queue: VecDeque::new(),
                next_seq: 0,
                generation: 0,
                written: position,
                issued: position,
                done: Vec::new(),
                spare: Vec::new(),
                buffer_bytes,
                retired: false,
                failed: false,
                error: None,
                added: false,
            }),
            waker: Waker::from(Arc::clone(&fan_out)),
            fan_out,
        }
    }

    /// Starts over at `position` of the cut file (truncation). A roll makes a new queue instead
    /// (see the module documentation).
    ///
    /// # Panics
    /// If writes are queued.
    pub(super) fn reset(&self, position: u64) {
        let mut state = self.state.borrow_mut();
        assert!(!state.retired, "a retired queue is never reused");
        assert!(state.queue.is_empty(), "writes drained before a reset");
        assert!(state.failed || state.done.is_empty());
        state.generation += 1;
        state.written = position;
        state.issued = position;
        state.done.clear();
    }

    /// Position up to which every data byte reached the file.
    pub(super) fn written(&self) -> u64 {
        self.state.borrow().written
    }

    /// Position up to which every data byte is covered by an added write.
    pub(super) fn issued(&self) -> u64 {
        self.state.borrow().issued
    }

    pub(super) fn generation(&self) -> u64 {
        self.state.borrow().generation
    }

    /// The number the next added write gets: `Until::Before(next_seq())` waits for all
    /// writes added so far.
    pub(super) fn next_seq(&self) -> u64 {
        self.state.borrow().next_seq
    }

    /// A buffer back from a completed full-buffer write, if any, with its grant.
    pub(super) fn take_spare(&self) -> Option<(F::Buf, Grant)> {
        self.state.borrow_mut().spare.pop()
    }

    /// Keeps `buf` (a write buffer) for reuse, if fewer than `SPARE_BUFFERS_MAX` are kept;
    /// drops it otherwise.
    pub(super) fn give_spare(&self, buf: F::Buf, grant: Grant) {
        self.state.borrow_mut().keep_spare(buf, grant);
    }

    /// Whether nothing is queued and no write failed: every buffer handed to the queue came
    /// back (as a spare, or freed).
    pub(super) fn is_idle(&self) -> bool {
        let state = self.state.borrow();
        state.queue.is_empty() && !state.failed
    }

    /// Full-buffer writes queued (in flight or chained).
    pub(super) fn full_queued(&self) -> usize {
        self.state.borrow().count(WriteKind::Full)
    }

    /// Whether spare buffers are kept.
    pub(super) fn has_spares(&self) -> bool {
        !self.state.borrow().spare.is_empty()
    }

    /// Frees the spare buffers (an idle log holds none), giving their grants back.
    pub(super) fn drop_spares(&self) {
        let spares = std::mem::take(&mut self.state.borrow_mut().spare);
        drop(spares);
    }

    /// Marks the queue as the closed segment's after a roll: no write is added any more (the
    /// queued ones go on completing), buffers of writes completing later are freed, and the
    /// spare buffers kept so far are handed back, for the new segment's queue.
    pub(super) fn retire(&self) -> Vec<(F::Buf, Grant)> {
        let mut state = self.state.borrow_mut();
        assert!(!state.retired, "retired once");
        state.retired = true;
        std::mem::take(&mut state.spare)
    }

    /// After a failure: the write error the first time, `Fenced` afterwards.
    pub(super) fn failure(&self) -> Option<StorageError> {
        let mut state = self.state.borrow_mut();
        if !state.failed {
            return None;
        }
        Some(match state.error.take() {
            Some((path, e)) => StorageError::from_io("writing", &path, e),
            None => StorageError::Fenced,
        })
    }

    /// Adds the write of `buf` at `start` (data up to `data_end`) and submits it now unless an
    /// earlier queued write overlaps it. Returns whether it submitted anything (glommio hands
    /// submitted I/O to the kernel only when the task yields).
    ///
    /// # Panics
    /// If the queue holds the most writes of `kind` already, or the write would leave a gap.
    pub(super) fn add(
        &self,
        kind: WriteKind,
        file: Rc<F>,
        buf: F::Buf,
        grant: Option<Grant>,
        start: u64,
        data_end: u64,
    ) -> bool {
        {
            let mut state = self.state.borrow_mut();
            let end = start + buf.as_slice().len() as u64;
            assert!(start % BLOCK_BYTES as u64 == 0 && end % BLOCK_BYTES as u64 == 0);
            assert!(start < data_end && data_end <= end);
            assert!(start <= state.issued, "writes leave no gap");
            let kind_max = match kind {
                WriteKind::Full => FULL_WRITES_MAX,
                WriteKind::Tail => TAIL_WRITES_MAX,
            };
            assert!(
                state.count(kind) < kind_max,
                "too many {kind:?} writes queued"
            );
            assert!(state.queue.len() < QUEUED_WRITES_MAX);
            assert!(!state.failed, "no writes after a failure");
            assert!(!state.retired, "no writes to a closed segment");
            assert_eq!(
                kind == WriteKind::Full,
                grant.is_some(),
                "full buffers carry a grant"
            );
            let seq = state.next_seq;
            state.next_seq += 1;
            state.added = true;
            state.issued = state.issued.max(data_end);
            state.queue.push_back(Queued {
                seq,
                kind,
                start,
                end,
                data_end,
                file,
                stage: Stage::Chained(Some(buf)),
                grant,
            });
        }
        self.drive()
    }

    /// Polls every submitted write, collects those that completed and submits chained writes
    /// that are no longer blocked. Never waits. Returns whether it submitted a write.
    pub(super) fn drive(&self) -> bool {
        let mut cx = Context::from_waker(&self.waker);
        let mut state = self.state.borrow_mut();
        // Polled only when something may have changed: a write was added, or a write future
        // woke the fan-out (every pending one was polled with it, so its completion does).
        // Saves the polls on appends that check a background sync, which is most of them.
        let woken = self.fan_out.woken.swap(false, Ordering::AcqRel);
        if !woken && !std::mem::take(&mut state.added) {
            return false;
        }
        state.added = false;
        let mut submitted = false;
        let mut completed = false;
        loop {
            let mut progressed = state.submit_unblocked();
            submitted |= progressed;
            let mut i = 0;
            while i < state.queue.len() {
                let Stage::Submitted(future) = &mut state.queue[i].stage else {
                    i += 1;
                    continue;
                };
                let Poll::Ready((result, back)) = future.as_mut().poll(&mut cx) else {
                    i += 1;
                    continue;
                };
                let write = state.queue.remove(i).expect("indexed above");
                state.complete(write, result, back);
                progressed = true;
                completed = true;
            }
            if !progressed {
                break;
            }
        }
        drop(state);
        if completed {
            // Other waiters re-check their condition.
            self.fan_out.wake_all();
        }
        submitted
    }

    /// Drives the writes until `until` holds or a write failed. Returns whether it submitted a
    /// write (see [`Writes::add`]). Cancellation-safe: the writes stay queued.
    pub(super) async fn wait(&self, until: Until) -> bool {
        let mut submitted = false;
        let done = |state: &State<F>| state.failed || state.reached(until);
        poll_fn(|cx| {
            submitted |= self.drive();
            if done(&self.state.borrow()) {
                return Poll::Ready(());
            }
            // Registered only to wait, so tasks that need not wait leave no waker behind. A
            // write that woke the fan-out during the polls above woke no one: drive again
            // (`drive` sees the flag), now registered.
            self.fan_out.register(cx.waker());
            submitted |= self.drive();
            if done(&self.state.borrow()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        submitted
    }
}

/// A waker that wakes every task registered with it. The mutex is never contended (one
/// thread; `Waker` requires `Send + Sync`) and is taken per poll of the writes, not per record.
#[derive(Debug, Default)]
struct FanOut {
    waiters: Mutex<Vec<Waker>>,
    // Set by every wake; cleared by `Writes::drive`.
    woken: AtomicBool,
}

impl FanOut {
    fn register(&self, waker: &Waker) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            assert!(waiters.len() < WAITERS_MAX, "too many waiters");
            waiters.push(waker.clone());
        }
    }

    fn wake_all(&self) {
        self.woken.store(true, Ordering::Release);
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
        for waker in waiters {
            waker.wake();
        }
    }
}

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::{join_ranges, Writes};
    use crate::io::mem::MemDisk;
    use crate::io::{Disk, DiskFile, OpenMode};
    use crate::pool;

    #[test]
    fn a_second_spare_goes_back_to_a_short_budget() {
        let disk = MemDisk::new();
        let file = crate::block_on(disk.open(
            std::path::Path::new("/spare-test.log"),
            OpenMode::CreateTruncate,
        ))
        .expect("open");
        let buffer_bytes = 64 << 10;
        let writes: Writes<crate::io::mem::MemFileHandle> = Writes::new(0, buffer_bytes);
        let spare = || {
            let grant = pool::try_grant(buffer_bytes).expect("budget");
            (file.alloc_buf(grant.bytes()), grant)
        };
        // Room for more: both spares are kept.
        pool::set_budget_bytes(1 << 20);
        let (a, b) = (spare(), spare());
        writes.give_spare(a.0, a.1);
        writes.give_spare(b.0, b.1);
        assert!(writes.take_spare().is_some() && writes.take_spare().is_some());
        assert!(writes.take_spare().is_none());
        // The budget holds no other buffer of that size: the first spare is kept (the log's
        // next buffer), the second given back for logs that have none.
        pool::set_budget_bytes(2 * buffer_bytes);
        let (a, b) = (spare(), spare());
        writes.give_spare(a.0, a.1);
        writes.give_spare(b.0, b.1);
        assert_eq!(pool::stats().bytes_used, buffer_bytes);
        assert!(writes.take_spare().is_some() && writes.take_spare().is_none());
    }

    #[test]
    fn written_advances_only_over_completed_ranges_without_a_hole() {
        // Full buffers [0, 8192) and [8192, 16384), then a tail write whose data ends at 17000.
        let (mut written, mut done) = (0u64, Vec::new());
        done.push((8192, 16384));
        join_ranges(&mut written, &mut done);
        assert_eq!(written, 0, "the first buffer's write is still pending");
        done.push((16384, 17000));
        join_ranges(&mut written, &mut done);
        assert_eq!((written, done.len()), (0, 2));
        done.push((0, 8192));
        join_ranges(&mut written, &mut done);
        assert_eq!(written, 17000);
        assert!(done.is_empty());
        // A rewrite of the partial last block (a later tail write, or the full buffer chained
        // behind it) starts below `written` and extends it.
        done.push((16384, 20480));
        join_ranges(&mut written, &mut done);
        assert_eq!(written, 20480);
        // A completed range entirely below `written` changes nothing.
        done.push((16384, 17000));
        join_ranges(&mut written, &mut done);
        assert_eq!((written, done.len()), (20480, 0));
    }
}
