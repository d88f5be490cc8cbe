//! Idle HTTP/1.1 connections of one pipeline, by origin, reused by later requests: a
//! service called for every entry is not dialled (and TLS-handshaken) for every entry.
//!
//! A connection goes back to the pool when its response body has been read to the end,
//! and is taken again only by a request to the same origin (which the grant checked) if
//! it is ready, open, and was idle less than [`IDLE`]. A connection is dialled under the
//! request's connect timeout, which the pool's reuse never stretches. The pool keeps at
//! most `max_in_flight` idle connections in all, and a sweep every [`SWEEP`] closes those
//! idle past [`IDLE`] (a handler that calls many origins once each leaves no sockets
//! behind).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use wasmtime_wasi_http::WasiBody;

/// How long an idle connection is kept: less than the 60 s or more after which servers
/// commonly close theirs, so that a reuse rarely meets a connection the server closed.
pub const IDLE: Duration = Duration::from_secs(30);

/// An idle connection and since when it is idle.
type Idle = (SendRequest<WasiBody>, Instant);

/// How often idle connections past [`IDLE`] are closed.
pub const SWEEP: Duration = Duration::from_secs(5);

/// The pool (see the module doc).
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    /// Idle connections kept at most, all origins together.
    most: usize,
}

impl Pool {
    /// A pool of at most `most` idle connections, swept on the current tokio runtime (if
    /// any) for as long as the pool lives.
    pub fn new(most: usize) -> Arc<Self> {
        let pool = Arc::new(Self {
            idle: Mutex::new(HashMap::new()),
            most,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&pool);
            runtime.spawn(async move {
                let mut every = tokio::time::interval(SWEEP);
                loop {
                    every.tick().await;
                    let Some(pool) = weak.upgrade() else { break };
                    pool.sweep();
                }
            });
        }
        pool
    }

    /// Closes the connections idle past [`IDLE`] or closed by their server.
    pub fn sweep(&self) {
        let mut idle = crate::lock::lock(&self.idle);
        for list in idle.values_mut() {
            list.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// A ready idle connection to `origin`, if there is one.
    pub async fn take(&self, origin: &str) -> Option<SendRequest<WasiBody>> {
        loop {
            let (mut sender, since) = {
                let mut idle = crate::lock::lock(&self.idle);
                let list = idle.get_mut(origin)?;
                let taken = list.pop();
                if list.is_empty() {
                    idle.remove(origin);
                }
                taken?
            };
            if since.elapsed() >= IDLE || sender.is_closed() {
                continue;
            }
            // Ready at once unless the connection is still winding up its last response.
            let ready = tokio::time::timeout(Duration::from_millis(100), sender.ready());
            if let Ok(Ok(())) = ready.await {
                return Some(sender);
            }
        }
    }

    /// Gives back a connection whose response was read to the end.
    pub fn put(&self, origin: String, sender: SendRequest<WasiBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = crate::lock::lock(&self.idle);
        let total: usize = idle.values().map(Vec::len).sum();
        if total < self.most {
            idle.entry(origin)
                .or_default()
                .push((sender, Instant::now()));
        }
    }
}
