//! Metrics for Prometheus: what each core counts, the plain snapshot a core sends to core 0
//! over the mesh (`CoreRequest::Metrics`), and the rendering of every core's snapshot as one
//! exposition (served by `admin` at `/metrics`; the names are listed in docs/METRICS.md).
//!
//! Counting follows the hot path's rules: plain integers in `Cell`s and `RefCell`s owned by the
//! core, bumped once per request or per partition of a request (never per record), no locks,
//! and no allocation once a topic's counters exist. Traffic is counted where a request is
//! handled (the connection's core), so one partition's counters are spread over cores and
//! summed at scrape time; gauges (offsets, sizes) come from the partition's owning core.
//! Everything that is cumulative in the exposition (counters, histogram buckets) only grows
//! for the process's life: Prometheus' `rate()` handles the reset at restart.
//!
//! Invariants: memory is bounded by the topics and partitions a core knows (a deleted topic's
//! counters are dropped at the next scrape), the API keys and the Kafka error codes; a scrape
//! costs one mesh round trip per core and allocates only its answer.

pub mod exposition;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use spate_storage::pool::PoolStats;
use spate_wire::batch::BATCH_HEADER_BYTES;
use spate_wire::ErrorCode;

use crate::core::Core;
use exposition::{Buckets, Exposition, Kind};

/// Upper bounds (inclusive) of the request-time buckets, microseconds: a produce acknowledged
/// from memory takes ~100 us, a fetch may long-poll up to its max wait (30 s at most).
pub const REQUEST_BOUNDS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Error codes counted by name: Kafka's run from -1 to about 120. Codes outside (none today)
/// are counted as `UNKNOWN_SERVER_ERROR`'s neighbour slot, `OTHER`.
const ERROR_CODES_MAX: usize = 128;

/// A histogram at fixed bounds, never reset: the exposition's buckets are cumulative over the
/// process's life (`stats.rs`'s HdrHistograms are reset at every log interval, so they cannot
/// be the source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBuckets {
    /// Per bound of [`REQUEST_BOUNDS_US`], plus the count above the last one.
    counts: [u64; REQUEST_BOUNDS_US.len() + 1],
    sum_us: u64,
}

impl Default for LatencyBuckets {
    fn default() -> Self {
        LatencyBuckets {
            counts: [0; REQUEST_BOUNDS_US.len() + 1],
            sum_us: 0,
        }
    }
}

impl LatencyBuckets {
    /// Counts one sample: a binary search over 17 bounds.
    pub fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = REQUEST_BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[bucket] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// As data for the snapshot.
    pub fn to_histogram(self) -> Histogram {
        Histogram {
            bounds_us: &REQUEST_BOUNDS_US,
            counts: self.counts.to_vec(),
            sum_us: self.sum_us,
        }
    }
}

/// A histogram as it crosses cores: counts per bucket (not cumulative), sum in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub bounds_us: &'static [u64],
    pub counts: Vec<u64>,
    pub sum_us: u64,
}

impl Histogram {
    fn add(&mut self, other: &Histogram) {
        assert_eq!(self.bounds_us, other.bounds_us, "same bounds to add");
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    fn buckets(&self) -> Buckets<'_> {
        Buckets {
            bounds_us: self.bounds_us,
            counts: &self.counts,
            sum_us: self.sum_us,
        }
    }
}

/// One partition's traffic as counted on one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub produced_bytes: u64,
    pub produced_records: u64,
    pub fetched_bytes: u64,
    pub fetched_records: u64,
}

impl Traffic {
    fn add(&mut self, other: &Traffic) {
        self.produced_bytes += other.produced_bytes;
        self.produced_records += other.produced_records;
        self.fetched_bytes += other.fetched_bytes;
        self.fetched_records += other.fetched_records;
    }
}

/// Counts per Kafka error code, by code.
struct ErrorCounts([Cell<u64>; ERROR_CODES_MAX]);

impl Default for ErrorCounts {
    fn default() -> Self {
        ErrorCounts(std::array::from_fn(|_| Cell::new(0)))
    }
}

impl ErrorCounts {
    fn record(&self, code: ErrorCode) {
        let slot = usize::try_from(i32::from(code.code()) + 1)
            .unwrap_or(ERROR_CODES_MAX - 1)
            .min(ERROR_CODES_MAX - 1);
        self.0[slot].set(self.0[slot].get() + 1);
    }

    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, count)| count.get() > 0)
            .map(|(slot, count)| {
                let name = i16::try_from(slot as i32 - 1)
                    .ok()
                    .filter(|_| slot < ERROR_CODES_MAX - 1)
                    .and_then(|code| ErrorCode::try_from(code).ok())
                    .map_or("OTHER", ErrorCode::name);
                (name, count.get())
            })
            .collect()
    }
}

/// glommio's executor counters, summed: glommio hands out what accrued since the last read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorTotals {
    /// Time running tasks, microseconds.
    pub tasks_us: u64,
    /// Time running tasks or polling for I/O, microseconds.
    pub busy_us: u64,
    pub tasks_executed: u64,
    pub scheduler_runs: u64,
}

/// One task queue's counters, summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTotals {
    pub name: String,
    pub runtime_us: u64,
    pub runs: u64,
    pub shares: u64,
}

