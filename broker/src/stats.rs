//! Request-time statistics per core and per API, logged every `stats-interval-ms`.
//!
//! Kafka's broker exposes the same split (RequestQueueTimeMs, LocalTimeMs, ResponseSendTimeMs):
//! when a client sees a slow acknowledgement, the operator must be able to tell whether the
//! broker was slow and in which stage, or whether the time went elsewhere (client, network).
//! Each request's time is cut into three stages:
//! - `queue`: from the read that completed its frame to the start of its handling. Requests of
//!   one connection are handled one at a time, so a pipelined request waits here for the ones
//!   before it.
//! - `handle`: the handler, including waits for the partition's log and for other cores.
//! - `send`: writing the response to the socket.
//!
//! Produce also records `append`: the time each partition's `Log::append` took, lock wait
//! included, so a slow Produce can be pinned on the log or on the rest of the handler.
//!
//! Recording is a few array increments per request (HdrHistogram), never per record; the
//! histograms have fixed bounds, so memory is bounded by the number of APIs.

use std::cell::RefCell;
use std::time::Duration;

use hdrhistogram::Histogram;
use spate_wire::kafka_protocol::messages::ApiKey;
use tracing::info;

/// Longest time a histogram resolves; longer samples are clamped to it (and still counted).
const SAMPLE_US_MAX: u64 = 60_000_000;
/// Significant decimal digits kept: 1% resolution, ~30 KiB per histogram.
const SIGNIFICANT_DIGITS: u8 = 2;
/// API keys tracked; a key at or above it (none is advertised) is not recorded.
const API_KEYS_MAX: usize = 80;

/// One request's time, split by stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestTimes {
    pub queue: Duration,
    pub handle: Duration,
    pub send: Duration,
}

struct ApiStats {
    total: Histogram<u64>,
    queue: Histogram<u64>,
    handle: Histogram<u64>,
    send: Histogram<u64>,
    /// Total time at Prometheus' fixed bounds, never reset (the histograms above are, at every
    /// log line).
    cumulative: crate::metrics::LatencyBuckets,
}

impl ApiStats {
    fn new() -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, SAMPLE_US_MAX, SIGNIFICANT_DIGITS)
                .expect("constant bounds are valid")
        };
        ApiStats {
            total: histogram(),
            queue: histogram(),
            handle: histogram(),
            send: histogram(),
            cumulative: crate::metrics::LatencyBuckets::default(),
        }
    }
}

/// Histograms of one core. Not shared: each core logs its own.
pub struct CoreStats {
    apis: RefCell<Vec<Option<ApiStats>>>,
    append: RefCell<Histogram<u64>>,
}

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            apis: RefCell::new((0..API_KEYS_MAX).map(|_| None).collect()),
            append: RefCell::new(
                Histogram::new_with_bounds(1, SAMPLE_US_MAX, SIGNIFICANT_DIGITS)
                    .expect("constant bounds are valid"),
            ),
        }
    }
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, SAMPLE_US_MAX)
}

impl CoreStats {
    /// Records one request of API `api_key` (the raw key from the frame).
    pub fn record_request(&self, api_key: i16, times: RequestTimes) {
        let Ok(index) = usize::try_from(api_key) else {
            return;
        };
        let mut apis = self.apis.borrow_mut();
        let Some(slot) = apis.get_mut(index) else {
            return;
        };
        let stats = slot.get_or_insert_with(ApiStats::new);
        let total = times.queue + times.handle + times.send;
        stats.total.saturating_record(micros(total));
        stats.queue.saturating_record(micros(times.queue));
        stats.handle.saturating_record(micros(times.handle));
        stats.send.saturating_record(micros(times.send));
        stats.cumulative.record(total);
    }

