//! Committing a handled batch whatever state Redis is in.
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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Pipeline;
use crate::broker::{Ack, Blame, MAX_FIELDS_PER_COMMIT};
use crate::lock::lock;
use crate::message::{CommitStatus, Entry};

/// Bytes (field names and values) one commit carries at most.
pub const MAX_COMMIT_BYTES: usize = 8 << 20;
/// Tries of one commit in a row that lose the connection under the call while Redis
/// answers a `PING` on a new one right after, before its batch is split (or its one
/// entry taken as the cause).
const DROPS_BEFORE_SPLIT: u32 = 3;

/// Since when a batch is known to be this consumer's: its read, or the last lease renewal
/// that found every entry still owned. While that is under `claim_idle` old, no other
/// consumer can have taken an entry of it by a reclaim.
#[derive(Clone)]
pub(super) struct Held(Arc<Mutex<Instant>>);

impl Held {
    pub(super) fn since(read_at: Instant) -> Self {
        Self(Arc::new(Mutex::new(read_at)))
    }

    /// When the batch was last known to be this consumer's.
    pub(super) fn at(&self) -> Instant {
        *lock(&self.0)
    }

    pub(super) fn renewed(&self) {
        *lock(&self.0) = Instant::now();
    }

    fn fresh(&self, claim_idle: Duration) -> bool {
        lock(&self.0).elapsed() < claim_idle
    }
}

/// How a commit ended.
enum Settled {
    /// Redis answered with a status per entry.
    Done(Vec<CommitStatus>),
    /// An entry of the batch is at fault, for this reason.
    EntryAtFault(String),
    /// The daemon is draining and Redis does not take the commit: the entries stay
    /// pending.
    Stopped,
}

impl Pipeline {
    /// Commits `acks` (from `entries`) until Redis confirms; `None` for an entry that
    /// stays pending (the daemon drains while Redis is unusable; a dead letter Redis
    /// refuses too).
    pub(super) async fn commit(
        &mut self,
        acks: &[Ack],
        entries: &[Entry],
        held: &Held,
    ) -> Vec<Option<CommitStatus>> {
        let mut statuses = Vec::with_capacity(acks.len());
        for part in parts(acks, MAX_COMMIT_BYTES, MAX_FIELDS_PER_COMMIT) {
            statuses.extend(self.commit_part(part, entries, held).await);
        }
        statuses
    }

    async fn commit_part(
        &mut self,
        acks: &[Ack],
        entries: &[Entry],
        held: &Held,
    ) -> Vec<Option<CommitStatus>> {
        match self.commit_until_answered(acks, held).await {
            Settled::Done(statuses) => statuses.into_iter().map(Some).collect(),
            Settled::Stopped => vec![None; acks.len()],
            Settled::EntryAtFault(reason) if acks.len() == 1 => {
                tracing::warn!(id = %acks[0].id, reason = %reason, "redis refused this entry's commit; dead-lettering the entry");
                let letter = self.refused_letter(&acks[0], entries, &reason);
                match self
                    .commit_until_answered(std::slice::from_ref(&letter), held)
                    .await
                {
                    Settled::Done(statuses) => statuses.into_iter().map(Some).collect(),
                    Settled::Stopped => vec![None],
                    Settled::EntryAtFault(again) => {
                        tracing::error!(id = %acks[0].id, stream = %self.dead_letter, reason = %again, "redis refused the dead letter too; the entry stays pending (it is delivered again after its backoff): raise the server's limit or delete the entry");
                        self.board.set_error(format!(
                            "{}: cannot be committed nor dead-lettered: {again}",
                            acks[0].id
                        ));
                        vec![None]
                    }
                }
            }
            Settled::EntryAtFault(reason) => {
                tracing::debug!(entries = acks.len(), reason = %reason, "redis refused a commit; splitting it to find the entry at fault");
                let (first, second) = acks.split_at(acks.len() / 2);
                let mut statuses = Box::pin(self.commit_part(first, entries, held)).await;
                statuses.extend(Box::pin(self.commit_part(second, entries, held)).await);
                statuses
            }
        }
    }

    async fn commit_until_answered(&mut self, acks: &[Ack], held: &Held) -> Settled {
        // Whether a try may have gone through unseen: then an entry pending for nobody
        // may be one that try committed, and must not be adopted.
        let mut maybe_done = false;
        let mut drops = 0;
        loop {
            let adopt = !maybe_done && held.fresh(self.config.claim_idle);
            let fault = match self.consumer.commit(acks, adopt).await {
                Ok(statuses) => {
                    self.redis_ok();
                    return Settled::Done(statuses);
                }
                Err(fault) if fault.blame() == Blame::Entry => {
                    self.metrics.redis_error(fault.code());
                    return Settled::EntryAtFault(fault.to_string());
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
                if self.consumer.ping().await {
                    drops += 1;
                } else {
                    drops = 0;
                }
                if drops >= DROPS_BEFORE_SPLIT {
                    self.metrics.redis_error(fault.code());
                    return Settled::EntryAtFault(format!(
                        "redis closed the connection on this commit {drops} times in a row while answering a PING right after each: a value is larger than the server accepts (proto-max-bulk-len, client-query-buffer-limit); last error: {fault}"
                    ));
                }
            } else {
                drops = 0;
            }
            if self.shutdown.is_cancelled() {
                tracing::warn!(entries = acks.len(), error = %fault, "draining while redis does not take the commit: whatever it did not commit stays pending and is delivered again");
                return Settled::Stopped;
            }
            if let Some(fault) = self.remedy(fault).await {
                self.show_fault(&fault);
                let shutdown = self.shutdown.clone();
                self.redis_backoff.wait(&shutdown).await;
                // Held here, the pipeline still shows its pending count and lag.
                self.refresh_backlog().await;
            }
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
                target: "OUT".into(),
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
                target: "OUT".into(),
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
