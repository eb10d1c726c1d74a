//! Kafka wire protocol codecs for Spate.
//!
//! Every byte format that crosses a client socket lives here: frames, request headers, record
//! batch headers, and the response encoders of the hot paths. This crate does no I/O: callers
//! feed it bytes and get back typed values, or hand it values and get back bytes to send.
//!
//! The model, in the order a request meets it:
//! - [`frame::FrameDecoder`] splits size-prefixed frames off the connection's read buffer,
//!   refusing a size over `frame_bytes_max` before reserving anything;
//! - [`request::decode_request`] reads the [`header::RequestHeader`], checks the version against
//!   [`versions::SUPPORTED`], runs the allocation guard, and decodes the body into
//!   kafka-protocol's struct for that API (Produce records stay slices of the frame);
//! - the broker answers with [`response::encode_response`], or for Fetch with
//!   [`fetch::FetchResponseEncoder`], which never copies record data;
//! - [`WireError::error_code`] says which [`ErrorCode`] a failed decode is answered with.
//!
//! Brokers talk to each other in their own protocol, not Kafka's: [`cluster`] has its frames
//! (a fixed header with a version and CRCs), their decoder and the typed bodies (handshake,
//! Raft, replica fetch, epoch end offsets), with their own error type,
//! [`cluster::ClusterError`].
//!
//! ```
//! use bytes::{BufMut, BytesMut};
//! use spate_wire::frame::FrameDecoder;
//! use spate_wire::request::{decode_request, RequestBody, RequestLimits};
//! use spate_wire::response::encode_api_versions_response;
//! use spate_wire::versions::{ApiSet, VersionTable};
//!
//! // What a client sends first: ApiVersions v0 (key 18), correlation id 1, client id "c".
//! let mut read_buf = BytesMut::new();
//! read_buf.put_i32(11);
//! read_buf.put_slice(&[0, 18, 0, 0, 0, 0, 0, 1, 0, 1, b'c']);
//!
//! let frame = FrameDecoder::default().decode(&mut read_buf).unwrap().expect("whole frame");
//! let request = decode_request(frame, &RequestLimits::default()).unwrap();
//! assert!(matches!(request.body, RequestBody::ApiVersions(_)));
//!
//! let table = VersionTable::new(ApiSet::core());
//! let mut out = BytesMut::new();
//! encode_api_versions_response(&mut out, &table, request.header.api_version, request.header.correlation_id)
//!     .unwrap();
//! assert_eq!(&out[4..8], &1i32.to_be_bytes()); // the correlation id comes back
//! ```

#![warn(missing_docs)]

pub mod batch;
pub mod types;

pub mod cluster;
pub(crate) mod codec;
pub mod compression;
pub mod error;
pub mod fetch;
pub mod frame;
pub mod guard;
pub mod header;
pub mod records;
pub mod request;
pub mod response;
pub mod tags;
pub mod versions;

pub use error::{ErrorCode, WireError};
pub use kafka_protocol;
