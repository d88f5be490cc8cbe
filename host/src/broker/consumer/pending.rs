//! The pending entries list: scans for idle entries (this consumer's, for retries;
//! others', for reclaim) and claims. The entry leases that keep a slow handler's entries
//! are in `broker::lease::entry`.

use std::time::Duration;

use anyhow::Result;
use redis::Value;

use super::Consumer;
use crate::broker::{Fault, PendingEntry, reply};
use crate::message::Entry;

impl Consumer {
    /// Runs an `XPENDING` (extended form) with `args` after the stream and group.
    pub(super) async fn xpending(&mut self, args: Vec<String>) -> Result<Vec<PendingEntry>, Fault> {
        let reply: Value = self
            .commands
            .query(
                "XPENDING",
                None,
                redis::cmd("XPENDING")
                    .arg(&self.id.stream)
                    .arg(&self.id.group)
                    .arg(&args),
            )
            .await?;
        reply::pending_entries(reply).map_err(|e| Fault::unexpected("XPENDING", &e))
    }

    /// Moves every entry pending in the group, whoever holds it, to this consumer
    /// (`XAUTOCLAIM ... 0 ... JUSTID`, which counts no delivery), so that it handles
    /// them first and in order. For a partition this daemon has just leased: whoever
    /// held them before is fenced off. Returns how many were taken.
    pub async fn take_over(&mut self) -> Result<usize, Fault> {
        let mut cursor = "0-0".to_owned();
        let mut taken = 0;
        loop {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.id.stream)
                .arg(&self.id.group)
                .arg(&self.id.name)
                .arg(0)
                .arg(&cursor)
                .arg("COUNT")
                .arg(1000)
                .arg("JUSTID");
            let (next, ids, _deleted): (String, Vec<String>, Value) = match self
                .commands
                .query::<Value>("XAUTOCLAIM", None, &cmd)
                .await?
            {
                Value::Array(items) if items.len() >= 2 => {
                    let mut items = items.into_iter();
                    let next = redis::from_redis_value(items.next().unwrap_or(Value::Nil))
                        .map_err(|e| Fault::unexpected("XAUTOCLAIM", &anyhow::anyhow!("{e}")))?;
                    let ids = redis::from_redis_value(items.next().unwrap_or(Value::Nil))
                        .map_err(|e| Fault::unexpected("XAUTOCLAIM", &anyhow::anyhow!("{e}")))?;
                    (next, ids, items.next().unwrap_or(Value::Nil))
                }
                other => {
                    return Err(Fault::unexpected(
                        "XAUTOCLAIM",
                        &anyhow::anyhow!("unexpected reply {other:?}"),
                    ));
                }
            };
            taken += ids.len();
            if next == "0-0" {
                return Ok(taken);
            }
            cursor = next;
        }
    }

    /// This consumer's pending entries idle for at least `min_idle`, in ID order, scanning
    /// from `after` (exclusive; `"-"` for the start) at most `count` rows. Returns them and
    /// where the next scan should start (`"-"` once the end was reached).
    pub async fn idle_pending(
        &mut self,
        min_idle: Duration,
        after: &str,
        count: usize,
    ) -> Result<(Vec<PendingEntry>, String), Fault> {
        let name = self.id.name.clone();
        self.scan_idle(min_idle, after, count, Some(name)).await
    }

    /// One page of `XPENDING stream group IDLE min_idle (after + count [consumer]`, and
    /// where the next page starts (`"-"` once the end was reached).
    async fn scan_idle(
        &mut self,
        min_idle: Duration,
        after: &str,
        count: usize,
        consumer: Option<String>,
    ) -> Result<(Vec<PendingEntry>, String), Fault> {
        let mut args = vec![
            "IDLE".to_owned(),
            (min_idle.as_millis() as u64).to_string(),
            exclusive(after),
            "+".into(),
            count.to_string(),
        ];
        args.extend(consumer);
        let rows = self.xpending(args).await?;
        let next = next_cursor(&rows, count);
        Ok((rows, next))
    }

    /// Takes `due` entries (own or another consumer's) for a new delivery: their
    /// delivery count goes up by one and their idle time restarts. Entries deleted from
    /// the stream meanwhile are dropped from the pending list by Redis and not returned.
    ///
    /// Only entries still idle for `min_idle` are taken, so of two consumers claiming
    /// the same entry at once only the first gets it.
    pub async fn claim(
        &mut self,
        due: &[PendingEntry],
        min_idle: Duration,
    ) -> Result<Vec<Entry>, Fault> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        // The rest stay pending: a later scan finds them due still.
        let due = &due[..self.size.count(due.len())];
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.id.stream)
            .arg(&self.id.group)
            .arg(&self.id.name)
            .arg(min_idle.as_millis() as u64);
        for p in due {
            cmd.arg(&p.id);
        }
        let reply: Result<Value, Fault> = self.commands.query("XCLAIM", None, &cmd).await;
        self.size.learn(due.len(), &reply);
        let reply = reply?;
        let (mut entries, _) =
            reply::entry_list(reply).map_err(|e| Fault::unexpected("XCLAIM", &e))?;
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
    ) -> Result<(Vec<PendingEntry>, String), Fault> {
        let (rows, next) = self.scan_idle(min_idle, after, count, None).await?;
        Ok((
            rows.into_iter()
                .filter(|p| p.consumer != self.id.name)
                .collect(),
            next,
        ))
    }
}

/// The start of a range scan after `after` (exclusive), `-` for the beginning.
fn exclusive(after: &str) -> String {
    if after == "-" {
        "-".to_owned()
    } else {
        format!("({after}")
    }
}

/// Where a scan that read `rows` of at most `count` goes on: after the last row, or from
/// the beginning (`-`) once a page came back short.
fn next_cursor(rows: &[PendingEntry], count: usize) -> String {
    match rows.last() {
        Some(last) if rows.len() == count => last.id.clone(),
        _ => "-".to_owned(),
    }
}
