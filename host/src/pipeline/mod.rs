//! One consumer loop per pipeline: read → invoke → commit, retry or dead-letter.
//!
//! The loop stops only at safe points: shutdown interrupts the wait for entries, never a
//! handler call or a commit. Entries read but not committed stay pending in Redis and are
//! delivered again, so nothing is lost whatever stops the loop.

mod invoke;
mod outcome;
mod redelivery;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::broker::{Ack, Broker, CommitError, Consumer, MAX_FIELDS_PER_OUTPUT};
use crate::config::PipelineConfig;
use crate::message::{CommitStatus, Entry, HandlerError, Output};
use crate::status::Board;
use crate::telemetry::PipelineMetrics;
use crate::wasm::{Instance, PluginCell};

use outcome::{Outcome, Rules};
pub use outcome::{backoff, dead_letter_fields};

/// How often pending and lag are read from Redis.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);
/// How long one blocking read waits for new entries before the loop looks at retries.
const READ_BLOCK: Duration = Duration::from_millis(500);
/// Delays between attempts to reach Redis after an error.
const REDIS_RETRY_MIN: Duration = Duration::from_millis(100);
const REDIS_RETRY_MAX: Duration = Duration::from_secs(5);

/// A running pipeline: its consumer, its handler instances and its rules.
pub struct Pipeline {
    config: PipelineConfig,
    consumer: Consumer,
    instances: Vec<Instance>,
    outputs: HashSet<String>,
    dead_letter: String,
    next_retry_check: Instant,
    /// Whether failed entries of this consumer wait for a redelivery.
    retries_waiting: bool,
    next_reclaim_check: Instant,
    /// Where the next scan of other consumers' idle entries starts.
    reclaim_cursor: String,
    /// Cancelled when the daemon drains: no new handler call starts.
    shutdown: CancellationToken,
    metrics: PipelineMetrics,
    board: Arc<Board>,
    paused: tokio::sync::watch::Receiver<bool>,
    next_backlog_check: Instant,
    /// How long the last prefetching batch took to handle and commit.
    last_batch_time: Duration,
}

/// A handled batch waiting for its commit.
struct Prepared {
    entries: Vec<Entry>,
    acks: Vec<Ack>,
    /// Indexes into `acks` of dead letters.
    dead: Vec<usize>,
    /// Retries counted so far; the rest is counted at the commit.
    report: BatchReport,
    /// Renews the batch's leases until its commit is done.
    lease: tokio::task::JoinHandle<()>,
}

/// A handler's result for one entry, with the digest of the plugin version that ran it.
type Handled = (Arc<str>, Result<Vec<Output>, HandlerError>);

/// What one batch came to, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries whose outputs were committed.
    pub delivered: usize,
    /// Entries committed to the dead-letter stream.
    pub dead_lettered: usize,
    /// Entries left pending for another delivery.
    pub retried: usize,
    /// Entries whose commit found them owned by someone else (nothing written).
    pub conflicts: usize,
}

impl Pipeline {
    /// Sets up the pipeline's consumer (`consumer` names it in its group) and handlers.
    pub async fn new(
        config: PipelineConfig,
        plugin: PluginCell,
        broker: &Broker,
        consumer: &str,
        board: Arc<Board>,
    ) -> Result<Self> {
        let consumer = broker
            .consumer(config.input.as_str(), config.group.as_str(), consumer)
            .await?;
        let limits = config.limits.to_limits();
        let plugin_config: Arc<BTreeMap<String, String>> = Arc::new(config.config.clone());
        let instances = (0..config.concurrency)
            .map(|_| {
                Instance::new(
                    plugin.clone(),
                    config.name.as_str(),
                    plugin_config.clone(),
                    limits,
                )
            })
            .collect();
        Ok(Self {
            outputs: config.outputs.iter().map(|o| o.to_string()).collect(),
            dead_letter: config.dead_letter_stream(),
            next_retry_check: Instant::now(),
            retries_waiting: false,
            next_reclaim_check: Instant::now(),
            reclaim_cursor: "-".to_owned(),
            shutdown: CancellationToken::new(),
            metrics: PipelineMetrics::new(config.name.as_str()),
            paused: board.paused(),
            board,
            next_backlog_check: Instant::now(),
            last_batch_time: Duration::ZERO,
            consumer,
            instances,
            config,
        })
    }

