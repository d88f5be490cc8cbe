//! The handler stage: the pipeline's plugin instances, and the handler calls that turn
//! a batch of entries into one [`Handled`] record per entry.
//!
//! From a batch to a handler call takes three steps: [`Handlers::handle`] spreads the
//! batch over the instances, [`share`] runs one instance's share (through the batch
//! export when the plugin has one: [`call_batch`]), and [`call`] makes one call on one
//! entry (`Instance::handle_in`, in `wasm`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tracing::Instrument;

use super::Halt;
use crate::config::PipelineConfig;
use crate::message::{Entry, HandlerError, Output};
use crate::outbound::Outbound;
use crate::shadow::{self, ShadowCell};
use crate::state::{Changes, Scope};
use crate::telemetry::CallMetrics;
use crate::wasm::{Instance, PluginCell};

/// One entry after its handler call: the digest of the plugin version that ran it, the
/// outputs (or the failure), and the handler state it read and wrote.
pub(super) struct Handled {
    pub digest: Arc<str>,
    pub result: Result<Vec<Output>, HandlerError>,
    pub state: Changes,
}

/// A batch back from [`Handlers::spawn`]: the instances that handled it, its entries and
/// a record per entry (`None`: not started, a drain or a pause came first).
pub(super) struct HandledBatch {
    instances: Vec<Instance>,
    pub entries: Vec<Entry>,
    pub handled: Vec<Option<Handled>>,
}

/// One instance's share of a batch, handled on a task of its own: the instance, and
/// each entry with its index in the batch and its record.
pub(super) struct Share {
    instance: Instance,
    done: Vec<(usize, Entry, Option<Handled>)>,
}

/// When an entry's handler call stops the rest of its batch from starting.
#[derive(Clone, Copy)]
pub(super) enum Until {
    /// Every entry is started (unless the pipeline halts).
    All,
    /// Per-key ordering: the first retryable failure before `max_attempts` stops the
    /// rest, so that no entry passes the one that failed.
    Retry { max_attempts: u32 },
}

/// The pipeline's instances and how they are called.
pub(super) struct Handlers {
    instances: Vec<Instance>,
    /// With `state` prefixes: what the handler may touch; each batch gets a copy with
    /// an overlay of its own.
    state: Option<Scope>,
    input: String,
    calls: CallMetrics,
    /// A candidate attached beside the plugin, and what its instance runs under.
    shadow: ShadowCell,
    shadow_settings: shadow::Settings,
}

impl Handlers {
    /// `concurrency` instances of `plugin` with the pipeline's config, limits and
    /// outbound HTTP (fails when its CA file cannot be read); `outputs` as the handler
    /// names them, for an attached candidate's outputs to be held to.
    pub(super) fn new(
        config: &PipelineConfig,
        plugin: PluginCell,
        state: Option<Scope>,
        calls: CallMetrics,
        outputs: &std::collections::HashSet<String>,
    ) -> anyhow::Result<Self> {
        let limits = config.limits.to_limits();
        let plugin_config = Arc::new(config.plugin_config.values().clone());
        let outbound = config
            .outbound()
            .map(|settings| Outbound::new(config.name.as_str(), settings))
            .transpose()?
            .map(Arc::new);
        let instances = (0..config.concurrency.unwrap_or(1))
            .map(|_| {
                Instance::new(plugin.clone(), plugin_config.clone(), limits)
                    .serving(config.group.as_str(), outbound.clone())
            })
            .collect();
        Ok(Self {
            instances,
            state,
            input: config.input.to_string(),
            calls,
            shadow: ShadowCell::default(),
            shadow_settings: shadow::Settings {
                config: plugin_config,
                limits,
                group: config.group.to_string(),
                outputs: outputs.iter().cloned().collect(),
            },
        })
    }

    /// Offers every batch handled from now on to the candidate in `shadow`, if any.
    pub(super) fn shadowed_by(&mut self, shadow: ShadowCell) {
        self.shadow = shadow;
    }

