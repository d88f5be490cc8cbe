//! Domain types shared by the broker (Redis) and the sandbox (Wasm), which never meet.

use std::fmt;

/// One field of a stream entry: a text name and a binary-safe value.
pub type Field = (String, Vec<u8>);

/// A stream entry ID parsed, ordered as Redis orders them: milliseconds, then sequence
/// (<https://redis.io/docs/latest/develop/data-types/streams/#entry-ids>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct StreamId {
    /// Unix time in milliseconds when the entry was added (by the server's clock, for
    /// `*` IDs).
    pub ms: u64,
    /// The sequence number within that millisecond.
    pub seq: u64,
}

impl StreamId {
    /// Parses `ms-seq` (or `ms`); anything else is the smallest ID, `0-0`.
    pub fn parse(id: &str) -> Self {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        match (ms.parse(), seq.parse()) {
            (Ok(ms), Ok(seq)) => Self { ms, seq },
            _ => Self::default(),
        }
    }
}

impl StreamId {
    /// The smallest ID after this one; `None` after the largest.
    pub fn successor(self) -> Option<Self> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(Self { seq, ..self }),
            None => Some(Self {
                ms: self.ms.checked_add(1)?,
                seq: 0,
            }),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Text that is not a stream entry ID (see [`StreamId`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a stream entry ID: expected MS-SEQ or MS (decimal digits, e.g. 1700000000000-0)"
)]
pub struct InvalidStreamId(pub String);

/// Strict parsing, for IDs a person typed: `ms-seq` or `ms` (meaning `ms-0`, as Redis
/// reads an ID without sequence at the start of an `XRANGE`), each part decimal digits
/// that fit in 64 bits (leading zeros allowed, as Redis allows them); no sign, space,
/// `-`, `+` or `*`. [`Display`](fmt::Display) gives the canonical form.
impl std::str::FromStr for StreamId {
    type Err = InvalidStreamId;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten()
        };
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        match (number(ms), number(seq)) {
            (Some(ms), Some(seq)) => Ok(Self { ms, seq }),
            _ => Err(InvalidStreamId(id.to_owned())),
        }
    }
}

/// A stream entry read through a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The entry ID, e.g. `1700000000000-0`.
    pub id: String,
    /// Fields in stream order.
    pub fields: Vec<Field>,
    /// Deliveries so far, this one included (1 on the first).
    pub attempt: u32,
    /// The exact bytes of every field name, in order, when some name is not UTF-8 (then
    /// `fields` holds them with invalid bytes replaced, and the entry is not handed to a
    /// handler: WIT names are strings). `None` when every name is UTF-8.
    pub raw_names: Option<Vec<Vec<u8>>>,
    /// This delivery's trace, when the pipeline traces the entry (its `traceparent`
    /// field, or a new trace): set by the pipeline once the entry is read.
    pub trace: Option<crate::trace_context::EntryTrace>,
}

/// An entry to append to a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// The stream key.
    pub stream: String,
    /// Fields in order; Redis requires at least one.
    pub fields: Vec<Field>,
    /// The exact bytes to write for every field name, in order, instead of the names in
    /// `fields` (a dead letter of an entry whose names are not UTF-8).
    pub raw_names: Option<Vec<Vec<u8>>>,
}

/// The dead-letter format: the field names of the metadata that leads every dead-letter
/// entry; the entry's original fields follow unchanged, in order, byte for byte.
pub mod dead_letter_fields {
    /// Why the entry was dead-lettered.
    pub const ERROR: &str = "sluice.error";
    /// The stream it was read from.
    pub const SOURCE: &str = "sluice.source";
    /// Its ID in that stream.
    pub const ID: &str = "sluice.id";
    /// The pipeline that gave up on it.
    pub const PIPELINE: &str = "sluice.pipeline";
    /// The digest of the plugin version that handled it last.
    pub const PLUGIN: &str = "sluice.plugin";
    /// How many deliveries were made.
    pub const ATTEMPTS: &str = "sluice.attempts";
    /// How many metadata fields precede the original ones.
    pub const COUNT: usize = 6;
}

/// Why a handler did not produce outputs for an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The handler asked for a later redelivery.
    #[error("handler asked to retry: {0}")]
    Retry(String),
    /// The handler refused the entry for good.
    #[error("handler rejected the message: {0}")]
    Reject(String),
    /// The guest trapped (panic, unreachable, out of bounds...).
    #[error("handler trapped: {0}")]
    Trap(String),
    /// The call ran past the pipeline's `limits.timeout`.
    #[error("limits.timeout ({0:?}) exceeded")]
    Timeout(std::time::Duration),
    /// The call broke another limit (memory, fuel, outputs); the text names it.
    #[error("{0}")]
    Limit(String),
    /// The instance could not be created (a broken plugin, out of memory...).
    #[error("handler could not be instantiated: {0}")]
    Instantiate(String),
    /// A handler-state call failed on writes of the batch's earlier entries, not yet
    /// committed: the entry is handled again after their commit, no attempt counted.
    #[error("handler state changed under the call: {0}")]
    Conflict(String),
}

