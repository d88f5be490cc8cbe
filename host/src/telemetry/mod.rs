//! Metrics (the Prometheus recorder and each pipeline's instruments) and traces
//! ([`traces`]: OpenTelemetry spans of the entries handled, exported over OTLP).
//!
//! Every series, with its type, labels and help, is listed once in [`describe::METRICS`]:
//! the recorder's `# HELP` lines and the book's metrics reference
//! (`docs/src/reference/metrics.md`) both come from that list.

pub(crate) mod describe;
pub mod traces;

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => {
                describe::describe();
                handle
            }
            // Another recorder is installed (an embedding program's): render an empty one.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// The instruments of one pipeline's `handle` calls.
#[derive(Clone)]
pub struct CallMetrics {
    /// `handle` wall time.
    duration: Histogram,
    /// Calls that ran past `limits.throttle_after` and were throttled.
    throttled: Counter,
    /// `handle-batch` calls that failed as a whole (their entries then went one at a
    /// time), and when that was last logged.
    batch_fallbacks: Counter,
    fallback_logged: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl CallMetrics {
    /// Counts one call that took `elapsed`.
    pub fn record(&self, elapsed: std::time::Duration, throttled: bool) {
        self.duration.record(elapsed.as_secs_f64());
        if throttled {
            self.throttled.increment(1);
        }
    }

    /// Counts a call of batch export `export` (`handle-batch` or `handle-packed`) with
    /// `entries` that failed as a whole with `error`, and logs it at WARN at most once a
    /// minute: a batch export that keeps failing costs a fresh instance and a call per
    /// entry each time.
    pub fn batch_fallback(&self, export: &str, entries: usize, error: &dyn std::fmt::Display) {
        self.batch_fallbacks.increment(1);
        let mut logged = self
            .fallback_logged
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if logged.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(60)) {
            *logged = Some(std::time::Instant::now());
            tracing::warn!(entries, error = %error, "{export} failed as a whole; its entries are handled one at a time with handle (counted in sluice_batch_fallbacks_total; logged at most once a minute)");
        }
    }
}

/// A gauge of `pipeline` (and `partition`).
fn gauge(name: &'static str, pipeline: &str, partition: Option<u32>) -> Gauge {
    match partition {
        Some(p) => {
            metrics::gauge!(name, "pipeline" => pipeline.to_owned(), "partition" => p.to_string())
        }
        None => metrics::gauge!(name, "pipeline" => pipeline.to_owned()),
    }
}

/// A gauge of `pipeline` (and `partition`) with one more label.
fn labelled(
    name: &'static str,
    pipeline: &str,
    partition: Option<u32>,
    (key, value): (&'static str, &'static str),
) -> Gauge {
    match partition {
        Some(p) => {
            metrics::gauge!(name, "pipeline" => pipeline.to_owned(), "partition" => p.to_string(), key => value)
        }
        None => metrics::gauge!(name, "pipeline" => pipeline.to_owned(), key => value),
    }
}

/// One pipeline's instruments, created once so the hot path only touches atomics.
#[derive(Clone)]
pub struct PipelineMetrics {
    pipeline: String,
    /// Entries read from Redis.
    pub read: Counter,
    /// Entries whose outputs were committed.
    pub committed: Counter,
    /// Entries left pending for a retry.
    pub retried: Counter,
    /// Entries dead-lettered.
    pub dead_lettered: Counter,
    /// Entries a commit found unowned (nothing written for them).
    pub unowned: Counter,
    /// What each `handle` call cost.
    pub calls: CallMetrics,
    /// Commit time minus the entry's ID timestamp.
    pub end_to_end: Histogram,
    /// Entries pending in the group.
    pub pending: Gauge,
    /// Entries not yet delivered to the group.
    pub lag: Gauge,
    /// Entries not yet acknowledged (lag plus pending), `lag="exact"`.
    pub backlog_exact: Gauge,
    /// The same, `lag="estimated"` (Redis could not tell the lag).
    pub backlog_estimated: Gauge,
    /// Backlog over the recent rate, in seconds.
    pub drain: Gauge,
    /// 1 while the pipeline can reach and use Redis.
    pub up: Gauge,
    /// Entries pending for no consumer at commit whose outputs were written.
    pub adopted: Counter,
    /// Consumer groups created again after they were lost.
    pub group_recreated: Counter,
    /// Handler state reads checked by committed entries.
    pub state_read: Counter,
    /// Handler state writes applied by committed entries.
    pub state_written: Counter,
    /// Entries handled again because state they read changed before their commit.
    pub state_conflicts: Counter,
}

