//! The guarded commit (`commit.lua`): outputs and acknowledgements of a whole batch in one
//! atomic script that writes only for entries this consumer still owns.

use std::collections::HashMap;
use std::sync::LazyLock;

use anyhow::{Context, Result, bail};
use redis::aio::ConnectionManager;

use crate::message::{CommitStatus, Output};

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("commit.lua")));

/// Lua's `unpack` takes at most ~8,000 values; one XADD must stay below that.
pub const MAX_FIELDS_PER_OUTPUT: usize = 3_900;

/// One entry to acknowledge, with everything it produced (handler outputs, or a
/// dead-letter entry).
#[derive(Debug, Clone)]
pub struct Ack {
    /// The input entry's ID.
    pub id: String,
    /// Entries to append, in order, before the acknowledgement.
    pub outputs: Vec<Output>,
}

pub(super) async fn run(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    consumer: &str,
    acks: &[Ack],
) -> Result<Vec<CommitStatus>> {
    let mut invocation = SCRIPT.key(stream);
    let mut key_index: HashMap<&str, usize> = HashMap::new();
    for output in acks.iter().flat_map(|a| &a.outputs) {
        if output.fields.len() > MAX_FIELDS_PER_OUTPUT {
            bail!(
                "an output to {:?} has {} fields; at most {MAX_FIELDS_PER_OUTPUT} fit one commit",
                output.target,
                output.fields.len()
            );
        }
        let next = key_index.len() + 2; // Lua arrays start at 1; KEYS[1] is the input
        if let std::collections::hash_map::Entry::Vacant(slot) = key_index.entry(&output.target) {
            slot.insert(next);
            invocation.key(&output.target);
        }
    }
    invocation.arg(group).arg(consumer).arg(acks.len());
    for ack in acks {
        invocation.arg(&ack.id).arg(ack.outputs.len());
        for output in &ack.outputs {
            invocation
                .arg(key_index[output.target.as_str()])
                .arg(output.fields.len());
            for (name, value) in &output.fields {
                invocation.arg(name).arg(value);
            }
        }
    }
    let statuses: Vec<i64> = invocation
        .invoke_async(conn)
        .await
        .with_context(|| format!("commit of {} entries on {stream:?} failed", acks.len()))?;
    if statuses.len() != acks.len() {
        bail!(
            "commit script answered {} statuses for {} entries",
            statuses.len(),
            acks.len()
        );
    }
    Ok(statuses
        .into_iter()
        .map(|s| {
            if s == 1 {
                CommitStatus::Committed
            } else {
                CommitStatus::NotOwned
            }
        })
        .collect())
}
