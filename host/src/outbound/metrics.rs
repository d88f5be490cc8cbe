//! The outbound series of one pipeline, labelled by the grant entry a request matched
//! (`host`: bounded by the config, unlike the hosts a handler names), present at 0 from
//! the start for every entry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};
use wasmtime_wasi_http::Error;

use super::grant::AllowedHosts;
use super::send::error_kind;

/// The `error.type` values of `sluice_http_request_errors_total`.
pub const ERROR_KINDS: &[&str] = &[
    "denied",
    "dns",
    "connect",
    "connect_timeout",
    "response_timeout",
    "tls",
    "body_too_large",
    "protocol",
];

/// One grant entry's series.
struct EntrySeries {
    requests: Counter,
    duration: Histogram,
    errors: BTreeMap<&'static str, Counter>,
}

/// The pipeline's outbound series.
#[derive(Clone)]
pub struct HttpMetrics {
    entries: Arc<BTreeMap<Arc<str>, EntrySeries>>,
    /// `sluice_http_requests_denied_total` of the pipeline.
    pub denied: Counter,
}

impl HttpMetrics {
    pub fn new(pipeline: &str, allowed: &AllowedHosts) -> Self {
        let entries = allowed
            .entries()
            .map(|host| {
                let labels = [("pipeline", pipeline.to_owned()), ("host", host.to_owned())];
                let errors = ERROR_KINDS
                    .iter()
                    .map(|kind| {
                        let mut labels = labels.to_vec();
                        labels.push(("kind", (*kind).to_owned()));
                        let c = counter!("sluice_http_request_errors_total", &labels);
                        c.increment(0);
                        (*kind, c)
                    })
                    .collect();
                let requests = counter!("sluice_http_requests_total", &labels);
                requests.increment(0);
                let series = EntrySeries {
                    requests,
                    duration: histogram!("sluice_http_request_duration_seconds", &labels),
                    errors,
                };
                (Arc::from(host), series)
            })
            .collect();
        let denied =
            counter!("sluice_http_requests_denied_total", "pipeline" => pipeline.to_owned());
        denied.increment(0);
        Self {
            entries: Arc::new(entries),
            denied,
        }
    }

    /// A request matched grant entry `host` and is being sent.
    pub fn sent(&self, host: &str) {
        if let Some(s) = self.entries.get(host) {
            s.requests.increment(1);
        }
    }

    /// A request to `host` got its response head (`error`: `None`) or failed, after
    /// `elapsed`.
    pub fn finished(&self, host: &str, elapsed: Duration, error: Option<&Error>) {
        if let Some(s) = self.entries.get(host) {
            s.duration.record(elapsed.as_secs_f64());
        }
        if let Some(error) = error {
            self.error(host, error_kind(error));
        }
    }

    /// A request to `host` (or its body) failed with `kind`.
    pub fn error(&self, host: &str, kind: &str) {
        if let Some(c) = self.entries.get(host).and_then(|s| s.errors.get(kind)) {
            c.increment(1);
        }
    }
}
