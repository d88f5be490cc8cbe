//! Outputs in other hash slots than the input (`cross_slot = true`, Redis Cluster only).
//!
//! One script runs on one node and touches one slot, so the guarded commit cannot write
//! an output stream that lives elsewhere. Such outputs are written first, per slot, by
//! `cross_slot.lua`: each input entry leaves a marker key in that slot (`SET NX PX`), and an
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

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use super::commit::{Ack, Sink};
use super::consumer_id::ConsumerId;
use super::slot::{key_slot, tag_for};
use crate::message::Output;

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("spread.lua"),
        include_str!("cross_slot.lua")
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

/// One `cross_slot.lua` call: what it writes, and the script invocation.
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
            .any(|o| key_slot(o.stream.as_bytes()) != self.input_slot)
    }

    /// Splits `acks` into what the guarded commit writes (outputs in the input's slot)
    /// and one `cross_slot.lua` call per other slot, for the entries in `writable` whose
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
                let slot = key_slot(output.stream.as_bytes());
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

    /// The `cross_slot.lua` call for `entries`, whose outputs all live in `slot`.
    fn invocation(
        &self,
        id: &ConsumerId,
        slot: u16,
        entries: &[(&str, Vec<&Output>)],
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = SCRIPT.prepare_invoke();
        self.encode(&mut invocation, id, slot, entries);
        invocation
    }

    /// The script's KEYS (each entry's marker, then each output stream once) and ARGV
    /// (marker lifetime, entry count, stream count, then per entry its outputs: stream
    /// index, field count, names and values).
    fn encode<S: Sink>(
        &self,
        sink: &mut S,
        id: &ConsumerId,
        slot: u16,
        entries: &[(&str, Vec<&Output>)],
    ) {
        for (entry, _) in entries {
            sink.key(&marker(slot, id, entry));
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        for output in entries.iter().flat_map(|(_, outputs)| outputs) {
            let next = entries.len() + index.len() + 1;
            if let Entry::Vacant(free) = index.entry(output.stream.as_str()) {
                free.insert(next);
                sink.key(&output.stream);
            }
        }
        sink.arg(u64::try_from(self.marker_ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(entries.len())
            .arg(index.len());
        for (_, outputs) in entries {
            sink.arg(outputs.len());
            for output in outputs {
                sink.arg(index[output.stream.as_str()])
                    .arg(output.fields.len());
                for (name, value) in &output.fields {
                    sink.arg(name).arg(value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::commit::Recorded;

    fn consumer() -> ConsumerId {
        ConsumerId {
            stream: "{x}IN".into(),
            group: "G".into(),
            name: "c".into(),
        }
    }

    fn output(stream: &str, value: &str) -> Output {
        Output {
            stream: stream.into(),
            fields: vec![("n".into(), value.as_bytes().to_vec())],
            raw_names: None,
        }
    }

    fn ack(id: &str, streams: &[&str]) -> Ack {
        Ack {
            id: id.into(),
            outputs: streams.iter().map(|s| output(s, id)).collect(),
            state: Default::default(),
        }
    }

    fn output_streams(ack: &Ack) -> Vec<&str> {
        ack.outputs.iter().map(|o| o.stream.as_str()).collect()
    }

    #[test]
    fn markers_live_in_the_output_slot_and_name_the_group_stream_and_entry() {
        let slot = key_slot(b"{y}OUT");
        let marker = marker(slot, &consumer(), "5-1");
        assert_eq!(
            marker,
            format!("sluice:once:{}:G:{{x}}IN:5-1", tag_for(slot))
        );
        assert_eq!(key_slot(marker.as_bytes()), slot);
    }

    #[test]
    fn outputs_in_the_input_slot_stay_with_the_guarded_commit() {
        let cross = CrossSlot::new("{x}IN", Duration::from_secs(60));
        let local = [ack("1-0", &["{x}OUT", "{x}AUDIT"])];
        assert!(!cross.any_apart(&local));
        let apart = [ack("1-0", &["{x}OUT", "{y}OUT"])];
        assert!(cross.any_apart(&apart));
    }

    #[test]
    fn outputs_elsewhere_are_written_per_slot_for_writable_entries_only() {
        let cross = CrossSlot::new("{x}IN", Duration::from_secs(60));
        let acks = [
            ack("1-0", &["{x}OUT", "{y}OUT", "{z}OUT"]),
            ack("2-0", &["{y}OUT"]),
            ack("3-0", &["{y}OUT"]),
        ];
        let writable = HashSet::from(["1-0", "2-0"]);
        let (local, writes) = cross.split(&consumer(), &acks, &writable);
        assert_eq!(
            local.iter().map(output_streams).collect::<Vec<_>>(),
            [vec!["{x}OUT"], vec![], vec![]],
            "the guarded commit keeps only the input slot's outputs, for every entry"
        );
        let mut slots: Vec<(u16, Vec<String>)> = writes
            .iter()
            .map(|w| {
                let ids = w.entries.iter().map(|(_, id)| id.clone()).collect();
                (w.entries[0].0, ids)
            })
            .collect();
        slots.sort();
        let mut expected = vec![
            (
                key_slot(b"{y}OUT"),
                vec!["1-0".to_owned(), "2-0".to_owned()],
            ),
            (key_slot(b"{z}OUT"), vec!["1-0".to_owned()]),
        ];
        expected.sort();
        assert_eq!(slots, expected, "3-0 is no longer this consumer's");
    }

    #[test]
    fn what_was_written_is_not_written_again_until_settled() {
        let mut cross = CrossSlot::new("{x}IN", Duration::from_secs(60));
        let acks = [ack("1-0", &["{y}OUT"])];
        let writable = HashSet::from(["1-0"]);
        let (_, writes) = cross.split(&consumer(), &acks, &writable);
        for write in writes {
            cross.wrote(write);
        }
        let (_, again) = cross.split(&consumer(), &acks, &writable);
        assert!(
            again.is_empty(),
            "a commit tried again does not write them twice"
        );
        cross.settled(&acks);
        let (_, after) = cross.split(&consumer(), &acks, &writable);
        assert_eq!(after.len(), 1, "forgotten once the guarded commit answered");
    }

    #[test]
    fn a_slot_write_encodes_markers_streams_and_outputs() {
        let cross = CrossSlot::new("{x}IN", Duration::from_millis(1500));
        let first = output("{y}A", "1");
        let second = output("{y}B", "2");
        let entries = [("1-0", vec![&first, &second]), ("2-0", vec![&second])];
        let slot = key_slot(b"{y}A");
        let mut recorded = Recorded::default();
        cross.encode(&mut recorded, &consumer(), slot, &entries);
        assert_eq!(
            recorded.keys,
            [
                marker(slot, &consumer(), "1-0"),
                marker(slot, &consumer(), "2-0"),
                "{y}A".to_owned(),
                "{y}B".to_owned(),
            ]
        );
        let args: Vec<String> = recorded
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        #[rustfmt::skip]
        let expected = [
            "1500", "2", "2",
            "2", "3", "1", "n", "1", "4", "1", "n", "2",
            "1", "4", "1", "n", "2",
        ];
        assert_eq!(args, expected);
    }
}
