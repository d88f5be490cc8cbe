//! Errors as JSON responses: `{"error": "..."}` with a status code.
//!
//! A failure inside the daemon (Redis down, a file that cannot be written) is logged in
//! full at WARN and answered with what failed and where to look, never with internals
//! (Redis's address, a script's SHA, file paths): the same answer for every caller, so
//! that the log stays the one place with the details.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::broker::{Blame, Broker, Fault, ReplayCut};

/// `text` as an open answer may show it: without where Redis is, on one line (no
/// multi-line debug output of a library).
pub(crate) fn without_internals(broker: &Broker, text: &str) -> String {
    let text = text.replace(&format!(" on redis at {}", broker.shown()), "");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
