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

mod export;
mod spans;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::SpanProcessor;

use crate::config::{TelemetryConfig, TraceMode};
use export::Sink;

pub use spans::{Ended, Traces};

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

impl Tracing {
    /// The traces `config` (and the `OTEL_*` variables) ask for; `consumer` is the
    /// daemon's consumer name, its `service.instance.id`. Fails on a protocol other than
    /// OTLP/HTTP with protobuf, or an exporter that cannot be built.
    pub fn start(config: &TelemetryConfig, consumer: &str) -> Result<Self> {
        // Instruments made before the recorder is installed record nowhere.
        super::prometheus();
        let Some((url, from)) = export::endpoint(config)? else {
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
        let sink = export::sink(config, consumer, &url, from)?;
        Ok(Self {
            mode: config.traces.unwrap_or(TraceMode::Always),
            sample_ratio: config.sample_ratio,
            sink: Some(Arc::new(sink)),
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
        // Registered at 0 (listed from the start); never set: a restarted pipeline (a config
        // reload) keeps counting where it was.
        invalid.increment(0);
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
