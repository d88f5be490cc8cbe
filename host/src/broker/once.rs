//! Outputs in other hash slots than the input (`cross_slot = true`, Redis Cluster only).
//!
//! One script runs on one node and touches one slot, so the guarded commit cannot write
//! an output stream that lives elsewhere. Such outputs are written first, per slot, by
//! `once.lua`: each input entry leaves a marker key in that slot (`SET NX PX`), and an
//! entry whose marker is there already writes nothing. Then the guarded commit writes the
//! rest and acknowledges the input. However often the commit is repeated (a lost reply, a
//! daemon that died before its guarded commit, another consumer that took the entry over
//! and handled it again), each output slot gets an entry's outputs once — as long as the
//! repeat comes within the marker's expiry. The first try's outputs are the ones kept.
//!
//! Cost: per batch, one more script call for each other slot its outputs go to, and per
//! entry a marker of ~100 bytes in each such slot for the marker's lifetime.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use super::commit::Ack;
use super::consumer::ConsumerId;
use super::fault::Fault;
use super::slot::{key_slot, tag_of};
use crate::message::Output;

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("spread.lua"),
        include_str!("once.lua")
    ))
});

/// How a consumer writes outputs outside its input's slot.
#[derive(Debug, Clone)]
pub struct CrossSlot {
    input_slot: u16,
    marker_ttl: Duration,
}

/// The marker of entry `id` of `group` on `input`, in the slot whose keys take `tag`.
pub fn marker(tag: &str, id: &ConsumerId, entry: &str) -> String {
    format!("sluice:once:{tag}:{}:{}:{entry}", id.group, id.stream)
}

impl CrossSlot {
    /// For a consumer of `input`; markers expire after `marker_ttl`.
    pub fn new(input: &str, marker_ttl: Duration) -> Self {
        Self {
            input_slot: key_slot(input.as_bytes()),
            marker_ttl,
        }
    }

    /// Splits `acks` into what the guarded commit writes (outputs in the input's slot)
    /// and one `once.lua` call per other slot. An output stream no marker can share a
    /// slot with (see [`tag_of`]; refused at start-up) is the entry's fault.
    pub(super) fn split(
        &self,
        id: &ConsumerId,
        acks: &[Ack],
    ) -> Result<(Vec<Ack>, Vec<redis::ScriptInvocation<'static>>), Fault> {
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
            for (slot, outputs) in elsewhere {
                apart.entry(slot).or_default().push((&ack.id, outputs));
            }
            local.push(Ack {
                id: ack.id.clone(),
                outputs: kept,
                state: ack.state.clone(),
            });
        }
        let calls = apart
            .into_values()
            .map(|entries| self.invocation(id, &entries))
            .collect::<Result<_, _>>()?;
        Ok((local, calls))
    }

    /// The `once.lua` call for `entries`, whose outputs all live in one slot.
    fn invocation(
        &self,
        id: &ConsumerId,
        entries: &[(&str, Vec<&Output>)],
    ) -> Result<redis::ScriptInvocation<'static>, Fault> {
        let first = &entries[0].1[0].target;
        let Some(tag) = tag_of(first) else {
            return Err(Fault::from_redis(
                &redis::make_extension_error(
                    "WRONGTYPE".into(),
                    Some(format!(
                        "output {first:?} is in another hash slot than the input, and no marker key can share its slot: give it a {{hash tag}}"
                    )),
                ),
                "cross-slot outputs",
            ));
        };
        let mut invocation = SCRIPT.prepare_invoke();
        for (entry, _) in entries {
            invocation.key(marker(&tag, id, entry));
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        for output in entries.iter().flat_map(|(_, outputs)| outputs) {
            let next = entries.len() + index.len() + 1;
            if let std::collections::hash_map::Entry::Vacant(slot) =
                index.entry(output.target.as_str())
            {
                slot.insert(next);
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
        Ok(invocation)
    }
}
