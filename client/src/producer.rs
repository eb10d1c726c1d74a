//! The producer: partitioning, batching, pipelined Produce requests, retries, delivery reports.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spate_wire::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_wire::kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId as WireProducerId, TopicName,
};
use spate_wire::kafka_protocol::protocol::StrBytes;
use spate_wire::types::Offset;

use crate::batch::{
    Accumulator, Append, BatchConfig, Choice, Header, Linger, ProducerIdentity, ReadyBatch,
};
use crate::cluster::{BrokerId, ClientConfig, Cluster};
use crate::error::ClientError;
use crate::partitioner::{partition_for_key, StickyPartitioner};
use crate::protocol::{INIT_PRODUCER_ID_VERSION, PRODUCE_VERSION};

/// How many acknowledgements the broker waits for before answering a Produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: the broker does not answer; deliveries report no offset.
    None,
    /// acks=1: the leader appended the batch.
    Leader,
    /// acks=all (-1): every in-sync replica has it (on Spate, the flush policy decides).
    All,
}

impl Acks {
    /// The value of the request's `acks` field.
    pub fn to_wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Whether the producer is idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotence {
    /// Batches carry no producer id (the default of this client).
    Off,
    /// InitProducerId at connect; every batch carries the producer id, epoch and a sequence
    /// per partition, so the broker drops retried duplicates. Needs acks=all.
    On,
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection, retries.
    pub client: ClientConfig,
    /// Acknowledgement level.
    pub acks: Acks,
    /// Batching and compression.
    pub batch: BatchConfig,
    /// The broker's wait limit for acks=all, sent in each request.
    pub request_timeout_ms: i32,
    /// Record bytes in one Produce request, at most (batches are not split).
    pub request_bytes_max: usize,
    /// Idempotent produce.
    pub idempotence: Idempotence,
}

impl ProducerConfig {
    /// Defaults (acks=all, 16 KiB batches, 5 ms linger) for talking to `client.bootstrap`.
    pub fn new(client: ClientConfig) -> ProducerConfig {
        ProducerConfig {
            client,
            acks: Acks::All,
            batch: BatchConfig::default(),
            request_timeout_ms: 30_000,
            request_bytes_max: 1024 * 1024,
            idempotence: Idempotence::Off,
        }
    }
}

/// The outcome of one batch: every record of the batch shares it.
#[derive(Debug)]
pub struct Delivery {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// Records in the batch, in the order they were sent.
    pub record_count: i32,
    /// The offset of the first record, `Ok(None)` with acks=0, or why the batch failed.
    pub result: Result<Option<Offset>, ClientError>,
}

/// Called once per batch with its outcome, in order per partition.
pub type DeliveryCallback = Box<dyn FnMut(Delivery)>;

/// A producer on the current glommio executor.
///
/// `send` appends to a per-partition batch and sends closed batches while fewer than
/// `in_flight_max` requests are waiting; it waits for responses only when that limit or the
/// ready-queue limit is reached. Nothing runs in the background: call [`Producer::poll`]
/// (or `send`/`flush`) regularly so lingering batches go out and responses are read.
///
/// Each request goes to the leader of its partitions: batches are grouped per leader, and
/// every broker's connection has up to `in_flight_max` requests waiting. Responses are read
/// oldest request first, whichever broker it went to (a slow broker delays reading the others'
/// answers, not their sending). A batch whose leader moved (NOT_LEADER_OR_FOLLOWER, ...) or
/// whose broker's connection broke is queued again and sent after a metadata refresh.
///
/// Ordering: batches of a partition are delivered in order unless a retry happens while
/// others are in flight (as in Kafka without idempotence). With [`Idempotence::On`] a retried
/// batch is never written twice, but a retry behind later in-flight batches is refused as out
/// of order: this client does not re-sequence (use one request in flight for strict order).
pub struct Producer {
    cluster: Cluster,
    config: ProducerConfig,
    acc: Accumulator,
    sticky: HashMap<String, StickyPartitioner>,
    /// Requests waiting for a response, oldest first, with the broker each went to.
    in_flight: VecDeque<InFlight>,
    on_delivery: DeliveryCallback,
    needs_refresh: bool,
    /// The last topic sent to and its partition count: skips the metadata map's hashing for
    /// the common case of one topic.
    last_topic: Option<(Arc<str>, i32)>,
    clock: Clock,
}

/// Record timestamps from one `Instant::now` per record: wall-clock time is read once a second
/// and advanced with the monotonic clock in between (clock reads were a fifth of the
/// producer's CPU time with two reads per record).
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: Instant,
    base_ms: i64,
    /// The timestamp of readings before `next_ms_at`: a record per few hundred nanoseconds
    /// shares a millisecond, so most records cost one `Instant` comparison.
    ms: i64,
    next_ms_at: Instant,
}

