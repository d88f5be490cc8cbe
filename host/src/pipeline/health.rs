//! The health stage: the pipeline's consumer and how it stands with Redis. What the
//! pipeline does when Redis fails it: show it (status `error`, `sluice_pipeline_up`, one
//! log line per change), apply the fault's remedy (a new connection, the consumer group
//! created again), and back off — and what it does when Redis works again. It also keeps
//! the backlog (pending, lag, drain time) shown in the status and metrics.
//!
//! Nothing here dead-letters: an environment fault never is the entry's.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::backlog::{self, Rate};
use super::schedule::Schedule;
use crate::broker::{Backoff, Consumer, Fault, Remedy};
use crate::config::PipelineConfig;
use crate::message::{Entry, StreamId};
use crate::status::Board;
use crate::telemetry::PipelineMetrics;

/// How long a server may answer `LOADING` before the connection is opened again (the
/// name may lead to another node by then).
const LOADING_PATIENCE: Duration = Duration::from_secs(5);

/// The pipeline's consumer in its group, and its standing with Redis.
pub(super) struct Health {
    pub(super) consumer: Consumer,
    config: Arc<PipelineConfig>,
    /// Outputs as the handler names them, and the dead-letter stream: the keys a
    /// permission fault is explained for.
    outputs: HashSet<String>,
    board: Arc<Board>,
    metrics: PipelineMetrics,
    /// Backoff between tries while Redis is unusable.
    backoff: Backoff,
    /// Since when the server answers `LOADING`.
    loading_since: Option<Instant>,
    /// The last entry ID known delivered to the group (read by this consumer, or the
    /// group's last-delivered-id): where a lost group is created again.
    last_known: Option<String>,
    /// The group's delivery count (or this consumer's commits) over time: the rate its
    /// backlog drains at.
    rate: Rate,
    /// Entries this pipeline committed (handler outputs or dead letters).
    committed_total: u64,
    /// Which partition of a partitioned pipeline this is.
    partition: Option<u32>,
}

impl Health {
    pub(super) fn new(
        consumer: Consumer,
        config: Arc<PipelineConfig>,
        outputs: HashSet<String>,
        board: Arc<Board>,
        metrics: PipelineMetrics,
        partition: Option<u32>,
    ) -> Self {
        Self {
            partition,
            consumer,
            config,
            outputs,
            board,
            metrics,
            backoff: Backoff::redis(),
            loading_since: None,
            last_known: None,
            rate: Rate::default(),
            committed_total: 0,
        }
    }

    /// Waits the backoff after a fault (returns early on shutdown).
    pub(super) async fn back_off(&mut self, shutdown: &CancellationToken) {
        self.backoff.wait(shutdown).await;
    }

    /// Where the pipeline shows its state.
    pub(super) fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Creates the consumer group if it is missing, trying until Redis takes it, the
    /// pipeline drains or `holds` says the pipeline may no longer run.
    pub(super) async fn ensure_group(
        &mut self,
        schedule: &mut Schedule,
        shutdown: &CancellationToken,
        holds: impl Fn() -> bool,
    ) {
        while !shutdown.is_cancelled() && holds() {
            match self.consumer.ensure_group().await {
                Ok(()) => break,
                Err(fault) => self.recover(fault, schedule, shutdown).await,
            }
        }
    }

    /// Counts `n` entries committed (handler outputs or dead letters): the drain rate
    /// when Redis does not report the group's.
    pub(super) fn committed(&mut self, n: u64) {
        self.committed_total += n;
    }

