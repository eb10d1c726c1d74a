//! The load generator: one producer task, an optional consumer task and a progress task on
//! one glommio executor (pin it with `--cpu`).
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

/// How long a topic may take to have a leader for every partition after it was created (in a
/// cluster, the answering broker learns of it when the controller's change reaches it).
const LEADERS_TIMEOUT: Duration = Duration::from_secs(10);

/// The partition count of `topic` once every partition has a leader, as every broker of the
/// cluster sees it: a broker whose metadata has not caught up would refuse the first batches
/// sent to it, and a retried batch may land after later ones of its partition.
async fn wait_for_leaders(admin: &mut Admin, topic: &str) -> anyhow::Result<i32> {
    let started = Instant::now();
    loop {
        let metadata = admin.metadata(Some(&[topic])).await?;
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
        if started.elapsed() > LEADERS_TIMEOUT {
            bail!(
                "topic {topic}: {led} of {} partitions have a leader after {LEADERS_TIMEOUT:?}",
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
    let mut admin = Admin::connect(client.clone()).await?;
    let created = admin
        .create_topics(&[NewTopic::new(&args.topic, args.partitions)])
        .await?;
    match &created[0] {
        Ok(()) => {}
        Err(ClientError::Broker {
            code: ErrorCode::TopicAlreadyExists,
            ..
        }) => {}
        Err(e) => bail!("creating {}: {e}", args.topic),
    }
    let partitions = wait_for_leaders(&mut admin, &args.topic).await?;

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
        let mut c = Consumer::connect(config).await?;
        for p in 0..partitions {
            c.assign(&args.topic, p, OffsetSpec::Latest).await?;
        }
        consumer = Some(c);
    }

    let mut config = ProducerConfig::new(client);
    config.acks = acks;
    if args.idempotence {
        config.idempotence = Idempotence::On;
    }
    config.batch.batch_bytes_max = args.batch_bytes;
    config.batch.linger_ms = args.linger_ms;
    config.batch.compression = compression;
    config.client.connection.in_flight_max = args.in_flight;
    let sink = Rc::clone(&state);
    let producer =
        Producer::connect(config, Box::new(move |d| sink.borrow_mut().on_delivery(d))).await?;

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
    let produce_result = produce(producer, Rc::clone(&state), &args, partitions).await;
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

async fn produce(
    mut producer: Producer,
    state: Rc<RefCell<State>>,
    args: &RunArgs,
    partitions: i32,
) -> anyhow::Result<()> {
    let start = state.borrow().start;
    let duration = Duration::from_secs_f64(args.duration_s);
    let interval_ns = if args.rate > 0 {
        1e9 / args.rate as f64
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
        let partition = (seq % partitions as u64) as i32;
        value[0..8].copy_from_slice(&intended_ns.to_le_bytes());
        value[8..16].copy_from_slice(&seq.to_le_bytes());
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
    state.borrow_mut().send_end = start.elapsed();
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
