//! One client connection: read frames, handle each request, write responses in request order.
//!
//! Requests of a connection are handled one at a time, in the order they arrived, like Kafka's
//! own broker (which mutes a channel while a request of it is in flight): clients pipeline
//! requests and match responses by correlation id but also rely on the order, and idempotent
//! produce needs per-connection order. Bytes that arrive meanwhile wait in the read buffer,
//! bounded by the frame limit.

use std::net::IpAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncWriteExt};
use glommio::net::TcpStream;
use spate_wire::frame::FrameDecoder;
use tracing::{debug, warn};

use crate::core::Core;
use crate::handlers;
use crate::handoff::{Affinity, Handoff};
use crate::ops::{CoreReply, CoreRequest};
use crate::runtime::ShutdownFlag;
use crate::stats::RequestTimes;

/// Bytes asked of the socket per read: large enough that a stream of small requests takes few
/// syscalls, small enough to keep idle connections cheap.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// Buffers handed to one sendmsg: a Fetch response is framing plus one buffer per batch chunk,
/// so a few dozen cover most responses in one syscall (IOV_MAX is 1024).
const IOVECS_PER_WRITE_MAX: usize = 64;

/// Sends `parts` in order with vectored writes on the socket, so record data is never copied
/// into one contiguous buffer first.
///
/// glommio's `TcpStream` sends only the first buffer of a vectored write, so this calls
/// `sendmsg(2)` on the socket itself, and when the socket is full lets glommio wait for
/// writability by writing the next slice through the stream. MSG_DONTWAIT is what makes the
/// socket full an EAGAIN: glommio leaves accepted sockets blocking (it passes MSG_DONTWAIT to
/// each of its own calls), and a blocking send to a client that does not read would stall the
/// whole core, every connection and partition on it.
async fn write_parts(stream: &mut TcpStream, parts: &[Bytes]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let mut index = 0; // first part not fully sent
    let mut sent = 0; // bytes of parts[index] already sent
    while index < parts.len() {
        let mut iovecs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOVECS_PER_WRITE_MAX];
        let mut count = 0;
        for (i, part) in parts[index..].iter().take(IOVECS_PER_WRITE_MAX).enumerate() {
            let slice = if i == 0 { &part[sent..] } else { &part[..] };
            iovecs[count] = libc::iovec {
                iov_base: slice.as_ptr() as *mut libc::c_void,
                iov_len: slice.len(),
            };
            count += 1;
        }
        // SAFETY: an all-zero msghdr is valid (no address, no control data); its iovecs are
        // filled in below.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = iovecs.as_mut_ptr();
        message.msg_iovlen = count;
        // SAFETY: every iovec points into a `Bytes` in `parts`, alive for the whole call, and
        // `message` points at `iovecs`, which outlives the call; sendmsg only reads them.
        let written =
            unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        let mut advance = if written >= 0 {
            written as usize
        } else {
            let error = std::io::Error::last_os_error();
            match error.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => {
                    // Full socket: glommio waits for it to drain, then writes some bytes.
                    match stream.write(&parts[index][sent..]).await? {
                        0 => return Err(std::io::ErrorKind::WriteZero.into()),
                        n => n,
                    }
                }
                _ => return Err(error),
            }
        };
        while advance > 0 {
            let left = parts[index].len() - sent;
            if advance < left {
                sent += advance;
                advance = 0;
            } else {
                advance -= left;
                index += 1;
                sent = 0;
            }
        }
        // Skip empty parts so the loop ends.
        while index < parts.len() && parts[index].len() == sent {
            index += 1;
            sent = 0;
        }
    }
    Ok(())
}

/// A response to send: the frame (prefix, header, body) as one or more buffers, sent in order.
pub type ResponseParts = Vec<Bytes>;

/// What a connection's handlers know of its client.
#[derive(Debug)]
pub struct Client {
    /// For group members' client host (DescribeGroups), as Kafka reports it.
    pub peer: Option<IpAddr>,
    /// Where its partitions live, to move it to their core (`crate::handoff`).
    pub affinity: Affinity,
}

/// The state of a connection another core handed to this one.
#[derive(Debug)]
pub struct Carried {
    /// Bytes read and not yet handled: the next requests.
    pub unread: BytesMut,
    pub peer: Option<IpAddr>,
    /// Moves so far, this one included, and when this one happened.
    pub moves: u32,
    pub moved_at: Instant,
}

/// How serving a connection on this core ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The peer closed it, or shutdown did, or a request closes it (Kafka's rule for a
    /// request it cannot answer).
    Closed,
    /// Core `to` serves it from now on.
    Moved { to: usize },
}

