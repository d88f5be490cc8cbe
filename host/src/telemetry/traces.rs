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

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanExporter, SpanLinks, SpanProcessor,
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
    sink: Option<Arc<BatchSpanProcessor>>,
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

/// Where spans go, when they are exported.
fn endpoint(config: &TelemetryConfig) -> Option<Option<String>> {
    if env_true("OTEL_SDK_DISABLED") {
        return None;
    }
    if let Some(base) = &config.otlp_endpoint {
        return Some(Some(format!("{}/v1/traces", base.trim_end_matches('/'))));
    }
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .then_some(None)
}

fn env_true(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl Tracing {
    /// The traces `config` (and the `OTEL_*` variables) ask for; `consumer` is the
    /// daemon's consumer name, its `service.instance.id`. Fails on a protocol other than
    /// OTLP/HTTP with protobuf, or an exporter that cannot be built.
    pub fn start(config: &TelemetryConfig, consumer: &str) -> Result<Self> {
        let Some(url) = endpoint(config) else {
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
            if let Ok(protocol) = std::env::var(var)
                && !protocol.trim().is_empty()
                && protocol.trim() != "http/protobuf"
            {
                bail!(
                    "{var}={protocol:?}: Sluice exports traces over OTLP/HTTP with protobuf only; set it to \"http/protobuf\" (or unset it) and point the endpoint at the collector's OTLP/HTTP port (4318 by default)"
                );
            }
        }
        // An https:// collector goes through rustls with the provider Sluice uses for
        // Redis.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(url) = &url {
            builder = builder.with_endpoint(url.clone());
        }
        let exporter = builder
            .build()
            .context("cannot set up the OTLP trace exporter (check [telemetry] otlp_endpoint and the OTEL_EXPORTER_OTLP_* variables)")?;
        let mut resource = Resource::builder();
        if let Some(name) = &config.service_name {
            resource = resource.with_service_name(name.clone());
        } else if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name("sluice");
        }
        let resource = resource
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", consumer.to_owned()),
            ])
            .build();
        let mut processor = BatchSpanProcessor::builder(Counted(exporter)).build();
        processor.set_resource(&resource);
        tracing::info!(
            endpoint = url.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*"),
            "exporting traces over OTLP/HTTP"
        );
        Ok(Self {
            mode: config.traces.unwrap_or(TraceMode::Always),
            sample_ratio: config.sample_ratio,
            sink: Some(Arc::new(processor)),
            scope: scope(),
        })
    }

    /// Sends the spans still queued and stops the export (at the daemon's exit).
    pub fn shutdown(&self, timeout: Duration) {
        if let Some(sink) = &self.sink
            && let Err(e) = sink.shutdown_with_timeout(timeout)
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
            KeyValue::new("sluice.pipeline", names.pipeline),
        ];
        if let Some(p) = names.partition {
            common.push(KeyValue::new(
                "messaging.destination.partition.id",
                p.to_string(),
            ));
        }
        Traces {
            mode: mode.unwrap_or(self.mode),
            sample_ratio: self.sample_ratio,
            sink: self.sink.clone(),
            scope: self.scope.clone(),
            name: format!("process {}", names.input).into(),
            common: common.into(),
        }
    }
}

/// The OTLP exporter, counting the spans it sent and those it could not
/// (`sluice_spans_exported_total`, `sluice_span_export_failures_total`): a collector
/// that is down shows in the metrics, not only in the SDK's log line per failed batch.
#[derive(Debug)]
struct Counted<E>(E);

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.0.export(batch).await;
        let name = match result {
            Ok(()) => "sluice_spans_exported_total",
            Err(_) => "sluice_span_export_failures_total",
        };
        metrics::counter!(name).increment(spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
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
    sink: Option<Arc<BatchSpanProcessor>>,
    scope: InstrumentationScope,
    name: std::borrow::Cow<'static, str>,
    common: Arc<[KeyValue]>,
}

impl Traces {
    /// Gives each entry just delivered (by a read or claim that started at `read`) its
    /// trace, by the pipeline's mode. An entry that has one (handled again as the same
    /// delivery) keeps it.
    pub fn begin(&self, entries: &mut [Entry], read: SystemTime) {
        if self.mode == TraceMode::Off {
            return;
        }
        for entry in entries.iter_mut().filter(|e| e.trace.is_none()) {
            let (parent, state) = trace_context::extract(&entry.fields);
            if parent.is_none() && self.mode == TraceMode::WhenPresent {
                continue;
            }
            // A blocking read starts before the entry exists: its span starts no
            // earlier than the entry was added (its ID's time, by the server's clock).
            let added = SystemTime::UNIX_EPOCH
                + Duration::from_millis(crate::message::StreamId::parse(&entry.id).ms);
            let sample = self.sample_ratio >= 1.0 || rand::random::<f64>() < self.sample_ratio;
            entry.trace = Some(EntryTrace::begin(parent, state, read.max(added), sample));
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
        sink.on_end(child(
            "read",
            (trace.read, handled.0),
            Vec::new(),
            Status::Unset,
        ));
        sink.on_end(child(
            "handle",
            handled,
            vec![
                KeyValue::new("sluice.plugin.digest", digest.to_owned()),
                KeyValue::new("sluice.attempt", i64::from(entry.attempt)),
            ],
            handler_status,
        ));
        if let Some(commit) = commit {
            sink.on_end(child("commit", commit, Vec::new(), Status::Unset));
        }
        sink.on_end(data(
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
