//! One consumer loop per pipeline: read → invoke → commit, retry or dead-letter.
//!
//! The loop stops only at safe points: shutdown interrupts the wait for entries, never a
//! handler call or a commit. Entries read but not committed stay pending in Redis and are
//! delivered again, so nothing is lost whatever stops the loop.

mod health;
mod invoke;
mod outcome;
mod redelivery;
mod settle;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio_util::sync::CancellationToken;

use crate::broker::{Ack, Backoff, Broker, Consumer, MAX_FIELDS_PER_OUTPUT, StreamId};
use crate::config::PipelineConfig;
use crate::message::{CommitStatus, Entry, HandlerError, Output};
use crate::status::Board;
use crate::telemetry::PipelineMetrics;
use crate::wasm::{Instance, PluginCell};

use outcome::{Outcome, Rules};
pub use outcome::{backoff, dead_letter_fields};
use settle::Held;
pub use settle::MAX_COMMIT_BYTES;

/// How often pending and lag are read from Redis.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);
/// How long one blocking read waits for new entries before the loop looks at retries.
const READ_BLOCK: Duration = Duration::from_millis(500);

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
    /// Where the next scan of this consumer's idle entries starts.
    retry_cursor: String,
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
    /// Backoff between tries while Redis is unusable.
    redis_backoff: Backoff,
    /// Since when the server answers `LOADING`.
    loading_since: Option<Instant>,
    /// The last entry ID known delivered to the group (read by this consumer, or the
    /// group's last-delivered-id): where a lost group is created again.
    last_known: Option<String>,
}

/// Entries read from the group, and when (their idle time in the pending entries list
/// starts there).
struct Batch {
    entries: Vec<Entry>,
    read_at: Instant,
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
    /// Since when the batch is known to be this consumer's.
    held: Held,
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
    /// Entries whose commit found them owned by someone else, or pending for nobody
    /// after a try whose reply was lost (nothing written).
    pub conflicts: usize,
    /// Entries pending for nobody at commit (removed from the pending entries list under
    /// this consumer) whose outputs were written: counted in `delivered` too.
    pub adopted: usize,
}

