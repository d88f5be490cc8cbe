//! The broker: the only user of `redis`. Consumer groups, reads, and the guarded commit.
//!
//! Two connections per consumer: a blocking `XREADGROUP` holds its connection until data
//! arrives, so reads get their own connection with no response timeout, while commits
//! and bookkeeping share one multiplexed connection per [`Broker`]. Both reconnect on
//! their own (redis-rs `ConnectionManager`, jittered exponential backoff).

mod commit;
mod dead;
mod reply;

use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Value};

use crate::message::{CommitStatus, Entry, Output};

pub use commit::{Ack, CommitError, MAX_FIELDS_PER_OUTPUT};
pub use reply::PendingEntry;

/// A handle on one Redis server, shared by every pipeline of a daemon.
#[derive(Clone)]
pub struct Broker {
    client: Client,
    commands: ConnectionManager,
}

fn manager_config(response_timeout: Option<Duration>) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(response_timeout)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(5))
        .set_number_of_retries(6)
}

impl Broker {
    /// Connects to the server at `url`.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = Client::open(url).with_context(|| format!("invalid Redis URL {url:?}"))?;
        // Commits of large batches move megabytes; a generous timeout still catches a
        // dead server. A commit whose reply is lost is safe to retry: it is guarded.
        let commands = ConnectionManager::new_with_config(
            client.clone(),
            manager_config(Some(Duration::from_secs(10))),
        )
        .await
        .with_context(|| format!("cannot connect to Redis at {url}"))?;
        Ok(Self { client, commands })
    }

    /// A consumer named `consumer` in `group` on `stream`, with its own read and
    /// command connections, driven by the runtime this is called on (a pipeline's own
    /// thread: its data path never hands work to another thread).
    pub async fn consumer(&self, stream: &str, group: &str, consumer: &str) -> Result<Consumer> {
        let reads = ConnectionManager::new_with_config(self.client.clone(), manager_config(None))
            .await
            .context("cannot open the read connection to Redis")?;
        let commands = ConnectionManager::new_with_config(
            self.client.clone(),
            manager_config(Some(Duration::from_secs(10))),
        )
        .await
        .context("cannot open the command connection to Redis")?;
        Ok(Consumer {
            stream: stream.to_owned(),
            group: group.to_owned(),
            name: consumer.to_owned(),
            reads,
            commands,
        })
    }

    /// A connection for commands that are not part of the data path (tools, tests).
    pub fn connection(&self) -> ConnectionManager {
        self.commands.clone()
    }
}

/// One consumer of one group: reads entries and commits them.
pub struct Consumer {
    stream: String,
    group: String,
    name: String,
    reads: ConnectionManager,
    commands: ConnectionManager,
}

