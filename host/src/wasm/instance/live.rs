//! Making a live instance: its store (host state, limits, fuel, the epoch callback), the
//! component instantiated from the plugin's `InstancePre`, and its exports.

use std::time::Instant;

use wasmtime::component::Func;
use wasmtime::{Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

use super::batch::{ListsParams, ListsResults, PackedParams, PackedResults};
use super::{DeadlineExceeded, Instance, Live};
use crate::message::HandlerError;
use crate::wasm::bindings::Handler;
use crate::wasm::guest_log::{GuestLog, GuestOutput};
use crate::wasm::host::{HostState, HttpHooks, KeyScope};
use crate::wasm::limits::Limiter;
use crate::wasm::{BatchExport, EPOCH_TICK};

impl Instance {
    // `&mut self`: a `&self` held across `.await` would need `Instance: Sync`.
    pub(super) async fn instantiate(&mut self) -> Result<Live, HandlerError> {
        let mut store = self.store();
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
            batch_export(&store, kind, func)
        });
        Ok(Live {
            store,
            handler,
            batch,
            handled: 0,
        })
    }

    /// A store for a new instance: nothing granted (no preopened directories, no env, no
    /// stdin, no sockets), stdout and stderr to the log, memory limited, fuel metered when
    /// the engine meters it, and the epoch callback of [`on_epoch`].
    fn store(&self) -> Store<HostState> {
        let log = GuestLog::new(self.identity.clone());
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
            ran_ticks: 0,
            throttle_ticks: self.limits.throttle_after_ticks(),
            throttled: false,
            state: None,
            keys: KeyScope {
                group: self.group.clone(),
                stream: String::new(),
            },
            http: Default::default(),
            hooks: HttpHooks {
                outbound: self.outbound.clone(),
                call: Default::default(),
            },
        };
        let mut store = Store::new(self.plugin.runtime.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if self.plugin.runtime.meters_fuel() {
            // Start-up code runs on the entry's budget, or unmetered without one.
            let _ = store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX));
        }
        let pause = self.limits.throttle_pause_ticks();
        store.epoch_deadline_callback(move |ctx| on_epoch(ctx, pause));
        store.set_epoch_deadline(1);
        store
    }
}

/// Every epoch tick, a running guest yields to the async runtime (so a spinning handler
/// cannot starve other tasks) and is stopped once past its deadline. A call that has run
/// Wasm for `throttle_after` sleeps `pause` ticks after each tick it runs: a runaway
/// handler burns its share of a core until its timeout, not a whole one, and leaves the
/// machine to the pipelines doing real work. The callback only comes while Wasm runs, so
/// time a call spends waiting in a host call (an HTTP response, a state read) does not
/// count toward `throttle_after`, only toward the deadline.
fn on_epoch(
    mut ctx: StoreContextMut<'_, HostState>,
    pause: u64,
) -> wasmtime::Result<UpdateDeadline> {
    let now = Instant::now();
    let data = ctx.data_mut();
    data.ran_ticks += 1;
    if now >= data.deadline {
        Err(wasmtime::Error::new(DeadlineExceeded))
    } else if pause > 0 && data.ran_ticks >= data.throttle_ticks {
        data.throttled = true;
        // The new deadline counts from when the sleep ends: the guest runs about one
        // tick, then sleeps again.
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::time::sleep(EPOCH_TICK * pause as u32)),
        ))
    } else {
        // tokio's own yield: a future that wakes itself would land in the worker's LIFO
        // slot, which other workers cannot steal from, and starve the tasks queued behind
        // it.
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    }
}

/// The plugin's batch export, if it has the type of its world.
fn batch_export(
    store: &Store<HostState>,
    kind: BatchExport,
    func: Func,
) -> Option<(BatchExport, Func)> {
    let typed = match kind {
        BatchExport::Lists => func.typed::<ListsParams<'_>, ListsResults>(store).map(drop),
        BatchExport::Packed => func
            .typed::<PackedParams<'_>, PackedResults>(store)
            .map(drop),
    };
    match typed {
        Ok(()) => Some((kind, func)),
        Err(e) => {
            tracing::warn!(error = %e, export = kind.name(), "the plugin's batch export does not have the type of its world (sluice:plugin@0.1.3); calling handle for each entry instead");
            None
        }
    }
}