    /// Every API's request times since the start, by API name, for the metrics.
    pub fn request_latency(&self) -> Vec<(String, crate::metrics::Histogram)> {
        self.apis
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(key, slot)| {
                Some((api_name(key), slot.as_ref()?.cumulative.to_histogram()))
            })
            .collect()
    }

    /// Records the time of one `Log::append` call.
    pub fn record_append(&self, elapsed: Duration) {
        self.append.borrow_mut().saturating_record(micros(elapsed));
    }

    /// Logs one line per API that saw requests since the last call, then starts over.
    pub fn log_and_reset(&self, core: usize, interval: Duration) {
        let mut apis = self.apis.borrow_mut();
        for (key, slot) in apis.iter_mut().enumerate() {
            let Some(stats) = slot else { continue };
            if stats.total.is_empty() {
                continue;
            }
            let api = api_name(key);
            let (total, queue, handle, send) =
                (&stats.total, &stats.queue, &stats.handle, &stats.send);
            // One field per percentile, so JSON logs can be queried without parsing strings.
            info!(
                core,
                api = %api,
                interval_ms = interval.as_millis() as u64,
                requests = total.len(),
                total_p50_us = total.value_at_quantile(0.5),
                total_p99_us = total.value_at_quantile(0.99),
                total_p999_us = total.value_at_quantile(0.999),
                total_max_us = total.max(),
                queue_p50_us = queue.value_at_quantile(0.5),
                queue_p99_us = queue.value_at_quantile(0.99),
                queue_max_us = queue.max(),
                handle_p50_us = handle.value_at_quantile(0.5),
                handle_p99_us = handle.value_at_quantile(0.99),
                handle_max_us = handle.max(),
                send_p50_us = send.value_at_quantile(0.5),
                send_p99_us = send.value_at_quantile(0.99),
                send_max_us = send.max(),
                "request time"
            );
            stats.total.reset();
            stats.queue.reset();
            stats.handle.reset();
            stats.send.reset();
        }
        let mut append = self.append.borrow_mut();
        if !append.is_empty() {
            info!(
                core,
                interval_ms = interval.as_millis() as u64,
                appends = append.len(),
                append_p50_us = append.value_at_quantile(0.5),
                append_p99_us = append.value_at_quantile(0.99),
                append_p999_us = append.value_at_quantile(0.999),
                append_max_us = append.max(),
                "log append time"
            );
            append.reset();
        }
        // The write buffers' and tail caches' budgets (cumulative counts since the start): a
        // budget too small for the partitions written shows as `shrunk` and `overdrafts`
        // growing, and appends then wait for their own writes.
        let pool = spate_storage::pool::stats();
        info!(
            core,
            write_buffer_bytes_max = pool.bytes_max,
            write_buffer_bytes_used = pool.bytes_used,
            write_buffer_bytes_peak = pool.bytes_peak,
            write_buffers_shrunk = pool.shrunk,
            write_buffer_overdrafts = pool.overdrafts,
            tail_cache_bytes_max = pool.cache_bytes_max,
            tail_cache_bytes = pool.cache_bytes,
            "write buffer pool"
        );
    }
}

/// An API's name as Kafka's sources spell it (`Produce`), or `api-<key>`.
fn api_name(key: usize) -> String {
    i16::try_from(key)
        .ok()
        .and_then(|key| ApiKey::try_from(key).ok())
        .map_or_else(|| format!("api-{key}"), |api| format!("{api:?}"))
}

/// Logs `core`'s statistics every `interval` until shutdown, and once more at shutdown so a
/// short run's numbers are not lost.
pub async fn log_loop(
    core: std::rc::Rc<crate::core::Core>,
    interval: Duration,
    shutdown: std::sync::Arc<crate::runtime::ShutdownFlag>,
) {
    let mut started = std::time::Instant::now();
    loop {
        let stop = futures_lite::future::or(
            async {
                glommio::timer::sleep(interval).await;
                false
            },
            async {
                shutdown.wait().await;
                true
            },
        )
        .await;
        core.stats.log_and_reset(core.id, started.elapsed());
        started = std::time::Instant::now();
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_api_and_ignores_unknown_keys() {
        let stats = CoreStats::default();
        let times = RequestTimes {
            queue: Duration::from_micros(10),
            handle: Duration::from_micros(200),
            send: Duration::from_micros(5),
        };
        stats.record_request(0, times);
        stats.record_request(0, times);
        stats.record_request(-1, times);
        stats.record_request(i16::MAX, times);
        let apis = stats.apis.borrow();
        let produce = apis[0].as_ref().expect("produce recorded");
        assert_eq!(produce.total.len(), 2);
        assert!(produce.total.equivalent(produce.total.max(), 215));
        assert_eq!(produce.queue.max(), 10);
        assert_eq!(apis.iter().flatten().count(), 1);
    }

    #[test]
    fn samples_beyond_the_bound_are_clamped_not_lost() {
        let stats = CoreStats::default();
        stats.record_append(Duration::from_secs(3600));
        stats.record_append(Duration::ZERO);
        let append = stats.append.borrow();
        assert_eq!(append.len(), 2);
        assert!(append.equivalent(append.max(), SAMPLE_US_MAX));
        assert_eq!(append.min(), 1);
    }

    #[test]
    fn log_and_reset_starts_over() {
        let stats = CoreStats::default();
        stats.record_request(3, RequestTimes::default());
        stats.record_append(Duration::from_micros(7));
        stats.log_and_reset(0, Duration::from_secs(1));
        assert!(stats.apis.borrow()[3].as_ref().unwrap().total.is_empty());
        assert!(stats.append.borrow().is_empty());
    }
}
