//! A response body as the guest reads it: at most `max_response_bytes`, with no gap
//! between two parts longer than the between-bytes timeout, holding its request's place
//! in the pipeline's in-flight limit until it ends or is dropped, and giving its
//! connection back to the pool when read to the end.
//!
//! A body outlives its handler call only as a dead end: when the call ends (`ended`),
//! the connection, the place in the in-flight limit and the pool's claim are let go at
//! once, read or not — a handler that keeps a response it never reads holds nothing
//! past its entry's `limits.timeout`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::Error;

/// What a body holds until it ends, is dropped, or its call ends.
struct Held {
    incoming: hyper::body::Incoming,
    _permit: OwnedSemaphorePermit,
    /// Gives the connection back to the pool once the body is read to the end.
    reuse: Option<Box<dyn FnOnce() + Send>>,
}

/// The body of an outgoing request's response (see the module doc).
pub struct Capped<F> {
    held: Arc<Mutex<Option<Held>>>,
    cap: u64,
    read: u64,
    between: Duration,
    idle: Pin<Box<Sleep>>,
    /// Counts a failure of the body by kind.
    failed: F,
}

impl<F: Fn(&'static str)> Capped<F> {
    /// The body of `incoming`; `reuse` is called when it has been read to the end (not
    /// when it fails or is dropped before: that connection is not reused); everything is
    /// let go when `ended` is cancelled.
    pub fn new(
        incoming: hyper::body::Incoming,
        (cap, between): (u64, Duration),
        (permit, reuse): (OwnedSemaphorePermit, Box<dyn FnOnce() + Send>),
        ended: CancellationToken,
        failed: F,
    ) -> Self {
        let held = Arc::new(Mutex::new(Some(Held {
            incoming,
            _permit: permit,
            reuse: Some(reuse),
        })));
        let watched = Arc::downgrade(&held);
        tokio::spawn(async move {
            ended.cancelled().await;
            if let Some(held) = watched.upgrade() {
                crate::lock::lock(&held).take();
            }
        });
        Self {
            held,
            cap,
            read: 0,
            between,
            idle: Box::pin(tokio::time::sleep(between)),
            failed,
        }
    }
}

impl<F> Drop for Capped<F> {
    fn drop(&mut self) {
        crate::lock::lock(&self.held).take();
    }
}

impl<F: Fn(&'static str) + Unpin> Body for Capped<F> {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let mut held = crate::lock::lock(&this.held);
        let Some(current) = held.as_mut() else {
            return Poll::Ready(Some(Err(Error::ConnectionTerminated)));
        };
        match Pin::new(&mut current.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                this.read = this.read.saturating_add(size);
                if this.read > this.cap {
                    held.take();
                    (this.failed)("body_too_large");
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.read)))));
                }
                let next = tokio::time::Instant::now() + this.between;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                held.take();
                (this.failed)("protocol");
                Poll::Ready(Some(Err(Error::from(e))))
            }
            Poll::Ready(None) => {
                if let Some(reuse) = current.reuse.take() {
                    reuse();
                }
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    held.take();
                    (this.failed)("response_timeout");
                    Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        crate::lock::lock(&self.held)
            .as_ref()
            .is_none_or(|h| h.incoming.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        crate::lock::lock(&self.held)
            .as_ref()
            .map_or_else(SizeHint::default, |h| h.incoming.size_hint())
    }
}
