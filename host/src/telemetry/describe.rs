//! Every series Sluice exports, as data: its name, type, labels and help. The recorder
//! is given their `# HELP` lines from this list ([`describe`]), and the book's metrics
//! reference (`docs/src/reference/metrics.md`) is generated from it, so the two cannot
//! drift apart.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// What kind of Prometheus series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution (buckets, sum, count).
    Histogram,
}

impl Kind {
    /// The Prometheus name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported series.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The series name, as in `/metrics`.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Seconds for the series whose name ends in `_seconds`.
    pub seconds: bool,
    /// Its labels; `partition` only on a partitioned pipeline's series.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

const PIPELINE: &[&str] = &["pipeline"];
const PIPELINE_PARTITION: &[&str] = &["pipeline", "partition"];

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        seconds: false,
        labels,
        help,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        seconds: false,
        labels,
        help,
    }
}

const fn seconds(kind: Kind, name: &'static str, help: &'static str) -> Metric {
    let labels = match kind {
        Kind::Gauge => PIPELINE_PARTITION,
        _ => PIPELINE,
    };
    Metric {
        name,
        kind,
        seconds: true,
        labels,
        help,
    }
}

/// Every series Sluice exports.
pub const METRICS: &[Metric] = &[
    counter(
        "sluice_messages_read_total",
        PIPELINE,
        "Entries read from the input stream",
    ),
    counter(
        "sluice_messages_committed_total",
        PIPELINE,
        "Entries whose outputs were committed and which were acknowledged",
    ),
    counter(
        "sluice_messages_retried_total",
        PIPELINE,
        "Entries left pending to be delivered again after a failure",
    ),
    counter(
        "sluice_messages_dead_lettered_total",
        PIPELINE,
        "Entries moved to the dead-letter stream",
    ),
    counter(
        "sluice_entries_unowned_total",
        PIPELINE,
        "Entries a commit found unowned: pending for another consumer, for none, or never delivered as far as the server knows, or under a partition or name lease that moved (nothing written for them)",
    ),
    counter(
        "sluice_handler_failures_total",
        &["pipeline", "kind"],
        "Failed handler calls, by kind (trap, timeout, limit, reject, retry, instantiate)",
    ),
    counter(
        "sluice_handler_throttled_total",
        PIPELINE,
        "Handler calls that ran past limits.throttle_after and were throttled",
    ),
    counter(
        "sluice_batch_fallbacks_total",
        PIPELINE,
        "handle-batch or handle-packed calls that failed as a whole (their entries went one at a time)",
    ),
    counter(
        "sluice_consumers_removed_total",
        &["reason"],
        "Consumers removed from their groups: reason left (a daemon's own, at a clean stop with nothing pending) or idle (idle over remove_idle_consumers_after with nothing pending)",
    ),
    counter(
        "sluice_plugin_reloads_total",
        PIPELINE,
        "New plugin versions swapped in",
    ),
    counter(
        "sluice_plugin_load_failures_total",
        PIPELINE,
        "New plugin versions refused (the running version kept serving)",
    ),
    counter(
        "sluice_shadow_entries_total",
        &["pipeline", "outcome"],
        "Entries offered to an attached candidate plugin (shadow run), by outcome: agree, differ (compared with the live plugin's result), skipped (over its share of the handler time, or behind)",
    ),
    counter(
        "sluice_redis_errors_total",
        &["pipeline", "code"],
        "Redis errors, by code (NOPERM, READONLY, NOGROUP, IO, TIMEOUT...)",
    ),
    counter(
        "sluice_entries_adopted_total",
        PIPELINE,
        "Entries found pending for no consumer at commit whose outputs were written",
    ),
    counter(
        "sluice_consumer_group_recreated_total",
        PIPELINE,
        "Consumer groups created again after they were lost",
    ),
    counter(
        "sluice_pipeline_restarts_total",
        PIPELINE,
        "Pipelines started again after a panic (a bug in Sluice)",
    ),
    counter(
        "sluice_state_reads_total",
        PIPELINE,
        "Handler state reads checked by committed entries",
    ),
    counter(
        "sluice_state_writes_total",
        PIPELINE,
        "Handler state writes applied by committed entries",
    ),
    counter(
        "sluice_state_conflicts_total",
        PIPELINE,
        "Entries handled again after a state conflict: their handler state met the batch's uncommitted writes, or changed before their commit",
    ),
    counter(
        "sluice_trace_context_invalid_total",
        PIPELINE_PARTITION,
        "Entries whose traceparent field was not valid (ignored)",
    ),
    counter(
        "sluice_spans_exported_total",
        &[],
        "Spans the OTLP exporter sent",
    ),
    counter(
        "sluice_span_export_failures_total",
        &[],
        "Spans the OTLP exporter could not send",
    ),
    counter(
        "sluice_spans_dropped_total",
        &[],
        "Spans dropped because the export queue was full",
    ),
    gauge(
        "sluice_pending",
        PIPELINE_PARTITION,
        "Entries delivered to the group and not yet acknowledged",
    ),
    gauge(
        "sluice_lag",
        PIPELINE_PARTITION,
        "Entries in the stream not yet delivered to the group",
    ),
    gauge(
        "sluice_backlog",
        &["pipeline", "partition", "lag"],
        "Entries not yet acknowledged: lag plus pending (lag=\"estimated\" when Redis could not tell the lag)",
    ),
    gauge(
        "sluice_pipeline_up",
        PIPELINE_PARTITION,
        "1 while the pipeline can reach and use Redis, 0 in state error",
    ),
    gauge(
        "sluice_redis_eviction_policy_safe",
        &["redis"],
        "1 when Redis's maxmemory-policy is noeviction, 0 when it may evict keys on its own, -1 when it could not be checked",
    ),
    gauge(
        "sluice_redis_persistent",
        &["redis"],
        "1 when Redis keeps its data on disk (RDB or AOF), 0 when it keeps nothing, -1 when it could not be checked",
    ),
    seconds(
        Kind::Gauge,
        "sluice_drain_seconds",
        "Backlog over the rate of the last minute: how long the entries waiting take to handle (+Inf when none moves)",
    ),
    seconds(
        Kind::Histogram,
        "sluice_handler_duration_seconds",
        "Wall time of handler calls",
    ),
    seconds(
        Kind::Histogram,
        "sluice_end_to_end_latency_seconds",
        "Commit time minus the time in the entry's ID, of committed entries",
    ),
    counter(
        "sluice_http_requests_total",
        HTTP,
        "Outgoing HTTP requests of handlers, by the allowed_outbound_hosts entry (host) they matched",
    ),
    counter(
        "sluice_http_request_errors_total",
        &["pipeline", "host", "kind"],
        "Outgoing HTTP requests (or their response bodies) that failed, by kind: denied (a private address with block_private_networks), dns, connect, connect_timeout, response_timeout, tls, body_too_large, protocol",
    ),
    Metric {
        name: "sluice_http_request_duration_seconds",
        kind: Kind::Histogram,
        seconds: true,
        labels: HTTP,
        help: "Time from an outgoing HTTP request's start to its response head (or its failure)",
    },
    counter(
        "sluice_http_requests_denied_total",
        PIPELINE,
        "Outgoing HTTP requests refused before any connection: origin not granted, a URL or Host that may not be sent, or a private address with block_private_networks",
    ),
];

const HTTP: &[&str] = &["pipeline", "host"];

/// Describes every series (their `# HELP` and unit lines in `/metrics`).
pub(super) fn describe() {
    for metric in METRICS {
        let (name, help) = (metric.name, metric.help);
        match (metric.kind, metric.seconds) {
            (Kind::Counter, _) => describe_counter!(name, help),
            (Kind::Gauge, false) => describe_gauge!(name, help),
            (Kind::Gauge, true) => describe_gauge!(name, Unit::Seconds, help),
            (Kind::Histogram, false) => describe_histogram!(name, help),
            (Kind::Histogram, true) => describe_histogram!(name, Unit::Seconds, help),
        }
    }
}
