//! The committer stage: settles a handled batch. [`Committer::prepare`] decides each
//! entry's fate (a [`Prepared`] commit: outputs, a dead letter, or a retry later);
//! [`Committer::commit`] commits it whatever state Redis is in (`commit.rs`) and
//! accounts for what each entry came to ([`Fate`], `account.rs`) in a [`BatchReport`],
//! the metrics, the status and logs.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::account::{Fate, Tally};
use super::commit::{self, Sending};
use super::dead_log::DeadLog;
use super::entry_lease::{Held, KeptLeases};
use super::handler::Handled;
use super::health::Health;
use super::outcome::{Outcome, Rules, reason_of};
use super::reader::Hold;
use super::redelivery::Redelivery;
use super::reruns::Reruns;
use super::schedule::Schedule;
use super::{BatchReport, Halt};
use crate::broker::{Ack, MAX_FIELDS_PER_OUTPUT};
use crate::config::PipelineConfig;
use crate::message::{Entry, HandlerError, Output, StreamId};
use crate::status::Board;
use crate::telemetry::PipelineMetrics;
use crate::telemetry::traces::{Ended, Traces};
use crate::trace_context;

/// One entry's part of a prepared commit.
struct Plan {
    /// Its index in the batch.
    entry: usize,
    /// The plugin version that handled it.
    digest: Arc<str>,
    /// Its dead letter's reason, if it is dead-lettered.
    dead_letter: Option<String>,
}

/// A handled batch waiting for its commit: an ack and a plan per entry to commit.
pub(super) struct Prepared {
    entries: Vec<Entry>,
    acks: Vec<Ack>,
    plans: Vec<Plan>,
    /// Retries and state conflicts counted so far; the rest is counted at the commit.
    report: BatchReport,
    leases: KeptLeases,
}

/// Settles handled batches.
pub(super) struct Committer {
    config: Arc<PipelineConfig>,
    /// Outputs as the handler names them (a partition's are tagged at the commit).
    outputs: HashSet<String>,
    dead_letter: String,
    partition: Option<u32>,
    dead_log: DeadLog,
    /// Entries handled again because their handler state changed under them.
    reruns: Reruns,
    board: Arc<Board>,
    metrics: PipelineMetrics,
    traces: Traces,
}

