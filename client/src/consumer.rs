//! The consumer: assign partitions, seek, long-poll Fetch with one request always in flight,
//! iterate records as zero-copy `Bytes` slices.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use spate_wire::batch::{batches, verify_crc, BatchHeader, Compression, BATCH_HEADER_BYTES};
use spate_wire::compression::{decompress, DECOMPRESSED_BYTES_MAX_DEFAULT};
use spate_wire::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_wire::kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use spate_wire::kafka_protocol::protocol::StrBytes;
use spate_wire::records::Records;

use crate::admin::{list_offset, OffsetSpec};
use crate::cluster::{ClientConfig, Cluster};
use crate::error::ClientError;
use crate::protocol::FETCH_VERSION;

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection, retries.
    pub client: ClientConfig,
    /// The broker holds a Fetch this long waiting for `min_bytes`. Kafka's `fetch.max.wait.ms`.
    pub max_wait_ms: i32,
    /// The broker answers once it has this many bytes. Kafka's `fetch.min.bytes`.
    pub min_bytes: i32,
    /// Bytes in one Fetch response, at most (soft: one batch may exceed it).
    pub max_bytes: i32,
    /// Bytes per partition in one Fetch response, at most (soft).
    pub partition_max_bytes: i32,
    /// A compressed batch may expand to this many bytes, at most.
    pub decompressed_bytes_max: usize,
    /// Partitions assigned at most.
    pub assignments_max: usize,
}

impl ConsumerConfig {
    /// Kafka's consumer defaults (500 ms wait, 1 byte, 50 MiB, 1 MiB per partition).
    pub fn new(client: ClientConfig) -> ConsumerConfig {
        ConsumerConfig {
            client,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            decompressed_bytes_max: DECOMPRESSED_BYTES_MAX_DEFAULT,
            assignments_max: 4096,
        }
    }
}

#[derive(Debug, Clone)]
struct Assignment {
    topic: Arc<str>,
    partition: i32,
    /// The next offset the application wants.
    position: i64,
}

/// One record, its key and value slices of the Fetch response (or of the decompressed batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp.
    pub timestamp_ms: i64,
    /// The key, or `None` for a null key.
    pub key: Option<Bytes>,
    /// The value, or `None` for a tombstone.
    pub value: Option<Bytes>,
}

/// The record data returned by one Fetch, for one partition.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The partition's high watermark at the time of the fetch.
    pub high_watermark: i64,
    /// The first offset wanted: records below it (the head of the first batch) are skipped.
    pub start_offset: i64,
    /// The raw batches.
    pub records: Bytes,
}

/// What one [`Consumer::poll`] returned.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Per-partition record data.
    pub partitions: Vec<FetchedPartition>,
    decompressed_bytes_max: usize,
}

impl Fetched {
    /// The records of every partition, in offset order per partition. Batches are
    /// CRC-checked; compressed batches are decompressed (one buffer per batch); control
    /// batches are skipped.
    pub fn records(&self) -> RecordIter<'_> {
        RecordIter {
            fetched: self,
            partition: 0,
            rest: Bytes::new(),
            started: false,
            decoded: VecDeque::new(),
        }
    }
}

/// Iterator over the records of a [`Fetched`]; yields an error for a corrupt batch and stops
/// at it.
#[derive(Debug)]
pub struct RecordIter<'a> {
    fetched: &'a Fetched,
    partition: usize,
    rest: Bytes,
    started: bool,
    /// Records of the current batch (reused: one allocation per iterator, not per record).
    decoded: VecDeque<ConsumerRecord>,
}

