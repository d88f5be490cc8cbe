//! What a pipeline does when Redis fails it: show it (status `error`, `sluice_pipeline_up`,
//! one log line per change), apply the fault's remedy (a new connection, the consumer
//! group created again), and back off — and what it does when Redis works again.
//!
//! Nothing here dead-letters: an environment fault never is the entry's.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Pipeline;
use crate::broker::{Fault, Remedy};

/// How long a server may answer `LOADING` before the connection is opened again (the
/// name may lead to another node by then).
const LOADING_PATIENCE: Duration = Duration::from_secs(5);

impl Pipeline {
    /// Handles a Redis fault met outside a commit: applies its remedy, shows it, and waits
    /// a backoff (returns early on shutdown).
    pub(super) async fn recover(&mut self, fault: Fault, shutdown: &CancellationToken) {
        if let Some(fault) = self.remedy(fault).await {
            self.show_fault(&fault);
            self.redis_backoff.wait(shutdown).await;
            // A lost connection is cured once a new one answers: the pipeline need not
            // stay in state `error` until its next blocking read returns.
            if fault.remedy() == Remedy::Reconnect && self.consumer.ping().await {
                self.redis_ok();
            }
        }
    }

    /// Applies a fault's remedy. Returns the fault to show and back off for, or `None`
    /// if the remedy already cured it (a consumer group created again).
    pub(super) async fn remedy(&mut self, fault: Fault) -> Option<Fault> {
        self.metrics.redis_error(fault.code());
        match fault.remedy() {
            Remedy::Reconnect => self.consumer.reconnect(),
            Remedy::RecreateGroup => match self.recreate_group().await {
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
            let mut keys = vec![self.config.input.to_string(), self.dead_letter.clone()];
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
        let retry = self.redis_backoff.failures() + 1;
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
    pub(super) async fn await_replicas(&mut self, shutdown: &CancellationToken) {
        let mut short = false;
        while !shutdown.is_cancelled() {
            match self.consumer.await_replicas().await {
                Ok(()) => break,
                Err(fault) => {
                    short = true;
                    self.recover(fault, shutdown).await;
                }
            }
        }
        if short && !shutdown.is_cancelled() {
            self.redis_ok();
        }
    }

    /// Records that Redis answered: ends state `error` if it was on.
    pub(super) fn redis_ok(&mut self) {
        self.redis_backoff.reset();
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
    async fn recreate_group(&mut self) -> Result<(), Fault> {
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
        self.schedule.restart_scans();
        Ok(())
    }
}
