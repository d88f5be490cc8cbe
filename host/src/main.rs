//! The `sluice` command line. No logic lives here: see the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Run Redis Streams consumers as sandboxed WebAssembly handlers.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run {
            config,
            redis,
            consumer,
        } => {
            let mut config = sluice::config::Config::load(&config)?;
            if redis.is_some() {
                config.redis.url = redis;
                config.validate()?;
            }
            if consumer.is_some() {
                config.redis.consumer = consumer;
            }
            let shutdown = CancellationToken::new();
            sluice::shutdown::on_signals(shutdown.clone())?;
            sluice::run(config, shutdown).await
        }
    }
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
