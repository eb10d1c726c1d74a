//! Per-partition record accumulation into v2 record batches (sans-I/O).
//!
//! `spate_wire::batch::BatchBuilder` borrows its output buffer for the life of the batch, which
//! does not fit an accumulator that keeps one open batch per partition between calls; this
//! module has its own writer that owns its buffer, and checks its output with `spate_wire`'s
//! parser in tests.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use spate_wire::batch::{compute_crc, put_record, Compression, BATCH_HEADER_BYTES, MAGIC_V2};
use spate_wire::compression::compress;

use crate::error::ClientError;

/// A record header as given to the producer: key and optional value.
pub type Header<'a> = (&'a str, Option<&'a [u8]>);

/// How records are grouped into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// A batch is closed once it holds this many bytes (uncompressed); one record larger than
    /// this gets a batch of its own. Kafka's `batch.size` (default 16 KiB).
    pub batch_bytes_max: usize,
    /// A batch is closed this long after its first record even if not full. Kafka's
    /// `linger.ms`.
    pub linger_ms: u64,
    /// Codec applied to each batch when it is closed.
    pub compression: Compression,
    /// Closed batches waiting to be sent, at most; appends report [`Append::Full`] beyond it.
    pub ready_batches_max: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            batch_bytes_max: 16 * 1024,
            linger_ms: 5,
            compression: Compression::None,
            ready_batches_max: 64,
        }
    }
}

/// Upper bound on `batch_bytes_max`: Kafka's default `message.max.bytes` is 1 MiB; a batch far
/// above it would be refused by brokers.
pub const BATCH_BYTES_MAX_LIMIT: usize = 16 * 1024 * 1024;

/// Topics one accumulator holds open batches for, at most.
pub const TOPICS_MAX: usize = 1024;

/// A closed batch, ready for a Produce request.
#[derive(Debug, Clone)]
pub struct ReadyBatch {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The whole encoded batch.
    pub records: Bytes,
    /// Records in it.
    pub record_count: i32,
    /// Send attempts made so far.
    pub attempts: u32,
}

/// An idempotent producer's identity, stamped into every batch with a per-partition sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// The id from InitProducerId.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
}

/// The producer fields of one batch header.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
}

impl Stamp {
    const NONE: Stamp = Stamp {
        producer_id: -1,
        epoch: -1,
        base_sequence: -1,
    };
}

/// What [`Accumulator::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Append {
    /// The record went into an open batch.
    Appended,
    /// The record went in and its batch was closed (full).
    AppendedAndClosed,
    /// The ready queue is full: send batches first, then append again.
    Full,
}

/// An open batch: records written after a 61-byte header placeholder.
#[derive(Debug)]
struct OpenBatch {
    buf: BytesMut,
    record_count: i32,
    first_timestamp_ms: i64,
    max_timestamp_ms: i64,
    opened: Instant,
}

impl OpenBatch {
    fn new(capacity: usize, timestamp_ms: i64, now: Instant) -> OpenBatch {
        let mut buf = BytesMut::with_capacity(capacity.max(BATCH_HEADER_BYTES + 64));
        buf.put_bytes(0, BATCH_HEADER_BYTES);
        OpenBatch {
            buf,
            record_count: 0,
            first_timestamp_ms: timestamp_ms,
            max_timestamp_ms: timestamp_ms,
            opened: now,
        }
    }

    fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) {
        let timestamp_delta = timestamp_ms - self.first_timestamp_ms;
        let offset_delta = i64::from(self.record_count);
        put_record(
            &mut self.buf,
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        );
        self.record_count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
    }

    /// Writes the header (compressing the records first if asked) and returns the batch.
    fn finish(
        mut self,
        compression: Compression,
        scratch: &mut Vec<u8>,
        stamp: Stamp,
    ) -> Result<Bytes, ClientError> {
        assert!(self.record_count > 0, "a closed batch holds a record");
        if compression != Compression::None {
            compress(compression, &self.buf[BATCH_HEADER_BYTES..], scratch)?;
            self.buf.truncate(BATCH_HEADER_BYTES);
            self.buf.extend_from_slice(scratch);
        }
        let total = self.buf.len();
        let batch_length = i32::try_from(total - 12).map_err(|_| {
            ClientError::InvalidArgument(format!("batch of {total} bytes is over 2 GiB"))
        })?;
        let mut header = &mut self.buf[..BATCH_HEADER_BYTES];
        header.put_i64(0); // base offset: the broker assigns it
        header.put_i32(batch_length);
        header.put_i32(-1); // partition leader epoch
        header.put_i8(MAGIC_V2);
        header.put_u32(0); // crc, filled in below
        header.put_i16(compression.id());
        header.put_i32(self.record_count - 1);
        header.put_i64(self.first_timestamp_ms);
        header.put_i64(self.max_timestamp_ms);
        header.put_i64(stamp.producer_id);
        header.put_i16(stamp.epoch);
        header.put_i32(stamp.base_sequence);
        header.put_i32(self.record_count);
        let crc = compute_crc(&self.buf);
        self.buf[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(self.buf.freeze())
    }
}

