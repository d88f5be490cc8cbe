//! A shadow's counts and its last differences.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;

use crate::diff::Difference;

/// How many differences a shadow keeps, newest last.
const KEPT: usize = 20;

/// The counts so far.
#[derive(Default)]
pub(super) struct Tally {
    pub compared: u64,
    pub agreed: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    pub skipped: u64,
    last: VecDeque<ShadowDifference>,
}

/// One entry on which the candidate differed from the live plugin.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ShadowDifference {
    /// The entry's ID.
    pub id: String,
    /// What differed: `result`, `reason`, `outputs`, `fields`, `state` (as `sluice
    /// diff`).
    pub kinds: Vec<String>,
    /// The differing parts, `- live` and `+ candidate` lines.
    pub lines: Vec<String>,
}

/// What `GET /v1/pipelines/{name}/shadow` shows.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ShadowStatus {
    /// The candidate's digest.
    pub candidate: String,
    /// When it was attached (seconds since the Unix epoch).
    pub attached_at: u64,
    /// Entries handled by both and compared.
    pub compared: u64,
    /// Of those, entries on which both gave the same.
    pub agreed: u64,
    /// Of those, entries on which they differed.
    pub differed: u64,
    /// Differing entries by kind of difference.
    pub by_kind: BTreeMap<String, u64>,
    /// Entries the candidate skipped: over its share of the handler time, or behind.
    pub skipped: u64,
    /// Whether the candidate is sampled down (it has skipped entries).
    pub sampled: bool,
    /// The share of the pipeline's handler time it may spend.
    pub share: f64,
    /// The candidate's handler time over the live plugin's, so far.
    pub cost: f64,
    /// The last differences (at most 20), oldest first.
    pub last_differences: Vec<ShadowDifference>,
}

impl Tally {
    /// Counts one entry's comparison.
    pub fn add(&mut self, id: &str, difference: Difference) {
        self.compared += 1;
        if difference.kinds.is_empty() {
            self.agreed += 1;
            return;
        }
        for kind in &difference.kinds {
            *self.by_kind.entry(kind).or_default() += 1;
        }
        if self.last.len() == KEPT {
            self.last.pop_front();
        }
        self.last.push_back(ShadowDifference {
            id: id.to_owned(),
            kinds: difference.kinds.iter().map(|k| (*k).to_owned()).collect(),
            lines: difference.lines,
        });
    }

    pub fn status(
        &self,
        digest: &str,
        attached: SystemTime,
        share: f64,
        cost: f64,
    ) -> ShadowStatus {
        let attached_at = attached
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ShadowStatus {
            candidate: digest.to_owned(),
            attached_at,
            compared: self.compared,
            agreed: self.agreed,
            differed: self.compared - self.agreed,
            by_kind: self
                .by_kind
                .iter()
                .map(|(k, n)| ((*k).to_owned(), *n))
                .collect(),
            skipped: self.skipped,
            sampled: self.skipped > 0,
            share,
            cost,
            last_differences: self.last.iter().cloned().collect(),
        }
    }
}

/// The tally, even if a thread panicked holding it (it stays consistent).
pub(super) fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
