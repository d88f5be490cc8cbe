//! The candidate's thread: its own single-threaded runtime and instance, so that its
//! calls never take the pipeline's thread; it ends when the shadow is detached (its
//! queue's sender dropped).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::{Offered, Settings, Shadow, tally};
use crate::diff::{Outcome, compare};
use crate::state::{Scope, SeenFirst};
use crate::wasm::{Instance, PluginCell};

/// Starts the candidate's thread for `shadow`, taking batches from `queue`.
pub(super) fn spawn(shadow: &Shadow, settings: Settings, queue: Receiver<Offered>) {
    let cell: PluginCell = Arc::new(arc_swap::ArcSwap::new(shadow.plugin.clone()));
    let (tally, spent, pipeline) = (
        shadow.tally.clone(),
        shadow.shadow_ns.clone(),
        shadow.pipeline.clone(),
    );
    let span = tracing::info_span!("shadow", pipeline = %pipeline);
    let started = std::thread::Builder::new()
        .name(format!("shadow-{pipeline}"))
        .spawn(move || {
            let _span = span.entered();
            lower_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::warn!(error = %e, "the shadow's runtime cannot start: the candidate is not run");
                    return;
                }
            };
            let mut instance = Instance::new(cell, settings.config, settings.limits)
                .serving(&settings.group, None);
            let outputs = settings.outputs;
            while let Ok(offered) = queue.recv() {
                let began = Instant::now();
                let outcomes = runtime.block_on(run(&mut instance, &offered, &outputs));
                spent.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
                let mut tally = tally::lock(&tally);
                for ((entry, live), candidate) in offered.entries.iter().zip(&offered.live).zip(outcomes) {
                    let live = Outcome {
                        result: crate::diff::as_the_pipeline_would(&outputs, live.0.clone()),
                        changes: live.1.clone(),
                    };
                    let difference = compare(&live, &candidate);
                    let outcome = if difference.kinds.is_empty() { "agree" } else { "differ" };
                    metrics::counter!("sluice_shadow_entries_total", "pipeline" => pipeline.clone(), "outcome" => outcome)
                        .increment(1);
                    tally.add(&entry.id, difference);
                }
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "the shadow's thread cannot start: the candidate is not run");
    }
}

/// Puts the calling thread at nice 19 (Linux threads have their own), so that the
/// pipeline and Redis get the cores first when they compete. Best effort.
fn lower_priority() {
    // SAFETY: setpriority(2) on the calling thread (who = 0) with a valid nice value.
    let set = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if set != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "the shadow's thread keeps its priority");
    }
}

/// The candidate's outcome for each entry of `offered`, in order.
///
/// With handler state, the candidate runs after the live entry was committed: each of
/// its calls sees first what the live call saw (its recorded reads), then the batch's
/// own earlier writes (a fresh overlay per batch, as the live batch had), then Redis.
async fn run(instance: &mut Instance, offered: &Offered, outputs: &[String]) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(offered.entries.len());
    let overlay = Arc::new(crate::state::Overlay::default());
    let stateful = instance.plugin().imports_state();
    for (entry, live) in offered.entries.iter().zip(&offered.live) {
        let mut entry = entry.clone();
        let scope = offered
            .scope
            .as_ref()
            .filter(|_| stateful)
            .map(|scope| Scope {
                prefixes: scope.prefixes.clone(),
                overlay: overlay.clone(),
                store: Arc::new(SeenFirst {
                    reads: live.1.reads.clone(),
                    below: scope.store.clone(),
                }),
            });
        let input = offered.input.as_str();
        let (result, finished) = instance.handle_in(input, &mut entry, scope.as_ref()).await;
        let result = crate::diff::as_the_pipeline_would(outputs, result);
        let changes = match result.is_ok() {
            true => finished.changes,
            false => Default::default(),
        };
        outcomes.push(Outcome { result, changes });
    }
    outcomes
}