/// A topic's name (shared by its ready batches) and its open batch per partition.
type TopicBatches = (Arc<str>, Vec<Option<OpenBatch>>);

/// Open batches per topic and partition, and the queue of closed ones.
#[derive(Debug)]
pub struct Accumulator {
    config: BatchConfig,
    /// Looked up by a linear scan: producers write to few topics, and comparing a short name
    /// costs less than hashing it on every record.
    open: Vec<TopicBatches>,
    /// Open batches per topic and partition, at most (a bound on `open`'s growth).
    topics_max: usize,
    ready: VecDeque<ReadyBatch>,
    scratch: Vec<u8>,
    /// Set for an idempotent producer: batches are stamped with it.
    identity: Option<ProducerIdentity>,
    /// Next sequence per topic and partition (idempotent producers; one lookup per batch).
    sequences: HashMap<(Arc<str>, i32), i32>,
    /// No open batch's linger runs out before this (`None`: no batch open since the last
    /// scan). A lower bound, tightened by each scan: the producer asks after every record,
    /// and comparing one `Instant` costs less than aging every open batch.
    linger_floor: Option<Instant>,
}

impl Accumulator {
    /// An empty accumulator.
    ///
    /// # Panics
    /// If `batch_bytes_max` is 0 or above [`BATCH_BYTES_MAX_LIMIT`], or `ready_batches_max` is 0.
    pub fn new(config: BatchConfig) -> Accumulator {
        assert!(config.batch_bytes_max > 0 && config.batch_bytes_max <= BATCH_BYTES_MAX_LIMIT);
        assert!(config.ready_batches_max > 0);
        Accumulator {
            config,
            open: Vec::new(),
            topics_max: TOPICS_MAX,
            ready: VecDeque::with_capacity(config.ready_batches_max),
            scratch: Vec::new(),
            identity: None,
            sequences: HashMap::new(),
            linger_floor: None,
        }
    }

    /// Makes batches closed from now on idempotent: stamped with `identity` and a sequence per
    /// partition starting at 0.
    pub fn set_identity(&mut self, identity: ProducerIdentity) {
        self.identity = Some(identity);
        self.sequences.clear();
    }

    /// The configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Whether the ready queue has room for another closed batch.
    pub fn has_room(&self) -> bool {
        self.ready.len() < self.config.ready_batches_max
    }

