//! Dead-letter streams: list, replay to the input (atomically), purge.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Result;
use redis::Value;

use super::{Broker, reply};
use crate::message::Field;

static REPLAY: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("replay.lua")));

/// Dead letters replayed by one script call at most, so that Redis is never blocked long.
const REPLAY_CHUNK: usize = 1_000;

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
    /// from `dead`, atomically per chunk: the given `ids`, or all when empty. Returns how
    /// many were replayed. `meta` is how many metadata fields lead each dead letter.
    pub async fn replay_dead(
        &self,
        dead: &str,
        input: &str,
        meta: usize,
        ids: &[String],
    ) -> Result<usize> {
        let mut total = 0;
        let what = format!("replay from {dead:?}");
        if ids.is_empty() {
            loop {
                let mut call = REPLAY.key(dead);
                call.key(input).arg(meta).arg(REPLAY_CHUNK);
                let n: usize = self
                    .call(
                        &what,
                        |mut c| async move { call.invoke_async(&mut c).await },
                    )
                    .await?;
                total += n;
                if n < REPLAY_CHUNK {
                    break;
                }
            }
        } else {
            for chunk in ids.chunks(REPLAY_CHUNK) {
                let mut call = REPLAY.key(dead);
                call.key(input).arg(meta).arg(REPLAY_CHUNK).arg(chunk);
                let n: usize = self
                    .call(
                        &what,
                        |mut c| async move { call.invoke_async(&mut c).await },
                    )
                    .await?;
                total += n;
            }
        }
        Ok(total)
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
