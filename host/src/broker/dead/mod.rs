//! Dead-letter streams: list, count, replay to the input (atomically), purge.

mod ids;
mod replay;

use std::time::Duration;

use anyhow::Result;
use redis::Value;

use super::{Broker, reply};
use crate::message::Field;
pub use ids::{IdsError, LetterIds, MAX_IDS};
pub use replay::{REPLAY_CHUNK, Replayed};

/// What a purge of given IDs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    /// Letters deleted.
    pub purged: usize,
    /// IDs asked for that are not in the dead-letter stream (canonical form).
    pub not_found: Vec<String>,
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

    /// How many letters the stream `dead` holds.
    pub async fn dead_count(&self, dead: &str) -> Result<usize> {
        let mut cmd = redis::cmd("XLEN");
        cmd.arg(dead);
        Ok(self
            .call(&format!("XLEN on {dead:?}"), |mut c| async move {
                cmd.query_async(&mut c).await
            })
            .await?)
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

    /// Deletes the letters `ids` of `dead` (one `XDEL` each, [`REPLAY_CHUNK`] to a round
    /// trip); lists the ones not found.
    pub async fn purge_ids(&self, dead: &str, ids: &LetterIds) -> Result<Purged> {
        let mut done = Purged::default();
        for chunk in ids.as_slice().chunks(REPLAY_CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.xdel(dead, &[id.to_string()]);
            }
            let deleted: Vec<usize> = self
                .call(&format!("XDEL on {dead:?}"), |mut c| async move {
                    pipe.query_async(&mut c).await
                })
                .await?;
            for (id, n) in chunk.iter().zip(deleted) {
                if n == 0 {
                    done.not_found.push(id.to_string());
                } else {
                    done.purged += n;
                }
            }
        }
        Ok(done)
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
