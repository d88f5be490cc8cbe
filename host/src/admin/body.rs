//! Request bodies against the clock: a body may not stall longer than `request_timeout`
//! between two chunks, nor take longer than `body_timeout` in all from the end of the
//! headers (each chunk of a slow drip resets the first clock, never the second). Either
//! answers 408 and closes the connection, whichever handler was reading the body.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::ApiError;

/// How long a body may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyClock {
    /// The longest wait for the next chunk (`request_timeout`).
    pub(crate) stall: Duration,
    /// The longest the whole body may take (`body_timeout`).
    pub(crate) whole: Duration,
}

/// Which clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Late {
    Stalled(Duration),
    TooSlow(Duration),
}

impl std::fmt::Display for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Late::Stalled(d) => write!(
                f,
                "the body stalled: nothing came for {} ([admin] request_timeout)",
                humantime::format_duration(*d)
            ),
            Late::TooSlow(d) => write!(
                f,
                "the body did not arrive within {} ([admin] body_timeout)",
                humantime::format_duration(*d)
            ),
        }
    }
}

impl std::error::Error for Late {}

/// A request body that fails once a clock runs out, and says which did in `late`.
struct TimedBody {
    inner: Body,
    clock: BodyClock,
    deadline: Instant,
    /// Started at the first wait for a chunk, restarted by each chunk.
    stall: Option<Pin<Box<Sleep>>>,
    /// Started at the first wait for a chunk, never restarted.
    whole: Option<Pin<Box<Sleep>>>,
    late: Arc<OnceLock<Late>>,
}

impl TimedBody {
    fn new(inner: Body, clock: BodyClock, late: Arc<OnceLock<Late>>) -> Self {
        Self {
            inner,
            clock,
            deadline: Instant::now() + clock.whole,
            stall: None,
            whole: None,
            late,
        }
    }

    /// Whether a clock has run out, registering `cx` to be woken when one does.
    fn ran_out(&mut self, cx: &mut Context<'_>) -> Option<Late> {
        let deadline = self.deadline;
        let whole = self
            .whole
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if whole.as_mut().poll(cx).is_ready() {
            return Some(Late::TooSlow(self.clock.whole));
        }
        let stall = self.clock.stall;
        let sleep = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        sleep
            .as_mut()
            .poll(cx)
            .is_ready()
            .then_some(Late::Stalled(stall))
    }

    fn fail(&self, late: Late) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let late = *self.late.get_or_init(|| late);
        Poll::Ready(Some(Err(Box::new(late))))
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(late) = this.late.get() {
            return this.fail(*late);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let now = Instant::now();
                if now >= this.deadline {
                    return this.fail(Late::TooSlow(this.clock.whole));
                }
                if let Some(stall) = &mut this.stall {
                    stall.as_mut().reset(now + this.clock.stall);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(BoxError::from))),
            Poll::Pending => match this.ran_out(cx) {
                Some(late) => this.fail(late),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware on every route: times the request's body; when a clock ran out, the
/// answer (the handler's refusal of the body, whatever it said) is 408 and the
/// connection is closed.
pub(crate) async fn timed_body(
    State(clock): State<BodyClock>,
    request: Request,
    next: Next,
) -> Response {
    let late = Arc::new(OnceLock::new());
    let request = request.map(|body| Body::new(TimedBody::new(body, clock, late.clone())));
    let response = next.run(request).await;
    let Some(late) = late.get() else {
        return response;
    };
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    tracing::debug!(%late, "admin API request body too slow");
    let mut refused = ApiError::new(StatusCode::REQUEST_TIMEOUT, late.to_string()).into_response();
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refused
}
