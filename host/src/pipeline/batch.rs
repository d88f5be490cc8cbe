//! One batch's way from handler results to Redis: what each entry comes to (outputs, a
//! dead letter, a retry), its commit, and the accounting (metrics, status, logs).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::settle::Held;
use super::{BatchReport, Handled, Pipeline};
use crate::broker::Ack;
use crate::message::{CommitStatus, Entry, HandlerError, StreamId};
use crate::telemetry::traces::Ended;
use crate::trace_context;

use super::outcome::Outcome;

/// A handled batch waiting for its commit.
pub(super) struct Prepared {
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
    /// The traced entries committed: index into `entries`, into `acks`, and the digest
    /// of the plugin that handled it.
    traced: Vec<(usize, usize, Arc<str>)>,
}

/// Times in a row an entry is handled again at once because its handler state changed
/// under it, before it waits for its retry backoff instead.
const MAX_RERUNS: u32 = 16;

impl Pipeline {
    /// Handles a batch just read or claimed and commits it; returns what became of its
    /// entries.
    pub async fn process(&mut self, entries: Vec<Entry>) -> BatchReport {
        self.process_read_at(entries, Instant::now()).await
    }

    /// [`Pipeline::process`] for entries known to be this consumer's since `read_at`.
    pub(super) async fn process_read_at(
        &mut self,
        mut entries: Vec<Entry>,
        read_at: Instant,
    ) -> BatchReport {
        self.metrics.read.increment(entries.len() as u64);
        self.traces.begin(&mut entries, wall_time(read_at));
        let (lease, held) = self.keep_leases(&entries, read_at);
        let results = self.invoke(&mut entries).await;
        let prepared = self.prepare(entries, results, lease, held);
        self.finish(prepared).await
    }

    /// Decides what each handled entry comes to: outputs, a dead letter, or a retry.
    pub(super) fn prepare(
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
        let mut unstarted = Vec::new();
        let mut again = Vec::new();
        let mut retries = Vec::new();
        let mut traced = Vec::new();
        for (index, (entry, handled)) in entries.iter().zip(results).enumerate() {
            let Some((digest, result, changes)) = handled else {
                // Not started. Draining: it stays pending for the next delivery. Paused:
                // it is held, and handled first on resume (as the same delivery).
                unstarted.push(entry.clone());
                continue;
            };
            if let Err(HandlerError::Conflict(reason)) = &result {
                tracing::debug!(id = %entry.id, reason = %reason, "handler state call met the batch's uncommitted writes; handling the entry again after the commit");
                report.state_conflicts += 1;
                again.push(entry.clone());
                continue;
            }
            if let Err(error) = &result {
                self.metrics.failure(error.kind());
                self.board.set_error(format!("{}: {error}", entry.id));
            }
            let outcome = rules.decide(entry, &digest, result);
            if entry.trace.is_some() {
                match &outcome {
                    Outcome::Retry(error) => self.traces.end(
                        entry,
                        &digest,
                        None,
                        &Ended::Retry(format!("{}: {error}", error.kind())),
                    ),
                    _ => traced.push((index, acks.len(), digest.clone())),
                }
            }
            match outcome {
                Outcome::Deliver(mut outputs) => {
                    if let Some(name) = &self.config.version_field {
                        for output in &mut outputs {
                            output
                                .fields
                                .push((name.clone(), digest.as_bytes().to_vec()));
                        }
                    }
                    // The next consumer goes on with this delivery's span (W3C Trace
                    // Context in the entry's fields).
                    if let Some(trace) = &entry.trace {
                        let context = trace.output_fields();
                        for output in &mut outputs {
                            trace_context::inject(&mut output.fields, &context);
                        }
                    }
                    acks.push(Ack {
                        id: entry.id.clone(),
                        outputs,
                        state: changes,
                    })
                }
                Outcome::DeadLetter(letter) => {
                    dead.push(acks.len());
                    acks.push(Ack {
                        id: entry.id.clone(),
                        outputs: vec![letter],
                        state: Default::default(),
                    });
                }
                Outcome::Retry(error) => {
                    report.retried += 1;
                    retries.push((entry.id.clone(), entry.attempt));
                    tracing::debug!(id = %entry.id, attempt = entry.attempt, kind = error.kind(), error = %error, "handler failed; entry stays pending for a retry");
                }
            }
        }
        // Each failed entry is due again when its backoff ends.
        let backoff_cfg = self.config.retry_backoff;
        let now = Instant::now();
        for (id, attempt) in retries {
            let wait = super::backoff(backoff_cfg.initial, backoff_cfg.max, &id, attempt);
            self.schedule.retry_at(&id, attempt, now + wait);
        }
        self.handle_again(again, held.at());
        if !unstarted.is_empty() && !self.shutdown.is_cancelled() {
            let since = if self.held_back.entries.is_empty() {
                held.at()
            } else {
                self.held_back.read_at.min(held.at())
            };
            self.held_back.read_at = since;
            self.held_back.entries.extend(unstarted);
        }
        Prepared {
            entries,
            acks,
            dead,
            report,
            lease,
            held,
            traced,
        }
    }

