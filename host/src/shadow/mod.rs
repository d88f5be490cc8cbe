//! Shadow runs: a candidate plugin attached to a live pipeline. Every batch the live
//! plugin handles is offered to the candidate after the live calls; the candidate runs
//! on instances of its own, on a thread of its own, under the pipeline's limits and
//! config, and its results are compared with the live ones (`crate::diff::compare`) and
//! never written. An offer never waits: a candidate that is behind, or that has spent
//! more than its share of the pipeline's handler time, skips the batch (sampled down,
//! and counted as such).
//!
//! # Layout
//! - this file: the attached candidate ([`Shadow`], in a pipeline's [`ShadowCell`]) and
//!   offers;
//! - `worker.rs`: the candidate's thread, its instance and the comparisons;
//! - `tally.rs`: the counts and the last differences ([`ShadowStatus`]).
//!
//! Outbound HTTP: the candidate's requests are refused (wasi:http
//! `HTTP-request-denied`, a denial a handler can tell apart), never sent: a shadow must
//! not charge a card the live plugin already charged, and a recorded response cannot
//! answer a request the live plugin never made.

mod tally;
mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use crate::message::{Entry, HandlerError, Output};
use crate::state::{Changes, Scope};
use crate::wasm::{Limits, Plugin};
use tally::Tally;
pub use tally::{ShadowDifference, ShadowStatus};

/// A pipeline's attached candidate, if any: set by the admin API, read by the pipeline.
pub type ShadowCell = Arc<ArcSwapOption<Shadow>>;

/// The share of the pipeline's handler time a candidate may spend before it is sampled
/// down.
pub const DEFAULT_SHARE: f64 = 0.5;

/// Handler time a candidate may spend beyond its share: its first instance is made
/// (and its thread started) on the first batch, which the share alone would not cover.
const GRACE: Duration = Duration::from_millis(100);

/// Batches waiting for the candidate; an offer beyond them is skipped.
const QUEUE: usize = 4;

/// What the candidate's instance runs under: the pipeline's.
#[derive(Clone)]
pub struct Settings {
    pub config: Arc<BTreeMap<String, String>>,
    pub limits: Limits,
    pub group: String,
    /// The streams outputs may go to (a partition's as the handler names them).
    pub outputs: Vec<String>,
}

/// A batch handled by the live plugin, offered to the candidate.
pub(crate) struct Offered {
    input: String,
    entries: Vec<Entry>,
    live: Vec<(Result<Vec<Output>, HandlerError>, Changes)>,
    scope: Option<Scope>,
}

/// A candidate attached to a pipeline.
pub struct Shadow {
    pipeline: String,
    plugin: Arc<Plugin>,
    /// The component's bytes, for a promotion.
    bytes: Arc<Vec<u8>>,
    attached_at: SystemTime,
    share: f64,
    tally: Arc<Mutex<Tally>>,
    /// Handler time of the live calls offered, and of the candidate's calls (ns).
    live_ns: AtomicU64,
    shadow_ns: Arc<AtomicU64>,
    /// The candidate's queue, its thread started at the first offer (with the
    /// pipeline's settings, which only the pipeline knows).
    queue: OnceLock<std::sync::mpsc::SyncSender<Offered>>,
}

impl Shadow {
    /// A candidate for `pipeline`, allowed `share` of its handler time.
    pub fn new(pipeline: &str, plugin: Arc<Plugin>, bytes: Vec<u8>, share: f64) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            plugin,
            bytes: Arc::new(bytes),
            attached_at: SystemTime::now(),
            share,
            tally: Arc::default(),
            live_ns: AtomicU64::new(0),
            shadow_ns: Arc::default(),
            queue: OnceLock::new(),
        }
    }

    /// The candidate.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// The candidate's component bytes.
    pub fn bytes(&self) -> &Arc<Vec<u8>> {
        &self.bytes
    }

    /// Offers a batch the live plugin handled in `took` (entries not handled are left
    /// out). Never waits: skipped when the candidate has spent more than its share of
    /// the live handler time, or is still busy with earlier batches.
    pub fn offer(
        &self,
        settings: impl FnOnce() -> Settings,
        input: &str,
        batch: Vec<(Entry, Result<Vec<Output>, HandlerError>, Changes)>,
        took: Duration,
        scope: Option<Scope>,
    ) {
        if batch.is_empty() {
            return;
        }
        let live = self
            .live_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        let spent = self.shadow_ns.load(Ordering::Relaxed);
        let count = batch.len();
        if spent as f64 > self.share * live as f64 + GRACE.as_nanos() as f64 {
            self.skipped(count);
            return;
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            worker::spawn(self, settings(), rx);
            tx
        });
        let (entries, live): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|(e, r, c)| (e, (r, c))).unzip();
        let offered = Offered {
            input: input.to_owned(),
            entries,
            live,
            scope,
        };
        if queue.try_send(offered).is_err() {
            self.skipped(count);
        }
    }

    fn skipped(&self, count: usize) {
        tally::lock(&self.tally).skipped += count as u64;
        metrics::counter!("sluice_shadow_entries_total", "pipeline" => self.pipeline.clone(), "outcome" => "skipped")
            .increment(count as u64);
    }

    /// What the API shows: the candidate, the counts, the last differences.
    pub fn status(&self) -> ShadowStatus {
        let live = self.live_ns.load(Ordering::Relaxed) as f64;
        let spent = self.shadow_ns.load(Ordering::Relaxed) as f64;
        tally::lock(&self.tally).status(
            self.plugin.digest(),
            self.attached_at,
            self.share,
            if live > 0.0 { spent / live } else { 0.0 },
        )
    }

    /// The counts in one line, for incidents and logs.
    pub fn summary(&self) -> String {
        let s = self.status();
        format!(
            "{} entries compared: {} agreed, {} differed; {} skipped",
            s.compared, s.agreed, s.differed, s.skipped
        )
    }
}

impl Drop for Shadow {
    /// A candidate that ends (detached, promoted, replaced, or its pipeline restarted by
    /// a config reload) leaves its counts in the log.
    fn drop(&mut self) {
        tracing::info!(pipeline = %self.pipeline, candidate = %self.plugin.digest(), counts = %self.summary(), "shadow run ended");
    }
}