/// What one core counts. Owned by the core; see the module doc.
#[derive(Default)]
pub struct CoreMetrics {
    /// Per topic, indexed by partition.
    traffic: RefCell<HashMap<String, Vec<Traffic>>>,
    produce_errors: ErrorCounts,
    fetch_errors: ErrorCounts,
    connections_active: Cell<u64>,
    connections_accepted: Cell<u64>,
    connections_refused: Cell<u64>,
    connections_moved_in: Cell<u64>,
    executor: Cell<ExecutorTotals>,
    /// By task queue index.
    queues: RefCell<BTreeMap<usize, QueueTotals>>,
    /// Names of the task queues created by the broker (glommio's stats carry no name).
    queue_names: RefCell<Vec<(usize, &'static str)>>,
}

impl std::fmt::Debug for CoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreMetrics").finish_non_exhaustive()
    }
}

/// Dropping it counts the connection closed.
#[derive(Debug)]
pub struct ConnectionGuard<'a>(&'a CoreMetrics);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        let active = &self.0.connections_active;
        assert!(active.get() > 0);
        active.set(active.get() - 1);
    }
}

impl CoreMetrics {
    /// Counts a produce to `topic`-`partition` that was appended: `bytes` of record batches
    /// holding `records` records.
    pub fn produced(&self, topic: &str, partition: i32, bytes: u64, records: u64) {
        self.with_traffic(topic, partition, |t| {
            t.produced_bytes += bytes;
            t.produced_records += records;
        });
    }

    /// Counts record batches sent to a consumer from `topic`-`partition`.
    pub fn fetched(&self, topic: &str, partition: i32, bytes: u64, records: u64) {
        self.with_traffic(topic, partition, |t| {
            t.fetched_bytes += bytes;
            t.fetched_records += records;
        });
    }

    /// `partition` must exist (the caller counts only successes), which bounds the vector by
    /// the topic's partition count.
    fn with_traffic(&self, topic: &str, partition: i32, update: impl FnOnce(&mut Traffic)) {
        let Ok(index) = usize::try_from(partition) else {
            return;
        };
        let mut traffic = self.traffic.borrow_mut();
        let partitions = match traffic.get_mut(topic) {
            Some(partitions) => partitions,
            // Once per topic and core.
            None => traffic.entry(topic.to_owned()).or_default(),
        };
        if partitions.len() <= index {
            partitions.resize(index + 1, Traffic::default());
        }
        update(&mut partitions[index]);
    }

    /// Counts a partition of a Produce answered with `code` (not `NONE`).
    pub fn produce_error(&self, code: ErrorCode) {
        self.produce_errors.record(code);
    }

    /// Counts a partition of a Fetch answered with `code` (not `NONE`).
    pub fn fetch_error(&self, code: ErrorCode) {
        self.fetch_errors.record(code);
    }

    /// Counts a client connection accepted; it counts as active until the guard drops.
    pub fn connection_opened(&self) -> ConnectionGuard<'_> {
        self.connections_accepted
            .set(self.connections_accepted.get() + 1);
        self.connections_active
            .set(self.connections_active.get() + 1);
        ConnectionGuard(self)
    }

    /// Counts a connection another core handed to this one (`crate::handoff`); it counts as
    /// active until the guard drops, and is not counted as accepted again.
    pub fn connection_moved_in(&self) -> ConnectionGuard<'_> {
        self.connections_moved_in
            .set(self.connections_moved_in.get() + 1);
        self.connections_active
            .set(self.connections_active.get() + 1);
        ConnectionGuard(self)
    }

    /// Client connections this core serves now.
    pub fn connections_active(&self) -> u64 {
        self.connections_active.get()
    }

    /// Counts a connection closed at once because the core was at its connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused
            .set(self.connections_refused.get() + 1);
    }

    /// Names a task queue this core created, for the `queue` label.
    pub fn name_queue(&self, queue: glommio::TaskQueueHandle, name: &'static str) {
        self.queue_names.borrow_mut().push((queue.index(), name));
    }

    /// Adds what glommio accrued since the last call (its stats reset when read) to the totals.
    fn take_executor_stats(&self) {
        let ex = glommio::executor();
        let stats = ex.executor_stats();
        let mut totals = self.executor.get();
        totals.tasks_us += micros(stats.executor_runtime());
        totals.busy_us += micros(stats.total_runtime());
        totals.tasks_executed += stats.tasks_executed();
        totals.scheduler_runs += stats.scheduler_runs();
        self.executor.set(totals);
        let names = self.queue_names.borrow();
        let mut queues = self.queues.borrow_mut();
        for queue in ex.all_task_queue_stats(Vec::new()) {
            let index = queue.index().index();
            let totals = queues.entry(index).or_insert_with(|| QueueTotals {
                name: queue_name(index, &names),
                runtime_us: 0,
                runs: 0,
                shares: 0,
            });
            totals.runtime_us += micros(queue.runtime());
            totals.runs += queue.queue_selected();
            totals.shares = queue.current_shares() as u64;
        }
    }
}