    /// Runs until `shutdown` is cancelled; in-flight work finishes and commits first.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        self.shutdown = shutdown.clone();
        let name = self.config.name.clone();
        tracing::info!(pipeline = %name, input = %self.config.input, group = %self.config.group, consumer = self.consumer.name(), "pipeline started");
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            match self.ensure_group().await {
                Ok(()) => break,
                Err(e) => failures = self.redis_trouble(&shutdown, failures, &e).await,
            }
        }
        // Start-up: this consumer's own pending entries (left by a previous run) first.
        let mut cursor = "0".to_owned();
        while !shutdown.is_cancelled() {
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                read = self.consumer.read_pending(&cursor, self.config.batch) => read,
            };
            match read {
                Ok(entries) if entries.is_empty() => break,
                Ok(entries) => {
                    failures = 0;
                    cursor.clone_from(&entries[entries.len() - 1].id);
                    self.process(entries).await;
                }
                Err(e) => failures = self.redis_trouble(&shutdown, failures, &e).await,
            }
        }
        // Then new entries, with a look at due retries between reads. While a full batch
        // is handled, the next one is read beside it (prefetched).
        let mut prefetched: Option<Vec<Entry>> = None;
        while !shutdown.is_cancelled() {
            if prefetched.is_none() {
                self.wait_while_paused(&shutdown).await;
            }
            self.refresh_backlog().await;
            if let Err(e) = self.reclaim_due().await {
                failures = self.redis_trouble(&shutdown, failures, &e).await;
                continue;
            }
            if let Err(e) = self.retry_due().await {
                failures = self.redis_trouble(&shutdown, failures, &e).await;
                continue;
            }
            let read = match prefetched.take() {
                Some(entries) => Ok(entries),
                None => tokio::select! {
                    _ = shutdown.cancelled() => break,
                    read = self.consumer.read_new(self.config.batch, self.read_block()) => read,
                },
            };
            match read {
                Ok(entries) => {
                    failures = 0;
                    if !entries.is_empty() {
                        prefetched = self.process_pipelined(entries).await;
                    }
                }
                Err(e) => failures = self.redis_trouble(&shutdown, failures, &e).await,
            }
        }
        // Entries prefetched just before a drain began were not started: they stay
        // pending, and are read first (as this consumer's own) on the next start.
        drop(prefetched);
        tracing::info!(pipeline = %name, "pipeline stopped");
        Ok(())
    }

    /// Stops reading while the pipeline is paused (work in flight has finished: this runs
    /// between batches).
    async fn wait_while_paused(&mut self, shutdown: &CancellationToken) {
        if !*self.paused.borrow() {
            return;
        }
        tracing::info!(pipeline = %self.config.name, "pipeline paused");
        while *self.paused.borrow_and_update() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = self.paused.changed() => if changed.is_err() { return },
            }
        }
        tracing::info!(pipeline = %self.config.name, "pipeline resumed");
    }

    /// Refreshes pending and lag for the status and metrics, every couple of seconds.
    async fn refresh_backlog(&mut self) {
        let now = Instant::now();
        if now < self.next_backlog_check {
            return;
        }
        self.next_backlog_check = now + BACKLOG_EVERY;
        match self.consumer.backlog().await {
            Ok((pending, lag)) => {
                self.board.set_backlog(pending, lag);
                self.metrics.pending.set(pending as f64);
                self.metrics.lag.set(lag as f64);
            }
            Err(e) => {
                tracing::debug!(pipeline = %self.config.name, error = format!("{e:#}"), "cannot read the group's backlog")
            }
        }
    }

    /// How long a read may wait for new entries: not past the next retry check while
    /// failed entries wait for their backoff.
    fn read_block(&self) -> Duration {
        if self.retries_waiting {
            self.retry_check_interval()
        } else {
            READ_BLOCK
        }
    }

    fn retry_check_interval(&self) -> Duration {
        (self.config.retry_backoff.initial / 2).clamp(Duration::from_millis(10), READ_BLOCK)
    }

    async fn ensure_group(&mut self) -> Result<()> {
        self.consumer.ensure_group().await
    }

    /// Logs a Redis error and waits a jittered, growing delay (or until shutdown).
    // `&mut self`: a `&self` held across `.await` would need `Pipeline: Sync`.
    async fn redis_trouble(
        &mut self,
        shutdown: &CancellationToken,
        failures: u32,
        error: &anyhow::Error,
    ) -> u32 {
        let delay = backoff(
            REDIS_RETRY_MIN,
            REDIS_RETRY_MAX,
            self.config.name.as_str(),
            failures + 1,
        );
        tracing::warn!(pipeline = %self.config.name, error = format!("{error:#}"), retry_in = ?delay, "redis unavailable; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        failures.saturating_add(1)
    }

    /// Handles batches back to back while full ones keep coming: the next batch is read
    /// while this one is handled (prefetch), and each batch's commit runs while the next
    /// one is handled, on another task. Commits stay in order: each is confirmed before
    /// the next is sent. Stops, with the last commit done, when no full batch is waiting,
    /// when a periodic check (retries, reclaim, backlog) is due, or on pause or drain;
    /// returns the entries it had already read, to be handled next.
    async fn process_pipelined(&mut self, entries: Vec<Entry>) -> Option<Vec<Entry>> {
        let mut current = entries;
        let mut committing: Option<Prepared> = None;
        loop {
            self.metrics.read.increment(current.len() as u64);
            let prefetch = self.should_prefetch(current.len()).then(|| {
                tokio::spawn(self.consumer.prefetcher().read_available(self.config.batch))
            });
            let started = Instant::now();
            let lease = self.keep_leases(&current);
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
            committing = Some(self.prepare(entries, results, lease));
            self.last_batch_time = started.elapsed();
            let next = match prefetch {
                Some(read) => {
                    let read = read.await;
                    self.prefetched(read)
                }
                None => None,
            };
            match next {
                Some(entries) if !self.checks_due() => current = entries,
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
    /// idle to a reclaim or to the retry scan before they are handled. Should a batch be
    /// much slower than the one before, a prefetched entry can be redelivered early and
    /// handled twice; its outputs are still written once (the commit is guarded).
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
    fn checks_due(&self) -> bool {
        let now = Instant::now();
        now >= self.next_retry_check
            || now >= self.next_reclaim_check
            || now >= self.next_backlog_check
            || *self.paused.borrow()
            || self.shutdown.is_cancelled()
    }

    fn prefetched(
        &self,
        read: Result<Result<Vec<Entry>>, tokio::task::JoinError>,
    ) -> Option<Vec<Entry>> {
        match read {
            Ok(Ok(entries)) if !entries.is_empty() => Some(entries),
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                // Whatever the failed read delivered stays pending: the retry scan
                // redelivers it once idle, or a restart reads it as this consumer's own.
                tracing::warn!(pipeline = %self.config.name, error = format!("{e:#}"), "prefetching the next batch failed");
                None
            }
            Err(e) => {
                tracing::error!(pipeline = %self.config.name, error = %e, "the prefetch task failed");
                None
            }
        }
    }

    /// Handles a batch and commits it; returns what became of its entries.
    pub async fn process(&mut self, mut entries: Vec<Entry>) -> BatchReport {
        self.metrics.read.increment(entries.len() as u64);
        let lease = self.keep_leases(&entries);
        let results = self.invoke(&mut entries).await;
        let prepared = self.prepare(entries, results, lease);
        self.finish(prepared).await
    }

    /// Decides what each handled entry comes to: outputs, a dead letter, or a retry.
    fn prepare(
        &mut self,
        entries: Vec<Entry>,
        results: Vec<Option<Handled>>,
        lease: tokio::task::JoinHandle<()>,
    ) -> Prepared {
        let rules = self.rules();
        let mut report = BatchReport::default();
        let mut acks = Vec::with_capacity(entries.len());
        let mut dead = Vec::new();
        for (entry, handled) in entries.iter().zip(results) {
            let Some((digest, result)) = handled else {
                // Not started: shutting down. It stays pending for the next delivery.
                continue;
            };
            if let Err(error) = &result {
                self.metrics.failure(error.kind());
                self.board.set_error(format!("{}: {error}", entry.id));
            }
            match rules.decide(entry, &digest, result) {
                Outcome::Deliver(mut outputs) => {
                    if let Some(name) = &self.config.version_field {
                        for output in &mut outputs {
                            output
                                .fields
                                .push((name.clone(), digest.as_bytes().to_vec()));
                        }
                    }
                    acks.push(Ack {
                        id: entry.id.clone(),
                        outputs,
                    })
                }
                Outcome::DeadLetter(letter) => {
                    dead.push(acks.len());
                    acks.push(Ack {
                        id: entry.id.clone(),
                        outputs: vec![letter],
                    });
                }
                Outcome::Retry(error) => {
                    report.retried += 1;
                    tracing::debug!(pipeline = %self.config.name, id = %entry.id, attempt = entry.attempt, kind = error.kind(), error = %error, "handler failed; entry stays pending for a retry");
                }
            }
        }
        self.retries_waiting |= report.retried > 0;
        Prepared {
            entries,
            acks,
            dead,
            report,
            lease,
        }
    }

    /// Commits a prepared batch and accounts for it.
    async fn finish(&mut self, prepared: Prepared) -> BatchReport {
        let Prepared {
            entries,
            acks,
            dead,
            mut report,
            lease,
        } = prepared;
        let mut latency_ms = 0;
        let statuses = self.commit(&acks, &entries).await;
        lease.abort();
        for (index, (ack, status)) in acks.iter().zip(statuses).enumerate() {
            let is_dead = dead.contains(&index);
            match status {
                CommitStatus::Committed if is_dead => {
                    report.dead_lettered += 1;
                    let reason = String::from_utf8_lossy(&ack.outputs[0].fields[0].1);
                    tracing::debug!(pipeline = %self.config.name, id = %ack.id, stream = %self.dead_letter, reason = %reason, "entry dead-lettered");
                }
                CommitStatus::Committed => {
                    report.delivered += 1;
                    latency_ms += self.latency_ms(&ack.id);
                }
                CommitStatus::NotOwned => {
                    report.conflicts += 1;
                    tracing::debug!(pipeline = %self.config.name, id = %ack.id, "entry no longer owned by this consumer at commit; its outputs were not written");
                }
            }
        }
        let m = &self.metrics;
        m.committed.increment(report.delivered as u64);
        m.dead_lettered.increment(report.dead_lettered as u64);
        m.retried.increment(report.retried as u64);
        m.conflicts.increment(report.conflicts as u64);
        self.board.committed(report.delivered as u64, latency_ms);
        tracing::debug!(pipeline = %self.config.name, ?report, "batch done");
        report
    }

    /// Commits until Redis confirms: the commit is guarded, so repeating one whose reply
    /// was lost writes nothing twice. A batch Redis refuses is committed entry by entry,
    /// and an entry refused on its own is dead-lettered with Redis's reason instead.
    async fn commit(&mut self, acks: &[Ack], entries: &[Entry]) -> Vec<CommitStatus> {
        match self.commit_retrying(acks).await {
            Ok(statuses) => statuses,
            Err(reason) if acks.len() == 1 => {
                tracing::warn!(pipeline = %self.config.name, id = %acks[0].id, reason = %reason, "redis refused the commit; dead-lettering the entry");
                let letter = self.refused_letter(&acks[0], entries, &reason);
                match self.commit_retrying(std::slice::from_ref(&letter)).await {
                    Ok(statuses) => statuses,
                    Err(reason) => {
                        tracing::error!(pipeline = %self.config.name, id = %acks[0].id, stream = %self.dead_letter, reason = %reason, "redis refused the dead letter too; the entry stays pending");
                        vec![CommitStatus::NotOwned]
                    }
                }
            }
            Err(_) => {
                let mut statuses = Vec::with_capacity(acks.len());
                for ack in acks {
                    statuses
                        .extend(Box::pin(self.commit(std::slice::from_ref(ack), entries)).await);
                }
                statuses
            }
        }
    }

    /// A dead letter for an entry whose commit Redis refused, with Redis's reason.
    fn refused_letter(&self, ack: &Ack, entries: &[Entry], reason: &str) -> Ack {
        let entry = entries.iter().find(|e| e.id == ack.id);
        let entry = entry.cloned().unwrap_or_else(|| Entry {
            id: ack.id.clone(),
            fields: Vec::new(),
            attempt: 0,
        });
        let digest = self.instances[0].plugin().digest().clone();
        let letter = self.rules().dead_letter(
            &entry,
            &digest,
            &format!("commit refused by redis: {reason}"),
        );
        Ack {
            id: ack.id.clone(),
            outputs: vec![letter],
        }
    }

    /// Milliseconds since the entry `id` was added (its ID's timestamp), recorded in the
    /// end-to-end latency histogram.
    fn latency_ms(&self, id: &str) -> u64 {
        let added: u64 = id
            .split('-')
            .next()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(added);
        let ms = now.saturating_sub(added);
        self.metrics.end_to_end.record(ms as f64 / 1e3);
        ms
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            pipeline: self.config.name.as_str(),
            source: self.config.input.as_str(),
            outputs: &self.outputs,
            dead_letter: &self.dead_letter,
            max_attempts: self.config.max_attempts,
            max_fields: MAX_FIELDS_PER_OUTPUT,
        }
    }

    /// Retries while Redis is unavailable; returns Redis's reason if it refuses.
    async fn commit_retrying(&mut self, acks: &[Ack]) -> Result<Vec<CommitStatus>, String> {
        let mut failures = 0;
        loop {
            match self.consumer.commit(acks).await {
                Ok(statuses) => return Ok(statuses),
                Err(CommitError::Refused(reason)) => return Err(reason),
                Err(CommitError::Unavailable(error)) => {
                    failures += 1;
                    let delay = backoff(REDIS_RETRY_MIN, REDIS_RETRY_MAX, "commit", failures);
                    tracing::warn!(pipeline = %self.config.name, entries = acks.len(), error = format!("{error:#}"), retry_in = ?delay, "commit failed; retrying (guarded: no duplicates)");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
