//! The `# HELP` text of every series Sluice exports, given to the recorder once.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every series (their `# HELP` and unit lines in `/metrics`).
pub(super) fn describe() {
    counters();
    gauges();
    describe_histogram!(
        "sluice_handler_duration_seconds",
        Unit::Seconds,
        "Wall time of handler calls"
    );
    describe_histogram!(
        "sluice_end_to_end_latency_seconds",
        Unit::Seconds,
        "Commit time minus the time in the entry's ID, of committed entries"
    );
}

fn counters() {
    for (name, help) in [
        (
            "sluice_messages_read_total",
            "Entries read from the input stream",
        ),
        (
            "sluice_messages_committed_total",
            "Entries whose outputs were committed and which were acknowledged",
        ),
        (
            "sluice_messages_retried_total",
            "Entries left pending to be delivered again after a failure",
        ),
        (
            "sluice_messages_dead_lettered_total",
            "Entries moved to the dead-letter stream",
        ),
        (
            "sluice_commit_conflicts_total",
            "Commits that found the entry owned by another consumer (nothing written)",
        ),
        (
            "sluice_handler_failures_total",
            "Failed handler calls, by kind (trap, timeout, limit, reject, retry, instantiate)",
        ),
        (
            "sluice_handler_throttled_total",
            "Handler calls that ran past limits.throttle_after and were throttled",
        ),
        (
            "sluice_batch_fallbacks_total",
            "handle-batch or handle-packed calls that failed as a whole (their entries went one at a time)",
        ),
        (
            "sluice_consumers_removed_total",
            "Consumers removed from their groups: reason left (a daemon's own, at a clean stop with nothing pending) or idle (idle over remove_idle_consumers_after with nothing pending)",
        ),
        (
            "sluice_plugin_reloads_total",
            "New plugin versions swapped in",
        ),
        (
            "sluice_plugin_load_failures_total",
            "New plugin versions refused (the running version kept serving)",
        ),
        (
            "sluice_redis_errors_total",
            "Redis errors, by code (NOPERM, READONLY, NOGROUP, IO, TIMEOUT...)",
        ),
        (
            "sluice_entries_adopted_total",
            "Entries found pending for no consumer at commit whose outputs were written",
        ),
        (
            "sluice_consumer_group_recreated_total",
            "Consumer groups created again after they were lost",
        ),
        (
            "sluice_pipeline_restarts_total",
            "Pipelines started again after a panic (a bug in Sluice)",
        ),
        (
            "sluice_state_reads_total",
            "Handler state reads checked by committed entries",
        ),
        (
            "sluice_state_writes_total",
            "Handler state writes applied by committed entries",
        ),
        (
            "sluice_state_conflicts_total",
            "Entries handled again because state they read changed before their commit",
        ),
        (
            "sluice_trace_context_invalid_total",
            "Entries whose traceparent field was not valid (ignored)",
        ),
        (
            "sluice_spans_exported_total",
            "Spans the OTLP exporter sent",
        ),
        (
            "sluice_span_export_failures_total",
            "Spans the OTLP exporter could not send",
        ),
        (
            "sluice_spans_dropped_total",
            "Spans dropped because the export queue was full",
        ),
    ] {
        describe_counter!(name, help);
    }
}

fn gauges() {
    for (name, help) in [
        (
            "sluice_pending",
            "Entries delivered to the group and not yet acknowledged",
        ),
        (
            "sluice_lag",
            "Entries in the stream not yet delivered to the group",
        ),
        (
            "sluice_backlog",
            "Entries not yet acknowledged: lag plus pending (lag=\"estimated\" when Redis could not tell the lag)",
        ),
        (
            "sluice_pipeline_up",
            "1 while the pipeline can reach and use Redis, 0 in state error",
        ),
        (
            "sluice_redis_eviction_policy_safe",
            "1 when Redis's maxmemory-policy is noeviction, 0 when it may evict keys on its own, -1 when it could not be checked",
        ),
        (
            "sluice_redis_persistent",
            "1 when Redis keeps its data on disk (RDB or AOF), 0 when it keeps nothing, -1 when it could not be checked",
        ),
    ] {
        describe_gauge!(name, help);
    }
    describe_gauge!(
        "sluice_drain_seconds",
        Unit::Seconds,
        "Backlog over the rate of the last minute: how long the entries waiting take to handle (+Inf when none moves)"
    );
}
