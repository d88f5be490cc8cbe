//! When a pipeline looks beyond new entries: retries of its own failed entries, the
//! reclaim scan of other consumers' idle entries, and the backlog refresh. The
//! [`Schedule`] owns their timers, the scans' cursors and the index of retries this
//! consumer knows are coming; it does no I/O, so its rules are tested on their own.
//!
//! Retries are found two ways. An entry this consumer saw fail is indexed by the time
//! its backoff ends, and taken back at that time however long the pending entries list
//! is. The retry scan (a cursor over the list, [`RETRY_SCAN_PAGE`] rows a check) finds
//! the rest: entries left by an earlier run, or whose read reply was lost.
//!
//! [`RETRY_SCAN_PAGE`]: super::redelivery::RETRY_SCAN_PAGE

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::config::BackoffConfig;

/// How often pending and lag are read from Redis.
pub(super) const BACKLOG_EVERY: Duration = Duration::from_secs(2);
/// How long one blocking read waits for new entries when no retry is waiting.
pub(super) const READ_BLOCK: Duration = Duration::from_millis(500);
/// The start of a scan of the pending entries list (`XPENDING ... - + ...`).
const HEAD: &str = "-";
/// Retries the index holds at most; beyond, the retry scan finds them.
pub(super) const MAX_INDEXED_RETRIES: usize = 100_000;

/// A retry this consumer knows is coming: entry `id`, delivered `deliveries` times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KnownRetry {
    pub(super) id: String,
    pub(super) deliveries: u32,
}

/// The timers and cursors of one pipeline's periodic work.
#[derive(Debug)]
pub(super) struct Schedule {
    retry_every: Duration,
    reclaim_every: Duration,
    next_retry: Instant,
    /// Whether failed entries of this consumer wait for a redelivery.
    retries_waiting: bool,
    /// Where the next retry scan starts.
    retry_cursor: String,
    next_reclaim: Instant,
    /// Where the next reclaim scan starts.
    reclaim_cursor: String,
    next_backlog: Instant,
    /// Known retries by due time, and the latest due time of each entry (a record
    /// whose time is not the latest is stale: the entry was taken back meanwhile).
    due: BTreeSet<(Instant, String)>,
    latest: HashMap<String, (Instant, u32)>,
}

