//! Reading ahead: while a full batch is handled, the next one is read beside it, and each
//! batch's commit runs while the next one is handled. The loop stops for every periodic
//! check (retries, reclaim, backlog), a pause or a drain, handing back what it read.

use std::time::Instant;

use anyhow::Result;
use tracing::Instrument;

use super::Pipeline;
use super::batch::Prepared;
use crate::message::Entry;

/// Entries read from the group, and when (their idle time in the pending entries list
/// starts there).
pub(super) struct Batch {
    pub(super) entries: Vec<Entry>,
    pub(super) read_at: Instant,
}

impl Pipeline {
    /// Handles batches back to back while full ones keep coming: the next batch is read
    /// while this one is handled (prefetch), and each batch's commit runs while the next
    /// one is handled, on another task. Commits stay in order: each is confirmed before
    /// the next is sent. Stops, with the last commit done, when no full batch is waiting,
    /// when a periodic check (retries, reclaim, backlog) is due, or on pause or drain;
    /// returns the entries it had already read, to be handled next.
    pub(super) async fn process_pipelined(&mut self, batch: Batch) -> Option<Batch> {
        let Batch {
            entries: mut current,
            mut read_at,
        } = batch;
        let mut committing: Option<Prepared> = None;
        loop {
            self.metrics.read.increment(current.len() as u64);
            self.traces
                .begin(&mut current, super::batch::wall_time(read_at));
            let prefetch_at = Instant::now();
            let prefetch = self.should_prefetch(current.len()).then(|| {
                tokio::spawn(
                    self.consumer
                        .prefetcher()
                        .read_available(self.config.batch)
                        .in_current_span(),
                )
            });
            let started = Instant::now();
            let (lease, held) = self.keep_leases(&current, read_at);
            let (entries, results) = match committing.take() {
                None => {
                    let results = self.invoke(&mut current).await;
                    (current, results)
                }
                Some(previous) => {
                    let handling = self.spawn_invoke(current);
                    self.finish(previous).await;
                    let invoked = match handling.await {
                        Ok(invoked) => invoked,
                        // A host bug; the batch's entries stay pending in Redis.
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    };
                    self.instances = invoked.instances;
                    (invoked.entries, invoked.results)
                }
            };
            committing = Some(self.prepare(entries, results, lease, held));
            self.last_batch_time = started.elapsed();
            let next = match prefetch {
                Some(read) => {
                    let read = read.await;
                    self.prefetched(read).map(|entries| Batch {
                        entries,
                        read_at: prefetch_at,
                    })
                }
                None => None,
            };
            match next {
                Some(batch) if !self.checks_due() => {
                    (current, read_at) = (batch.entries, batch.read_at)
                }
                next => {
                    if let Some(last) = committing.take() {
                        self.finish(last).await;
                    }
                    return next;
                }
            }
        }
    }

    /// Whether to read the next batch beside this one: it was full (more is likely
    /// waiting), the pipeline runs on, and batches are quick.
    ///
    /// "Quick" (the last batch took under a quarter of both `claim_idle` and the first
    /// retry backoff) keeps prefetched entries, which are not yet leased, from looking
    /// idle to a reclaim before they are handled (the retry scan skips entries in hand).
    fn should_prefetch(&self, read: usize) -> bool {
        let quick = self
            .config
            .claim_idle
            .min(self.config.retry_backoff.initial)
            / 4;
        read == self.config.batch
            && self.last_batch_time < quick
            && !*self.paused.borrow()
            && !self.shutdown.is_cancelled()
    }

    /// Whether the main loop has work besides new entries: a retry or reclaim scan or a
    /// backlog refresh is due, or the pipeline is to pause or drain.
    pub(super) fn checks_due(&self) -> bool {
        self.schedule.any_due(Instant::now())
            || *self.paused.borrow()
            || self.shutdown.is_cancelled()
    }

    fn prefetched(
        &mut self,
        read: Result<Result<Vec<Entry>>, tokio::task::JoinError>,
    ) -> Option<Vec<Entry>> {
        match read {
            Ok(Ok(entries)) if !entries.is_empty() => {
                self.saw(&entries);
                Some(entries)
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
