//! A pipeline's dead letters in every stream that holds them: one, or one per partition
//! (`INPUT:dead:{p}`), each replayed to its own partition's input. Replay and purge act
//! on each stream in turn; an ID is not found when no stream holds it.

use std::collections::BTreeSet;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::super::Broker;
use super::{LetterIds, Purged, ReplayCut, Replayed};
use crate::message::StreamId;

/// A dead-letter stream and the input its letters are replayed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadStream {
    /// The dead-letter stream.
    pub stream: String,
    /// The input stream its letters go back to.
    pub input: String,
}

impl Broker {
    /// Replays every letter of each stream there when the call begins (the last ID of
    /// each is read first), stream by stream. A failure is a [`ReplayCut`] counting
    /// every stream's letters replayed before it.
    pub async fn replay_every(&self, streams: &[DeadStream], meta: usize) -> Result<Replayed> {
        let mut done = Replayed::default();
        for (s, last) in streams.iter().zip(self.last_ids(streams).await?) {
            let Some(last) = last else { continue };
            match self.replay_through(&s.stream, &s.input, meta, last).await {
                Ok(step) => done.absorb(step),
                Err(e) => return Err(ReplayCut::of(&s.stream, &done, e)),
            }
        }
        Ok(done)
    }

    /// Replays the letters `ids` wherever they are ([`Broker::replay_ids`] on each
    /// stream); `not_found` lists the IDs no stream holds. A failure is a [`ReplayCut`].
    pub async fn replay_ids_every(
        &self,
        streams: &[DeadStream],
        meta: usize,
        ids: &LetterIds,
    ) -> Result<Replayed> {
        let mut done = Replayed::default();
        let mut found = BTreeSet::new();
        for s in streams {
            let step = match self.replay_ids(&s.stream, &s.input, meta, ids).await {
                Ok(step) => step,
                Err(e) => return Err(ReplayCut::of(&s.stream, &done, e)),
            };
            found.extend(found_of(ids, &step.not_found));
            done.replayed += step.replayed;
            done.kept.extend(step.kept);
        }
        done.not_found = missing(ids, &found);
        Ok(done)
    }

    /// Deletes the letters `ids` wherever they are; `not_found` lists the IDs no stream
    /// holds.
    pub async fn purge_ids_every(&self, streams: &[DeadStream], ids: &LetterIds) -> Result<Purged> {
        let mut done = Purged::default();
        let mut found = BTreeSet::new();
        for s in streams {
            let step = self.purge_ids(&s.stream, ids).await?;
            found.extend(found_of(ids, &step.not_found));
            done.purged += step.purged;
        }
        done.not_found = missing(ids, &found);
        Ok(done)
    }

    /// Deletes every letter there when the call begins, in every stream (the last ID of
    /// each is read first; letters that arrive later stay). Returns how many it deleted.
    pub async fn purge_every(&self, streams: &[DeadStream]) -> Result<usize> {
        let mut purged = 0;
        for (s, last) in streams.iter().zip(self.last_ids(streams).await?) {
            if let Some(last) = last {
                purged += self.purge_dead(&s.stream, last).await?;
            }
        }
        Ok(purged)
    }

    /// The last letter's ID of each stream (`None`: it has none).
    async fn last_ids(&self, streams: &[DeadStream]) -> Result<Vec<Option<StreamId>>> {
        let mut bounds = Vec::with_capacity(streams.len());
        for s in streams {
            bounds.push(self.last_id(&s.stream).await?);
        }
        Ok(bounds)
    }
}

/// The IDs of `ids` a stream held: those not in its `not_found`.
fn found_of(ids: &LetterIds, not_found: &[String]) -> Vec<String> {
    let absent: BTreeSet<&str> = not_found.iter().map(String::as_str).collect();
    ids.as_slice()
        .iter()
        .map(ToString::to_string)
        .filter(|id| !absent.contains(id.as_str()))
        .collect()
}

/// The IDs of `ids` (in stream order) that are not in `found`.
fn missing(ids: &LetterIds, found: &BTreeSet<String>) -> Vec<String> {
    ids.as_slice()
        .iter()
        .map(ToString::to_string)
        .filter(|id| !found.contains(id))
        .collect()
}