    /// Appends one record to the open batch of `topic`/`partition`.
    ///
    /// # Errors
    /// [`ClientError::Wire`] if compressing a closed batch fails;
    /// [`ClientError::InvalidArgument`] for a topic beyond [`TOPICS_MAX`].
    ///
    /// # Panics
    /// If `partition` is negative.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
        now: Instant,
    ) -> Result<Append, ClientError> {
        assert!(partition >= 0);
        // Closing a full batch needs room in the ready queue, so check first.
        if !self.has_room() {
            return Ok(Append::Full);
        }
        let index = partition as usize;
        let at = match self.open.iter().position(|(name, _)| &**name == topic) {
            Some(at) => at,
            None => {
                if self.open.len() >= self.topics_max {
                    return Err(ClientError::InvalidArgument(format!(
                        "more than {} topics in one producer",
                        self.topics_max
                    )));
                }
                self.open.push((Arc::from(topic), Vec::new()));
                self.open.len() - 1
            }
        };
        let slots = &mut self.open[at].1;
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        let batch_bytes_max = self.config.batch_bytes_max;
        let batch = match &mut slots[index] {
            Some(batch) => batch,
            slot @ None => {
                let deadline = now + Duration::from_millis(self.config.linger_ms);
                self.linger_floor = Some(self.linger_floor.map_or(deadline, |f| f.min(deadline)));
                slot.insert(OpenBatch::new(batch_bytes_max + 512, timestamp_ms, now))
            }
        };
        batch.push(timestamp_ms, key, value, headers);
        if batch.buf.len() >= batch_bytes_max {
            self.close(topic, partition)?;
            return Ok(Append::AppendedAndClosed);
        }
        Ok(Append::Appended)
    }

    /// Closes the open batch of `topic`/`partition`, if any, moving it to the ready queue.
    ///
    /// # Errors
    /// [`ClientError::Wire`] if compression fails.
    pub fn close(&mut self, topic: &str, partition: i32) -> Result<(), ClientError> {
        let Some((name, slots)) = self.open.iter_mut().find(|(name, _)| &**name == topic) else {
            return Ok(());
        };
        let Some(open) = slots.get_mut(partition as usize).and_then(Option::take) else {
            return Ok(());
        };
        let name = Arc::clone(name);
        let record_count = open.record_count;
        let stamp = match self.identity {
            None => Stamp::NONE,
            Some(identity) => {
                let next = self
                    .sequences
                    .entry((Arc::clone(&name), partition))
                    .or_insert(0);
                let base_sequence = *next;
                // Sequences wrap from i32::MAX to 0, as Kafka's producers number them.
                *next = ((i64::from(base_sequence) + i64::from(record_count))
                    % (i64::from(i32::MAX) + 1)) as i32;
                Stamp {
                    producer_id: identity.producer_id,
                    epoch: identity.epoch,
                    base_sequence,
                }
            }
        };
        let records = open.finish(self.config.compression, &mut self.scratch, stamp)?;
        self.ready.push_back(ReadyBatch {
            topic: name,
            partition,
            records,
            record_count,
            attempts: 0,
        });
        Ok(())
    }

    /// Closes every open batch older than `linger_ms` (all of them with [`Linger::Ignore`]).
    ///
    /// # Errors
    /// [`ClientError::Wire`] if compression fails.
    pub fn close_expired(&mut self, now: Instant, linger: Linger) -> Result<(), ClientError> {
        if linger == Linger::Honour && self.linger_floor.is_none_or(|floor| now < floor) {
            return Ok(());
        }
        let linger_time = Duration::from_millis(self.config.linger_ms);
        let mut expired: Vec<(Arc<str>, i32)> = Vec::new();
        let mut floor: Option<Instant> = None;
        for (topic, slots) in &self.open {
            for (partition, slot) in slots.iter().enumerate() {
                if let Some(open) = slot {
                    let deadline = open.opened + linger_time;
                    if linger == Linger::Ignore || now >= deadline {
                        expired.push((Arc::clone(topic), partition as i32));
                    } else {
                        floor = Some(floor.map_or(deadline, |f| f.min(deadline)));
                    }
                }
            }
        }
        self.linger_floor = floor;
        for (topic, partition) in expired {
            self.close(&topic, partition)?;
        }
        Ok(())
    }

    /// The time at which the oldest open batch's linger runs out, if any batch is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        let linger_time = Duration::from_millis(self.config.linger_ms);
        self.open
            .iter()
            .flat_map(|(_, slots)| slots.iter().flatten())
            .map(|b| b.opened + linger_time)
            .min()
    }

    /// Takes the oldest ready batch.
    pub fn pop_ready(&mut self) -> Option<ReadyBatch> {
        self.ready.pop_front()
    }

    /// The oldest ready batch, left in the queue.
    pub fn peek_ready(&self) -> Option<&ReadyBatch> {
        self.ready.front()
    }

    /// Moves the ready batches `choose` takes into `out`, in queue order; the others keep
    /// their places. `choose` sees each batch and what was taken so far, and may stop the
    /// scan. Per request, not per record: the scan is bounded by the ready queue.
    pub fn take_ready(
        &mut self,
        out: &mut Vec<ReadyBatch>,
        mut choose: impl FnMut(&ReadyBatch, &[ReadyBatch]) -> Choice,
    ) {
        let mut i = 0;
        while i < self.ready.len() {
            match choose(&self.ready[i], out) {
                Choice::Take => out.push(self.ready.remove(i).expect("index checked")),
                Choice::Skip => i += 1,
                Choice::Stop => return,
            }
        }
    }

    /// Puts a batch back at the front of the queue, for a retry. May exceed
    /// `ready_batches_max` by the batches of the requests in flight, which are themselves
    /// bounded by `in_flight_max`.
    pub fn push_front(&mut self, batch: ReadyBatch) {
        self.ready.push_front(batch);
    }

    /// Closed batches waiting.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Whether no record is waiting anywhere (open or ready).
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
            && self
                .open
                .iter()
                .all(|(_, slots)| slots.iter().all(Option::is_none))
    }
}

