//! The `sluice` command line: parses arguments and dispatches; each subcommand lives in
//! the library's `cli` module.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sluice::cli::{
    CompileArgs, DevArgs, DlqArgs, InvokeArgs, NewArgs, PartitionArgs, RunArgs, SendArgs,
};
use tracing_subscriber::EnvFilter;

/// glibc's malloc spent a fifth of the data path's CPU time in allocation under load
/// (docs/decisions.md); mimalloc is a drop-in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the pipelines of a config file until SIGTERM/SIGINT; SIGHUP reloads the file.
    Run(RunArgs),
    /// Inspect and act on a pipeline's dead letters: list, replay, purge.
    Dlq(DlqArgs),
    /// Call a plugin's handler once on one message, with no Redis, and print its outputs
    /// or its failure. Exit status: 0 outputs, 2 the handler failed, 1 an error.
    ///
    /// Example: `sluice invoke target/plugins/payments.wasm orderId=1 orderAmount=9.5 userId=u`
    Invoke(InvokeArgs),
    /// Develop a plugin: `run` with every plugin file watched and hot-reloaded, on a
    /// private redis-server unless a URL is given.
    Dev(DevArgs),
    /// Precompile every pipeline's plugin into the compiled-code cache (at deploy time,
    /// so that the daemon's first start loads them in milliseconds instead of compiling
    /// for seconds), checking each against the handler world.
    Compile(CompileArgs),
    /// Start a new plugin: a project that builds with `./build.sh` into NAME.wasm, with
    /// '-' in NAME written '_' (`my-audit` builds `my-audit/my_audit.wasm`), and passes
    /// `sluice invoke` as it is.
    ///
    /// Example: `sluice new order-audit --lang python` (then `order-audit/build.sh`).
    New(NewArgs),
    /// Add an entry to a pipeline's input; with --key, to the partition of that key.
    ///
    /// Example: `sluice send payments --key user-7 orderId=1 orderAmount=9.5 userId=user-7`
    Send(SendArgs),
    /// Print the partition of each key: zlib CRC-32 of the key's bytes modulo N (what
    /// producers compute to keep one key's entries in order).
    ///
    /// Example: `sluice partition --partitions 16 user-7`
    Partition(PartitionArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Send(_) | Command::Dlq(_));
    init_tracing(cli.log_format, quiet);
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
            Command::Invoke(args) => args.run().await,
            Command::Compile(args) => args.run().await,
            Command::New(args) => args.run(),
            Command::Send(args) => args.run().await,
            Command::Partition(args) => args.run(),
        }
    });
    done.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn init_tracing(format: LogFormat, quiet: bool) {
    // The tools that print their own answers (`send`, `dlq`) log warnings only unless
    // SLUICE_LOG says otherwise.
    let default = if quiet { "warn" } else { "info" };
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
