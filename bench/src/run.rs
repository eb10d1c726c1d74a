//! The load generator: producer tasks (`--producers`, each with its own connections and its
//! share of the partitions), an optional consumer task and a progress task on one glommio
//! executor (pin it with `--cpu`). Setup (topic creation, leaders, ListOffsets) retries
//! retriable broker errors with a backoff, so it works against a broker whose new topic's
//! leaders take a moment to be ready.
//!
//! Open loop (`--rate N`): record `i` is due at `start + i / N`; its latencies are measured
//! from that intended time, so a stall that delays later sends shows up in their latency
//! instead of being hidden (coordinated omission). Closed loop (`--rate 0`): send as fast as
//! batching and `in_flight_max` allow; latency is measured from the actual send call.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::bail;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use spate_client::{
    Acks, Admin, ClientConfig, ClientError, Compression, Consumer, ConsumerConfig, Delivery,
    Idempotence, NewTopic, OffsetSpec, Producer, ProducerConfig,
};
use spate_wire::ErrorCode;

use crate::report::{self, hgrm, LatencySummary, LossCheck, Summary};

/// Bytes at the start of each value: intended send time (ns since start) and sequence number.
pub const VALUE_HEADER_BYTES: usize = 16;

/// The open loop's shortest wait for the next due record.
const SEND_WAIT_NS_MIN: u64 = 50_000;

/// Records the open loop sends on one clock reading, at most: bounds how stale a record's
/// timestamp, its batch's linger and the send-lag lower bound get in a burst of records that
/// were all due (after a wait for the request window, say).
const CLOCK_READING_RECORDS_MAX: u64 = 64;

/// Options of `spate-bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Broker address: any broker of a cluster (partitions led by other brokers are produced
    /// to and fetched from their leaders).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: std::net::SocketAddr,
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "spate-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Value bytes per record (at least 16: send time and sequence number).
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Target records per second (open loop); 0 = as fast as possible (closed loop).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: String,
    /// Idempotent producer (InitProducerId, producer id and sequences in every batch); needs
    /// --acks all.
    #[arg(long)]
    pub idempotence: bool,
    /// Batch size (bytes, uncompressed).
    #[arg(long, default_value_t = 64 * 1024)]
    pub batch_bytes: usize,
    /// Linger before a non-full batch is sent (ms).
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u64,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Produce requests in flight per broker, at most.
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
    /// Producers, each with its own connections, sending to its share of the partitions
    /// (partition `p` goes to producer `p % producers`) at its share of `--rate`: a run over
    /// many partitions is then not limited by one connection. At most `--partitions`.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Seconds setup may spend retrying retriable broker errors (a topic created a moment ago
    /// whose leader is not ready yet answers NOT_LEADER_OR_FOLLOWER for a while on Kafka),
    /// with a backoff that doubles up to a second, as clients do.
    #[arg(long, default_value_t = 60.0)]
    pub setup_timeout_s: f64,
    /// Consumers verifying and timing every record (0 or 1).
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Bytes per partition in one Fetch response of the consumer, at most (Kafka's
    /// `max.partition.fetch.bytes`, 1 MiB). The consumer shares the bench's core with the
    /// producer and reads one response per turn, so a closed-loop run needs larger fetches for
    /// the consumer to keep up with large records.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub fetch_partition_bytes: i32,
    /// Pin the bench's executor to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Write the JSON summary (with the full latency distributions `plot` draws) to this file;
    /// `-` writes it to stdout and moves the human summary to stderr.
    #[arg(long, value_name = "PATH")]
    pub json: Option<std::path::PathBuf>,
    /// A name for the run, stored in the JSON summary; `plot` and `compare` show it.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// Write `<prefix>-ack.hgrm` and `<prefix>-e2e.hgrm`.
    #[arg(long)]
    pub hgrm_prefix: Option<String>,
    /// Seconds the consumer may take to catch up after sending stops.
    #[arg(long, default_value_t = 10.0)]
    pub drain_timeout_s: f64,
    /// Locked memory glommio registers for I/O (KiB); small because a broker may share the
    /// machine's RLIMIT_MEMLOCK.
    #[arg(long, default_value_t = 512)]
    pub io_memory_kib: usize,
    /// Microseconds the bench's executor spins before it sleeps when it has nothing to do
    /// (glommio's `spin_before_park`): saves a sleep and wake-up (a context switch and a timer
    /// interrupt) per short idle gap, at the price of a busy core. 0 = sleep at once.
    #[arg(long, default_value_t = 0)]
    pub spin_before_park_us: u64,
    /// No progress line each second (the summary at the end is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Also measure raw sequential O_DIRECT write bandwidth in this directory (put it on the
    /// broker's data disk) right before and right after the run, and report the produce rate
    /// as a fraction of it.
    #[arg(long)]
    pub raw_disk_dir: Option<std::path::PathBuf>,
    /// MiB written by each raw disk measurement.
    #[arg(long, default_value_t = 1024)]
    pub raw_disk_mib: u64,
}

