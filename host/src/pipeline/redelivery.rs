//! The redelivery stage: getting entries delivered again — this consumer's failed
//! entries once their backoff has passed, other consumers' entries once they have been
//! idle for `claim_idle` — on the [`Schedule`]'s timers, and the entry leases that keep
//! a slow handler's entries from being taken (`entry_lease.rs`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::entry_lease::KeptLeases;
use super::health::Health;
use super::outcome::backoff;
use super::schedule::Schedule;
use crate::broker::{Fault, PendingEntry};
use crate::config::{BackoffConfig, PipelineConfig};
use crate::message::Entry;

/// Rows of this consumer's pending entries one retry check reads (`XPENDING ... COUNT`).
pub(super) const RETRY_SCAN_PAGE: usize = 1_000;

/// Retries and reclaims, and their schedule.
pub(super) struct Redelivery {
    pub(super) schedule: Schedule,
    batch: usize,
    retry_backoff: BackoffConfig,
    claim_idle: Duration,
}

impl Redelivery {
    pub(super) fn new(config: &PipelineConfig) -> Self {
        Self {
            schedule: Schedule::new(config.retry_backoff, config.claim_idle),
            batch: config.batch,
            retry_backoff: config.retry_backoff,
            claim_idle: config.claim_idle,
        }
    }

    /// Entry `id` failed its delivery `attempt`: it is due again after its backoff.
    pub(super) fn retry_later(&mut self, id: &str, attempt: u32) {
        let wait = self.backoff(id, attempt);
        self.schedule.retry_at(id, attempt, Instant::now() + wait);
    }

    /// The backoff after delivery `attempt` of entry `id`.
    pub(super) fn backoff(&self, id: &str, attempt: u32) -> Duration {
        backoff(
            self.retry_backoff.initial,
            self.retry_backoff.max,
            id,
            attempt,
        )
    }

    /// Renews the entry leases on `entries` (known to be this consumer's since
    /// `read_at`) until they are settled.
    pub(super) fn entry_leases(
        &self,
        health: &mut Health,
        entries: &[Entry],
        read_at: Instant,
    ) -> KeptLeases {
        KeptLeases::keep(&mut health.consumer, entries, read_at, self.claim_idle)
    }

    /// Takes back this consumer's failed entries that the schedule knows are due, but
    /// none of `in_hand` (read, not yet handled). Guarded by the idle time: an entry
    /// another consumer took meanwhile is not taken back.
    pub(super) async fn known_retries(
        &mut self,
        health: &mut Health,
        in_hand: &[String],
    ) -> Result<Vec<Entry>, Fault> {
        let known: Vec<PendingEntry> = self
            .schedule
            .known_due(Instant::now(), self.batch)
            .into_iter()
            .filter(|k| !in_hand.contains(&k.id))
            .map(|k| PendingEntry {
                id: k.id,
                consumer: health.consumer.id().name.clone(),
                idle_ms: 0,
                deliveries: k.deliveries,
            })
            .collect();
        if known.is_empty() {
            return Ok(Vec::new());
        }
        let min_idle = self.retry_backoff.initial / 2;
        health.consumer.claim(&known, min_idle).await
    }

    /// Takes back the failed entries the retry scan finds past their backoff, but none
    /// of `in_hand`: the scan reads the next [`RETRY_SCAN_PAGE`] rows of this consumer's
    /// pending entries, from a cursor that goes round the list, so an entry that is due
    /// is found within a few checks however many stand before it.
    pub(super) async fn scan_retries(
        &mut self,
        health: &mut Health,
        in_hand: &[String],
    ) -> Result<Vec<Entry>, Fault> {
        let Some(cursor) = self.schedule.retry_scan(Instant::now()) else {
            return Ok(Vec::new());
        };
        let min_idle = self.retry_backoff.initial / 2;
        let (idle, next) = health
            .consumer
            .idle_pending(min_idle, &cursor, RETRY_SCAN_PAGE)
            .await?;
        let found_idle = !idle.is_empty();
        let mut due = past_backoff(idle, &self.retry_backoff);
        due.retain(|p| !in_hand.contains(&p.id));
        // At most a batch at a time; the scan goes on after the last one taken, so the
        // rest are taken at the next check, which comes at once.
        let cut_at = (due.len() > self.batch).then(|| {
            due.truncate(self.batch);
            due[due.len() - 1].id.clone()
        });
        self.schedule.retry_scanned(found_idle, next, cut_at);
        if due.is_empty() {
            return Ok(Vec::new());
        }
        for p in &due {
            self.schedule.forget(&p.id);
        }
        health.consumer.claim(&due, min_idle).await
    }

    /// Takes over entries that other consumers left idle for `claim_idle` (they died,
    /// or lost Redis), once their own retry backoff has passed too.
    pub(super) async fn reclaim(&mut self, health: &mut Health) -> Result<Vec<Entry>, Fault> {
        let Some(cursor) = self.schedule.reclaim_scan(Instant::now()) else {
            return Ok(Vec::new());
        };
        let (idle, next) = health
            .consumer
            .others_idle(self.claim_idle, &cursor, self.batch)
            .await?;
        let due = past_backoff(idle, &self.retry_backoff);
        let entries = if due.is_empty() {
            Vec::new()
        } else {
            health.consumer.claim(&due, self.claim_idle).await?
        };
        // A scan that took entries comes again at once: there may be more.
        self.schedule.reclaim_scanned(next, !entries.is_empty());
        if !entries.is_empty() {
            let from: HashSet<&str> = due.iter().map(|p| p.consumer.as_str()).collect();
            tracing::info!(entries = entries.len(), from = ?from, "reclaimed idle entries from other consumers");
        }
        Ok(entries)
    }
}

/// The entries whose retry backoff (for the deliveries they had) has passed.
fn past_backoff(idle: Vec<PendingEntry>, cfg: &BackoffConfig) -> Vec<PendingEntry> {
    idle.into_iter()
        .filter(|p| {
            let wait = backoff(cfg.initial, cfg.max, &p.id, p.deliveries);
            u128::from(p.idle_ms) >= wait.as_millis()
        })
        .collect()
}
