//! Each pipeline's live status for operators: running, paused or in error (cannot reach
//! or use Redis), pending and lag, recent throughput and latency, the last error and
//! recent incidents. Written by the pipeline, read by the admin API.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::lock::lock;
use serde::Serialize;
use tokio::sync::watch;

/// Seconds of history kept for throughput and latency.
const WINDOW_SECONDS: u64 = 60;
/// Incidents kept per pipeline (the newest).
const INCIDENTS_KEPT: usize = 20;

/// Something that happened to a pipeline that an operator should know of (a consumer
/// group re-created, entries recovered, Redis unusable and usable again).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Incident {
    /// When, in Unix time (seconds).
    pub at: u64,
    /// What happened, and what Sluice did.
    pub message: String,
}

/// One pipeline's status board.
pub struct Board {
    paused: watch::Sender<bool>,
    /// Whether the pipeline has stopped for the pause (nothing in flight).
    parked: std::sync::atomic::AtomicBool,
    /// Pending and lag per partition (`None`: an unpartitioned pipeline) this daemon
    /// runs.
    backlog: Mutex<std::collections::BTreeMap<Option<u32>, (u64, u64)>>,
    last_error: Mutex<Option<String>>,
    /// Why the pipeline cannot reach or use Redis now, and since when (Unix seconds).
    fault: Mutex<Option<(String, u64)>>,
    incidents: Mutex<VecDeque<Incident>>,
    /// Per second: (unix second, entries committed, sum of end-to-end latency in ms).
    window: Mutex<VecDeque<(u64, u64, u64)>>,
}

/// What the API shows of a pipeline.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BoardView {
    /// `running`; `pausing` once a pause is asked for, until work in flight has finished;
    /// `paused` once nothing more is handled (entries already read stay pending until
    /// resume); or `error` while the pipeline cannot reach or use Redis.
    pub state: String,
    /// Whether the pipeline is paused (also in state `error`).
    pub paused: bool,
    /// In state `error`: why (Redis's error, and what to do).
    pub error: Option<String>,
    /// In state `error`: since when, in Unix time (seconds).
    pub error_since: Option<u64>,
    /// Recent incidents, oldest first (at most 20).
    pub incidents: Vec<Incident>,
    /// Entries pending in the group (read, not yet acknowledged).
    pub pending: u64,
    /// Entries in the stream not yet delivered to the group.
    pub lag: u64,
    /// For a partitioned pipeline: the partitions this daemon runs (all of them with
    /// `ordering = "none"`; those it holds the lease of with `"per-key"`); `pending` and
    /// `lag` are their sums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<u32>>,
    /// Entries committed per second over the last minute.
    pub throughput: f64,
    /// Mean end-to-end latency (commit time minus entry time) over the last minute, ms.
    pub latency_ms: f64,
    /// The last handler failure or Redis error.
    pub last_error: Option<String>,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            paused: watch::Sender::new(false),
            parked: std::sync::atomic::AtomicBool::new(false),
            backlog: Mutex::new(Default::default()),
            last_error: Mutex::new(None),
            fault: Mutex::new(None),
            incidents: Mutex::new(VecDeque::new()),
            window: Mutex::new(VecDeque::new()),
        }
    }
}

impl Board {
    /// Pauses (stop reading; in-flight work finishes) or resumes the pipeline.
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// Records that the pipeline stopped for a pause (`true`) or goes on (`false`).
    pub fn set_parked(&self, parked: bool) {
        self.parked.store(parked, Ordering::SeqCst);
    }

    /// A receiver that sees pause and resume.
    pub fn paused(&self) -> watch::Receiver<bool> {
        self.paused.subscribe()
    }

    /// Records the group's pending count and lag on `partition`'s stream.
    pub fn set_backlog(&self, partition: Option<u32>, pending: u64, lag: u64) {
        lock(&self.backlog).insert(partition, (pending, lag));
    }

    /// Forgets `partition` (this daemon no longer runs it).
    pub fn drop_partition(&self, partition: Option<u32>) {
        lock(&self.backlog).remove(&partition);
    }

