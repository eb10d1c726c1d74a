//! The write buffers' memory budget, one per core (executor thread).
//!
//! Every partition log on a core takes its write buffers (the one being filled, the full ones
//! queued for the device, the spares kept for reuse) from this budget, so the memory they hold
//! is bounded per core, not per partition. A grant is a count of bytes, not memory: the log
//! allocates the aligned buffer itself ([`crate::io::DiskFile::alloc_buf`], so direct-I/O
//! alignment is unchanged) and carries the [`Grant`] beside it; dropping the grant gives the
//! bytes back.
//!
//! When the budget is short a log gets a smaller buffer (halved down to
//! [`WRITE_BUFFER_BYTES_MIN`]); when it is empty, a log that has full buffers in flight waits
//! for its own writes and reuses their buffers (backpressure that needs nothing from other
//! partitions, so it cannot deadlock), and a log that holds no buffer at all gets the minimum
//! anyway ([`grant_or_minimum`]): it may never wait on another partition, which may itself be
//! waiting. So the budget can be exceeded by at most [`WRITE_BUFFER_BYTES_MIN`] per partition
//! being written at that moment (twice that while a roll's closed segment still writes the
//! buffer it took); [`stats`] counts these overdrafts. Tail writes (a sync's copy of the
//! partial last blocks) are not counted: one per sync in flight, as large as the unwritten
//! tail. A log gives its buffers
//! back when it goes idle (`Log::release_idle_buffers`), so an idle partition holds none.
//!
//! The tail caches of a core's logs share a second budget ([`set_cache_budget_bytes`]): a
//! cache evicts its written batches while the core's caches together are over it, not only
//! while it is over its own `tail_cache_bytes_max`, so the memory they pin (they hold slices
//! of the producers' requests) is bounded per core too.
//!
//! The budgets are per thread because a log lives on one executor; there is no lock.

use std::cell::Cell;
use std::marker::PhantomData;

use crate::io::BLOCK_BYTES;

/// The smallest write buffer a log is given when the budget is short: four blocks, so a
/// partition written under pressure still writes 16 KiB at a time.
pub const WRITE_BUFFER_BYTES_MIN: usize = 4 * BLOCK_BYTES;

/// The budget of a thread that never set one: unbounded (tests, tools).
const UNBOUNDED: usize = usize::MAX;

#[derive(Debug)]
struct Pool {
    bytes_max: Cell<usize>,
    bytes_used: Cell<usize>,
    // Grants outstanding: about the buffers the core's logs hold (filling, in flight, spare).
    grants: Cell<usize>,
    bytes_peak: Cell<usize>,
    overdrafts: Cell<u64>,
    shrunk: Cell<u64>,
    cache_bytes_max: Cell<usize>,
    cache_bytes: Cell<usize>,
}

impl Pool {
    /// Bytes of the budget not granted (none while overdrawn).
    fn free(&self) -> usize {
        self.bytes_max.get().saturating_sub(self.bytes_used.get())
    }
}

thread_local! {
    static POOL: Pool = const {
        Pool {
            bytes_max: Cell::new(UNBOUNDED),
            bytes_used: Cell::new(0),
            grants: Cell::new(0),
            bytes_peak: Cell::new(0),
            overdrafts: Cell::new(0),
            shrunk: Cell::new(0),
            cache_bytes_max: Cell::new(UNBOUNDED),
            cache_bytes: Cell::new(0),
        }
    };
}

/// What the calling thread's budget holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// The budget (`usize::MAX`: unbounded).
    pub bytes_max: usize,
    /// Bytes granted now.
    pub bytes_used: usize,
    /// Most bytes granted at once since the thread started.
    pub bytes_peak: usize,
    /// Minimum-size buffers granted beyond the budget (a log with no buffer is never made to
    /// wait for another partition).
    pub overdrafts: u64,
    /// Buffers granted smaller than asked because the budget was short.
    pub shrunk: u64,
    /// The tail caches' budget (`usize::MAX`: unbounded).
    pub cache_bytes_max: usize,
    /// Bytes the tail caches of this thread's logs hold.
    pub cache_bytes: usize,
}

