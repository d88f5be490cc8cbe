//! Sending a commit (part of the committer stage) whatever state Redis is in.
//!
//! - A commit whose outcome is unknown (no reply) is sent again: it is guarded, so what
//!   went through the first time is not written twice.
//! - An environment fault (permissions, a lost group, a read-only node, out of memory,
//!   loading, a stalled or broken connection) never dead-letters: the pipeline shows the
//!   error, applies the remedy, backs off and commits again — until Redis takes it, or
//!   the daemon drains (the entries then stay pending and are delivered again).
//! - A fault of an entry (`WRONGTYPE` on an output key; a value the server refuses for
//!   its size) splits the batch until the entry at fault is alone; only that entry is
//!   dead-lettered, with Redis's reason. A commit that keeps losing its connection while
//!   Redis answers other calls counts as an entry's fault too: a server that closes the
//!   connection on a value over `proto-max-bulk-len` gives no other sign.
//! - No commit carries more than [`MAX_COMMIT_BYTES`]: a larger batch is committed in
//!   parts, each guarded and atomic.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::entry_lease::Held;
use super::health::Health;
use super::outcome::Rules;
use super::schedule::Schedule;
use crate::broker::{Ack, Blame, MAX_FIELDS_PER_COMMIT};
use crate::message::{CommitStatus, Entry};
use crate::status::Board;
use crate::telemetry::PipelineMetrics;

/// Bytes (field names and values) one commit carries at most.
pub const MAX_COMMIT_BYTES: usize = 8 << 20;
/// What the commit refuses a state write for, in the dead letter.
const STATE_REFUSED: &str = "a state write was refused at the commit: hset on a key that is not a hash, or add on a key that does not hold a 64-bit integer (or would overflow)";
/// Tries of one commit in a row that lose the connection under the call while Redis
/// answers a `PING` on a new one right after, before its batch is split (or its one
/// entry taken as the cause).
const DROPS_BEFORE_SPLIT: u32 = 3;

/// What sending a commit needs besides its acks.
pub(super) struct Sending<'a> {
    pub health: &'a mut Health,
    pub schedule: &'a mut Schedule,
    pub metrics: &'a PipelineMetrics,
    pub board: &'a Board,
    /// Dead letters for entries Redis refuses.
    pub rules: Rules<'a>,
    /// The batch the acks are of.
    pub entries: &'a [Entry],
    /// Since when the batch is known to be this consumer's.
    pub held: &'a Held,
    pub claim_idle: Duration,
    pub shutdown: &'a CancellationToken,
}

/// How a commit ended.
enum Answer {
    /// Redis answered with a status per entry.
    Done(Vec<CommitStatus>),
    /// An entry of the batch is at fault, for this reason.
    EntryAtFault(String),
    /// The daemon is draining and Redis does not take the commit: the entries stay
    /// pending.
    Stopped,
}

/// Commits `acks` (of entries handled by plugin versions `digests`) until Redis
/// confirms; `None` for an entry that stays pending (the daemon drains while Redis is
/// unusable; a dead letter Redis refuses too).
pub(super) async fn commit(
    s: &mut Sending<'_>,
    acks: &[Ack],
    digests: &[Arc<str>],
) -> Vec<Option<CommitStatus>> {
    let mut statuses = Vec::with_capacity(acks.len());
    let mut offset = 0;
    for part in parts(acks, MAX_COMMIT_BYTES, MAX_FIELDS_PER_COMMIT) {
        let part_digests = &digests[offset..offset + part.len()];
        statuses.extend(commit_part(s, part, part_digests).await);
        offset += part.len();
    }
    statuses
}

/// Commits one part; an entry at fault is found by splitting the part, and
/// dead-lettered with Redis's reason.
async fn commit_part(
    s: &mut Sending<'_>,
    acks: &[Ack],
    digests: &[Arc<str>],
) -> Vec<Option<CommitStatus>> {
    match until_answered(s, acks).await {
        Answer::Done(statuses) => statuses.into_iter().map(Some).collect(),
        Answer::Stopped => vec![None; acks.len()],
        Answer::EntryAtFault(reason) if acks.len() == 1 => {
            tracing::warn!(id = %acks[0].id, reason = %reason, "redis refused this entry's commit; dead-lettering the entry");
            let letter = refused_letter(s, &acks[0], &digests[0], &reason);
            match until_answered(s, std::slice::from_ref(&letter)).await {
                Answer::Done(statuses) => statuses.into_iter().map(Some).collect(),
                Answer::Stopped => vec![None],
                Answer::EntryAtFault(again) => {
                    tracing::error!(id = %acks[0].id, stream = %s.rules.dead_letter, reason = %again, "redis refused the dead letter too; the entry stays pending (it is delivered again after its backoff): raise the server's limit or delete the entry");
                    let id = &acks[0].id;
                    (s.board).set_error(format!(
                        "{id}: cannot be committed nor dead-lettered: {again}"
                    ));
                    vec![None]
                }
            }
        }
        Answer::EntryAtFault(reason) => {
            tracing::debug!(entries = acks.len(), reason = %reason, "redis refused a commit; splitting it to find the entry at fault");
            let half = acks.len() / 2;
            let mut statuses = Box::pin(commit_part(s, &acks[..half], &digests[..half])).await;
            statuses.extend(Box::pin(commit_part(s, &acks[half..], &digests[half..])).await);
            statuses
        }
    }
}

