//! The wire format between the commit's encoder ([`super::encode`]) and `commit.lua`:
//! the opcode of each state read and write an entry carries, and the status the script
//! answers for each entry.
//!
//! The Rust enums are the one definition. The script is loaded with a preamble of Lua
//! constants generated from them ([`lua_constants`]: `local WRITE_SET = '1'`...), and
//! `commit.lua` names those constants, never the bare numbers (a unit test holds it to
//! that). The argument layout is described at the top of `commit.lua`.

use std::fmt::Write as _;

use crate::message::CommitStatus;

/// How the commit checks one value an entry read (ARGV's `kind` of a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOp {
    /// `GET key` gave a value (or nothing): `present (0/1) [, value]`.
    Get,
    /// `HGET key field` gave a value (or nothing): `field, present [, value]`.
    HGet,
    /// `HGETALL key` gave these fields: `field count, f1, v1, ...`.
    HGetAll,
}

/// How the commit applies one write (ARGV's `op` of a write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteOp {
    /// `SET key value`: `value`.
    Set,
    /// `DEL key`: nothing.
    Delete,
    /// `HSET key f1 v1 ...`: `field count, f1, v1, ...`.
    HSet,
    /// `INCRBY key delta`: `delta` (the key must then hold an integer, or nothing).
    Add,
}

impl ReadOp {
    /// Every read op.
    pub(crate) const ALL: [ReadOp; 3] = [ReadOp::Get, ReadOp::HGet, ReadOp::HGetAll];

    /// Its opcode on the wire.
    pub(crate) fn code(self) -> u8 {
        match self {
            ReadOp::Get => 1,
            ReadOp::HGet => 2,
            ReadOp::HGetAll => 3,
        }
    }

    /// Its constant's name in `commit.lua`.
    pub(crate) fn lua_name(self) -> &'static str {
        match self {
            ReadOp::Get => "READ_GET",
            ReadOp::HGet => "READ_HGET",
            ReadOp::HGetAll => "READ_HGETALL",
        }
    }
}

impl WriteOp {
    /// Every write op.
    pub(crate) const ALL: [WriteOp; 4] =
        [WriteOp::Set, WriteOp::Delete, WriteOp::HSet, WriteOp::Add];

    /// Its opcode on the wire.
    pub(crate) fn code(self) -> u8 {
        match self {
            WriteOp::Set => 1,
            WriteOp::Delete => 2,
            WriteOp::HSet => 3,
            WriteOp::Add => 4,
        }
    }

    /// Its constant's name in `commit.lua`.
    pub(crate) fn lua_name(self) -> &'static str {
        match self {
            WriteOp::Set => "WRITE_SET",
            WriteOp::Delete => "WRITE_DEL",
            WriteOp::HSet => "WRITE_HSET",
            WriteOp::Add => "WRITE_INCRBY",
        }
    }
}

/// Every commit status, in wire order.
pub(crate) const STATUSES: [CommitStatus; 7] = [
    CommitStatus::NotOwned,
    CommitStatus::Committed,
    CommitStatus::Adopted,
    CommitStatus::Gone,
    CommitStatus::Undelivered,
    CommitStatus::Conflict,
    CommitStatus::StateRefused,
];

/// A commit status's code on the wire.
pub(crate) fn status_code(status: CommitStatus) -> i64 {
    match status {
        CommitStatus::NotOwned => 0,
        CommitStatus::Committed => 1,
        CommitStatus::Adopted => 2,
        CommitStatus::Gone => 3,
        CommitStatus::Undelivered => 4,
        CommitStatus::Conflict => 5,
        CommitStatus::StateRefused => 6,
    }
}

/// A commit status's constant's name in `commit.lua`.
pub(crate) fn status_lua_name(status: CommitStatus) -> &'static str {
    match status {
        CommitStatus::NotOwned => "NOT_OWNED",
        CommitStatus::Committed => "COMMITTED",
        CommitStatus::Adopted => "ADOPTED",
        CommitStatus::Gone => "GONE",
        CommitStatus::Undelivered => "UNDELIVERED",
        CommitStatus::Conflict => "CONFLICT",
        CommitStatus::StateRefused => "STATE_REFUSED",
    }
}

/// The status a wire code stands for; `None` for a code no status has (a script of
/// another version: the outcome is unknown).
pub(crate) fn decode_status(code: i64) -> Option<CommitStatus> {
    STATUSES.into_iter().find(|s| status_code(*s) == code)
}

/// The Lua constants `commit.lua` is loaded with: opcodes as strings (the script
/// compares them with ARGV, which holds strings), statuses as integers.
pub(crate) fn lua_constants() -> String {
    let mut lua =
        String::from("-- Generated from broker/commit/protocol.rs: the wire format's constants.\n");
    let mut constant = |name: &str, value: String| {
        let _ = writeln!(lua, "local {name} = {value}");
    };
    for op in ReadOp::ALL {
        constant(op.lua_name(), format!("'{}'", op.code()));
    }
    for op in WriteOp::ALL {
        constant(op.lua_name(), format!("'{}'", op.code()));
    }
    for status in STATUSES {
        constant(status_lua_name(status), status_code(status).to_string());
    }
    lua
}
