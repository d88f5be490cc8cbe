//! The reader stage: where the next batch comes from. On start, this consumer's own
//! pending entries (left by a previous run), then new ones; entries read ahead while a
//! batch is handled; entries held back (read but not started when a pause came, or to
//! be handled again after a state conflict); and the pause itself.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::health::Health;
use super::schedule::{BACKLOG_EVERY, Schedule};
use crate::config::PipelineConfig;
use crate::message::Entry;

/// Entries read from the group, and when (their idle time in the pending entries list
/// starts there).
pub(super) struct Batch {
    pub(super) entries: Vec<Entry>,
    pub(super) read_at: Instant,
}

impl Batch {
    /// Entries read just now.
    pub(super) fn now(entries: Vec<Entry>) -> Self {
        Self {
            entries,
            read_at: Instant::now(),
        }
    }

    /// Takes the entries, if any (a batch of held entries: the reader's held back).
    fn take(&mut self) -> Option<Batch> {
        if self.entries.is_empty() {
            return None;
        }
        let entries = std::mem::take(&mut self.entries);
        let read_at = std::mem::replace(&mut self.read_at, Instant::now());
        Some(Batch { entries, read_at })
    }

    /// Adds what a settled batch handed back. The batch is known this consumer's since
    /// the earliest of its entries' times: an entry to handle again that starts the
    /// batch brings its own; unstarted ones bring theirs, or an earlier one.
    fn hold(&mut self, hold: Hold) {
        for entry in hold.again {
            if self.entries.is_empty() {
                self.read_at = hold.since;
            }
            self.entries.push(entry);
        }
        if !hold.unstarted.is_empty() {
            self.read_at = match self.entries.is_empty() {
                true => hold.since,
                false => self.read_at.min(hold.since),
            };
            self.entries.extend(hold.unstarted);
        }
    }
}

/// Entries a settled batch hands back to the reader, handled first next (as the same
/// delivery), known to be this consumer's since `since`.
pub(super) struct Hold {
    /// Their handler state changed under them: handled again.
    pub(super) again: Vec<Entry>,
    /// Not started (a pause came): handled on resume.
    pub(super) unstarted: Vec<Entry>,
    pub(super) since: Instant,
}

/// What a read came to.
pub(super) enum Read {
    /// The pipeline drains.
    Stop,
    /// Nothing to handle now (no entries, a fault recovered from, a pause).
    Again,
    /// This consumer's own pending entries (start-up).
    Own(Batch),
    /// New entries.
    New(Batch),
}

/// Where batches come from.
pub(super) struct Reader {
    batch: usize,
    paused: watch::Receiver<bool>,
    /// Reading this consumer's own pending entries, after this ID; `None` once they are
    /// all read (then new ones).
    cursor: Option<String>,
    /// Entries held back, handled first.
    held: Batch,
    /// Entries read ahead (or read as a pause came), not started yet.
    prefetched: Option<Batch>,
    /// How long the last read-ahead batch took to handle and commit, and how quick it
    /// must be to read the next one beside it.
    last_batch_time: Duration,
    quick: Duration,
}

impl Reader {
    pub(super) fn new(config: &PipelineConfig, paused: watch::Receiver<bool>) -> Self {
        Self {
            batch: config.batch,
            paused,
            cursor: Some("0".to_owned()),
            held: Batch::now(Vec::new()),
            prefetched: None,
            last_batch_time: Duration::ZERO,
            // A quarter of both `claim_idle` and the first retry backoff: entries read
            // ahead, not yet leased, must not look idle to a reclaim before they are
            // handled (the retry scan skips entries in hand).
            quick: config.claim_idle.min(config.retry_backoff.initial) / 4,
        }
    }

    /// Whether this consumer's own pending entries are still being read (start-up).
    pub(super) fn reading_own(&self) -> bool {
        self.cursor.is_some()
    }

