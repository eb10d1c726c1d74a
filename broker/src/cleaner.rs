//! Each core's log cleaner: a low-priority task that compacts the partitions of
//! `cleanup.policy=compact` topics this core owns, within an I/O budget, so produce and fetch
//! latency hold while it runs.
//!
//! Every `log-cleaner-backoff-ms` it visits its compacted partitions one at a time and calls
//! [`spate_storage::Log::clean`], which decides from the dirty ratio, the compaction lag and
//! tombstone horizons whether there is work. The storage side does the rewriting and the
//! crash-safe swap; this module only schedules, throttles and reports.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{Latency, Shares};
use spate_storage::compaction::OffsetMap;
use spate_storage::{IoBudget, StorageError};
use tracing::{error, info, warn};

use crate::core::{now_ms, Core};
use crate::runtime::ShutdownFlag;

/// The cleaner's share of a core next to the default queue's 1000 (connections, maintenance):
/// it gets CPU time when the core is idle and only a sliver when it is busy.
const CLEANER_SHARES: usize = 50;
/// Longest stretch the cleaner runs before it lets the other task queues run. glommio only
/// preempts a queue on its timer (100 ms by default) unless the task yields, and decoding,
/// hashing and re-encoding batches is CPU work between the I/O.
const CLEANER_SLICE: Duration = Duration::from_micros(500);
/// How often a sleeping cleaner checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Starts this core's cleaner in its own low-priority task queue. The task ends soon after
/// shutdown is triggered: a cleaning in progress stops after its current batch (a group being
/// swapped finishes its swap).
pub fn spawn(core: Rc<Core>, shutdown: Arc<ShutdownFlag>) -> glommio::Task<()> {
    let queue = glommio::executor().create_task_queue(
        Shares::Static(CLEANER_SHARES),
        Latency::NotImportant,
        "log-cleaner",
    );
    core.metrics.name_queue(queue, "log-cleaner");
    glommio::spawn_local_into(run(core, shutdown), queue).expect("the cleaner queue exists")
}

async fn run(core: Rc<Core>, shutdown: Arc<ShutdownFlag>) {
    let settings = core.config.cleaner.clone();
    // Allocated at the first compacted partition: cores without any never pay for it.
    let mut map: Option<OffsetMap> = None;
    let mut uncleanable: Vec<(String, i32)> = Vec::new();
    while !shutdown.is_triggered() {
        let mut budget = Throttle::new(settings.io_bytes_per_second_max, &shutdown);
        for (topic, index, partition, clean) in core.compacted_partitions() {
            if shutdown.is_triggered() {
                break;
            }
            if uncleanable.iter().any(|(t, i)| *t == topic && *i == index) {
                continue;
            }
            let map = map.get_or_insert_with(|| OffsetMap::new(settings.dedupe_bytes_max));
            let mut state = partition.cleaner.get();
            let started = Instant::now();
            let result = partition
                .log
                .clean(map, &mut state, &clean, now_ms(), &mut budget)
                .await;
            partition.cleaner.set(state);
            match result {
                Ok(Some(outcome)) => info!(
                    core = core.id,
                    topic = %topic,
                    partition = index,
                    cleaned_up_to = %outcome.cleaned_up_to,
                    segments_before = outcome.segments_before,
                    segments_after = outcome.segments_after,
                    bytes_before = outcome.bytes_before,
                    bytes_after = outcome.bytes_after,
                    records_removed = outcome.records_removed,
                    tombstones_removed = outcome.tombstones_removed,
                    aborted_records_removed = outcome.aborted_records_removed,
                    markers_removed = outcome.markers_removed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "log cleaned"
                ),
                Ok(None) => {}
                Err(e @ StorageError::UncleanableBatch { .. }) => {
                    error!(core = core.id, topic = %topic, partition = index, error = %e,
                        "partition marked uncleanable until restart");
                    uncleanable.push((topic, index));
                }
                Err(e) => {
                    warn!(core = core.id, topic = %topic, partition = index, error = %e, "cleaning failed")
                }
            }
        }
        let pause_started = Instant::now();
        while !shutdown.is_triggered()
            && pause_started.elapsed() < Duration::from_millis(settings.backoff_ms)
        {
            glommio::timer::sleep(SHUTDOWN_POLL.min(Duration::from_millis(settings.backoff_ms)))
                .await;
        }
    }
}

/// A rate limit over one pass of the cleaner: after each read or write the cleaner sleeps
/// until its bytes so far fit `bytes_per_second`, and it gives the core to the other task
/// queues at least every [`CLEANER_SLICE`].
struct Throttle<'a> {
    bytes_per_second: u64,
    started: Instant,
    spent: u64,
    yielded: Instant,
    shutdown: &'a ShutdownFlag,
}

impl<'a> Throttle<'a> {
    fn new(bytes_per_second: u64, shutdown: &'a ShutdownFlag) -> Self {
        assert!(bytes_per_second > 0);
        Throttle {
            bytes_per_second,
            started: Instant::now(),
            spent: 0,
            yielded: Instant::now(),
            shutdown,
        }
    }
}

impl IoBudget for Throttle<'_> {
    async fn spend(&mut self, bytes: u64) {
        self.spent += bytes;
        if !self.shutdown.is_triggered() {
            let due = Duration::from_secs_f64(self.spent as f64 / self.bytes_per_second as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                glommio::timer::sleep(due - elapsed).await;
                self.yielded = Instant::now();
                return;
            }
        }
        if self.yielded.elapsed() >= CLEANER_SLICE {
            glommio::executor().yield_task_queue_now().await;
            self.yielded = Instant::now();
        }
    }

    fn stop_requested(&self) -> bool {
        self.shutdown.is_triggered()
    }
}