    /// Notes the newest ID of entries read from the group.
    pub(super) fn saw(&mut self, entries: &[Entry]) {
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

    /// Refreshes pending, lag, backlog and drain time for the status and metrics,
    /// every couple of seconds (see [`backlog`]).
    pub(super) async fn refresh_backlog(&mut self, schedule: &mut Schedule) {
        let now = Instant::now();
        if !schedule.backlog_refresh(now) {
            return;
        }
        let mut info = match self.consumer.group_info().await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = format!("{e:#}"), "cannot read the group's backlog");
                return;
            }
        };
        if !info.lag_known
            && let Ok(Some((length, oldest, newest))) = self.consumer.stream_extent().await
        {
            info.lag = backlog::estimate_lag(length, &oldest, &newest, &info.last_delivered);
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
    /// Handles a Redis fault met outside a commit: applies its remedy, shows it, and waits
    /// a backoff (returns early on shutdown).
    pub(super) async fn recover(
        &mut self,
        fault: Fault,
        schedule: &mut Schedule,
        shutdown: &CancellationToken,
    ) {
        if let Some(fault) = self.remedy(fault, schedule).await {
            self.show_fault(&fault);
            self.backoff.wait(shutdown).await;
            // A lost connection is cured once a new one answers: the pipeline need not
            // stay in state `error` until its next blocking read returns.
            if fault.remedy() == Remedy::Reconnect && self.consumer.ping().await {
                self.redis_ok();
            }
        }
    }

    /// Applies a fault's remedy. Returns the fault to show and back off for, or `None`
    /// if the remedy already cured it (a consumer group created again).
    pub(super) async fn remedy(&mut self, fault: Fault, schedule: &mut Schedule) -> Option<Fault> {
        self.metrics.redis_error(fault.code());
        match fault.remedy() {
            Remedy::Reconnect => self.consumer.reconnect(),
            Remedy::RecreateGroup => match self.recreate_group(schedule).await {
                Ok(()) => return None,
                Err(other) => return Some(other),
            },
            Remedy::Wait if fault.code() == "LOADING" => {
                let since = *self.loading_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= LOADING_PATIENCE {
                    self.consumer.reconnect();
                    self.loading_since = None;
                }
            }
            Remedy::Wait => {}
        }
        if fault.code() == "WRONGPASS" || fault.code() == "NOAUTH" {
            return Some(fault.explain(
                "the ACL user or its password is not accepted (was the user removed, or its password changed?); fix the user on the server, or the password where Sluice reads it ([redis] password_file is read again at each reconnection; SLUICE_REDIS_PASSWORD and the URL need a restart)",
            ));
        }
        if fault.code() == "NOPERM" {
            let mut keys = vec![
                self.config.input.to_string(),
                self.config.dead_letter_stream(),
            ];
            keys.extend(self.outputs.iter().cloned());
            if let Some(missing) = self.consumer.missing_permission(&keys).await {
                return Some(fault.explain(&missing));
            }
        }
        Some(fault)
    }

    /// Puts the pipeline in state `error` and logs the fault: at ERROR for a permission
    /// (an operator must act), at WARN otherwise; the same fault again only at DEBUG.
    pub(super) fn show_fault(&mut self, fault: &Fault) {
        let reason = fault.to_string();
        let repeated = self.board.fault().as_deref() == Some(reason.as_str());
        self.board.set_fault(reason.clone());
        self.metrics.up.set(0.0);
        let retry = self.backoff.failures() + 1;
        if repeated {
            tracing::debug!(code = fault.code(), error = %reason, retry, "redis still unusable; retrying");
        } else if fault.is_permission() {
            tracing::error!(code = fault.code(), error = %reason, "redis refuses this pipeline's user; nothing is dead-lettered, entries stay pending until the user is accepted");
        } else {
            tracing::warn!(code = fault.code(), error = %reason, "redis unusable; retrying (nothing is dead-lettered)");
        }
    }

    /// Before the next batch: when fewer replicas than `[redis] wait_replicas` have the
    /// last commit, asks again until they do, in state `error` meanwhile. Returns at
    /// shutdown too: the commit stands on the primary either way.
    pub(super) async fn await_replicas(
        &mut self,
        schedule: &mut Schedule,
        shutdown: &CancellationToken,
    ) {
        let mut short = false;
        while !shutdown.is_cancelled() {
            match self.consumer.await_replicas().await {
                Ok(()) => break,
                Err(fault) => {
                    short = true;
                    self.recover(fault, schedule, shutdown).await;
                }
            }
        }
        if short && !shutdown.is_cancelled() {
            self.redis_ok();
        }
    }

    /// Records that Redis answered: ends state `error` if it was on.
    pub(super) fn redis_ok(&mut self) {
        self.backoff.reset();
        self.loading_since = None;
        if let Some(seconds) = self.board.clear_fault() {
            self.metrics.up.set(1.0);
            tracing::info!(
                after_s = seconds,
                "redis usable again; the pipeline carries on"
            );
            self.board.incident(format!(
                "redis usable again after {seconds} s in state error"
            ));
        }
    }

    /// Creates the consumer group again after it was lost, after the last entry known
    /// delivered to it; says once, at WARN, which ID and why.
    async fn recreate_group(&mut self, schedule: &mut Schedule) -> Result<(), Fault> {
        let recreated = self
            .consumer
            .recreate_group(self.last_known.as_deref())
            .await?;
        self.metrics.group_recreated.increment(1);
        let message = match recreated {
            Some(r) => {
                // What is known delivered starts again from the new group's start.
                self.last_known = (r.id != "0").then(|| r.id.clone());
                tracing::warn!(stream = %self.config.input, group = %self.config.group, id = %r.id, why = %r.why, "the consumer group was lost (NOGROUP); created it again");
                format!(
                    "consumer group {:?} was lost (NOGROUP: the stream or group was deleted, or Redis restarted without its data); created it again at ID {}: {}",
                    self.config.group.as_str(),
                    r.id,
                    r.why
                )
            }
            None => {
                tracing::warn!(group = %self.config.group, "the consumer group was lost (NOGROUP); another consumer created it again first");
                format!(
                    "consumer group {:?} was lost (NOGROUP); another consumer created it again",
                    self.config.group.as_str()
                )
            }
        };
        self.board.incident(message);
        // The retry scan and reclaim start again from the new group's (empty) list.
        schedule.restart_scans();
        Ok(())
    }
}
