//! Errors as JSON responses: `{"error": "..."}` with a status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

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

    /// 500 for a failure of the host itself (logged).
    pub fn internal(error: anyhow::Error) -> Self {
        tracing::warn!(error = format!("{error:#}"), "admin API request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
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