/// Dead-letters the entries (at indexes `refused` of `acks`) whose state writes the
/// commit refused; returns how many dead letters were written.
pub(super) async fn dead_letter_refused(
    s: &mut Sending<'_>,
    acks: &[Ack],
    digests: &[Arc<str>],
    refused: &[usize],
) -> usize {
    let letters: Vec<Ack> = (refused.iter())
        .map(|&i| refused_letter(s, &acks[i], &digests[i], STATE_REFUSED))
        .collect();
    let digests: Vec<Arc<str>> = refused.iter().map(|&i| digests[i].clone()).collect();
    tracing::warn!(ids = ?letters.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), "handler state writes refused at the commit (hset on a key that is not a hash, add on one that is not an integer): dead-lettering the entries");
    let statuses = commit(s, &letters, &digests).await;
    let written = |status: &Option<CommitStatus>| {
        matches!(
            status,
            Some(CommitStatus::Committed | CommitStatus::Adopted)
        )
    };
    statuses.iter().filter(|status| written(status)).count()
}

/// A dead letter for an entry whose commit Redis refused, with Redis's reason.
fn refused_letter(s: &Sending<'_>, ack: &Ack, digest: &str, reason: &str) -> Ack {
    let entry = s.entries.iter().find(|e| e.id == ack.id);
    let entry = entry.cloned().unwrap_or_else(|| Entry {
        id: ack.id.clone(),
        ..Entry::default()
    });
    let reason = format!("commit refused by redis: {reason}");
    Ack {
        id: ack.id.clone(),
        outputs: vec![s.rules.dead_letter(&entry, digest, &reason)],
        state: Default::default(),
    }
}

/// Sends the commit of `acks` until Redis answers it (or the daemon drains).
async fn until_answered(s: &mut Sending<'_>, acks: &[Ack]) -> Answer {
    // Whether a try may have gone through unseen: then an entry pending for nobody may
    // be one that try committed, and must not be adopted.
    let mut maybe_done = false;
    let mut drops = 0;
    loop {
        let adopt = !maybe_done && s.held.fresh(s.claim_idle);
        let fault = match s.health.consumer.commit(acks, adopt).await {
            Ok(statuses) => {
                s.health.redis_ok();
                return Answer::Done(statuses);
            }
            Err(fault) if fault.blame() == Blame::Entry => {
                s.metrics.redis_error(fault.code());
                return Answer::EntryAtFault(fault.to_string());
            }
            Err(fault) => fault,
        };
        if fault.code() == "IO" || fault.code() == "TIMEOUT" {
            // Sent, and no answer: it may have gone through.
            maybe_done = true;
        }
        if fault.is_dropped_under_call() {
            // Counted only while Redis answers a `PING` right after: a server that is
            // down, paused or unreachable is not the entry's fault.
            drops = if s.health.consumer.ping().await {
                drops + 1
            } else {
                0
            };
            if drops >= DROPS_BEFORE_SPLIT {
                s.metrics.redis_error(fault.code());
                return Answer::EntryAtFault(format!(
                    "redis closed the connection on this commit {drops} times in a row while answering a PING right after each: a value is larger than the server accepts (proto-max-bulk-len, client-query-buffer-limit); last error: {fault}"
                ));
            }
        } else {
            drops = 0;
        }
        if s.shutdown.is_cancelled() {
            tracing::warn!(entries = acks.len(), error = %fault, "draining while redis does not take the commit: whatever it did not commit stays pending and is delivered again");
            return Answer::Stopped;
        }
        if let Some(fault) = s.health.remedy(fault, s.schedule).await {
            s.health.show_fault(&fault);
            s.health.back_off(s.shutdown).await;
            // Held here, the pipeline still shows its pending count and lag.
            s.health.refresh_backlog(s.schedule).await;
        }
    }
}

/// Splits `acks` into runs of at most `max_bytes` and `max_fields` (an ack larger than
/// that alone).
fn parts(acks: &[Ack], max_bytes: usize, max_fields: usize) -> Vec<&[Ack]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes, mut fields) = (0, 0, 0);
    for (i, ack) in acks.iter().enumerate() {
        let (size, width) = (ack.size(), ack.fields());
        if i > start && (bytes + size > max_bytes || fields + width > max_fields) {
            parts.push(&acks[start..i]);
            (start, bytes, fields) = (i, 0, 0);
        }
        bytes += size;
        fields += width;
    }
    if start < acks.len() {
        parts.push(&acks[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Output;

    fn ack(bytes: usize) -> Ack {
        Ack {
            id: "1-0".into(),
            outputs: vec![Output {
                stream: "OUT".into(),
                fields: vec![("f".into(), vec![0; bytes])],
                raw_names: None,
            }],
            state: Default::default(),
        }
    }

    #[test]
    fn commits_are_bounded_in_bytes() {
        let acks: Vec<Ack> = [400, 400, 400, 2_000, 10, 10].map(ack).to_vec();
        let sizes: Vec<usize> = parts(&acks, 1_000, usize::MAX)
            .iter()
            .map(|p| p.len())
            .collect();
        // 400+400 fit; the third starts a part; 2,000 goes alone; the small ones share.
        assert_eq!(sizes, [2, 1, 1, 2]);
        assert_eq!(parts(&acks, usize::MAX, usize::MAX).len(), 1);
        assert!(parts(&[], 10, 10).is_empty());
    }

    /// ... and in fields: a script call's time grows with the fields it writes.
    #[test]
    fn commits_are_bounded_in_fields() {
        let wide = |n: usize| Ack {
            id: "1-0".into(),
            outputs: vec![Output {
                stream: "OUT".into(),
                fields: (0..n).map(|i| (i.to_string(), Vec::new())).collect(),
                raw_names: None,
            }],
            state: Default::default(),
        };
        let acks = vec![wide(60), wide(60), wide(200), wide(1), wide(1)];
        let sizes: Vec<usize> = parts(&acks, usize::MAX, 100)
            .iter()
            .map(|p| p.len())
            .collect();
        assert_eq!(sizes, [1, 1, 1, 2]);
    }
}