fn queue_name(index: usize, names: &[(usize, &'static str)]) -> String {
    // glommio's default queue is created first, with index 0.
    match names.iter().find(|(i, _)| *i == index) {
        Some((_, name)) => (*name).to_owned(),
        None if index == 0 => "default".to_owned(),
        None => format!("queue-{index}"),
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The number of records in whole record batches laid end to end in `chunks` (a Produce's
/// records, or a Fetch answer's pieces), read from each batch's header: once per batch, never
/// per record. A header split over two chunks, or bytes that are not batches, end the count
/// early: the number is for metrics, the data itself was checked elsewhere.
pub fn record_count(chunks: &[bytes::Bytes]) -> u64 {
    // Kafka's batch header: records count is the last field, at bytes 57..61.
    const RECORDS_COUNT_AT: usize = 57;
    const _: () = assert!(RECORDS_COUNT_AT + 4 == BATCH_HEADER_BYTES);
    let mut records = 0u64;
    // Bytes of the current batch still to skip, counted from the start of the next chunk.
    let mut skip = 0usize;
    for chunk in chunks {
        let mut at = 0usize;
        loop {
            if skip > 0 {
                let here = skip.min(chunk.len() - at);
                at += here;
                skip -= here;
                if skip > 0 {
                    break; // the batch goes on in the next chunk
                }
            }
            if at == chunk.len() {
                break;
            }
            let Some(header) = chunk.get(at..at + BATCH_HEADER_BYTES) else {
                return records;
            };
            let length = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
            let count = i32::from_be_bytes([
                header[RECORDS_COUNT_AT],
                header[RECORDS_COUNT_AT + 1],
                header[RECORDS_COUNT_AT + 2],
                header[RECORDS_COUNT_AT + 3],
            ]);
            let (Ok(length), Ok(count)) = (usize::try_from(length), u64::try_from(count)) else {
                return records;
            };
            records += count;
            // The batch is 12 bytes of offset and length, then `length` bytes.
            skip = 12 + length;
        }
    }
    records
}

/// One family of a table of families: name, help and how to read its value from `T`.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);
/// The same with a kind and whether the value is microseconds shown as seconds.
type QueueFamily = (
    &'static str,
    &'static str,
    Kind,
    bool,
    fn(&QueueTotals) -> u64,
);

/// A partition's offsets and size, from its owning core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    /// Replicas and in-sync replicas as this broker knows them (1 and 1 on a single broker).
    pub replicas: i64,
    pub in_sync_replicas: i64,
    /// Whether this broker leads the partition (always on a single broker).
    pub leader: bool,
    /// On the leader of a replicated partition: each follower (broker id) and the records its
    /// last fetch was behind the log end. Empty elsewhere.
    pub replica_lags: Vec<(i32, u64)>,
}

/// A group's committed offset of one partition, from its coordinating core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One replica of the metadata log as the quorum's leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplicaLag {
    pub node: i32,
    /// `"voter"` or `"observer"`.
    pub role: &'static str,
    /// The leader's commit index minus the replica's log end (0 when ahead of it).
    pub lag: u64,
}

/// The metadata quorum as this broker sees it: cluster mode only, from the controller core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumMetrics {
    /// Whether this broker votes in the quorum (else it observes the log).
    pub voter: bool,
    /// The quorum's leader as this broker knows it.
    pub leader: Option<i32>,
    /// How far this broker has applied the metadata log (entries).
    pub applied_offset: u64,
    /// On the quorum's leader only: its commit index and every replica's lag behind it.
    pub led: Option<(u64, Vec<QuorumReplicaLag>)>,
}

impl QuorumMetrics {
    /// Reads `membership` (on the controller core, where it lives).
    pub fn of(membership: &crate::cluster::Membership) -> QuorumMetrics {
        use spate_wire::cluster::ControllerAnswer;
        let led = membership
            .quorum()
            .and_then(|q| q.describe())
            .and_then(|answer| {
                let ControllerAnswer::DescribeQuorum {
                    committed,
                    voters,
                    observers,
                    ..
                } = answer
                else {
                    return None;
                };
                let lag = |role: &'static str| {
                    move |r: spate_wire::cluster::QuorumReplica| {
                        // A replica whose log end is unknown (-1: not heard from since this leader
                        // took over) is left out rather than shown as the whole log behind.
                        let log_end = u64::try_from(r.log_end).ok()?;
                        Some(QuorumReplicaLag {
                            node: r.node_id,
                            role,
                            lag: committed.saturating_sub(log_end),
                        })
                    }
                };
                let replicas = voters
                    .into_iter()
                    .filter_map(lag("voter"))
                    .chain(observers.into_iter().filter_map(lag("observer")))
                    .collect();
                Some((committed, replicas))
            });
        QuorumMetrics {
            voter: membership.quorum().is_some(),
            leader: membership.leader().map(|n| n.0),
            applied_offset: membership.applied_offset().0,
            led,
        }
    }
}

/// Everything one core reports for a scrape: plain data, `Send`, built on that core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub core: usize,
    pub partitions: Vec<PartitionState>,
    pub traffic: Vec<(String, i32, Traffic)>,
    pub produce_errors: Vec<(&'static str, u64)>,
    pub fetch_errors: Vec<(&'static str, u64)>,
    /// Per API name.
    pub requests: Vec<(String, Histogram)>,
    pub fsync: Option<Histogram>,
    pub connections_active: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub connections_moved_in: u64,
    pub executor: ExecutorTotals,
    /// The core's write-buffer and tail-cache budgets and what they hold.
    pub pool: PoolStats,
    pub queues: Vec<QueueTotals>,
    pub committed: Vec<CommittedOffset>,
    /// The metadata quorum (the controller core of a broker in a cluster only).
    pub quorum: Option<QuorumMetrics>,
}

/// This core's snapshot. Runs on the core itself (locally or as `CoreRequest::Metrics`).
pub async fn snapshot(core: &Core) -> Snapshot {
    let metrics = &core.metrics;
    metrics.take_executor_stats();
    let topics: Vec<(String, i32)> = core
        .topics
        .borrow()
        .values()
        .map(|meta| (meta.name.clone(), meta.partitions))
        .collect();
    // Counters of topics gone from this core's table are dropped here, which bounds them.
    metrics
        .traffic
        .borrow_mut()
        .retain(|topic, _| topics.iter().any(|(name, _)| name == topic));
    let mut partitions = Vec::new();
    for (topic, count) in &topics {
        for index in 0..*count {
            let Some(partition) = core.partition(topic, index) else {
                continue; // owned by another core or broker
            };
            let log = &partition.log;
            // A single broker is every partition's one replica, in sync and leading.
            let (replicas, in_sync_replicas) = partition
                .replica
                .as_ref()
                .and_then(|r| r.partition_state())
                .map_or((1, 1), |s| (s.replicas.len() as i64, s.isr.len() as i64));
            partitions.push(PartitionState {
                topic: topic.clone(),
                partition: index,
                log_start_offset: log.log_start_offset().0,
                log_end_offset: log.log_end_offset().0,
                high_watermark: partition.high_watermark().0,
                size_bytes: log.size_bytes().await,
                replicas,
                in_sync_replicas,
                leader: partition.replica.as_ref().is_none_or(|r| r.is_leader()),
                replica_lags: partition
                    .replica
                    .as_ref()
                    .map_or_else(Vec::new, |r| r.follower_lags()),
            });
        }
    }
    let traffic = metrics
        .traffic
        .borrow()
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .enumerate()
                .filter(|(_, t)| **t != Traffic::default())
                .map(move |(i, t)| (topic.clone(), i as i32, *t))
        })
        .collect();
    let sync = spate_storage::io::glommio::sync_times();
    Snapshot {
        core: core.id,
        partitions,
        traffic,
        produce_errors: metrics.produce_errors.snapshot(),
        fetch_errors: metrics.fetch_errors.snapshot(),
        requests: core.stats.request_latency(),
        fsync: Some(Histogram {
            bounds_us: &spate_storage::io::glommio::SYNC_BUCKET_BOUNDS_US,
            counts: sync.buckets.to_vec(),
            sum_us: sync.sum_us,
        }),
        connections_active: metrics.connections_active.get(),
        connections_accepted: metrics.connections_accepted.get(),
        connections_refused: metrics.connections_refused.get(),
        connections_moved_in: metrics.connections_moved_in.get(),
        executor: metrics.executor.get(),
        pool: spate_storage::pool::stats(),
        queues: metrics.queues.borrow().values().cloned().collect(),
        committed: core
            .groups
            .committed_offsets()
            .into_iter()
            .map(|(group, topic, partition, offset)| CommittedOffset {
                group,
                topic,
                partition,
                offset,
            })
            .collect(),
        quorum: core
            .cluster_node
            .get()
            .map(|node| QuorumMetrics::of(&node.membership)),
    }
}

