//! A response body as the guest reads it: at most `max_response_bytes`, with no gap
//! between two parts longer than the between-bytes timeout, holding its request's place
//! in the pipeline's in-flight limit until it ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use wasmtime_wasi_http::Error;

/// The body of an outgoing request's response (see the module doc).
pub struct Capped<F> {
    incoming: hyper::body::Incoming,
    cap: u64,
    read: u64,
    between: Duration,
    idle: Pin<Box<Sleep>>,
    /// Released when the body is dropped.
    _permit: OwnedSemaphorePermit,
    /// Counts a failure of the body by kind.
    failed: F,
    /// Gives the connection back to the pool once the body is read to the end.
    reuse: Option<Box<dyn FnOnce() + Send>>,
}

impl<F: Fn(&'static str)> Capped<F> {
    pub fn new(
        incoming: hyper::body::Incoming,
        cap: u64,
        between: Duration,
        permit: OwnedSemaphorePermit,
        failed: F,
    ) -> Self {
        Self {
            incoming,
            cap,
            read: 0,
            between,
            idle: Box::pin(tokio::time::sleep(between)),
            _permit: permit,
            failed,
            reuse: None,
        }
    }

    /// Calls `reuse` when the body has been read to the end (not when it fails or is
    /// dropped before: that connection is not reused).
    pub fn reusing(mut self, reuse: Box<dyn FnOnce() + Send>) -> Self {
        self.reuse = Some(reuse);
        self
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
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                this.read = this.read.saturating_add(size);
                if this.read > this.cap {
                    (this.failed)("body_too_large");
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.read)))));
                }
                let next = tokio::time::Instant::now() + this.between;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                (this.failed)("protocol");
                Poll::Ready(Some(Err(Error::from(e))))
            }
            Poll::Ready(None) => {
                if let Some(reuse) = this.reuse.take() {
                    reuse();
                }
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    (this.failed)("response_timeout");
                    Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