/// Serves one connection until the peer closes it, it breaks the protocol, shutdown, or it
/// moves to the core that owns its partitions. `carried` is the state of a connection
/// another core handed over; `None` for one accepted here.
///
/// # Errors
/// On socket errors and on frames that cannot be answered (the connection is then closed, as
/// Kafka does).
pub async fn serve(
    mut stream: TcpStream,
    core: &Core,
    shutdown: &ShutdownFlag,
    carried: Option<Carried>,
) -> anyhow::Result<Served> {
    stream
        .set_nodelay(true)
        .map_err(|error| anyhow::anyhow!("setting TCP_NODELAY: {error}"))?;
    let decoder = FrameDecoder::new(core.config.frame_bytes_max);
    let (mut buf, client) = match carried {
        None => (
            BytesMut::with_capacity(READ_CHUNK_BYTES),
            Client {
                peer: stream.peer_addr().ok().map(|addr| addr.ip()),
                affinity: Affinity::new(core.cores),
            },
        ),
        Some(carried) => (
            carried.unread,
            Client {
                peer: carried.peer,
                affinity: Affinity::carried(core.cores, carried.moves, Some(carried.moved_at)),
            },
        ),
    };
    // When the last read completed: the frames it completed have waited since then.
    let mut read_at = Instant::now();
    loop {
        // Answer every whole frame already buffered before reading more.
        while let Some(frame) = decoder.decode(&mut buf).map_err(|error| {
            warn!(core = core.id, %error, "refusing frame; closing connection");
            error
        })? {
            let api_key = match frame.get(..2) {
                Some(&[high, low]) => i16::from_be_bytes([high, low]),
                _ => -1,
            };
            let handle_at = Instant::now();
            let Some(parts) = handlers::handle(core, frame, &client).await else {
                // Kafka closes the connection on requests it cannot parse the header of.
                return Ok(Served::Closed);
            };
            let send_at = Instant::now();
            write_parts(&mut stream, &parts).await?;
            let sent_at = Instant::now();
            core.stats.record_request(
                api_key,
                RequestTimes {
                    queue: handle_at.saturating_duration_since(read_at),
                    handle: send_at - handle_at,
                    send: sent_at - send_at,
                },
            );
            // Between two requests, every one read so far answered: the one place a move
            // keeps the connection's order.
            if let Some(to) = client.affinity.move_due(core.id, sent_at) {
                if hand_over(&stream, core, to, &buf, &client, sent_at).await {
                    return Ok(Served::Moved { to });
                }
            }
        }
        if shutdown.is_triggered() {
            debug!(core = core.id, "shutdown: closing idle connection");
            return Ok(Served::Closed);
        }
        // A large frame is read in one go (its size was already checked against the limit);
        // otherwise a chunk that may hold several small requests.
        let want = decoder.bytes_missing(&buf)?.max(READ_CHUNK_BYTES);
        let read = future::or(
            async { Some(read_some(&stream, &mut buf, want).await) },
            async {
                shutdown.wait().await;
                None
            },
        )
        .await;
        match read {
            None => continue,
            Some(result) => {
                if result? == 0 {
                    return Ok(Served::Closed);
                }
                read_at = Instant::now();
            }
        }
    }
}

/// Offers the connection to core `to`: a duplicate of its socket and a copy of its unread
/// bytes. `true` if that core took it, and this one must drop it without another read or
/// write; `false` if it stays here (the other core is stopping, full, or gone), unchanged.
async fn hand_over(
    stream: &TcpStream,
    core: &Core,
    to: usize,
    unread: &BytesMut,
    client: &Client,
    now: Instant,
) -> bool {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: the stream owns this descriptor and outlives the borrow; duplicating it does
    // not touch the stream's state.
    let socket = match unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned() {
        Ok(socket) => socket,
        Err(error) => {
            // Out of descriptors, most likely: serving it here is still right.
            debug!(core = core.id, %error, "not moving a connection: dup failed");
            return false;
        }
    };
    // A copy, so a refused handoff leaves this connection as it was. Rarely more than one
    // read's chunk, once per move.
    let handoff = Handoff {
        socket,
        unread: BytesMut::from(&unread[..]),
        peer: client.peer,
        moves: client.affinity.moves() + 1,
        moved_at: now,
    };
    matches!(
        core.call(to, CoreRequest::AdoptConnection(Box::new(handoff)))
            .await,
        Some(CoreReply::Adopted(true))
    )
}

/// Appends at most `want` bytes from the socket to `buf`, received straight into its spare
/// capacity; waits until some bytes are there. `Ok(0)` at the end of the stream.
///
/// glommio's read takes an initialized `&mut [u8]`, which cost a zero-fill of the whole 64 KiB
/// chunk before every read: 5-6% of the broker's CPU samples under 64 KiB produce requests,
/// and about a fifth of its CPU per message under 1 KiB ones (commit message for numbers). This
/// calls recv(2) itself (MSG_DONTWAIT: accepted sockets are blocking, glommio sets no
/// O_NONBLOCK), and when nothing is there lets glommio wait with a one-byte peek, which returns
/// once bytes, the end of the stream or an error are there. Cancel-safe: `buf` changes only
/// when bytes were received.
async fn read_some(stream: &TcpStream, buf: &mut BytesMut, want: usize) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    assert!(want > 0);
    buf.reserve(want);
    let fd = stream.as_raw_fd();
    loop {
        let spare = &mut buf.spare_capacity_mut()[..want];
        // SAFETY: recv(2) writes at most `spare.len()` bytes to `spare`, memory borrowed
        // exclusively here (MaybeUninit<u8> has the layout of u8); it never reads it.
        let received = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr().cast::<libc::c_void>(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if let Ok(n) = usize::try_from(received) {
            assert!(n <= want, "recv returned more than asked");
            // SAFETY: recv initialized the first `n` bytes of the spare capacity, and
            // `len + n` is within the capacity reserved above.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let error = std::io::Error::last_os_error();
        match error.kind() {
            std::io::ErrorKind::Interrupted => {}
            std::io::ErrorKind::WouldBlock => {
                // Only waits: the peeked byte stays in the socket for the recv above.
                stream.peek(&mut [0u8; 1]).await?;
            }
            _ => return Err(error),
        }
    }
}