impl Consumer {
    /// The consumer's name inside its group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the group at the start of the stream (and the stream) unless it exists.
    pub async fn ensure_group(&mut self) -> Result<()> {
        let created: redis::RedisResult<()> = self
            .commands
            .xgroup_create_mkstream(&self.stream, &self.group, "0")
            .await;
        match created {
            Ok(()) => {
                tracing::info!(stream = %self.stream, group = %self.group, "created consumer group");
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot create consumer group {:?} on stream {:?}",
                    self.group, self.stream
                )
            }),
        }
    }

    /// Reads up to `count` of this consumer's own pending entries with IDs after `after`
    /// (`"0"` for all). Entries deleted from the stream while pending are acknowledged
    /// and dropped: there is nothing left to process.
    pub async fn read_pending(&mut self, after: &str, count: usize) -> Result<Vec<Entry>> {
        let reply = self.xreadgroup(after, count, None).await?;
        let (entries, deleted) = reply::stream_entries(reply)?;
        if !deleted.is_empty() {
            tracing::warn!(stream = %self.stream, ids = ?deleted, "pending entries were deleted from the stream; acknowledging them");
            let _: i64 = self
                .commands
                .xack(&self.stream, &self.group, &deleted)
                .await?;
        }
        self.with_delivery_counts(entries).await
    }

    /// Reads up to `count` entries never delivered to this group, waiting up to `block`.
    pub async fn read_new(&mut self, count: usize, block: Duration) -> Result<Vec<Entry>> {
        let reply = self.xreadgroup(">", count, Some(block)).await?;
        Ok(reply::stream_entries(reply)?.0)
    }

    /// This consumer's pending entries idle for at least `min_idle`, oldest first, as
    /// `(id, idle, deliveries)`.
    pub async fn idle_pending(
        &mut self,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<PendingEntry>> {
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("IDLE")
            .arg(min_idle.as_millis() as u64)
            .arg("-")
            .arg("+")
            .arg(count)
            .arg(&self.name)
            .query_async(&mut self.commands)
            .await
            .with_context(|| format!("XPENDING on stream {:?} failed", self.stream))?;
        reply::pending_entries(reply)
    }

    /// Takes `due` entries (own or another consumer's) for a new delivery: their
    /// delivery count goes up by one and their idle time restarts. Entries deleted from
    /// the stream meanwhile are dropped from the pending list by Redis and not returned.
    ///
    /// Only entries still idle for `min_idle` are taken, so of two consumers claiming
    /// the same entry at once only the first gets it.
    pub async fn claim(&mut self, due: &[PendingEntry], min_idle: Duration) -> Result<Vec<Entry>> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.stream)
            .arg(&self.group)
            .arg(&self.name)
            .arg(min_idle.as_millis() as u64);
        for p in due {
            cmd.arg(&p.id);
        }
        let reply: Value = cmd
            .query_async(&mut self.commands)
            .await
            .with_context(|| format!("XCLAIM on stream {:?} failed", self.stream))?;
        let (mut entries, _) = reply::entry_list(reply)?;
        let deliveries: std::collections::HashMap<&str, u32> =
            due.iter().map(|p| (p.id.as_str(), p.deliveries)).collect();
        for entry in &mut entries {
            entry.attempt = deliveries
                .get(entry.id.as_str())
                .map_or(1, |d| d.saturating_add(1));
        }
        Ok(entries)
    }

    /// Pending entries of *other* consumers idle for at least `min_idle`, scanning the
    /// group's pending list from `after` (exclusive; `"-"` for the start). Returns them
    /// and where the next scan should start (`"-"` once the end was reached).
    pub async fn others_idle(
        &mut self,
        min_idle: Duration,
        after: &str,
        count: usize,
    ) -> Result<(Vec<PendingEntry>, String)> {
        let start = if after == "-" {
            "-".to_owned()
        } else {
            format!("({after}")
        };
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg("IDLE")
            .arg(min_idle.as_millis() as u64)
            .arg(&start)
            .arg("+")
            .arg(count)
            .query_async(&mut self.commands)
            .await
            .with_context(|| format!("XPENDING on stream {:?} failed", self.stream))?;
        let rows = reply::pending_entries(reply)?;
        let next = match rows.last() {
            Some(last) if rows.len() == count => last.id.clone(),
            _ => "-".to_owned(),
        };
        Ok((
            rows.into_iter()
                .filter(|p| p.consumer != self.name)
                .collect(),
            next,
        ))
    }

    /// The group's pending count and lag (entries not yet delivered to the group; 0 when
    /// Redis cannot tell), from `XINFO GROUPS`.
    pub async fn backlog(&mut self) -> Result<(u64, u64)> {
        let reply: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(&mut self.commands)
            .await
            .with_context(|| format!("XINFO GROUPS on stream {:?} failed", self.stream))?;
        Ok(reply::group_backlog(reply, &self.group))
    }

    /// A handle that reads new entries beside this consumer's commits (on the read
    /// connection), so the next batch can be fetched while this one is handled.
    pub fn prefetcher(&self) -> Prefetcher {
        Prefetcher {
            stream: self.stream.clone(),
            group: self.group.clone(),
            name: self.name.clone(),
            reads: self.reads.clone(),
        }
    }

    /// A handle that renews this consumer's leases on entries, usable beside reads and
    /// commits.
    pub fn lease(&self) -> Lease {
        Lease {
            stream: self.stream.clone(),
            group: self.group.clone(),
            name: self.name.clone(),
            commands: self.commands.clone(),
        }
    }

    /// Sets each entry's attempt from the pending list. Only for a history read at
    /// start-up, when every pending entry of this consumer in the range was just read.
    async fn with_delivery_counts(&mut self, mut entries: Vec<Entry>) -> Result<Vec<Entry>> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(entries);
        };
        let (first, last) = (first.id.clone(), last.id.clone());
        let pending: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(first)
            .arg(last)
            .arg(entries.len())
            .arg(&self.name)
            .query_async(&mut self.commands)
            .await
            .context("XPENDING failed")?;
        let counts: std::collections::HashMap<String, u32> = reply::pending_entries(pending)?
            .into_iter()
            .map(|p| (p.id, p.deliveries))
            .collect();
        for entry in &mut entries {
            entry.attempt = counts.get(&entry.id).copied().unwrap_or(1);
        }
        Ok(entries)
    }

    async fn xreadgroup(
        &mut self,
        id: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Value> {
        xreadgroup(
            &mut self.reads,
            [&self.stream, &self.group, &self.name],
            id,
            count,
            block,
        )
        .await
    }

    /// Commits a batch atomically and guarded: for each entry still pending for this
    /// consumer, appends its outputs and acknowledges it; any other entry writes nothing.
    ///
    /// An error means the outcome is unknown. Committing the same batch again is safe.
    pub async fn commit(&mut self, acks: &[Ack]) -> Result<Vec<CommitStatus>, CommitError> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        commit::run(
            &mut self.commands,
            &self.stream,
            &self.group,
            &self.name,
            acks,
        )
        .await
    }
}

