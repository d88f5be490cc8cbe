//! The model of handler state: what a layer knows of a key, what an entry read and
//! wrote, why a state call failed, and the store below every layer (Redis).

use std::collections::BTreeMap;

use futures::future::BoxFuture;

/// A value: any bytes.
pub type Bytes = Vec<u8>;

/// What a layer knows of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// Deleted (or read as absent).
    Absent,
    /// A string.
    Str(Bytes),
    /// An integer the layers below hold, plus this (blind `add`s).
    Delta(i64),
    /// A hash's fields; `complete` when they are all of them, else the layers below may
    /// hold more.
    Hash {
        /// Fields by name.
        fields: BTreeMap<String, Bytes>,
        /// Whether `fields` is the whole hash.
        complete: bool,
    },
}

/// A value an entry read from below its own writes; the commit checks it still holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// `GET key` gave `seen` (`None`: no such key).
    Str {
        /// The key.
        key: String,
        /// What it held.
        seen: Option<Bytes>,
    },
    /// `HGET key field` gave `seen`.
    Field {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// What it held.
        seen: Option<Bytes>,
    },
    /// `HGETALL key` gave `seen`.
    Hash {
        /// The hash.
        key: String,
        /// Every field.
        seen: BTreeMap<String, Bytes>,
    },
}

/// A write an entry made, applied in order at its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// `SET key value`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// `DEL key`.
    Delete {
        /// The key.
        key: String,
    },
    /// `HSET key field value`.
    HSet {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// The value.
        value: Bytes,
    },
    /// `INCRBY key delta`, unread.
    Add {
        /// The key.
        key: String,
        /// What to add.
        delta: i64,
    },
}

impl Write {
    /// The key written.
    pub fn key(&self) -> &str {
        match self {
            Write::Set { key, .. }
            | Write::Delete { key }
            | Write::HSet { key, .. }
            | Write::Add { key, .. } => key,
        }
    }
}

impl Read {
    /// The key read.
    pub fn key(&self) -> &str {
        match self {
            Read::Str { key, .. } | Read::Field { key, .. } | Read::Hash { key, .. } => key,
        }
    }
}

/// What one entry read and wrote: carried from its handler call to its commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Reads to check at the commit.
    pub reads: Vec<Read>,
    /// Writes to apply at the commit, in order.
    pub writes: Vec<Write>,
}

impl Changes {
    /// Whether the entry touched no state.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.writes.is_empty()
    }
}

/// Why a state call failed (the WIT `state-error`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The key is outside the pipeline's `state` prefixes.
    #[error("{0}")]
    Forbidden(String),
    /// The key holds another type, or `incr` met a value that is not an integer.
    #[error("{0}")]
    WrongType(String),
    /// Redis could not be read now.
    #[error("{0}")]
    Unavailable(String),
    /// The call failed on what the batch's earlier entries wrote, which are not
    /// committed yet: the entry is handled again after their commit (no attempt
    /// counted). The guest sees `unavailable`.
    #[error("{0}")]
    Conflict(String),
}

/// Redis, the bottom layer: committed values.
pub trait Store: Send + Sync {
    /// `GET key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StateError>>;
    /// `HGET key field`.
    fn hget<'a>(
        &'a self,
        key: &'a str,
        field: &'a str,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StateError>>;
    /// `HGETALL key`.
    fn hgetall<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Bytes>, StateError>>;
}