impl Committer {
    pub(super) fn new(
        config: Arc<PipelineConfig>,
        outputs: HashSet<String>,
        partition: Option<u32>,
        board: Arc<Board>,
        metrics: PipelineMetrics,
        traces: Traces,
    ) -> Self {
        let dead_letter = config.dead_letter_stream();
        Self {
            dead_log: DeadLog::new(config.name.as_str(), &dead_letter),
            dead_letter,
            config,
            outputs,
            partition,
            reruns: Reruns::default(),
            board,
            metrics,
            traces,
        }
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            pipeline: self.config.name.as_str(),
            input: self.config.input.as_str(),
            outputs: &self.outputs,
            dead_letter: &self.dead_letter,
            max_attempts: self.config.max_attempts,
            max_fields: MAX_FIELDS_PER_OUTPUT,
            partition: self.partition,
        }
    }

    /// Decides what each handled entry comes to: outputs, a dead letter, or a retry
    /// later (scheduled now). Entries not started, or handled again, go back to the
    /// reader.
    pub(super) fn prepare(
        &mut self,
        entries: Vec<Entry>,
        handled: Vec<Option<Handled>>,
        leases: KeptLeases,
        redelivery: &mut Redelivery,
        halt: &Halt,
    ) -> (Prepared, Hold) {
        let since = leases.held.at();
        let mut prepared = Prepared {
            acks: Vec::with_capacity(entries.len()),
            plans: Vec::new(),
            report: BatchReport::default(),
            leases,
            entries: Vec::new(),
        };
        let (mut again, mut unstarted) = (Vec::new(), Vec::new());
        for (index, (entry, handled)) in entries.iter().zip(handled).enumerate() {
            let Some(handled) = handled else {
                // Not started. Draining: it stays pending for the next delivery. Paused:
                // it is held, and handled first on resume (as the same delivery).
                unstarted.push(entry.clone());
                continue;
            };
            if let Err(HandlerError::Conflict(reason)) = &handled.result {
                tracing::debug!(id = %entry.id, reason = %reason, "handler state call met the batch's uncommitted writes; handling the entry again after the commit");
                prepared.report.state_conflicts += 1;
                self.metrics.state_conflicts.increment(1);
                again.push(entry.clone());
                continue;
            }
            self.plan(&mut prepared, index, entry, handled, redelivery);
        }
        prepared.entries = entries;
        let again = self.reruns.again(again, redelivery);
        if halt.draining() {
            unstarted.clear();
        }
        let hold = Hold {
            again,
            unstarted,
            since,
        };
        (prepared, hold)
    }

    /// Plans the commit of one handled entry (or schedules its retry).
    fn plan(
        &mut self,
        prepared: &mut Prepared,
        index: usize,
        entry: &Entry,
        handled: Handled,
        redelivery: &mut Redelivery,
    ) {
        let Handled {
            digest,
            result,
            state,
        } = handled;
        if let Err(error) = &result {
            self.metrics.failure(error.kind());
            self.board.set_error(format!("{}: {error}", entry.id));
        }
        let (outputs, state, dead_letter) = match self.rules().decide(entry, &digest, result) {
            Outcome::Deliver(outputs) => (self.stamp(entry, &digest, outputs), state, None),
            Outcome::DeadLetter(letter) => {
                let reason = reason_of(&letter);
                (vec![letter], Default::default(), Some(reason))
            }
            Outcome::Retry(error) => {
                if entry.trace.is_some() {
                    let ended = Ended::Retry(format!("{}: {error}", error.kind()));
                    self.traces.end(entry, &digest, None, &ended);
                }
                prepared.report.retried += 1;
                tracing::debug!(id = %entry.id, attempt = entry.attempt, kind = error.kind(), error = %error, "handler failed; entry stays pending for a retry");
                redelivery.retry_later(&entry.id, entry.attempt);
                return;
            }
        };
        let id = entry.id.clone();
        prepared.acks.push(Ack { id, outputs, state });
        prepared.plans.push(Plan {
            entry: index,
            digest,
            dead_letter,
        });
    }

    /// Outputs with the plugin version (if `version_field` is set) and the entry's trace
    /// context (the next consumer goes on with this delivery's span).
    fn stamp(&self, entry: &Entry, digest: &str, mut outputs: Vec<Output>) -> Vec<Output> {
        if let Some(name) = &self.config.version_field {
            for output in &mut outputs {
                output
                    .fields
                    .push((name.clone(), digest.as_bytes().to_vec()));
            }
        }
        if let Some(trace) = &entry.trace {
            let context = trace.output_fields();
            for output in &mut outputs {
                trace_context::inject(&mut output.fields, &context);
            }
        }
        outputs
    }

    /// Commits a prepared batch and accounts for it; returns the report and the
    /// entries to handle again.
    pub(super) async fn commit(
        &mut self,
        prepared: Prepared,
        health: &mut Health,
        redelivery: &mut Redelivery,
        halt: &Halt,
    ) -> (BatchReport, Hold) {
        let Prepared {
            entries,
            acks,
            plans,
            report,
            leases,
        } = prepared;
        let held = leases.held.clone();
        let digests: Vec<Arc<str>> = plans.iter().map(|p| p.digest.clone()).collect();
        let started = SystemTime::now();
        let mut sending = self.sending(health, &mut redelivery.schedule, &held, &entries, halt);
        let statuses = commit::commit(&mut sending, &acks, &digests).await;
        let commit_times = (started, SystemTime::now());
        leases.end();
        let mut tally = Tally {
            report,
            ..Tally::default()
        };
        let mut latency_ms = 0;
        for (index, ((ack, plan), status)) in acks.iter().zip(&plans).zip(statuses).enumerate() {
            let fate = Fate::of(status, plan.dead_letter.is_some());
            tally.count(index, &ack.id, fate);
            latency_ms += self.account(&entries[plan.entry], ack, plan, fate, commit_times);
        }
        self.adopted(&mut tally);
        tally.log();
        let again = self.conflicted(&tally, &entries, redelivery);
        if !tally.refused.is_empty() {
            let schedule = &mut redelivery.schedule;
            let mut sending = self.sending(health, schedule, &held, &entries, halt);
            let refused = &tally.refused;
            let letters = commit::dead_letter_refused(&mut sending, &acks, &digests, refused);
            tally.report.dead_lettered += letters.await;
        }
        let report = tally.report;
        self.count(report, latency_ms);
        health.committed((report.delivered + report.dead_lettered) as u64);
        let since = held.at();
        (
            report,
            Hold {
                again,
                unstarted: Vec::new(),
                since,
            },
        )
    }

    /// What sending a commit of `entries` needs.
    fn sending<'a>(
        &'a self,
        health: &'a mut Health,
        schedule: &'a mut Schedule,
        held: &'a Held,
        entries: &'a [Entry],
        halt: &'a Halt,
    ) -> Sending<'a> {
        Sending {
            health,
            schedule,
            metrics: &self.metrics,
            board: &self.board,
            rules: self.rules(),
            entries,
            held,
            claim_idle: self.config.claim_idle,
            shutdown: halt.shutdown(),
        }
    }

    /// Counts a settled batch in the metrics and the status.
    fn count(&self, report: BatchReport, latency_ms: u64) {
        let m = &self.metrics;
        m.committed.increment(report.delivered as u64);
        m.dead_lettered.increment(report.dead_lettered as u64);
        m.retried.increment(report.retried as u64);
        m.unowned.increment(report.unowned as u64);
        self.board.committed(report.delivered as u64, latency_ms);
        tracing::debug!(?report, "batch done");
    }

    /// Accounts for one entry's fate (its trace, dead-letter log, reruns, state
    /// metrics); returns its end-to-end latency if it was delivered.
    fn account(
        &mut self,
        entry: &Entry,
        ack: &Ack,
        plan: &Plan,
        fate: Fate,
        commit_times: (SystemTime, SystemTime),
    ) -> u64 {
        if entry.trace.is_some()
            && let Some(ended) = fate.ended(plan.dead_letter.as_deref())
        {
            (self.traces).end(entry, &plan.digest, Some(commit_times), &ended);
        }
        match fate {
            Fate::Pending => return 0,
            Fate::StateConflict => {}
            _ => {
                self.reruns.end(&ack.id);
            }
        }
        match fate {
            Fate::DeadLettered { .. } => {
                self.dead_log
                    .record(&ack.id, plan.dead_letter.as_deref().unwrap_or_default());
                0
            }
            Fate::Delivered { .. } => {
                self.metrics
                    .state_read
                    .increment(ack.state.reads.len() as u64);
                self.metrics
                    .state_written
                    .increment(ack.state.writes.len() as u64);
                self.latency_ms(&ack.id)
            }
            _ => 0,
        }
    }

    /// Reports entries adopted (written while pending for nobody).
    fn adopted(&self, tally: &mut Tally) {
        let adopted = &tally.adopted;
        if adopted.is_empty() {
            return;
        }
        tally.report.adopted = adopted.len();
        self.metrics.adopted.increment(adopted.len() as u64);
        tracing::warn!(ids = ?adopted, "entries were removed from the pending entries list while this consumer held them (XGROUP DELCONSUMER, XACK or a lost group); their outputs were written once (adopted), there is nothing to acknowledge");
        self.board.incident(format!(
            "{} entries were removed from the pending entries list while being handled ({}); their outputs were written once",
            adopted.len(),
            adopted.join(", ")
        ));
    }

    /// Entries whose handler state changed before their commit: handled again at once,
    /// as the same delivery (no attempt is counted). Returns those to handle again.
    fn conflicted(
        &mut self,
        tally: &Tally,
        entries: &[Entry],
        redelivery: &mut Redelivery,
    ) -> Vec<Entry> {
        let conflicted = &tally.conflicted;
        if conflicted.is_empty() {
            return Vec::new();
        }
        self.metrics
            .state_conflicts
            .increment(conflicted.len() as u64);
        tracing::debug!(ids = ?conflicted, "handler state read by these entries changed before their commit; handling them again");
        let entries = entries
            .iter()
            .filter(|e| conflicted.contains(&e.id))
            .cloned();
        self.reruns.again(entries.collect(), redelivery)
    }

    /// Milliseconds since the entry `id` was added (its ID's timestamp), recorded in the
    /// end-to-end latency histogram.
    fn latency_ms(&self, id: &str) -> u64 {
        let added = StreamId::parse(id).ms;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(added);
        let ms = now.saturating_sub(added);
        self.metrics.end_to_end.record(ms as f64 / 1e3);
        ms
    }
}