/// Whether the broker is ready, as `/ready` reports it; rendered as `spate_ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub ready: bool,
}

/// Every core's snapshot as one exposition. Families come one at a time, each with the
/// samples of every core, as the format requires.
pub fn render(snapshots: &[Snapshot], health: Health) -> String {
    let mut e = Exposition::new();
    e.family(
        "spate_build_info",
        "The broker's version, as a label; the value is always 1.",
        Kind::Gauge,
    );
    e.sample(
        "spate_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    e.family(
        "spate_ready",
        "1 once every core recovered its partitions (and, in a cluster, the broker registered), as /ready.",
        Kind::Gauge,
    );
    e.sample("spate_ready", &[], u64::from(health.ready));
    render_partitions(&mut e, snapshots);
    render_traffic(&mut e, snapshots);
    render_groups(&mut e, snapshots);
    render_requests(&mut e, snapshots);
    render_connections(&mut e, snapshots);
    render_executors(&mut e, snapshots);
    render_pools(&mut e, snapshots);
    if let Some(quorum) = snapshots.iter().find_map(|s| s.quorum.as_ref()) {
        render_quorum(&mut e, quorum);
    }
    e.into_string()
}

/// The metadata quorum's families, rendered only in cluster mode (a single broker has none).
fn render_quorum(e: &mut Exposition, q: &QuorumMetrics) {
    e.family(
        "spate_metadata_quorum_voter",
        "1 if this broker votes in the metadata quorum, 0 if it observes the metadata log.",
        Kind::Gauge,
    );
    e.sample("spate_metadata_quorum_voter", &[], u64::from(q.voter));
    e.family(
        "spate_metadata_quorum_leader",
        "The metadata quorum's leader (its node id) as this broker knows it, -1 if unknown.",
        Kind::Gauge,
    );
    e.sample_signed(
        "spate_metadata_quorum_leader",
        &[],
        q.leader.map_or(-1, i64::from),
    );
    e.family(
        "spate_metadata_applied_offset",
        "How far this broker has applied the metadata log (entries).",
        Kind::Gauge,
    );
    e.sample("spate_metadata_applied_offset", &[], q.applied_offset);
    // Only the leader knows the others' progress; on other brokers these families are absent,
    // so a sum over the cluster counts each lag once.
    let Some((committed, replicas)) = &q.led else {
        return;
    };
    e.family(
        "spate_metadata_committed_offset",
        "The metadata log's commit index (Kafka's high watermark of __cluster_metadata), on the \
         quorum's leader only.",
        Kind::Gauge,
    );
    e.sample("spate_metadata_committed_offset", &[], *committed);
    e.family(
        "spate_metadata_replica_lag",
        "Entries of the committed metadata log a voter or observer does not have yet, on the \
         quorum's leader only.",
        Kind::Gauge,
    );
    for r in replicas {
        let node = r.node.to_string();
        e.sample(
            "spate_metadata_replica_lag",
            &[("node", &node), ("role", r.role)],
            r.lag,
        );
    }
}