impl RecordIter<'_> {
    fn load_batch(&mut self) -> Result<bool, ClientError> {
        loop {
            if self.partition >= self.fetched.partitions.len() {
                return Ok(false);
            }
            if !self.started {
                let Some(p) = self.fetched.partitions.get(self.partition) else {
                    return Ok(false);
                };
                self.rest = p.records.clone();
                self.started = true;
            }
            let p = &self.fetched.partitions[self.partition];
            let Some(batch) = batches(&self.rest).next() else {
                self.partition += 1;
                self.started = false;
                continue;
            };
            // A partial batch at the end of a response is normal (max_bytes cut it): skip it.
            let batch = match batch {
                Ok((_, b)) => b.len(),
                Err(_) if self.rest.len() < BATCH_HEADER_BYTES => 0,
                Err(e) => {
                    if BatchHeader::parse(&self.rest)
                        .is_ok_and(|h| h.total_bytes() > self.rest.len())
                    {
                        0
                    } else {
                        return Err(ClientError::Wire(e.into()));
                    }
                }
            };
            if batch == 0 {
                self.partition += 1;
                self.started = false;
                continue;
            }
            let batch = self.rest.split_to(batch);
            verify_crc(&batch).map_err(|e| ClientError::Wire(e.into()))?;
            let header = BatchHeader::parse(&batch).map_err(|e| ClientError::Wire(e.into()))?;
            if header.is_control() || header.last_offset().0 < p.start_offset {
                continue;
            }
            let section = match header.compression() {
                Compression::None => batch.slice(BATCH_HEADER_BYTES..),
                codec => {
                    let mut out = Vec::new();
                    decompress(
                        codec,
                        &batch[BATCH_HEADER_BYTES..],
                        &mut out,
                        self.fetched.decompressed_bytes_max,
                    )?;
                    Bytes::from(out)
                }
            };
            self.decoded.clear();
            let count = usize::try_from(header.record_count).unwrap_or(0);
            for record in Records::new(&section, count) {
                let record = record?;
                let offset = header.base_offset.0 + i64::from(record.offset_delta);
                if offset < p.start_offset {
                    continue;
                }
                self.decoded.push_back(ConsumerRecord {
                    topic: Arc::clone(&p.topic),
                    partition: p.partition,
                    offset,
                    timestamp_ms: header.first_timestamp_ms + record.timestamp_delta_ms,
                    key: record.key.map(|k| section.slice_ref(k)),
                    value: record.value.map(|v| section.slice_ref(v)),
                });
            }
            return Ok(true);
        }
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<ConsumerRecord, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.decoded.pop_front() {
                return Some(Ok(record));
            }
            match self.load_batch() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.partition = usize::MAX;
                    self.started = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A consumer of explicitly assigned partitions (no consumer groups yet).
///
/// After the first [`Consumer::poll`], one Fetch is always in flight: `poll` sends the next
/// request (from the positions after the records it returns) before handing records back, so
/// the broker is already collecting data while the application works.
#[derive(Debug)]
pub struct Consumer {
    cluster: Cluster,
    config: ConsumerConfig,
    assignments: Vec<Assignment>,
    /// Whether a Fetch is in flight, and whether its answer is still wanted (a seek or assign
    /// since it was sent makes it stale).
    in_flight: Option<Freshness>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    Current,
    Stale,
}

impl Consumer {
    /// Connects.
    ///
    /// # Errors
    /// [`ClientError::Io`] if the broker cannot be reached.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Consumer {
            cluster,
            config,
            assignments: Vec::new(),
            in_flight: None,
        })
    }

    /// Adds `topic`/`partition` at the position `from` resolves to.
    ///
    /// # Errors
    /// ListOffsets errors; [`ClientError::InvalidArgument`] past `assignments_max`.
    pub async fn assign(
        &mut self,
        topic: &str,
        partition: i32,
        from: OffsetSpec,
    ) -> Result<(), ClientError> {
        if self.assignments.len() >= self.config.assignments_max {
            return Err(ClientError::InvalidArgument(format!(
                "more than assignments_max {} partitions",
                self.config.assignments_max
            )));
        }
        self.assignments.push(Assignment {
            topic: Arc::from(topic),
            partition,
            position: 0,
        });
        self.seek(topic, partition, from).await
    }

    /// Moves an assigned partition's position.
    ///
    /// # Errors
    /// ListOffsets errors; [`ClientError::InvalidArgument`] if the partition is not assigned.
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: i32,
        to: OffsetSpec,
    ) -> Result<(), ClientError> {
        let position = match to {
            OffsetSpec::Offset(o) => o,
            spec => {
                self.drain_in_flight().await?;
                let conn = self.cluster.connection().await?;
                list_offset(conn, topic, partition, spec).await?
            }
        };
        let a = self
            .assignments
            .iter_mut()
            .find(|a| &*a.topic == topic && a.partition == partition)
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!("{topic}/{partition} is not assigned"))
            })?;
        a.position = position;
        if self.in_flight.is_some() {
            self.in_flight = Some(Freshness::Stale);
        }
        Ok(())
    }

    /// The next offset `poll` will return for a partition.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.assignments
            .iter()
            .find(|a| &*a.topic == topic && a.partition == partition)
            .map(|a| a.position)
    }

    /// Waits for the next Fetch response (up to `max_wait_ms` on the broker) and returns its
    /// records; may return no records. Positions move past the returned records.
    ///
    /// # Errors
    /// Connection errors, partition errors from the broker (e.g. offset out of range).
    pub async fn poll(&mut self) -> Result<Fetched, ClientError> {
        loop {
            if self.in_flight.is_none() {
                self.send_fetch().await?;
            }
            let freshness = self.in_flight.take().expect("sent above");
            let response = self.receive().await?;
            if freshness == Freshness::Stale {
                continue;
            }
            let fetched = self.take_records(response)?;
            self.send_fetch().await?;
            return Ok(fetched);
        }
    }

    async fn drain_in_flight(&mut self) -> Result<(), ClientError> {
        if self.in_flight.take().is_some() {
            self.receive().await?;
        }
        Ok(())
    }

    async fn receive(&mut self) -> Result<FetchResponse, ClientError> {
        let conn = self.cluster.connection().await?;
        let result = match conn.receive().await {
            Ok(raw) => raw.decode::<FetchResponse>(),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.cluster.disconnect();
        }
        result
    }

    async fn send_fetch(&mut self) -> Result<(), ClientError> {
        assert!(self.in_flight.is_none());
        if self.assignments.is_empty() {
            return Err(ClientError::InvalidArgument("no partition assigned".into()));
        }
        let mut topics: Vec<FetchTopic> = Vec::new();
        for a in &self.assignments {
            let partition = FetchPartition::default()
                .with_partition(a.partition)
                .with_fetch_offset(a.position)
                .with_partition_max_bytes(self.config.partition_max_bytes);
            match topics.iter_mut().find(|t| t.topic.0.as_str() == &*a.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(a.topic.to_string())))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.config.max_wait_ms)
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.max_bytes)
            .with_topics(topics);
        let conn = self.cluster.connection().await?;
        if let Err(e) = conn
            .send(ApiKey::Fetch, FETCH_VERSION, &request, true)
            .await
        {
            self.cluster.disconnect();
            return Err(e);
        }
        self.in_flight = Some(Freshness::Current);
        Ok(())
    }

    /// Turns a response into [`Fetched`] and moves positions past the complete batches in it.
    fn take_records(&mut self, response: FetchResponse) -> Result<Fetched, ClientError> {
        ClientError::check(response.error_code, || "fetch".to_string())?;
        let mut fetched = Fetched {
            partitions: Vec::new(),
            decompressed_bytes_max: self.config.decompressed_bytes_max,
        };
        for topic in response.responses {
            for p in topic.partitions {
                let Some(a) = self.assignments.iter_mut().find(|a| {
                    &*a.topic == topic.topic.0.as_str() && a.partition == p.partition_index
                }) else {
                    continue;
                };
                ClientError::check(p.error_code, || {
                    format!("fetch {}/{} at {}", a.topic, a.partition, a.position)
                })?;
                let Some(records) = p.records else { continue };
                let start_offset = a.position;
                let mut end = a.position;
                let mut cur: &[u8] = &records;
                while let Ok(h) = BatchHeader::parse(cur) {
                    if h.total_bytes() > cur.len() {
                        break;
                    }
                    end = end.max(h.last_offset().0 + 1);
                    cur = &cur[h.total_bytes()..];
                }
                a.position = end;
                if end > start_offset {
                    fetched.partitions.push(FetchedPartition {
                        topic: Arc::clone(&a.topic),
                        partition: a.partition,
                        high_watermark: p.high_watermark,
                        start_offset,
                        records,
                    });
                }
            }
        }
        Ok(fetched)
    }
}