    /// The held entries, if any, to be handled now.
    pub(super) fn take_held(&mut self) -> Option<Batch> {
        self.held.take()
    }

    /// Holds what a settled batch handed back (unstarted ones only while the pipeline
    /// runs on: a drain leaves them pending).
    pub(super) fn hold(&mut self, hold: Hold) {
        self.held.hold(hold);
    }

    /// IDs of entries read ahead, not yet handled: the retry scan must not deliver them
    /// again (they are this consumer's pending entries too, and look idle).
    pub(super) fn in_hand(&self) -> Vec<String> {
        let batch = self.prefetched.as_ref();
        batch.map_or_else(Vec::new, |b| {
            b.entries.iter().map(|e| e.id.clone()).collect()
        })
    }

    /// Reads the next batch: entries read ahead first, then this consumer's own pending
    /// entries (start-up), then new ones (a blocking read of at most `limit`, and not
    /// past the schedule's next check). New entries read as a pause came are kept, not
    /// handed out, until resume.
    pub(super) async fn read(
        &mut self,
        health: &mut Health,
        schedule: &mut Schedule,
        shutdown: &CancellationToken,
        limit: Duration,
    ) -> Read {
        let mut read_at = Instant::now();
        let read = match (self.prefetched.take(), &self.cursor) {
            (Some(batch), _) => {
                read_at = batch.read_at;
                Ok(batch.entries)
            }
            (None, Some(after)) => tokio::select! {
                _ = shutdown.cancelled() => return Read::Stop,
                read = health.consumer.read_pending(after, self.batch) => read,
            },
            (None, None) => {
                let block = schedule.read_block(Instant::now()).min(limit);
                tokio::select! {
                    _ = shutdown.cancelled() => return Read::Stop,
                    read = health.consumer.read_new(self.batch, block) => read,
                }
            }
        };
        let entries = match read {
            Ok(entries) => entries,
            Err(fault) => {
                health.recover(fault, schedule, shutdown).await;
                return Read::Again;
            }
        };
        health.redis_ok();
        health.saw(&entries);
        if self.cursor.is_some() {
            self.cursor = entries.last().map(|e| e.id.clone());
            return match entries.is_empty() {
                true => Read::Again,
                false => Read::Own(Batch { entries, read_at }),
            };
        }
        if entries.is_empty() {
            return Read::Again;
        }
        let batch = Batch { entries, read_at };
        if *self.paused.borrow() {
            // Read as the pause came (a blocking read in flight): held, not handled,
            // until resume.
            self.prefetched = Some(batch);
            return Read::Again;
        }
        Read::New(batch)
    }

    /// Keeps a batch read ahead, to be handed out by the next [`Reader::read`].
    pub(super) fn read_ahead(&mut self, batch: Option<Batch>) {
        self.prefetched = batch;
    }

