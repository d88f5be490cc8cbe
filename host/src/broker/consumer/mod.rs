//! One consumer of one consumer group: its two connections and the guarded commit. The
//! group's life (creation, re-creation after a loss, permissions) is in [`group`], reads
//! in [`read`], the pending entries list (retry and reclaim scans, claims, leases) in
//! [`pending`].

mod group;
mod pending;
mod read;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::commit::{Fence, KeyMap};
use super::cross_slot::CrossSlot;
use super::lease::EntryLeases;
use super::link::{CALL_DEADLINE, Link};
use super::{Ack, Fault, Replication, commit};
use crate::message::{CommitStatus, StreamId};

pub use super::consumer_id::ConsumerId;

pub use group::Recreated;
pub use read::Prefetcher;

impl Consumer {
    /// A consumer `id` logged in as ACL `user`, on its own two connections.
    pub(super) fn new(id: ConsumerId, user: String, reads: Link, commands: Link) -> Self {
        Self {
            id: Arc::new(id),
            user,
            reads: Arc::new(reads),
            commands: Arc::new(commands),
            size: ReadSize::new(),
            awaiting_replicas: false,
            keys: Arc::new(KeyMap::default()),
            fence: None,
            cross_slot: None,
        }
    }

    /// Writes outputs in other hash slots than the input apart from the guarded commit,
    /// once per entry, with markers that expire after `marker_ttl` (`cross_slot = true`
    /// in a Redis Cluster; see `broker::cross_slot`).
    pub fn with_cross_slot(mut self, marker_ttl: std::time::Duration) -> Self {
        self.cross_slot = Some(CrossSlot::new(&self.id.stream, marker_ttl));
        self
    }

    /// Stores the handler's state keys where `keys` says (a partition's tag).
    pub fn with_state_keys(mut self, keys: KeyMap) -> Self {
        self.keys = Arc::new(keys);
        self
    }

    /// Commits (and renews entry leases) only while `fence` holds: the consumer name's
    /// lease, or a partition's; `None`: always.
    pub fn set_fence(&mut self, fence: Option<Fence>) {
        self.fence = fence;
    }

    /// Who this consumer is.
    pub fn id(&self) -> &ConsumerId {
        &self.id
    }
}

/// One consumer of one group: reads entries and commits them.
pub struct Consumer {
    id: Arc<ConsumerId>,
    /// The ACL user the connections log in as (for permission errors).
    user: String,
    reads: Arc<Link>,
    commands: Arc<Link>,
    size: ReadSize,
    /// Set after a commit until `wait_replicas` replicas have it.
    awaiting_replicas: bool,
    /// Where handler state keys live.
    keys: Arc<KeyMap>,
    /// The partition lease commits are made under, if any.
    fence: Option<Fence>,
    /// How outputs in other hash slots are written, if they may be.
    cross_slot: Option<CrossSlot>,
}

/// How many entries one read or claim asks for at most. A reply that misses its deadline
/// may simply be too large to arrive in time (wide entries: a batch of them is many
/// megabytes), so the next read asks for half as many, down to one; each reply that
/// arrives doubles it back. Shared with the consumer's [`Prefetcher`]s.
#[derive(Clone, Debug)]
pub(super) struct ReadSize(Arc<AtomicUsize>);

impl ReadSize {
    fn new() -> Self {
        Self(Arc::new(AtomicUsize::new(usize::MAX)))
    }

    /// How many of `wanted` to ask for now.
    pub(super) fn count(&self, wanted: usize) -> usize {
        wanted.min(self.0.load(Ordering::Relaxed)).max(1)
    }

