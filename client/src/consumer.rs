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

use crate::admin::{list_offset_at_leader, OffsetSpec};
use crate::cluster::{AutoCreate, BrokerId, ClientConfig, Cluster};
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
/// Partitions are fetched from their leaders: one Fetch per leader broker, each naming the
/// assigned partitions that broker leads. After the first [`Consumer::poll`], one Fetch per
/// leader is always in flight: `poll` returns the first answer from any broker and sends that
/// broker its next request (from the positions after the records it returns) before handing
/// records back, so the brokers are already collecting data while the application works.
///
/// A partition whose leader moved (NOT_LEADER_OR_FOLLOWER, ...) or whose broker's connection
/// broke is fetched again after a metadata refresh (with the backoff); `retries_max` refreshes
/// in a row without a clean answer end `poll` with the last error.
#[derive(Debug)]
pub struct Consumer {
    cluster: Cluster,
    config: ConsumerConfig,
    assignments: Vec<Assignment>,
    /// The Fetches in flight (one per broker at most), and whether each answer is still
    /// wanted (a seek or assign since it was sent makes it stale).
    in_flight: Vec<(BrokerId, Freshness)>,
    /// Set by an error that says the leaders may have moved.
    needs_refresh: bool,
    /// Retriable failures since the last clean answer.
    failures: u32,
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
            in_flight: Vec::new(),
            needs_refresh: false,
            failures: 0,
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
        if self.cluster.topic(topic).is_none() {
            self.drain_in_flight().await?;
            self.cluster.partitions(topic).await?;
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
                list_offset_at_leader(&mut self.cluster, topic, partition, spec).await?
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
        for (_, freshness) in &mut self.in_flight {
            *freshness = Freshness::Stale;
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

    /// Waits for the next Fetch response from any leader (up to `max_wait_ms` on the broker)
    /// and returns its records; may return no records. Positions move past the returned
    /// records.
    ///
    /// # Errors
    /// Partition errors from the broker that a metadata refresh does not cure (e.g. offset out
    /// of range); [`ClientError::RetriesExhausted`] after `retries_max` refreshes in a row.
    pub async fn poll(&mut self) -> Result<Fetched, ClientError> {
        loop {
            self.send_fetches().await?;
            let Some((broker, received)) = self.cluster.receive_any().await else {
                // Nothing in flight: no assigned partition has a reachable leader.
                self.in_flight.clear();
                let (topic, partition) = self
                    .assignments
                    .first()
                    .map(|a| (a.topic.to_string(), a.partition))
                    .expect("send_fetches checked assignments");
                self.note_failure(ClientError::NoLeader { topic, partition })?;
                continue;
            };
            let freshness = self.take_in_flight(broker);
            let response = match received.and_then(|raw| raw.decode::<FetchResponse>()) {
                Ok(r) => r,
                Err(e) => {
                    self.cluster.disconnect(broker);
                    self.note_failure(e)?;
                    continue;
                }
            };
            if freshness == Some(Freshness::Stale) {
                continue;
            }
            let fetched = self.take_records(response)?;
            self.send_fetches().await?;
            return Ok(fetched);
        }
    }

    /// Counts a retriable failure and asks for a metadata refresh, or gives up.
    fn note_failure(&mut self, error: ClientError) -> Result<(), ClientError> {
        if !error.is_retriable() {
            return Err(error);
        }
        if self.failures >= self.config.client.retries_max {
            self.failures = 0;
            return Err(ClientError::RetriesExhausted {
                attempts: self.config.client.retries_max + 1,
                last: Box::new(error),
            });
        }
        self.failures += 1;
        self.needs_refresh = true;
        Ok(())
    }

    fn take_in_flight(&mut self, broker: BrokerId) -> Option<Freshness> {
        let i = self.in_flight.iter().position(|(b, _)| *b == broker)?;
        Some(self.in_flight.swap_remove(i).1)
    }

    async fn drain_in_flight(&mut self) -> Result<(), ClientError> {
        while !self.in_flight.is_empty() {
            let Some((broker, received)) = self.cluster.receive_any().await else {
                self.in_flight.clear();
                break;
            };
            self.take_in_flight(broker);
            if received.is_err() {
                self.cluster.disconnect(broker);
            }
        }
        Ok(())
    }

    /// Sends a Fetch to every leader of assigned partitions that has none in flight, after a
    /// metadata refresh if one is due.
    async fn send_fetches(&mut self) -> Result<(), ClientError> {
        if self.assignments.is_empty() {
            return Err(ClientError::InvalidArgument("no partition assigned".into()));
        }
        if self.needs_refresh {
            self.cluster.backoff().await;
            let mut topics: Vec<&str> = self.assignments.iter().map(|a| &*a.topic).collect();
            topics.sort_unstable();
            topics.dedup();
            let _ = self.cluster.refresh(Some(&topics), AutoCreate::Deny).await;
            self.needs_refresh = false;
        }
        // A Fetch whose connection was dropped (its broker restarted elsewhere) is not coming.
        let cluster = &self.cluster;
        self.in_flight.retain(|(b, _)| cluster.in_flight(*b) > 0);
        let mut leaders: Vec<BrokerId> = Vec::new();
        let mut leaderless = None;
        for a in &self.assignments {
            match self.cluster.leader(&a.topic, a.partition) {
                Some(b) if !leaders.contains(&b) => leaders.push(b),
                Some(_) => {}
                None => leaderless = Some((a.topic.to_string(), a.partition)),
            }
        }
        if let Some((topic, partition)) = leaderless {
            // The led partitions are still fetched; the others wait for the next refresh.
            self.note_failure(ClientError::NoLeader { topic, partition })?;
        }
        for broker in leaders {
            if self.in_flight.iter().any(|(b, _)| *b == broker) {
                continue;
            }
            let request = self.fetch_request(broker);
            let sent = match self.cluster.broker_connection(broker).await {
                Ok(conn) => {
                    conn.send(ApiKey::Fetch, FETCH_VERSION, &request, true)
                        .await
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(_) => self.in_flight.push((broker, Freshness::Current)),
                Err(e) => {
                    self.cluster.disconnect(broker);
                    self.note_failure(e)?;
                }
            }
        }
        Ok(())
    }

    /// A Fetch for the assigned partitions `broker` leads.
    fn fetch_request(&self, broker: BrokerId) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for a in &self.assignments {
            if self.cluster.leader(&a.topic, a.partition) != Some(broker) {
                continue;
            }
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
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.config.max_wait_ms)
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.max_bytes)
            .with_topics(topics)
    }

    /// Turns a response into [`Fetched`] and moves positions past the complete batches in it.
    fn take_records(&mut self, response: FetchResponse) -> Result<Fetched, ClientError> {
        ClientError::check(response.error_code, || "fetch".to_string())?;
        let mut fetched = Fetched {
            partitions: Vec::new(),
            decompressed_bytes_max: self.config.decompressed_bytes_max,
        };
        let mut retry = None;
        for topic in response.responses {
            for p in topic.partitions {
                let Some(a) = self.assignments.iter_mut().find(|a| {
                    &*a.topic == topic.topic.0.as_str() && a.partition == p.partition_index
                }) else {
                    continue;
                };
                let checked = ClientError::check(p.error_code, || {
                    format!("fetch {}/{} at {}", a.topic, a.partition, a.position)
                });
                match checked {
                    Ok(()) => {}
                    // The leader moved: fetched again from the new one after a refresh.
                    Err(e) if e.refreshes_metadata() => {
                        retry = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
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
        match retry {
            Some(e) => self.note_failure(e)?,
            None => self.failures = 0,
        }
        Ok(fetched)
    }
}
