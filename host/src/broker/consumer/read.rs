//! Reading entries through the group: the consumer's own pending entries at start-up,
//! new entries (blocking), and new entries read ahead beside a commit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use redis::Value;

use super::{Consumer, ConsumerId, ReadSize};
use crate::broker::link::Link;
use crate::broker::{BLOCK_MARGIN, Fault, reply};
use crate::message::Entry;

impl Consumer {
    /// Reads up to `count` of this consumer's own pending entries with IDs after `after`
    /// (`"0"` for all). Entries deleted from the stream while pending are acknowledged
    /// and dropped: there is nothing left to process.
    pub async fn read_pending(&mut self, after: &str, count: usize) -> Result<Vec<Entry>, Fault> {
        let count = self.size.count(count);
        let reply = self.xreadgroup(after, count, None).await;
        self.size.learn(count, &reply);
        let reply = reply?;
        let (entries, deleted) =
            reply::stream_entries(reply).map_err(|e| Fault::unexpected("XREADGROUP", &e))?;
        if !deleted.is_empty() {
            tracing::warn!(stream = %self.id.stream, ids = ?deleted, "pending entries were deleted from the stream; acknowledging them");
            let _: i64 = self
                .commands
                .query(
                    "XACK",
                    None,
                    redis::cmd("XACK")
                        .arg(&self.id.stream)
                        .arg(&self.id.group)
                        .arg(&deleted),
                )
                .await?;
        }
        self.with_delivery_counts(entries).await
    }

    /// Reads up to `count` entries never delivered to this group, waiting up to `block`.
    pub async fn read_new(&mut self, count: usize, block: Duration) -> Result<Vec<Entry>, Fault> {
        let count = self.size.count(count);
        let reply = self.xreadgroup(">", count, Some(block)).await;
        self.size.learn(count, &reply);
        let reply = reply?;
        Ok(reply::stream_entries(reply)
            .map_err(|e| Fault::unexpected("XREADGROUP", &e))?
            .0)
    }

    /// Sets each entry's attempt from the pending list. Only for a history read at
    /// start-up, when every pending entry of this consumer in the range was just read.
    async fn with_delivery_counts(&mut self, mut entries: Vec<Entry>) -> Result<Vec<Entry>, Fault> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(entries);
        };
        let args = vec![
            first.id.clone(),
            last.id.clone(),
            entries.len().to_string(),
            self.id.name.clone(),
        ];
        let counts: std::collections::HashMap<String, u32> = self
            .xpending(args)
            .await?
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
    ) -> Result<Value, Fault> {
        let cmd = xreadgroup(&self.id, id, count, block);
        let deadline = block.map(|b| b + BLOCK_MARGIN);
        self.reads.query("XREADGROUP", deadline, &cmd).await
    }
}

/// Reads new entries without waiting, beside the consumer's commits. See
/// [`Consumer::prefetcher`].
pub struct Prefetcher {
    pub(super) id: Arc<ConsumerId>,
    pub(super) reads: Arc<Link>,
    pub(super) size: ReadSize,
}

impl Prefetcher {
    /// Reads up to `count` entries never delivered to this group that are already in the
    /// stream; never blocks.
    pub async fn read_available(self, count: usize) -> Result<Vec<Entry>> {
        let count = self.size.count(count);
        let cmd = xreadgroup(&self.id, ">", count, None);
        let reply: Result<Value, Fault> = self.reads.query("XREADGROUP", None, &cmd).await;
        self.size.learn(count, &reply);
        Ok(reply::stream_entries(reply?)?.0)
    }
}

/// `XREADGROUP GROUP group consumer COUNT count [BLOCK ms] STREAMS stream id`.
fn xreadgroup(
    ConsumerId {
        stream,
        group,
        name: consumer,
    }: &ConsumerId,
    id: &str,
    count: usize,
    block: Option<Duration>,
) -> redis::Cmd {
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
    cmd
}
