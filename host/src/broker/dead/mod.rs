//! Dead-letter streams: list, count, replay to the input (atomically), purge; `every`
//! does each on every dead-letter stream of a pipeline (one per partition).

mod every;
mod ids;
mod replay;

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Result;

use super::Broker;
use crate::message::{Field, StreamId};
pub use every::DeadStream;
pub use ids::{IdsError, LetterIds, MAX_IDS};
pub use replay::{REPLAY_CHUNK, ReplayCut, Replayed};

/// What a purge of given IDs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    /// Letters deleted.
    pub purged: usize,
    /// IDs asked for that are not in the dead-letter stream (canonical form).
    pub not_found: Vec<String>,
}

/// How many entries a stream holds and its last ID (without the entry's fields, which
/// can be wide), read together.
static EXTENT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n\
         if #last == 0 then return { 0, false } end\n\
         return { redis.call('XLEN', KEYS[1]), last[1][1] }",
    )
});

impl Broker {
    /// Up to `count` entries of stream `dead` after ID `after` (`None`: from the start),
    /// oldest first.
    pub async fn dead_letters(
        &self,
        dead: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Vec<Field>)>> {
        self.range(dead, after, "-", "+", count).await
    }

    /// How many letters the stream `dead` holds, and the last one's ID (`None`: none).
    pub async fn dead_extent(&self, dead: &str) -> Result<(usize, Option<StreamId>)> {
        let call = EXTENT.key(dead);
        let (count, last): (usize, Option<String>) = self
            .call(&format!("counting {dead:?}"), |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok((count, last.map(|id| id.parse()).transpose()?))
    }

    /// Deletes the letters of `dead` up to `last` (inclusive): every letter there when
    /// `last` was read, none added since. Returns how many it deleted.
    pub async fn purge_dead(&self, dead: &str, last: StreamId) -> Result<usize> {
        let mut cmd = redis::cmd("XTRIM");
        cmd.arg(dead);
        match last.successor() {
            Some(next) => cmd.arg("MINID").arg(next.to_string()),
            // No ID can follow the largest: every letter is up to it.
            None => cmd.arg("MAXLEN").arg(0),
        };
        Ok(self
            .call(&format!("purging {dead:?}"), |mut c| async move {
                cmd.query_async(&mut c).await
            })
            .await?)
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
