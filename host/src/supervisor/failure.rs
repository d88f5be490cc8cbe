//! A daemon that stops on its own: its private redis-server ended, or it lost its
//! consumer name. The reason is kept, the daemon's shutdown is set off, and
//! [`crate::Daemon::wait`] returns it as a [`DaemonFailed`] (the binary exits 1).

use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::names::Names;
use crate::redis_server::RedisServer;

/// The daemon stopped on its own; the message says why and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DaemonFailed(pub String);

/// Where the reason a daemon stops on its own is kept.
#[derive(Clone)]
pub(super) struct Failure {
    reason: Arc<Mutex<Option<String>>>,
    shutdown: CancellationToken,
}

impl Failure {
    /// Stops the daemon through `shutdown` when it fails.
    pub(super) fn new(shutdown: CancellationToken) -> Self {
        Self {
            reason: Arc::default(),
            shutdown,
        }
    }

    /// Logs `reason` at ERROR, keeps it (the first one), and sets the shutdown off.
    pub(super) fn fail(&self, reason: String) {
        tracing::error!("{reason}");
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.shutdown.cancel();
    }

    /// Why the daemon failed, if it did.
    pub(super) fn get(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Fails the daemon when its private Redis ends: nothing can be read or committed
/// again, and the server's data is gone with it. The reason carries the server's last
/// log lines.
pub(super) fn watch_private_server(server: &RedisServer, failure: &Failure, tasks: &TaskTracker) {
    let Some(mut exit) = server.exit() else {
        return;
    };
    let log = server.log_file();
    let failure = failure.clone();
    tasks.spawn(async move {
        let status = tokio::select! {
            _ = failure.shutdown.cancelled() => return,
            status = exit.wait_for(Option::is_some) => match status {
                Ok(status) => status.map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
                Err(_) => return,
            },
        };
        let tail = crate::redis_server::log_tail(&log, 10);
        failure.fail(format!(
            "the private redis-server ended on its own ({status}); its data is gone, so the daemon stops. Its last log lines:\n{tail}\nTo keep data across such failures, run your own Redis and set [redis] url"
        ));
    });
}

/// Renews the consumer name's name leases until `stop`, and removes consumers idle over
/// `idle_limit`; fails the daemon when a lease is lost.
pub(super) fn keep_names(
    names: &Arc<Names>,
    failure: &Failure,
    tasks: &TaskTracker,
    stop: CancellationToken,
    idle_limit: std::time::Duration,
) {
    let failure = failure.clone();
    tasks.spawn(Names::keep(
        Arc::downgrade(names),
        stop,
        idle_limit,
        move |why| failure.fail(why),
    ));
}