impl PipelineMetrics {
    /// The instruments of `pipeline`, with its gauges (`pending`, `lag`, `up`) labelled
    /// with the `partition` too for a partition of a partitioned pipeline.
    pub fn new(pipeline: &str, partition: Option<u32>) -> Self {
        prometheus();
        let p = pipeline.to_owned();
        // Counted by the registry when a plugin version is deployed or refused;
        // registered here so that they read 0 from the start.
        metrics::counter!("sluice_plugin_reloads_total", "pipeline" => p.clone()).increment(0);
        metrics::counter!("sluice_plugin_load_failures_total", "pipeline" => p.clone())
            .increment(0);
        metrics::counter!("sluice_pipeline_restarts_total", "pipeline" => p.clone()).increment(0);
        // Every kind of failure reads 0 until one happens (Prometheus's guidance: export
        // the series you know may exist, so that rates and alerts see them).
        for kind in crate::message::HandlerError::KINDS {
            metrics::counter!("sluice_handler_failures_total", "pipeline" => p.clone(), "kind" => kind)
                .increment(0);
        }
        Self {
            read: metrics::counter!("sluice_messages_read_total", "pipeline" => p.clone()),
            committed: metrics::counter!("sluice_messages_committed_total", "pipeline" => p.clone()),
            retried: metrics::counter!("sluice_messages_retried_total", "pipeline" => p.clone()),
            dead_lettered: metrics::counter!("sluice_messages_dead_lettered_total", "pipeline" => p.clone()),
            unowned: metrics::counter!("sluice_entries_unowned_total", "pipeline" => p.clone()),
            calls: CallMetrics {
                duration: metrics::histogram!("sluice_handler_duration_seconds", "pipeline" => p.clone()),
                throttled: metrics::counter!("sluice_handler_throttled_total", "pipeline" => p.clone()),
                batch_fallbacks: metrics::counter!("sluice_batch_fallbacks_total", "pipeline" => p.clone()),
                fallback_logged: Default::default(),
            },
            end_to_end: metrics::histogram!("sluice_end_to_end_latency_seconds", "pipeline" => p.clone()),
            pending: gauge("sluice_pending", &p, partition),
            lag: gauge("sluice_lag", &p, partition),
            backlog_exact: labelled("sluice_backlog", &p, partition, ("lag", "exact")),
            backlog_estimated: labelled("sluice_backlog", &p, partition, ("lag", "estimated")),
            drain: gauge("sluice_drain_seconds", &p, partition),
            up: gauge("sluice_pipeline_up", &p, partition),
            adopted: metrics::counter!("sluice_entries_adopted_total", "pipeline" => p.clone()),
            group_recreated: metrics::counter!("sluice_consumer_group_recreated_total", "pipeline" => p.clone()),
            state_read: metrics::counter!("sluice_state_reads_total", "pipeline" => p.clone()),
            state_written: metrics::counter!("sluice_state_writes_total", "pipeline" => p.clone()),
            state_conflicts: metrics::counter!("sluice_state_conflicts_total", "pipeline" => p.clone()),
            pipeline: p,
        }
    }

    /// Counts a Redis error with `code`.
    pub fn redis_error(&self, code: &str) {
        metrics::counter!("sluice_redis_errors_total", "pipeline" => self.pipeline.clone(), "code" => code.to_owned()).increment(1);
    }

    /// Counts a handler failure of `kind` (trap, timeout, limit, reject, retry...).
    pub fn failure(&self, kind: &'static str) {
        metrics::counter!("sluice_handler_failures_total", "pipeline" => self.pipeline.clone(), "kind" => kind).increment(1);
    }
}
