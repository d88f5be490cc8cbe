//! The `sluice` command line. No logic lives here: see the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// glibc's malloc spent a fifth of the data path's CPU time in allocation and
/// consolidation under load (perf, see the performance notes); mimalloc is a drop-in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run Redis Streams consumers as sandboxed WebAssembly handlers.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Threads of the shared runtime (supervision, reloads, the admin API); default: 2,
    /// or 1 on a single CPU. Pipelines do not run here: each has threads of its own (as
    /// many as its `concurrency`).
    #[arg(long, global = true, env = "SLUICE_WORKER_THREADS")]
    worker_threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines of a config file until SIGTERM/SIGINT.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "sluice.toml")]
        config: PathBuf,
        /// Redis URL; overrides `[redis] url`. Without either, a private redis-server
        /// is started and stopped at exit.
        #[arg(long, env = "SLUICE_REDIS_URL")]
        redis: Option<String>,
        /// Consumer name in every group; overrides `[redis] consumer`. Each daemon of a
        /// group needs its own.
        #[arg(long, env = "SLUICE_CONSUMER")]
        consumer: Option<String>,
        /// Reload a pipeline's plugin when its file changes.
        #[arg(long)]
        watch: bool,
    },
    /// Inspect and act on a pipeline's dead letters (needs a Redis URL).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
        /// The config file.
        #[arg(short, long, default_value = "sluice.toml", global = true)]
        config: PathBuf,
        /// Redis URL; overrides `[redis] url`.
        #[arg(long, env = "SLUICE_REDIS_URL", global = true)]
        redis: Option<String>,
    },
    /// Call a plugin's handler once on one message, with no Redis, and print its outputs
    /// or its failure. Exit status: 0 outputs, 2 the handler failed, 1 an error.
    ///
    /// Example: `sluice invoke target/plugins/payments.wasm orderId=1 orderAmount=9.5 userId=u`
    Invoke {
        /// The plugin (a `.wasm` component).
        plugin: PathBuf,
        /// Message fields, in order.
        #[arg(value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// Message fields as a JSON object (after any NAME=VALUE ones).
        #[arg(long, value_name = "OBJECT")]
        json: Option<String>,
        /// What the handler's `config(key)` answers; repeat for more keys.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// The stream the message comes from.
        #[arg(long, default_value = "INPUT")]
        source: String,
        /// The message's ID.
        #[arg(long, default_value = "0-1")]
        id: String,
        /// The delivery attempt the handler sees.
        #[arg(long, default_value_t = 1)]
        attempt: u32,
        /// Wall-time limit of the call.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Print the outcome as JSON.
        #[arg(long)]
        output_json: bool,
    },
    /// Develop a plugin: `run` with every plugin file watched and hot-reloaded, on a
    /// private redis-server unless a URL is given.
    Dev {
        /// The config file.
        #[arg(short, long, default_value = "sluice.toml")]
        config: PathBuf,
        /// Redis URL; overrides `[redis] url`.
        #[arg(long, env = "SLUICE_REDIS_URL")]
        redis: Option<String>,
    },
    /// Precompile every pipeline's plugin into the compiled-code cache (at deploy time,
    /// so that the daemon's first start loads them in milliseconds instead of compiling
    /// for seconds), checking each against the handler world.
    Compile {
        /// The config file: its pipelines' plugins, cache directory and fuel setting.
        #[arg(short, long, default_value = "sluice.toml")]
        config: PathBuf,
    },
    /// Start a new plugin: a project that builds with `./build.sh` into NAME.wasm and
    /// passes `sluice invoke` as it is.
    ///
    /// Example: `sluice new order-audit --lang python` (then `order-audit/build.sh`).
    New {
        /// The plugin's name: lowercase letters, digits and '-'.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: sluice::scaffold::Language,
        /// Where to create it; default: ./NAME.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The Sluice checkout (its wit/ and guest-sdk/); default: the one holding the
        /// current directory, else the one this binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Print dead letters, oldest first.
    List {
        /// The pipeline.
        pipeline: String,
        /// How many at most.
        #[arg(long, default_value_t = 50)]
        count: usize,
    },
    /// Send dead letters back to the input with their original fields.
    Replay {
        /// The pipeline.
        pipeline: String,
        /// Replay only these dead-letter IDs (all when none is given).
        #[arg(long = "id")]
        ids: Vec<String>,
    },
    /// Delete every dead letter of the pipeline.
    Purge {
        /// The pipeline.
        pipeline: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let workers = cli
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(2)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    let done = match command {
        Command::Run {
            config,
            redis,
            consumer,
            watch,
        } => {
            run(
                config,
                Overrides {
                    redis,
                    consumer,
                    watch,
                },
            )
            .await
        }
        Command::Dlq {
            action,
            config,
            redis,
        } => dlq(action, &config, redis).await,
        Command::Compile { config } => compile(&config).await,
        Command::New {
            name,
            lang,
            dir,
            sdk,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let root = match sdk {
                Some(root) => root,
                None => anyhow::Context::context(
                    sluice::scaffold::find_root(&std::env::current_dir()?),
                    "cannot find a Sluice checkout (wit/ and guest-sdk/) here or above: pass --sdk PATH",
                )?,
            };
            let made = sluice::scaffold::create(&name, lang, &dir, &root)?;
            println!("created {} ({lang:?})", made.dir.display());
            println!("  build: {}", made.build.display());
            println!(
                "  try:   sluice invoke {} greeting=hello",
                made.wasm.display()
            );
            Ok(())
        }
        Command::Invoke {
            plugin,
            fields,
            json,
            config,
            source,
            id,
            attempt,
            timeout,
            output_json,
        } => {
            let mut call = sluice::invoke::Invocation {
                source,
                id,
                attempt,
                ..Default::default()
            };
            call.limits.timeout = timeout;
            for pair in &fields {
                let (name, value) = sluice::invoke::parse_pair(pair)?;
                call.fields.push((name, value.into_bytes()));
            }
            if let Some(json) = json {
                call.fields.extend(sluice::invoke::fields_from_json(&json)?);
            }
            for pair in &config {
                let (key, value) = sluice::invoke::parse_pair(pair)
                    .map_err(|e| e.context("--config takes KEY=VALUE"))?;
                call.config.insert(key, value);
            }
            let cache = sluice::config::PluginsConfig::default().cache_dir();
            let invoked = sluice::invoke::invoke(&plugin, cache.as_deref(), call).await?;
            if output_json {
                println!("{}", sluice::invoke::render_json(&invoked.result));
            } else {
                print!("{}", sluice::invoke::render_text(&invoked.result));
            }
            tracing::debug!(digest = %invoked.digest, load = ?invoked.load_time, call = ?invoked.call_time, "invoked");
            return Ok(if invoked.result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
        Command::Dev { config, redis } => {
            run(
                config,
                Overrides {
                    redis,
                    consumer: None,
                    watch: true,
                },
            )
            .await
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

async fn compile(path: &std::path::Path) -> Result<()> {
    use anyhow::Context;
    let config = sluice::config::Config::load(path)?;
    let dir = config.plugins.cache_dir().with_context(|| {
        format!(
            "{}: [plugins] cache is off, so there is nothing to precompile into",
            path.display()
        )
    })?;
    let cache = sluice::wasm::Cache::open(&dir)?;
    // The same engine settings as the daemon: compiled code is only reused by an engine
    // configured alike (fuel metering changes it).
    let runtime = sluice::wasm::Runtime::new(config.meters_fuel(), Some(cache))?;
    let mut plugins: Vec<PathBuf> = config.pipelines.iter().map(|p| p.plugin.clone()).collect();
    plugins.sort();
    plugins.dedup();
    for plugin in plugins {
        let runtime = runtime.clone();
        let loaded =
            tokio::task::spawn_blocking(move || sluice::wasm::Plugin::load(&runtime, &plugin))
                .await??;
        let how = match loaded.source() {
            sluice::wasm::Source::Compiled => "compiled",
            sluice::wasm::Source::Cached => "already cached",
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

async fn dlq(action: DlqAction, path: &std::path::Path, redis: Option<String>) -> Result<()> {
    use anyhow::Context;
    let config = sluice::config::Config::load(path)?;
    let url = redis
        .or(config.redis.url.clone())
        .context("sluice dlq needs the Redis the pipelines use: set [redis] url or pass --redis")?;
    let broker = sluice::broker::Broker::connect(&url).await?;
    let find = |name: &str| {
        config
            .pipelines
            .iter()
            .find(|p| p.name.as_str() == name)
            .with_context(|| format!("no pipeline named {name:?} in {}", path.display()))
    };
    match action {
        DlqAction::List { pipeline, count } => {
            let dead = find(&pipeline)?.dead_letter_stream();
            for (id, fields) in broker.dead_letters(&dead, None, count).await? {
                println!("{id}");
                for (name, value) in fields {
                    println!("  {name} = {}", String::from_utf8_lossy(&value));
                }
            }
        }
        DlqAction::Replay { pipeline, ids } => {
            let p = find(&pipeline)?;
            let meta = sluice::message::dead_letter_fields::COUNT;
            let n = broker
                .replay_dead(&p.dead_letter_stream(), p.input.as_str(), meta, &ids)
                .await?;
            let letters = if n == 1 { "letter" } else { "letters" };
            println!("replayed {n} dead {letters} to {}", p.input);
        }
        DlqAction::Purge { pipeline } => {
            let dead = find(&pipeline)?.dead_letter_stream();
            let n = broker.purge_dead(&dead).await?;
            println!("purged {n} dead letters from {dead}");
        }
    }
    Ok(())
}

/// What the command line says over the config file; applied again on every reload.
#[derive(Clone)]
struct Overrides {
    redis: Option<String>,
    consumer: Option<String>,
    watch: bool,
}

fn load(path: &std::path::Path, overrides: &Overrides) -> Result<sluice::config::Config> {
    let mut config = sluice::config::Config::load(path)?;
    if overrides.redis.is_some() {
        config.redis.url.clone_from(&overrides.redis);
        config.validate()?;
    }
    if overrides.consumer.is_some() {
        config.redis.consumer.clone_from(&overrides.consumer);
    }
    config.plugins.watch |= overrides.watch;
    Ok(config)
}

/// Runs a config file until SIGTERM/SIGINT; SIGHUP reloads it.
async fn run(path: PathBuf, overrides: Overrides) -> Result<()> {
    let config = load(&path, &overrides)?;
    let shutdown = CancellationToken::new();
    sluice::shutdown::on_signals(shutdown.clone())?;
    let mut daemon = sluice::start(config, shutdown).await?;
    daemon.reload_with(Box::new(move || load(&path, &overrides)));
    sluice::shutdown::on_hangup(daemon.reload_handle())?;
    daemon.wait().await;
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
