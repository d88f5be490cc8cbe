//! One consumer loop per pipeline: read → invoke → commit, retry or dead-letter.
//!
//! The loop stops only at safe points: shutdown interrupts the wait for entries, never a
//! handler call or a commit. Entries read but not committed stay pending in Redis and are
//! delivered again, so nothing is lost whatever stops the loop.

pub mod backlog;
mod batch;
mod dead_log;
mod health;
mod invoke;
mod ordered;
mod outcome;
mod readahead;
mod redelivery;
mod schedule;
mod settle;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio_util::sync::CancellationToken;

use crate::broker::{Backoff, Broker, Consumer, KeyMap, MAX_FIELDS_PER_OUTPUT};
use crate::config::PipelineConfig;
use crate::message::{Entry, HandlerError, Output, StreamId};
use crate::state::{Changes, Scope};
use crate::status::Board;
use crate::telemetry::PipelineMetrics;
use crate::telemetry::traces::{PipelineNames, Traces, Tracing};
use crate::wasm::{Instance, PluginCell};

pub use ordered::LeaseClock;
use outcome::Rules;
pub use outcome::backoff;
use readahead::Batch;
use schedule::Schedule;

/// A running pipeline: its consumer, its handler instances and its rules.
pub struct Pipeline {
    config: PipelineConfig,
    consumer: Consumer,
    /// With `state` prefixes: what the handler may touch; each batch gets a copy with
    /// an overlay of its own.
    state: Option<Scope>,
    instances: Vec<Instance>,
    outputs: HashSet<String>,
    dead_letter: String,
    dead_log: dead_log::DeadLog,
    /// When to scan for retries and reclaims and refresh the backlog.
    schedule: Schedule,
    /// Cancelled when the daemon drains: no new handler call starts.
    shutdown: CancellationToken,
    metrics: PipelineMetrics,
    board: Arc<Board>,
    paused: tokio::sync::watch::Receiver<bool>,
    /// How long the last prefetching batch took to handle and commit.
    last_batch_time: Duration,
    /// Backoff between tries while Redis is unusable.
    redis_backoff: Backoff,
    /// Since when the server answers `LOADING`.
    loading_since: Option<Instant>,
    /// Entries read but not started because a pause came mid-batch: handled first on
    /// resume, as the same delivery.
    held_back: Batch,
    /// Entries handled again because their handler state changed under them, and how
    /// many times in a row.
    reruns: std::collections::HashMap<String, u32>,
    /// The group's delivery count (or this consumer's commits) over time: the rate its
    /// backlog drains at.
    rate: backlog::Rate,
    /// Entries this pipeline committed (handler outputs or dead letters).
    committed_total: u64,
    /// The last entry ID known delivered to the group (read by this consumer, or the
    /// group's last-delivered-id): where a lost group is created again.
    last_known: Option<String>,
    /// Which partition of a partitioned pipeline this is.
    partition: Option<u32>,
    /// Which entries get a trace, and where their spans go.
    traces: Traces,
}

/// A handler's result for one entry, with the digest of the plugin version that ran it
/// and the handler state it read and wrote.
type Handled = (Arc<str>, Result<Vec<Output>, HandlerError>, Changes);

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
    /// Entries handled again because handler state they read changed before their
    /// commit (nothing written; no attempt counted).
    pub state_conflicts: usize,
    /// Entries pending for nobody at commit (removed from the pending entries list under
    /// this consumer) whose outputs were written: counted in `delivered` too.
    pub adopted: usize,
}

impl Pipeline {
    /// Sets up the pipeline's consumer (`consumer` names it in its group) and handlers,
    /// and creates its consumer group. A Redis user that may not use the input stream
    /// fails here, with the permission to grant; a Redis that is down does not (the
    /// pipeline starts in state `error` and keeps trying).
    ///
    /// For a partitioned pipeline, `partition` says which partition: `config` is the
    /// whole pipeline's, and the partition's streams and state keys are derived from it.
    pub async fn new(
        config: PipelineConfig,
        partition: Option<u32>,
        plugin: PluginCell,
        broker: &Broker,
        consumer: &str,
        board: Arc<Board>,
        tracing: &Tracing,
    ) -> Result<Self> {
        let keys = KeyMap::new(config.state_keys(partition));
        // Outputs as the handler names them (a partition's are tagged at the commit).
        let outputs = config.outputs.iter().map(|o| o.to_string()).collect();
        let config = match partition {
            Some(p) => config.partition(p),
            None => config,
        };
        let mut consumer = broker
            .consumer(config.input.as_str(), config.group.as_str(), consumer)
            .with_state_keys(keys);
        if config.cross_slot && broker.is_cluster() {
            consumer = consumer.with_cross_slot(config.cross_slot_marker_ttl);
        }
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
        let instances = (0..config.concurrency.unwrap_or(1))
            .map(|_| Instance::new(plugin.clone(), plugin_config.clone(), limits))
            .collect();
        let state = (!config.state.is_empty()).then(|| Scope {
            prefixes: config.state.iter().cloned().collect(),
            overlay: Default::default(),
            store: consumer.state_store(),
        });
        let traces = tracing.pipeline(
            config.traces,
            PipelineNames {
                pipeline: config.name.to_string(),
                input: config.input.to_string(),
                group: config.group.to_string(),
                partition,
            },
        );
        Ok(Self {
            traces,
            state,
            outputs,
            dead_letter: config.dead_letter_stream(),
            dead_log: dead_log::DeadLog::new(config.name.as_str(), &config.dead_letter_stream()),
            schedule: Schedule::new(config.retry_backoff, config.claim_idle),
            shutdown: CancellationToken::new(),
            metrics: PipelineMetrics::new(config.name.as_str(), partition),
            paused: board.paused(),
            board,
            last_batch_time: Duration::ZERO,
            redis_backoff: Backoff::redis(),
            loading_since: None,
            last_known: None,
            partition,
            reruns: Default::default(),
            rate: backlog::Rate::default(),
            committed_total: 0,
            held_back: Batch {
                entries: Vec::new(),
                read_at: Instant::now(),
            },
            consumer,
            instances,
            config,
        })
    }

