//! The export of spans: where they go (the `OTEL_*` variables and the config), the SDK's
//! batch span processor with Sluice's queue bound, and the OTLP exporter, counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor,
};

use crate::config::TelemetryConfig;

/// The URL spans are posted to, if they are exported. The `OTEL_*` variables win over
/// the config file (as `SLUICE_REDIS_PASSWORD` does), so that a deployment's environment
/// can point a packaged config elsewhere: `OTEL_SDK_DISABLED=true` or
/// `OTEL_TRACES_EXPORTER=none` turn export off; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
/// the URL as given, `OTEL_EXPORTER_OTLP_ENDPOINT` and `[telemetry] otlp_endpoint` a base
/// to which `/v1/traces` is added (unless it is there already). Rules of the
/// OpenTelemetry specification, "OTLP Exporter Configuration"
/// (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>).
pub(super) fn endpoint(config: &TelemetryConfig) -> Result<Option<(String, &'static str)>> {
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
pub(super) fn env(name: &str) -> Option<String> {
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

/// The processor spans of this daemon go to, exporting to `url` (named by `from`);
/// `consumer` is the daemon's consumer name, its `service.instance.id`. Fails on a
/// protocol other than OTLP/HTTP with protobuf, or an exporter that cannot be built.
pub(super) fn sink(
    config: &TelemetryConfig,
    consumer: &str,
    url: &str,
    from: &str,
) -> Result<Sink> {
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
    // An https:// collector goes through rustls with the provider Sluice uses for Redis.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.to_owned())
        .build()
        .with_context(|| {
            format!("cannot set up the OTLP trace exporter for {url} (from {from})")
        })?;
    let (batch, queue) = batch_config()?;
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
    processor.set_resource(&resource(config, consumer));
    for name in [
        "sluice_spans_exported_total",
        "sluice_span_export_failures_total",
        "sluice_spans_dropped_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    tracing::info!(endpoint = %url, from, queue, "exporting traces over OTLP/HTTP");
    Ok(Sink { processor, queued })
}

/// The resource of every span: the service's name, version and instance.
fn resource(config: &TelemetryConfig, consumer: &str) -> Resource {
    let mut resource = Resource::builder();
    // The SDK's resource reads OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES); a blank
    // one counts as unset.
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(
            config
                .service_name
                .clone()
                .unwrap_or_else(|| "sluice".into()),
        );
    }
    resource
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", consumer.to_owned()),
        ])
        .build()
}

/// The batch processor's settings (the `OTEL_BSP_*` variables win) and its queue bound.
fn batch_config() -> Result<(BatchConfigBuilder, usize)> {
    let mut batch = BatchConfigBuilder::default();
    let queue = match env("OTEL_BSP_MAX_QUEUE_SIZE") {
        Some(v) => v
            .parse()
            .with_context(|| format!("OTEL_BSP_MAX_QUEUE_SIZE={v:?} is not a number of spans"))?,
        None => {
            batch = batch.with_max_queue_size(DEFAULT_QUEUE);
            DEFAULT_QUEUE
        }
    };
    if env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").is_none() {
        batch = batch.with_max_export_batch_size(DEFAULT_EXPORT_BATCH.min(queue.max(1)));
    }
    Ok((batch, queue))
}

/// The batch processor and the count of spans handed to it and not yet exported.
#[derive(Debug)]
pub(super) struct Sink {
    pub(super) processor: BatchSpanProcessor,
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
    pub(super) fn submit(&self, spans: Vec<SpanData>) {
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
