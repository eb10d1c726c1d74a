//! Core-to-core messaging over glommio's channel mesh.
//!
//! Each core owns some partitions; a request that touches another core's partition sends that
//! core a [`Message::Request`] and waits for the matching [`Message::Reply`]. There are no
//! locks: the mesh's channels are lock-free SPSC rings, and everything on either end is owned by
//! one thread. Replies find their waiter through a per-core table of pending request ids.
//!
//! A core's own requests never go through the mesh (glommio has no self-channel); callers run
//! them directly.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};

use crate::ops::{CoreReply, CoreRequest};

/// Messages in flight from one core to another before a sender waits: bounds the memory a
/// burst of forwarded requests can hold.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Most requests one core may have waiting on replies from others at once.
pub const PENDING_REPLIES_MAX: usize = 1 << 16;

/// What crosses between cores.
#[derive(Debug)]
pub enum Message {
    /// Work for the receiving core, to be answered with a reply carrying `id`.
    Request {
        from: usize,
        id: u64,
        request: CoreRequest,
    },
    /// The answer to request `id` of the receiving core.
    Reply { id: u64, reply: CoreReply },
}

/// The mesh builder every executor joins at startup.
pub type Builder = MeshBuilder<Message, Full>;

/// A new mesh for `cores` executors.
pub fn builder(cores: usize) -> Builder {
    MeshBuilder::full(cores, MESH_CHANNEL_CAPACITY)
}

struct Slot {
    reply: Option<CoreReply>,
    waker: Option<Waker>,
}

/// One core's end of the mesh: senders to every other core and the replies it waits for.
pub struct Mesh {
    senders: Option<Senders<Message>>,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, Slot>>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("pending", &self.pending.borrow().len())
            .finish()
    }
}

/// The mesh is gone (the peer core stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("core {0} is not reachable")]
pub struct Unreachable(pub usize);

impl Mesh {
    /// A core's end; `senders` is `None` when there is only one core.
    pub fn new(senders: Option<Senders<Message>>) -> Mesh {
        Mesh {
            senders,
            next_id: Cell::new(0),
            pending: RefCell::new(HashMap::new()),
        }
    }

    /// Sends `request` to core `to` and waits for its reply.
    ///
    /// # Errors
    /// [`Unreachable`] if the mesh to that core is closed (shutdown).
    ///
    /// # Panics
    /// If more than [`PENDING_REPLIES_MAX`] requests are waiting (a missing bound upstream).
    pub async fn call(
        &self,
        from: usize,
        to: usize,
        request: CoreRequest,
    ) -> Result<CoreReply, Unreachable> {
        let senders = self.senders.as_ref().ok_or(Unreachable(to))?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        {
            let mut pending = self.pending.borrow_mut();
            assert!(
                pending.len() < PENDING_REPLIES_MAX,
                "too many pending cross-core requests"
            );
            pending.insert(
                id,
                Slot {
                    reply: None,
                    waker: None,
                },
            );
        }
        // Remove the slot however this future ends (dropped by a cancelled request included).
        let _cleanup = PendingGuard { mesh: self, id };
        if senders
            .send_to(to, Message::Request { from, id, request })
            .await
            .is_err()
        {
            return Err(Unreachable(to));
        }
        let reply = poll_fn(|cx| {
            let mut pending = self.pending.borrow_mut();
            let slot = pending
                .get_mut(&id)
                .expect("slot lives until the guard drops");
            match slot.reply.take() {
                Some(reply) => Poll::Ready(reply),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        Ok(reply)
    }

    /// Sends a reply back to the core that asked.
    pub async fn reply(&self, to: usize, id: u64, reply: CoreReply) {
        if let Some(senders) = &self.senders {
            // A closed channel means the asking core is stopping; nobody waits for this.
            let _ = senders.send_to(to, Message::Reply { id, reply }).await;
        }
    }

    /// Hands an arrived reply to its waiter (if it still waits).
    pub fn deliver(&self, id: u64, reply: CoreReply) {
        let mut pending = self.pending.borrow_mut();
        if let Some(slot) = pending.get_mut(&id) {
            slot.reply = Some(reply);
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    /// Closes the senders so peers' receive loops end.
    pub fn close(&self) {
        if let Some(senders) = &self.senders {
            senders.close();
        }
    }
}

struct PendingGuard<'a> {
    mesh: &'a Mesh,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.mesh.pending.borrow_mut().remove(&self.id);
    }
}
