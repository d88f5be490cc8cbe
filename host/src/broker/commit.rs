//! The guarded commit (`commit.lua`): outputs and acknowledgements of a whole batch in one
//! atomic script that writes only for entries this consumer still owns.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use super::consumer_id::ConsumerId;
use super::fault::Fault;
use super::link::CALL_DEADLINE;
use crate::message::{CommitStatus, Output, StreamId};
use crate::state::{Changes, Read, Write};

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(concat!(
        include_str!("spread.lua"),
        include_str!("commit.lua")
    ))
});

/// The widest entry Sluice writes, in fields. The commit script passes an `XADD`'s
/// arguments through `spread` (see `commit.lua`), whose cost grows with the square of
/// the width: 100,000 fields cost ~0.2 s more than a plain `XADD` (0.33 s against
/// 0.14 s), 500,000 fields ~2.8 s more, during which Redis serves no one. Wider entries
/// are not written by a script: see `Rules::dead_letter`.
pub const MAX_FIELDS_PER_OUTPUT: usize = 100_000;

/// Fields one commit carries at most (a wider batch is committed in parts), so that one
/// script call holds Redis for a fraction of a second.
pub const MAX_FIELDS_PER_COMMIT: usize = 200_000;

/// One entry to acknowledge, with everything it produced (handler outputs, or a
/// dead-letter entry).
#[derive(Debug, Clone)]
pub struct Ack {
    /// The input entry's ID.
    pub id: String,
    /// Entries to append, in order, before the acknowledgement.
    pub outputs: Vec<Output>,
    /// Handler state the entry read (checked) and wrote (applied) at the commit.
    pub state: Changes,
}

impl Ack {
    /// How many fields the ack writes.
    pub fn fields(&self) -> usize {
        self.outputs.iter().map(|o| o.fields.len()).sum::<usize>()
            + self.state.reads.len()
            + self.state.writes.len()
    }

    /// Roughly how many bytes the ack adds to a commit: its names and values.
    pub fn size(&self) -> usize {
        let state: usize = self
            .state
            .reads
            .iter()
            .map(|read| match read {
                Read::Str { key, seen } => key.len() + seen.as_ref().map_or(0, Vec::len) + 16,
                Read::Field { key, field, seen } => {
                    key.len() + field.len() + seen.as_ref().map_or(0, Vec::len) + 16
                }
                Read::Hash { key, seen } => {
                    key.len()
                        + seen
                            .iter()
                            .map(|(f, v)| f.len() + v.len() + 16)
                            .sum::<usize>()
                }
            })
            .chain(self.state.writes.iter().map(|write| match write {
                Write::Set { key, value } => key.len() + value.len() + 16,
                Write::HSet { key, field, value } => key.len() + field.len() + value.len() + 16,
                Write::Delete { key } | Write::Add { key, .. } => key.len() + 24,
            }))
            .sum();
        self.id.len()
            + state
            + self
                .outputs
                .iter()
                .flat_map(|o| &o.fields)
                .map(|(name, value)| name.len() + value.len() + 16)
                .sum::<usize>()
    }
}

/// The response deadline of a commit: the usual one, plus a second per 8 MiB it moves.
pub(super) fn deadline(acks: &[Ack]) -> Duration {
    let bytes: usize = acks.iter().map(Ack::size).sum();
    CALL_DEADLINE + Duration::from_secs((bytes / (8 << 20)) as u64)
}

/// A stream ID's order: (milliseconds, sequence). IDs come from Redis; should one not
/// parse, Redis rejects the range and the batch is committed entry by entry.
fn order(id: &&str) -> StreamId {
    StreamId::parse(id)
}