    /// Commits a prepared batch and accounts for it.
    pub(super) async fn finish(&mut self, prepared: Prepared) -> BatchReport {
        let Prepared {
            entries,
            acks,
            dead,
            mut report,
            lease,
            held,
            traced,
        } = prepared;
        let mut latency_ms = 0;
        let commit_started = SystemTime::now();
        let statuses = self.commit(&acks, &entries, &held).await;
        let commit_times = (commit_started, SystemTime::now());
        lease.abort();
        for (entry, ack, digest) in traced {
            let ended = match statuses[ack] {
                Some(CommitStatus::Committed | CommitStatus::Adopted) if dead.contains(&ack) => {
                    Ended::DeadLettered(
                        String::from_utf8_lossy(&acks[ack].outputs[0].fields[0].1).into_owned(),
                    )
                }
                Some(CommitStatus::Committed | CommitStatus::Adopted) => Ended::Committed,
                // Handled again as the same delivery, in the same span.
                Some(CommitStatus::Conflict) => continue,
                Some(CommitStatus::StateRefused) => {
                    Ended::DeadLettered("a state write was refused at the commit".into())
                }
                Some(CommitStatus::NotOwned) => Ended::NotCommitted("not-owned"),
                Some(CommitStatus::Gone) => Ended::NotCommitted("gone"),
                Some(CommitStatus::Undelivered) => Ended::NotCommitted("undelivered"),
                None => Ended::NotCommitted("pending"),
            };
            self.traces
                .end(&entries[entry], &digest, Some(commit_times), &ended);
        }
        let (mut adopted, mut gone, mut undelivered) = (Vec::new(), Vec::new(), Vec::new());
        let (mut conflicted, mut refused) = (Vec::new(), Vec::new());
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
                    self.dead_log.record(&ack.id, &reason);
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
                    tracing::debug!(id = %ack.id, "entry claimed by another consumer before the commit; its outputs were not written");
                }
                CommitStatus::Gone => {
                    report.conflicts += 1;
                    gone.push(ack.id.as_str());
                }
                CommitStatus::Undelivered => {
                    report.conflicts += 1;
                    undelivered.push(ack.id.as_str());
                }
                CommitStatus::Conflict => {
                    report.state_conflicts += 1;
                    conflicted.push(ack.id.as_str());
                }
                CommitStatus::StateRefused => refused.push(index),
            }
            if status != CommitStatus::Conflict {
                self.reruns.remove(&ack.id);
            }
            if matches!(status, CommitStatus::Committed | CommitStatus::Adopted) && !is_dead {
                self.metrics
                    .state_read
                    .increment(ack.state.reads.len() as u64);
                self.metrics
                    .state_written
                    .increment(ack.state.writes.len() as u64);
            }
        }
        if !adopted.is_empty() {
            report.adopted = adopted.len();
            self.metrics.adopted.increment(adopted.len() as u64);
            tracing::warn!(ids = ?adopted, "entries were removed from the pending entries list while this consumer held them (XGROUP DELCONSUMER, XACK or a lost group); their outputs were written once (adopted), there is nothing to acknowledge");
            self.board.incident(format!(
                "{} entries were removed from the pending entries list while being handled ({}); their outputs were written once",
                adopted.len(),
                adopted.join(", ")
            ));
        }
        if !gone.is_empty() {
            tracing::warn!(ids = ?gone, "entries were pending for no consumer at commit after a try whose reply was lost, or after this consumer's lease lapsed: taken as committed by that try or by another consumer; nothing written");
        }
        if !conflicted.is_empty() {
            // Handled again at once, as the same delivery (no attempt is counted): they
            // read state that another entry or daemon changed before their commit.
            self.metrics
                .state_conflicts
                .increment(conflicted.len() as u64);
            tracing::debug!(ids = ?conflicted, "handler state read by these entries changed before their commit; handling them again");
            let again: Vec<Entry> = entries
                .iter()
                .filter(|e| conflicted.contains(&e.id.as_str()))
                .cloned()
                .collect();
            self.handle_again(again, held.at());
        }
        if !refused.is_empty() {
            let letters: Vec<Ack> = refused
                .iter()
                .map(|&i| {
                    self.refused_letter(
                        &acks[i],
                        &entries,
                        "a state write was refused at the commit: hset on a key that is not a hash, or add on a key that does not hold a 64-bit integer (or would overflow)",
                    )
                })
                .collect();
            tracing::warn!(ids = ?letters.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), "handler state writes refused at the commit (hset on a key that is not a hash, add on one that is not an integer): dead-lettering the entries");
            let statuses = self.commit(&letters, &entries, &held).await;
            for status in statuses.into_iter().flatten() {
                if matches!(status, CommitStatus::Committed | CommitStatus::Adopted) {
                    report.dead_lettered += 1;
                }
            }
        }
        if !undelivered.is_empty() {
            tracing::warn!(ids = ?undelivered, "redis has no record of delivering these entries to the group (a failover lost the deliveries with the old primary): nothing written; they are delivered again");
        }
        let m = &self.metrics;
        m.committed.increment(report.delivered as u64);
        self.committed_total += (report.delivered + report.dead_lettered) as u64;
        m.dead_lettered.increment(report.dead_lettered as u64);
        m.retried.increment(report.retried as u64);
        m.conflicts.increment(report.conflicts as u64);
        self.board.committed(report.delivered as u64, latency_ms);
        tracing::debug!(?report, "batch done");
        report
    }

    /// Holds `entries` (their handler state changed under them) to be handled again
    /// first, as the same delivery. One that conflicted [`MAX_RERUNS`] times in a row
    /// waits for its retry backoff instead, like a failure (its next delivery counts an
    /// attempt), so that a hot key cannot spin the pipeline.
    fn handle_again(&mut self, entries: Vec<Entry>, read_at: Instant) {
        if entries.is_empty() {
            return;
        }
        if self.reruns.len() > 10_000 {
            self.reruns.clear();
        }
        let now = Instant::now();
        let backoff_cfg = self.config.retry_backoff;
        for entry in entries {
            let runs = self.reruns.entry(entry.id.clone()).or_insert(0);
            *runs += 1;
            if *runs > MAX_RERUNS {
                self.reruns.remove(&entry.id);
                tracing::warn!(id = %entry.id, reruns = MAX_RERUNS, "handler state read by this entry kept changing before its commit; it waits for its retry backoff");
                let wait = super::backoff(
                    backoff_cfg.initial,
                    backoff_cfg.max,
                    &entry.id,
                    entry.attempt,
                );
                self.schedule.retry_at(&entry.id, entry.attempt, now + wait);
                continue;
            }
            if self.held_back.entries.is_empty() {
                self.held_back.read_at = read_at;
            }
            self.held_back.entries.push(entry);
        }
    }

    /// A dead letter for an entry whose commit Redis refused, with Redis's reason.
    pub(super) fn refused_letter(&self, ack: &Ack, entries: &[Entry], reason: &str) -> Ack {
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
            state: Default::default(),
        }
    }

    /// Milliseconds since the entry `id` was added (its ID's timestamp), recorded in the
    /// end-to-end latency histogram.
    fn latency_ms(&self, id: &str) -> u64 {
        let added = StreamId::parse(id).ms;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(added);
        let ms = now.saturating_sub(added);
        self.metrics.end_to_end.record(ms as f64 / 1e3);
        ms
    }
}

/// The wall-clock time of `instant` (spans are in wall time).
pub(super) fn wall_time(instant: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(instant.elapsed())
        .unwrap_or_else(SystemTime::now)
}
