//! Traces: each traced delivery of an entry becomes an OpenTelemetry span with its read,
//! handler call and commit as children, exported over OTLP/HTTP.
//!
//! The IDs are chosen when the entry is read (see [`crate::trace_context`]), because its
//! outputs carry the span's ID before the span ends; the spans are written when the
//! delivery is over, with the times each part took, straight to the SDK's batch span
//! processor (its queue, batching and export thread) and the `opentelemetry-otlp`
//! exporter. No tracer is involved: a tracer picks its own IDs.
//!
//! Span names and attributes follow the OpenTelemetry semantic conventions for
//! messaging (<https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/>):
//! a `process {stream}` span of kind consumer with `messaging.system = "redis"`,
//! `messaging.destination.name`, `messaging.consumer.group.name`,
//! `messaging.message.id`; Sluice's own under `sluice.*`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks,
    SpanProcessor,
};

use crate::config::{TelemetryConfig, TraceMode};
use crate::message::Entry;
use crate::trace_context::{self, EntryTrace};

/// The daemon's traces: the default mode and, when spans are exported, the processor
/// they go to. Cheap to clone; every pipeline holds one.
#[derive(Clone)]
pub struct Tracing {
    mode: TraceMode,
    sample_ratio: f64,
    sink: Option<Arc<Sink>>,
    scope: InstrumentationScope,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("mode", &self.mode)
            .field("exporting", &self.sink.is_some())
            .finish()
    }
}

/// The URL spans are posted to, if they are exported. The `OTEL_*` variables win over
/// the config file (as `SLUICE_REDIS_PASSWORD` does), so that a deployment's environment
/// can point a packaged config elsewhere: `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none` turn export off; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
/// the URL as given, `OTEL_EXPORTER_OTLP_ENDPOINT` and `[telemetry] otlp_endpoint` a base
/// to which `/v1/traces` is added (unless it is there already). Rules of the
/// OpenTelemetry specification, "OTLP Exporter Configuration"
/// (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>).
fn endpoint(config: &TelemetryConfig) -> Result<Option<(String, &'static str)>> {
    if env_true("OTEL_SDK_DISABLED") {
        return Ok(None);
    }
    match env("OTEL_TRACES_EXPORTER").as_deref() {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => bail!(
            "OTEL_TRACES_EXPORTER={other:?}: Sluice exports traces with OTLP only; set it to \"otlp\" (or unset it), or to \"none\" to export nothing"
        ),
    }
    let base = |url: &str| {
        let url = url.trim_end_matches('/');
        if url.ends_with("/v1/traces") {
            url.to_owned()
        } else {
            format!("{url}/v1/traces")
        }
    };
    Ok(
        if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some((url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        } else if let Some(url) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some((base(&url), "OTEL_EXPORTER_OTLP_ENDPOINT"))
        } else {
            config
                .otlp_endpoint
                .as_deref()
                .map(|url| (base(url), "[telemetry] otlp_endpoint"))
        },
    )
}

