//! A Sluice daemon run in-process by a test, the way an embedder runs it.

use std::time::Duration;

use sluice::config::Config;
use sluice::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

/// A Sluice daemon run in-process by a test (`sluice::start`), the way an embedder runs
/// it; [`DaemonProcess`](crate::DaemonProcess) runs the real binary. It holds a started
/// [`sluice::Daemon`] until [`TestDaemon::stop`].
pub struct TestDaemon {
    pub shutdown: CancellationToken,
    /// Where the admin API listens, if the config turns it on.
    pub admin: Option<std::net::SocketAddr>,
    /// The daemon's live plugins.
    pub registry: std::sync::Arc<sluice::registry::Registry>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestDaemon {
    /// Starts the daemon for `config` (whose `[redis] url` is set to `redis`).
    pub async fn start(redis: &RedisServer, config: Config) -> TestDaemon {
        TestDaemon::start_at(&redis.url(), config).await
    }

    /// Starts the daemon for `config` against the Redis at `url` (a proxy, an ACL user).
    pub async fn start_at(url: &str, mut config: Config) -> TestDaemon {
        config.redis.url = Some(url.to_owned());
        let shutdown = CancellationToken::new();
        let daemon = sluice::start(config, shutdown.clone())
            .await
            .expect("daemon starts");
        TestDaemon::running(daemon, shutdown)
    }

    /// Starts the daemon for `config` as it is (its `[redis]` table says where).
    pub async fn launch(config: Config) -> TestDaemon {
        let shutdown = CancellationToken::new();
        let daemon = sluice::start(config, shutdown.clone())
            .await
            .expect("daemon starts");
        TestDaemon::running(daemon, shutdown)
    }

    /// Takes over a started daemon, which runs until `shutdown`.
    fn running(daemon: sluice::Daemon, shutdown: CancellationToken) -> TestDaemon {
        let admin = daemon.admin_addr();
        let registry = daemon.registry().clone();
        let handle = tokio::spawn(daemon.wait());
        TestDaemon {
            shutdown,
            admin,
            registry,
            handle,
        }
    }

    /// The admin API's address (the config must turn it on).
    pub fn admin(&self) -> std::net::SocketAddr {
        self.admin.expect("the config turns the admin API on")
    }

    /// Starts the daemon for the config `load` gives, reloading it with `load` on
    /// `POST /v1/reload` (as `sluice run` reloads its file).
    pub async fn start_reloading(
        load: impl Fn() -> anyhow::Result<Config> + Send + Sync + 'static,
    ) -> TestDaemon {
        let shutdown = CancellationToken::new();
        let mut daemon = sluice::start(load().expect("config"), shutdown.clone())
            .await
            .expect("daemon starts");
        daemon.reload_with(Box::new(load));
        TestDaemon::running(daemon, shutdown)
    }

    /// Starts the daemon for the config file at `path` against the Redis at `url`, with
    /// the admin token `token`, reading the file again on `POST /v1/reload`.
    pub async fn start_reloading_file(
        path: &std::path::Path,
        url: String,
        token: &str,
    ) -> TestDaemon {
        let (path, token) = (path.to_owned(), token.to_owned());
        TestDaemon::start_reloading(move || {
            let mut config = sluice::config::Config::load(&path)?;
            config.redis.url = Some(url.clone());
            if let Some(admin) = &mut config.admin {
                admin.token = Some(token.clone());
            }
            Ok(config)
        })
        .await
    }

    /// Drops the daemon without a drain, as a panicking embedder would.
    pub async fn abandon(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    /// Asks for a drain and waits for the daemon to stop.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("daemon drains within 20s")
            .expect("daemon task does not panic")
            .expect("the daemon stopped because it was asked to");
    }
}