impl Pipeline {
    /// Sets up the pipeline's consumer (`consumer` names it in its group) and handlers,
    /// and creates its consumer group. A Redis user that may not use the input stream
    /// fails here, with the permission to grant; a Redis that is down does not (the
    /// pipeline starts in state `error` and keeps trying).
    pub async fn new(
        config: PipelineConfig,
        plugin: PluginCell,
        broker: &Broker,
        consumer: &str,
        board: Arc<Board>,
    ) -> Result<Self> {
        let mut consumer = broker.consumer(config.input.as_str(), config.group.as_str(), consumer);
        if let Err(fault) = consumer.ensure_group().await
            && fault.is_permission()
        {
            let keys = [config.input.to_string()];
            let missing = consumer
                .missing_permission(&keys)
                .await
                .unwrap_or_else(|| "check the ACL user's key and command permissions".into());
            bail!(
                "redis refuses this pipeline's user on input stream {:?}: {fault}; {missing}",
                config.input.as_str()
            );
        }
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
            retry_cursor: "-".to_owned(),
            next_reclaim_check: Instant::now(),
            reclaim_cursor: "-".to_owned(),
            shutdown: CancellationToken::new(),
            metrics: PipelineMetrics::new(config.name.as_str()),
            paused: board.paused(),
            board,
            next_backlog_check: Instant::now(),
            last_batch_time: Duration::ZERO,
            redis_backoff: Backoff::redis(),
            loading_since: None,
            last_known: None,
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
        self.metrics.up.set(1.0);
        while !shutdown.is_cancelled() {
            match self.consumer.ensure_group().await {
                Ok(()) => break,
                Err(fault) => self.recover(fault, &shutdown).await,
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
                Ok(entries) if entries.is_empty() => {
                    self.redis_ok();
                    break;
                }
                Ok(entries) => {
                    self.redis_ok();
                    cursor.clone_from(&entries[entries.len() - 1].id);
                    self.process(entries).await;
                }
                Err(fault) => self.recover(fault, &shutdown).await,
            }
        }
        // Then new entries, with a look at due retries between reads. While a full batch
        // is handled, the next one is read beside it (prefetched).
        let mut prefetched: Option<Batch> = None;
        while !shutdown.is_cancelled() {
            // Paused: nothing more is handled, including entries already read (held in
            // `prefetched`, pending in Redis) until resume.
            self.wait_while_paused(&shutdown).await;
            self.refresh_backlog().await;
            if let Err(fault) = self.reclaim_due().await {
                self.recover(fault, &shutdown).await;
                continue;
            }
            // Entries read ahead are this consumer's own pending entries too, and look
            // idle: the retry scan must not deliver them again before they are handled.
            let in_hand: HashSet<String> = prefetched
                .iter()
                .flat_map(|b| b.entries.iter().map(|e| e.id.clone()))
                .collect();
            if let Err(fault) = self.retry_due(&in_hand).await {
                self.recover(fault, &shutdown).await;
                continue;
            }
            let read = match prefetched.take() {
                Some(batch) => Ok(batch),
                None => {
                    let read_at = Instant::now();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        read = self.consumer.read_new(self.config.batch, self.read_block()) => read.map(|entries| Batch { entries, read_at }),
                    }
                }
            };
            match read {
                Ok(batch) => {
                    self.redis_ok();
                    if !batch.entries.is_empty() {
                        self.saw(&batch.entries);
                        if *self.paused.borrow() {
                            // Read as the pause came (a blocking read in flight): held,
                            // not handled, until resume.
                            prefetched = Some(batch);
                            continue;
                        }
                        prefetched = self.process_pipelined(batch).await;
                    }
                }
                Err(fault) => self.recover(fault, &shutdown).await,
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
        self.board.set_parked(true);
        while *self.paused.borrow_and_update() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = self.paused.changed() => if changed.is_err() { break },
            }
        }
        self.board.set_parked(false);
        tracing::info!(pipeline = %self.config.name, "pipeline resumed");
    }

    /// Refreshes pending and lag for the status and metrics, every couple of seconds.
    async fn refresh_backlog(&mut self) {
        let now = Instant::now();
        if now < self.next_backlog_check {
            return;
        }
        self.next_backlog_check = now + BACKLOG_EVERY;
        match self.consumer.group_info().await {
            Ok(info) => {
                self.board.set_backlog(info.pending, info.lag);
                self.metrics.pending.set(info.pending as f64);
                self.metrics.lag.set(info.lag as f64);
                self.saw_id(&info.last_delivered);
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

    /// Notes the newest ID of entries read from the group.
    fn saw(&mut self, entries: &[Entry]) {
        if let Some(last) = entries
            .iter()
            .map(|e| e.id.as_str())
            .max_by_key(|id| StreamId::parse(id))
        {
            let last = last.to_owned();
            self.saw_id(&last);
        }
    }

    /// Notes that the entry `id` was delivered to the group.
    fn saw_id(&mut self, id: &str) {
        if id.is_empty() || id == "0-0" {
            return;
        }
        if self
            .last_known
            .as_deref()
            .is_none_or(|known| StreamId::parse(id) > StreamId::parse(known))
        {
            self.last_known = Some(id.to_owned());
        }
    }

    /// Handles batches back to back while full ones keep coming: the next batch is read
    /// while this one is handled (prefetch), and each batch's commit runs while the next
    /// one is handled, on another task. Commits stay in order: each is confirmed before
    /// the next is sent. Stops, with the last commit done, when no full batch is waiting,
    /// when a periodic check (retries, reclaim, backlog) is due, or on pause or drain;
    /// returns the entries it had already read, to be handled next.
    async fn process_pipelined(&mut self, batch: Batch) -> Option<Batch> {
        let Batch {
            entries: mut current,
            mut read_at,
        } = batch;
        let mut committing: Option<Prepared> = None;
        loop {
            self.metrics.read.increment(current.len() as u64);
            let prefetch_at = Instant::now();
            let prefetch = self.should_prefetch(current.len()).then(|| {
                tokio::spawn(self.consumer.prefetcher().read_available(self.config.batch))
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
    fn checks_due(&self) -> bool {
        let now = Instant::now();
        now >= self.next_retry_check
            || now >= self.next_reclaim_check
            || now >= self.next_backlog_check
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
        let (lease, held) = self.keep_leases(&entries, Instant::now());
        let results = self.invoke(&mut entries).await;
        let prepared = self.prepare(entries, results, lease, held);
        self.finish(prepared).await
    }

    /// Decides what each handled entry comes to: outputs, a dead letter, or a retry.
    fn prepare(
        &mut self,
        entries: Vec<Entry>,
        results: Vec<Option<Handled>>,
        lease: tokio::task::JoinHandle<()>,
        held: Held,
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
            held,
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
            held,
        } = prepared;
        let mut latency_ms = 0;
        let statuses = self.commit(&acks, &entries, &held).await;
        lease.abort();
        let (mut adopted, mut gone) = (Vec::new(), Vec::new());
        for (index, (ack, status)) in acks.iter().zip(statuses).enumerate() {
            let is_dead = dead.contains(&index);
            let Some(status) = status else {
                report.retried += 1;
                continue;
            };
            match status {
                CommitStatus::Committed | CommitStatus::Adopted if is_dead => {
                    if status == CommitStatus::Adopted {
                        adopted.push(ack.id.as_str());
                    }
                    report.dead_lettered += 1;
                    let reason = String::from_utf8_lossy(&ack.outputs[0].fields[0].1);
                    tracing::debug!(pipeline = %self.config.name, id = %ack.id, stream = %self.dead_letter, reason = %reason, "entry dead-lettered");
                }
                CommitStatus::Committed => {
                    report.delivered += 1;
                    latency_ms += self.latency_ms(&ack.id);
                }
                CommitStatus::Adopted => {
                    report.delivered += 1;
                    adopted.push(ack.id.as_str());
                    latency_ms += self.latency_ms(&ack.id);
                }
                CommitStatus::NotOwned => {
                    report.conflicts += 1;
                    tracing::debug!(pipeline = %self.config.name, id = %ack.id, "entry claimed by another consumer before the commit; its outputs were not written");
                }
                CommitStatus::Gone => {
                    report.conflicts += 1;
                    gone.push(ack.id.as_str());
                }
            }
        }
        if !adopted.is_empty() {
            report.adopted = adopted.len();
            self.metrics.adopted.increment(adopted.len() as u64);
            tracing::warn!(pipeline = %self.config.name, ids = ?adopted, "entries were removed from the pending entries list while this consumer held them (XGROUP DELCONSUMER, XACK or a lost group); their outputs were written once (adopted), there is nothing to acknowledge");
            self.board.incident(format!(
                "{} entries were removed from the pending entries list while being handled ({}); their outputs were written once",
                adopted.len(),
                adopted.join(", ")
            ));
        }
        if !gone.is_empty() {
            tracing::warn!(pipeline = %self.config.name, ids = ?gone, "entries were pending for no consumer at commit after a try whose reply was lost, or after this consumer's lease lapsed: taken as committed by that try or by another consumer; nothing written");
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

    /// A dead letter for an entry whose commit Redis refused, with Redis's reason.
    fn refused_letter(&self, ack: &Ack, entries: &[Entry], reason: &str) -> Ack {
        let entry = entries.iter().find(|e| e.id == ack.id);
        let entry = entry.cloned().unwrap_or_else(|| Entry {
            id: ack.id.clone(),
            ..Entry::default()
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
}
