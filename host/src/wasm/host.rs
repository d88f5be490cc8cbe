//! The store's data and the host functions a handler imports (`log`, `config`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, sluice::plugin};
use super::guest_log::{GuestLog, Severity};
use super::limits::Limiter;

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
