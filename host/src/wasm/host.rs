//! The store's data and the host functions a handler imports (`log`, `config`,
//! `idempotency-key`, the `state` interface, which answers through the call's
//! [`EntryState`], and `wasi:http`, whose requests go through the pipeline's
//! [`Outbound`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{Level, WitStateError, sluice::plugin};
use super::guest_log::{GuestLog, Severity};
use super::limits::Limiter;
use crate::outbound::{CallContext, Outbound};
use crate::state::{EntryState, StateError};

/// Everything one store owns.
pub struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub log: Arc<GuestLog>,
    pub config: Arc<BTreeMap<String, String>>,
    /// When the current call must have returned.
    pub deadline: Instant,
    /// Epoch ticks the current call has run Wasm for (not waiting in a host call): its
    /// CPU time, in [`super::EPOCH_TICK`]s.
    pub ran_ticks: u64,
    /// After how many ticks of running the current call is throttled.
    pub throttle_ticks: u64,
    /// Whether the current (or last) call was throttled.
    pub throttled: bool,
    /// The current call's view of handler state; `None` for pipelines without `state`.
    pub state: Option<EntryState>,
    /// What an entry's idempotency key is derived from besides its ID.
    pub keys: KeyScope,
    /// wasi:http's context, and the hooks that send its requests.
    pub http: WasiHttpCtx,
    pub hooks: HttpHooks,
}

/// The consumer group and the stream of the current call: an entry's idempotency key is
/// `hex(SHA-256(group NUL stream NUL id))`, its first 32 digits.
#[derive(Debug, Clone, Default)]
pub struct KeyScope {
    pub group: Arc<str>,
    pub stream: String,
}

impl KeyScope {
    /// The idempotency key of entry `id`: the same for every delivery of the entry to
    /// this group, different for any other entry, group or stream.
    pub fn key(&self, id: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [self.group.as_bytes(), self.stream.as_bytes(), id.as_bytes()] {
            hash.update(part);
            hash.update([0]);
        }
        let mut key = hex::encode(hash.finalize());
        key.truncate(32);
        key
    }
}

/// Sends a handler's requests through its pipeline's grant; a pipeline without one
/// refuses them all.
#[derive(Default)]
pub struct HttpHooks {
    pub outbound: Option<Arc<Outbound>>,
    /// The entry being handled, as its requests need it.
    pub call: CallContext,
}

impl WasiHttpHooks for HttpHooks {
    // wasmtime-wasi-http's defaults log each of these at WARN, unthrottled, and call every
    // connection error "refused": the request's own error and metrics say what happened.
    fn p2_error_from_hyper(
        &mut self,
        err: &hyper::Error,
    ) -> wasmtime_wasi_http::p2::bindings::http::types::ErrorCode {
        tracing::debug!(error = %err, "outbound HTTP error");
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::HttpProtocolError
    }

    fn p2_error_from_connect(
        &mut self,
        err: &std::io::Error,
    ) -> wasmtime_wasi_http::p2::bindings::http::types::ErrorCode {
        use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
        tracing::debug!(error = %err, "outbound connection error");
        match err.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrorCode::ConnectionRefused,
            std::io::ErrorKind::TimedOut => ErrorCode::ConnectionTimeout,
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                ErrorCode::ConnectionTerminated
            }
            _ => ErrorCode::DestinationUnavailable,
        }
    }

    fn p2_error_from_tls(
        &mut self,
        err: &std::io::Error,
    ) -> wasmtime_wasi_http::p2::bindings::http::types::ErrorCode {
        tracing::debug!(error = %err, "outbound TLS error");
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::TlsProtocolError
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn std::future::Future<Output = crate::outbound::Sent> + Send> {
        match &self.outbound {
            Some(outbound) => outbound.send(request, options, self.call.clone()),
            None => {
                tracing::warn!(host = ?request.uri().host(), "outbound request refused: the pipeline grants no hosts (allowed_outbound_hosts)");
                Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
            }
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl plugin::types::Host for HostState {}

impl plugin::host::Host for HostState {
    async fn log(&mut self, level: Level, message: String) {
        let severity = match level {
            Level::Trace => Severity::Trace,
            Level::Debug => Severity::Debug,
            Level::Info => Severity::Info,
            Level::Warn => Severity::Warn,
            Level::Error => Severity::Error,
        };
        self.log.line(severity, "log", &message);
    }

    async fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    async fn idempotency_key(&mut self, id: String) -> String {
        self.keys.key(&id)
    }
}

impl HostState {
    fn entry_state(&mut self) -> Result<&mut EntryState, WitStateError> {
        self.state.as_mut().ok_or_else(|| {
            WitStateError::Forbidden(
                "this pipeline declares no state prefixes: add state = [\"prefix:\"] to its [[pipeline]]".into(),
            )
        })
    }
}

fn wit_error(error: StateError) -> WitStateError {
    match error {
        StateError::Forbidden(reason) => WitStateError::Forbidden(reason),
        StateError::WrongType(reason) => WitStateError::WrongType(reason),
        StateError::Unavailable(reason) | StateError::Conflict(reason) => {
            WitStateError::Unavailable(reason)
        }
    }
}

impl plugin::state::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, WitStateError> {
        self.entry_state()?.get(&key).await.map_err(wit_error)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), WitStateError> {
        self.entry_state()?.set(&key, value).map_err(wit_error)
    }

    async fn delete(&mut self, key: String) -> Result<(), WitStateError> {
        self.entry_state()?.delete(&key).map_err(wit_error)
    }

    async fn incr(&mut self, key: String, delta: i64) -> Result<i64, WitStateError> {
        self.entry_state()?
            .incr(&key, delta)
            .await
            .map_err(wit_error)
    }

    async fn add(&mut self, key: String, delta: i64) -> Result<(), WitStateError> {
        self.entry_state()?.add(&key, delta).map_err(wit_error)
    }

    async fn hget(&mut self, key: String, field: String) -> Result<Option<Vec<u8>>, WitStateError> {
        self.entry_state()?
            .hget(&key, &field)
            .await
            .map_err(wit_error)
    }

    async fn hset(
        &mut self,
        key: String,
        field: String,
        value: Vec<u8>,
    ) -> Result<(), WitStateError> {
        self.entry_state()?
            .hset(&key, &field, value)
            .map_err(wit_error)
    }

    async fn hgetall(&mut self, key: String) -> Result<Vec<(String, Vec<u8>)>, WitStateError> {
        let all = self.entry_state()?.hgetall(&key).await.map_err(wit_error)?;
        Ok(all.into_iter().collect())
    }
}
