//! A live handler instance under limits, reused across messages and replaced after a trap
//! or after `instance_reuse` messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Func;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

use super::bindings::{self, Failure, Handler, Message};
use super::guest_log::Identity;
use super::guest_log::{GuestLog, GuestOutput};
use super::host::HostState;
use super::limits::{Limiter, Limits};
use super::packed;
use super::{BatchExport, Plugin, PluginCell};
use crate::message::{Entry, HandlerError, Output};
use crate::state::{EntryState, Finished, Scope, StateError};

/// At most this many per-entry timeouts for one `handle-batch` call.
pub const BATCH_TIMEOUT_FACTOR: u32 = 2;

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

impl Instance {
    /// A slot running the live version in `cell`; nothing is instantiated until the
    /// first call.
    pub fn new(cell: PluginCell, config: Arc<BTreeMap<String, String>>, limits: Limits) -> Self {
        let plugin = cell.load_full();
        let identity = Identity {
            digest: plugin.digest().clone(),
        };
        Self {
            cell,
            plugin,
            identity,
            config,
            limits,
            live: None,
            throttled: false,
        }
    }

    /// Whether the last call ran past `limits.throttle_after` and was throttled.
    pub fn last_call_throttled(&self) -> bool {
        self.throttled
    }

    /// The plugin this slot runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Calls `handle` for one entry of stream `source`.
    ///
    /// The entry's fields are lent to the guest and given back, whatever the outcome.
    /// A reused instance that hits `limits.memory` may have leaked over earlier calls:
    /// the call is made once more on a fresh instance before the breach is charged to
    /// the message (handlers have no side effects to repeat).
    pub async fn handle(
        &mut self,
        source: &str,
        entry: &mut Entry,
    ) -> Result<Vec<Output>, HandlerError> {
        self.handle_in(source, entry, None).await.0
    }

    /// [`Instance::handle`] with handler state in `scope`: also what the entry read and
    /// wrote. A failed state call fails the entry whatever the handler returns (a key
    /// outside the prefixes or of another type: rejected; Redis unreadable: retried),
    /// and only an entry that succeeds leaves its writes for the batch's later entries.
    pub async fn handle_in(
        &mut self,
        source: &str,
        entry: &mut Entry,
        scope: Option<&Scope>,
    ) -> (Result<Vec<Output>, HandlerError>, Finished) {
        let reused = self.live.as_ref().is_some_and(|l| l.handled > 0);
        match self.handle_once(source, entry, scope).await {
            (Err(HandlerError::Limit(breach)), _)
                if reused && breach.starts_with("limits.memory") =>
            {
                tracing::debug!(id = %entry.id, breach = %breach, "memory limit reached on a reused instance; calling once more on a fresh one");
                self.handle_once(source, entry, scope).await
            }
            other => other,
        }
    }

