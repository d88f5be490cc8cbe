//! Dead-letter replay: letters back to the input with their original fields, deleted
//! from the dead-letter stream, atomically per script call (`replay.lua`).
//!
//! Every call says where it starts and the script says how far it got (the last ID it
//! looked at, or how many of the IDs given), so that each call moves forward by at least
//! one letter and the whole replay ends, whatever the stream holds. A replay of "all"
//! stops at the last letter there when it began: the replayed entries that fail again
//! come back as new letters, after it, and are not replayed a second time.
//!
//! A replay cut short (Redis gone mid-way) fails with [`ReplayCut`]: how many letters
//! had moved, so that the caller can say so and that running it again replays the rest.

use std::sync::LazyLock;

use anyhow::{Result, bail};
use redis::Value;

use super::super::{Broker, MAX_FIELDS_PER_COMMIT};
use super::LetterIds;
use crate::message::StreamId;

static REPLAY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("../spread.lua"),
        include_str!("replay.lua")
    ))
});

/// The ID of the last entry of a stream, without its fields (which can be wide).
static LAST_ID: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n\
         if #last == 0 then return false end\n\
         return last[1][1]",
    )
});

/// Dead letters replayed by one script call at most, so that Redis is never blocked long.
pub const REPLAY_CHUNK: usize = 1_000;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Letters moved back to the input: entries written to it.
    pub replayed: usize,
    /// Letters kept: they hold no copy of their entry (it was too wide to copy; their
    /// reason names the original's ID in the input stream).
    pub kept: Vec<String>,
    /// IDs asked for that are not in the dead-letter stream (canonical form).
    pub not_found: Vec<String>,
}

/// A replay that failed part-way: the letters replayed before the failure are on the
/// input and gone from the dead-letter stream; the others are still there.
#[derive(Debug, thiserror::Error)]
#[error(
    "{cause:#}; at least {replayed} dead letters were replayed before the failure (moved to their input and deleted), the others are still dead letters: run it again to replay the rest"
)]
pub struct ReplayCut {
    /// The dead-letter stream it failed on.
    pub dead: String,
    /// Letters replayed before the failure, in every stream of the replay (at least:
    /// the call that failed may have moved its chunk before its answer was lost).
    pub replayed: usize,
    /// Why it failed.
    pub cause: anyhow::Error,
}

impl ReplayCut {
    /// `cause`, a failure in `dead` after `done`, as a cut replay; a cut replay's count
    /// grows by `done` (what earlier streams replayed).
    pub(crate) fn of(dead: &str, done: &Replayed, cause: anyhow::Error) -> anyhow::Error {
        match cause.downcast::<ReplayCut>() {
            Ok(mut cut) => {
                cut.replayed += done.replayed;
                cut.into()
            }
            Err(cause) => ReplayCut {
                dead: dead.to_owned(),
                replayed: done.replayed,
                cause,
            }
            .into(),
        }
    }

    /// The Redis fault behind it, if it was one.
    pub fn fault(&self) -> Option<&super::super::Fault> {
        self.cause.downcast_ref()
    }
}

/// One script call's answer: what it did, and how far it got.
struct Step {
    done: Replayed,
    progress: Value,
}

impl Broker {
    /// Replays every letter of `dead` there when the call begins, oldest first, to
    /// `input` (letters added during the replay are left). `meta` is how many metadata
    /// fields lead each dead letter. Each script call moves at most [`REPLAY_CHUNK`]
    /// letters and [`MAX_FIELDS_PER_COMMIT`] fields, atomically. A failure once letters
    /// may have moved is a [`ReplayCut`], with what was replayed before it.
    pub async fn replay_all(&self, dead: &str, input: &str, meta: usize) -> Result<Replayed> {
        match self.last_id(dead).await? {
            Some(last) => self.replay_through(dead, input, meta, last).await,
            None => Ok(Replayed::default()),
        }
    }

    /// Replays the letters of `dead` up to `last` (inclusive), as [`Broker::replay_all`]
    /// does with the last letter there when it begins.
    pub async fn replay_through(
        &self,
        dead: &str,
        input: &str,
        meta: usize,
        last: StreamId,
    ) -> Result<Replayed> {
        let mut done = Replayed::default();
        match self.replay_range(dead, input, meta, last, &mut done).await {
            Ok(()) => Ok(done),
            Err(cause) => Err(ReplayCut::of(dead, &done, cause)),
        }
    }

