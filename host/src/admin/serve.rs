//! The listener: HTTP/1.1 connections served by hyper with a header read timeout
//! (`axum::serve` sets none: a client sending headers slowly would hold its connection
//! for ever), each closed gracefully at shutdown.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The admin API's server.
pub(crate) struct Server {
    listener: TcpListener,
    router: Router,
    http: http1::Builder,
}

impl Server {
    /// Serves `router` on `listener`; a request's headers must arrive within
    /// `header_timeout` of its first byte.
    pub(crate) fn new(listener: TcpListener, router: Router, header_timeout: Duration) -> Self {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        Self {
            listener,
            router,
            http,
        }
    }

    /// Accepts connections until `shutdown`, each served on `tasks`; then each finishes
    /// the request it is answering and closes.
    pub(crate) async fn run(self, tasks: TaskTracker, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    tasks.spawn(self.connection(stream, shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "the admin API cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn connection(
        &self,
        stream: TcpStream,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let service = TowerToHyperService::new(self.router.clone());
        let connection = self.http.serve_connection(TokioIo::new(stream), service);
        async move {
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
