//! Dead-letter streams: list, replay to the input (atomically), purge.

use std::sync::LazyLock;

use anyhow::{Context, Result};
use redis::{AsyncCommands, Value};

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
        let mut conn = self.connection();
        let value: Value = redis::cmd("XRANGE")
            .arg(dead)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .with_context(|| format!("XRANGE on {dead:?} failed"))?;
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
        let mut conn = self.connection();
        let mut total = 0;
        let chunks: Vec<&[String]> = if ids.is_empty() {
            Vec::new()
        } else {
            ids.chunks(REPLAY_CHUNK).collect()
        };
        if chunks.is_empty() {
            loop {
                let n: usize = REPLAY
                    .key(dead)
                    .key(input)
                    .arg(meta)
                    .arg(REPLAY_CHUNK)
                    .invoke_async(&mut conn)
                    .await?;
                total += n;
                if n < REPLAY_CHUNK {
                    break;
                }
            }
        } else {
            for chunk in chunks {
                let mut call = REPLAY.key(dead);
                call.key(input).arg(meta).arg(REPLAY_CHUNK).arg(chunk);
                let n: usize = call.invoke_async(&mut conn).await?;
                total += n;
            }
        }
        Ok(total)
    }

    /// Deletes the stream `dead`; returns how many entries it held.
    pub async fn purge_dead(&self, dead: &str) -> Result<usize> {
        let mut conn = self.connection();
        let (len, _): (usize, usize) = redis::pipe()
            .atomic()
            .xlen(dead)
            .del(dead)
            .query_async(&mut conn)
            .await
            .with_context(|| format!("purging {dead:?} failed"))?;
        Ok(len)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> bool {
        let mut conn = self.connection();
        conn.ping::<String>().await.is_ok()
    }
}
