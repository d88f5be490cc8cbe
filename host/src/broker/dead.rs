//! Dead-letter streams: list, replay to the input (atomically), purge.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Result;
use redis::Value;

use super::{Broker, MAX_FIELDS_PER_COMMIT, reply};
use crate::message::Field;

static REPLAY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("spread.lua"),
        include_str!("replay.lua")
    ))
});

/// Dead letters replayed by one script call at most, so that Redis is never blocked long.
pub const REPLAY_CHUNK: usize = 1_000;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Letters moved back to the input.
    pub replayed: usize,
    /// Letters kept: they hold no copy of their entry (it was too wide to copy; their
    /// reason names the original's ID in the input stream).
    pub kept: Vec<String>,
}

impl Broker {
    /// Up to `count` entries of stream `dead` after ID `after` (`None`: from the start),
    /// oldest first.
    pub async fn dead_letters(
        &self,
        dead: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Vec<Field>)>> {
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(dead).arg(start).arg("+").arg("COUNT").arg(count);
        let value: Value = self
            .call(&format!("XRANGE on {dead:?}"), |mut c| async move {
                cmd.query_async(&mut c).await
            })
            .await?;
        let (entries, _) = reply::entry_list(value)?;
        Ok(entries.into_iter().map(|e| (e.id, e.fields)).collect())
    }

    /// Moves dead letters back to `input` with their original fields and deletes them
    /// from `dead`, atomically per call (at most [`REPLAY_CHUNK`] letters and
    /// [`MAX_FIELDS_PER_COMMIT`] fields each): the given `ids`, or all when empty. `meta`
    /// is how many metadata fields lead each dead letter. A letter without a copy of its
    /// entry (too wide to copy) is kept and listed in [`Replayed::kept`].
    pub async fn replay_dead(
        &self,
        dead: &str,
        input: &str,
        meta: usize,
        ids: &[String],
    ) -> Result<Replayed> {
        let mut done = Replayed::default();
        let what = format!("replay from {dead:?}");
        let mut after = "-".to_owned();
        let mut rest = ids;
        loop {
            let chunk = &rest[..rest.len().min(REPLAY_CHUNK)];
            let mut call = REPLAY.key(dead);
            call.key(input)
                .arg(meta)
                .arg(REPLAY_CHUNK)
                .arg(MAX_FIELDS_PER_COMMIT)
                .arg(&after)
                .arg(chunk);
            let reply: Vec<Value> = self
                .call(
                    &what,
                    |mut c| async move { call.invoke_async(&mut c).await },
                )
                .await?;
            let text = |v: &Value| match v {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                Value::Int(n) => n.to_string(),
                _ => String::new(),
            };
            let replayed = match reply.first() {
                Some(Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
                other => anyhow::bail!("replay script answered {other:?}"),
            };
            let last = reply.get(1).map(text).unwrap_or_default();
            done.replayed += replayed;
            done.kept.extend(reply.iter().skip(2).map(text));
            if last.is_empty() {
                break;
            }
            if ids.is_empty() {
                after = last;
            } else {
                // Go on after the last ID looked at.
                let seen = rest.iter().position(|id| *id == last).map_or(0, |i| i + 1);
                rest = &rest[seen..];
                if rest.is_empty() {
                    break;
                }
            }
        }
        Ok(done)
    }

    /// Deletes the stream `dead`; returns how many entries it held.
    pub async fn purge_dead(&self, dead: &str) -> Result<usize> {
        let mut pipe = redis::pipe();
        pipe.atomic().xlen(dead).del(dead);
        let (len, _): (usize, usize) = self
            .call(&format!("purging {dead:?}"), |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await?;
        Ok(len)
    }

    /// Whether Redis answers a `PING` within `deadline`; the error if not. A stalled
    /// connection is dropped, so the next check opens a new one; a connection found
    /// closed (an idle timeout, a restarted server) is replaced at once, within the same
    /// deadline.
    pub async fn ping(&self, deadline: Duration) -> Result<(), String> {
        let ping = || {
            self.call("PING", |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
        };
        let pinged = tokio::time::timeout(deadline, async {
            match ping().await {
                Err(fault) if fault.is_dropped_under_call() => ping().await,
                other => other,
            }
        })
        .await;
        match pinged {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(fault)) => Err(fault.to_string()),
            Err(_) => {
                self.commands.reset();
                Err(format!("no answer to PING within {deadline:?}"))
            }
        }
    }
}
