//! Dead-letter IDs a person or a client named: checked and canonicalised before any
//! script runs, so that Redis only ever sees IDs in the form it answers with.

use std::collections::BTreeSet;

use crate::message::{InvalidStreamId, StreamId};

/// How many distinct dead-letter IDs one replay or purge takes at most.
pub const MAX_IDS: usize = 10_000;

/// Dead-letter IDs: canonical, in stream order, each once, at most [`MAX_IDS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LetterIds(Vec<StreamId>);

/// Why a list of dead-letter IDs was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdsError {
    /// One of them is not an entry ID (not a `source`: the message says it all once).
    #[error("dead-letter ID {0}")]
    Invalid(InvalidStreamId),
    /// More than [`MAX_IDS`] distinct ones.
    #[error("more than {MAX_IDS} distinct dead-letter IDs in one call: send them in parts")]
    TooMany,
}

impl LetterIds {
    /// Parses `ids` (`ms-seq`, or `ms` meaning `ms-0`: see [`StreamId`]'s `FromStr`),
    /// sorts them and drops duplicates (`7-0`, `07-0` and `7` are one ID). Refuses the
    /// first one that is not an ID, or more than [`MAX_IDS`] distinct ones; the work is
    /// bounded by that cap, however long the list.
    pub fn parse<S: AsRef<str>>(ids: &[S]) -> Result<Self, IdsError> {
        let mut set = BTreeSet::new();
        for id in ids {
            set.insert(id.as_ref().parse::<StreamId>().map_err(IdsError::Invalid)?);
            if set.len() > MAX_IDS {
                return Err(IdsError::TooMany);
            }
        }
        Ok(Self(set.into_iter().collect()))
    }

    /// The IDs, in stream order.
    pub fn as_slice(&self) -> &[StreamId] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ids: &LetterIds) -> Vec<String> {
        ids.as_slice().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ids_are_canonical_sorted_and_unique() {
        let ids = LetterIds::parse(&["9-1", "07", "7-0", "10-0", "9-01", "7"]).expect("valid");
        assert_eq!(text(&ids), ["7-0", "9-1", "10-0"]);
        assert!(LetterIds::parse::<&str>(&[]).expect("empty").is_empty());
    }

    #[test]
    fn the_first_invalid_id_is_named() {
        let refused = LetterIds::parse(&["1-0", "notanid", "-"]).expect_err("invalid");
        assert_eq!(
            refused.to_string(),
            "dead-letter ID \"notanid\" is not a stream entry ID: expected MS-SEQ or MS (decimal digits, e.g. 1700000000000-0)"
        );
    }

    #[test]
    fn the_count_is_capped_after_duplicates_are_dropped() {
        let copies = vec!["5-0"; 300_000];
        assert_eq!(LetterIds::parse(&copies).expect("one ID").len(), 1);
        let at_cap: Vec<String> = (0..MAX_IDS).map(|i| format!("{i}-0")).collect();
        assert_eq!(
            LetterIds::parse(&at_cap).expect("at the cap").len(),
            MAX_IDS
        );
        let over: Vec<String> = (0..=MAX_IDS).map(|i| format!("{i}-0")).collect();
        assert_eq!(LetterIds::parse(&over), Err(IdsError::TooMany));
    }
}