/// The script call for `acks`; an output too wide for one `XADD` in Lua is the entry's
/// fault.
pub(super) fn invocation(
    id: &ConsumerId,
    keys: &KeyMap,
    fence: Option<&Fence>,
    acks: &[Ack],
    adopt: bool,
) -> Result<redis::ScriptInvocation<'static>, Fault> {
    let (stream, group, consumer) = (&id.stream, &id.group, &id.name);
    let mut invocation = SCRIPT.key(stream);
    let mut key_index: HashMap<&str, usize> = HashMap::new();
    for output in acks.iter().flat_map(|a| &a.outputs) {
        if output.fields.len() > MAX_FIELDS_PER_OUTPUT {
            return Err(Fault::from_redis(
                &redis::make_extension_error(
                    "WRONGTYPE".into(),
                    Some(format!(
                        "an output to {:?} has {} fields; at most {MAX_FIELDS_PER_OUTPUT} fit one commit",
                        output.target,
                        output.fields.len()
                    )),
                ),
                "commit",
            ));
        }
        let next = key_index.len() + 2; // Lua arrays start at 1; KEYS[1] is the input
        if let std::collections::hash_map::Entry::Vacant(slot) = key_index.entry(&output.target) {
            slot.insert(next);
            invocation.key(&output.target);
        }
    }
    let output_keys = key_index.len();
    let state_keys = acks.iter().flat_map(|a| {
        a.state
            .reads
            .iter()
            .map(Read::key)
            .chain(a.state.writes.iter().map(Write::key))
    });
    for key in state_keys {
        let next = key_index.len() + 2;
        if let std::collections::hash_map::Entry::Vacant(slot) = key_index.entry(key) {
            slot.insert(next);
            invocation.key(keys.stored(key).as_ref());
        }
    }
    let lease = match fence {
        Some(fence) => {
            invocation.key(&fence.key);
            key_index.len() + 2
        }
        None => 0,
    };
    let ids = || acks.iter().map(|a| a.id.as_str());
    let (Some(low), Some(high)) = (ids().min_by_key(order), ids().max_by_key(order)) else {
        unreachable!("the caller commits at least one entry");
    };
    invocation
        .arg(group)
        .arg(consumer)
        .arg(acks.len())
        .arg(low)
        .arg(high)
        .arg(u8::from(adopt))
        .arg(output_keys)
        .arg(lease)
        .arg(fence.map_or("", |f| f.value.as_str()));
    for ack in acks {
        invocation.arg(&ack.id).arg(ack.outputs.len());
        for output in &ack.outputs {
            invocation
                .arg(key_index[output.target.as_str()])
                .arg(output.fields.len());
            match &output.raw_names {
                Some(raw) if raw.len() == output.fields.len() => {
                    for (name, (_, value)) in raw.iter().zip(&output.fields) {
                        invocation.arg(name).arg(value);
                    }
                }
                _ => {
                    for (name, value) in &output.fields {
                        invocation.arg(name).arg(value);
                    }
                }
            }
        }
        invocation.arg(ack.state.reads.len());
        for read in &ack.state.reads {
            let key = key_index[read.key()];
            match read {
                Read::Str { seen, .. } => {
                    invocation.arg(1).arg(key).arg(u8::from(seen.is_some()));
                    if let Some(value) = seen {
                        invocation.arg(value);
                    }
                }
                Read::Field { field, seen, .. } => {
                    invocation
                        .arg(2)
                        .arg(key)
                        .arg(field)
                        .arg(u8::from(seen.is_some()));
                    if let Some(value) = seen {
                        invocation.arg(value);
                    }
                }
                Read::Hash { seen, .. } => {
                    invocation.arg(3).arg(key).arg(seen.len());
                    for (field, value) in seen {
                        invocation.arg(field).arg(value);
                    }
                }
            }
        }
        // Consecutive fields of one hash go in one HSET (an entry usually writes
        // several fields of one record).
        let mut writes: Vec<(&Write, HashFields)> = Vec::new();
        for write in &ack.state.writes {
            if let Write::HSet { key, field, value } = write
                && let Some((Write::HSet { key: last, .. }, fields)) = writes.last_mut()
                && last == key
                && fields.len() < 1_000
            {
                fields.push((field, value));
                continue;
            }
            let fields = match write {
                Write::HSet { field, value, .. } => vec![(field.as_str(), value.as_slice())],
                _ => Vec::new(),
            };
            writes.push((write, fields));
        }
        invocation.arg(writes.len());
        for (write, fields) in writes {
            let key = key_index[write.key()];
            match write {
                Write::Set { value, .. } => {
                    invocation.arg(1).arg(key).arg(value);
                }
                Write::Delete { .. } => {
                    invocation.arg(2).arg(key);
                }
                Write::HSet { .. } => {
                    invocation.arg(3).arg(key).arg(fields.len());
                    for (field, value) in fields {
                        invocation.arg(field).arg(value);
                    }
                }
                Write::Add { delta, .. } => {
                    invocation.arg(4).arg(key).arg(delta);
                }
            }
        }
    }
    Ok(invocation)
}

/// Fields written to one hash with one `HSET`: (field, value).
type HashFields<'a> = Vec<(&'a str, &'a [u8])>;

/// The script's answer, one status per entry.
pub(super) fn statuses(codes: Vec<i64>, count: usize) -> Result<Vec<CommitStatus>, Fault> {
    if codes.len() != count {
        return Err(Fault::unexpected(
            "commit",
            &anyhow::anyhow!(
                "commit script answered {} statuses for {count} entries",
                codes.len()
            ),
        ));
    }
    Ok(codes
        .into_iter()
        .map(|s| match s {
            1 => CommitStatus::Committed,
            2 => CommitStatus::Adopted,
            3 => CommitStatus::Gone,
            4 => CommitStatus::Undelivered,
            5 => CommitStatus::Conflict,
            6 => CommitStatus::StateRefused,
            _ => CommitStatus::NotOwned,
        })
        .collect())
}

/// Where the handler's state keys live in Redis: each rule maps a prefix the handler
/// uses to the prefix stored (a partition's keys carry its `{p}` tag). Keys no rule
/// covers are stored as they are.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    /// (handler prefix, stored prefix), longest handler prefix first.
    rules: Vec<(String, String)>,
}

impl KeyMap {
    /// A map from (handler prefix, stored prefix) pairs.
    pub fn new(mut rules: Vec<(String, String)>) -> Self {
        rules.retain(|(from, to)| from != to);
        rules.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Self { rules }
    }

    /// The Redis key of the handler's `key`.
    pub fn stored<'a>(&self, key: &'a str) -> std::borrow::Cow<'a, str> {
        for (from, to) in &self.rules {
            if let Some(rest) = key.strip_prefix(from.as_str()) {
                return std::borrow::Cow::Owned(format!("{to}{rest}"));
            }
        }
        std::borrow::Cow::Borrowed(key)
    }
}

/// A partition lease this consumer commits under: the lease key and the value it holds
/// it with (`<daemon>/<fencing token>`). Commits check it (`commit.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease key (in the partition's hash slot).
    pub key: String,
    /// What the key holds while this daemon has the lease.
    pub value: String,
}
