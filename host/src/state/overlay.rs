//! The batch's overlay: the writes of the entries handled so far, which later entries
//! of the same batch see before they are committed.

use std::collections::HashMap;

use super::checks::integer;
use super::model::Known;

/// The writes of a batch's entries handled so far (and not failed), which later entries
/// of the batch see. Shared by the batch's instances.
#[derive(Debug, Default)]
pub struct Overlay(std::sync::Mutex<HashMap<String, Known>>);

impl Overlay {
    /// What `f` makes of the overlay's `key`, under the lock (no copy of a whole hash).
    pub(super) fn with<T>(&self, key: &str, f: impl FnOnce(Option<&Known>) -> T) -> T {
        f(crate::lock::lock(&self.0).get(key))
    }

    pub(super) fn known(&self, key: &str) -> Option<Known> {
        self.with(key, |known| known.cloned())
    }

    /// Adds an entry's writes (its own layer) on top.
    pub(super) fn absorb(&self, own: HashMap<String, Known>) {
        let mut layer = crate::lock::lock(&self.0);
        for (key, known) in own {
            let merged = match (layer.remove(&key), known) {
                (
                    Some(Known::Hash {
                        fields: mut below,
                        complete,
                    }),
                    Known::Hash {
                        fields,
                        complete: false,
                    },
                ) => {
                    below.extend(fields);
                    Known::Hash {
                        fields: below,
                        complete,
                    }
                }
                (
                    Some(Known::Absent),
                    Known::Hash {
                        fields,
                        complete: false,
                    },
                ) => Known::Hash {
                    fields,
                    complete: true,
                },
                (Some(Known::Str(below)), Known::Delta(delta)) => {
                    match integer(&below).and_then(|n| n.checked_add(delta)) {
                        Some(sum) => Known::Str(sum.to_string().into_bytes()),
                        None => Known::Delta(delta),
                    }
                }
                (Some(Known::Delta(below)), Known::Delta(delta)) => {
                    Known::Delta(below.saturating_add(delta))
                }
                (Some(Known::Absent), Known::Delta(delta)) => {
                    Known::Str(delta.to_string().into_bytes())
                }
                (_, known) => known,
            };
            layer.insert(key, merged);
        }
    }
}
