//! Each pipeline's live status for operators: running or paused, pending and lag, recent
//! throughput and latency, the last error. Written by the pipeline, read by the admin API.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

/// Seconds of history kept for throughput and latency.
const WINDOW_SECONDS: u64 = 60;

/// One pipeline's status board.
pub struct Board {
    paused: watch::Sender<bool>,
    pending: AtomicU64,
    lag: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Per second: (unix second, entries committed, sum of end-to-end latency in ms).
    window: Mutex<VecDeque<(u64, u64, u64)>>,
}

/// What the API shows of a pipeline.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BoardView {
    /// `running` or `paused`.
    pub state: String,
    /// Entries pending in the group (read, not yet acknowledged).
    pub pending: u64,
    /// Entries in the stream not yet delivered to the group.
    pub lag: u64,
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
            pending: AtomicU64::new(0),
            lag: AtomicU64::new(0),
            last_error: Mutex::new(None),
            window: Mutex::new(VecDeque::new()),
        }
    }
}

impl Board {
    /// Pauses (stop reading; in-flight work finishes) or resumes the pipeline.
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// A receiver that sees pause and resume.
    pub fn paused(&self) -> watch::Receiver<bool> {
        self.paused.subscribe()
    }

    /// Records the group's pending count and lag.
    pub fn set_backlog(&self, pending: u64, lag: u64) {
        self.pending.store(pending, Ordering::Relaxed);
        self.lag.store(lag, Ordering::Relaxed);
    }

    /// Records an error for the status.
    pub fn set_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
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
        BoardView {
            state: if *self.paused.borrow() {
                "paused"
            } else {
                "running"
            }
            .to_owned(),
            pending: self.pending.load(Ordering::Relaxed),
            lag: self.lag.load(Ordering::Relaxed),
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
