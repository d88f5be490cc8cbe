//! Redis's error codes and redis-rs's error kinds, each mapped to who is at fault and
//! what to do.

use redis::{ErrorKind, RetryMethod, ServerErrorKind};

use super::{Blame, Remedy};

/// Server error codes whose cure is a new connection: the node behind it changed role.
const RECONNECT_CODES: &[&str] = &["READONLY", "MASTERDOWN", "UNBLOCKED", "MOVED", "ASK"];
/// Server error codes the entry being written is at fault for.
const ENTRY_CODES: &[&str] = &["WRONGTYPE"];

/// Who is at fault for `error`, what to do, and its code.
pub(super) fn classify(error: &redis::RedisError) -> (Blame, Remedy, String) {
    if let Some(code) = error.code()
        && let Some(answer) = by_code(code, error.detail().unwrap_or_default())
    {
        return answer;
    }
    by_kind(error)
}

/// A server error code's answer; `None` for a code left to redis-rs's kind.
fn by_code(code: &str, detail: &str) -> Option<(Blame, Remedy, String)> {
    use Blame::{Entry, Environment};
    let (blame, remedy) = if code == "NOGROUP" {
        (Environment, Remedy::RecreateGroup)
    } else if RECONNECT_CODES.contains(&code) {
        (Environment, Remedy::Reconnect)
    } else if ENTRY_CODES.contains(&code) {
        (Entry, Remedy::Wait)
    } else if code != "ERR" {
        return None;
    } else if detail.starts_with("Protocol error") || detail.contains("too many results") {
        // The server refused a value of the commit for its size ("invalid bulk length"
        // past `proto-max-bulk-len`; Lua's "too many results to unpack").
        (Entry, Remedy::Reconnect)
    } else if detail.contains("can't run this command") {
        // A command inside a script that the ACL user may not run: a permission fault
        // like NOPERM, though Redis answers ERR.
        return Some((Environment, Remedy::Wait, "NOPERM".to_owned()));
    } else {
        (Environment, Remedy::Wait)
    };
    Some((blame, remedy, code.to_owned()))
}

/// The answer from redis-rs's error kind and retry method (the network, and codes not
/// named above).
fn by_kind(error: &redis::RedisError) -> (Blame, Remedy, String) {
    use Blame::Environment;
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
            let code = error.code().map(str::to_owned).unwrap_or_else(|| {
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
