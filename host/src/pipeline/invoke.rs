//! Running the handler over a batch, on one instance or spread over several.

use std::time::{Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Handled, Pipeline};
use crate::message::Entry;
use crate::state::Scope;
use crate::telemetry::CallMetrics;
use crate::wasm::Instance;

/// When to stop starting handler calls: a drain, or a pause. Calls in flight finish.
#[derive(Clone)]
pub(super) struct Halt {
    shutdown: CancellationToken,
    paused: watch::Receiver<bool>,
}

impl Halt {
    fn now(&self) -> bool {
        self.shutdown.is_cancelled() || *self.paused.borrow()
    }
}

impl Pipeline {
    /// Runs the handler on every entry, spreading them over the pipeline's instances.
    ///
    /// Once a drain or a pause is asked for, no further entry is started: those get
    /// `None` (a drain leaves them pending; a pause holds them until resume), so that
    /// both wait for the calls in flight, not the whole batch.
    pub(super) async fn invoke(&mut self, entries: &mut [Entry]) -> Vec<Option<Handled>> {
        let halt = self.halt();
        let scope = self.state_scope();
        invoke_on(
            &mut self.instances,
            self.config.input.as_str(),
            entries,
            &halt,
            &self.metrics.calls,
            scope,
        )
        .await
    }

    /// A fresh view of handler state for one batch (no writes of earlier entries yet).
    pub(super) fn state_scope(&self) -> Option<Scope> {
        self.state.as_ref().map(|scope| Scope {
            overlay: Default::default(),
            ..scope.clone()
        })
    }

    fn halt(&self) -> Halt {
        Halt {
            shutdown: self.shutdown.clone(),
            paused: self.paused.clone(),
        }
    }

    /// [`Pipeline::invoke`] on a task of its own, so that the previous batch's commit
    /// can run beside it: the instances go with the batch and come back with it. Until
    /// then the pipeline has no instances.
    pub(super) fn spawn_invoke(
        &mut self,
        mut entries: Vec<Entry>,
    ) -> tokio::task::JoinHandle<Invoked> {
        let mut instances = std::mem::take(&mut self.instances);
        let source = self.config.input.to_string();
        let halt = self.halt();
        let calls = self.metrics.calls.clone();
        let scope = self.state_scope();
        tokio::spawn(
            async move {
                let results =
                    invoke_on(&mut instances, &source, &mut entries, &halt, &calls, scope).await;
                Invoked {
                    instances,
                    entries,
                    results,
                }
            }
            .in_current_span(),
        )
    }
}

/// What [`Pipeline::spawn_invoke`] gives back.
pub(super) struct Invoked {
    pub instances: Vec<Instance>,
    pub entries: Vec<Entry>,
    pub results: Vec<Option<Handled>>,
}

/// One handler call on `entry`, timed for the metrics and the entry's trace.
pub(super) async fn call(
    instance: &mut Instance,
    source: &str,
    entry: &mut Entry,
    scope: Option<&Scope>,
    calls: &CallMetrics,
) -> Handled {
    let (started, wall) = (Instant::now(), SystemTime::now());
    let (result, state) = instance.handle_in(source, entry, scope).await;
    let took = started.elapsed();
    calls.record(took, instance.last_call_throttled());
    if let Some(trace) = &mut entry.trace {
        trace.handled = Some((wall, wall + took));
    }
    (instance.plugin().digest().clone(), result, state.changes)
}