/// Sets the calling thread's (executor's) write-buffer budget. Grants already made stay.
///
/// # Panics
/// If `bytes_max` is below [`WRITE_BUFFER_BYTES_MIN`].
pub fn set_budget_bytes(bytes_max: usize) {
    assert!(bytes_max >= WRITE_BUFFER_BYTES_MIN);
    POOL.with(|p| p.bytes_max.set(bytes_max));
}

/// The calling thread's budget and what is granted from it.
pub fn stats() -> PoolStats {
    POOL.with(|p| PoolStats {
        bytes_max: p.bytes_max.get(),
        bytes_used: p.bytes_used.get(),
        bytes_peak: p.bytes_peak.get(),
        overdrafts: p.overdrafts.get(),
        shrunk: p.shrunk.get(),
        cache_bytes_max: p.cache_bytes_max.get(),
        cache_bytes: p.cache_bytes.get(),
    })
}

/// Whether the calling thread's budget has less than `bytes` left: a log then gives a spare
/// buffer of that size back instead of keeping it, for partitions that have none.
pub fn is_short_of(bytes: usize) -> bool {
    POOL.with(|p| p.free() < bytes)
}

/// Sets the calling thread's budget for its logs' tail caches together.
pub fn set_cache_budget_bytes(bytes_max: usize) {
    POOL.with(|p| p.cache_bytes_max.set(bytes_max));
}

/// A tail cache on this thread took `bytes` more.
pub(crate) fn cache_grew(bytes: usize) {
    POOL.with(|p| p.cache_bytes.set(p.cache_bytes.get() + bytes));
}

/// A tail cache on this thread let `bytes` go.
pub(crate) fn cache_shrank(bytes: usize) {
    POOL.with(|p| {
        let held = p.cache_bytes.get();
        assert!(held >= bytes, "a cache gives back what it took");
        p.cache_bytes.set(held - bytes);
    });
}

/// Whether this thread's tail caches together hold more than their budget.
pub(crate) fn cache_over_budget() -> bool {
    POOL.with(|p| p.cache_bytes.get() > p.cache_bytes_max.get())
}

/// Bytes of write buffer granted from this thread's budget; given back when dropped. Not
/// `Send`: it must be dropped on the thread whose budget it counts.
#[derive(Debug)]
pub struct Grant {
    bytes: usize,
    _thread: PhantomData<*const ()>,
}

impl Grant {
    /// The bytes granted (the buffer to allocate), a block multiple.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn take(pool: &Pool, bytes: usize) -> Grant {
        let used = pool.bytes_used.get() + bytes;
        pool.bytes_used.set(used);
        pool.grants.set(pool.grants.get() + 1);
        pool.bytes_peak.set(pool.bytes_peak.get().max(used));
        Grant {
            bytes,
            _thread: PhantomData,
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        POOL.with(|p| {
            let used = p.bytes_used.get();
            assert!(used >= self.bytes, "a grant is given back once");
            p.bytes_used.set(used - self.bytes);
            p.grants.set(p.grants.get() - 1);
        });
    }
}

/// The smallest buffer granted for a log that wants `wanted` bytes.
fn minimum(wanted: usize) -> usize {
    wanted.min(WRITE_BUFFER_BYTES_MIN)
}

/// A grant of `wanted` bytes if the budget has them and that is no more than a fair share,
/// else of the largest halving of it (a block multiple, at least [`WRITE_BUFFER_BYTES_MIN`]
/// or `wanted` if smaller) that fits both, else none.
///
/// The fair share is the budget divided among the grants outstanding plus this one. Without
/// it the first partitions written took whole buffers (and kept spares of that size) until
/// the budget was gone, and every later one was left with the minimum, filled it in a few
/// appends and then waited for its own device writes: with 128 partitions written on two
/// cores, a third less throughput than with an unbounded budget. With it, buffers shrink as
/// more partitions are written and grow back as they go idle.
///
/// # Panics
/// If `wanted` is not a positive block multiple.
pub fn try_grant(wanted: usize) -> Option<Grant> {
    assert!(wanted % BLOCK_BYTES == 0 && wanted > 0);
    POOL.with(|p| {
        let free = p.free();
        let fair = p.bytes_max.get() / (p.grants.get() + 1);
        let mut bytes = wanted;
        while bytes > free || (bytes > fair && bytes / 2 >= minimum(wanted)) {
            let half = bytes / 2 / BLOCK_BYTES * BLOCK_BYTES;
            if half < minimum(wanted) {
                return None;
            }
            bytes = half;
        }
        if bytes < wanted {
            p.shrunk.set(p.shrunk.get() + 1);
        }
        Some(Grant::take(p, bytes))
    })
}

