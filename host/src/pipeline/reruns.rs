//! Entries handled again at once because handler state they read changed before their
//! commit (a state conflict), and how many times in a row. Part of the committer stage.

use std::collections::HashMap;

use super::redelivery::Redelivery;
use crate::message::Entry;

/// Times in a row an entry is handled again at once because its handler state changed
/// under it, before it waits for its retry backoff instead.
const MAX_RERUNS: u32 = 16;

/// Entries that had a state conflict, by ID: how many in a row.
#[derive(Default)]
pub(super) struct Reruns(HashMap<String, u32>);

impl Reruns {
    /// Of `entries` (their handler state changed under them), those to handle again
    /// first, as the same delivery. One that conflicted [`MAX_RERUNS`] times in a row
    /// waits for its retry backoff instead, like a failure (its next delivery counts an
    /// attempt), so that a hot key cannot spin the pipeline.
    pub(super) fn again(&mut self, entries: Vec<Entry>, redelivery: &mut Redelivery) -> Vec<Entry> {
        if entries.is_empty() {
            return entries;
        }
        if self.0.len() > 10_000 {
            self.0.clear();
        }
        let mut again = Vec::with_capacity(entries.len());
        for entry in entries {
            let runs = self.0.entry(entry.id.clone()).or_insert(0);
            *runs += 1;
            if *runs > MAX_RERUNS {
                self.0.remove(&entry.id);
                tracing::warn!(id = %entry.id, reruns = MAX_RERUNS, "handler state read by this entry kept changing before its commit; it waits for its retry backoff");
                redelivery.retry_later(&entry.id, entry.attempt);
                continue;
            }
            again.push(entry);
        }
        again
    }

    /// Entry `id` was settled otherwise: its run of conflicts ends.
    pub(super) fn end(&mut self, id: &str) {
        self.0.remove(id);
    }
}
