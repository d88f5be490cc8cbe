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

use std::fmt;
use std::time::Duration;

use redis::{ErrorKind, RetryMethod, ServerErrorKind};

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

/// Server error codes whose cure is a new connection: the node behind it changed role.
const RECONNECT_CODES: &[&str] = &["READONLY", "MASTERDOWN", "UNBLOCKED", "MOVED", "ASK"];
/// Server error codes the entry being written is at fault for.
const ENTRY_CODES: &[&str] = &["WRONGTYPE"];

fn classify(error: &redis::RedisError) -> (Blame, Remedy, String) {
    use Blame::{Entry, Environment};
    let code = error.code().map(str::to_owned);
    if let Some(code) = &code {
        let code = code.as_str();
        if code == "NOGROUP" {
            return (Environment, Remedy::RecreateGroup, code.to_owned());
        }
        if RECONNECT_CODES.contains(&code) {
            return (Environment, Remedy::Reconnect, code.to_owned());
        }
        if ENTRY_CODES.contains(&code) {
            return (Entry, Remedy::Wait, code.to_owned());
        }
        if code == "ERR" {
            let detail = error.detail().unwrap_or_default();
            // The server refused a value of the commit for its size ("invalid bulk
            // length" past `proto-max-bulk-len`; Lua's "too many results to unpack").
            if detail.starts_with("Protocol error") || detail.contains("too many results") {
                return (Entry, Remedy::Reconnect, code.to_owned());
            }
            // A command inside a script that the ACL user may not run: a permission
            // fault like NOPERM, though Redis answers ERR.
            if detail.contains("can't run this command") {
                return (Environment, Remedy::Wait, "NOPERM".to_owned());
            }
            return (Environment, Remedy::Wait, code.to_owned());
        }
    }
    match error.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => (Environment, Remedy::Wait, "NOPERM".into()),
        ErrorKind::Server(ServerErrorKind::ReadOnly) => {
            (Environment, Remedy::Reconnect, "READONLY".into())
        }
        ErrorKind::AuthenticationFailed => (Environment, Remedy::Reconnect, "WRONGPASS".into()),
        ErrorKind::Io => (Environment, Remedy::Reconnect, "IO".into()),
        _ => {
            let remedy = match error.retry_method() {
                RetryMethod::Reconnect
                | RetryMethod::ReconnectFromInitialConnections
                | RetryMethod::MovedRedirect
                | RetryMethod::AskRedirect
                | RetryMethod::RefreshSlotsAndRetry => Remedy::Reconnect,
                RetryMethod::NoRetry
                | RetryMethod::RetryImmediately
                | RetryMethod::WaitAndRetry => Remedy::Wait,
                // redis-rs's enum is non-exhaustive: a new way is the environment's.
                #[allow(unreachable_patterns)]
                _ => Remedy::Wait,
            };
            let code = code.unwrap_or_else(|| {
                if error.is_timeout() {
                    "TIMEOUT".into()
                } else {
                    "UNKNOWN".into()
                }
            });
            (Environment, remedy, code)
        }
    }
}

/// One retry policy for everything that talks to Redis: jittered exponential backoff
/// (equal jitter: half the delay fixed, half random), from `min` doubling up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Delays from `min` doubling to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            failures: 0,
        }
    }

    /// The policy for Redis calls: 100 ms doubling to 5 s.
    pub fn redis() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures (a call succeeded).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exponent = (self.failures - 1).min(31);
        let delay = self.min.saturating_mul(1u32 << exponent).min(self.max);
        let random = rand_fraction();
        delay / 2 + (delay / 2).mul_f64(random)
    }

    /// Counts a failure and waits; returns `false` at once if `cancel` fires first.
    pub async fn wait(&mut self, cancel: &tokio_util::sync::CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// A number in [0, 1) from the standard library's randomly seeded hasher (no `rand` crate
/// for one jitter).
fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (hasher.finish() % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, detail: &str) -> redis::RedisError {
        redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
    }

    #[test]
    fn each_error_has_one_answer() {
        let cases = [
            (
                "NOGROUP",
                "No such key 'IN' or consumer group 'G'",
                Blame::Environment,
                Remedy::RecreateGroup,
            ),
            (
                "NOPERM",
                "this user has no permissions",
                Blame::Environment,
                Remedy::Wait,
            ),
            (
                "READONLY",
                "You can't write against a read only replica.",
                Blame::Environment,
                Remedy::Reconnect,
            ),
            (
                "MASTERDOWN",
                "Link with MASTER is down",
                Blame::Environment,
                Remedy::Reconnect,
            ),
            (
                "UNBLOCKED",
                "force unblock from blocking operation",
                Blame::Environment,
                Remedy::Reconnect,
            ),
            (
                "LOADING",
                "Redis is loading the dataset in memory",
                Blame::Environment,
                Remedy::Wait,
            ),
            (
                "BUSY",
                "Redis is busy running a script",
                Blame::Environment,
                Remedy::Wait,
            ),
            (
                "OOM",
                "command not allowed when used memory > 'maxmemory'",
                Blame::Environment,
                Remedy::Wait,
            ),
            (
                "WRONGTYPE",
                "output key OUT holds a string",
                Blame::Entry,
                Remedy::Wait,
            ),
            (
                "ERR",
                "Protocol error: invalid bulk length",
                Blame::Entry,
                Remedy::Reconnect,
            ),
            ("ERR", "something new", Blame::Environment, Remedy::Wait),
            (
                "SOMETHINGNEW",
                "a code this version does not know",
                Blame::Environment,
                Remedy::Wait,
            ),
        ];
        for (code, detail, blame, remedy) in cases {
            let fault = Fault::from_redis(&server(code, detail), "test");
            assert_eq!(
                (fault.blame(), fault.remedy()),
                (blame, remedy),
                "{code} {detail}"
            );
            assert_eq!(fault.code(), code);
        }
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let fault = Fault::from_redis(&io, "test");
        assert_eq!(
            (fault.blame(), fault.remedy()),
            (Blame::Environment, Remedy::Reconnect)
        );
        assert!(fault.is_dropped_under_call());
        assert!(!fault.clone().while_connecting().is_dropped_under_call());
        assert!(!Fault::deadline("t", Duration::from_secs(1)).is_dropped_under_call());
        assert!(Fault::from_redis(&server("NOPERM", "x"), "t").is_permission());
    }

    #[test]
    fn backoff_grows_within_bounds() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for n in 1..12u32 {
            let nominal = (Duration::from_millis(100) * 2u32.pow((n - 1).min(20)))
                .min(Duration::from_secs(1));
            let d = b.next_delay();
            assert!(
                d >= nominal / 2 && d <= nominal,
                "failure {n}: {d:?} outside [{:?}, {nominal:?}]",
                nominal / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
