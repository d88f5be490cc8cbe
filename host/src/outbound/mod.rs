//! Outbound HTTP: the requests a handler sends through `wasi:http/outgoing-handler`, under
//! its pipeline's grant (`allowed_outbound_hosts`) and limits.
//!
//! Every request takes one path, [`Outbound::send`] (the `send_request` hook of
//! `wasmtime-wasi-http`): the URL and `Host` are checked, the origin is matched against
//! the grant, names are resolved here and each address about to be dialled is checked
//! (`block_private_networks`), then the connection (TCP, rustls for https, HTTP/1.1) is
//! made under the pipeline's timeouts, and the response body is capped. A request that
//! fails a check is refused before any connection is made, with wasi:http's
//! `HTTP-request-denied` (or `destination-IP-prohibited`) error. A redirect is the
//! guest's business: following one is a new request, checked again.
//!
//! - `grant.rs`: the grammar of `allowed_outbound_hosts` and its matching.
//! - `net.rs`: which addresses are private.
//! - `send.rs`: one request, from the checks to the response head.
//! - `connect.rs`: new connections (DNS, the dialled-address check, TCP, rustls).
//! - `pool.rs`: idle connections, reused by origin.
//! - `body.rs`: the response body under the between-bytes timeout and the size cap.
//! - `metrics.rs`: the per-pipeline, per-grant-entry series.

mod body;
mod connect;
mod grant;
mod metrics;
mod net;
mod pool;
mod send;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub use grant::{AllowedHosts, Origin, Scheme};
pub use net::private_kind;
pub use send::{Sent, read_ca, tls_config};

use crate::trace_context::{ClientSpan, SpanContext};

/// A pipeline's outbound settings, as configured.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What may be called.
    pub allowed: AllowedHosts,
    /// Refuse to dial loopback, private, link-local and other non-public addresses.
    pub block_private_networks: bool,
    /// Longest wait for a TCP connection and TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait from the request sent to the response head.
    pub first_byte_timeout: Duration,
    /// Longest wait between two parts of the response body.
    pub between_bytes_timeout: Duration,
    /// Largest response body read.
    pub max_response_bytes: u64,
    /// Requests of the pipeline in flight at once (from the send to the end of the body).
    pub max_in_flight: usize,
    /// Extra CA certificates trusted besides the platform's: the file and its PEM.
    pub ca: Option<(PathBuf, Vec<u8>)>,
    /// The header that carries each entry's idempotency key, if any.
    pub idempotency_key_header: Option<String>,
}

/// One pipeline's outbound HTTP: its grant, limits, pooled client and metrics.
pub struct Outbound {
    pipeline: Arc<str>,
    settings: Settings,
    connector: connect::Connector,
    pool: Arc<pool::Pool>,
    in_flight: Arc<tokio::sync::Semaphore>,
    header: Option<http::HeaderName>,
    metrics: metrics::HttpMetrics,
    refusals: Arc<Refusals>,
}

/// Refused requests: logged at WARN at most once a second for the pipeline (a handler in
/// a loop must not flood the log), every one counted.
pub struct Refusals {
    pipeline: Arc<str>,
    warned: Mutex<Option<Instant>>,
    denied: ::metrics::Counter,
}

impl Refusals {
    /// Logs (rate-limited) and counts a refused request to `target`.
    pub fn refused(&self, target: &str, why: &str) {
        self.denied.increment(1);
        let mut warned = crate::lock::lock(&self.warned);
        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            *warned = Some(Instant::now());
            tracing::warn!(pipeline = %self.pipeline, host = %target, "outbound request refused: {why}");
        }
    }
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("pipeline", &self.pipeline)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a request knows of the entry whose handler sends it.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The entry's idempotency key.
    pub idempotency_key: Option<String>,
    /// The entry's `handle` span, when its trace is sampled: requests are its children.
    pub parent: Option<SpanContext>,
    /// Where the request's client span goes once it is over.
    pub spans: Option<Arc<Mutex<Vec<ClientSpan>>>>,
    /// Cancelled when the call ends: its requests still waiting are abandoned, and the
    /// bodies it did not read let go of their connections and places.
    pub ended: tokio_util::sync::CancellationToken,
}

impl Outbound {
    /// The outbound HTTP of pipeline `pipeline`; fails when the CA file cannot be read
    /// or the idempotency header is not a valid header name.
    pub fn new(pipeline: &str, settings: Settings) -> Result<Self> {
        let header = settings
            .idempotency_key_header
            .as_deref()
            .map(|name| {
                http::HeaderName::try_from(name).with_context(|| {
                    format!("idempotency_key_header {name:?} is not a valid HTTP header name")
                })
            })
            .transpose()?;
        let metrics = metrics::HttpMetrics::new(pipeline, &settings.allowed);
        let refusals = Arc::new(Refusals {
            pipeline: pipeline.into(),
            warned: Mutex::new(None),
            denied: metrics.denied.clone(),
        });
        let connector = connect::Connector {
            tls: Arc::new(send::tls_config(
                (settings.ca.as_ref()).map(|(path, pem)| (path.as_path(), pem.as_slice())),
            )?),
            block_private_networks: settings.block_private_networks,
            refusals: refusals.clone(),
        };
        Ok(Self {
            pipeline: pipeline.into(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight.max(1))),
            metrics,
            pool: pool::Pool::new(settings.max_in_flight),
            settings,
            connector,
            header,
            refusals,
        })
    }

    /// The pipeline's grant.
    pub fn allowed(&self) -> &AllowedHosts {
        &self.settings.allowed
    }
}
