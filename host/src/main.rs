//! The `sluice` binary: parses the command line ([`sluice::cli::Cli`]), sets up logging
//! and the shared runtime, and dispatches; each subcommand lives in the library's `cli`
//! module.

use std::process::ExitCode;

use clap::Parser;
use sluice::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// glibc's malloc spent a fifth of the data path's CPU time in allocation under load
/// (docs/decisions.md); mimalloc is a drop-in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The tools that print their own answers log less unless SLUICE_LOG says otherwise:
    // `send` and `dlq` warnings, `diff` errors (its handlers' warnings, for every entry
    // both plugins reject, would bury the report).
    let default = match cli.command {
        Command::Send(_) | Command::Dlq(_) => "warn",
        Command::Diff(_) => "error",
        _ => "info",
    };
    init_tracing(cli.log_format, default);
    // `diff` follows diff(1): 0 the same, 1 different, 2 trouble (as clap's usage errors).
    let trouble = match cli.command {
        Command::Diff(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    let threads = match &cli.command {
        Command::Run(args) => args.threads.worker_threads,
        Command::Dev(args) => args.threads.worker_threads,
        _ => None,
    };
    let workers = threads
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
    let done = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => args.run().await,
            Command::Dev(args) => args.run().await,
            Command::Dlq(args) => args.run().await,
            Command::Diff(args) => args.run().await,
            Command::Invoke(args) => args.run().await,
            Command::Test(args) => args.run().await,
            Command::Compile(args) => args.run().await,
            Command::New(args) => args.run(),
            Command::Build(args) => args.run(),
            Command::Send(args) => args.run().await,
            Command::Partition(args) => args.run(),
        }
    });
    done.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        trouble
    })
}

fn init_tracing(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