/// What [`Accumulator::take_ready`] does with one ready batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Move it out.
    Take,
    /// Leave it and look at the next.
    Skip,
    /// Leave it and end the scan.
    Stop,
}

/// Whether [`Accumulator::close_expired`] honours `linger_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linger {
    /// Close only batches whose linger ran out.
    Honour,
    /// Close every open batch (flush).
    Ignore,
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_wire::batch::{verify_crc, BatchHeader};
    use spate_wire::compression::DECOMPRESSED_BYTES_MAX_DEFAULT;
    use spate_wire::records::batch_records;

    fn config(batch_bytes_max: usize, compression: Compression) -> BatchConfig {
        BatchConfig {
            batch_bytes_max,
            linger_ms: 10,
            compression,
            ready_batches_max: 4,
        }
    }

    #[test]
    fn idempotent_batches_carry_the_identity_and_consecutive_sequences_per_partition() {
        let mut acc = Accumulator::new(config(1 << 20, Compression::None));
        acc.set_identity(ProducerIdentity {
            producer_id: 42,
            epoch: 3,
        });
        let now = Instant::now();
        for (partition, records) in [(0, 3), (1, 2), (0, 4)] {
            for _ in 0..records {
                acc.append("t", partition, 0, None, Some(b"v"), &[], now)
                    .unwrap();
            }
            acc.close("t", partition).unwrap();
        }
        let mut seen = Vec::new();
        while let Some(b) = acc.pop_ready() {
            let h = BatchHeader::parse(&b.records).unwrap();
            assert_eq!((h.producer_id.0, h.producer_epoch.0), (42, 3));
            verify_crc(&b.records).unwrap();
            seen.push((b.partition, h.base_sequence, h.record_count));
        }
        assert_eq!(seen, vec![(0, 0, 3), (1, 0, 2), (0, 3, 4)]);
    }

    #[test]
    fn take_ready_moves_chosen_batches_and_keeps_the_others_in_order() {
        let mut acc = Accumulator::new(BatchConfig {
            ready_batches_max: 8,
            ..config(1 << 20, Compression::None)
        });
        let now = Instant::now();
        // Ready queue: p0, p1, p2, p0 again, p3 (each closed at once).
        for partition in [0, 1, 2, 0, 3] {
            let appended = acc.append("t", partition, 0, None, Some(b"v"), &[], now);
            assert_eq!(appended.unwrap(), Append::Appended);
            acc.close("t", partition).unwrap();
        }
        assert_eq!(acc.ready_len(), 5);
        // "Led by this broker": even partitions; one batch per partition; stop at p3.
        let mut taken = Vec::new();
        acc.take_ready(&mut taken, |b, so_far| {
            if b.partition == 3 {
                Choice::Stop
            } else if b.partition % 2 == 1 || so_far.iter().any(|x| x.partition == b.partition) {
                Choice::Skip
            } else {
                Choice::Take
            }
        });
        let parts = |v: &[ReadyBatch]| v.iter().map(|b| b.partition).collect::<Vec<_>>();
        assert_eq!(parts(&taken), vec![0, 2]);
        let mut rest = Vec::new();
        while let Some(b) = acc.pop_ready() {
            rest.push(b);
        }
        assert_eq!(parts(&rest), vec![1, 0, 3]);
    }

    #[test]
    fn records_round_trip_through_spate_wire_parser() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut acc = Accumulator::new(config(1 << 20, codec));
            let now = Instant::now();
            for i in 0..10u8 {
                let value = vec![i; 100];
                let key = [b'k', i];
                let headers: &[Header<'_>] = &[("h", Some(&[i][..])), ("null", None)];
                let key = if i % 2 == 0 { Some(&key[..]) } else { None };
                let outcome = acc
                    .append(
                        "t",
                        2,
                        1_000 + i64::from(i),
                        key,
                        Some(&value),
                        headers,
                        now,
                    )
                    .unwrap();
                assert_eq!(outcome, Append::Appended);
            }
            assert!(acc.pop_ready().is_none());
            acc.close_expired(now, Linger::Ignore).unwrap();
            let ready = acc.pop_ready().unwrap();
            assert!(acc.is_empty());
            assert_eq!(
                (&*ready.topic, ready.partition, ready.record_count),
                ("t", 2, 10)
            );
            verify_crc(&ready.records).unwrap();
            let header = BatchHeader::parse(&ready.records).unwrap();
            assert_eq!(header.compression(), codec);
            assert_eq!(header.total_bytes(), ready.records.len());
            assert_eq!(header.first_timestamp_ms, 1_000);
            assert_eq!(header.max_timestamp_ms, 1_009);
            assert_eq!(header.last_offset_delta, 9);
            let mut scratch = Vec::new();
            let (_, records) =
                batch_records(&ready.records, &mut scratch, DECOMPRESSED_BYTES_MAX_DEFAULT)
                    .unwrap();
            let mut n = 0u8;
            for record in records {
                let record = record.unwrap();
                assert_eq!(record.offset_delta, i32::from(n));
                assert_eq!(record.timestamp_delta_ms, i64::from(n));
                assert_eq!(record.value, Some(&vec![n; 100][..]));
                let want_key = [b'k', n];
                assert_eq!(record.key, (n % 2 == 0).then_some(&want_key[..]));
                let headers: Vec<_> = record.headers().collect();
                assert_eq!(
                    headers,
                    vec![(&b"h"[..], Some(&[n][..])), (&b"null"[..], None)]
                );
                n += 1;
            }
            assert_eq!(n, 10, "{codec:?}");
        }
    }

    #[test]
    fn batch_closes_when_full_and_queue_reports_full() {
        let mut acc = Accumulator::new(config(1000, Compression::None));
        let now = Instant::now();
        let value = [7u8; 300];
        let mut closed = 0;
        let mut appended = 0;
        loop {
            match acc.append("t", 0, 0, None, Some(&value), &[], now).unwrap() {
                Append::Appended => appended += 1,
                Append::AppendedAndClosed => {
                    appended += 1;
                    closed += 1;
                }
                Append::Full => break,
            }
        }
        assert_eq!(closed, 4); // ready_batches_max
        assert_eq!(acc.ready_len(), 4);
        // 61 header + 3 x ~307 bytes < 1000 <= 61 + 4 x ~307: 4 records per batch.
        assert_eq!(appended, 16);
        let batch = acc.pop_ready().unwrap();
        assert_eq!(batch.record_count, 4);
        assert!(acc.has_room());
    }

    #[test]
    fn linger_closes_only_old_batches() {
        let mut acc = Accumulator::new(config(1 << 20, Compression::None));
        let t0 = Instant::now();
        acc.append("a", 0, 0, None, Some(b"x"), &[], t0).unwrap();
        let t1 = t0 + Duration::from_millis(6);
        acc.append("b", 1, 0, None, Some(b"y"), &[], t1).unwrap();
        assert_eq!(acc.next_deadline(), Some(t0 + Duration::from_millis(10)));
        acc.close_expired(t0 + Duration::from_millis(11), Linger::Honour)
            .unwrap();
        assert_eq!(acc.ready_len(), 1);
        let ready = acc.pop_ready().unwrap();
        assert_eq!((&*ready.topic, ready.partition), ("a", 0));
        assert!(!acc.is_empty());
        assert_eq!(acc.next_deadline(), Some(t1 + Duration::from_millis(10)));
    }

    #[test]
    fn linger_is_honoured_after_full_batches_closed_the_earliest_one() {
        // The first batch opens at t0 and closes full; a later one opened at t1 must still close
        // at t1 + linger, not earlier (the floor is a lower bound) and not never.
        let mut acc = Accumulator::new(config(128, Compression::None));
        let t0 = Instant::now();
        let value = [7u8; 100];
        let full = acc.append("a", 0, 0, None, Some(&value), &[], t0).unwrap();
        assert_eq!(full, Append::AppendedAndClosed);
        acc.pop_ready().unwrap();
        let t1 = t0 + Duration::from_millis(4);
        acc.append("a", 0, 0, None, Some(b"x"), &[], t1).unwrap();
        acc.close_expired(t0 + Duration::from_millis(10), Linger::Honour)
            .unwrap();
        assert_eq!(
            acc.ready_len(),
            0,
            "the open batch is 6 ms old, linger is 10"
        );
        acc.close_expired(t1 + Duration::from_millis(9), Linger::Honour)
            .unwrap();
        assert_eq!(acc.ready_len(), 0);
        acc.close_expired(t1 + Duration::from_millis(10), Linger::Honour)
            .unwrap();
        assert_eq!(acc.ready_len(), 1);
        // Nothing open: no scan finds anything, and a flush closes nothing.
        acc.close_expired(t1 + Duration::from_secs(1), Linger::Ignore)
            .unwrap();
        assert_eq!(acc.ready_len(), 1);
    }
}