fn render_partitions(e: &mut Exposition, snapshots: &[Snapshot]) {
    let mut partitions: Vec<&PartitionState> =
        snapshots.iter().flat_map(|s| &s.partitions).collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let gauges: [Family<PartitionState, i64>; 6] = [
        (
            "spate_partition_log_start_offset",
            "The partition's first offset still in the log.",
            |p| p.log_start_offset,
        ),
        (
            "spate_partition_log_end_offset",
            "The offset the partition's next record will get.",
            |p| p.log_end_offset,
        ),
        (
            "spate_partition_high_watermark",
            "The offset below which consumers may read (durable under the flush policy).",
            |p| p.high_watermark,
        ),
        (
            "spate_partition_replicas",
            "The partition's replicas, as the controller assigned them.",
            |p| p.replicas,
        ),
        (
            "spate_partition_in_sync_replicas",
            "The partition's in-sync replicas, as the controller's last state says.",
            |p| p.in_sync_replicas,
        ),
        (
            "spate_partition_leader",
            "1 if this broker leads the partition, else 0 (a follower's copy).",
            |p| i64::from(p.leader),
        ),
    ];
    for (name, help, value) in gauges {
        e.family(name, help, Kind::Gauge);
        for p in &partitions {
            let partition = p.partition.to_string();
            e.sample_signed(
                name,
                &[("topic", &p.topic), ("partition", &partition)],
                value(p),
            );
        }
    }
    e.family(
        "spate_under_replicated_partitions",
        "Partitions this broker leads with fewer in-sync replicas than replicas (Kafka's \
         UnderReplicatedPartitions).",
        Kind::Gauge,
    );
    let under = partitions
        .iter()
        .filter(|p| p.leader && p.in_sync_replicas < p.replicas)
        .count();
    e.sample_signed("spate_under_replicated_partitions", &[], under as i64);
    e.family(
        "spate_partition_replica_lag_records",
        "On the partition's leader: records a follower's last fetch was behind the leader's log \
         end (a follower not heard from since this leader took over is absent).",
        Kind::Gauge,
    );
    for p in &partitions {
        let partition = p.partition.to_string();
        for (replica, lag) in &p.replica_lags {
            let replica = replica.to_string();
            e.sample(
                "spate_partition_replica_lag_records",
                &[
                    ("topic", &p.topic),
                    ("partition", &partition),
                    ("replica", &replica),
                ],
                *lag,
            );
        }
    }
    e.family(
        "spate_partition_size_bytes",
        "Bytes of record batches in the partition's segments on disk.",
        Kind::Gauge,
    );
    for p in &partitions {
        let partition = p.partition.to_string();
        e.sample(
            "spate_partition_size_bytes",
            &[("topic", &p.topic), ("partition", &partition)],
            p.size_bytes,
        );
    }
}

fn render_traffic(e: &mut Exposition, snapshots: &[Snapshot]) {
    let mut merged: BTreeMap<(&str, i32), Traffic> = BTreeMap::new();
    for s in snapshots {
        for (topic, partition, traffic) in &s.traffic {
            merged
                .entry((topic.as_str(), *partition))
                .or_default()
                .add(traffic);
        }
    }
    let counters: [Family<Traffic, u64>; 4] = [
        (
            "spate_partition_produced_bytes_total",
            "Bytes of record batches appended by producers.",
            |t| t.produced_bytes,
        ),
        (
            "spate_partition_produced_records_total",
            "Records appended by producers.",
            |t| t.produced_records,
        ),
        (
            "spate_partition_fetched_bytes_total",
            "Bytes of record batches sent to consumers and followers.",
            |t| t.fetched_bytes,
        ),
        (
            "spate_partition_fetched_records_total",
            "Records in the batches sent to consumers (whole batches: a fetch from inside a batch counts all of it).",
            |t| t.fetched_records,
        ),
    ];
    for (name, help, value) in counters {
        e.family(name, help, Kind::Counter);
        for ((topic, partition), traffic) in &merged {
            let partition = partition.to_string();
            e.sample(
                name,
                &[("topic", topic), ("partition", &partition)],
                value(traffic),
            );
        }
    }
    for (name, help, errors) in [
        (
            "spate_produce_errors_total",
            "Partitions of Produce requests answered with an error, by Kafka error name.",
            snapshots
                .iter()
                .map(|s| &s.produce_errors)
                .collect::<Vec<_>>(),
        ),
        (
            "spate_fetch_errors_total",
            "Partitions of Fetch requests answered with an error, by Kafka error name.",
            snapshots.iter().map(|s| &s.fetch_errors).collect(),
        ),
    ] {
        let mut by_code: BTreeMap<&str, u64> = BTreeMap::new();
        for (code, count) in errors.into_iter().flatten() {
            *by_code.entry(code).or_default() += count;
        }
        e.family(name, help, Kind::Counter);
        for (code, count) in by_code {
            e.sample(name, &[("error", code)], count);
        }
    }
}

