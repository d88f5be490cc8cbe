//! The supervisor: starts the pipelines of a config, applies config reloads (added
//! pipelines start, removed ones drain and stop, changed ones restart), and drains
//! everything at shutdown.

mod failure;
mod launch;
mod names;
mod partitions;
mod reload;
mod settings;
mod thread;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, Deployment};
use crate::config::{AdminConfig, Config, PluginsConfig, TelemetryConfig};
use crate::control::{self, ConfigLoader, ReloadHandle, ReloadRequests};
use crate::redis_server::RedisServer;
use crate::registry::Registry;
use crate::status::Warnings;
use crate::telemetry::traces::Tracing;
use crate::wasm::{Cache, Runtime};
use crate::{admin, watch};
pub use failure::DaemonFailed;
use failure::Failure;
use names::Names;
use settings::SettingsCheck;
use thread::{Running, stop_all, stop_now};

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
    reloads: ReloadRequests,
    reload_handle: ReloadHandle,
    /// Traces: the default mode, and the span exporter if there is one (its `[telemetry]`
    /// is read at start-up; a reload does not change it).
    tracing: Tracing,
    /// The daemon-wide sections as started, which a reload does not change.
    started: Started,
    /// Why the daemon stopped on its own (its private Redis died, it lost its consumer
    /// name), if it did.
    failure: Failure,
    /// The consumer name, held in every group it consumes.
    names: Arc<Names>,
    /// Stops the renewal of the name's leases: after the drain, not before it.
    names_stop: CancellationToken,
}

/// The sections of the config a reload does not apply (see [`Daemon::reload`]).
struct Started {
    telemetry: TelemetryConfig,
    plugins: PluginsConfig,
    admin: Option<AdminConfig>,
}

/// How long the spans still queued at exit get to reach the collector.
const SPAN_FLUSH: Duration = Duration::from_secs(2);

/// Starts every pipeline of `config`; they run until `shutdown` is cancelled.
///
/// Without a `[redis] url`, a private `redis-server` is started and stopped with the
/// daemon. Plugins are compiled before anything is read, so a broken plugin fails
/// start-up instead of a message.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Daemon> {
    let mut daemon = Daemon::connect(&config, shutdown.clone()).await?;
    let warnings = daemon.watch(&config).await;
    // Every plugin is compiled (or taken from the cache) before any pipeline starts.
    let mut plugins = Vec::new();
    for pipeline in &config.pipelines {
        plugins.push(daemon.load_plugin(pipeline).await?);
    }
    if let Some(failure) = daemon.failure.get() {
        return Err(DaemonFailed(failure).into());
    }
    let admin = config.admin.clone();
    for (pipeline, plugin) in config.pipelines.into_iter().zip(plugins) {
        daemon.start_pipeline(pipeline, plugin).await?;
    }
    daemon.restart_watcher()?;
    if let Some(admin) = &admin {
        daemon.start_admin(admin, warnings, shutdown).await?;
    }
    Ok(daemon)
}

/// The Redis deployment of `config`, or a private server started now.
async fn redis_of(config: &Config) -> Result<(Option<RedisServer>, Deployment)> {
    if let Some(deployment) = config.redis.deployment()? {
        return Ok((None, deployment));
    }
    let server = tokio::task::spawn_blocking(RedisServer::start).await??;
    let url = server.url();
    let binary = crate::redis_server::server_binary();
    tracing::info!(%url, server = %binary, "no [redis] url configured: started a private server (its data is gone at exit)");
    Ok((Some(server), Deployment::url(url)))
}

/// Holds the consumer name in every group of `config`'s pipelines; on a cluster, the
/// slot check comes first (the keys each script touches must share a slot), in words.
async fn hold_name(broker: &Broker, config: &Config) -> Result<Arc<Names>> {
    if broker.is_cluster() {
        for pipeline in &config.pipelines {
            pipeline
                .check_slots()
                .with_context(|| format!("pipeline {:?} cannot start", pipeline.name.as_str()))?;
        }
    }
    Names::hold(broker, config.redis.consumer.as_deref(), &config.pipelines).await
}

impl Daemon {
    /// Connects to Redis (started privately if `config` names none), opens the plugin
    /// runtime and holds the consumer name: a daemon with no pipeline yet.
    async fn connect(config: &Config, shutdown: CancellationToken) -> Result<Daemon> {
        let (redis, deployment) = redis_of(config).await?;
        let url = deployment.shown();
        let broker = Broker::connect(&deployment, shutdown.clone()).await?;
        let cache = match config.plugins.cache_dir() {
            Some(dir) => Some(Cache::open(&dir)?),
            None => None,
        };
        let runtime = Runtime::new(config.meters_fuel(), cache)?;
        let (reload_handle, reloads) = control::reload_channel();
        let names = hold_name(&broker, config).await?;
        let consumer = names.name().to_owned();
        let tracing = Tracing::start(&config.telemetry, &consumer).context("in [telemetry]")?;
        let started = Started {
            telemetry: config.telemetry.clone(),
            plugins: config.plugins.clone(),
            admin: config.admin.clone(),
        };
        Ok(Daemon {
            started,
            tracing,
            redis,
            url,
            broker,
            runtime,
            consumer,
            registry: Arc::new(Registry::default()),
            pipelines: BTreeMap::new(),
            drain_timeout: config.drain_timeout,
            watch: config.plugins.watch,
            watcher: shutdown.child_token(),
            background: TaskTracker::new(),
            admin_addr: None,
            loader: None,
            reloads,
            reload_handle,
            failure: Failure::new(shutdown.clone()),
            names,
            names_stop: CancellationToken::new(),
            shutdown,
        })
    }