    /// Runs until `shutdown` is cancelled; in-flight work finishes and commits first.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        self.shutdown = shutdown.clone();
        tracing::info!(input = %self.config.input, group = %self.config.group, consumer = self.consumer.name(), "pipeline started");
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
            self.wait_while_paused(&shutdown).await;
            self.await_replicas(&shutdown).await;
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
            // `prefetched`, pending in Redis) until resume. Held entries another
            // consumer took meanwhile (a pause longer than `claim_idle`) are dropped.
            if self.wait_while_paused(&shutdown).await {
                if let Some(batch) = &mut prefetched
                    && self.keep_owned(&mut batch.entries).await
                {
                    batch.read_at = Instant::now();
                }
                let mut held = std::mem::take(&mut self.held_back.entries);
                if self.keep_owned(&mut held).await {
                    self.held_back.read_at = Instant::now();
                }
                self.held_back.entries = held;
            }
            self.await_replicas(&shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            if !self.held_back.entries.is_empty() {
                let entries = std::mem::take(&mut self.held_back.entries);
                let read_at = std::mem::replace(&mut self.held_back.read_at, Instant::now());
                self.process_read_at(entries, read_at).await;
                continue;
            }
            self.refresh_backlog().await;
            if let Err(fault) = self.reclaim_due().await {
                self.recover(fault, &shutdown).await;
                continue;
            }
            // Entries read ahead are this consumer's own pending entries too, and look
            // idle: the retry scan must not deliver them again before they are handled.
            let in_hand = prefetched.as_ref().map_or(&[][..], |b| &b.entries[..]);
            if let Err(fault) = self.retry_due(in_hand).await {
                self.recover(fault, &shutdown).await;
                continue;
            }
            let read = match prefetched.take() {
                Some(batch) => Ok(batch),
                None => {
                    let read_at = Instant::now();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        read = self.consumer.read_new(self.config.batch, self.schedule.read_block(Instant::now())) => read.map(|entries| Batch { entries, read_at }),
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
        tracing::info!("pipeline stopped");
        Ok(())
    }

    /// Stops reading while the pipeline is paused (work in flight has finished: this runs
    /// between batches). Returns whether it was paused.
    async fn wait_while_paused(&mut self, shutdown: &CancellationToken) -> bool {
        if !*self.paused.borrow() {
            return false;
        }
        tracing::info!("pipeline paused");
        self.board.set_parked(true);
        while *self.paused.borrow_and_update() {
            // The status keeps showing the backlog growing while paused.
            self.refresh_backlog().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = self.paused.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(schedule::BACKLOG_EVERY) => {}
            }
        }
        self.board.set_parked(false);
        tracing::info!("pipeline resumed");
        true
    }

    /// Keeps of `entries` (read, held through a pause) those this consumer still owns,
    /// renewing their lease; the others were reclaimed by another consumer meanwhile and
    /// are its to handle. If Redis cannot tell, all are kept: the commit's guard still
    /// refuses to write for an entry owned by another. Returns whether the leases of
    /// those kept were renewed.
    async fn keep_owned(&mut self, entries: &mut Vec<Entry>) -> bool {
        if entries.is_empty() {
            return false;
        }
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        match self.consumer.lease().renew(&ids).await {
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

    /// Refreshes pending, lag, backlog and drain time for the status and metrics,
    /// every couple of seconds (see [`backlog`]).
    async fn refresh_backlog(&mut self) {
        let now = Instant::now();
        if !self.schedule.backlog_refresh(now) {
            return;
        }
        match self.consumer.group_info().await {
            Ok(mut info) => {
                if !info.lag_known
                    && let Ok(Some((length, oldest, newest))) = self.consumer.stream_extent().await
                {
                    info.lag =
                        backlog::estimate_lag(length, &oldest, &newest, &info.last_delivered);
                }
                let total = info.pending + info.lag;
                let (exact, estimated) = if info.lag_known {
                    (total, 0)
                } else {
                    (0, total)
                };
                match info.entries_read {
                    Some(read) => self.rate.record(now, read),
                    None => self.rate.record(now, self.committed_total),
                }
                self.board
                    .set_backlog(self.partition, info.pending, info.lag);
                self.metrics.pending.set(info.pending as f64);
                self.metrics.lag.set(info.lag as f64);
                self.metrics.backlog_exact.set(exact as f64);
                self.metrics.backlog_estimated.set(estimated as f64);
                self.metrics
                    .drain
                    .set(backlog::drain_seconds(total, self.rate.per_second()));
                self.saw_id(&info.last_delivered);
            }
            Err(e) => {
                tracing::debug!(error = format!("{e:#}"), "cannot read the group's backlog")
            }
        }
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

    fn rules(&self) -> Rules<'_> {
        Rules {
            pipeline: self.config.name.as_str(),
            source: self.config.input.as_str(),
            outputs: &self.outputs,
            dead_letter: &self.dead_letter,
            max_attempts: self.config.max_attempts,
            max_fields: MAX_FIELDS_PER_OUTPUT,
            partition: self.partition,
        }
    }
}