impl HandlerError {
    /// Whether the entry should be delivered again (until `max_attempts`).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, HandlerError::Reject(_))
    }

    /// Every kind of failure `sluice_handler_failures_total` counts (registered at 0).
    /// `conflict` is not one: the entry is handled again without an attempt counted, and
    /// `sluice_state_conflicts_total` counts it.
    pub const KINDS: [&'static str; 6] =
        ["retry", "reject", "trap", "timeout", "limit", "instantiate"];

    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::Retry(_) => "retry",
            HandlerError::Reject(_) => "reject",
            HandlerError::Trap(_) => "trap",
            HandlerError::Timeout(_) => "timeout",
            HandlerError::Limit(_) => "limit",
            HandlerError::Instantiate(_) => "instantiate",
            HandlerError::Conflict(_) => "conflict",
        }
    }
}

/// What happened to one entry in a guarded commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStatus {
    /// Outputs written and the entry acknowledged.
    Committed,
    /// The entry is pending for another consumer (it was claimed away): nothing was
    /// written.
    NotOwned,
    /// The entry was pending for no consumer at all (removed from the pending entries
    /// list under its owner: `XGROUP DELCONSUMER`, a destroyed group) and its entry lease
    /// had not lapsed: its outputs were written (recovered) with nothing to acknowledge.
    Adopted,
    /// The entry was pending for no consumer and could not be adopted (an earlier try of
    /// the same commit may have gone through): nothing was written.
    Gone,
    /// The entry was pending for no consumer and its ID is past the group's
    /// last-delivered ID: the server has no record of delivering it (a failover lost the
    /// delivery with the old primary). Nothing was written; it is delivered again.
    Undelivered,
    /// A value the entry's handler read (handler state) changed before the commit:
    /// nothing was written; the entry is handled again, without counting an attempt.
    Conflict,
    /// A hash write of the entry's handler met a key of another type: nothing was
    /// written; the entry is dead-lettered.
    StateRefused,
}

impl fmt::Display for CommitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommitStatus::Committed => "committed",
            CommitStatus::NotOwned => "not owned",
            CommitStatus::Adopted => "adopted",
            CommitStatus::Gone => "gone",
            CommitStatus::Undelivered => "undelivered",
            CommitStatus::Conflict => "conflict",
            CommitStatus::StateRefused => "state refused",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        assert!(StreamId::parse("10-0") > StreamId::parse("9-5"));
        assert!(StreamId::parse("5-10") > StreamId::parse("5-9"));
        assert_eq!(StreamId::parse("7"), StreamId::parse("7-0"));
        assert_eq!(StreamId::parse("x-1"), StreamId::default());
        assert_eq!(StreamId::parse("1700000000000-3").ms, 1_700_000_000_000);
        assert_eq!(StreamId::parse("12-3").to_string(), "12-3");
    }

    #[test]
    fn the_successor_is_the_next_id() {
        let next = |id: &str| StreamId::parse(id).successor().map(|n| n.to_string());
        assert_eq!(next("5-3").as_deref(), Some("5-4"));
        let max = u64::MAX;
        assert_eq!(next(&format!("5-{max}")).as_deref(), Some("6-0"));
        assert_eq!(next(&format!("{max}-{max}")), None);
    }

    #[test]
    fn typed_ids_are_canonicalised_or_refused() {
        let canonical = |id: &str| id.parse::<StreamId>().map(|id| id.to_string());
        assert_eq!(
            canonical("1796527819466-0").as_deref(),
            Ok("1796527819466-0")
        );
        assert_eq!(
            canonical("01796527819466-0").as_deref(),
            Ok("1796527819466-0")
        );
        assert_eq!(canonical("1796527819466").as_deref(), Ok("1796527819466-0"));
        assert_eq!(canonical("7-007").as_deref(), Ok("7-7"));
        let max = "18446744073709551615-18446744073709551615";
        assert_eq!(canonical(max).as_deref(), Ok(max));
        for bad in [
            "",
            "-",
            "+",
            "*",
            "notanid",
            "1-",
            "-1",
            "1-2-3",
            "+5",
            "5-+1",
            " 5",
            "5 ",
            "1.5",
            "0x10",
            "18446744073709551616",
            "1-18446744073709551616",
            "5-*",
        ] {
            let refused = bad.parse::<StreamId>().expect_err(bad);
            assert_eq!(refused, InvalidStreamId(bad.to_owned()));
            assert!(refused.to_string().starts_with(&format!("{bad:?} is not")));
        }
    }
}