    /// Stops reading while the pipeline is paused (work in flight has finished: this runs
    /// between batches). Entries read ahead or held back that another consumer took
    /// meanwhile (a pause longer than `claim_idle`) are dropped on resume; the entry
    /// leases of the others are renewed.
    pub(super) async fn pause(
        &mut self,
        health: &mut Health,
        schedule: &mut Schedule,
        shutdown: &CancellationToken,
    ) {
        if !*self.paused.borrow() {
            return;
        }
        tracing::info!("pipeline paused");
        health.board().set_parked(true);
        while *self.paused.borrow_and_update() {
            // The status keeps showing the backlog growing while paused.
            health.refresh_backlog(schedule).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = self.paused.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(BACKLOG_EVERY) => {}
            }
        }
        health.board().set_parked(false);
        tracing::info!("pipeline resumed");
        if let Some(batch) = &mut self.prefetched
            && keep_owned(health, &mut batch.entries).await
        {
            batch.read_at = Instant::now();
        }
        if keep_owned(health, &mut self.held.entries).await {
            self.held.read_at = Instant::now();
        }
    }

    /// Notes how long the last read-ahead batch took to handle.
    pub(super) fn took(&mut self, time: Duration) {
        self.last_batch_time = time;
    }

    /// Starts reading the next batch beside this one when it is worth it: this one was
    /// full (more is likely waiting), the pipeline runs on, and batches are quick.
    /// Returns the read and when it started.
    pub(super) fn prefetch(
        &self,
        health: &mut Health,
        read: usize,
        shutdown: &CancellationToken,
    ) -> Option<(JoinHandle<Result<Vec<Entry>>>, Instant)> {
        let worth = read == self.batch
            && self.last_batch_time < self.quick
            && !*self.paused.borrow()
            && !shutdown.is_cancelled();
        let prefetcher = worth.then(|| health.consumer.prefetcher())?;
        let read = prefetcher.read_available(self.batch).in_current_span();
        Some((tokio::spawn(read), Instant::now()))
    }

    /// The batch a prefetch read, if it read any.
    pub(super) async fn prefetched(
        health: &mut Health,
        prefetch: Option<(JoinHandle<Result<Vec<Entry>>>, Instant)>,
    ) -> Option<Batch> {
        let (read, read_at) = prefetch?;
        match read.await {
            Ok(Ok(entries)) if !entries.is_empty() => {
                health.saw(&entries);
                Some(Batch { entries, read_at })
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                // Whatever the failed read delivered stays pending: the retry scan
                // redelivers it once idle, or a restart reads it as this consumer's own.
                tracing::warn!(
                    error = format!("{e:#}"),
                    "prefetching the next batch failed"
                );
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "the prefetch task failed");
                None
            }
        }
    }
}

/// Keeps of `entries` (read, held through a pause) those this consumer still owns,
/// renewing their entry leases; the others were reclaimed by another consumer meanwhile
/// and are its to handle. If Redis cannot tell, all are kept: the commit's guard still
/// refuses to write for an entry owned by another. Returns whether the entry leases of
/// those kept were renewed.
async fn keep_owned(health: &mut Health, entries: &mut Vec<Entry>) -> bool {
    if entries.is_empty() {
        return false;
    }
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    match health.consumer.entry_leases().renew(&ids).await {
        Ok(owned) => {
            let before = entries.len();
            entries.retain(|e| owned.contains(&e.id));
            if entries.len() < before {
                tracing::info!(
                    dropped = before - entries.len(),
                    "entries held through the pause were reclaimed by another consumer meanwhile; they are its to handle"
                );
            }
            true
        }
        Err(e) => {
            tracing::debug!(
                error = format!("{e:#}"),
                "cannot check the entries held through the pause"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(id: &str) -> Entry {
        Entry {
            id: id.into(),
            ..Entry::default()
        }
    }

    /// Held entries are handed out once, in the order held, known this consumer's since
    /// the earliest time among them (an entry to handle again joining a non-empty hold
    /// keeps the hold's time).
    #[test]
    fn held_entries_keep_the_earliest_time() {
        let start = Instant::now();
        let (early, late) = (start, start + Duration::from_secs(5));
        let mut held = Batch::now(Vec::new());
        assert!(held.take().is_none());
        let again = |ids: &[&str], since| Hold {
            again: ids.iter().map(|id| entry(id)).collect(),
            unstarted: Vec::new(),
            since,
        };
        held.hold(again(&["1-0"], late));
        held.hold(again(&["2-0"], early));
        assert_eq!(held.read_at, late, "an entry joining a hold keeps its time");
        held.hold(Hold {
            again: Vec::new(),
            unstarted: vec![entry("3-0")],
            since: early,
        });
        let batch = held.take().expect("held entries");
        assert_eq!(batch.read_at, early, "unstarted ones bring an earlier time");
        let ids: Vec<&str> = batch.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1-0", "2-0", "3-0"]);
        assert!(held.take().is_none(), "handed out once");
    }
}
