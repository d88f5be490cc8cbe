//! The store's data and the host functions a handler imports (`log`, `config`, and the
//! `state` interface, which answers through the call's [`EntryState`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, WitStateError, sluice::plugin};
use super::guest_log::{GuestLog, Severity};
use super::limits::Limiter;
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
    /// From when the current call, if still running, is throttled.
    pub throttle_from: Instant,
    /// Whether the current (or last) call was throttled.
    pub throttled: bool,
    /// The current call's view of handler state; `None` for pipelines without `state`.
    pub state: Option<EntryState>,
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