    /// Records an error for the status.
    pub fn set_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    /// Puts the pipeline in state `error` (it cannot reach or use Redis) with `reason`;
    /// `since` is kept from the first report of a run of errors.
    pub fn set_fault(&self, reason: String) {
        let mut fault = lock(&self.fault);
        let since = fault.as_ref().map_or_else(now_s, |(_, since)| *since);
        *lock(&self.last_error) = Some(reason.clone());
        *fault = Some((reason, since));
    }

    /// Ends state `error`; returns how long it lasted (seconds) if it was on.
    pub fn clear_fault(&self) -> Option<u64> {
        lock(&self.fault)
            .take()
            .map(|(_, since)| now_s().saturating_sub(since))
    }

    /// Why the pipeline cannot use Redis, if it cannot.
    pub fn fault(&self) -> Option<String> {
        lock(&self.fault).as_ref().map(|(reason, _)| reason.clone())
    }

    /// Records an incident.
    pub fn incident(&self, message: String) {
        let mut incidents = lock(&self.incidents);
        incidents.push_back(Incident {
            at: now_s(),
            message,
        });
        while incidents.len() > INCIDENTS_KEPT {
            incidents.pop_front();
        }
    }

    /// Takes on `earlier`'s incidents, before any of its own: a pipeline that a config
    /// reload restarts keeps its history.
    pub fn carry_incidents(&self, earlier: &Board) {
        let kept = lock(&earlier.incidents).clone();
        let mut incidents = lock(&self.incidents);
        let own = std::mem::replace(&mut *incidents, kept);
        incidents.extend(own);
        while incidents.len() > INCIDENTS_KEPT {
            incidents.pop_front();
        }
    }

    /// Records `count` commits whose latencies add up to `latency_ms`.
    pub fn committed(&self, count: u64, latency_ms: u64) {
        let now = now_s();
        let mut window = lock(&self.window);
        match window.back_mut() {
            Some(last) if last.0 == now => {
                last.1 += count;
                last.2 += latency_ms;
            }
            _ => window.push_back((now, count, latency_ms)),
        }
        while window.front().is_some_and(|f| f.0 + WINDOW_SECONDS <= now) {
            window.pop_front();
        }
    }

    /// The view for the API.
    pub fn view(&self) -> BoardView {
        let now = now_s();
        let (count, latency) = lock(&self.window)
            .iter()
            .filter(|(s, _, _)| s + WINDOW_SECONDS > now)
            .fold((0, 0), |(c, l), (_, n, ms)| (c + n, l + ms));
        let fault = lock(&self.fault).clone();
        let backlog = lock(&self.backlog).clone();
        BoardView {
            state: if fault.is_some() {
                "error"
            } else if *self.paused.borrow() {
                if self.parked.load(Ordering::SeqCst) {
                    "paused"
                } else {
                    "pausing"
                }
            } else {
                "running"
            }
            .to_owned(),
            paused: *self.paused.borrow(),
            error: fault.as_ref().map(|(reason, _)| reason.clone()),
            error_since: fault.map(|(_, since)| since),
            incidents: lock(&self.incidents).iter().cloned().collect(),
            pending: backlog.values().map(|(p, _)| p).sum(),
            lag: backlog.values().map(|(_, l)| l).sum(),
            partitions: backlog.keys().copied().collect::<Option<Vec<u32>>>(),
            throughput: count as f64 / WINDOW_SECONDS as f64,
            latency_ms: if count == 0 {
                0.0
            } else {
                latency as f64 / count as f64
            },
            last_error: lock(&self.last_error).clone(),
        }
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What an operator should know of the whole daemon (a Redis that may evict keys on its
/// own): shown with every pipeline. Written by the supervisor, read by the admin API.
#[derive(Default)]
pub struct Warnings(arc_swap::ArcSwap<Vec<String>>);

impl Warnings {
    /// Replaces the warnings with `now`.
    pub fn set(&self, now: Vec<String>) {
        self.0.store(std::sync::Arc::new(now));
    }

    /// The warnings now, oldest first.
    pub fn get(&self) -> Vec<String> {
        self.0.load().as_ref().clone()
    }
}