/// Handler calls on `entries` through `handle-batch`, timed for the metrics (each entry
/// its share of the call; a throttled call counted once) and the entries' traces (the
/// call). A call that fails as a whole is counted, and the entries are handled one at a
/// time with [`call`], each recorded on its own; none is started once `halt` says so.
pub(super) async fn call_batch(
    instance: &mut Instance,
    source: &str,
    entries: &mut [Entry],
    halt: &Halt,
    calls: &CallMetrics,
) -> Vec<Option<Handled>> {
    if entries.is_empty() || halt.now() {
        return entries.iter().map(|_| None).collect();
    }
    let (started, wall) = (Instant::now(), SystemTime::now());
    let failed = match instance.handle_batch(source, entries).await {
        Ok(Some(results)) => {
            let took = started.elapsed();
            let each = took / u32::try_from(entries.len().max(1)).unwrap_or(u32::MAX);
            calls.record(each, instance.last_call_throttled());
            for _ in 1..entries.len() {
                calls.record(each, false);
            }
            for entry in entries.iter_mut() {
                if let Some(trace) = &mut entry.trace {
                    trace.handled = Some((wall, wall + took));
                }
            }
            let digest = instance.plugin().digest().clone();
            return results
                .into_iter()
                .map(|result| Some((digest.clone(), result, Default::default())))
                .collect();
        }
        // Not a share for one call: no failure to count.
        Ok(None) => None,
        Err(error) => Some(error),
    };
    if let Some(error) = failed {
        let export = instance
            .plugin()
            .batch_export()
            .map_or("the batch export", |e| e.name());
        calls.batch_fallback(export, entries.len(), &error);
    }
    let mut results = Vec::with_capacity(entries.len());
    for entry in entries.iter_mut() {
        if halt.now() {
            results.push(None);
            continue;
        }
        results.push(Some(call(instance, source, entry, None, calls).await));
    }
    results
}

/// Whether `instance` takes a share of a batch in one call: a plugin that exports
/// `handle-batch`, in a pipeline without handler state (whose reads and writes are per
/// entry).
fn batched(instance: &Instance, scope: &Option<Scope>) -> bool {
    scope.is_none() && instance.plugin().handles_batches()
}

async fn invoke_on(
    instances: &mut Vec<Instance>,
    source: &str,
    entries: &mut [Entry],
    halt: &Halt,
    calls: &CallMetrics,
    scope: Option<Scope>,
) -> Vec<Option<Handled>> {
    if instances.len() == 1 || entries.len() == 1 {
        let instance = &mut instances[0];
        if batched(instance, &scope) {
            return call_batch(instance, source, entries, halt, calls).await;
        }
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries.iter_mut() {
            if halt.now() {
                results.push(None);
                continue;
            }
            results.push(Some(
                call(instance, source, entry, scope.as_ref(), calls).await,
            ));
        }
        return results;
    }
    invoke_parallel(instances, source, entries, halt, calls.clone(), scope).await
}

/// Spreads a batch over all instances, each on its own task so that handlers use every
/// core; instance `i` takes entries `i`, `i + n`, ... in order.
async fn invoke_parallel(
    instances: &mut Vec<Instance>,
    source: &str,
    entries: &mut [Entry],
    halt: &Halt,
    calls: CallMetrics,
    scope: Option<Scope>,
) -> Vec<Option<Handled>> {
    let n = instances.len();
    let mut work: Vec<Vec<(usize, Entry)>> = (0..n).map(|_| Vec::new()).collect();
    for (index, entry) in entries.iter_mut().enumerate() {
        work[index % n].push((index, std::mem::take(entry)));
    }
    let tasks: Vec<_> = std::mem::take(instances)
        .into_iter()
        .zip(work)
        .map(|(mut instance, items)| {
            let source = source.to_owned();
            let halt = halt.clone();
            let calls = calls.clone();
            let scope = scope.clone();
            tokio::spawn(
                async move {
                    let mut done = Vec::with_capacity(items.len());
                    if batched(&instance, &scope) {
                        let (indices, mut share): (Vec<usize>, Vec<Entry>) =
                            items.into_iter().unzip();
                        let results =
                            call_batch(&mut instance, &source, &mut share, &halt, &calls).await;
                        for ((index, entry), result) in indices.into_iter().zip(share).zip(results)
                        {
                            done.push((index, entry, result));
                        }
                        return (instance, done);
                    }
                    for (index, mut entry) in items {
                        let result = if halt.now() {
                            None
                        } else {
                            Some(
                                call(&mut instance, &source, &mut entry, scope.as_ref(), &calls)
                                    .await,
                            )
                        };
                        done.push((index, entry, result));
                    }
                    (instance, done)
                }
                .in_current_span(),
            )
        })
        .collect();
    let mut results: Vec<Option<Handled>> = (0..entries.len()).map(|_| None).collect();
    for task in tasks {
        // A panic here is a host bug; the entries it held stay pending in Redis.
        let (instance, done) = match task.await {
            Ok(pair) => pair,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        instances.push(instance);
        for (index, entry, result) in done {
            entries[index] = entry;
            results[index] = result;
        }
    }
    results
}
