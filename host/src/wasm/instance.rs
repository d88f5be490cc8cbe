//! A live handler instance under limits, reused across messages and replaced after a trap
//! or after `instance_reuse` messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

use super::Plugin;
use super::bindings::{self, Failure, Handler, Message};
use super::host::{HostState, Identity};
use crate::message::{Entry, HandlerError, Output};

/// The limits one instance runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of linear memory (per memory) and table elements.
    pub memory: usize,
    /// Wall time of one `handle` call.
    pub timeout: Duration,
    /// Messages before the instance is replaced by a fresh one.
    pub instance_reuse: u64,
}

/// The call ran past its deadline (raised from the epoch callback).
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// A handler slot of a pipeline: instantiates lazily, reuses the instance across
/// messages and replaces it after a failure that may have corrupted it.
pub struct Instance {
    plugin: Arc<Plugin>,
    identity: Identity,
    config: Arc<BTreeMap<String, String>>,
    limits: Limits,
    live: Option<Live>,
}

struct Live {
    store: Store<HostState>,
    handler: Handler,
    handled: u64,
}

impl Instance {
    /// A slot for `plugin` in `pipeline`; nothing is instantiated until the first call.
    pub fn new(
        plugin: Arc<Plugin>,
        pipeline: &str,
        config: Arc<BTreeMap<String, String>>,
        limits: Limits,
    ) -> Self {
        let identity = Identity {
            pipeline: pipeline.into(),
            digest: plugin.digest().clone(),
        };
        Self {
            plugin,
            identity,
            config,
            limits,
            live: None,
        }
    }

    /// The plugin this slot runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Calls `handle` for one entry of stream `source`.
    ///
    /// The entry's fields are lent to the guest and given back, whatever the outcome.
    pub async fn handle(
        &mut self,
        source: &str,
        entry: &mut Entry,
    ) -> Result<Vec<Output>, HandlerError> {
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.handled >= self.limits.instance_reuse)
        {
            self.live = None;
        }
        if self.live.is_none() {
            let live = self.instantiate().await?;
            self.live = Some(live);
        }
        let Some(live) = self.live.as_mut() else {
            unreachable!("instantiated just above");
        };
        live.handled += 1;
        let data = live.store.data_mut();
        data.deadline = Instant::now() + self.limits.timeout;
        data.message_id.clone_from(&entry.id);
        let message = Message {
            source: source.to_owned(),
            id: std::mem::take(&mut entry.id),
            fields: std::mem::take(&mut entry.fields),
            attempt: entry.attempt,
        };
        let result = live.handler.call_handle(&mut live.store, &message).await;
        entry.id = message.id;
        entry.fields = message.fields;
        match result {
            Ok(Ok(outputs)) => Ok(outputs.into_iter().map(Output::from).collect()),
            Ok(Err(Failure::Retry(reason))) => Err(HandlerError::Retry(reason)),
            Ok(Err(Failure::Reject(reason))) => Err(HandlerError::Reject(reason)),
            Err(error) => {
                // A trapped instance may hold broken state: never call it again.
                self.live = None;
                Err(self.classify(error))
            }
        }
    }

    fn classify(&self, error: wasmtime::Error) -> HandlerError {
        if error.downcast_ref::<DeadlineExceeded>().is_some() {
            HandlerError::Timeout(self.limits.timeout)
        } else if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
            HandlerError::Trap(trap.to_string())
        } else {
            HandlerError::Trap(format!("{error:#}"))
        }
    }

    // `&mut self`: a `&self` held across `.await` would need `Instance: Sync`.
    async fn instantiate(&mut self) -> Result<Live, HandlerError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            // Nothing granted: no preopened directories, no env, no sockets, no stdio.
            wasi: WasiCtx::builder().build(),
            table: Default::default(),
            limits,
            identity: self.identity.clone(),
            config: self.config.clone(),
            message_id: String::new(),
            deadline: Instant::now() + self.limits.timeout,
        };
        let mut store = Store::new(self.plugin.runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        // Every epoch tick, a running guest yields to the async runtime (so a spinning
        // handler cannot starve other pipelines) and is stopped once past its deadline.
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let handler = self
            .plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| match self.classify(e) {
                HandlerError::Trap(reason) => HandlerError::Instantiate(reason),
                other => other,
            })?;
        Ok(Live {
            store,
            handler,
            handled: 0,
        })
    }
}

// The generated output type carries the same data as the domain type.
impl From<bindings::Output> for Output {
    fn from(o: bindings::Output) -> Self {
        Output {
            target: o.target,
            fields: o.fields,
        }
    }
}
