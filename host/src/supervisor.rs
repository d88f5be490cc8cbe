//! The supervisor: starts the pipelines of a config, applies config reloads (added
//! pipelines start, removed ones drain and stop, changed ones restart), and drains
//! everything at shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::broker::Broker;
use crate::config::{AdminConfig, Config, PipelineConfig};
use crate::pipeline::Pipeline;
use crate::redis_server::RedisServer;
use crate::registry::{Registry, Streams};
use crate::wasm::{Cache, Plugin, Runtime, Source};
use crate::{admin, reload};

/// Reads the config again for a reload (the CLI re-applies its overrides).
pub type ConfigLoader = Box<dyn Fn() -> Result<Config> + Send + Sync>;

type ReloadReply = oneshot::Sender<Result<ReloadReport, String>>;

/// Asks a running daemon to reload its config (SIGHUP, `POST /v1/reload`).
#[derive(Clone)]
pub struct ReloadHandle(mpsc::Sender<ReloadReply>);

impl ReloadHandle {
    /// Reloads and waits for the outcome.
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| "the daemon is shutting down".to_owned())?;
        rx.await
            .map_err(|_| "the daemon is shutting down".to_owned())?
    }

    /// Whether the daemon has stopped taking reloads.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// What a config reload changed.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Pipelines started.
    pub added: Vec<String>,
    /// Pipelines drained and stopped.
    pub removed: Vec<String>,
    /// Pipelines stopped and started with their new settings.
    pub restarted: Vec<String>,
}

/// How long a pipeline dropped after its drain timeout gets to end its thread.
const KILL_GRACE: Duration = Duration::from_secs(2);

struct Running {
    config: PipelineConfig,
    /// Asks the pipeline to drain and stop.
    stop: CancellationToken,
    /// Drops the pipeline where it is (after the drain timeout).
    kill: CancellationToken,
    /// Resolves when the pipeline's thread has ended (sent or dropped as it exits).
    ended: oneshot::Receiver<()>,
}

impl Drop for Running {
    /// A pipeline whose daemon goes away without a drain (a panic, a dropped `Daemon`)
    /// stops where it is: its thread is not tied to any runtime that would stop it.
    fn drop(&mut self) {
        self.stop.cancel();
        self.kill.cancel();
    }
}

