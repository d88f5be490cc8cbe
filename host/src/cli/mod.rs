//! The `sluice` subcommands: their arguments (parsed by `clap` in `main.rs`) and what
//! each does. `main.rs` only parses and dispatches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

mod dlq;
mod send;
pub use dlq::{DlqAction, DlqArgs};
pub use send::{PartitionArgs, SendArgs};

/// The config file and the Redis it runs against: shared by `run`, `dev`, `dlq`.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// The config file.
    #[arg(short, long, default_value = "sluice.toml", global = true)]
    pub config: PathBuf,
    /// Redis URL; overrides `[redis] url` (and `nodes`, `sentinels`; with `cluster =
    /// true` it is the one seed node). Without either, `run` and `dev` start a
    /// private redis-server and stop it at exit, and `send` and `dlq` use the private
    /// server of the daemon running the same config file.
    #[arg(long, env = "SLUICE_REDIS_URL", global = true)]
    pub redis: Option<String>,
}

/// `sluice run`.
#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// Consumer name in every group; overrides `[redis] consumer`. Each daemon of a
    /// group needs its own.
    #[arg(long, env = "SLUICE_CONSUMER", value_parser = |s: &str| crate::config::consumer_name(s).map_err(|e| e.to_string()))]
    pub consumer: Option<String>,
    /// Reload a pipeline's plugin when its file changes.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub threads: Threads,
}

/// `sluice dev`.
#[derive(clap::Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub threads: Threads,
}