    /// [`Broker::replay_through`]'s calls, adding what each did to `done`.
    async fn replay_range(
        &self,
        dead: &str,
        input: &str,
        meta: usize,
        bound: StreamId,
        done: &mut Replayed,
    ) -> Result<()> {
        let mut after: Option<StreamId> = None;
        while after != Some(bound) {
            let start = after.map_or_else(|| "-".to_owned(), |id| id.to_string());
            let args = ["range".to_owned(), start, bound.to_string()];
            let step = self.replay_step(dead, input, meta, &args).await?;
            done.absorb(step.done);
            let Value::BulkString(last) = step.progress else {
                bail!("replay script answered {:?} for the last ID", step.progress);
            };
            if last.is_empty() {
                break;
            }
            let last: StreamId = String::from_utf8_lossy(&last).parse()?;
            if after.is_some_and(|a| last <= a) || last > bound {
                bail!("replay script went from {after:?} to {last}, bound {bound}");
            }
            after = Some(last);
        }
        Ok(())
    }

    /// Replays the letters `ids` of `dead` to `input`, in stream order; lists the ones
    /// not found. Atomic per [`REPLAY_CHUNK`] IDs and [`MAX_FIELDS_PER_COMMIT`] fields.
    /// A failure is a [`ReplayCut`], with what was replayed before it.
    pub async fn replay_ids(
        &self,
        dead: &str,
        input: &str,
        meta: usize,
        ids: &LetterIds,
    ) -> Result<Replayed> {
        let mut done = Replayed::default();
        match self.replay_listed(dead, input, meta, ids, &mut done).await {
            Ok(()) => Ok(done),
            Err(cause) => Err(ReplayCut::of(dead, &done, cause)),
        }
    }

    /// [`Broker::replay_ids`]'s calls, adding what each did to `done`.
    async fn replay_listed(
        &self,
        dead: &str,
        input: &str,
        meta: usize,
        ids: &LetterIds,
        done: &mut Replayed,
    ) -> Result<()> {
        let mut rest = ids.as_slice();
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(REPLAY_CHUNK)];
            let args: Vec<String> = std::iter::once("ids".to_owned())
                .chain(chunk.iter().map(ToString::to_string))
                .collect();
            let step = self.replay_step(dead, input, meta, &args).await?;
            done.absorb(step.done);
            let looked = match step.progress {
                Value::Int(n) => usize::try_from(n).unwrap_or(0),
                other => bail!("replay script answered {other:?} for the IDs looked at"),
            };
            if looked == 0 || looked > chunk.len() {
                bail!("replay script looked at {looked} of {} IDs", chunk.len());
            }
            rest = &rest[looked..];
        }
        Ok(())
    }

    /// One call of `replay.lua` with its mode and arguments (see the script).
    async fn replay_step(
        &self,
        dead: &str,
        input: &str,
        meta: usize,
        args: &[String],
    ) -> Result<Step> {
        let mut call = REPLAY.key(dead);
        call.key(input)
            .arg(meta)
            .arg(REPLAY_CHUNK)
            .arg(MAX_FIELDS_PER_COMMIT)
            .arg(args);
        let reply: Vec<Value> = self
            .call(&format!("replay from {dead:?}"), |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        let [Value::Int(replayed), progress, kept, not_found] = <[Value; 4]>::try_from(reply)
            .map_err(|r| anyhow::anyhow!("replay script answered {r:?}"))?
        else {
            bail!("replay script answered no count");
        };
        Ok(Step {
            done: Replayed {
                replayed: usize::try_from(replayed).unwrap_or(0),
                kept: ids(kept)?,
                not_found: ids(not_found)?,
            },
            progress,
        })
    }

    /// The ID of the last entry of `stream`; `None` when it is empty or absent.
    pub async fn last_id(&self, stream: &str) -> Result<Option<StreamId>> {
        let call = LAST_ID.key(stream);
        let last: Option<String> = self
            .call(&format!("last ID of {stream:?}"), |mut c| async move {
                call.invoke_async(&mut c).await
            })
            .await?;
        Ok(last.map(|id| id.parse()).transpose()?)
    }
}

impl Replayed {
    /// Adds what another call did.
    pub(crate) fn absorb(&mut self, other: Replayed) {
        self.replayed += other.replayed;
        self.kept.extend(other.kept);
        self.not_found.extend(other.not_found);
    }
}

/// A list of IDs in a script's answer.
fn ids(list: Value) -> Result<Vec<String>> {
    let Value::Array(items) = list else {
        bail!("replay script answered {list:?} for a list of IDs");
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            other => bail!("replay script answered {other:?} for an ID"),
        })
        .collect()
}