fn render_groups(e: &mut Exposition, snapshots: &[Snapshot]) {
    let high_watermarks: HashMap<(&str, i32), i64> = snapshots
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    let mut committed: Vec<&CommittedOffset> =
        snapshots.iter().flat_map(|s| &s.committed).collect();
    committed
        .sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    e.family(
        "spate_consumer_group_committed_offset",
        "A consumer group's committed offset of a partition.",
        Kind::Gauge,
    );
    for c in &committed {
        let partition = c.partition.to_string();
        e.sample_signed(
            "spate_consumer_group_committed_offset",
            &[
                ("group", &c.group),
                ("topic", &c.topic),
                ("partition", &partition),
            ],
            c.offset,
        );
    }
    e.family(
        "spate_consumer_group_lag",
        "High watermark minus the group's committed offset, for partitions led by this broker.",
        Kind::Gauge,
    );
    for c in &committed {
        // Lag needs the high watermark, known only for partitions this broker holds.
        let Some(&hw) = high_watermarks.get(&(c.topic.as_str(), c.partition)) else {
            continue;
        };
        let partition = c.partition.to_string();
        e.sample(
            "spate_consumer_group_lag",
            &[
                ("group", &c.group),
                ("topic", &c.topic),
                ("partition", &partition),
            ],
            u64::try_from(hw.saturating_sub(c.offset)).unwrap_or(0),
        );
    }
}

fn render_requests(e: &mut Exposition, snapshots: &[Snapshot]) {
    let mut by_api: BTreeMap<&str, Histogram> = BTreeMap::new();
    for s in snapshots {
        for (api, histogram) in &s.requests {
            match by_api.get_mut(api.as_str()) {
                Some(total) => total.add(histogram),
                None => {
                    by_api.insert(api, histogram.clone());
                }
            }
        }
    }
    e.family(
        "spate_request_duration_seconds",
        "Time from a request's arrival (the read that completed its frame) to its response's send, by Kafka API.",
        Kind::Histogram,
    );
    for (api, histogram) in &by_api {
        e.histogram(
            "spate_request_duration_seconds",
            &[("api", api)],
            histogram.buckets(),
        );
    }
    let mut fsync: Option<Histogram> = None;
    for h in snapshots.iter().filter_map(|s| s.fsync.as_ref()) {
        match &mut fsync {
            Some(total) => total.add(h),
            None => fsync = Some(h.clone()),
        }
    }
    if let Some(fsync) = fsync {
        e.family(
            "spate_fsync_duration_seconds",
            "Time of each fdatasync of partition, checkpoint and metadata files.",
            Kind::Histogram,
        );
        e.histogram("spate_fsync_duration_seconds", &[], fsync.buckets());
    }
}

fn render_connections(e: &mut Exposition, snapshots: &[Snapshot]) {
    let sum = |f: fn(&Snapshot) -> u64| snapshots.iter().map(f).sum::<u64>();
    e.family(
        "spate_connections_active",
        "Open Kafka client connections.",
        Kind::Gauge,
    );
    e.sample(
        "spate_connections_active",
        &[],
        sum(|s| s.connections_active),
    );
    e.family(
        "spate_connections_accepted_total",
        "Kafka client connections accepted.",
        Kind::Counter,
    );
    e.sample(
        "spate_connections_accepted_total",
        &[],
        sum(|s| s.connections_accepted),
    );
    e.family(
        "spate_connections_refused_total",
        "Kafka client connections closed at once because a core had connections-per-core-max open.",
        Kind::Counter,
    );
    e.sample(
        "spate_connections_refused_total",
        &[],
        sum(|s| s.connections_refused),
    );
    e.family(
        "spate_connections_moved_total",
        "Kafka client connections handed from the core that accepted them to the core owning \
         their partitions.",
        Kind::Counter,
    );
    e.sample(
        "spate_connections_moved_total",
        &[],
        sum(|s| s.connections_moved_in),
    );
}

/// The snapshots in core order, for families with one sample per core.
fn cores_in_order(snapshots: &[Snapshot]) -> Vec<&Snapshot> {
    let mut cores: Vec<&Snapshot> = snapshots.iter().collect();
    cores.sort_by_key(|s| s.core);
    cores
}

/// A table of families of one kind, each with one sample per core (label `core`), read from
/// the part of each core's snapshot that `part` picks.
fn render_per_core<T>(
    e: &mut Exposition,
    cores: &[&Snapshot],
    kind: Kind,
    part: fn(&Snapshot) -> &T,
    families: &[Family<T, u64>],
) {
    for (name, help, value) in families {
        e.family(name, help, kind);
        for s in cores {
            let core = s.core.to_string();
            e.sample(name, &[("core", &core)], value(part(s)));
        }
    }
}