    async fn handle_once(
        &mut self,
        source: &str,
        entry: &mut Entry,
        scope: Option<&Scope>,
    ) -> (Result<Vec<Output>, HandlerError>, Finished) {
        let mut state = scope.map(Scope::entry);
        let result = self.call(source, entry, &mut state).await;
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

    async fn call(
        &mut self,
        source: &str,
        entry: &mut Entry,
        state: &mut Option<EntryState>,
    ) -> Result<Vec<Output>, HandlerError> {
        self.throttled = false;
        if let Some(raw) = &entry.raw_names {
            // WIT field names are strings: two different names could reach the handler
            // as one. Such an entry is refused whole; its dead letter keeps every byte.
            let (index, name) = raw
                .iter()
                .enumerate()
                .find(|(_, n)| std::str::from_utf8(n).is_err())
                .map(|(i, n)| (i, n.iter().map(|b| format!("{b:02x}")).collect::<String>()))
                .unwrap_or_default();
            return Err(HandlerError::Reject(format!(
                "field name #{} (hex {name}) is not UTF-8: handlers see names as strings, so the entry is not handed to one; its bytes are kept in the dead letter",
                index + 1
            )));
        }
        self.follow_reload();
        self.ensure_live(1).await?;
        let Some(live) = self.live.as_mut() else {
            unreachable!("made live just above");
        };
        live.handled += 1;
        let data = live.store.data_mut();
        let now = Instant::now();
        data.deadline = now + self.limits.timeout;
        data.throttle_from = now + self.limits.throttle_after;
        data.throttled = false;
        data.log
            .set_message(&entry.id, entry.trace.as_ref().map(|t| &t.span));
        data.state = state.take();
        if let Some(fuel) = self.limits.fuel {
            // Cannot fail: fuel is on in the engine whenever a pipeline sets a budget.
            let _ = live.store.set_fuel(fuel);
        }
        let message = Message {
            source: source.to_owned(),
            id: std::mem::take(&mut entry.id),
            fields: std::mem::take(&mut entry.fields),
            attempt: entry.attempt,
        };
        // The epoch deadline stops a guest running Wasm; this stops one blocked in a host
        // call (a WASI sleep or poll) that no epoch tick can interrupt.
        let call = live.handler.call_handle(&mut live.store, &message);
        let result = match tokio::time::timeout(self.limits.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Error::new(DeadlineExceeded)),
        };
        self.throttled = live.store.data().throttled;
        *state = live.store.data_mut().state.take();
        entry.id = message.id;
        entry.fields = message.fields;
        match result {
            Ok(Ok(outputs)) => {
                let outputs: Vec<Output> = outputs.into_iter().map(Output::from).collect();
                if let Err(breach) = self.check_outputs(&outputs) {
                    // An instance that produced too much may be in a bad way: replace it.
                    self.live = None;
                    return Err(HandlerError::Limit(breach));
                }
                Ok(outputs)
            }
            Ok(Err(Failure::Retry(reason))) => Err(HandlerError::Retry(reason)),
            Ok(Err(Failure::Reject(reason))) => Err(HandlerError::Reject(reason)),
            Err(error) => {
                // A trapped instance may hold broken state: never call it again.
                let breach = self
                    .live
                    .take()
                    .and_then(|mut l| l.store.data_mut().limiter.breach.take());
                Err(self.classify(error, breach))
            }
        }
    }