    /// Runs the handler on every entry (see [`Handlers::handle_all`]), then offers the
    /// batch to the attached candidate, if any: after the live calls, never waiting.
    pub(super) async fn handle(
        &mut self,
        entries: &mut [Entry],
        halt: &Halt,
        until: Until,
    ) -> Vec<Option<Handled>> {
        let started = Instant::now();
        let handled = self.handle_all(entries, halt, until).await;
        if let Some(candidate) = self.shadow.load_full() {
            let batch = entries.iter().zip(&handled).filter_map(|(entry, handled)| {
                let h = handled.as_ref()?;
                Some((entry.clone(), h.result.clone(), h.state.clone()))
            });
            let settings = || self.shadow_settings.clone();
            candidate.offer(
                settings,
                &self.input,
                batch.collect(),
                started.elapsed(),
                self.scope(),
            );
        }
        handled
    }

    /// Runs the handler on every entry, spreading them over the instances. Once `halt`
    /// says so (a drain or a pause), no further entry is started: those get `None` (a
    /// drain leaves them pending; a pause holds them until resume), so that both wait
    /// for the calls in flight, not the whole batch.
    async fn handle_all(
        &mut self,
        entries: &mut [Entry],
        halt: &Halt,
        until: Until,
    ) -> Vec<Option<Handled>> {
        let how = How {
            input: self.input.clone(),
            halt: halt.clone(),
            calls: self.calls.clone(),
            scope: self.scope(),
            until,
        };
        let in_order = matches!(until, Until::Retry { .. });
        if self.instances.len() == 1 || entries.len() == 1 || in_order {
            return share(&mut self.instances[0], entries, &how).await;
        }
        // Each instance's share on a task of its own, so that handlers use every core:
        // instance `i` takes entries `i`, `i + n`, ... in order.
        let n = self.instances.len();
        let mut work: Vec<Vec<(usize, Entry)>> = (0..n).map(|_| Vec::new()).collect();
        for (index, entry) in entries.iter_mut().enumerate() {
            work[index % n].push((index, std::mem::take(entry)));
        }
        let instances = std::mem::take(&mut self.instances);
        let tasks: Vec<_> = (instances.into_iter().zip(work))
            .map(|(mut instance, items)| {
                let how = How {
                    until: Until::All,
                    ..how.clone()
                };
                let (indices, mut entries): (Vec<usize>, Vec<Entry>) = items.into_iter().unzip();
                let task = async move {
                    let handled = share(&mut instance, &mut entries, &how).await;
                    let done = indices.into_iter().zip(entries).zip(handled);
                    let done = done.map(|((index, entry), handled)| (index, entry, handled));
                    Share {
                        instance,
                        done: done.collect(),
                    }
                };
                tokio::spawn(task.in_current_span())
            })
            .collect();
        let mut handled: Vec<Option<Handled>> = (0..entries.len()).map(|_| None).collect();
        for task in tasks {
            // A panic here is a host bug; the entries it held stay pending in Redis.
            let share = (task.await).unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            self.instances.push(share.instance);
            for (index, entry, record) in share.done {
                entries[index] = entry;
                handled[index] = record;
            }
        }
        handled
    }

    /// [`Handlers::handle`] on a task of its own, so that the previous batch's commit can
    /// run beside it: the instances go with the batch and come back with it
    /// ([`Handlers::restore`]). Until then there are no instances.
    pub(super) fn spawn(
        &mut self,
        mut entries: Vec<Entry>,
        halt: &Halt,
    ) -> tokio::task::JoinHandle<HandledBatch> {
        let mut away = Handlers {
            instances: std::mem::take(&mut self.instances),
            state: self.state.clone(),
            input: self.input.clone(),
            calls: self.calls.clone(),
            shadow: self.shadow.clone(),
            shadow_settings: self.shadow_settings.clone(),
        };
        let halt = halt.clone();
        tokio::spawn(
            async move {
                let handled = away.handle(&mut entries, &halt, Until::All).await;
                HandledBatch {
                    instances: away.instances,
                    entries,
                    handled,
                }
            }
            .in_current_span(),
        )
    }