impl Clock {
    const REBASE_INTERVAL: Duration = Duration::from_secs(1);

    fn new() -> Clock {
        let base = Instant::now();
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Clock {
            base,
            base_ms,
            ms: base_ms,
            next_ms_at: base + Duration::from_millis(1),
        }
    }

    fn timestamp_ms(&mut self, now: Instant) -> i64 {
        // A reading older than `base` (a caller's stale one) takes the current millisecond.
        if now < self.next_ms_at {
            return self.ms;
        }
        let since = now.saturating_duration_since(self.base);
        if since >= Self::REBASE_INTERVAL {
            *self = Clock::new();
            return self.base_ms;
        }
        let since_ms = since.as_millis() as u64;
        self.ms = self.base_ms + since_ms as i64;
        self.next_ms_at = self.base + Duration::from_millis(since_ms + 1);
        self.ms
    }
}

/// One Produce request waiting for its response.
#[derive(Debug)]
struct InFlight {
    broker: BrokerId,
    batches: Vec<ReadyBatch>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.config)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects; `on_delivery` gets every batch's outcome.
    ///
    /// # Errors
    /// [`ClientError::Io`] if the broker cannot be reached.
    pub async fn connect(
        config: ProducerConfig,
        on_delivery: DeliveryCallback,
    ) -> Result<Producer, ClientError> {
        let mut cluster = Cluster::connect(config.client.clone()).await?;
        let mut acc = Accumulator::new(config.batch);
        if config.idempotence == Idempotence::On {
            if config.acks != Acks::All {
                return Err(ClientError::InvalidArgument(
                    "idempotence needs acks=all".to_owned(),
                ));
            }
            acc.set_identity(init_producer_id(&mut cluster).await?);
        }
        Ok(Producer {
            cluster,
            acc,
            config,
            sticky: HashMap::new(),
            in_flight: VecDeque::new(),
            on_delivery,
            needs_refresh: false,
            last_topic: None,
            clock: Clock::new(),
        })
    }

    /// Queues one record (timestamped now) for `topic`; keyed records go to the key's murmur2
    /// partition, others to the sticky partition.
    ///
    /// # Errors
    /// Metadata errors for an unknown topic; connection errors while waiting for room.
    pub async fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<(), ClientError> {
        let partitions = self.partitions(topic).await?;
        let partition = match key {
            Some(k) => partition_for_key(k, partitions),
            None => self.sticky_partition(topic, partitions),
        };
        self.send_to(topic, partition, key, value, headers).await
    }

    /// Queues one record for an explicit partition.
    ///
    /// # Errors
    /// As [`Producer::send`]; [`ClientError::InvalidArgument`] for a partition the topic does
    /// not have.
    pub async fn send_to(
        &mut self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<(), ClientError> {
        self.send_to_at(Instant::now(), topic, partition, key, value, headers)
            .await
    }

    /// As [`Producer::send_to`], with the caller's clock reading `now` instead of a read per
    /// record (a clock read was a tenth of a load generator's CPU at 3M records/s). `now` dates
    /// the record's timestamp and ages lingering batches, so it must be recent: a reading
    /// taken before a wait gives the record a timestamp that much older and lets its batch
    /// linger that much longer.
    ///
    /// # Errors
    /// As [`Producer::send_to`].
    pub async fn send_to_at(
        &mut self,
        mut now: Instant,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<(), ClientError> {
        let partitions = self.partitions(topic).await?;
        if !(0..partitions).contains(&partition) {
            return Err(ClientError::InvalidArgument(format!(
                "partition {partition} of {topic} (it has {partitions})"
            )));
        }
        let timestamp_ms = self.clock.timestamp_ms(now);
        loop {
            match self
                .acc
                .append(topic, partition, timestamp_ms, key, value, headers, now)?
            {
                Append::Full => {
                    self.make_room().await?;
                    now = Instant::now();
                }
                Append::Appended => break,
                Append::AppendedAndClosed => {
                    if key.is_none() {
                        if let Some(s) = self.sticky.get_mut(topic) {
                            s.advance(partitions);
                        }
                    }
                    break;
                }
            }
        }
        self.dispatch(now).await
    }

    async fn partitions(&mut self, topic: &str) -> Result<i32, ClientError> {
        if let Some((name, n)) = &self.last_topic {
            if &**name == topic {
                return Ok(*n);
            }
        }
        if self.cluster.topic(topic).is_none() {
            // The Metadata request needs the connection idle.
            while !self.in_flight.is_empty() {
                self.receive_one(None).await?;
            }
        }
        let n = self.cluster.partitions(topic).await?;
        self.last_topic = Some((Arc::from(topic), n));
        Ok(n)
    }

    fn sticky_partition(&mut self, topic: &str, partitions: i32) -> i32 {
        if let Some(s) = self.sticky.get_mut(topic) {
            return s.partition(partitions);
        }
        self.sticky
            .entry(topic.to_string())
            .or_default()
            .partition(partitions)
    }

    /// Sends lingering batches and handles responses until `wait` has passed or nothing is in
    /// flight.
    ///
    /// # Errors
    /// Connection errors that retries could not hide.
    pub async fn poll(&mut self, wait: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + wait;
        loop {
            self.dispatch(Instant::now()).await?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            // While the connection is full, lingering batches wait for a response anyway.
            let linger_end = self
                .has_send_room()
                .then(|| self.acc.next_deadline())
                .flatten();
            let until = linger_end.map_or(deadline, |t| t.clamp(now, deadline));
            if self.in_flight.is_empty() {
                glommio::timer::sleep(until - now).await;
                continue;
            }
            self.receive_one(Some(until - now)).await?;
        }
    }

    /// Sends every open batch and waits for all responses.
    ///
    /// # Errors
    /// Connection errors that retries could not hide.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.acc.close_expired(Instant::now(), Linger::Ignore)?;
        while !self.acc.is_empty() || !self.in_flight.is_empty() {
            self.dispatch(Instant::now()).await?;
            if !self.in_flight.is_empty() {
                self.receive_one(None).await?;
            }
            self.acc.close_expired(Instant::now(), Linger::Ignore)?;
        }
        Ok(())
    }

    /// Requests waiting for a response.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    async fn make_room(&mut self) -> Result<(), ClientError> {
        self.dispatch(Instant::now()).await?;
        if !self.acc.has_room() {
            assert!(
                !self.in_flight.is_empty(),
                "ready queue full with nothing in flight"
            );
            self.receive_one(None).await?;
        }
        Ok(())
    }

    /// Whether another Produce request may go out now to some broker (`in_flight_max` per
    /// broker connection).
    fn has_send_room(&self) -> bool {
        self.in_flight.len()
            < self.config.client.connection.in_flight_max * self.cluster.broker_count()
    }

    /// Sends ready batches, waiting for responses while the connection is full. Batches still
    /// lingering are closed only when a request slot is free, so they keep filling while the
    /// broker is busy (Kafka's `linger.ms` works the same way).
    ///
    /// `now` is the caller's clock reading: `send_to` dispatches after every record, and a
    /// clock read per record here was a sixth of the bench's CPU time at 2M records/s. It is
    /// read again after every wait.
    async fn dispatch(&mut self, mut now: Instant) -> Result<(), ClientError> {
        loop {
            // A refresh is due: first read the answers to the requests in flight (their batches
            // may need the retry too, and a refresh may replace a broker's connection, which
            // must then have nothing in flight), then refresh, then send.
            if self.needs_refresh && self.acc.ready_len() > 0 && !self.in_flight.is_empty() {
                self.receive_one(None).await?;
                now = Instant::now();
                continue;
            }
            if self.needs_refresh && self.acc.ready_len() > 0 {
                self.cluster.backoff().await;
                let _ = self
                    .cluster
                    .refresh(None, crate::cluster::AutoCreate::Deny)
                    .await;
                self.needs_refresh = false;
                self.last_topic = None;
                now = Instant::now();
            }
            if self.acc.ready_len() == 0 && self.has_send_room() {
                self.acc.close_expired(now, Linger::Honour)?;
            }
            let Some(front) = self.acc.peek_ready() else {
                return Ok(());
            };
            let Some(broker) = self.cluster.leader(&front.topic, front.partition) else {
                self.no_leader_for_front()?;
                now = Instant::now();
                continue;
            };
            if self.cluster.in_flight(broker) >= self.config.client.connection.in_flight_max {
                self.receive_one(None).await?;
                now = Instant::now();
                continue;
            }
            let batches = self.take_request_batches(broker);
            if let Err(e) = self.cluster.broker_connection(broker).await {
                self.in_flight.push_back(InFlight { broker, batches });
                self.fail_broker(broker, e).await?;
                continue;
            }
            let request = build_request(&batches, self.config.acks, self.config.request_timeout_ms);
            let expect_response = self.config.acks != Acks::None;
            let conn = self.cluster.broker_connection(broker).await?;
            match conn
                .send(ApiKey::Produce, PRODUCE_VERSION, &request, expect_response)
                .await
            {
                Ok(_) if expect_response => self.in_flight.push_back(InFlight { broker, batches }),
                Ok(_) => {
                    for b in batches {
                        (self.on_delivery)(Delivery {
                            topic: b.topic,
                            partition: b.partition,
                            record_count: b.record_count,
                            result: Ok(None),
                        });
                    }
                }
                Err(e) => {
                    self.in_flight.push_back(InFlight { broker, batches });
                    self.fail_broker(broker, e).await?;
                }
            }
        }
    }

    /// The oldest ready batch's partition has no known leader: count an attempt and refresh
    /// metadata (after the requests in flight are answered), or fail the batch when out of
    /// retries.
    fn no_leader_for_front(&mut self) -> Result<(), ClientError> {
        let mut batch = self.acc.pop_ready().expect("a ready batch was peeked");
        if batch.attempts < self.config.client.retries_max {
            batch.attempts += 1;
            self.acc.push_front(batch);
            self.needs_refresh = true;
            return Ok(());
        }
        let last = ClientError::NoLeader {
            topic: batch.topic.to_string(),
            partition: batch.partition,
        };
        (self.on_delivery)(Delivery {
            topic: batch.topic,
            partition: batch.partition,
            record_count: batch.record_count,
            result: Err(ClientError::RetriesExhausted {
                attempts: batch.attempts + 1,
                last: Box::new(last),
            }),
        });
        Ok(())
    }

    /// Ready batches led by `broker` for one request: up to `request_bytes_max`, one batch
    /// per partition (a request names each partition once), in queue order; batches of other
    /// leaders keep their places.
    fn take_request_batches(&mut self, broker: BrokerId) -> Vec<ReadyBatch> {
        let mut batches: Vec<ReadyBatch> = Vec::new();
        let mut bytes = 0;
        let cluster = &self.cluster;
        let request_bytes_max = self.config.request_bytes_max;
        self.acc.take_ready(&mut batches, |b, taken| {
            if cluster.leader(&b.topic, b.partition) != Some(broker) {
                return Choice::Skip;
            }
            if taken
                .iter()
                .any(|x| x.partition == b.partition && x.topic == b.topic)
            {
                return Choice::Skip;
            }
            if !taken.is_empty() && bytes + b.records.len() > request_bytes_max {
                return Choice::Stop;
            }
            bytes += b.records.len();
            Choice::Take
        });
        assert!(!batches.is_empty(), "the peeked batch is led by the broker");
        batches
    }

    /// Reads the response to the oldest request in flight (waiting at most `wait`, if given)
    /// and delivers its batches.
    async fn receive_one(&mut self, wait: Option<Duration>) -> Result<(), ClientError> {
        let broker = self.in_flight.front().expect("a request in flight").broker;
        let Some(conn) = self.cluster.open_connection(broker) else {
            let closed = ClientError::Closed {
                addr: format!("broker {}", broker.0),
                in_flight: 0,
            };
            return self.fail_broker(broker, closed).await;
        };
        let received = match wait {
            None => conn.receive().await.map(Some),
            Some(d) => {
                futures_lite::future::or(async { conn.receive().await.map(Some) }, async {
                    glommio::timer::sleep(d).await;
                    Ok(None)
                })
                .await
            }
        };
        let response = match received {
            Ok(Some(raw)) => raw.decode::<ProduceResponse>(),
            Ok(None) => return Ok(()),
            Err(e) => Err(e),
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return self.fail_broker(broker, e).await,
        };
        let request = self
            .in_flight
            .pop_front()
            .expect("a response matches a request");
        for mut batch in request.batches {
            let result = partition_result(&response, &batch);
            match result {
                Err(e) if e.is_retriable() && batch.attempts < self.config.client.retries_max => {
                    batch.attempts += 1;
                    self.needs_refresh = true;
                    self.acc.push_front(batch);
                }
                result => (self.on_delivery)(Delivery {
                    topic: batch.topic,
                    partition: batch.partition,
                    record_count: batch.record_count,
                    result,
                }),
            }
        }
        Ok(())
    }

    /// After a connection or protocol error with `broker`: drop its connection and queue
    /// every batch in flight to it again (or fail it when out of retries). Requests to other
    /// brokers stay in flight.
    async fn fail_broker(
        &mut self,
        broker: BrokerId,
        error: ClientError,
    ) -> Result<(), ClientError> {
        self.cluster.disconnect(broker);
        let retriable = error.is_retriable();
        let mut gave_up = false;
        let mut others: VecDeque<InFlight> = VecDeque::with_capacity(self.in_flight.len());
        while let Some(request) = self.in_flight.pop_back() {
            if request.broker != broker {
                others.push_front(request);
                continue;
            }
            for mut batch in request.batches.into_iter().rev() {
                if retriable && batch.attempts < self.config.client.retries_max {
                    batch.attempts += 1;
                    self.acc.push_front(batch);
                } else {
                    gave_up = true;
                    (self.on_delivery)(Delivery {
                        topic: batch.topic,
                        partition: batch.partition,
                        record_count: batch.record_count,
                        result: Err(ClientError::RetriesExhausted {
                            attempts: batch.attempts + 1,
                            last: Box::new(ClientError::InvalidArgument(error.to_string())),
                        }),
                    });
                }
            }
        }
        self.in_flight = others;
        if !retriable || gave_up {
            return Err(error);
        }
        self.needs_refresh = true;
        Ok(())
    }
}

