//! The store's data and the host functions a handler imports (`log`, `config`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, sluice::plugin};

/// Who is running: attached to every log line of the guest.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The pipeline's name.
    pub pipeline: Arc<str>,
    /// The plugin's content digest.
    pub digest: Arc<str>,
}

/// Everything one store owns.
pub struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub identity: Identity,
    pub config: Arc<BTreeMap<String, String>>,
    /// The entry being handled, for log attribution.
    pub message_id: String,
    /// When the current call must have returned.
    pub deadline: Instant,
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
        let Identity { pipeline, digest } = &self.identity;
        let id = &self.message_id;
        match level {
            Level::Trace => {
                tracing::trace!(%pipeline, plugin = %digest, message_id = %id, "{message}")
            }
            Level::Debug => {
                tracing::debug!(%pipeline, plugin = %digest, message_id = %id, "{message}")
            }
            Level::Info => {
                tracing::info!(%pipeline, plugin = %digest, message_id = %id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(%pipeline, plugin = %digest, message_id = %id, "{message}")
            }
            Level::Error => {
                tracing::error!(%pipeline, plugin = %digest, message_id = %id, "{message}")
            }
        }
    }

    async fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}
