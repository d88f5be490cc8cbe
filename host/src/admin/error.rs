//! Errors as JSON responses: `{"error": "..."}` with a status code, for every error
//! the API answers ([`json_errors`] rewrites the plain-text ones of axum and of the
//! router).
//!
//! A failure inside the daemon (Redis down, a file that cannot be written) is logged in
//! full at WARN and answered with what failed and where to look, never with internals
//! (Redis's address, a script's SHA, file paths): the same answer for every caller, so
//! that the log stays the one place with the details. Reasons that are shown (a
//! pipeline's error, `/readyz`) pass through [`without_internals`].

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::broker::{Blame, Broker, Fault, ReplayCut};

/// The longest plain-text error [`json_errors`] reads to rewrite.
const MAX_ERROR_TEXT: usize = 16 << 10;

/// `text` as an open answer may show it: without where Redis is (its URL or Sentinels,
/// or any address: `redis` instead), without where in a Redis script an error happened
/// (`script: <sha>, on @user_script:<line>.`), on one line (no multi-line debug output
/// of a library). Every reason an open answer shows passes through here.
pub(crate) fn without_internals(broker: &Broker, text: &str) -> String {
    scrub(text, broker.shown())
}

/// [`without_internals`] for Redis shown as `shown`.
fn scrub(text: &str, shown: &str) -> String {
    let mut text = text.to_owned();
    if !shown.is_empty() {
        text = text
            .replace(&format!(" on redis at {shown}"), "")
            .replace(&format!("redis at {shown}"), "redis")
            .replace(shown, "redis");
    }
    let text = without_script_locations(&text);
    text.split_whitespace()
        .map(without_address)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` without Redis's notes on where in a script an error happened
/// (` script: <sha>, on @user_script:<line>.`, or `@user_function`).
fn without_script_locations(text: &str) -> String {
    const MARK: &str = "script: ";
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        match script_location_len(after) {
            Some(len) => {
                kept.push_str(rest[..at].trim_end());
                rest = &after[len..];
            }
            None => {
                kept.push_str(&rest[..at + MARK.len()]);
                rest = after;
            }
        }
    }
    kept.push_str(rest);
    kept
}

/// The length of `<name>, on @user_<kind>:<line>.` at the start of `text`, if it is one.
fn script_location_len(text: &str) -> Option<usize> {
    let (name, tail) = text.split_once(", on @user_")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let (kind, tail) = tail.split_once(':')?;
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let line = tail.chars().take_while(char::is_ascii_digit).count();
    if line == 0 {
        return None;
    }
    let dot = usize::from(tail[line..].starts_with('.'));
    Some(name.len() + ", on @user_".len() + kind.len() + 1 + line + dot)
}

/// `word` with an address in it (`10.0.0.7:6379`, `[::1]`, a `redis://` URL: a cluster
/// node's, or the primary's that the Sentinels named) replaced by `redis`.
fn without_address(word: &str) -> String {
    let punctuation = |c: char| "\"'(),;.".contains(c);
    let core = word
        .trim_start_matches(punctuation)
        .trim_end_matches(|c| punctuation(c) || c == ':');
    let address = core.parse::<std::net::SocketAddr>().is_ok()
        || core.parse::<std::net::IpAddr>().is_ok()
        || core
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
        || ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|scheme| core.starts_with(scheme));
    if address && !core.is_empty() {
        word.replacen(core, "redis", 1)
    } else {
        word.to_owned()
    }
}

/// Middleware on every route: an error answer that is not JSON (axum's refusal of a
/// query, a path or a body, the router's 404 and 405) becomes `{"error": text}` with
/// the same status and headers.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|text| String::from_utf8_lossy(&text).trim().to_owned())
        .unwrap_or_default();
    let text = if text.is_empty() {
        plain_reason(status, &method)
    } else {
        text
    };
    let (_, body) = ApiError::new(status, text).into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}

/// What an error answer without text says.
fn plain_reason(status: StatusCode, method: &Method) -> String {
    match status {
        StatusCode::NOT_FOUND => {
            "no such path: the API's paths are listed in /v1/openapi.json".to_owned()
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on this path: the Allow header lists what is")
        }
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    }
}

/// An API error: a status and a message saying what is wrong and what to do.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 404 for an unknown pipeline.
    pub fn no_pipeline(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no pipeline named {name:?}"))
    }

    /// A failure of the daemon or of Redis, logged in full and answered without
    /// internals: 503 when Redis is unreachable or refuses (with its error code), 500
    /// otherwise. A replay cut short says how many letters it had replayed.
    pub fn internal(error: anyhow::Error) -> Self {
        let cut = error.downcast_ref::<ReplayCut>();
        let note = cut.map_or_else(String::new, |cut| {
            format!(
                "at least {} dead letters were replayed before the failure (moved to the input and deleted), the others are still dead letters: call again to replay the rest; ",
                cut.replayed
            )
        });
        let fault = error
            .downcast_ref::<Fault>()
            .or_else(|| cut.and_then(ReplayCut::fault));
        let Some(fault) = fault else {
            let what = format!("the call failed inside the daemon: {note}");
            return Self::failed(what.trim_end_matches([';', ' ', ':']), error);
        };
        tracing::warn!(error = format!("{error:#}"), "admin API request failed");
        let (status, what) = match fault.blame() {
            Blame::Environment => (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable"),
            Blame::Entry => (StatusCode::INTERNAL_SERVER_ERROR, "redis refused the call"),
        };
        let code = fault.code();
        Self::new(
            status,
            format!("{what} ({code}): {note}see the daemon's log for details"),
        )
    }

    /// 500 saying `what` failed, with `error` logged in full (and not answered).
    pub fn failed(what: &str, error: anyhow::Error) -> Self {
        tracing::warn!(
            error = format!("{error:#}"),
            "admin API request failed: {what}"
        );
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what}: see the daemon's log for details"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOWN: &str = "redis://127.0.0.1:6379/";

    #[test]
    fn a_scripts_location_is_not_shown() {
        let text = "commit on stream \"ORDERS\" group \"G\": OOM command not allowed when used memory > 'maxmemory'. script: 11b59e2c2a686a8d31a0fe9a1642b1455ad2854f, on @user_script:403.";
        assert_eq!(
            scrub(text, SHOWN),
            "commit on stream \"ORDERS\" group \"G\": OOM command not allowed when used memory > 'maxmemory'."
        );
        assert_eq!(
            scrub("ERR x script: f, on @user_function:12. then", SHOWN),
            "ERR x then"
        );
        for kept in [
            "the script: is fine",
            "script: a b, on @user_script:1.",
            "script: x, on @user_script:.",
        ] {
            assert_eq!(scrub(kept, SHOWN), kept);
        }
    }

    #[test]
    fn where_redis_is_is_not_shown() {
        let text = format!("XREADGROUP on redis at {SHOWN}: connection refused");
        assert_eq!(scrub(&text, SHOWN), "XREADGROUP: connection refused");
        assert_eq!(
            scrub(
                "MOVED 3999 10.0.0.7:6381, then [::1]:7000; from (10.1.1.1).",
                SHOWN
            ),
            "MOVED 3999 redis, then redis; from (redis)."
        );
        assert_eq!(
            scrub(
                "cannot reach rediss://cache.internal:6380/0\n  twice",
                SHOWN
            ),
            "cannot reach redis twice"
        );
        let kept = "version 7.0.15 at 12:30: ok";
        assert_eq!(scrub(kept, SHOWN), kept);
    }
}