fn parse_acks(s: &str) -> anyhow::Result<Acks> {
    Ok(match s {
        "0" => Acks::None,
        "1" => Acks::Leader,
        "all" | "-1" => Acks::All,
        other => bail!("acks must be 0, 1 or all, not {other}"),
    })
}

fn parse_compression(s: &str) -> anyhow::Result<Compression> {
    Ok(match s {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("unknown compression {other}"),
    })
}

/// Everything the tasks share (one executor: `RefCell`, never borrowed across an await).
struct State {
    start: Instant,
    sending_done: bool,
    all_done: bool,
    sent: u64,
    acked: u64,
    failed: u64,
    /// Intended send times (ns since start) of records not yet acknowledged, per partition.
    pending: Vec<VecDeque<u64>>,
    ack: Histogram<u64>,
    e2e: Histogram<u64>,
    send_lag: Histogram<u64>,
    send_end: Duration,
    consumed: u64,
    last_consumed_at: Duration,
    seen: Vec<u64>,
    duplicates: u64,
    out_of_order: u64,
    last_seq: Vec<Option<u64>>,
}

impl State {
    fn on_delivery(&mut self, d: Delivery) {
        let now_ns = self.start.elapsed().as_nanos() as u64;
        let n = d.record_count as usize;
        let queue = &mut self.pending[d.partition as usize];
        assert!(queue.len() >= n, "delivery for records never sent");
        let ok = d.result.is_ok();
        for intended in queue.drain(..n) {
            if ok {
                self.ack
                    .saturating_record(now_ns.saturating_sub(intended).max(1));
            }
        }
        if ok {
            self.acked += n as u64;
        } else {
            self.failed += n as u64;
        }
    }

    fn on_record(&mut self, partition: i32, value: &[u8]) {
        let now_ns = self.start.elapsed().as_nanos() as u64;
        if value.len() < VALUE_HEADER_BYTES {
            return;
        }
        let intended = u64::from_le_bytes(value[0..8].try_into().expect("8 bytes"));
        let seq = u64::from_le_bytes(value[8..16].try_into().expect("8 bytes"));
        self.e2e
            .saturating_record(now_ns.saturating_sub(intended).max(1));
        let word = (seq / 64) as usize;
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
        } else {
            self.seen[word] |= bit;
            self.consumed += 1;
        }
        let last = &mut self.last_seq[partition as usize];
        if last.is_some_and(|l| l >= seq) {
            self.out_of_order += 1;
        }
        *last = Some(seq);
        self.last_consumed_at = self.start.elapsed();
    }
}

