//! Sluice: Redis Streams consumer groups feeding sandboxed WebAssembly handlers.
//!
//! Every entry read from a pipeline's input stream is handed to the pipeline's handler
//! component; its outputs are appended to their streams and the entry acknowledged in one
//! guarded, atomic commit, or the entry is retried or dead-lettered.
//!
//! # Layout
//!
//! Dependencies point down; `broker` (Redis) and `wasm` (wasmtime) never import each
//! other, they meet only in `pipeline` through the types of `message`.
//!
//! - [`config`]: the TOML file, parsed strictly and validated.
//! - [`message`]: domain types shared by broker and sandbox.
//! - [`broker`]: the only user of `redis`: groups, reads, the guarded commit.
//! - [`wasm`]: the only user of `wasmtime`: engine, plugins, instances under limits.
//! - [`pipeline`]: one consumer loop per pipeline.
//! - [`registry`]: the live plugins behind `ArcSwap`; a swap is atomic.
//! - [`reload`]: the only user of `notify`: watches plugin files, reloads them.
//! - [`admin`]: the only user of `axum`: health, plugin status and deploys.
//! - [`redis_server`]: a private `redis-server` child (embedded default, tests).
//! - [`shutdown`]: signals to a cancellation token.
//!
//! [`start`] is the supervisor, callable from tests; `main.rs` only parses the CLI.

pub mod admin;
pub mod broker;
pub mod config;
pub mod message;
pub mod pipeline;
pub mod redis_server;
pub mod registry;
pub mod reload;
pub mod shutdown;
pub mod wasm;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use broker::Broker;
use config::Config;
use pipeline::Pipeline;
use redis_server::RedisServer;
use registry::Registry;
use wasm::{Cache, Plugin, Runtime, Source};

/// A running daemon: its pipelines, and the private Redis it started if it did.
pub struct Daemon {
    redis: Option<RedisServer>,
    url: String,
    broker: Broker,
    tasks: TaskTracker,
    /// To stop the pipelines still busy when the drain timeout runs out.
    aborts: Vec<tokio::task::AbortHandle>,
    shutdown: CancellationToken,
    registry: Arc<Registry>,
    admin_addr: Option<std::net::SocketAddr>,
    drain_timeout: Duration,
}

/// Starts every pipeline of `config`; they run until `shutdown` is cancelled.
///
/// Without a `[redis] url`, a private `redis-server` is started and stopped with the
/// daemon. Plugins are compiled before anything is read, so a broken plugin fails
/// start-up instead of a message.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Daemon> {
    let (redis, url) = match &config.redis.url {
        Some(url) => (None, url.clone()),
        None => {
            let server = tokio::task::spawn_blocking(RedisServer::start).await??;
            let url = server.url();
            tracing::info!(%url, "no [redis] url configured: started a private redis-server (its data is gone at exit)");
            (Some(server), url)
        }
    };
    let broker = Broker::connect(&url).await?;
    let cache = match config.plugins.cache_dir() {
        Some(dir) => Some(Cache::open(&dir)?),
        None => None,
    };
    let runtime = Runtime::new(config.meters_fuel(), cache)?;
    let consumer = config
        .redis
        .consumer
        .clone()
        .unwrap_or_else(default_consumer_name);

    // Every plugin is compiled (or taken from the cache) before any pipeline starts.
    let mut registry = Registry::default();
    let mut cells = Vec::new();
    for pipeline_config in &config.pipelines {
        let name = pipeline_config.name.clone();
        let path = pipeline_config.plugin.clone();
        let rt = runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || Plugin::load(&rt, &path))
            .await?
            .with_context(|| format!("pipeline {:?} cannot start", name.as_str()))?;
        tracing::info!(pipeline = %name, plugin = %plugin.digest(), compile_ms = plugin.compile_time().as_millis() as u64, cached = plugin.source() == Source::Cached, "plugin loaded");
        cells.push(registry.add(name.as_str(), &pipeline_config.plugin, plugin));
    }
    let registry = Arc::new(registry);

    let tasks = TaskTracker::new();
    let mut aborts = Vec::new();
    for (pipeline_config, cell) in config.pipelines.into_iter().zip(cells) {
        let name = pipeline_config.name.clone();
        let pipeline = Pipeline::new(pipeline_config, cell, &broker, &consumer)
            .await
            .with_context(|| format!("pipeline {:?} cannot start", name.as_str()))?;
        let token = shutdown.clone();
        let task = tasks.spawn(async move {
            if let Err(e) = pipeline.run(token).await {
                tracing::error!(pipeline = %name, error = format!("{e:#}"), "pipeline failed");
            }
        });
        aborts.push(task.abort_handle());
    }
    if config.plugins.watch {
        reload::watch(registry.clone(), runtime.clone(), shutdown.clone())?;
    }
    let admin_addr = match &config.admin {
        Some(admin) => Some(start_admin(admin, &registry, &runtime, &tasks, &shutdown).await?),
        None => None,
    };
    tasks.close();
    Ok(Daemon {
        redis,
        url,
        broker,
        tasks,
        aborts,
        shutdown,
        drain_timeout: config.drain_timeout,
        registry,
        admin_addr,
    })
}

/// Binds the admin API and serves it on the daemon's task tracker.
async fn start_admin(
    admin: &config::AdminConfig,
    registry: &Arc<Registry>,
    runtime: &Runtime,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(admin.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on [admin] listen = {:?}; pick a free address",
                admin.listen.to_string()
            )
        })?;
    let addr = listener.local_addr()?;
    let token = admin
        .token
        .clone()
        .or_else(|| std::env::var("SLUICE_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty());
    if token.is_none() {
        tracing::warn!("SLUICE_ADMIN_TOKEN is not set: the admin API refuses mutating calls");
    }
    let state = Arc::new(admin::AdminState {
        registry: registry.clone(),
        runtime: runtime.clone(),
        token,
    });
    let max_body = usize::try_from(admin.max_body.as_u64()).unwrap_or(usize::MAX);
    tasks.spawn(admin::serve(
        listener,
        admin::router(state, max_body),
        shutdown.clone(),
    ));
    tracing::info!(%addr, "admin API listening");
    Ok(addr)
}

/// Runs `config` until `shutdown` is cancelled and in-flight work has drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    start(config, shutdown).await?.wait().await;
    Ok(())
}

impl Daemon {
    /// The URL of the Redis server in use (the private one, if it was started).
    pub fn redis_url(&self) -> &str {
        &self.url
    }

    /// The broker the daemon uses, for tools that share its connection.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The live plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Where the admin API listens, if it is on.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin_addr
    }

    /// Whether the daemon started its own `redis-server`.
    pub fn owns_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Waits for shutdown, then gives in-flight work `drain_timeout` to commit; stops the
    /// private Redis, if any, at the end.
    pub async fn wait(self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = self.tasks.wait() => {}
        }
        if tokio::time::timeout(self.drain_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(drain_timeout = ?self.drain_timeout, "drain timeout: stopping with work in flight; its entries stay pending and will be delivered again");
            // Dropping a handler call mid-way is safe: nothing of it was committed.
            for task in &self.aborts {
                task.abort();
            }
            self.tasks.wait().await;
        }
        drop(self.redis);
    }
}

/// A consumer name stable across restarts of the same daemon on the same host, so that
/// it finds its own pending entries again: `sluice-<hostname>`.
fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("sluice-{host}")
}
