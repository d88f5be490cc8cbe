//! Outputs in other hash slots than the input (`cross_slot = true`, Redis Cluster only).
//!
//! One script runs on one node and touches one slot, so the guarded commit cannot write
//! an output stream that lives elsewhere. Such outputs are written first, per slot, by
//! `once.lua`: each input entry leaves a marker key in that slot (`SET NX PX`), and an
//! entry whose marker is there already writes nothing. Then the guarded commit writes the
//! rest and acknowledges the input.
//!
//! Three things keep each output slot at one copy of an entry's outputs:
//! - the marker, for a repeat by anyone within its lifetime (a lost reply, a daemon that
//!   died between the two steps, another consumer that took the entry over);
//! - an ownership check just before the write (`XPENDING` over the batch's range): an
//!   entry no longer pending for this consumer — taken over and committed by another
//!   while this one was paused or cut off — is not written at all, however long ago its
//!   marker expired;
//! - a memory of what this consumer wrote: a commit tried again (Redis refused the
//!   guarded part for a while) does not write those outputs again.
//!
//! The marker of entry `id` of group `G` on input `IN`, in slot `s`, is
//! `sluice:once:{n}:G:IN:id`, where `{n}` is [`tag_for`]`(s)`. The first try's outputs
//! are the ones kept.
//!
//! Cost: per batch, one `XPENDING` and one more script call for each other slot its
//! outputs go to, and per entry a marker of ~100 bytes in each such slot for the
//! marker's lifetime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use super::commit::Ack;
use super::consumer_id::ConsumerId;
use super::slot::{key_slot, tag_for};
use crate::message::Output;

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("spread.lua"),
        include_str!("once.lua")
    ))
});

/// Entries whose outputs this consumer wrote to a slot, awaiting their guarded commit:
/// (slot, entry ID). Bounded: past this, it is cleared (the markers still hold).
const MAX_REMEMBERED: usize = 100_000;

/// How a consumer writes outputs outside its input's slot.
#[derive(Debug, Clone)]
pub struct CrossSlot {
    input_slot: u16,
    marker_ttl: Duration,
    written: HashSet<(u16, String)>,
}

/// One `once.lua` call: what it writes, and the script invocation.
pub(super) struct SlotWrite {
    /// (slot, entry ID) of each entry written.
    pub entries: Vec<(u16, String)>,
    /// The call.
    pub invocation: redis::ScriptInvocation<'static>,
}

/// The marker of entry `entry` of consumer `id`'s group and stream, in `slot`.
pub fn marker(slot: u16, id: &ConsumerId, entry: &str) -> String {
    format!(
        "sluice:once:{}:{}:{}:{entry}",
        tag_for(slot),
        id.group,
        id.stream
    )
}

impl CrossSlot {
    /// For a consumer of `input`; markers expire after `marker_ttl`.
    pub fn new(input: &str, marker_ttl: Duration) -> Self {
        Self {
            input_slot: key_slot(input.as_bytes()),
            marker_ttl,
            written: HashSet::new(),
        }
    }

    /// Whether any output of `acks` lives in another slot than the input.
    pub(super) fn any_apart(&self, acks: &[Ack]) -> bool {
        acks.iter()
            .flat_map(|a| &a.outputs)
            .any(|o| key_slot(o.target.as_bytes()) != self.input_slot)
    }

    /// Splits `acks` into what the guarded commit writes (outputs in the input's slot)
    /// and one `once.lua` call per other slot, for the entries in `writable` whose
    /// outputs to that slot this consumer has not written yet.
    pub(super) fn split(
        &self,
        id: &ConsumerId,
        acks: &[Ack],
        writable: &HashSet<&str>,
    ) -> (Vec<Ack>, Vec<SlotWrite>) {
        let mut local = Vec::with_capacity(acks.len());
        // slot -> per entry: (entry ID, its outputs in that slot)
        let mut apart: BTreeMap<u16, Vec<(&str, Vec<&Output>)>> = BTreeMap::new();
        for ack in acks {
            let mut kept = Vec::with_capacity(ack.outputs.len());
            let mut elsewhere: BTreeMap<u16, Vec<&Output>> = BTreeMap::new();
            for output in &ack.outputs {
                let slot = key_slot(output.target.as_bytes());
                if slot == self.input_slot {
                    kept.push(output.clone());
                } else {
                    elsewhere.entry(slot).or_default().push(output);
                }
            }
            if writable.contains(ack.id.as_str()) {
                for (slot, outputs) in elsewhere {
                    if !self.written.contains(&(slot, ack.id.clone())) {
                        apart.entry(slot).or_default().push((&ack.id, outputs));
                    }
                }
            }
            local.push(Ack {
                id: ack.id.clone(),
                outputs: kept,
                state: ack.state.clone(),
            });
        }
        let writes = apart
            .into_iter()
            .map(|(slot, entries)| SlotWrite {
                entries: entries
                    .iter()
                    .map(|(entry, _)| (slot, (*entry).to_owned()))
                    .collect(),
                invocation: self.invocation(id, slot, &entries),
            })
            .collect();
        (local, writes)
    }

    /// Notes that `write` went through.
    pub(super) fn wrote(&mut self, write: SlotWrite) {
        if self.written.len() > MAX_REMEMBERED {
            self.written.clear();
        }
        self.written.extend(write.entries);
    }

    /// Forgets the entries of `acks`: their guarded commit answered.
    pub(super) fn settled(&mut self, acks: &[Ack]) {
        if self.written.is_empty() {
            return;
        }
        let ids: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
        self.written.retain(|(_, id)| !ids.contains(id.as_str()));
    }

    /// The `once.lua` call for `entries`, whose outputs all live in `slot`.
    fn invocation(
        &self,
        id: &ConsumerId,
        slot: u16,
        entries: &[(&str, Vec<&Output>)],
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = SCRIPT.prepare_invoke();
        for (entry, _) in entries {
            invocation.key(marker(slot, id, entry));
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        for output in entries.iter().flat_map(|(_, outputs)| outputs) {
            let next = entries.len() + index.len() + 1;
            if let std::collections::hash_map::Entry::Vacant(free) =
                index.entry(output.target.as_str())
            {
                free.insert(next);
                invocation.key(&output.target);
            }
        }
        invocation
            .arg(u64::try_from(self.marker_ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(entries.len())
            .arg(index.len());
        for (_, outputs) in entries {
            invocation.arg(outputs.len());
            for output in outputs {
                invocation
                    .arg(index[output.target.as_str()])
                    .arg(output.fields.len());
                for (name, value) in &output.fields {
                    invocation.arg(name).arg(value);
                }
            }
        }
        invocation
    }
}
