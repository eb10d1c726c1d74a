//! Single-threaded async primitives: the log lives on one executor and needs no atomics.

use std::cell::{Cell, RefCell, RefMut};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Most tasks that may wait on one primitive at once; a broker bounds its in-flight requests
/// per partition well below this.
pub const WAITERS_MAX: usize = 1 << 16;

fn register(waiters: &RefCell<Vec<Waker>>, waker: &Waker) {
    let mut waiters = waiters.borrow_mut();
    if !waiters.iter().any(|w| w.will_wake(waker)) {
        assert!(waiters.len() < WAITERS_MAX, "too many waiters");
        waiters.push(waker.clone());
    }
}

/// An async mutex for one thread: the guard may be held across `.await`.
///
/// The value sits in a `RefCell`; the lock flag guarantees only the guard holder borrows it, so
/// the borrow can never conflict even though it lives across awaits.
#[derive(Debug)]
pub struct AsyncMutex<T> {
    locked: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
    value: RefCell<T>,
}

/// Exclusive access to the value of an [`AsyncMutex`].
#[derive(Debug)]
pub struct Guard<'a, T> {
    mutex: &'a AsyncMutex<T>,
    value: Option<RefMut<'a, T>>,
}

impl<T: Default> Default for AsyncMutex<T> {
    fn default() -> Self {
        AsyncMutex::new(T::default())
    }
}

impl<T> AsyncMutex<T> {
    /// A new unlocked mutex.
    pub fn new(value: T) -> Self {
        AsyncMutex {
            locked: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
            value: RefCell::new(value),
        }
    }

    /// Waits for the lock.
    pub async fn lock(&self) -> Guard<'_, T> {
        poll_fn(|cx| {
            if self.locked.get() {
                register(&self.waiters, cx.waker());
                Poll::Pending
            } else {
                self.locked.set(true);
                Poll::Ready(())
            }
        })
        .await;
        Guard {
            mutex: self,
            value: Some(self.value.borrow_mut()),
        }
    }

    /// The lock if nobody holds it now, without waiting (for periodic work that can skip a turn).
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        if self.locked.get() {
            return None;
        }
        self.locked.set(true);
        Some(Guard {
            mutex: self,
            value: Some(self.value.borrow_mut()),
        })
    }

    /// Consumes the mutex and returns the value.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T> std::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
            .as_ref()
            .expect("guard holds the value until dropped")
    }
}

impl<T> std::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
            .as_mut()
            .expect("guard holds the value until dropped")
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.value = None;
        self.mutex.locked.set(false);
        let waiters = std::mem::take(&mut *self.mutex.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }
}

/// A broadcast notification: waiters wake on the next `notify_all`.
#[derive(Debug, Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Wakes everyone waiting now.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Waits for the next `notify_all` after this call.
    pub async fn notified(&self) {
        let start = self.generation.get();
        poll_fn(|cx| {
            if self.generation.get() != start {
                Poll::Ready(())
            } else {
                register(&self.waiters, cx.waker());
                Poll::Pending
            }
        })
        .await
    }
}

/// Yields once to the executor: the task goes to the back of the run queue, so tasks that
/// are ready run first.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Runs a future to completion on the current thread, for futures that never wait on anything
/// outside themselves (the in-memory disk). Used by tests and doc examples.
///
/// # Panics
/// If the future stays pending after being polled with no progress possible (it would need a
/// real executor).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("block_on: future made no progress; it needs a real executor")
}
