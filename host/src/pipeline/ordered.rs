//! How the loop orders entries ([`Order`]): in any order, or `ordering = "per-key"`: one
//! partition handled by one daemon, in stream order. The any-order turn is in
//! `readahead.rs`; the per-key turn is here.
//!
//! The daemon holds the partition's lease (see `broker::lease`); every commit checks it.
//! On taking the partition, every entry pending in the group moves to this consumer (its
//! earlier holder is fenced off) and is handled first, in ID order, then new entries.
//! Entries are handled one after the other; the handled prefix of a batch is committed
//! in one commit. An entry that fails with a retry holds back the partition: the entries
//! after it wait, unstarted, until it succeeds or is dead-lettered after `max_attempts`.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::handler::Until;
use super::health::Health;
use super::reader::{Batch, Read};
use super::schedule::Schedule;
use super::{BatchReport, Pipeline};
use crate::broker::{Fault, PendingEntry};
use crate::message::{Entry, StreamId};

/// The order a pipeline handles its entries in.
pub enum Order {
    /// Any order: batches spread over the instances, read ahead, retried later.
    Any,
    /// Per key: one partition in stream order, while its partition lease holds.
    PerKey(PerKey),
}

impl Order {
    /// Per key, while `clock` says the partition lease is this daemon's.
    pub fn per_key(clock: Arc<PartitionLeaseClock>) -> Self {
        Order::PerKey(PerKey {
            clock,
            queue: VecDeque::new(),
            due_at: None,
        })
    }

    /// Whether the pipeline may still run: per key, while the partition lease is known
    /// valid.
    pub(super) fn holds(&self) -> bool {
        match self {
            Order::Any => true,
            Order::PerKey(key) => !key.clock.remaining().is_zero(),
        }
    }
}

/// A partition's entries in stream order.
pub struct PerKey {
    clock: Arc<PartitionLeaseClock>,
    /// Entries read, in order, not yet settled.
    queue: VecDeque<Entry>,
    /// The head of the queue failed: when it is due again.
    due_at: Option<Instant>,
}

/// Until when a partition lease is known to be this daemon's, by the local monotonic
/// clock: the lease manager moves it on at each renewal (the time the renewal was sent
/// plus the lease's time to live, less a margin for clock rates). The partition reads
/// and commits only before it.
#[derive(Debug)]
pub struct PartitionLeaseClock {
    start: Instant,
    /// Milliseconds after `start`.
    until_ms: AtomicU64,
}

impl PartitionLeaseClock {
    /// A clock valid until `until`.
    pub fn new(until: Instant) -> Self {
        let clock = Self {
            start: Instant::now(),
            until_ms: AtomicU64::new(0),
        };
        clock.extend(until);
        clock
    }

    /// Valid until `until` now.
    pub fn extend(&self, until: Instant) {
        let ms = until.saturating_duration_since(self.start).as_millis() as u64;
        self.until_ms.store(ms, Ordering::Release);
    }

    /// Ends validity at once (the lease was lost).
    pub fn expire(&self) {
        self.until_ms.store(0, Ordering::Release);
    }

    /// How long the lease is still known valid.
    pub fn remaining(&self) -> Duration {
        let until = self.start + Duration::from_millis(self.until_ms.load(Ordering::Acquire));
        until.saturating_duration_since(Instant::now())
    }
}

/// Whatever an earlier holder of the partition left pending is this daemon's now, first.
pub(super) async fn take_over(
    health: &mut Health,
    schedule: &mut Schedule,
    shutdown: &CancellationToken,
    order: &Order,
) {
    while !shutdown.is_cancelled() && order.holds() {
        match health.consumer.take_over().await {
            Ok(taken) => {
                if taken > 0 {
                    tracing::info!(entries = taken, "took over the partition's pending entries");
                }
                break;
            }
            Err(fault) => health.recover(fault, schedule, shutdown).await,
        }
    }
}

/// Delivers `head` (a failed entry) again: the claim counts an attempt. `None` if it is
/// gone from the stream or the pending list (nothing to do).
async fn claim_again(health: &mut Health, head: &Entry) -> Result<Option<Entry>, Fault> {
    let again = PendingEntry {
        consumer: health.consumer.name().to_owned(),
        idle_ms: 0,
        deliveries: head.attempt,
        id: head.id.clone(),
    };
    Ok(health.consumer.claim(&[again], Duration::ZERO).await?.pop())
}