/// Runs the benchmark and returns its summary.
///
/// # Errors
/// Bad options, or a client error that retries did not hide.
pub fn run(args: RunArgs, command_line: String) -> anyhow::Result<Summary> {
    if args.message_bytes < VALUE_HEADER_BYTES {
        bail!("--message-bytes must be at least {VALUE_HEADER_BYTES}");
    }
    if args.partitions < 1 || args.consumers > 1 {
        bail!("--partitions must be positive and --consumers 0 or 1");
    }
    if args.producers < 1 || args.producers > args.partitions as usize {
        bail!("--producers must be between 1 and --partitions");
    }
    let acks = parse_acks(&args.acks)?;
    let compression = parse_compression(&args.compression)?;
    let placement = match args.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    let raw_disk = args.raw_disk_dir.clone();
    let raw_bytes = args.raw_disk_mib << 20;
    let (cpu, io_memory_bytes) = (args.cpu, args.io_memory_kib << 10);
    let before_mb_s = match &raw_disk {
        Some(dir) => Some(crate::disk::measure(dir, raw_bytes, cpu, io_memory_bytes)?),
        None => None,
    };
    let mut builder = LocalExecutorBuilder::new(placement)
        .name("spate-bench")
        .io_memory(io_memory_bytes);
    if args.spin_before_park_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(args.spin_before_park_us));
    }
    let executor = builder
        .spawn(move || async move { run_on_executor(args, acks, compression, command_line).await })
        .map_err(|e| anyhow::anyhow!("starting the glommio executor: {e}"))?;
    let mut summary = executor
        .join()
        .map_err(|e| anyhow::anyhow!("executor failed: {e}"))??;
    if let (Some(dir), Some(before_mb_s)) = (raw_disk, before_mb_s) {
        let after_mb_s = crate::disk::measure(&dir, raw_bytes, cpu, io_memory_bytes)?;
        summary.raw_disk = Some(crate::disk::RawDisk {
            dir: dir.display().to_string(),
            bytes: raw_bytes,
            before_mb_s,
            after_mb_s,
            produce_ratio: summary.produce_mb_s / ((before_mb_s + after_mb_s) / 2.0),
        });
    }
    Ok(summary)
}

/// First pause before a setup step is retried; it doubles up to `SETUP_BACKOFF_MAX`.
const SETUP_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between two attempts of a setup step.
const SETUP_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Whether a setup call may succeed if tried again later: a retriable Kafka error (the
/// client's own retries may have given up on it already, after half a second).
fn retriable(e: &ClientError) -> bool {
    match e {
        ClientError::RetriesExhausted { last, .. } => retriable(last),
        e => e.is_retriable(),
    }
}

/// Retries `step` while it fails with a retriable error, with a doubling backoff, until
/// `deadline`; returns its first success or its last error.
async fn retry_setup<T>(
    deadline: Instant,
    what: &str,
    mut step: impl AsyncFnMut() -> Result<T, ClientError>,
) -> anyhow::Result<T> {
    let mut backoff = SETUP_BACKOFF_MIN;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match step().await {
            Ok(value) => return Ok(value),
            Err(e) if retriable(&e) && Instant::now() + backoff < deadline => {
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(SETUP_BACKOFF_MAX);
            }
            Err(e) => bail!("{what}: {e} (after {attempts} attempts)"),
        }
    }
}

