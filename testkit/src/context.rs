//! What nearly every test starts with: a Redis server of its own and a connection to it.

use redis::aio::MultiplexedConnection;
pub use sluice::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

/// What nearly every test starts with: a redis-server of its own on a free port, and a
/// plain connection to it for producing and inspecting (like redis-rs's `TestContext`).
pub struct TestContext {
    pub redis: RedisServer,
    pub con: MultiplexedConnection,
}

/// Gives this test process rustls's ring provider (reqwest is built without one, and the
/// daemon installs it only when it runs in this process).
pub fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TestContext {
    pub async fn new() -> Self {
        tls_provider();
        let redis = RedisServer::start().expect("redis-server starts");
        let con = connect(&redis).await;
        Self { redis, con }
    }
}

/// A plain connection for producing and inspecting.
pub async fn connect(redis: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers")
}

/// The broker of a daemon, on its own, for tests of the data path below the pipeline.
pub async fn broker(redis: &RedisServer) -> sluice::broker::Broker {
    sluice::broker::Broker::connect(
        &sluice::broker::Deployment::url(redis.url()),
        CancellationToken::new(),
    )
    .await
    .expect("broker connects")
}
