//! The guarded commit (`commit.lua`): outputs and acknowledgements of a whole batch in one
//! atomic script that writes only for entries this consumer still owns.

use std::collections::HashMap;
use std::sync::LazyLock;

use anyhow::anyhow;
use redis::aio::ConnectionManager;

use crate::message::{CommitStatus, Output};

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("commit.lua")));

/// Lua's `unpack` takes at most ~8,000 values; one XADD must stay below that.
pub const MAX_FIELDS_PER_OUTPUT: usize = 3_900;

/// Why a commit did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Redis could not be reached or did not answer in time: the outcome is unknown.
    /// Committing again is safe (the commit is guarded).
    #[error("redis unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Redis refused the commit (an output key that is not a stream, say): nothing of
    /// the batch was written, and committing the same batch again will fail again.
    #[error("redis refused the commit: {0}")]
    Refused(String),
}

/// Whether Redis answered with an error that repeating the same commit cannot cure.
/// Errors that pass (a loading or busy server, a failover, out of memory) are not.
fn is_refusal(e: &redis::RedisError) -> bool {
    const TRANSIENT: &[&str] = &[
        "LOADING",
        "BUSY",
        "TRYAGAIN",
        "MASTERDOWN",
        "READONLY",
        "OOM",
        "CLUSTERDOWN",
        "NOSCRIPT",
    ];
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return false;
    }
    e.code().is_some_and(|code| !TRANSIENT.contains(&code))
}

/// One entry to acknowledge, with everything it produced (handler outputs, or a
/// dead-letter entry).
#[derive(Debug, Clone)]
pub struct Ack {
    /// The input entry's ID.
    pub id: String,
    /// Entries to append, in order, before the acknowledgement.
    pub outputs: Vec<Output>,
}

/// A stream ID's order: (milliseconds, sequence). IDs come from Redis; should one not
/// parse, Redis rejects the range and the batch is committed entry by entry.
fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

pub(super) async fn run(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    consumer: &str,
    acks: &[Ack],
) -> Result<Vec<CommitStatus>, CommitError> {
    let mut invocation = SCRIPT.key(stream);
    let mut key_index: HashMap<&str, usize> = HashMap::new();
    for output in acks.iter().flat_map(|a| &a.outputs) {
        if output.fields.len() > MAX_FIELDS_PER_OUTPUT {
            return Err(CommitError::Refused(format!(
                "an output to {:?} has {} fields; at most {MAX_FIELDS_PER_OUTPUT} fit one commit",
                output.target,
                output.fields.len()
            )));
        }
        let next = key_index.len() + 2; // Lua arrays start at 1; KEYS[1] is the input
        if let std::collections::hash_map::Entry::Vacant(slot) = key_index.entry(&output.target) {
            slot.insert(next);
            invocation.key(&output.target);
        }
    }
    if acks.is_empty() {
        return Ok(Vec::new());
    }
    let by_order = |id: &&str| parse_id(id);
    let ids = || acks.iter().map(|a| a.id.as_str());
    let (Some(low), Some(high)) = (ids().min_by_key(by_order), ids().max_by_key(by_order)) else {
        unreachable!("acks is not empty");
    };
    invocation
        .arg(group)
        .arg(consumer)
        .arg(acks.len())
        .arg(low)
        .arg(high);
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
    let statuses: Vec<i64> = invocation.invoke_async(conn).await.map_err(|e| {
        let context = format!("commit of {} entries on {stream:?}", acks.len());
        if is_refusal(&e) {
            CommitError::Refused(format!("{context}: {e}"))
        } else {
            CommitError::Unavailable(anyhow::Error::new(e).context(context))
        }
    })?;
    if statuses.len() != acks.len() {
        return Err(CommitError::Unavailable(anyhow!(
            "commit script answered {} statuses for {} entries",
            statuses.len(),
            acks.len()
        )));
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