/// The partition count of `topic` once every partition has a leader, as every broker of the
/// cluster sees it: a broker whose metadata has not caught up would refuse the first batches
/// sent to it, and a retried batch may land after later ones of its partition.
async fn wait_for_leaders(
    admin: &mut Admin,
    topic: &str,
    deadline: Instant,
) -> anyhow::Result<i32> {
    loop {
        let metadata = retry_setup(deadline, "metadata", async || {
            admin.metadata(Some(&[topic])).await
        })
        .await?;
        let partitions = metadata
            .topics
            .first()
            .map_or(&[][..], |t| &t.partitions[..]);
        let led = partitions.iter().filter(|p| p.leader_id.0 >= 0).count();
        if !partitions.is_empty()
            && led == partitions.len()
            && every_broker_sees(&metadata, topic, partitions.len()).await
        {
            return Ok(partitions.len() as i32);
        }
        if Instant::now() > deadline {
            bail!(
                "topic {topic}: {led} of {} partitions have a leader after the setup timeout",
                partitions.len()
            );
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether each broker listed in `metadata` lists `topic` with `count` led partitions.
async fn every_broker_sees(
    metadata: &spate_wire::kafka_protocol::messages::MetadataResponse,
    topic: &str,
    count: usize,
) -> bool {
    use std::net::ToSocketAddrs;
    for broker in &metadata.brokers {
        let Some(addr) = format!("{}:{}", broker.host.as_str(), broker.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
        else {
            return false;
        };
        let Ok(mut there) = Admin::connect(ClientConfig::new(addr)).await else {
            return false;
        };
        let Ok(seen) = there.metadata(Some(&[topic])).await else {
            return false;
        };
        let led = seen.topics.first().map_or(0, |t| {
            t.partitions.iter().filter(|p| p.leader_id.0 >= 0).count()
        });
        if led != count {
            return false;
        }
    }
    true
}

async fn run_on_executor(
    args: RunArgs,
    acks: Acks,
    compression: Compression,
    command_line: String,
) -> anyhow::Result<Summary> {
    let client = ClientConfig::new(args.bootstrap);
    let deadline = Instant::now() + Duration::from_secs_f64(args.setup_timeout_s);
    let mut admin = retry_setup(deadline, "connecting", async || {
        Admin::connect(client.clone()).await
    })
    .await?;
    let created = retry_setup(deadline, "creating the topic", async || {
        admin
            .create_topics(&[NewTopic::new(&args.topic, args.partitions)])
            .await
    })
    .await?;
    match &created[0] {
        Ok(()) => {}
        Err(ClientError::Broker {
            code: ErrorCode::TopicAlreadyExists,
            ..
        }) => {}
        Err(e) => bail!("creating {}: {e}", args.topic),
    }
    let partitions = wait_for_leaders(&mut admin, &args.topic, deadline).await?;
    if args.producers > partitions as usize {
        bail!(
            "--producers {} above the topic's {partitions} partitions",
            args.producers
        );
    }

    let state = Rc::new(RefCell::new(State {
        start: Instant::now(),
        sending_done: false,
        all_done: false,
        sent: 0,
        acked: 0,
        failed: 0,
        pending: vec![VecDeque::new(); partitions as usize],
        ack: report::histogram(),
        e2e: report::histogram(),
        send_lag: report::histogram(),
        send_end: Duration::ZERO,
        consumed: 0,
        last_consumed_at: Duration::ZERO,
        seen: Vec::new(),
        duplicates: 0,
        out_of_order: 0,
        last_seq: vec![None; partitions as usize],
    }));

    let mut consumer = None;
    if args.consumers == 1 {
        let mut config = ConsumerConfig::new(client.clone());
        config.max_wait_ms = 100;
        config.partition_max_bytes = args.fetch_partition_bytes;
        config.max_bytes = config.max_bytes.max(args.fetch_partition_bytes);
        let mut c = retry_setup(deadline, "connecting the consumer", async || {
            Consumer::connect(config.clone()).await
        })
        .await?;
        for p in 0..partitions {
            // ListOffsets at the leader: a leader that is not ready yet answers
            // NOT_LEADER_OR_FOLLOWER, retried like a client would. `assign` adds the
            // partition before it looks the offset up, so a retry only seeks.
            retry_setup(deadline, "listing offsets", async || {
                if c.position(&args.topic, p).is_some() {
                    c.seek(&args.topic, p, OffsetSpec::Latest).await
                } else {
                    c.assign(&args.topic, p, OffsetSpec::Latest).await
                }
            })
            .await?;
        }
        consumer = Some(c);
    }

    let mut producers = Vec::with_capacity(args.producers);
    for _ in 0..args.producers {
        let mut config = ProducerConfig::new(client.clone());
        config.acks = acks;
        if args.idempotence {
            config.idempotence = Idempotence::On;
        }
        config.batch.batch_bytes_max = args.batch_bytes;
        config.batch.linger_ms = args.linger_ms;
        config.batch.compression = compression;
        config.client.connection.in_flight_max = args.in_flight;
        let producer = retry_setup(deadline, "connecting a producer", async || {
            let sink = Rc::clone(&state);
            Producer::connect(
                config.clone(),
                Box::new(move |d| sink.borrow_mut().on_delivery(d)),
            )
            .await
        })
        .await?;
        producers.push(producer);
    }

    state.borrow_mut().start = Instant::now();
    let progress = (!args.quiet).then(|| {
        let s = Rc::clone(&state);
        let bytes = args.message_bytes;
        glommio::spawn_local(async move { progress(s, bytes).await }).detach()
    });
    let consumer_task = consumer.map(|c| {
        let s = Rc::clone(&state);
        let drain = Duration::from_secs_f64(args.drain_timeout_s);
        glommio::spawn_local(async move { consume(c, s, drain).await })
    });
    let share = Share {
        count: args.producers,
        partitions,
    };
    let tasks: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(index, producer)| {
            let (state, args) = (Rc::clone(&state), args.clone());
            glommio::spawn_local(async move { produce(producer, state, &args, share, index).await })
        })
        .collect();
    let mut produce_result = Ok(());
    for task in tasks {
        let result = task.await;
        if produce_result.is_ok() {
            produce_result = result;
        }
    }
    state.borrow_mut().sending_done = true;
    if let Some(task) = consumer_task {
        task.await?;
    }
    state.borrow_mut().all_done = true;
    // The progress task sees `all_done` within a second; the executor drops it when this
    // future returns.
    drop(progress);
    produce_result?;

    let s = state.borrow();
    let send_s = s.send_end.as_secs_f64().max(1e-9);
    let consume_s = s.last_consumed_at.as_secs_f64().max(1e-9);
    let mb = |n: u64| (n as f64) * args.message_bytes as f64 / 1e6;
    let expected = if acks == Acks::None { s.sent } else { s.acked };
    let loss = LossCheck {
        ran: args.consumers == 1,
        expected,
        received: s.consumed,
        missing: if args.consumers == 1 {
            expected.saturating_sub(s.consumed)
        } else {
            0
        },
        duplicates: s.duplicates,
        out_of_order: s.out_of_order,
        ok: args.consumers == 1
            && s.consumed == expected
            && s.duplicates == 0
            && s.out_of_order == 0
            && s.failed == 0,
    };
    let summary = Summary {
        command_line,
        label: args.label.clone(),
        message_bytes: args.message_bytes,
        target_rate: args.rate,
        acks: args.acks.clone(),
        duration_s: send_s,
        sent: s.sent,
        acked: s.acked,
        failed: s.failed,
        consumed: s.consumed,
        produce_rate: s.acked as f64 / send_s,
        produce_mb_s: mb(s.acked) / send_s,
        consume_rate: s.consumed as f64 / consume_s,
        consume_mb_s: mb(s.consumed) / consume_s,
        ack_latency: LatencySummary::of(&s.ack),
        e2e_latency: LatencySummary::of(&s.e2e),
        send_lag: LatencySummary::of(&s.send_lag),
        loss_check: loss,
        raw_disk: None,
    };
    if let Some(prefix) = &args.hgrm_prefix {
        std::fs::write(format!("{prefix}-ack.hgrm"), hgrm(&s.ack))?;
        std::fs::write(format!("{prefix}-e2e.hgrm"), hgrm(&s.e2e))?;
        std::fs::write(format!("{prefix}-send-lag.hgrm"), hgrm(&s.send_lag))?;
    }
    Ok(summary)
}

/// How the producers split the work.
#[derive(Debug, Clone, Copy)]
struct Share {
    /// Producers.
    count: usize,
    /// Partitions of the topic.
    partitions: i32,
}

impl Share {
    /// The partitions producer `index` sends to: those congruent to it modulo the count.
    fn partitions_of(self, index: usize) -> Vec<i32> {
        (0..self.partitions)
            .filter(|p| *p as usize % self.count == index)
            .collect()
    }

    /// The sequence number of producer `index`'s `local`-th record: unique across producers
    /// (the consumer's duplicate check), increasing per partition (its order check).
    fn seq(self, index: usize, local: u64) -> u64 {
        local * self.count as u64 + index as u64
    }
}

/// One producer's open (or closed) loop over its share of the partitions.
async fn produce(
    mut producer: Producer,
    state: Rc<RefCell<State>>,
    args: &RunArgs,
    share: Share,
    index: usize,
) -> anyhow::Result<()> {
    let mine = share.partitions_of(index);
    assert!(!mine.is_empty(), "at most one producer per partition");
    let start = state.borrow().start;
    let duration = Duration::from_secs_f64(args.duration_s);
    // Each producer sends its share of the rate: the records due over all producers are
    // spread as with one.
    let interval_ns = if args.rate > 0 {
        1e9 * share.count as f64 / args.rate as f64
    } else {
        0.0
    };
    let duration_ns = duration.as_nanos() as u64;
    let mut value = vec![b'x'; args.message_bytes];
    let mut seq: u64 = 0;
    // The open loop reads the clock only when the next record is not due by the last reading
    // (or every CLOCK_READING_RECORDS_MAX records): records already due go out back to back,
    // each measured from its intended time, not from this reading. The producer gets the same
    // reading (`send_to_at`) to date records and age batches. A read per record was a sixth
    // of the bench's CPU time at 2M/s, and the producer's own read a tenth at 3M/s.
    let mut now = Instant::now();
    let since_start = |now: Instant| now.saturating_duration_since(start).as_nanos() as u64;
    let mut now_ns = since_start(now);
    loop {
        let intended_ns = if args.rate > 0 {
            (seq as f64 * interval_ns) as u64
        } else {
            now = Instant::now();
            now_ns = since_start(now);
            now_ns
        };
        if intended_ns > now_ns || seq % CLOCK_READING_RECORDS_MAX == 0 {
            now = Instant::now();
            now_ns = since_start(now);
        }
        if now_ns >= duration_ns {
            break;
        }
        if intended_ns > now_ns {
            // A timer per record costs more than the record at high rates: wait at least
            // SEND_WAIT_NS_MIN, then send everything that became due. The records sent late
            // are measured from their intended time, so the wait shows in their latency.
            let wait_ns = (intended_ns - now_ns).max(SEND_WAIT_NS_MIN);
            producer.poll(Duration::from_nanos(wait_ns)).await?;
            now = Instant::now();
            now_ns = since_start(now);
            continue;
        }
        // Round-robin: every partition's batch fills at the same pace.
        let partition = mine[(seq % mine.len() as u64) as usize];
        value[0..8].copy_from_slice(&intended_ns.to_le_bytes());
        value[8..16].copy_from_slice(&share.seq(index, seq).to_le_bytes());
        {
            let mut s = state.borrow_mut();
            s.pending[partition as usize].push_back(intended_ns);
            s.sent += 1;
            if args.rate > 0 {
                // From the last clock reading: a lower bound, short by at most one burst.
                s.send_lag
                    .saturating_record(now_ns.saturating_sub(intended_ns).max(1));
            }
        }
        producer
            .send_to_at(now, &args.topic, partition, None, Some(&value), &[])
            .await?;
        seq += 1;
    }
    producer.flush().await?;
    let mut s = state.borrow_mut();
    s.send_end = s.send_end.max(start.elapsed());
    Ok(())
}

async fn consume(
    mut consumer: Consumer,
    state: Rc<RefCell<State>>,
    drain: Duration,
) -> anyhow::Result<()> {
    let mut drain_started: Option<Instant> = None;
    loop {
        {
            let s = state.borrow();
            if s.sending_done {
                let target = if s.acked > 0 { s.acked } else { s.sent };
                if s.consumed + s.duplicates >= target {
                    return Ok(());
                }
                let started = *drain_started.get_or_insert_with(Instant::now);
                if started.elapsed() > drain {
                    return Ok(());
                }
            }
        }
        let fetched = consumer.poll().await?;
        let mut s = state.borrow_mut();
        for record in fetched.records() {
            let record = record?;
            if let Some(v) = &record.value {
                s.on_record(record.partition, v);
            }
        }
    }
}

async fn progress(state: Rc<RefCell<State>>, message_bytes: usize) {
    let mut last = (0u64, 0u64, 0u64);
    let mut second = 0u64;
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        second += 1;
        let s = state.borrow();
        if s.all_done {
            return;
        }
        let (sent, acked, consumed) = (s.sent, s.acked, s.consumed);
        let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
        eprintln!(
            "[{second:>4}s] sent {:>9}/s  acked {:>9}/s ({:>7.1} MB/s)  consumed {:>9}/s  ack p99 {:>9.1} us  e2e p99 {:>9.1} us  failed {}",
            sent - last.0,
            acked - last.1,
            (acked - last.1) as f64 * message_bytes as f64 / 1e6,
            consumed - last.2,
            p99(&s.ack),
            p99(&s.e2e),
            s.failed
        );
        last = (sent, acked, consumed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker_error(code: ErrorCode) -> ClientError {
        ClientError::Broker {
            code,
            what: "test".to_owned(),
        }
    }

    fn on_executor<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move { f().await })
            .expect("executor")
            .join()
            .expect("joined")
    }

    #[test]
    fn setup_retries_a_leader_that_is_not_ready_until_it_answers() {
        let (attempts, value) = on_executor(async || {
            let mut attempts = 0u32;
            let deadline = Instant::now() + Duration::from_secs(10);
            let value = retry_setup(deadline, "listing offsets", async || {
                attempts += 1;
                match attempts {
                    1 => Err(broker_error(ErrorCode::NotLeaderOrFollower)),
                    // As the client reports it once its own retries gave up.
                    2 => Err(ClientError::RetriesExhausted {
                        attempts: 6,
                        last: Box::new(broker_error(ErrorCode::LeaderNotAvailable)),
                    }),
                    _ => Ok(42),
                }
            })
            .await
            .expect("succeeds on the third attempt");
            (attempts, value)
        });
        assert_eq!((attempts, value), (3, 42));
    }

    #[test]
    fn setup_gives_up_at_once_on_an_error_a_retry_cannot_cure() {
        let (attempts, message) = on_executor(async || {
            let mut attempts = 0u32;
            let deadline = Instant::now() + Duration::from_secs(10);
            let error = retry_setup(deadline, "creating the topic", async || {
                attempts += 1;
                Err::<(), _>(broker_error(ErrorCode::TopicAuthorizationFailed))
            })
            .await
            .expect_err("not retriable");
            (attempts, error.to_string())
        });
        assert_eq!(attempts, 1, "{message}");
        assert!(message.starts_with("creating the topic: "), "{message}");
    }

    #[test]
    fn setup_stops_retrying_at_the_deadline() {
        let (attempts, elapsed) = on_executor(async || {
            let mut attempts = 0u32;
            let started = Instant::now();
            let deadline = started + Duration::from_millis(300);
            let result = retry_setup(deadline, "metadata", async || {
                attempts += 1;
                Err::<(), _>(broker_error(ErrorCode::NotLeaderOrFollower))
            })
            .await;
            assert!(result.is_err());
            (attempts, started.elapsed())
        });
        // 50 and 100 ms pauses fit before the deadline, the next (200 ms) would not; a slow
        // machine may fit one pause fewer. It never sleeps past the deadline.
        assert!((2..=3).contains(&attempts), "{attempts}");
        assert!(elapsed < Duration::from_millis(300), "{elapsed:?}");
    }

    #[test]
    fn producers_share_partitions_and_sequence_numbers_without_overlap() {
        let share = Share {
            count: 3,
            partitions: 8,
        };
        let all: Vec<i32> = (0..3).flat_map(|i| share.partitions_of(i)).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
        let mut seqs: Vec<u64> = (0..3)
            .flat_map(|i| (0..100).map(move |local| share.seq(i, local)))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 300);
    }
}