impl Schedule {
    /// A schedule with every check due now. Retries are checked every half of the first
    /// backoff (10 ms to [`READ_BLOCK`]); reclaims every quarter of `claim_idle` (10 ms
    /// to 5 s).
    pub(super) fn new(retry_backoff: BackoffConfig, claim_idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            retry_every: (retry_backoff.initial / 2).clamp(Duration::from_millis(10), READ_BLOCK),
            reclaim_every: (claim_idle / 4)
                .clamp(Duration::from_millis(10), Duration::from_secs(5)),
            next_retry: now,
            retries_waiting: false,
            retry_cursor: HEAD.to_owned(),
            next_reclaim: now,
            reclaim_cursor: HEAD.to_owned(),
            next_backlog: now,
            due: BTreeSet::new(),
            latest: HashMap::new(),
        }
    }

    /// Entry `id`, delivered `deliveries` times, failed and is due again at `at`.
    pub(super) fn retry_at(&mut self, id: &str, deliveries: u32, at: Instant) {
        self.retries_waiting = true;
        if self.latest.len() >= MAX_INDEXED_RETRIES && !self.latest.contains_key(id) {
            return;
        }
        if let Some((old, _)) = self.latest.insert(id.to_owned(), (at, deliveries)) {
            self.due.remove(&(old, id.to_owned()));
        }
        self.due.insert((at, id.to_owned()));
    }

    /// Known retries due at `now`, at most `max`, oldest due first; they leave the index.
    pub(super) fn known_due(&mut self, now: Instant, max: usize) -> Vec<KnownRetry> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some((at, _)) = self.due.first() else {
                break;
            };
            if *at > now {
                break;
            }
            let Some((_, id)) = self.due.pop_first() else {
                break;
            };
            if let Some((_, deliveries)) = self.latest.remove(&id) {
                taken.push(KnownRetry { id, deliveries });
            }
        }
        taken
    }

    /// Entry `id` was taken back (by the scan): its indexed retry is void.
    pub(super) fn forget(&mut self, id: &str) {
        if let Some((at, _)) = self.latest.remove(id) {
            self.due.remove(&(at, id.to_owned()));
        }
    }

    /// If a retry scan is due at `now`: books the next one and returns where this one
    /// starts.
    pub(super) fn retry_scan(&mut self, now: Instant) -> Option<String> {
        if now < self.next_retry {
            return None;
        }
        self.next_retry = now + self.retry_every;
        Some(self.retry_cursor.clone())
    }

    /// Records a retry scan: whether it found idle entries, where the list goes on after
    /// the page it read (`next`, the head when it reached the end), and, when it took
    /// only part of what was due, the last entry taken (the next scan resumes there, at
    /// once).
    pub(super) fn retry_scanned(&mut self, found_idle: bool, next: String, cut_at: Option<String>) {
        self.retries_waiting = found_idle || next != HEAD;
        match cut_at {
            Some(last) => {
                self.retry_cursor = last;
                self.next_retry = Instant::now();
            }
            None => self.retry_cursor = next,
        }
    }

    /// If a reclaim scan is due at `now`: books the next one and returns where this one
    /// starts.
    pub(super) fn reclaim_scan(&mut self, now: Instant) -> Option<String> {
        if now < self.next_reclaim {
            return None;
        }
        self.next_reclaim = now + self.reclaim_every;
        Some(self.reclaim_cursor.clone())
    }

    /// Records a reclaim scan: where the list goes on, and whether it took entries (then
    /// the next scan comes at once: there may be more).
    pub(super) fn reclaim_scanned(&mut self, next: String, took: bool) {
        self.reclaim_cursor = next;
        if took {
            self.next_reclaim = Instant::now();
        }
    }

    /// Whether the backlog is to be refreshed at `now` (then books the next refresh).
    pub(super) fn backlog_refresh(&mut self, now: Instant) -> bool {
        if now < self.next_backlog {
            return false;
        }
        self.next_backlog = now + BACKLOG_EVERY;
        true
    }

    /// Whether any check, or a known retry, is due at `now`.
    pub(super) fn any_due(&self, now: Instant) -> bool {
        now >= self.next_retry
            || now >= self.next_reclaim
            || now >= self.next_backlog
            || self.due.first().is_some_and(|(at, _)| *at <= now)
    }

    /// How long a read may block at `now`: not past the next known retry, nor the next
    /// retry check while failed entries wait for their backoff.
    pub(super) fn read_block(&self, now: Instant) -> Duration {
        let block = if self.retries_waiting {
            self.retry_every
        } else {
            READ_BLOCK
        };
        match self.due.first() {
            Some((at, _)) => block.min(at.saturating_duration_since(now)),
            None => block,
        }
    }

    /// Both scans start again from the head (the group was created again: cursors into
    /// the old pending entries list mean nothing).
    pub(super) fn restart_scans(&mut self) {
        HEAD.clone_into(&mut self.retry_cursor);
        HEAD.clone_into(&mut self.reclaim_cursor);
        self.due.clear();
        self.latest.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule::new(
            BackoffConfig {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(30),
            },
            Duration::from_secs(20),
        )
    }

    /// A scan is due at once, then not again before its interval.
    #[test]
    fn scans_are_booked_at_their_interval() {
        let mut s = schedule();
        let now = Instant::now();
        assert!(s.any_due(now));
        assert_eq!(s.retry_scan(now).as_deref(), Some(HEAD));
        assert_eq!(s.reclaim_scan(now).as_deref(), Some(HEAD));
        assert!(s.backlog_refresh(now));
        assert!(!s.any_due(now));
        assert_eq!(s.retry_scan(now + Duration::from_millis(99)), None);
        assert!(s.retry_scan(now + Duration::from_millis(100)).is_some());
        assert_eq!(s.reclaim_scan(now + Duration::from_millis(4_999)), None);
        assert!(s.reclaim_scan(now + Duration::from_secs(5)).is_some());
        assert!(!s.backlog_refresh(now + Duration::from_millis(1_999)));
        assert!(s.backlog_refresh(now + BACKLOG_EVERY));
    }

    /// The retry cursor goes round the list: each scan starts where the last page ended,
    /// back at the head after the end; a scan cut short resumes after its last entry at
    /// once.
    #[test]
    fn the_retry_cursor_goes_round() {
        let mut s = schedule();
        let now = Instant::now();
        s.retry_scan(now);
        s.retry_scanned(true, "5-0".into(), None);
        assert_eq!(
            s.retry_scan(now + Duration::from_secs(1)).as_deref(),
            Some("5-0")
        );
        s.retry_scanned(true, HEAD.into(), None);
        assert_eq!(
            s.retry_scan(now + Duration::from_secs(2)).as_deref(),
            Some(HEAD)
        );
        s.retry_scanned(true, "9-0".into(), Some("7-0".into()));
        assert_eq!(s.retry_scan(Instant::now()).as_deref(), Some("7-0"));
    }

    /// Reads block for less while retries wait, so a due retry is not held up by an
    /// idle input.
    #[test]
    fn reads_block_less_while_retries_wait() {
        let mut s = schedule();
        let now = Instant::now();
        assert_eq!(s.read_block(now), READ_BLOCK);
        s.retry_at("0-1", 1, now + Duration::from_secs(60));
        assert_eq!(s.read_block(now), Duration::from_millis(100));
        s.retry_scanned(false, HEAD.into(), None);
        assert_eq!(s.read_block(now), READ_BLOCK);
        s.retry_scanned(false, "3-0".into(), None);
        assert_eq!(
            s.read_block(now),
            Duration::from_millis(100),
            "more to scan"
        );
        s.retry_at("1-0", 1, now + Duration::from_millis(30));
        assert_eq!(
            s.read_block(now),
            Duration::from_millis(30),
            "not past a known retry"
        );
    }

    /// A known retry comes back at its due time, whatever else is indexed; a later
    /// failure of the same entry replaces its time; one taken back by the scan is
    /// forgotten; the index is bounded.
    #[test]
    fn known_retries_come_back_at_their_time() {
        let mut s = schedule();
        let now = Instant::now();
        for i in 0..1_000 {
            s.retry_at(&format!("{i}-0"), 3, now + Duration::from_secs(60));
        }
        s.retry_at("5000-0", 1, now + Duration::from_millis(200));
        assert!(s.known_due(now, 10).is_empty());
        let due = s.known_due(now + Duration::from_millis(200), 10);
        assert_eq!(
            due,
            [KnownRetry {
                id: "5000-0".into(),
                deliveries: 1
            }]
        );
        s.retry_at("7-0", 4, now + Duration::from_millis(10));
        assert_eq!(
            s.known_due(now + Duration::from_millis(10), 10)[0].deliveries,
            4
        );
        assert!(
            s.known_due(now + Duration::from_secs(59), 10).is_empty(),
            "7-0's old time is void"
        );
        s.forget("8-0");
        let rest = s.known_due(now + Duration::from_secs(60), 2_000);
        assert_eq!(rest.len(), 998, "all but 7-0 (taken) and 8-0 (forgotten)");
        for i in 0..MAX_INDEXED_RETRIES + 10 {
            s.retry_at(&format!("{i}-1"), 1, now);
        }
        assert_eq!(s.known_due(now, usize::MAX).len(), MAX_INDEXED_RETRIES);
    }

    /// A reclaim that took entries looks again at once; the group's re-creation sends
    /// both scans back to the head.
    #[test]
    fn reclaims_repeat_while_they_find_work() {
        let mut s = schedule();
        let now = Instant::now();
        s.reclaim_scan(now);
        s.reclaim_scanned("4-0".into(), true);
        assert_eq!(s.reclaim_scan(Instant::now()).as_deref(), Some("4-0"));
        s.reclaim_scanned("8-0".into(), false);
        assert_eq!(s.reclaim_scan(Instant::now()), None);
        s.restart_scans();
        assert_eq!(
            s.reclaim_scan(Instant::now() + Duration::from_secs(5))
                .as_deref(),
            Some(HEAD)
        );
    }
}