    /// A reload swapped the version: the next call runs on the new one.
    fn follow_reload(&mut self) {
        let current = self.cell.load();
        if !Arc::ptr_eq(&current, &self.plugin) {
            self.plugin = arc_swap::Guard::into_inner(current);
            self.identity.digest = self.plugin.digest().clone();
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
    /// [`BATCH_TIMEOUT_FACTOR`] timeouts (a spinning entry holds the instance for two
    /// timeouts, not a hundred). `Ok(None)` when the share is not for one call (no
    /// export, more entries than `instance_reuse`, a field name that is not UTF-8), `Err`
    /// when the call failed as a whole — a trap, the timeout, a limit, a wrong number of
    /// results: either way the caller then handles the entries one at a time with
    /// [`Instance::handle`] (handlers without state have no side effects to repeat), so
    /// that only the entry at fault fails.
    pub async fn handle_batch(
        &mut self,
        source: &str,
        entries: &mut [Entry],
    ) -> Result<Option<Vec<Result<Vec<Output>, HandlerError>>>, HandlerError> {
        self.follow_reload();
        let batchable = self.plugin.handles_batches()
            && entries.len() as u64 <= self.limits.instance_reuse
            && entries.iter().all(|e| e.raw_names.is_none());
        if !batchable {
            return Ok(None);
        }
        self.call_batch(source, entries).await.map(Some)
    }

    async fn call_batch(
        &mut self,
        source: &str,
        entries: &mut [Entry],
    ) -> Result<Vec<Result<Vec<Output>, HandlerError>>, HandlerError> {
        self.throttled = false;
        let n = entries.len();
        let limits = self.limits;
        // The share must fit in what is left of the instance's `instance_reuse`.
        self.ensure_live(n as u64).await?;
        let Some(live) = self.live.as_mut() else {
            unreachable!("made live just above");
        };
        let Some((kind, func)) = live.batch else {
            return Err(HandlerError::Trap("no batch export".into()));
        };
        live.handled += n as u64;
        let scale = u32::try_from(n)
            .unwrap_or(u32::MAX)
            .min(BATCH_TIMEOUT_FACTOR);
        let data = live.store.data_mut();
        let now = Instant::now();
        let timeout = limits.timeout.saturating_mul(scale);
        data.deadline = now + timeout;
        // Throttling is about one long call, whatever it handles.
        data.throttle_from = now + limits.throttle_after;
        data.throttled = false;
        // Log lines of the call go to its first entry (and its trace).
        data.log
            .set_message(&entries[0].id, entries[0].trace.as_ref().map(|t| &t.span));
        data.state = None;
        if let Some(fuel) = limits.fuel {
            let _ = live.store.set_fuel(fuel.saturating_mul(n as u64));
        }
        let called = match kind {
            BatchExport::Lists => call_lists(func, &mut live.store, source, entries, timeout).await,
            BatchExport::Packed => {
                call_packed(func, &mut live.store, source, entries, timeout).await
            }
        };
        self.throttled = live.store.data().throttled;
        let results = match called {
            Ok(Ok(results)) => results,
            Ok(Err(malformed)) => {
                self.live = None;
                return Err(HandlerError::Trap(malformed));
            }
            Err(error) => {
                let breach = self
                    .live
                    .take()
                    .and_then(|mut l| l.store.data_mut().limiter.breach.take());
                return Err(match self.classify(error, breach) {
                    // The call's own budget, not the per-entry one.
                    HandlerError::Timeout(_) => HandlerError::Timeout(timeout),
                    other => other,
                });
            }
        };
        let mut replace = false;
        let results = results
            .into_iter()
            .map(|result| match result {
                Ok(outputs) => self
                    .check_outputs(&outputs)
                    .map(|()| outputs)
                    .map_err(|breach| {
                        replace = true;
                        HandlerError::Limit(breach)
                    }),
                Err(Failure::Retry(reason)) => Err(HandlerError::Retry(reason)),
                Err(Failure::Reject(reason)) => Err(HandlerError::Reject(reason)),
            })
            .collect();
        if replace {
            // An instance that produced too much may be in a bad way: replace it.
            self.live = None;
        }
        Ok(results)
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

    // `&mut self`: a `&self` held across `.await` would need `Instance: Sync`.
    async fn instantiate(&mut self) -> Result<Live, HandlerError> {
        let log = GuestLog::new(self.identity.clone());
        // Nothing granted: no preopened directories, no env, no stdin, no sockets;
        // stdout and stderr go to the log.
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::stdout(log.clone()))
            .stderr(GuestOutput::stderr(log.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: Default::default(),
            limiter: Limiter::new(self.limits.memory),
            log,
            config: self.config.clone(),
            deadline: Instant::now() + self.limits.timeout,
            throttle_from: Instant::now() + self.limits.throttle_after,
            throttled: false,
            state: None,
        };
        let mut store = Store::new(self.plugin.runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if self.plugin.runtime.meters_fuel() {
            // Start-up code runs on the message's budget, or unmetered without one.
            let _ = store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX));
        }
        // Every epoch tick, a running guest yields to the async runtime (so a spinning
        // handler cannot starve other tasks) and is stopped once past its deadline. A
        // call still running after `throttle_after` sleeps `pause` ticks after each tick
        // it runs: a runaway handler burns its share of a core until its timeout, not a
        // whole one, and leaves the machine to the pipelines doing real work.
        let pause = self.limits.throttle_pause_ticks();
        store.epoch_deadline_callback(move |mut ctx| {
            let now = Instant::now();
            let data = ctx.data_mut();
            if now >= data.deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else if pause > 0 && now >= data.throttle_from {
                data.throttled = true;
                // The new deadline counts from when the sleep ends: the guest runs
                // about one tick, then sleeps again.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::time::sleep(super::EPOCH_TICK * pause as u32)),
                ))
            } else {
                // tokio's own yield: a future that wakes itself would land in the
                // worker's LIFO slot, which other workers cannot steal from, and starve
                // the tasks queued behind it.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store.set_epoch_deadline(1);
        let pre = self.plugin.pre.instance_pre().clone();
        let mut instance = pre.instantiate_async(&mut store).await;
        // Building a memory's copy-on-write image seals a memfd, which fails with EBUSY
        // while another thread forks (the child shares its pages for a moment): a
        // passing race, not the component's fault. Once more, then it counts.
        if instance
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("add seals"))
        {
            instance = pre.instantiate_async(&mut store).await;
        }
        let instantiate = |e| match self.classify(e, None) {
            HandlerError::Trap(reason) => HandlerError::Instantiate(reason),
            other => other,
        };
        let instance = instance.map_err(instantiate)?;
        let handler = Handler::new(&mut store, &instance).map_err(instantiate)?;
        let batch = self.plugin.batch.and_then(|(kind, index)| {
            let func = instance.get_func(&mut store, index)?;
            let typed = match kind {
                BatchExport::Lists => func.typed::<ListsParams<'_>, ListsResults>(&store).map(drop),
                BatchExport::Packed => func.typed::<PackedParams<'_>, PackedResults>(&store).map(drop),
            };
            match typed {
                Ok(()) => Some((kind, func)),
                Err(e) => {
                    tracing::warn!(error = %e, export = kind.name(), "the plugin's batch export does not have the type of its world (sluice:plugin@0.1.3); calling handle for each entry instead");
                    None
                }
            }
        });
        Ok(Live {
            store,
            handler,
            batch,
            handled: 0,
        })
    }
}

type ListsParams<'a> = (&'a [Message],);
type ListsResults = (Vec<Result<Vec<bindings::Output>, Failure>>,);
type PackedParams<'a> = (&'a [u8],);
type PackedResults = (Vec<u8>,);