/// The shared runtime's threads, for the commands that run a daemon.
#[derive(clap::Args, Clone, Copy)]
pub struct Threads {
    /// Threads of the shared runtime (supervision, reloads, the admin API); default: 2,
    /// or 1 on a single CPU. Pipelines do not run here: each has threads of its own (as
    /// many as its `concurrency`).
    #[arg(long, env = "SLUICE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

/// `sluice compile`.
#[derive(clap::Args)]
pub struct CompileArgs {
    /// The config file: its pipelines' plugins, cache directory and fuel setting.
    #[arg(short, long, default_value = "sluice.toml")]
    pub config: PathBuf,
}

/// `sluice new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and '-'.
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: crate::scaffold::Language,
    /// Where to create it; default: ./NAME.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The Sluice checkout (its wit/ and guest-sdk/); default: the one holding the
    /// current directory, else the one this binary was built from.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// `sluice invoke`.
#[derive(clap::Args)]
pub struct InvokeArgs {
    /// The plugin (a `.wasm` component).
    pub plugin: PathBuf,
    /// Message fields, in order.
    #[arg(value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// Message fields as a JSON object (after any NAME=VALUE ones).
    #[arg(long, value_name = "OBJECT")]
    pub json: Option<String>,
    /// What the handler's `config(key)` answers; repeat for more keys.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// The stream the message comes from.
    #[arg(long, default_value = "INPUT")]
    pub source: String,
    /// The message's ID.
    #[arg(long, default_value = "0-1")]
    pub id: String,
    /// The delivery attempt the handler sees.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// Wall-time limit of the call.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Handler state before the call, as a JSON object: `{"key": "value", "hash":
    /// {"field": "value"}}`. The writes the call's commit would apply are printed.
    #[arg(long, value_name = "FILE.json")]
    pub state: Option<PathBuf>,
    /// The key prefixes the handler may use, as a pipeline's `state`; repeat for more.
    /// Without any, every key is allowed.
    #[arg(long = "state-prefix", value_name = "PREFIX")]
    pub state_prefixes: Vec<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub output_json: bool,
}

impl RunArgs {
    /// Runs the config until SIGTERM/SIGINT; SIGHUP reloads it.
    pub async fn run(self) -> Result<ExitCode> {
        let overrides = Overrides {
            redis: self.target.redis,
            consumer: self.consumer,
            watch: self.watch,
        };
        run(self.target.config, overrides).await
    }
}

impl DevArgs {
    /// `sluice dev`: `run` with every plugin watched.
    pub async fn run(self) -> Result<ExitCode> {
        let overrides = Overrides {
            redis: self.target.redis,
            consumer: None,
            watch: true,
        };
        run(self.target.config, overrides).await
    }
}

impl NewArgs {
    /// Creates the plugin project.
    pub fn run(self) -> Result<ExitCode> {
        let dir = self.dir.unwrap_or_else(|| PathBuf::from(&self.name));
        let root = match self.sdk {
            Some(root) => root,
            None => crate::scaffold::find_root(&std::env::current_dir()?).context(
                "cannot find a Sluice checkout (wit/ and guest-sdk/) here or above: pass --sdk PATH",
            )?,
        };
        let lang = self.lang;
        let made = crate::scaffold::create(&self.name, lang, &dir, &root)?;
        let language = match lang {
            crate::scaffold::Language::Rust => "Rust",
            crate::scaffold::Language::Js => "JavaScript",
            crate::scaffold::Language::Python => "Python",
            crate::scaffold::Language::C => "C",
        };
        println!("created {} ({language})", made.dir.display());
        println!("  build: {}", made.build.display());
        println!(
            "  try:   sluice invoke {} greeting=hello",
            made.wasm.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

impl InvokeArgs {
    /// Calls the handler once; exit status 0 with outputs, 2 when the handler failed.
    pub async fn run(self) -> Result<ExitCode> {
        let mut call = crate::invoke::Invocation {
            source: self.source,
            id: self.id,
            attempt: self.attempt,
            ..Default::default()
        };
        call.limits.timeout = self.timeout;
        for pair in &self.fields {
            let (name, value) = crate::invoke::parse_pair(pair)?;
            call.fields.push((name, value.into_bytes()));
        }
        if let Some(json) = self.json {
            call.fields.extend(crate::invoke::fields_from_json(&json)?);
        }
        for pair in &self.config {
            let (key, value) = crate::invoke::parse_pair(pair)
                .map_err(|e| e.context("--config takes KEY=VALUE"))?;
            call.config.insert(key, value);
        }
        if let Some(path) = &self.state {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --state {}", path.display()))?;
            call.state = Some(
                crate::state::MemoryStore::from_json(&text)
                    .with_context(|| format!("--state {} is not valid", path.display()))?,
            );
        }
        call.state_prefixes = self.state_prefixes;
        let cache = crate::config::PluginsConfig::default().cache_dir();
        let invoked = crate::invoke::invoke(&self.plugin, cache.as_deref(), call).await?;
        if self.output_json {
            let mut json = crate::invoke::render_json(&invoked.result);
            json["state"] = crate::invoke::render_state_json(&invoked.state);
            println!("{json}");
        } else {
            print!("{}", crate::invoke::render_text(&invoked.result));
            print!("{}", crate::invoke::render_state_text(&invoked.state));
        }
        tracing::debug!(digest = %invoked.digest, load = ?invoked.load_time, call = ?invoked.call_time, "invoked");
        Ok(if invoked.result.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    }
}

impl CompileArgs {
    /// Precompiles every pipeline's plugin into the cache.
    pub async fn run(self) -> Result<ExitCode> {
        compile(&self.config).await?;
        Ok(ExitCode::SUCCESS)
    }
}

async fn compile(path: &Path) -> Result<()> {
    let config = Config::load(path)?;
    let dir = config.plugins.cache_dir().with_context(|| {
        format!(
            "{}: [plugins] cache is off, so there is nothing to precompile into",
            path.display()
        )
    })?;
    let cache = crate::wasm::Cache::open(&dir)?;
    // The same engine settings as the daemon: compiled code is only reused by an engine
    // configured alike (fuel metering changes it).
    let runtime = crate::wasm::Runtime::new(config.meters_fuel(), Some(cache))?;
    let mut plugins: Vec<PathBuf> = config.pipelines.iter().map(|p| p.plugin.clone()).collect();
    plugins.sort();
    plugins.dedup();
    for plugin in plugins {
        let runtime = runtime.clone();
        let path = plugin.clone();
        let loaded =
            tokio::task::spawn_blocking(move || crate::wasm::Plugin::load(&runtime, &path))
                .await??;
        // The same admission the daemon makes: a plugin that imports handler state only
        // in pipelines that declare state prefixes.
        for pipeline in config.pipelines.iter().filter(|p| p.plugin == plugin) {
            crate::registry::admit(&loaded, &pipeline.state)
                .with_context(|| format!("pipeline {:?}", pipeline.name.as_str()))?;
        }
        let how = match loaded.source() {
            crate::wasm::Source::Compiled => "compiled",
            crate::wasm::Source::Cached => "already cached",
        };
        println!(
            "{how}: {} ({}, {:.0?})",
            loaded.path().display(),
            loaded.digest(),
            loaded.compile_time()
        );
    }
    println!("cache: {}", dir.display());
    Ok(())
}

/// The config at `path`, its Redis overridden by `redis`.
fn tool_config(path: &Path, redis: Option<String>) -> Result<Config> {
    let mut config = Config::load(path)?;
    if let Some(url) = redis {
        config.redis.point_at(url);
    }
    Ok(config)
}

/// A connection to `config`'s Redis (read from `path`); without one in the config, the
/// private server of a daemon running the same file, if there is one.
async fn connect_to(config: &Config, path: &Path, what: &str) -> Result<crate::broker::Broker> {
    let mut redis = config.redis.clone();
    if redis.target()?.is_none()
        && let Some(found) = crate::redis_server::announce::find(path)
    {
        eprintln!(
            "{what}: using the private redis-server of the daemon running {} (pid {}): {}",
            path.display(),
            found.pid,
            found.url
        );
        redis.point_at(found.url);
    }
    let target = redis.target()?.with_context(|| {
        format!(
            "{what} needs the Redis the pipelines use: set [redis] url (or sentinels, or cluster nodes), pass --redis, or start `sluice dev -c {}` first (its private server is found)",
            path.display()
        )
    })?;
    crate::broker::Broker::connect(&target, CancellationToken::new()).await
}

/// The pipeline named `name` in `config` (read from `path`); the error lists the names.
fn find_pipeline<'a>(
    config: &'a Config,
    path: &Path,
    name: &str,
) -> Result<&'a crate::config::PipelineConfig> {
    config
        .pipelines
        .iter()
        .find(|p| p.name.as_str() == name)
        .with_context(|| {
            let names: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
            format!(
                "no pipeline named {name:?} in {}; its pipelines: {}",
                path.display(),
                names.join(", ")
            )
        })
}

/// What the command line says over the config file; applied again on every reload.
#[derive(Clone)]
struct Overrides {
    redis: Option<String>,
    consumer: Option<String>,
    watch: bool,
}

fn load(path: &Path, overrides: &Overrides) -> Result<Config> {
    let mut config = Config::load(path)?;
    if let Some(url) = &overrides.redis {
        config.redis.point_at(url.clone());
        config.validate()?;
    }
    if overrides.consumer.is_some() {
        config.redis.consumer.clone_from(&overrides.consumer);
    }
    config.plugins.watch |= overrides.watch;
    Ok(config)
}

/// Runs a config file until SIGTERM/SIGINT; SIGHUP reloads it.
async fn run(path: PathBuf, overrides: Overrides) -> Result<ExitCode> {
    let config = load(&path, &overrides)?;
    let shutdown = CancellationToken::new();
    crate::shutdown::on_signals(shutdown.clone())?;
    let mut daemon = match crate::start(config, shutdown.clone()).await {
        Ok(daemon) => daemon,
        // SIGTERM during start-up (while Redis does not answer, say) is a stop asked
        // for, not a failure.
        Err(e) if shutdown.is_cancelled() && e.downcast_ref::<crate::DaemonFailed>().is_none() => {
            tracing::info!(reason = %format!("{e:#}"), "stopped during start-up");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    let announced = announce_private_redis(&daemon, &path).map(std::sync::Arc::new);
    if let Some(announced) = announced.clone() {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            while tokio::select! { _ = stop.cancelled() => false, _ = every.tick() => true } {
                announced.refresh();
            }
        });
    }
    daemon.reload_with(Box::new(move || load(&path, &overrides)));
    crate::shutdown::on_hangup(daemon.reload_handle())?;
    daemon.wait().await?;
    Ok(ExitCode::SUCCESS)
}

/// With a private redis-server: says how to reach it, and announces it for the tools
/// run with the same config (`send`, `dlq`) for as long as the guard lives.
fn announce_private_redis(
    daemon: &crate::Daemon,
    path: &Path,
) -> Option<crate::redis_server::announce::Announced> {
    if !daemon.runs_private_redis() {
        return None;
    }
    let url = daemon.redis_url();
    let pipelines = daemon.entry_pipelines();
    let pipeline = match pipelines.as_slice() {
        [one] => one.clone(),
        _ => "PIPELINE".to_owned(),
    };
    tracing::info!(
        "send entries with `sluice send {pipeline} -c {} NAME=VALUE...` (it finds this server; entries come in through {}), or from anything else at {url}",
        path.display(),
        pipelines.join(", ")
    );
    match crate::redis_server::announce::announce(path, url) {
        Ok(announced) => Some(announced),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot announce the private server: `sluice send` and `sluice dlq` need --redis {url}");
            None
        }
    }
}