/// Renews a consumer's claim on entries it is still working on.
pub struct Lease {
    stream: String,
    group: String,
    name: String,
    commands: ConnectionManager,
}

static TOUCH: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("touch.lua")));

impl Lease {
    /// Resets the idle time of those of `ids` this consumer still owns; returns how many.
    pub async fn renew(&mut self, ids: &[String]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut invocation = TOUCH.key(&self.stream);
        invocation.arg(&self.group).arg(&self.name).arg(ids);
        let renewed: usize = invocation
            .invoke_async(&mut self.commands)
            .await
            .with_context(|| format!("lease renewal on stream {:?} failed", self.stream))?;
        Ok(renewed)
    }
}

/// Appends one entry to its stream with `XADD *`, returning its ID.
pub async fn append(conn: &mut ConnectionManager, output: &Output) -> Result<String> {
    let id: String = conn
        .xadd(&output.target, "*", &output.fields)
        .await
        .with_context(|| format!("XADD to {:?} failed", output.target))?;
    Ok(id)
}

/// Reads new entries without waiting, beside the consumer's commits. See
/// [`Consumer::prefetcher`].
pub struct Prefetcher {
    stream: String,
    group: String,
    name: String,
    reads: ConnectionManager,
}

impl Prefetcher {
    /// Reads up to `count` entries never delivered to this group that are already in the
    /// stream; never blocks.
    pub async fn read_available(mut self, count: usize) -> Result<Vec<Entry>> {
        let reply = xreadgroup(
            &mut self.reads,
            [&self.stream, &self.group, &self.name],
            ">",
            count,
            None,
        )
        .await?;
        Ok(reply::stream_entries(reply)?.0)
    }
}

/// `XREADGROUP GROUP group consumer COUNT count [BLOCK ms] STREAMS stream id`.
async fn xreadgroup(
    reads: &mut ConnectionManager,
    [stream, group, consumer]: [&str; 3],
    id: &str,
    count: usize,
    block: Option<Duration>,
) -> Result<Value> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count);
    if let Some(block) = block {
        cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS").arg(stream).arg(id);
    cmd.query_async(reads)
        .await
        .with_context(|| format!("XREADGROUP on stream {stream:?} group {group:?} failed"))
}
