//! The listener: HTTP/1.1 connections served by hyper, at most `max_connections` at once,
//! each with a header read timeout (`axum::serve` sets none: a client sending headers
//! slowly would hold its connection for ever) and at most [`MAX_HEAD`] of buffered
//! headers, closed gracefully at shutdown.
//!
//! A connection past the cap is not accepted until another closes: it waits in the
//! listen backlog (the kernel's memory, not the daemon's). So half-sent headers cost
//! the daemon at most `max_connections` × [`MAX_HEAD`], each released after
//! `request_timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The most a connection's buffer holds: a request head larger than this is answered
/// 431 and its connection closed (hyper's default is about 400 KiB).
pub(crate) const MAX_HEAD: usize = 64 << 10;

/// How often a full server says so.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The admin API's server.
pub(crate) struct Server {
    listener: TcpListener,
    router: Router,
    http: http1::Builder,
    /// One permit per connection served.
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl Server {
    /// Serves `router` on `listener`, at most `max_connections` connections at once; a
    /// request's headers must arrive within `header_timeout` of its first byte.
    pub(crate) fn new(
        listener: TcpListener,
        router: Router,
        header_timeout: Duration,
        max_connections: usize,
    ) -> Self {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEAD)
            .keep_alive(true);
        Self {
            listener,
            router,
            http,
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        }
    }

    /// Accepts connections until `shutdown`, each served on `tasks` while it holds a
    /// permit; then each finishes the request it is answering and closes.
    pub(crate) async fn run(self, tasks: TaskTracker, shutdown: CancellationToken) {
        let mut warned = None;
        loop {
            let Some(permit) = self.permit(&mut warned, &shutdown).await else {
                break;
            };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    tasks.spawn(self.connection(stream, permit, shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "the admin API cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// A permit to accept one more connection, waiting for one to close if
    /// `max_connections` are open; `None` at shutdown. The wait is logged at most once
    /// a minute (`warned`: when it last was).
    async fn permit(
        &self,
        warned: &mut Option<Instant>,
        shutdown: &CancellationToken,
    ) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.connections.clone().try_acquire_owned() {
            return Some(permit);
        }
        if warned.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
            *warned = Some(Instant::now());
            tracing::warn!(
                max_connections = self.max_connections,
                "the admin API has [admin] max_connections connections open: new ones wait until one closes"
            );
        }
        tokio::select! {
            // The semaphore is never closed.
            permit = self.connections.clone().acquire_owned() => permit.ok(),
            () = shutdown.cancelled() => None,
        }
    }

    fn connection(
        &self,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let service = TowerToHyperService::new(self.router.clone());
        let connection = self.http.serve_connection(TokioIo::new(stream), service);
        async move {
            let _permit = permit;
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "admin API connection ended");
            }
        }
    }
}
