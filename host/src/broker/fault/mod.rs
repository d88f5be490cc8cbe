//! The one place Redis errors are classified.
//!
//! Every error Sluice gets from Redis (a reply error, a dropped or stalled connection, a
//! deadline passed) becomes a [`Fault`] with two answers:
//!
//! - **who is at fault** ([`Blame`]): the *entry* (only that entry may be dead-lettered,
//!   e.g. `WRONGTYPE` on one of its output keys, a value larger than the server accepts)
//!   or the *environment* (permissions, a lost consumer group, a read-only replica, out of
//!   memory, loading, busy, cluster redirects, connection loss: nothing is dead-lettered,
//!   the pipeline backs off and shows the error). Anything not known is the environment.
//! - **what to do** ([`Remedy`]): wait and try again, drop the connection and open a new
//!   one (re-resolving the host: the node behind the name may have changed), or create
//!   the consumer group again.
//!
//! Error codes are Redis's (<https://redis.io/docs/latest/develop/reference/protocol-spec/#simple-errors>);
//! the classification starts from redis-rs's `kind()` and `retry_method()`.

mod backoff;
mod classify;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use redis::ErrorKind;

use classify::classify;

pub use backoff::Backoff;

/// Who a Redis error is the fault of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The entry being committed: only it may be dead-lettered, with the reason.
    Entry,
    /// The server, the network or the deployment: never dead-letter; back off and show it.
    Environment,
}

/// What makes the next try worth making.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Wait (backoff) and try again on the same connection.
    Wait,
    /// Drop the connection and open a new one: it is broken, stalled, or leads to a node
    /// that no longer takes writes (`READONLY`, `MASTERDOWN`, `UNBLOCKED`).
    Reconnect,
    /// The consumer group (or its stream) is gone (`NOGROUP`): create it again.
    RecreateGroup,
}

/// A classified Redis error.
#[derive(Debug, Clone)]
pub struct Fault {
    blame: Blame,
    remedy: Remedy,
    /// Redis's error code (`NOPERM`, `READONLY`...), or `IO`/`TIMEOUT` for the network.
    code: String,
    /// What was being done, and what went wrong (never a password: URLs are not quoted).
    message: String,
    /// Whether it happened while opening a connection (nothing of the call was sent).
    connecting: bool,
}

impl Fault {
    /// Classifies `error`, which happened while doing `what`.
    pub fn from_redis(error: &redis::RedisError, what: &str) -> Self {
        let (blame, remedy, code) = classify(error);
        // Redis's own words, code first (`NOPERM this user has no permissions...`), as
        // redis-cli shows them; the network's errors as the OS tells them.
        let mut message = match (error.code(), error.detail()) {
            (Some(code), Some(detail)) => format!("{what}: {code} {detail}"),
            _ => format!("{what}: {error}"),
        };
        if code == "NOPERM" && error.code() == Some("ERR") {
            message.push_str(
                " (NOPERM: the ACL user may not run a command of Sluice's commit script; it needs +@stream +type +evalsha +script|load)",
            );
        }
        if error.kind() == ErrorKind::MasterNameNotFoundBySentinel {
            message.push_str(
                " (the sentinels name no reachable primary by [redis] master: a failover in progress, or a name the sentinels do not monitor)",
            );
        }
        if error
            .detail()
            .is_some_and(|d| d.starts_with("Protocol error"))
        {
            message.push_str(
                " (the server refused a value of the command for its size: see its proto-max-bulk-len and client-query-buffer-limit)",
            );
        }
        Self {
            blame,
            remedy,
            code,
            message,
            connecting: false,
        }
    }

    /// A call that got no answer within `deadline`: the connection is taken as stalled.
    pub fn deadline(what: &str, deadline: Duration) -> Self {
        Self {
            blame: Blame::Environment,
            remedy: Remedy::Reconnect,
            code: "TIMEOUT".to_owned(),
            message: format!(
                "{what}: no answer from redis within {deadline:?}; the connection is dropped and opened again"
            ),
            connecting: false,
        }
    }

    /// Fewer replicas than `wanted` acknowledged the last commit within `timeout`
    /// (`WAIT`). The commit stands on the primary; nothing more is handled until they do.
    pub fn unreplicated(acked: u32, wanted: u32, timeout: Duration) -> Self {
        Self {
            blame: Blame::Environment,
            remedy: Remedy::Wait,
            code: "WAIT".to_owned(),
            message: format!(
                "only {acked} of the {wanted} replicas in [redis] wait_replicas acknowledged the last commit within {timeout:?}; no entry is handled until they do (are the replicas up and connected to the primary? INFO replication on the primary lists them)"
            ),
            connecting: false,
        }
    }

    /// Something of the entry being committed that Redis would refuse as `WRONGTYPE`
    /// (an output too wide for one commit), found before sending it: the entry's fault.
    pub fn entry_refused(what: &str, detail: &str) -> Self {
        Self {
            blame: Blame::Entry,
            remedy: Remedy::Wait,
            code: "WRONGTYPE".to_owned(),
            message: format!("{what}: WRONGTYPE {detail}"),
            connecting: false,
        }
    }

    /// The consumer group is gone, as a reply showed without Redis's `NOGROUP` (`XINFO
    /// GROUPS` no longer lists it): create it again.
    pub fn group_missing(what: &str, detail: &str) -> Self {
        Self {
            blame: Blame::Environment,
            remedy: Remedy::RecreateGroup,
            code: "NOGROUP".to_owned(),
            message: format!("{what}: NOGROUP {detail}"),
            connecting: false,
        }
    }

    /// A reply Sluice could not make sense of (a protocol mismatch): the environment's.
    pub fn unexpected(what: &str, error: &anyhow::Error) -> Self {
        Self {
            blame: Blame::Environment,
            remedy: Remedy::Reconnect,
            code: "REPLY".to_owned(),
            message: format!("{what}: {error:#}"),
            connecting: false,
        }
    }

    /// Who is at fault.
    pub fn blame(&self) -> Blame {
        self.blame
    }

    /// What to do before the next try.
    pub fn remedy(&self) -> Remedy {
        self.remedy
    }

    /// Redis's error code (`NOPERM`, `NOGROUP`, `READONLY`...), `IO` for a broken
    /// connection, `TIMEOUT` for a deadline passed.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Whether the error is a missing ACL permission.
    pub fn is_permission(&self) -> bool {
        self.code == "NOPERM" || self.code == "WRONGPASS" || self.code == "NOAUTH"
    }

    /// Marks the fault as met while opening a connection: nothing of the call was sent.
    pub fn while_connecting(mut self) -> Self {
        self.connecting = true;
        self
    }

    /// Whether the connection broke under the call, after it was sent: the server may
    /// have refused what was sent by closing the connection (a value over
    /// `proto-max-bulk-len`). Not a missed deadline (a stall says nothing about the
    /// call), nor a failure to open a connection.
    pub fn is_dropped_under_call(&self) -> bool {
        self.code == "IO" && !self.connecting
    }

    /// Adds what Sluice found out about the error (which key a permission is missing for).
    pub fn explain(mut self, detail: &str) -> Self {
        self.message = format!("{}; {detail}", self.message);
        self
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fault {}
