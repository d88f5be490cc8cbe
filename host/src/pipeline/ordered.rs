//! `ordering = "per-key"`: one partition handled by one daemon, in stream order.
//!
//! The daemon holds the partition's lease (see `broker::lease`); every commit checks it.
//! On taking the partition, every entry pending in the group moves to this consumer (its
//! earlier holder is fenced off) and is handled first, in ID order, then new entries.
//! Entries are handled one after the other; the handled prefix of a batch is committed
//! in one commit. An entry that fails with a retry holds back the partition: the entries
//! after it wait, unstarted, until it succeeds or is dead-lettered after `max_attempts`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::invoke::call;
use super::{BatchReport, Handled, Pipeline};
use crate::broker::{Fence, PendingEntry};
use crate::message::{Entry, StreamId};

/// Until when a partition lease is known to be this daemon's, by the local monotonic
/// clock: the lease manager moves it on at each renewal (the time the renewal was sent
/// plus the lease's time to live, less a margin for clock rates). The partition reads
/// and commits only before it.
#[derive(Debug)]
pub struct LeaseClock {
    start: Instant,
    /// Milliseconds after `start`.
    until_ms: AtomicU64,
}

impl LeaseClock {
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

impl Pipeline {
    /// Commits only under `fence` (this daemon's lease on the partition).
    pub fn set_fence(&mut self, fence: Fence) {
        self.consumer.set_fence(Some(fence));
    }

