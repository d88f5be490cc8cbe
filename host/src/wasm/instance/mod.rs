//! A live handler instance under limits, reused across entries and replaced after a trap
//! or after `instance_reuse` entries.
//!
//! - `mod.rs`: [`Instance`], the slot a pipeline calls: [`Instance::handle_in`] for one
//!   entry, [`Instance::handle_batch`] for a share of them; follows reloads, replaces
//!   instances, names what stopped a guest.
//! - `call.rs`: one call of `handle`, and the store set-up every call shares.
//! - `batch.rs`: one call of a batch export (`handle-batch`, `handle-packed`).
//! - `live.rs`: a new instance: its store, limits, epoch callback and exports.

mod batch;
mod call;
mod live;

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::Func;
use wasmtime::{Store, Trap};

use super::bindings::Handler;
use super::guest_log::Identity;
use super::host::HostState;
use super::limits::Limits;
use super::{BatchExport, Plugin, PluginCell};
use crate::message::{Entry, HandlerError, Output};
use crate::outbound::Outbound;
use crate::state::{Finished, Scope, StateError};

/// The call ran past its deadline (raised from the epoch callback).
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// A handler slot of a pipeline: instantiates lazily, reuses the instance across
/// messages and replaces it after a failure that may have corrupted it.
pub struct Instance {
    cell: PluginCell,
    plugin: Arc<Plugin>,
    identity: Identity,
    config: Arc<BTreeMap<String, String>>,
    limits: Limits,
    /// The pipeline's outbound HTTP, when it grants hosts.
    outbound: Option<Arc<Outbound>>,
    /// The consumer group, for the entries' idempotency keys.
    group: Arc<str>,
    live: Option<Live>,
    /// Whether the last call was throttled (kept here: a failed call drops its store).
    throttled: bool,
}

struct Live {
    store: Store<HostState>,
    handler: Handler,
    /// The batch export, when the plugin has one of the right type.
    batch: Option<(BatchExport, Func)>,
    handled: u64,
}

/// What the log lines of `plugin`'s instances carry.
fn identity_of(plugin: &Plugin) -> Identity {
    Identity {
        digest: plugin.digest().clone(),
        source_map: plugin.source_map().cloned(),
    }
}

impl Instance {
    /// A slot running the live version in `cell`; nothing is instantiated until the
    /// first call.
    pub fn new(cell: PluginCell, config: Arc<BTreeMap<String, String>>, limits: Limits) -> Self {
        let plugin = cell.load_full();
        let identity = identity_of(&plugin);
        Self {
            cell,
            plugin,
            identity,
            config,
            limits,
            outbound: None,
            group: Arc::from(""),
            live: None,
            throttled: false,
        }
    }

    /// The slot for consumer group `group` (its entries' idempotency keys), sending
    /// requests through `outbound` (none: every request is refused).
    pub fn serving(mut self, group: &str, outbound: Option<Arc<Outbound>>) -> Self {
        self.group = group.into();
        self.outbound = outbound;
        self
    }

    /// Whether the last call ran past `limits.throttle_after` and was throttled.
    pub fn last_call_throttled(&self) -> bool {
        self.throttled
    }

    /// The plugin this slot runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Calls `handle` for one entry of input stream `stream`.
    ///
    /// The entry's fields are lent to the guest and given back, whatever the outcome.
    /// A reused instance that hits `limits.memory` may have leaked over earlier calls:
    /// the call is made once more on a fresh instance before the breach is charged to
    /// the message (handlers have no side effects to repeat).
    pub async fn handle(
        &mut self,
        stream: &str,
        entry: &mut Entry,
    ) -> Result<Vec<Output>, HandlerError> {
        self.handle_in(stream, entry, None).await.0
    }

    /// [`Instance::handle`] with handler state in `scope`: also what the entry read and
    /// wrote. A failed state call fails the entry whatever the handler returns (a key
    /// outside the prefixes or of another type: rejected; Redis unreadable: retried),
    /// and only an entry that succeeds leaves its writes for the batch's later entries.
    pub async fn handle_in(
        &mut self,
        stream: &str,
        entry: &mut Entry,
        scope: Option<&Scope>,
    ) -> (Result<Vec<Output>, HandlerError>, Finished) {
        let reused = self.live.as_ref().is_some_and(|l| l.handled > 0);
        match self.call_in(stream, entry, scope).await {
            (Err(HandlerError::Limit(breach)), _)
                if reused && breach.starts_with("limits.memory") =>
            {
                tracing::debug!(id = %entry.id, breach = %breach, "memory limit reached on a reused instance; calling once more on a fresh one");
                self.call_in(stream, entry, scope).await
            }
            other => other,
        }
    }