/// A batch call's results: `Err` when the call failed (a trap, the deadline), `Ok(Err)`
/// when it returned something that is not one result per entry (the reason).
type BatchCall = wasmtime::Result<Result<Vec<Result<Vec<Output>, Failure>>, String>>;

/// `call`, failed with [`DeadlineExceeded`] if it runs past `timeout`.
async fn within<T>(
    timeout: std::time::Duration,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(wasmtime::Error::new(DeadlineExceeded)))
}

/// Calls `handle-batch` (world `batch-handler`): the entries' IDs and fields are lent to
/// the call and given back after it.
async fn call_lists(
    func: Func,
    store: &mut Store<HostState>,
    source: &str,
    entries: &mut [Entry],
    timeout: std::time::Duration,
) -> BatchCall {
    let n = entries.len();
    // Checked at instantiation: cannot fail.
    let typed = func.typed::<ListsParams<'_>, ListsResults>(&*store)?;
    let messages: Vec<Message> = entries
        .iter_mut()
        .map(|entry| Message {
            source: source.to_owned(),
            id: std::mem::take(&mut entry.id),
            fields: std::mem::take(&mut entry.fields),
            attempt: entry.attempt,
        })
        .collect();
    let result = within(timeout, typed.call_async(&mut *store, (&messages,))).await;
    for (entry, message) in entries.iter_mut().zip(messages) {
        entry.id = message.id;
        entry.fields = message.fields;
    }
    let (results,) = result?;
    if results.len() != n {
        return Ok(Err(format!(
            "handle-batch returned {} results for {n} messages",
            results.len()
        )));
    }
    Ok(Ok(results
        .into_iter()
        .map(|r| r.map(|outputs| outputs.into_iter().map(Output::from).collect()))
        .collect()))
}

/// Calls `handle-packed` (world `packed-batch-handler`): the entries go encoded.
async fn call_packed(
    func: Func,
    store: &mut Store<HostState>,
    source: &str,
    entries: &mut [Entry],
    timeout: std::time::Duration,
) -> BatchCall {
    let typed = func.typed::<PackedParams<'_>, PackedResults>(&*store)?;
    let messages = packed::encode(source, entries);
    let (results,) = within(timeout, typed.call_async(&mut *store, (&messages,))).await?;
    Ok(packed::decode(&results, entries.len()).map_err(|e| e.to_string()))
}

// The generated output type carries the same data as the domain type.
impl From<bindings::Output> for Output {
    fn from(o: bindings::Output) -> Self {
        Output {
            target: o.target,
            fields: o.fields,
            raw_names: None,
        }
    }
}
