//! Each pipeline on a thread of its own: starting it, and stopping it within the drain
//! timeout.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::partitions::Partitions;
use crate::config::Ordering;
use crate::config::PipelineConfig;
use crate::pipeline::Order;

/// How long a pipeline dropped after its drain timeout gets to end its thread.
const KILL_GRACE: Duration = Duration::from_secs(2);

pub(super) struct Running {
    pub(super) config: PipelineConfig,
    /// Asks the pipeline to drain and stop.
    pub(super) stop: CancellationToken,
    /// Drops the pipeline where it is (after the drain timeout).
    pub(super) kill: CancellationToken,
    /// Resolves when the pipeline's thread has ended (sent or dropped as it exits).
    pub(super) ended: oneshot::Receiver<()>,
}

impl Drop for Running {
    /// A pipeline whose daemon goes away without a drain (a panic, a dropped `Daemon`)
    /// stops where it is: its thread is not tied to any runtime that would stop it.
    fn drop(&mut self) {
        self.stop.cancel();
        self.kill.cancel();
    }
}

/// Runs a pipeline on a thread of its own with its own runtime (`concurrency` workers),
/// where its Redis connections are opened too. Its data path then never hands work to
/// another thread — on a small machine shared with Redis that is worth ~1.4× the
/// throughput of one runtime for everything — and a handler spinning until its timeout
/// holds only its own pipeline's threads, which the OS time-slices with the others.
///
/// A plain OS thread, not `spawn_blocking`: a runtime being dropped waits for its
/// blocking threads, and a pipeline must never hold its caller's runtime hostage.
/// Returns whether it started, and a receiver that resolves when the thread has ended.
pub(super) fn spawn_pipeline(
    partitions: Partitions,
    stop: CancellationToken,
    kill: CancellationToken,
) -> Result<(oneshot::Receiver<Result<()>>, oneshot::Receiver<()>)> {
    let (ready, started) = oneshot::channel();
    let (ended_tx, ended) = oneshot::channel::<()>();
    let name = partitions.config.name.to_string();
    // Multi-thread even for one worker: it moved more and had a better tail than a
    // current-thread runtime (docs/decisions.md).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(partitions.config.concurrency.unwrap_or(1).max(1))
        .thread_name(format!("sluice-{name}"))
        .enable_all()
        .build()
        .context("cannot start the pipeline's runtime")?;
    std::thread::Builder::new()
        .name(format!("sluice-{name}"))
        .spawn(move || {
            // Dropped last, after the runtime and everything on it: `ended` resolves
            // only once the pipeline's tasks and connections are gone.
            let _ended = ended_tx;
            run_thread(&runtime, partitions, ready, &stop, &kill);
            // Tasks it spawned (a prefetch, a handler call) are dropped here; a guest in
            // a call gives its worker back within an epoch tick.
            drop(runtime);
        })
        .context("cannot start the pipeline's thread")?;
    Ok((started, ended))
}

/// The pipeline's thread: runs it on `runtime` until it ends, starting it again after a
/// panic (with a backoff) unless it is stopping.
fn run_thread(
    runtime: &tokio::runtime::Runtime,
    partitions: Partitions,
    ready: oneshot::Sender<Result<()>>,
    stop: &CancellationToken,
    kill: &CancellationToken,
) {
    let name = partitions.config.name.to_string();
    // Spawned, not run by `block_on` itself: the loop then runs on the runtime's worker
    // beside the tasks it wakes (its connections, its handler calls). Every line the
    // pipeline logs, its handlers' included, carries its name.
    let span = tracing::info_span!("pipeline", pipeline = %name);
    let board = partitions.board.clone();
    let mut ready = Some(ready);
    let mut restarts = 0u32;
    loop {
        let work = runtime.spawn(
            run(partitions.clone(), ready.take(), stop.clone(), kill.clone())
                .instrument(span.clone()),
        );
        let Err(e) = runtime.block_on(work) else {
            break;
        };
        if !e.is_panic() {
            break;
        }
        // A bug in Sluice, not in the handler (a guest cannot panic the host): the
        // entries in flight stay pending, and the pipeline starts again, so that one bug
        // does not stop it for good while it looks alive.
        let panic = panic_message(e.into_panic());
        if stop.is_cancelled() || kill.is_cancelled() {
            tracing::error!(pipeline = %name, panic = %panic, "pipeline panicked while stopping; its entries stay pending and will be delivered again");
            break;
        }
        restarts += 1;
        let wait =
            RESTART_BACKOFF_MAX.min(RESTART_BACKOFF * 2u32.saturating_pow(restarts.min(16) - 1));
        metrics::counter!("sluice_pipeline_restarts_total", "pipeline" => name.clone())
            .increment(1);
        let reason = format!(
            "the pipeline panicked (a bug in Sluice: please report it with the log line): {panic}; restarting it in {wait:?}"
        );
        tracing::error!(pipeline = %name, panic = %panic, restart_in = ?wait, restarts, "pipeline panicked; its entries stay pending and will be delivered again; restarting it");
        board.set_fault(reason.clone());
        board.incident(reason);
        let stopped = runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(wait) => false,
                () = stop.cancelled() => true,
                () = kill.cancelled() => true,
            }
        });
        if stopped {
            break;
        }
    }
}