    /// Runs the partition in order until `shutdown`, or until the lease is no longer
    /// known valid (`lease`); work in flight finishes and commits first.
    pub async fn run_ordered(
        mut self,
        shutdown: CancellationToken,
        lease: Arc<LeaseClock>,
    ) -> Result<()> {
        self.shutdown = shutdown.clone();
        let valid = |lease: &LeaseClock| !lease.remaining().is_zero();
        tracing::info!(input = %self.config.input, group = %self.config.group, consumer = self.consumer.name(), "partition taken: handling its entries in order");
        self.metrics.up.set(1.0);
        while !shutdown.is_cancelled() && valid(&lease) {
            match self.consumer.ensure_group().await {
                Ok(()) => break,
                Err(fault) => self.recover(fault, &shutdown).await,
            }
        }
        // Whatever an earlier holder left pending is this daemon's now, first.
        while !shutdown.is_cancelled() && valid(&lease) {
            match self.consumer.take_over().await {
                Ok(taken) => {
                    if taken > 0 {
                        tracing::info!(
                            entries = taken,
                            "took over the partition's pending entries"
                        );
                    }
                    break;
                }
                Err(fault) => self.recover(fault, &shutdown).await,
            }
        }
        let mut queue: VecDeque<Entry> = VecDeque::new();
        // This consumer's pending entries first (from "0"), then new ones (`None`).
        let mut cursor: Option<String> = Some("0".into());
        // The head of the queue failed: when it is due again.
        let mut due_at: Option<Instant> = None;
        while !shutdown.is_cancelled() && valid(&lease) {
            self.wait_while_paused(&shutdown).await;
            self.await_replicas(&shutdown).await;
            if shutdown.is_cancelled() || !valid(&lease) {
                break;
            }
            self.refresh_backlog().await;
            if let Some(at) = due_at {
                let wait = at.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        () = tokio::time::sleep(wait.min(lease.remaining())) => {}
                    }
                    continue;
                }
                due_at = None;
                if let Some(head) = queue.pop_front() {
                    // Delivered again: the claim counts an attempt.
                    let again = PendingEntry {
                        consumer: self.consumer.name().to_owned(),
                        idle_ms: 0,
                        deliveries: head.attempt,
                        id: head.id.clone(),
                    };
                    match self.consumer.claim(&[again], Duration::ZERO).await {
                        // Gone from the stream or the pending list: nothing to do.
                        Ok(mut claimed) => {
                            if let Some(entry) = claimed.pop() {
                                queue.push_front(entry);
                            }
                        }
                        Err(fault) => {
                            queue.push_front(head);
                            due_at = Some(Instant::now());
                            self.recover(fault, &shutdown).await;
                            continue;
                        }
                    }
                }
            }
            if queue.is_empty() {
                let read = match &cursor {
                    Some(after) => self.consumer.read_pending(after, self.config.batch).await,
                    None => {
                        let block = self
                            .schedule
                            .read_block(Instant::now())
                            .min(lease.remaining());
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            read = self.consumer.read_new(self.config.batch, block) => read,
                        }
                    }
                };
                match read {
                    Ok(entries) => {
                        self.redis_ok();
                        if cursor.is_some() {
                            cursor = entries.last().map(|e| e.id.clone());
                        }
                        self.saw(&entries);
                        queue.extend(entries);
                    }
                    Err(fault) => {
                        self.recover(fault, &shutdown).await;
                        continue;
                    }
                }
                if queue.is_empty() {
                    continue;
                }
            }
            let n = queue.len().min(self.config.batch);
            let batch: Vec<Entry> = queue.drain(..n).collect();
            let (report, back, failed) = self.process_in_order(batch).await;
            if report.conflicts > 0 && !valid(&lease) {
                tracing::warn!(
                    "the partition's lease lapsed before a commit: nothing of it was written; stopping"
                );
                break;
            }
            // The failed entry (if any) and those after it go back to the head, in order.
            for entry in back.into_iter().rev() {
                queue.push_front(entry);
            }
            if let Some(wait) = failed {
                due_at = Some(Instant::now() + wait);
            }
        }
        self.board.drop_partition(self.partition);
        tracing::info!("partition released");
        Ok(())
    }

    /// Handles `entries` one after the other until one fails with a retry, and commits
    /// those handled (outputs, dead letters) in one commit. Returns the report, the
    /// entries to handle again first (the failed one, then those not started, in order)
    /// and, after a failure, how long the failed entry waits.
    async fn process_in_order(
        &mut self,
        mut entries: Vec<Entry>,
    ) -> (BatchReport, Vec<Entry>, Option<Duration>) {
        self.metrics.read.increment(entries.len() as u64);
        self.traces
            .begin(&mut entries, std::time::SystemTime::now());
        let (lease, held) = self.keep_leases(&entries, Instant::now());
        let scope = self.state_scope();
        let source = self.config.input.to_string();
        let max_attempts = self.config.max_attempts;
        let mut results: Vec<Option<Handled>> = Vec::with_capacity(entries.len());
        let mut failed: Option<(String, u32)> = None;
        let instance = &mut self.instances[0];
        for entry in entries.iter_mut() {
            if failed.is_some() || self.shutdown.is_cancelled() || *self.paused.borrow() {
                results.push(None);
                continue;
            }
            let handled = call(
                instance,
                &source,
                entry,
                scope.as_ref(),
                &self.metrics.calls,
            )
            .await;
            if let Err(error) = &handled.1
                && error.is_retryable()
                && entry.attempt < max_attempts
            {
                failed = Some((entry.id.clone(), entry.attempt));
            }
            results.push(Some(handled));
        }
        let prepared = self.prepare(entries.clone(), results, lease, held);
        let report = self.finish(prepared).await;
        // `prepare` held the unstarted entries (and `finish` any that must run again) in
        // `held_back`, and scheduled the failed one: here they go back to the queue.
        let mut back = std::mem::take(&mut self.held_back.entries);
        let wait = failed.map(|(id, attempt)| {
            self.schedule.forget(&id);
            if let Some(entry) = entries.iter().find(|e| e.id == id) {
                back.push(entry.clone());
            }
            let cfg = self.config.retry_backoff;
            super::backoff(cfg.initial, cfg.max, &id, attempt)
        });
        back.sort_by_key(|e| StreamId::parse(&e.id));
        back.dedup_by(|a, b| a.id == b.id);
        (report, back, wait)
    }
}
