//! One TCP connection to a broker on glommio: pipelined requests, responses matched in order.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use spate_wire::frame::FrameDecoder;
use spate_wire::header::CorrelationId;
use spate_wire::kafka_protocol::messages::ApiKey;
use spate_wire::kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::ClientError;
use crate::protocol::{decode_response, decode_response_header, encode_request};

/// Limits of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// The client id sent in every request header.
    pub client_id: String,
    /// Requests sent and not yet answered, at most. Kafka's Java client defaults to 5.
    pub in_flight_max: usize,
    /// A response frame larger than this is refused before any of it is buffered.
    pub response_bytes_max: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "spate-client".to_string(),
            in_flight_max: 5,
            response_bytes_max: crate::protocol::RESPONSE_BYTES_MAX_DEFAULT,
        }
    }
}

/// Socket reads ask for at least this much, so small responses cost one `recv` each.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
struct Pending {
    correlation_id: CorrelationId,
    api_key: ApiKey,
    version: i16,
}

/// A response frame whose header was checked, with its body not yet decoded.
#[derive(Debug)]
pub struct RawResponse {
    /// The API the request was.
    pub api_key: ApiKey,
    /// The version it was sent in.
    pub version: i16,
    /// The body (after the response header), a slice of the read buffer.
    pub body: Bytes,
}

impl RawResponse {
    /// Decodes the body as `T`.
    ///
    /// # Errors
    /// [`ClientError::Codec`] if it does not parse.
    pub fn decode<T: Decodable>(self) -> Result<T, ClientError> {
        decode_response(self.body, self.api_key, self.version)
    }
}

/// One connection. Requests are written as they are sent; `receive` returns responses in the
/// order the requests went out (Kafka answers in order on a connection).
///
/// Not `Send`: it lives on the glommio executor that opened it.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    stream: TcpStream,
    config: ConnectionConfig,
    client_id: Bytes,
    decoder: FrameDecoder,
    read_buf: BytesMut,
    /// Bytes of `read_buf` holding received data; the rest is zeroed room for a read that may
    /// have been cancelled (a `receive` raced against a timer).
    filled: usize,
    write_buf: BytesMut,
    pending: VecDeque<Pending>,
    next_correlation_id: i32,
}

impl Connection {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// [`ClientError::Io`] if the connection fails.
    ///
    /// # Panics
    /// If `config.in_flight_max` is zero.
    pub async fn connect(addr: SocketAddr, config: ConnectionConfig) -> Result<Self, ClientError> {
        assert!(config.in_flight_max > 0, "in_flight_max must be positive");
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Io {
                addr: addr.to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
        // Requests are written whole; Nagle would hold back the tail of a pipelined write.
        stream.set_nodelay(true).map_err(|e| ClientError::Io {
            addr: addr.to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Connection {
            addr,
            stream,
            client_id: Bytes::from(config.client_id.clone().into_bytes()),
            decoder: FrameDecoder::new(config.response_bytes_max),
            config,
            read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            filled: 0,
            write_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            pending: VecDeque::new(),
            next_correlation_id: 0,
        })
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether another request that expects a response may be sent.
    pub fn can_send(&self) -> bool {
        self.pending.len() < self.config.in_flight_max
    }

    /// Sends a request. `expect_response` is `false` only for Produce with acks=0, which the
    /// broker never answers.
    ///
    /// # Errors
    /// [`ClientError::Codec`] if the body cannot be encoded, [`ClientError::Io`] if the write
    /// fails.
    ///
    /// # Panics
    /// If `in_flight_max` requests are already waiting (callers check [`Connection::can_send`]).
    pub async fn send<R: Encodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &R,
        expect_response: bool,
    ) -> Result<CorrelationId, ClientError> {
        assert!(self.can_send(), "in_flight_max exceeded");
        let correlation_id = CorrelationId(self.next_correlation_id);
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        self.write_buf.clear();
        encode_request(
            &mut self.write_buf,
            api_key,
            version,
            correlation_id,
            &self.client_id,
            body,
        )?;
        let addr = self.addr;
        self.stream
            .write_all(&self.write_buf)
            .await
            .map_err(|source| ClientError::Io {
                addr: addr.to_string(),
                source,
            })?;
        if expect_response {
            self.pending.push_back(Pending {
                correlation_id,
                api_key,
                version,
            });
        }
        Ok(correlation_id)
    }

    /// Waits for the response to the oldest request in flight.
    ///
    /// # Errors
    /// [`ClientError::Io`] or [`ClientError::Closed`] if the connection fails,
    /// [`ClientError::Wire`] for a frame over `response_bytes_max`,
    /// [`ClientError::CorrelationMismatch`] if the broker answered out of order.
    ///
    /// # Panics
    /// If nothing is in flight.
    pub async fn receive(&mut self) -> Result<RawResponse, ClientError> {
        let pending = *self
            .pending
            .front()
            .expect("receive with nothing in flight");
        let mut frame = self.read_frame().await?;
        let id = decode_response_header(&mut frame, pending.api_key, pending.version)?;
        if id != pending.correlation_id {
            return Err(ClientError::CorrelationMismatch {
                expected: pending.correlation_id.0,
                got: id.0,
            });
        }
        self.pending.pop_front();
        Ok(RawResponse {
            api_key: pending.api_key,
            version: pending.version,
            body: frame,
        })
    }

    /// Sends a request and waits for its response; for admin calls with nothing else in
    /// flight.
    ///
    /// # Errors
    /// As [`Connection::send`] and [`Connection::receive`], and [`ClientError::Codec`] if the
    /// response does not decode.
    pub async fn call<R: Encodable, T: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &R,
    ) -> Result<T, ClientError> {
        assert_eq!(self.in_flight(), 0, "call() needs an idle connection");
        self.send(api_key, version, body, true).await?;
        self.receive().await?.decode()
    }

    async fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        loop {
            self.read_buf.truncate(self.filled);
            let frame = self.decoder.decode(&mut self.read_buf)?;
            self.filled = self.read_buf.len();
            if let Some(frame) = frame {
                return Ok(frame);
            }
            let missing = self.decoder.bytes_missing(&self.read_buf)?;
            let want = missing.max(READ_CHUNK_BYTES);
            let start = self.filled;
            self.read_buf.resize(start + want, 0);
            // Cancel-safe: glommio waits for readiness with a poll and then calls recv, so a
            // dropped future loses no data; `filled` only grows after the read returned.
            let read = self.stream.read(&mut self.read_buf[start..]).await;
            let n = read.map_err(|source| ClientError::Io {
                addr: self.addr.to_string(),
                source,
            })?;
            self.filled = start + n;
            if n == 0 {
                return Err(ClientError::Closed {
                    addr: self.addr.to_string(),
                    in_flight: self.pending.len(),
                });
            }
        }
    }
}