/// The first wait before a panicked pipeline starts again; doubled at each panic.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before a panicked pipeline starts again.
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The text of a panic's payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// Runs the pipeline (its partitions) until `stop`, or `kill`; `ready` (on the first
/// start only) hears whether it started.
async fn run(
    partitions: Partitions,
    ready: Option<oneshot::Sender<Result<()>>>,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let ready = |result: Result<()>| {
        if let Some(ready) = ready {
            let _ = ready.send(result);
        } else if let Err(e) = result {
            tracing::error!(error = format!("{e:#}"), "the pipeline cannot start again");
        }
    };
    match (partitions.config.partitions, partitions.config.ordering) {
        (None, _) => run_whole(partitions, ready, stop, kill).await,
        (Some(_), Ordering::None) => run_every_partition(partitions, ready, stop, kill).await,
        (Some(_), Ordering::PerKey) => {
            // Permissions and the group are checked on one partition before the start
            // counts as done.
            if let Err(e) = partitions.open_all_checked().await {
                ready(Err(e));
                return;
            }
            ready(Ok(()));
            tokio::select! {
                () = partitions.run_leased(stop) => {}
                () = kill.cancelled() => {}
            }
        }
    }
}

/// An unpartitioned pipeline.
async fn run_whole(
    partitions: Partitions,
    ready: impl FnOnce(Result<()>),
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let pipeline = match partitions.open(None).await {
        Ok(pipeline) => pipeline,
        Err(e) => return ready(Err(e)),
    };
    ready(Ok(()));
    tokio::select! {
        result = pipeline.run(stop, Order::Any) => {
            if let Err(e) = result {
                tracing::error!(error = format!("{e:#}"), "pipeline failed");
            }
        }
        () = kill.cancelled() => {}
    }
}

/// `ordering = "none"`: a consumer on every partition.
async fn run_every_partition(
    partitions: Partitions,
    ready: impl FnOnce(Result<()>),
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let pipelines = match partitions.open_all().await {
        Ok(pipelines) => pipelines,
        Err(e) => return ready(Err(e)),
    };
    ready(Ok(()));
    let runs = pipelines.into_iter().enumerate().map(|(p, pipeline)| {
        let stop = stop.clone();
        async move {
            if let Err(e) = pipeline.run(stop, Order::Any).await {
                tracing::error!(partition = p, error = format!("{e:#}"), "partition failed");
            }
        }
    });
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        () = kill.cancelled() => {}
    }
}

/// Asks `pipelines` to stop, gives them `drain_timeout` to finish the calls in flight and
/// commit, then drops the rest where they are (safe: nothing uncommitted is acknowledged).
/// Stops every pipeline without a drain (Redis is gone: nothing can be committed); the
/// entries in flight stay pending wherever Redis kept them.
pub(super) async fn stop_now(pipelines: Vec<Running>) {
    for running in &pipelines {
        running.stop.cancel();
        running.kill.cancel();
    }
    for mut running in pipelines {
        let _ = tokio::time::timeout(KILL_GRACE, &mut running.ended).await;
    }
}

pub(super) async fn stop_all(pipelines: Vec<Running>, drain_timeout: Duration) {
    for running in &pipelines {
        running.stop.cancel();
    }
    let deadline = tokio::time::Instant::now() + drain_timeout;
    for mut running in pipelines {
        let name = running.config.name.to_string();
        if tokio::time::timeout_at(deadline, &mut running.ended)
            .await
            .is_ok()
        {
            continue;
        }
        tracing::warn!(pipeline = %name, ?drain_timeout, "drain timeout: stopping with work in flight; its entries stay pending and will be delivered again");
        running.kill.cancel();
        // A guest in a call returns to its runtime within an epoch tick.
        if tokio::time::timeout(KILL_GRACE, &mut running.ended)
            .await
            .is_err()
        {
            tracing::error!(pipeline = %name, grace = ?KILL_GRACE, "pipeline thread did not end after being stopped; leaving it behind");
        }
    }
}
