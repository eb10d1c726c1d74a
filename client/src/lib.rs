//! A thin Kafka client for Spate on glommio: a producer, a consumer of assigned partitions,
//! and an admin client.
//!
//! The model:
//! - pure code with unit tests: [`partitioner`] (Java-compatible murmur2, sticky partitioning),
//!   [`batch`] (per-partition accumulators writing v2 record batches, optional compression),
//!   [`protocol`] (request framing and response decoding with kafka-protocol);
//! - [`connection::Connection`]: one TCP connection on the current glommio executor,
//!   requests pipelined up to `in_flight_max`, responses matched to requests in order;
//! - [`cluster::Cluster`]: the brokers of the cluster (learned from the bootstrap broker's
//!   Metadata), one connection per broker opened when first needed, and every partition's
//!   leader; Produce, Fetch and ListOffsets go to the leader, group calls to the coordinator,
//!   and a moved leader or a broken connection costs a metadata refresh and a retry;
//! - [`producer::Producer`], [`consumer::Consumer`], [`admin::Admin`] on top, each owning a
//!   [`cluster::Cluster`].
//!
//! Nothing runs in the background: every type is driven by the task that awaits its methods,
//! and none is `Send`. Limits (frame size, in-flight requests, ready batches, decompressed
//! size) are named `*_max` fields of the configs; what a misbehaving broker can still do is
//! written in [`protocol`].
//!
//! # Producer
//! ```no_run
//! use spate_client::{Acks, ClientConfig, Producer, ProducerConfig};
//! glommio::LocalExecutorBuilder::default()
//!     .io_memory(512 << 10)
//!     .make()
//!     .unwrap()
//!     .run(async {
//!         let mut config = ProducerConfig::new(ClientConfig::new("127.0.0.1:9092".parse().unwrap()));
//!         config.acks = Acks::Leader;
//!         let mut producer = Producer::connect(config, Box::new(|d| {
//!             println!("{}/{}: {:?}", d.topic, d.partition, d.result);
//!         }))
//!         .await?;
//!         producer.send("events", Some(b"key"), Some(b"value"), &[]).await?;
//!         producer.flush().await
//!     })
//!     .unwrap();
//! ```
//!
//! # Consumer
//! ```no_run
//! use spate_client::{ClientConfig, Consumer, ConsumerConfig, OffsetSpec};
//! glommio::LocalExecutorBuilder::default()
//!     .io_memory(512 << 10)
//!     .make()
//!     .unwrap()
//!     .run(async {
//!         let config = ConsumerConfig::new(ClientConfig::new("127.0.0.1:9092".parse().unwrap()));
//!         let mut consumer = Consumer::connect(config).await?;
//!         consumer.assign("events", 0, OffsetSpec::Earliest).await?;
//!         let fetched = consumer.poll().await?;
//!         for record in fetched.records() {
//!             let record = record?;
//!             println!("{} {:?}", record.offset, record.value);
//!         }
//!         Ok::<(), spate_client::ClientError>(())
//!     })
//!     .unwrap();
//! ```
//!
//! # Admin
//! ```no_run
//! use spate_client::{Admin, ClientConfig, NewTopic, OffsetSpec};
//! glommio::LocalExecutorBuilder::default()
//!     .io_memory(512 << 10)
//!     .make()
//!     .unwrap()
//!     .run(async {
//!         let mut admin = Admin::connect(ClientConfig::new("127.0.0.1:9092".parse().unwrap())).await?;
//!         for result in admin.create_topics(&[NewTopic::new("events", 4)]).await? {
//!             result?;
//!         }
//!         let end = admin.list_offset("events", 0, OffsetSpec::Latest).await?;
//!         println!("log end offset {end}");
//!         Ok::<(), spate_client::ClientError>(())
//!     })
//!     .unwrap();
//! ```
//!
//! # Using it from a plain thread
//! The client lives on a glommio executor. For a blocking call from ordinary code, run one
//! future to completion: `LocalExecutorBuilder::default().io_memory(512 << 10).make()?.run(fut)`
//! as above (it creates io_uring rings each time, so keep it for setup and tests). For a
//! long-lived producer, spawn a thread with `LocalExecutorBuilder::spawn`, create the producer
//! inside it, and feed it records over a channel (`std::sync::mpsc` polled between sends, or
//! `glommio::channels::shared_channel` to await): the producer stays on that thread, the
//! rest of the application only sends owned values. Keep `io_memory` small: glommio
//! registers it as locked memory (RLIMIT_MEMLOCK is often 8 MiB).

#![warn(missing_docs)]

pub mod admin;
pub mod batch;
pub mod cli;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod groups;
pub mod partitioner;
pub mod producer;
pub mod protocol;

pub use admin::{
    Admin, BrokerDescription, ClusterDescription, ConfigOperation, Decommission,
    DecommissionStatus, MoveResult, NewTopic, OffsetSpec, OngoingMove, PartitionMove,
    QuorumDescription, QuorumReplica, ReplicaLogDir, TopicConfigEntry,
};
pub use batch::BatchConfig;
pub use cluster::ClientConfig;
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, Fetched};
pub use error::ClientError;
pub use groups::{CommittedOffset, GroupDescription, GroupListing, GroupMember};
pub use producer::{Acks, Delivery, Idempotence, Producer, ProducerConfig};
pub use spate_wire::batch::Compression;
