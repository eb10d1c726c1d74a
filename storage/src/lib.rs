//! Spate's partition commit log.
//!
//! A partition is an append-only sequence of Kafka v2 record batches stored byte-for-byte as the
//! producer sent them, split into segments on disk, addressed by offsets.