    /// One call with the entry's handler state: the state's own failure wins over
    /// what the handler returned.
    async fn call_in(
        &mut self,
        stream: &str,
        entry: &mut Entry,
        scope: Option<&Scope>,
    ) -> (Result<Vec<Output>, HandlerError>, Finished) {
        let mut state = scope.map(Scope::entry);
        let result = self.call(stream, entry, &mut state).await;
        let Some(state) = state else {
            return (result, Finished::default());
        };
        let finished = state.finish(result.is_ok());
        let result = match (&finished.failure, result) {
            (Some(StateError::Unavailable(reason)), _) => Err(HandlerError::Retry(format!(
                "handler state could not be read: {reason}"
            ))),
            (Some(StateError::Conflict(reason)), _) => Err(HandlerError::Conflict(reason.clone())),
            (Some(failure), _) => Err(HandlerError::Reject(failure.to_string())),
            (None, result) => result,
        };
        (result, finished)
    }

    /// A reload swapped the version: the next call runs on the new one.
    fn follow_reload(&mut self) {
        let current = self.cell.load();
        if !Arc::ptr_eq(&current, &self.plugin) {
            self.plugin = arc_swap::Guard::into_inner(current);
            self.identity = identity_of(&self.plugin);
            self.live = None;
        }
    }

    /// Makes sure there is a live instance for the next `n` messages: made anew if there
    /// is none or they would take it past its `instance_reuse`.
    async fn ensure_live(&mut self, n: u64) -> Result<(), HandlerError> {
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.handled + n > self.limits.instance_reuse)
        {
            self.live = None;
        }
        if self.live.is_none() {
            let live = self.instantiate().await?;
            self.live = Some(live);
        }
        Ok(())
    }

    /// Calls `handle-batch` once for all of `entries` (a plugin of world `batch-handler`,
    /// in a pipeline without state): one result per entry, in order, each what
    /// [`Instance::handle`] would give. The call gets the per-entry fuel times the number
    /// of entries, and the per-entry timeout times that number but at most
    /// `BATCH_TIMEOUT_FACTOR` (2) timeouts (a spinning entry holds the instance for two
    /// timeouts, not a hundred). `Ok(None)` when the share is not for one call (no
    /// export, more entries than `instance_reuse`, a field name that is not UTF-8), `Err`
    /// when the call failed as a whole — a trap, the timeout, a limit, a wrong number of
    /// results: either way the caller then handles the entries one at a time with
    /// [`Instance::handle`] (handlers without state have no side effects to repeat), so
    /// that only the entry at fault fails.
    pub async fn handle_batch(
        &mut self,
        stream: &str,
        entries: &mut [Entry],
    ) -> Result<Option<Vec<Result<Vec<Output>, HandlerError>>>, HandlerError> {
        self.follow_reload();
        // A request's idempotency key and span belong to one entry: a plugin that sends
        // requests is called per entry.
        let batchable = self.plugin.handles_batches()
            && !self.plugin.imports_http()
            && entries.len() as u64 <= self.limits.instance_reuse
            && entries.iter().all(|e| e.raw_names.is_none());
        if !batchable {
            return Ok(None);
        }
        self.call_batch(stream, entries).await.map(Some)
    }

    fn check_outputs(&self, outputs: &[Output]) -> Result<(), String> {
        let Limits {
            max_outputs,
            max_output_bytes,
            ..
        } = self.limits;
        if outputs.len() > max_outputs {
            return Err(format!(
                "limits.max_outputs ({max_outputs}) exceeded: the handler returned {} outputs",
                outputs.len()
            ));
        }
        let bytes: usize = outputs
            .iter()
            .flat_map(|o| &o.fields)
            .map(|(name, value)| name.len() + value.len())
            .sum();
        if bytes > max_output_bytes {
            return Err(format!(
                "limits.max_output_bytes ({}) exceeded: the outputs hold {}",
                bytesize::ByteSize(max_output_bytes as u64).display().iec(),
                bytesize::ByteSize(bytes as u64).display().iec()
            ));
        }
        Ok(())
    }

    /// Names what stopped the guest: a limit (and its value), the timeout, or the trap.
    fn classify(&self, error: wasmtime::Error, breach: Option<String>) -> HandlerError {
        if error.downcast_ref::<DeadlineExceeded>().is_some() {
            return HandlerError::Timeout(self.limits.timeout);
        }
        if let Some(breach) = breach {
            return HandlerError::Limit(breach);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => HandlerError::Limit(format!(
                "limits.fuel ({}) exhausted",
                self.limits.fuel.unwrap_or_default()
            )),
            Some(Trap::StackOverflow) => HandlerError::Trap(
                "stack overflow (the call stack grew past the 512 KiB Wasm stack)".into(),
            ),
            Some(trap) => HandlerError::Trap(trap.to_string()),
            None => HandlerError::Trap(format!("{error:#}")),
        }
    }
}