/// A variable's value, trimmed; `None` when unset or blank.
fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn env_true(name: &str) -> bool {
    env(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Spans queued for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`); more are dropped and
/// counted. The SDK's default, 2,048, is two seconds of a pipeline at 250 entries a
/// second (four spans each), and a burst of a few thousand entries overflows it while the
/// collector is fine.
const DEFAULT_QUEUE: usize = 65_536;
/// Spans per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`; the SDK's default is 512).
const DEFAULT_EXPORT_BATCH: usize = 2_048;

impl Tracing {
    /// The traces `config` (and the `OTEL_*` variables) ask for; `consumer` is the
    /// daemon's consumer name, its `service.instance.id`. Fails on a protocol other than
    /// OTLP/HTTP with protobuf, or an exporter that cannot be built.
    pub fn start(config: &TelemetryConfig, consumer: &str) -> Result<Self> {
        // Instruments made before the recorder is installed record nowhere.
        super::prometheus();
        let Some((url, from)) = endpoint(config)? else {
            if config.otlp_endpoint.is_some() {
                tracing::info!(
                    "not exporting traces: OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none overrides [telemetry] otlp_endpoint"
                );
            }
            return Ok(Self {
                mode: config.traces.unwrap_or(TraceMode::WhenPresent),
                sample_ratio: config.sample_ratio,
                sink: None,
                scope: scope(),
            });
        };
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = env(var)
                && protocol != "http/protobuf"
            {
                bail!(
                    "{var}={protocol:?}: Sluice exports traces over OTLP/HTTP with protobuf only; set it to \"http/protobuf\" (or unset it) and point the endpoint at the collector's OTLP/HTTP port (4318 by default)"
                );
            }
        }
        // An https:// collector goes through rustls with the provider Sluice uses for
        // Redis.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .build()
            .with_context(|| {
                format!("cannot set up the OTLP trace exporter for {url} (from {from})")
            })?;
        let mut resource = Resource::builder();
        // The SDK's resource reads OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES); a
        // blank one counts as unset.
        if env("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(
                config
                    .service_name
                    .clone()
                    .unwrap_or_else(|| "sluice".into()),
            );
        }
        let resource = resource
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", consumer.to_owned()),
            ])
            .build();
        let mut batch = BatchConfigBuilder::default();
        let queue = match env("OTEL_BSP_MAX_QUEUE_SIZE") {
            Some(v) => v.parse().with_context(|| {
                format!("OTEL_BSP_MAX_QUEUE_SIZE={v:?} is not a number of spans")
            })?,
            None => {
                batch = batch.with_max_queue_size(DEFAULT_QUEUE);
                DEFAULT_QUEUE
            }
        };
        if env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").is_none() {
            batch = batch.with_max_export_batch_size(DEFAULT_EXPORT_BATCH.min(queue.max(1)));
        }
        let queued = Arc::new(Queued {
            spans: AtomicUsize::new(0),
            max: queue,
        });
        let exporter = Counted {
            exporter,
            queued: queued.clone(),
            failing: Mutex::new(None),
        };
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch.build())
            .build();
        processor.set_resource(&resource);
        for name in [
            "sluice_spans_exported_total",
            "sluice_span_export_failures_total",
            "sluice_spans_dropped_total",
        ] {
            metrics::counter!(name).absolute(0);
        }
        tracing::info!(endpoint = %url, from, queue, "exporting traces over OTLP/HTTP");
        Ok(Self {
            mode: config.traces.unwrap_or(TraceMode::Always),
            sample_ratio: config.sample_ratio,
            sink: Some(Arc::new(Sink { processor, queued })),
            scope: scope(),
        })
    }

    /// Sends the spans still queued and stops the export (at the daemon's exit).
    pub fn shutdown(&self, timeout: Duration) {
        if let Some(sink) = &self.sink
            && let Err(e) = sink.processor.shutdown_with_timeout(timeout)
        {
            tracing::warn!(error = %e, "could not send every span before exit");
        }
    }

    /// A pipeline's traces: `mode` overrides the daemon's; `names` are the span
    /// attributes that name the pipeline (its stream, group, partition).
    pub fn pipeline(&self, mode: Option<TraceMode>, names: PipelineNames) -> Traces {
        let mut common = vec![
            KeyValue::new("messaging.system", "redis"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.name", names.input.clone()),
            KeyValue::new("messaging.consumer.group.name", names.group),
            KeyValue::new("sluice.pipeline", names.pipeline.clone()),
        ];
        if let Some(p) = names.partition {
            common.push(KeyValue::new(
                "messaging.destination.partition.id",
                p.to_string(),
            ));
        }
        const INVALID: &str = "sluice_trace_context_invalid_total";
        let pipeline = names.pipeline.clone();
        let invalid = match names.partition {
            Some(p) => {
                metrics::counter!(INVALID, "pipeline" => pipeline, "partition" => p.to_string())
            }
            None => metrics::counter!(INVALID, "pipeline" => pipeline),
        };
        invalid.absolute(0);
        Traces {
            mode: mode.unwrap_or(self.mode),
            sample_ratio: self.sample_ratio,
            sink: self.sink.clone(),
            scope: self.scope.clone(),
            name: format!("process {}", names.input).into(),
            common: common.into(),
            invalid,
        }
    }
}

/// The batch processor and the count of spans handed to it and not yet exported.
#[derive(Debug)]
struct Sink {
    processor: BatchSpanProcessor,
    queued: Arc<Queued>,
}

/// Spans handed to the processor whose export has not finished, and the most there may
/// be. Kept here because the processor drops spans of a full queue without a count
/// anyone can read; a delivery whose spans do not fit is dropped whole and counted in
/// `sluice_spans_dropped_total`.
#[derive(Debug)]
struct Queued {
    spans: AtomicUsize,
    max: usize,
}