impl Pipeline {
    /// One turn per key: the failed head of the queue when it is due again, else a
    /// read when the queue is empty; then the next entries in order, up to one that
    /// fails with a retry (it holds back those after it until it succeeds or is
    /// dead-lettered after `max_attempts`). The handled prefix is committed in one commit.
    pub(super) async fn turn_in_order(
        &mut self,
        key: &mut PerKey,
        shutdown: &CancellationToken,
    ) -> ControlFlow<()> {
        self.health
            .refresh_backlog(&mut self.redelivery.schedule)
            .await;
        if let Some(flow) = self.head_due(key, shutdown).await {
            return flow;
        }
        if key.queue.is_empty() {
            let schedule = &mut self.redelivery.schedule;
            let limit = key.clock.remaining();
            match self
                .reader
                .read(&mut self.health, schedule, shutdown, limit)
                .await
            {
                Read::Stop => return ControlFlow::Break(()),
                Read::Again => return ControlFlow::Continue(()),
                Read::Own(batch) | Read::New(batch) => key.queue.extend(batch.entries),
            }
        }
        let n = key.queue.len().min(self.config.batch);
        let batch: Vec<Entry> = key.queue.drain(..n).collect();
        let (report, back, failed) = self.process_in_order(batch).await;
        if report.unowned > 0 && key.clock.remaining().is_zero() {
            tracing::warn!(
                "the partition's lease lapsed before a commit: nothing of it was written; stopping"
            );
            return ControlFlow::Break(());
        }
        // The failed entry (if any) and those after it go back to the head, in order.
        for entry in back.into_iter().rev() {
            key.queue.push_front(entry);
        }
        if let Some(wait) = failed {
            key.due_at = Some(Instant::now() + wait);
        }
        ControlFlow::Continue(())
    }

    /// The failed head of the queue, if any: waits for it (which ends the turn), or,
    /// once due, claims it again (a fault ends the turn too). `None`: the turn goes on.
    async fn head_due(
        &mut self,
        key: &mut PerKey,
        shutdown: &CancellationToken,
    ) -> Option<ControlFlow<()>> {
        let at = key.due_at?;
        let wait = at.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => return Some(ControlFlow::Break(())),
                () = tokio::time::sleep(wait.min(key.clock.remaining())) => {}
            }
            // The loop comes round (pause, replicas, lease) before the head.
            return Some(ControlFlow::Continue(()));
        }
        key.due_at = None;
        let head = key.queue.pop_front()?;
        match claim_again(&mut self.health, &head).await {
            Ok(claimed) => {
                if let Some(entry) = claimed {
                    key.queue.push_front(entry);
                }
            }
            Err(fault) => {
                key.queue.push_front(head);
                key.due_at = Some(Instant::now());
                let schedule = &mut self.redelivery.schedule;
                self.health.recover(fault, schedule, shutdown).await;
                return Some(ControlFlow::Continue(()));
            }
        }
        None
    }

    /// Handles `entries` one after the other until one fails with a retry, and commits
    /// those handled (outputs, dead letters) in one commit. Returns the report, the
    /// entries to handle again first (the failed one, then those not started, in order)
    /// and, after a failure, how long the failed entry waits.
    async fn process_in_order(
        &mut self,
        entries: Vec<Entry>,
    ) -> (BatchReport, Vec<Entry>, Option<Duration>) {
        let max_attempts = self.config.max_attempts;
        let mut batch = Batch::now(entries);
        let leases = self.begin(&mut batch);
        let until = Until::Retry { max_attempts };
        let handled = self
            .handlers
            .handle(&mut batch.entries, &self.halt, until)
            .await;
        // The one entry that stopped the rest, if any.
        let failed = (batch.entries.iter().zip(&handled)).find_map(|(entry, record)| {
            let error = record.as_ref()?.result.as_ref().err()?;
            (error.is_retryable() && entry.attempt < max_attempts).then(|| entry.clone())
        });
        let redelivery = &mut self.redelivery;
        let (prepared, held) =
            (self.committer).prepare(batch.entries, handled, leases, redelivery, &self.halt);
        let (health, redelivery) = (&mut self.health, &mut self.redelivery);
        let (report, again) = self
            .committer
            .commit(prepared, health, redelivery, &self.halt)
            .await;
        // Held by the committer (not started, or to run again): back to the queue here.
        let mut back: Vec<Entry> = (held.again.into_iter())
            .chain(held.unstarted)
            .chain(again.again)
            .collect();
        let wait = failed.map(|entry| {
            self.redelivery.schedule.forget(&entry.id);
            let wait = self.redelivery.backoff(&entry.id, entry.attempt);
            back.push(entry);
            wait
        });
        back.sort_by_key(|e| StreamId::parse(&e.id));
        back.dedup_by(|a, b| a.id == b.id);
        (report, back, wait)
    }
}