/// [`try_grant`], or a grant of [`WRITE_BUFFER_BYTES_MIN`] (or `wanted` if smaller) beyond
/// the budget (an overdraft, counted): for a log that holds no buffer, which must not wait on
/// other partitions.
///
/// # Panics
/// As [`try_grant`].
pub fn grant_or_minimum(wanted: usize) -> Grant {
    try_grant(wanted).unwrap_or_else(|| {
        POOL.with(|p| {
            p.overdrafts.set(p.overdrafts.get() + 1);
            Grant::take(p, minimum(wanted))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test runs on its own thread, so each has a budget of its own.

    #[test]
    fn grants_shrink_when_the_budget_is_short_and_come_back_when_dropped() {
        set_budget_bytes(1 << 20);
        let a = try_grant(1 << 20).expect("the whole budget");
        assert_eq!(a.bytes(), 1 << 20);
        assert!(try_grant(1 << 20).is_none(), "nothing left");
        drop(a);
        let b = try_grant(768 << 10).expect("fits");
        assert_eq!(b.bytes(), 768 << 10);
        let c = try_grant(1 << 20).expect("a halving fits");
        assert_eq!(c.bytes(), 256 << 10);
        assert_eq!(stats().bytes_used, 1 << 20);
        assert_eq!(stats().shrunk, 1);
        drop((b, c));
        assert_eq!(stats().bytes_used, 0);
        assert_eq!(stats().bytes_peak, 1 << 20);
    }

    #[test]
    fn a_grant_is_no_larger_than_a_fair_share_of_the_budget() {
        set_budget_bytes(1 << 20);
        let held: Vec<Grant> = (0..4).map(|_| try_grant(256 << 10).unwrap()).collect();
        assert!(held.iter().all(|g| g.bytes() == 256 << 10));
        let mut held = held.into_iter();
        drop((held.next(), held.next()));
        // 512 KiB are free, but two grants are out: a third gets a third of the budget,
        // halved from what it asked to fit.
        assert!(is_short_of(768 << 10) && !is_short_of(512 << 10));
        let third = try_grant(512 << 10).expect("fits");
        assert_eq!(third.bytes(), 256 << 10);
        assert_eq!(stats().shrunk, 1);
        // Alone, a log gets all it asks for.
        drop((held, third));
        assert_eq!(try_grant(1 << 20).expect("fits").bytes(), 1 << 20);
    }

    #[test]
    fn a_log_without_a_buffer_gets_the_minimum_beyond_an_empty_budget() {
        set_budget_bytes(WRITE_BUFFER_BYTES_MIN);
        let first = grant_or_minimum(1 << 20);
        assert_eq!(first.bytes(), WRITE_BUFFER_BYTES_MIN);
        assert_eq!(stats().overdrafts, 0);
        let second = grant_or_minimum(1 << 20);
        assert_eq!(second.bytes(), WRITE_BUFFER_BYTES_MIN);
        assert_eq!(stats().overdrafts, 1);
        assert_eq!(stats().bytes_used, 2 * WRITE_BUFFER_BYTES_MIN);
        drop((first, second));
        assert_eq!(stats().bytes_used, 0);
    }

    #[test]
    fn an_unset_budget_is_unbounded() {
        let big = try_grant(1 << 30).expect("unbounded");
        assert_eq!(big.bytes(), 1 << 30);
    }
}