/// Each core's write-buffer and tail-cache budgets (`storage::pool`): a budget too small for
/// the partitions written shows as `shrunk` and `overdrafts` growing.
fn render_pools(e: &mut Exposition, snapshots: &[Snapshot]) {
    fn bytes(b: usize) -> u64 {
        u64::try_from(b).unwrap_or(u64::MAX)
    }
    let cores = cores_in_order(snapshots);
    let gauges: [Family<PoolStats, u64>; 4] = [
        (
            "spate_write_buffer_bytes",
            "Bytes of write buffers the core's partitions hold (granted from its budget).",
            |p| bytes(p.bytes_used),
        ),
        (
            "spate_write_buffer_budget_bytes",
            "The core's write-buffer budget (write-buffer-pool-bytes).",
            |p| bytes(p.bytes_max),
        ),
        (
            "spate_tail_cache_bytes",
            "Bytes the core's tail caches (recent batches for consumers) hold.",
            |p| bytes(p.cache_bytes),
        ),
        (
            "spate_tail_cache_budget_bytes",
            "The core's tail-cache budget.",
            |p| bytes(p.cache_bytes_max),
        ),
    ];
    render_per_core(e, &cores, Kind::Gauge, |s| &s.pool, &gauges);
    let counters: [Family<PoolStats, u64>; 2] = [
        (
            "spate_write_buffers_shrunk_total",
            "Write buffers granted smaller than asked because the core's budget was short.",
            |p| p.shrunk,
        ),
        (
            "spate_write_buffer_overdrafts_total",
            "Minimum-size write buffers granted beyond the core's budget (a partition with none \
             never waits for another).",
            |p| p.overdrafts,
        ),
    ];
    render_per_core(e, &cores, Kind::Counter, |s| &s.pool, &counters);
}