    /// Learns from the outcome of a read or claim that asked for `asked`.
    pub(super) fn learn<T>(&self, asked: usize, outcome: &Result<T, Fault>) {
        match outcome {
            Ok(_) => {
                let cap = self.0.load(Ordering::Relaxed);
                self.0.store(cap.saturating_mul(2), Ordering::Relaxed);
            }
            Err(fault) if fault.code() == "TIMEOUT" => {
                let cap = (asked / 2).max(1);
                if cap < asked {
                    tracing::warn!(
                        asked,
                        next = cap,
                        "a read's reply missed its deadline: the next reads ask for fewer entries (wide entries take long to arrive)"
                    );
                }
                self.0.store(cap, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }
}

impl Consumer {
    /// The consumer's name inside its group.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// Whether Redis answers a `PING` on the command connection (opened if need be).
    pub async fn ping(&mut self) -> bool {
        self.commands
            .query::<String>("PING", None, &redis::cmd("PING"))
            .await
            .is_ok()
    }

    /// Drops both connections; the next calls open new ones (resolving the host again).
    pub fn reconnect(&mut self) {
        self.reads.reset();
        self.commands.reset();
    }

    /// A handle that reads new entries beside this consumer's commits (on the read
    /// connection, if open), so the next batch can be fetched while this one is handled.
    pub fn prefetcher(&mut self) -> Prefetcher {
        Prefetcher {
            id: self.id.clone(),
            reads: self.reads.clone(),
            size: self.size.clone(),
        }
    }

    /// A handle that renews this consumer's leases on entries, usable beside reads and
    /// commits (on the command connection, if open).
    pub fn entry_leases(&mut self) -> EntryLeases {
        EntryLeases::new(self.id.clone(), self.commands.clone(), self.fence.clone())
    }

    /// Commits a batch atomically and guarded: for each entry still pending for this
    /// consumer, appends its outputs and acknowledges it; any other entry writes nothing
    /// — unless `adopt` is set and the entry is pending for no consumer at all (an
    /// operator deleted this consumer or the group), in which case its outputs are
    /// written ([`CommitStatus::Adopted`]). See `commit.lua`.
    ///
    /// An error means the outcome is unknown. Committing the same batch again is safe
    /// (without `adopt`).
    pub async fn commit(&mut self, acks: &[Ack], adopt: bool) -> Result<Vec<CommitStatus>, Fault> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let local;
        let all = acks;
        let acks = match self.cross_slot.take() {
            Some(mut cross) if cross.any_apart(acks) => {
                let written = self.write_apart(&mut cross, acks, adopt).await;
                self.cross_slot = Some(cross);
                local = written?;
                &local[..]
            }
            cross => {
                self.cross_slot = cross;
                acks
            }
        };
        let invocation =
            commit::invocation(&self.id, &self.keys, self.fence.as_ref(), acks, adopt)?;
        let statuses: Vec<i64> = self
            .commands
            .call("commit", Some(commit::deadline(acks)), |mut c| async move {
                invocation.invoke_async(&mut c).await
            })
            .await?;
        if self.commands.endpoint().replication().is_some() {
            // The replicas are asked before the next batch (`await_replicas`), not here:
            // a WAIT that fails must not make a commit that went through look failed
            // (it would be sent again), and a drain must not wait on it.
            self.awaiting_replicas = true;
        }
        if let Some(cross) = &mut self.cross_slot {
            cross.settled(all);
        }
        commit::statuses(statuses, acks.len())
    }

    /// `cross_slot`: writes the outputs of `acks` that live in other slots than the
    /// input, for the entries still this consumer's (or, with `adopt`, pending for
    /// nobody), and returns the acks with the rest for the guarded commit. See
    /// `broker::cross_slot`.
    async fn write_apart(
        &mut self,
        cross: &mut CrossSlot,
        acks: &[Ack],
        adopt: bool,
    ) -> Result<Vec<Ack>, Fault> {
        let ids = || acks.iter().map(|a| a.id.as_str());
        let order = |id: &&str| StreamId::parse(id);
        let (Some(low), Some(high)) = (ids().min_by_key(order), ids().max_by_key(order)) else {
            return Ok(Vec::new());
        };
        let page = 2 * acks.len() + 16;
        let rows = self
            .xpending(vec![low.to_owned(), high.to_owned(), page.to_string()])
            .await?;
        let owner: std::collections::HashMap<&str, &str> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.consumer.as_str()))
            .collect();
        // A full page may have been cut short: an entry not on it counts as this
        // consumer's (its marker still guards it).
        let complete = rows.len() < page;
        let writable = ids()
            .filter(|id| match owner.get(id) {
                Some(consumer) => *consumer == self.id.name,
                None => adopt || !complete,
            })
            .collect();
        let (local, writes) = cross.split(&self.id, acks, &writable);
        for write in writes {
            let invocation = &write.invocation;
            let _written_now: i64 = self
                .commands
                .call(
                    "cross-slot outputs",
                    Some(commit::deadline(acks)),
                    |mut c| async move { invocation.invoke_async(&mut c).await },
                )
                .await?;
            cross.wrote(write);
        }
        Ok(local)
    }

    /// Committed handler state, read on this consumer's command connection.
    pub fn state_store(&self) -> Arc<dyn crate::state::Store> {
        Arc::new(super::state::RedisStore {
            link: Arc::clone(&self.commands),
            keys: Arc::clone(&self.keys),
        })
    }

    /// After a commit, with `[redis] wait_replicas` set: `WAIT` until that many replicas
    /// have it (up to `wait_timeout` per call). `Ok` once they do (or when nothing
    /// waits); the shortfall, or the `WAIT`'s own error, as a fault while they do not.
    /// `WAIT` counts the replicas that have this connection's writes
    /// (<https://redis.io/docs/latest/commands/wait/>): the link keeps the connection
    /// the commit used unless it was lost, and then a new connection's `WAIT` counts the
    /// replicas that are connected and in sync, which the commit then reaches.
    pub async fn await_replicas(&mut self) -> Result<(), Fault> {
        let Some(wait) = self.commands.endpoint().replication() else {
            return Ok(());
        };
        if !self.awaiting_replicas {
            return Ok(());
        }
        let acked: u32 = self
            .commands
            .query(
                "WAIT",
                Some(wait.timeout.saturating_add(CALL_DEADLINE)),
                &wait_command(wait),
            )
            .await?;
        if acked >= wait.replicas {
            self.awaiting_replicas = false;
            return Ok(());
        }
        Err(Fault::unreplicated(acked, wait.replicas, wait.timeout))
    }
}

/// `WAIT numreplicas timeout-ms`.
fn wait_command(wait: Replication) -> redis::Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(wait.replicas)
        .arg(u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX));
    cmd
}
