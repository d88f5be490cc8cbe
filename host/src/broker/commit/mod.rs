//! The guarded commit (`commit.lua`): outputs, handler state writes and acknowledgements
//! of a whole batch in one atomic script that writes only for entries this consumer still
//! owns.
//!
//! # Layout
//!
//! - this file: what a commit carries ([`Ack`]), where state keys live ([`KeyMap`]), the
//!   partition lease it runs under ([`Fence`]), the script call and its statuses;
//! - [`protocol`]: the wire format, as Rust enums (read ops, write ops, statuses) from
//!   which the script's Lua constants are generated;
//! - [`encode`]: a batch as the script's KEYS and ARGV, into any [`Sink`] (a script
//!   invocation, or a record for tests; `cross_slot` and entry leases use it too);
//! - `commit.lua`: the script itself, its argument layout at its top;
//! - `lua_lint` (tests only): a tiny Lua lexer and the lint that keeps `commit.lua` free
//!   of bare status and opcode codes.

mod encode;
#[cfg(test)]
mod lua_lint;
mod protocol;
#[cfg(test)]
mod tests;

use std::sync::LazyLock;
use std::time::Duration;

use super::consumer_id::ConsumerId;
use super::fault::Fault;
use super::link::CALL_DEADLINE;
use crate::message::{CommitStatus, Output};
use crate::state::{Changes, Read, Write};

#[cfg(test)]
pub(super) use encode::Recorded;
pub(super) use encode::Sink;

/// The commit script: the protocol's constants, `spread`, then `commit.lua`.
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(&script_source()));

/// The commit script's source.
fn script_source() -> String {
    format!(
        "{}{}{}",
        protocol::lua_constants(),
        include_str!("../spread.lua"),
        include_str!("commit.lua")
    )
}

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

/// The script call for `acks`; an output too wide for one `XADD` in Lua is the entry's
/// fault.
pub(super) fn invocation(
    id: &ConsumerId,
    keys: &KeyMap,
    fence: Option<&Fence>,
    acks: &[Ack],
    adopt: bool,
) -> Result<redis::ScriptInvocation<'static>, Fault> {
    let mut invocation = SCRIPT.prepare_invoke();
    encode::encode(&mut invocation, id, keys, fence, acks, adopt)?;
    Ok(invocation)
}

/// The script's answer, one status per entry; a status the protocol does not know
/// (a script of another version) is an error: the outcome is unknown.
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
    codes
        .into_iter()
        .map(|code| {
            protocol::decode_status(code).ok_or_else(|| {
                Fault::unexpected(
                    "commit",
                    &anyhow::anyhow!(
                        "commit script answered status {code}, which no commit status has"
                    ),
                )
            })
        })
        .collect()
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

/// A lease this consumer commits under (a partition lease, or the name lease of its
/// consumer name): the lease key and the value it holds it with
/// (`<daemon>/<fencing token>`). Commits check it before any write (`commit.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease key (in the partition's hash slot).
    pub key: String,
    /// What the key holds while this daemon has the lease.
    pub value: String,
}
