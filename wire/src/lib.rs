//! Kafka wire protocol codecs for Spate.
//!
//! Every byte format that crosses a client socket lives here: frames, request headers, record
//! batch headers, and the response encoders of the hot paths. This crate does no I/O: callers
//! feed it bytes and get back typed values, or hand it values and get back bytes to send.

#![warn(missing_docs)]

pub mod batch;
pub mod types;

pub(crate) mod codec;
pub mod compression;
pub mod error;
pub mod fetch;
pub mod frame;
pub(crate) mod guard;
pub mod header;
pub mod records;
pub mod request;
pub mod response;
pub mod versions;

pub use error::{ErrorCode, WireError};
pub use kafka_protocol;