    /// Takes back the instances of a batch handled on its own task.
    pub(super) fn restore(&mut self, batch: &mut HandledBatch) {
        self.instances = std::mem::take(&mut batch.instances);
    }

    /// A fresh view of handler state for one batch (no writes of earlier entries yet).
    fn scope(&self) -> Option<Scope> {
        self.state.as_ref().map(|scope| Scope {
            overlay: Default::default(),
            ..scope.clone()
        })
    }
}

impl super::Pipeline {
    /// Offers each batch handled to the candidate in `shadow`, when one is attached.
    pub fn shadowed_by(&mut self, shadow: ShadowCell) {
        self.handlers.shadowed_by(shadow);
    }
}

/// How a batch's handler calls are made.
#[derive(Clone)]
struct How {
    input: String,
    halt: Halt,
    calls: CallMetrics,
    /// The batch's view of handler state.
    scope: Option<Scope>,
    until: Until,
}

/// One instance's share of a batch, in order: through `handle-batch` when the plugin
/// exports it and the pipeline has no handler state (whose reads and writes are per
/// entry), else one [`call`] per entry.
async fn share(instance: &mut Instance, entries: &mut [Entry], how: &How) -> Vec<Option<Handled>> {
    let (input, halt, calls) = (how.input.as_str(), &how.halt, &how.calls);
    let batched = how.scope.is_none() && instance.plugin().handles_batches();
    if batched && matches!(how.until, Until::All) {
        if entries.is_empty() || halt.now() {
            return entries.iter().map(|_| None).collect();
        }
        if let Some(handled) = call_batch(instance, input, entries, calls).await {
            return handled;
        }
    }
    let mut handled = Vec::with_capacity(entries.len());
    let mut stopped = false;
    for entry in entries.iter_mut() {
        if stopped || halt.now() {
            handled.push(None);
            continue;
        }
        let record = call(instance, input, entry, how.scope.as_ref(), calls).await;
        if let Until::Retry { max_attempts } = how.until
            && let Err(error) = &record.result
        {
            stopped = error.is_retryable() && entry.attempt < max_attempts;
        }
        handled.push(Some(record));
    }
    handled
}

/// One handler call on `entry`, timed for the metrics and the entry's trace.
async fn call(
    instance: &mut Instance,
    input: &str,
    entry: &mut Entry,
    scope: Option<&Scope>,
    calls: &CallMetrics,
) -> Handled {
    let (started, wall) = (Instant::now(), SystemTime::now());
    let (result, state) = instance.handle_in(input, entry, scope).await;
    let took = started.elapsed();
    calls.record(took, instance.last_call_throttled());
    if let Some(trace) = &mut entry.trace {
        trace.handled = Some((wall, wall + took));
    }
    Handled {
        digest: instance.plugin().digest().clone(),
        result,
        state: state.changes,
    }
}

/// One `handle-batch` call on `entries`, timed for the metrics (each entry its share of
/// the call; a throttled call counted once) and the entries' traces (the call). `None`
/// when the call fails as a whole (counted): the entries are then called one at a time.
async fn call_batch(
    instance: &mut Instance,
    input: &str,
    entries: &mut [Entry],
    calls: &CallMetrics,
) -> Option<Vec<Option<Handled>>> {
    let (started, wall) = (Instant::now(), SystemTime::now());
    let error = match instance.handle_batch(input, entries).await {
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
            let handled = results.into_iter().map(|result| {
                let digest = digest.clone();
                Some(Handled {
                    digest,
                    result,
                    state: Changes::default(),
                })
            });
            return Some(handled.collect());
        }
        // Not a share for one call: no failure to count.
        Ok(None) => return None,
        Err(error) => error,
    };
    let export = instance
        .plugin()
        .batch_export()
        .map_or("the batch export", |e| e.name());
    calls.batch_fallback(export, entries.len(), &error);
    None
}