fn render_executors(e: &mut Exposition, snapshots: &[Snapshot]) {
    let cores = cores_in_order(snapshots);
    let seconds: [Family<ExecutorTotals, u64>; 2] = [
        (
            "spate_executor_busy_seconds_total",
            "Time the core's executor ran tasks or polled for I/O (not sleeping or spinning).",
            |t| t.busy_us,
        ),
        (
            "spate_executor_task_seconds_total",
            "Time the core's executor ran tasks.",
            |t| t.tasks_us,
        ),
    ];
    for (name, help, value) in seconds {
        e.family(name, help, Kind::Counter);
        for s in &cores {
            let core = s.core.to_string();
            e.sample_seconds(name, &[("core", &core)], value(&s.executor));
        }
    }
    let counts: [Family<ExecutorTotals, u64>; 2] = [
        (
            "spate_executor_tasks_total",
            "Tasks the core's executor ran.",
            |t| t.tasks_executed,
        ),
        (
            "spate_executor_scheduler_runs_total",
            "Times the core's scheduler picked a task queue to run.",
            |t| t.scheduler_runs,
        ),
    ];
    render_per_core(e, &cores, Kind::Counter, |s| &s.executor, &counts);
    let queues: [QueueFamily; 3] = [
        (
            "spate_task_queue_runtime_seconds_total",
            "Time the task queue's tasks ran.",
            Kind::Counter,
            true,
            |q| q.runtime_us,
        ),
        (
            "spate_task_queue_runs_total",
            "Times the scheduler picked the task queue.",
            Kind::Counter,
            false,
            |q| q.runs,
        ),
        (
            "spate_task_queue_shares",
            "The task queue's shares of its core (its weight against the other queues).",
            Kind::Gauge,
            false,
            |q| q.shares,
        ),
    ];
    for (name, help, kind, in_seconds, value) in queues {
        e.family(name, help, kind);
        for s in &cores {
            let core = s.core.to_string();
            for q in &s.queues {
                let labels = [("core", core.as_str()), ("queue", q.name.as_str())];
                if in_seconds {
                    e.sample_seconds(name, &labels, value(q));
                } else {
                    e.sample(name, &labels, value(q));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn batch(records: i32, body_bytes: usize) -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEADER_BYTES + body_bytes];
        let length = i32::try_from(b.len() - 12).unwrap();
        b[8..12].copy_from_slice(&length.to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn record_count_reads_each_batch_header_once() {
        let mut two = batch(3, 10);
        two.extend(batch(5, 0));
        assert_eq!(record_count(&[Bytes::from(two)]), 8);
        assert_eq!(record_count(&[]), 0);
    }

    #[test]
    fn record_count_follows_batches_over_chunks() {
        // A fetch answer from memory is a header chunk then a records chunk per batch.
        let a = batch(4, 100);
        let b = batch(6, 7);
        let chunks = [
            Bytes::copy_from_slice(&a[..BATCH_HEADER_BYTES]),
            Bytes::copy_from_slice(&a[BATCH_HEADER_BYTES..]),
            Bytes::copy_from_slice(&b[..BATCH_HEADER_BYTES]),
            Bytes::copy_from_slice(&b[BATCH_HEADER_BYTES..]),
        ];
        assert_eq!(record_count(&chunks), 10);
    }

    #[test]
    fn record_count_stops_at_what_is_not_a_batch() {
        let mut bytes = batch(2, 0);
        bytes.extend_from_slice(&[1, 2, 3]); // a torn header
        assert_eq!(record_count(&[Bytes::from(bytes)]), 2);
        let mut negative = batch(2, 0);
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(record_count(&[Bytes::from(negative)]), 0);
    }

    #[test]
    fn error_counts_are_named_by_kafka_code() {
        let counts = ErrorCounts::default();
        counts.record(ErrorCode::NotLeaderOrFollower);
        counts.record(ErrorCode::NotLeaderOrFollower);
        counts.record(ErrorCode::UnknownServerError);
        assert_eq!(
            counts.snapshot(),
            [("UNKNOWN_SERVER_ERROR", 1), ("NOT_LEADER_OR_FOLLOWER", 2)]
        );
    }

    #[test]
    fn latency_buckets_put_a_sample_in_the_first_bound_that_covers_it() {
        let mut b = LatencyBuckets::default();
        b.record(Duration::from_micros(100));
        b.record(Duration::from_micros(101));
        b.record(Duration::from_secs(3600));
        let h = b.to_histogram();
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[REQUEST_BOUNDS_US.len()], 1);
        assert_eq!(h.sum_us, 100 + 101 + 3_600_000_000);
    }

    fn snapshot(core: usize) -> Snapshot {
        let mut requests = LatencyBuckets::default();
        requests.record(Duration::from_micros(300));
        Snapshot {
            core,
            partitions: vec![PartitionState {
                topic: format!("t{core}"),
                partition: 0,
                log_start_offset: 0,
                log_end_offset: 10,
                high_watermark: 10,
                size_bytes: 1000,
                replicas: 3,
                in_sync_replicas: 2,
                leader: true,
                replica_lags: vec![(2, 3), (3, 0)],
            }],
            traffic: vec![(
                "t0".to_owned(),
                0,
                Traffic {
                    produced_bytes: 100,
                    produced_records: 5,
                    fetched_bytes: 0,
                    fetched_records: 0,
                },
            )],
            requests: vec![("Produce".to_owned(), requests.to_histogram())],
            committed: vec![CommittedOffset {
                group: "g\"1".to_owned(),
                topic: "t0".to_owned(),
                partition: 0,
                offset: 4,
            }],
            ..Snapshot::default()
        }
    }

    /// Every metric the shipped dashboard and the metrics doc name is one the broker renders.
    #[test]
    fn the_dashboard_and_the_doc_name_only_rendered_metrics() {
        let mut full = snapshot(0);
        full.fsync = Some(LatencyBuckets::default().to_histogram());
        full.produce_errors = vec![("CORRUPT_MESSAGE", 1)];
        full.fetch_errors = vec![("OFFSET_OUT_OF_RANGE", 1)];
        full.queues = vec![QueueTotals {
            name: "default".to_owned(),
            runtime_us: 1,
            runs: 1,
            shares: 1000,
        }];
        full.quorum = Some(QuorumMetrics {
            voter: true,
            leader: Some(1),
            applied_offset: 40,
            led: Some((
                42,
                vec![QuorumReplicaLag {
                    node: 2,
                    role: "voter",
                    lag: 2,
                }],
            )),
        });
        let text = render(&[full], Health { ready: true });
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for (file, content) in [
            (
                "grafana-dashboard.json",
                include_str!("../../../docs/grafana-dashboard.json"),
            ),
            ("METRICS.md", include_str!("../../../docs/METRICS.md")),
        ] {
            let mut named = 0;
            for (at, _) in content.match_indices("spate_") {
                let name: String = content[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name);
                assert!(
                    families.contains(&family),
                    "{file} names {name}, not rendered"
                );
                named += 1;
            }
            assert!(named >= 10, "{file} names only {named} metrics");
        }
    }

    #[test]
    fn each_cores_write_buffer_pool_is_its_own_series() {
        let mut cores = [snapshot(0), snapshot(1)];
        for (i, core) in cores.iter_mut().enumerate() {
            core.pool = PoolStats {
                bytes_max: 64 << 20,
                bytes_used: (i + 1) << 20,
                shrunk: 3 + i as u64,
                overdrafts: i as u64,
                cache_bytes_max: 16 << 20,
                cache_bytes: 4096,
                ..PoolStats::default()
            };
        }
        let text = render(&cores, Health { ready: true });
        for expected in [
            "spate_write_buffer_bytes{core=\"0\"} 1048576",
            "spate_write_buffer_bytes{core=\"1\"} 2097152",
            "spate_write_buffer_budget_bytes{core=\"1\"} 67108864",
            "spate_write_buffers_shrunk_total{core=\"1\"} 4",
            "spate_write_buffer_overdrafts_total{core=\"0\"} 0",
            "spate_tail_cache_bytes{core=\"0\"} 4096",
            "spate_tail_cache_budget_bytes{core=\"0\"} 16777216",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "no {expected} in\n{text}"
            );
        }
    }

    #[test]
    fn render_sums_cores_and_announces_each_family_once() {
        let text = render(&[snapshot(0), snapshot(1)], Health { ready: true });
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .to_owned()
        };
        assert_eq!(
            line("spate_partition_produced_records_total{"),
            "spate_partition_produced_records_total{topic=\"t0\",partition=\"0\"} 10"
        );
        assert_eq!(
            line("spate_request_duration_seconds_count"),
            "spate_request_duration_seconds_count{api=\"Produce\"} 2"
        );
        assert_eq!(
            line("spate_consumer_group_lag{"),
            "spate_consumer_group_lag{group=\"g\\\"1\",topic=\"t0\",partition=\"0\"} 6"
        );
        assert_eq!(line("spate_ready "), "spate_ready 1");
        assert_eq!(
            line("spate_partition_replica_lag_records{topic=\"t1\""),
            "spate_partition_replica_lag_records{topic=\"t1\",partition=\"0\",replica=\"2\"} 3"
        );
        let lags: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("spate_partition_replica_lag_records{"))
            .collect();
        assert_eq!(lags.len(), 4, "two followers of t0/0 and of t1/0: {lags:?}");
        let mut families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let count = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), count, "a family announced twice");
        // Every sample belongs to the family announced last before it.
        let mut current = "";
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                assert!(l.starts_with(current), "{l} outside its family {current}");
            }
        }
    }
}