    /// Starts the background watches: the private server, the consumer name's leases,
    /// the server's settings (whose warnings it returns, shown with every pipeline).
    async fn watch(&self, config: &Config) -> Arc<Warnings> {
        // From the start: a server that dies while plugins compile ends the daemon too (a
        // start-up that fails kills the server itself, which is not reported).
        if let Some(server) = &self.redis {
            failure::watch_private_server(server, &self.failure, &self.background);
        }
        failure::keep_names(
            &self.names,
            &self.failure,
            &self.background,
            self.names_stop.clone(),
            config.redis.remove_idle_consumers_after,
        );
        let warnings = Arc::new(Warnings::default());
        SettingsCheck::start(self.broker.clone(), self.redis.is_some(), warnings.clone())
            .await
            .spawn(&self.background, self.shutdown.clone());
        warnings
    }

    /// Starts the admin API.
    async fn start_admin(
        &mut self,
        config: &AdminConfig,
        warnings: Arc<Warnings>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let state = admin::AdminState {
            registry: self.registry.clone(),
            runtime: self.runtime.clone(),
            token: None,
            reload: self.reload_handle(),
            broker: self.broker.clone(),
            warnings,
        };
        let addr = admin::start(config, state, &self.background, shutdown).await?;
        self.admin_addr = Some(addr);
        Ok(())
    }

    /// Where Redis is, without its password: the URL (the private server's, if it was
    /// started), or the Sentinels and the master's name.
    pub fn redis_url(&self) -> &str {
        &self.url
    }

    /// Whether Redis is the private server this daemon started.
    pub fn runs_private_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// The running pipelines that entries come into from outside: those whose input is
    /// no pipeline's output (all of them if every input is one).
    pub fn entry_pipelines(&self) -> Vec<String> {
        let outputs: std::collections::HashSet<&str> = self
            .pipelines
            .values()
            .flat_map(|r| r.config.outputs.iter().map(|o| o.as_str()))
            .collect();
        let first: Vec<String> = self
            .pipelines
            .iter()
            .filter(|(_, r)| !outputs.contains(r.config.input.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        match first.is_empty() {
            true => self.pipelines.keys().cloned().collect(),
            false => first,
        }
    }

    /// The live plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Where the admin API listens, if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
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
    /// to commit; stops the private Redis, if any, at the end. An error when the daemon
    /// stopped on its own (its private Redis ended).
    pub async fn wait(mut self) -> Result<()> {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some(reply) = self.reloads.next() => {
                    let outcome = self.reload().await.map_err(|e| format!("{e:#}"));
                    if let Err(e) = &outcome {
                        tracing::warn!(error = %e, "config reload refused; the running config stays");
                    }
                    let _ = reply.send(outcome);
                }
            }
        }
        let failure = self.failure.get();
        let running: Vec<Running> = std::mem::take(&mut self.pipelines).into_values().collect();
        match failure {
            // With the private Redis gone, or the name lost, nothing can be committed:
            // no drain.
            Some(_) => stop_now(running).await,
            None => stop_all(running, self.drain_timeout).await,
        }
        self.names_stop.cancel();
        // A clean stop leaves its groups (where nothing is pending for it); a failed
        // one only gives its names back, if Redis still answers.
        match failure {
            Some(_) => self.names.release().await,
            None => self.names.leave().await,
        }
        // The spans of the last entries handled go out before the exit.
        let traces = self.tracing.clone();
        let _ = tokio::task::spawn_blocking(move || traces.shutdown(SPAN_FLUSH)).await;
        self.background.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.background.wait()).await;
        drop(self.redis);
        match failure {
            Some(message) => Err(DaemonFailed(message).into()),
            None => Ok(()),
        }
    }

    fn restart_watcher(&mut self) -> Result<()> {
        if !self.watch {
            return Ok(());
        }
        self.watcher.cancel();
        self.watcher = self.shutdown.child_token();
        watch::watch(
            self.registry.clone(),
            self.runtime.clone(),
            self.watcher.clone(),
        )
    }
}

/// This host's name (`/proc/sys/kernel/hostname`; `localhost` if unknown).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
