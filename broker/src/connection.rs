//! One client connection: read frames, handle each request, write responses in request order.
//!
//! Requests of a connection are handled one at a time, in the order they arrived, like Kafka's
//! own broker (which mutes a channel while a request of it is in flight): clients pipeline
//! requests and match responses by correlation id but also rely on the order, and idempotent
//! produce needs per-connection order. Bytes that arrive meanwhile wait in the read buffer,
//! bounded by the frame limit.

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use spate_wire::frame::FrameDecoder;
use tracing::{debug, warn};

use crate::core::Core;
use crate::handlers;
use crate::runtime::ShutdownFlag;

/// Bytes asked of the socket per read: large enough that a stream of small requests takes few
/// syscalls, small enough to keep idle connections cheap.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// A response to send: the frame (prefix, header, body) as one or more buffers, sent in order.
pub type ResponseParts = Vec<Bytes>;

/// Serves one connection until the peer closes it, it breaks the protocol, or shutdown.
///
/// # Errors
/// On socket errors and on frames that cannot be answered (the connection is then closed, as
/// Kafka does).
pub async fn serve(
    mut stream: TcpStream,
    core: &Core,
    shutdown: &ShutdownFlag,
) -> anyhow::Result<()> {
    stream
        .set_nodelay(true)
        .map_err(|error| anyhow::anyhow!("setting TCP_NODELAY: {error}"))?;
    let decoder = FrameDecoder::new(core.config.frame_bytes_max);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        // Answer every whole frame already buffered before reading more.
        while let Some(frame) = decoder.decode(&mut buf).map_err(|error| {
            warn!(core = core.id, %error, "refusing frame; closing connection");
            error
        })? {
            let Some(parts) = handlers::handle(core, frame).await else {
                // Kafka closes the connection on requests it cannot parse the header of.
                return Ok(());
            };
            for part in parts {
                stream.write_all(&part).await?;
            }
        }
        if shutdown.is_triggered() {
            debug!(core = core.id, "shutdown: closing idle connection");
            return Ok(());
        }
        // A large frame is read in one go (its size was already checked against the limit);
        // otherwise a chunk that may hold several small requests.
        let want = decoder.bytes_missing(&buf)?.max(READ_CHUNK_BYTES);
        let start = buf.len();
        buf.resize(start + want, 0);
        let read = future::or(
            async { Some(stream.read(&mut buf[start..]).await) },
            async {
                shutdown.wait().await;
                None
            },
        )
        .await;
        let n = match read {
            None => {
                buf.truncate(start);
                continue;
            }
            Some(result) => result?,
        };
        buf.truncate(start + n);
        if n == 0 {
            return Ok(());
        }
    }
}
