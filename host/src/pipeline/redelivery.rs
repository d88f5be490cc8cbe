//! Getting entries delivered again: this consumer's failed entries once their backoff has
//! passed, other consumers' entries once they have been idle for `claim_idle`, and the
//! leases that keep a slow handler's entries from being taken.

use std::collections::HashSet;
use std::time::Instant;

use tracing::Instrument;

use super::settle::Held;
use super::{Pipeline, backoff};
use crate::broker::{Backoff, Fault, PendingEntry};
use crate::config::BackoffConfig;
use crate::message::Entry;

/// Rows of this consumer's pending entries one retry check reads (`XPENDING ... COUNT`).
pub(super) const RETRY_SCAN_PAGE: usize = 1_000;

impl Pipeline {
    /// Delivers again this consumer's failed entries whose backoff has passed, but none of
    /// `in_hand` (read, not yet handled).
    ///
    /// Retries this consumer saw fail are taken from the schedule's index at their due
    /// time. The others are found by a scan of the next [`RETRY_SCAN_PAGE`] rows of this
    /// consumer's pending entries, from a cursor that goes round the list, so an entry
    /// that is due is found within a few checks however many stand before it.
    pub(super) async fn retry_due(&mut self, in_hand: &[Entry]) -> Result<(), Fault> {
        if *self.paused.borrow() {
            return Ok(());
        }
        let now = Instant::now();
        let backoff_cfg = self.config.retry_backoff;
        let known: Vec<PendingEntry> = self
            .schedule
            .known_due(now, self.config.batch)
            .into_iter()
            .filter(|k| !in_hand.iter().any(|e| e.id == k.id))
            .map(|k| PendingEntry {
                id: k.id,
                consumer: self.consumer.id().name.clone(),
                idle_ms: 0,
                deliveries: k.deliveries,
            })
            .collect();
        if !known.is_empty() {
            // Guarded by the idle time: an entry another consumer took meanwhile is not
            // taken back.
            let entries = self.consumer.claim(&known, backoff_cfg.initial / 2).await?;
            if !entries.is_empty() {
                self.process(entries).await;
            }
        }
        let Some(cursor) = self.schedule.retry_scan(Instant::now()) else {
            return Ok(());
        };
        let (idle, next) = self
            .consumer
            .idle_pending(backoff_cfg.initial / 2, &cursor, RETRY_SCAN_PAGE)
            .await?;
        let found_idle = !idle.is_empty();
        let mut due = past_backoff(idle, &backoff_cfg);
        due.retain(|p| !in_hand.iter().any(|e| e.id == p.id));
        // At most a batch at a time; the scan goes on after the last one taken, so the
        // rest are taken at the next check, which comes at once.
        let cut_at = (due.len() > self.config.batch).then(|| {
            due.truncate(self.config.batch);
            due[due.len() - 1].id.clone()
        });
        self.schedule.retry_scanned(found_idle, next, cut_at);
        if due.is_empty() {
            return Ok(());
        }
        for p in &due {
            self.schedule.forget(&p.id);
        }
        let entries = self.consumer.claim(&due, backoff_cfg.initial / 2).await?;
        if !entries.is_empty() {
            self.process(entries).await;
        }
        Ok(())
    }

    /// Takes over entries that other consumers left idle for `claim_idle` (they died,
    /// or lost Redis), once their own retry backoff has passed too, and handles them.
    pub(super) async fn reclaim_due(&mut self) -> Result<(), Fault> {
        if *self.paused.borrow() {
            return Ok(());
        }
        let Some(cursor) = self.schedule.reclaim_scan(Instant::now()) else {
            return Ok(());
        };
        let claim_idle = self.config.claim_idle;
        let (idle, next) = self
            .consumer
            .others_idle(claim_idle, &cursor, self.config.batch)
            .await?;
        let backoff_cfg = self.config.retry_backoff;
        let due = past_backoff(idle, &backoff_cfg);
        let entries = if due.is_empty() {
            Vec::new()
        } else {
            self.consumer.claim(&due, claim_idle).await?
        };
        // A scan that took entries comes again at once: there may be more.
        self.schedule.reclaim_scanned(next, !entries.is_empty());
        if !entries.is_empty() {
            let from: HashSet<&str> = due.iter().map(|p| p.consumer.as_str()).collect();
            tracing::info!(entries = entries.len(), from = ?from, "reclaimed idle entries from other consumers");
            self.process(entries).await;
        }
        Ok(())
    }

    /// Renews this consumer's claim on `entries` every third of `claim_idle` until the
    /// returned task is aborted, so that slow handlers do not lose their work to a
    /// reclaim (and do it twice). The returned [`Held`] tells since when every entry of
    /// the batch is known to be this consumer's.
    pub(super) fn keep_leases(
        &mut self,
        entries: &[Entry],
        read_at: Instant,
    ) -> (tokio::task::JoinHandle<()>, Held) {
        let mut lease = self.consumer.lease();
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let every = self.config.claim_idle / 3;
        let held = Held::since(read_at);
        let renewed_at = held.clone();
        let task = tokio::spawn(
            async move {
            // After a failed renewal, the next try comes sooner (Redis's backoff), never
            // later than the usual period.
            let mut backoff = Backoff::redis();
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                match lease.renew(&ids).await {
                    Ok(renewed) => {
                        let renewed = renewed.len();
                        backoff.reset();
                        wait = every;
                        if renewed == ids.len() {
                            renewed_at.renewed();
                        }
                        tracing::debug!(renewed, "renewed leases on in-flight entries")
                    }
                    Err(e) => {
                        wait = backoff.next_delay().min(every);
                        // The pipeline shows the outage; one line per run of failures.
                        if backoff.failures() == 1 {
                            tracing::warn!(error = format!("{e:#}"), retry_in = ?wait, "cannot renew leases on in-flight entries");
                        } else {
                            tracing::debug!(error = format!("{e:#}"), retry_in = ?wait, "cannot renew leases on in-flight entries");
                        }
                    }
                }
            }
            }
            .in_current_span(),
        );
        (task, held)
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