fn build_request(batches: &[ReadyBatch], acks: Acks, timeout_ms: i32) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for b in batches {
        let data = PartitionProduceData::default()
            .with_index(b.partition)
            .with_records(Some(b.records.clone()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == &*b.topic) {
            Some(t) => t.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(b.topic.to_string())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default()
        .with_acks(acks.to_wire())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics)
}

fn partition_result(
    response: &ProduceResponse,
    batch: &ReadyBatch,
) -> Result<Option<Offset>, ClientError> {
    let found = response
        .responses
        .iter()
        .filter(|t| t.name.0.as_str() == &*batch.topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == batch.partition);
    let Some(p) = found else {
        return Err(ClientError::InvalidArgument(format!(
            "produce response has no entry for {}/{}",
            batch.topic, batch.partition
        )));
    };
    ClientError::check(p.error_code, || {
        format!("produce to {}/{}", batch.topic, batch.partition)
    })?;
    Ok(Some(Offset(p.base_offset)))
}

/// Asks the broker for a producer id (no transactional id).
async fn init_producer_id(cluster: &mut Cluster) -> Result<ProducerIdentity, ClientError> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(WireProducerId(-1))
        .with_producer_epoch(-1);
    let conn = cluster.connection().await?;
    let response: InitProducerIdResponse = conn
        .call(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION, &request)
        .await?;
    ClientError::check(response.error_code, || "InitProducerId".to_owned())?;
    Ok(ProducerIdentity {
        producer_id: response.producer_id.0,
        epoch: response.producer_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_follows_wall_time_and_rebases() {
        let mut clock = Clock::new();
        let wall = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        };
        let start = clock.base;
        let t0 = clock.timestamp_ms(start);
        assert!((t0 - wall()).abs() <= 5, "{t0} vs {}", wall());
        let t1 = clock.timestamp_ms(start + Duration::from_millis(250));
        assert_eq!(t1 - t0, 250);
        // Within the same millisecond, and a reading from before it (a stale one): the same.
        let within = start + Duration::from_micros(250_900);
        assert_eq!(clock.timestamp_ms(within), t1);
        assert_eq!(clock.timestamp_ms(start), t1);
        assert_eq!(
            clock.timestamp_ms(start + Duration::from_millis(251)),
            t1 + 1
        );
        // Past the rebase interval the wall clock is read again.
        let later = start + Clock::REBASE_INTERVAL + Duration::from_millis(1);
        let t2 = clock.timestamp_ms(later);
        assert!((t2 - wall()).abs() <= 5);
        assert!(clock.base >= start);
    }

    #[test]
    fn acks_map_to_kafka_values() {
        assert_eq!(Acks::None.to_wire(), 0);
        assert_eq!(Acks::Leader.to_wire(), 1);
        assert_eq!(Acks::All.to_wire(), -1);
    }
}