/// Runs a pipeline on a thread of its own with its own runtime (`concurrency` workers),
/// where its Redis connections are opened too. Its data path then never hands work to
/// another thread — on a small machine shared with Redis that is worth ~1.4× the
/// throughput of one runtime for everything — and a handler spinning until its timeout
/// holds only its own pipeline's threads, which the OS time-slices with the others.
///
/// A plain OS thread, not `spawn_blocking`: a runtime being dropped waits for its
/// blocking threads, and a pipeline must never hold its caller's runtime hostage.
/// Returns whether it started, and a receiver that resolves when the thread has ended.
fn spawn_pipeline(
    config: PipelineConfig,
    cell: crate::wasm::PluginCell,
    broker: Broker,
    consumer: String,
    board: Arc<crate::status::Board>,
    stop: CancellationToken,
    kill: CancellationToken,
) -> Result<(oneshot::Receiver<Result<()>>, oneshot::Receiver<()>)> {
    let (ready, started) = oneshot::channel();
    let (ended_tx, ended) = oneshot::channel::<()>();
    let name = config.name.to_string();
    // Multi-thread even for one worker: a current-thread runtime here measured 97–104k
    // msg/s against 130–144k, with a worse tail at 10k msg/s (throughput bench).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.concurrency.max(1))
        .thread_name(format!("sluice-{name}"))
        .enable_all()
        .build()
        .context("cannot start the pipeline's runtime")?;
    std::thread::Builder::new()
        .name(format!("sluice-{name}"))
        .spawn(move || {
            // Dropped last, after the runtime and everything on it: `ended` resolves
            // only once the pipeline's tasks and connections are gone.
            let _ended = ended_tx;
            // Spawned, not run by `block_on` itself: the loop then runs on the
            // runtime's worker beside the tasks it wakes (its connections, its handler
            // calls).
            // Every line the pipeline logs, its handlers' included, carries its name.
            let span = tracing::info_span!("pipeline", pipeline = %name);
            let work = runtime.spawn(
                async move {
                let pipeline = match Pipeline::new(config, cell, &broker, &consumer, board).await
                {
                    Ok(pipeline) => pipeline,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                tokio::select! {
                    result = pipeline.run(stop) => {
                        if let Err(e) = result {
                            tracing::error!(error = format!("{e:#}"), "pipeline failed");
                        }
                    }
                    () = kill.cancelled() => {}
                }
            }
                .instrument(span),
            );
            if let Err(e) = runtime.block_on(work)
                && e.is_panic()
            {
                tracing::error!(pipeline = %name, "pipeline panicked; its entries stay pending and will be delivered again");
            }
            // Tasks it spawned (a prefetch, a handler call) are dropped here; a guest in
            // a call gives its worker back within an epoch tick.
            drop(runtime);
        })
        .context("cannot start the pipeline's thread")?;
    Ok((started, ended))
}

/// A running daemon: its pipelines, its plugins, and the private Redis it started if it did.
pub struct Daemon {
    redis: Option<RedisServer>,
    url: String,
    broker: Broker,
    runtime: Runtime,
    consumer: String,
    registry: Arc<Registry>,
    pipelines: BTreeMap<String, Running>,
    shutdown: CancellationToken,
    drain_timeout: Duration,
    watch: bool,
    watcher: CancellationToken,
    background: TaskTracker,
    admin_addr: Option<SocketAddr>,
    loader: Option<ConfigLoader>,
    reloads: mpsc::Receiver<ReloadReply>,
    reload_handle: ReloadHandle,
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
    let (tx, reloads) = mpsc::channel(4);
    let mut daemon = Daemon {
        redis,
        url,
        broker,
        runtime,
        consumer: config
            .redis
            .consumer
            .clone()
            .unwrap_or_else(default_consumer_name),
        registry: Arc::new(Registry::default()),
        pipelines: BTreeMap::new(),
        shutdown: shutdown.clone(),
        drain_timeout: config.drain_timeout,
        watch: config.plugins.watch,
        watcher: shutdown.child_token(),
        background: TaskTracker::new(),
        admin_addr: None,
        loader: None,
        reloads,
        reload_handle: ReloadHandle(tx),
    };
    // Every plugin is compiled (or taken from the cache) before any pipeline starts.
    let mut plugins = Vec::new();
    for pipeline in &config.pipelines {
        plugins.push(daemon.load_plugin(pipeline).await?);
    }
    for (pipeline, plugin) in config.pipelines.into_iter().zip(plugins) {
        daemon.start_pipeline(pipeline, plugin).await?;
    }
    daemon.restart_watcher()?;
    if let Some(admin) = &config.admin {
        daemon.admin_addr = Some(daemon.start_admin(admin).await?);
    }
    Ok(daemon)
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
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Whether the daemon started its own `redis-server`.
    pub fn owns_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Lets the daemon reload its config with `loader` (SIGHUP, `POST /v1/reload`).
    pub fn reload_with(&mut self, loader: ConfigLoader) {
        self.loader = Some(loader);
    }

    /// A handle that asks this daemon to reload its config.
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload_handle.clone()
    }

    /// Serves reload requests until shutdown, then gives in-flight work `drain_timeout`
    /// to commit; stops the private Redis, if any, at the end.
    pub async fn wait(mut self) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some(reply) = self.reloads.recv() => {
                    let outcome = self.reload().await.map_err(|e| format!("{e:#}"));
                    if let Err(e) = &outcome {
                        tracing::warn!(error = %e, "config reload refused; the running config stays");
                    }
                    let _ = reply.send(outcome);
                }
            }
        }
        let running = std::mem::take(&mut self.pipelines);
        stop_all(running.into_values().collect(), self.drain_timeout).await;
        self.background.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.background.wait()).await;
        drop(self.redis);
    }

    async fn reload(&mut self) -> Result<ReloadReport> {
        let loader = self
            .loader
            .as_ref()
            .context("this daemon was started without a config file to reload")?;
        let config = loader()?;
        let mut report = ReloadReport::default();
        let mut wanted: BTreeMap<String, PipelineConfig> = config
            .pipelines
            .into_iter()
            .map(|p| (p.name.to_string(), p))
            .collect();
        // Compile every new or changed plugin first: a broken one refuses the whole reload.
        let mut plugins = BTreeMap::new();
        for (name, pipeline) in &wanted {
            if self
                .pipelines
                .get(name)
                .is_none_or(|r| r.config != *pipeline)
            {
                plugins.insert(name.clone(), self.load_plugin(pipeline).await?);
            }
        }
        let names: Vec<String> = self.pipelines.keys().cloned().collect();
        for name in names {
            match wanted.get(&name) {
                Some(pipeline) if self.pipelines[&name].config == *pipeline => {
                    wanted.remove(&name);
                }
                Some(_) => report.restarted.push(name.clone()),
                None => report.removed.push(name.clone()),
            }
        }
        let stopping: Vec<Running> = report
            .removed
            .iter()
            .chain(&report.restarted)
            .filter_map(|name| self.pipelines.remove(name))
            .collect();
        stop_all(stopping, self.drain_timeout).await;
        for name in &report.removed {
            self.registry.remove(name);
        }
        for (name, pipeline) in wanted {
            if !report.restarted.contains(&name) {
                report.added.push(name.clone());
            }
            let plugin = plugins.remove(&name).context("plugin compiled above")?;
            self.start_pipeline(pipeline, plugin).await?;
        }
        self.restart_watcher()?;
        tracing::info!(?report, "config reloaded");
        Ok(report)
    }

    async fn load_plugin(&self, pipeline: &PipelineConfig) -> Result<Plugin> {
        let name = pipeline.name.clone();
        let path = pipeline.plugin.clone();
        let runtime = self.runtime.clone();
        let plugin = tokio::task::spawn_blocking(move || Plugin::load(&runtime, &path))
            .await?
            .with_context(|| format!("pipeline {:?} cannot start", name.as_str()))?;
        tracing::info!(pipeline = %name, plugin = %plugin.digest(), compile_ms = plugin.compile_time().as_millis() as u64, cached = plugin.source() == Source::Cached, "plugin loaded");
        Ok(plugin)
    }

    async fn start_pipeline(&mut self, config: PipelineConfig, plugin: Plugin) -> Result<()> {
        let name = config.name.to_string();
        let streams = Streams {
            input: config.input.to_string(),
            dead_letter: config.dead_letter_stream(),
        };
        let cell = self.registry.add(&name, &config.plugin, streams, plugin);
        let board = self
            .registry
            .get(&name)
            .map(|s| s.board().clone())
            .context("slot added above")?;
        let stop = self.shutdown.child_token();
        let kill = CancellationToken::new();
        let (started, ended) = spawn_pipeline(
            config.clone(),
            cell,
            self.broker.clone(),
            self.consumer.clone(),
            board,
            stop.clone(),
            kill.clone(),
        )
        .with_context(|| format!("pipeline {name:?} cannot start"))?;
        let running = Running {
            config,
            stop,
            kill,
            ended,
        };
        started
            .await
            .context("its thread ended before it started")
            .and_then(|started| started)
            .with_context(|| format!("pipeline {name:?} cannot start"))?;
        self.pipelines.insert(name, running);
        Ok(())
    }

    fn restart_watcher(&mut self) -> Result<()> {
        if !self.watch {
            return Ok(());
        }
        self.watcher.cancel();
        self.watcher = self.shutdown.child_token();
        reload::watch(
            self.registry.clone(),
            self.runtime.clone(),
            self.watcher.clone(),
        )
    }

    async fn start_admin(&self, admin: &AdminConfig) -> Result<SocketAddr> {
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
            registry: self.registry.clone(),
            runtime: self.runtime.clone(),
            token,
            reload: self.reload_handle(),
            broker: self.broker.clone(),
        });
        let max_body = usize::try_from(admin.max_body.as_u64()).unwrap_or(usize::MAX);
        self.background.spawn(admin::serve(
            listener,
            admin::router(state, max_body),
            self.shutdown.clone(),
        ));
        tracing::info!(%addr, "admin API listening");
        Ok(addr)
    }
}

/// Asks `pipelines` to stop, gives them `drain_timeout` to finish the calls in flight and
/// commit, then drops the rest where they are (safe: nothing uncommitted is acknowledged).
async fn stop_all(pipelines: Vec<Running>, drain_timeout: Duration) {
    for running in &pipelines {
        running.stop.cancel();
    }
    let deadline = tokio::time::Instant::now() + drain_timeout;
    for mut running in pipelines {
        let name = running.config.name.to_string();
        if tokio::time::timeout_at(deadline, &mut running.ended)
            .await
            .is_ok()
        {
            continue;
        }
        tracing::warn!(pipeline = %name, ?drain_timeout, "drain timeout: stopping with work in flight; its entries stay pending and will be delivered again");
        running.kill.cancel();
        // A guest in a call returns to its runtime within an epoch tick.
        if tokio::time::timeout(KILL_GRACE, &mut running.ended)
            .await
            .is_err()
        {
            tracing::error!(pipeline = %name, grace = ?KILL_GRACE, "pipeline thread did not end after being stopped; leaving it behind");
        }
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
