//! Permits for plugin uploads: a bounded number received and compiled at once. (The
//! `Host` rule every request passes first is in `host`.)

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiError;

/// Permits for plugin uploads: how many may be received and compiled at once.
#[derive(Debug, Clone)]
pub(crate) struct Uploads {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Uploads {
    /// `max` uploads at once.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

/// Middleware of the upload route (after the token check): holds a permit while the
/// upload is received, compiled and stored; answers 429 when none is free.
pub(crate) async fn one_upload(
    State(uploads): State<Uploads>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = uploads.permits.clone().try_acquire_owned() else {
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} plugin uploads are in progress, the most [admin] max_uploads allows; try again when one is done",
                uploads.max
            ),
        )
        .into_response();
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return refused;
    };
    next.run(request).await
}
