//! Errors as JSON responses: `{"error": "..."}` with a status code.
//!
//! A failure inside the daemon (Redis down, a file that cannot be written) is logged in
//! full at WARN and answered with what failed and where to look, never with internals
//! (Redis's address, a script's SHA, file paths): the same answer for every caller, so
//! that the log stays the one place with the details.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::broker::{Blame, Broker, Fault};

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
    /// otherwise.
    pub fn internal(error: anyhow::Error) -> Self {
        let Some(fault) = error.downcast_ref::<Fault>() else {
            return Self::failed("the call failed inside the daemon", error);
        };
        tracing::warn!(error = format!("{error:#}"), "admin API request failed");
        let (status, what) = match fault.blame() {
            Blame::Environment => (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable"),
            Blame::Entry => (StatusCode::INTERNAL_SERVER_ERROR, "redis refused the call"),
        };
        let code = fault.code();
        Self::new(
            status,
            format!("{what} ({code}): see the daemon's log for details"),
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