impl Sink {
    /// Hands a delivery's spans to the processor, or drops them all if the queue cannot
    /// take them.
    fn submit(&self, spans: Vec<SpanData>) {
        let n = spans.len();
        let queued = &self.queued;
        let fits = queued
            .spans
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= queued.max).then_some(q + n)
            })
            .is_ok();
        if !fits {
            metrics::counter!("sluice_spans_dropped_total").increment(n as u64);
            return;
        }
        for span in spans {
            self.processor.on_end(span);
        }
    }
}

/// The OTLP exporter, counting the spans it sent and those it could not
/// (`sluice_spans_exported_total`, `sluice_span_export_failures_total`), and logging a
/// failing collector at WARN when it starts failing and then at most once a minute: a
/// collector that is down costs traces, not entries.
#[derive(Debug)]
struct Counted<E> {
    exporter: E,
    queued: Arc<Queued>,
    /// Since when, and how many spans lost, while the collector fails.
    failing: Mutex<Option<Failing>>,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    logged: Instant,
    spans: u64,
}

/// How often a collector that keeps failing is logged again.
const FAILING_LOG_EVERY: Duration = Duration::from_secs(60);

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.exporter.export(batch).await;
        let _ = self
            .queued
            .spans
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(spans))
            });
        let spans = spans as u64;
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(()) => {
                metrics::counter!("sluice_spans_exported_total").increment(spans);
                if let Some(f) = failing.take() {
                    tracing::info!(
                        lost_spans = f.spans,
                        failing_for = ?f.since.elapsed(),
                        "the trace collector takes spans again"
                    );
                }
            }
            Err(e) => {
                metrics::counter!("sluice_span_export_failures_total").increment(spans);
                let now = Instant::now();
                match failing.as_mut() {
                    None => {
                        tracing::warn!(error = %e, "cannot export spans to the trace collector; they are dropped (entries are not affected) until it takes them again");
                        *failing = Some(Failing {
                            since: now,
                            logged: now,
                            spans,
                        });
                    }
                    Some(f) => {
                        f.spans += spans;
                        if now.duration_since(f.logged) >= FAILING_LOG_EVERY {
                            f.logged = now;
                            tracing::warn!(error = %e, lost_spans = f.spans, failing_for = ?f.since.elapsed(), "the trace collector still fails");
                        }
                    }
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("sluice")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// What names a pipeline in its spans.
pub struct PipelineNames {
    pub pipeline: String,
    pub input: String,
    pub group: String,
    pub partition: Option<u32>,
}

/// How a delivery ended, for its span's status and `sluice.outcome`.
#[derive(Debug, Clone)]
pub enum Ended {
    /// Outputs written and the entry acknowledged (or adopted).
    Committed,
    /// Written to the dead-letter stream, for this reason.
    DeadLettered(String),
    /// Left pending for a retry after this failure.
    Retry(String),
    /// Not committed by this delivery (`not owned`, `gone`, `undelivered`, drained...).
    NotCommitted(&'static str),
}

/// One pipeline's traces.
#[derive(Clone)]
pub struct Traces {
    mode: TraceMode,
    sample_ratio: f64,
    sink: Option<Arc<Sink>>,
    scope: InstrumentationScope,
    name: std::borrow::Cow<'static, str>,
    common: Arc<[KeyValue]>,
    /// `sluice_trace_context_invalid_total` of the pipeline.
    invalid: metrics::Counter,
}

impl Traces {
    /// Gives each entry just delivered (by a read or claim that started at `read`) its
    /// trace, by the pipeline's mode. An entry that has one (handled again as the same
    /// delivery) keeps it.
    pub fn begin(&self, entries: &mut [Entry], read: SystemTime) {
        if self.mode == TraceMode::Off {
            return;
        }
        let now = SystemTime::now();
        for entry in entries.iter_mut().filter(|e| e.trace.is_none()) {
            let carried = trace_context::extract(&entry.fields);
            if carried.invalid {
                self.invalid.increment(1);
                tracing::debug!(id = %entry.id, "the entry's traceparent is not valid W3C Trace Context (lower-case hex, version 00, IDs not all zero, one field); it is ignored");
            }
            if carried.parent.is_none() && self.mode == TraceMode::WhenPresent {
                continue;
            }
            // A blocking read starts before the entry exists: its span starts no
            // earlier than the entry was added (its ID's time, by the server's clock),
            // unless that is ahead of this host's clock (an explicit ID, clock skew).
            let added = SystemTime::UNIX_EPOCH
                + Duration::from_millis(crate::message::StreamId::parse(&entry.id).ms);
            let start = if added <= now { read.max(added) } else { read };
            let sample = self.sample_ratio >= 1.0 || rand::random::<f64>() < self.sample_ratio;
            entry.trace = Some(EntryTrace::begin(
                carried.parent,
                carried.state,
                start,
                sample,
            ));
        }
    }

    /// Writes the spans of a delivery that is over: `commit` is when its commit ran (if
    /// one did), `digest` the plugin version that handled it.
    pub fn end(
        &self,
        entry: &Entry,
        digest: &str,
        commit: Option<(SystemTime, SystemTime)>,
        ended: &Ended,
    ) {
        let (Some(sink), Some(trace)) = (&self.sink, &entry.trace) else {
            return;
        };
        if !trace.span.sampled() {
            return;
        }
        let now = SystemTime::now();
        let handled = trace.handled.unwrap_or((now, now));
        let end = commit.map_or(handled.1, |c| c.1).max(handled.1);
        let state = trace
            .state
            .as_deref()
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let span_context = |id: [u8; 8]| {
            SpanContext::new(
                TraceId::from_bytes(trace.span.trace_id),
                SpanId::from_bytes(id),
                TraceFlags::new(trace.span.flags),
                false,
                state.clone(),
            )
        };
        let process_id = trace.span.span_id;
        let (status, outcome) = match ended {
            Ended::Committed => (Status::Unset, "committed"),
            Ended::DeadLettered(why) => (Status::error(why.clone()), "dead-lettered"),
            Ended::Retry(why) => (Status::error(why.clone()), "retry"),
            Ended::NotCommitted(why) => (Status::Unset, *why),
        };
        let handler_status = match ended {
            Ended::DeadLettered(why) | Ended::Retry(why) => Status::error(why.clone()),
            _ => Status::Unset,
        };
        let mut attributes = self.common.to_vec();
        attributes.extend([
            KeyValue::new("messaging.message.id", entry.id.clone()),
            KeyValue::new("sluice.attempt", i64::from(entry.attempt)),
            KeyValue::new("sluice.plugin.digest", digest.to_owned()),
            KeyValue::new("sluice.outcome", outcome),
        ]);
        let data = |span_id: [u8; 8],
                    parent: SpanId,
                    parent_is_remote: bool,
                    kind: SpanKind,
                    name: std::borrow::Cow<'static, str>,
                    (start_time, end_time): (SystemTime, SystemTime),
                    attributes: Vec<KeyValue>,
                    status: Status| SpanData {
            span_context: span_context(span_id),
            parent_span_id: parent,
            parent_span_is_remote: parent_is_remote,
            span_kind: kind,
            name,
            start_time,
            end_time: end_time.max(start_time),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        };
        let child = |name: &'static str, times, attributes, status| {
            data(
                child_id(process_id, name),
                SpanId::from_bytes(process_id),
                false,
                SpanKind::Internal,
                name.into(),
                times,
                attributes,
                status,
            )
        };
        let mut spans = Vec::with_capacity(4);
        spans.push(child(
            "read",
            (trace.read, handled.0),
            Vec::new(),
            Status::Unset,
        ));
        spans.push(child(
            "handle",
            handled,
            vec![
                KeyValue::new("sluice.plugin.digest", digest.to_owned()),
                KeyValue::new("sluice.attempt", i64::from(entry.attempt)),
            ],
            handler_status,
        ));
        if let Some(commit) = commit {
            spans.push(child("commit", commit, Vec::new(), Status::Unset));
        }
        spans.push(data(
            process_id,
            trace
                .parent
                .map_or(SpanId::INVALID, |p| SpanId::from_bytes(p.span_id)),
            trace.parent.is_some(),
            SpanKind::Consumer,
            self.name.clone(),
            (trace.read, end),
            attributes,
            status,
        ));
        sink.submit(spans);
    }
}

/// A child span's ID: derived from its parent's and its name, so that the IDs of one
/// delivery's spans differ and cost no random draw.
fn child_id(parent: [u8; 8], name: &str) -> [u8; 8] {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut hasher);
    name.hash(&mut hasher);
    let id = hasher.finish().to_be_bytes();
    if id == [0; 8] {
        [1, 0, 0, 0, 0, 0, 0, 0]
    } else {
        id
    }
}
