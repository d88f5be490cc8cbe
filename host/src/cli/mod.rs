//! The `sluice` command line: the parser ([`Cli`]), each subcommand's arguments and what
//! each does. `main.rs` only parses and dispatches.
//!
//! # Layout
//! - `args.rs`: the arguments of `run`, `dev`, `compile`, `new`, `invoke`
//! - `daemon.rs`: `run` and `dev` (the daemon, its reloads, the private server's notice)
//! - `tools.rs`: `new`, `invoke`, `compile`, `test` (no Redis)
//! - `build.rs`: `build`
//! - `dlq.rs`, `send.rs`: `dlq`, `send`, `partition` (Redis tools)
//! - `diff.rs`: `diff` (two plugins over recorded entries)
//! - `reference.rs`: the book's generated CLI and metrics reference

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

mod args;
mod build;
mod daemon;
mod diff;
mod dlq;
pub mod reference;
mod send;
mod tools;
pub use args::{
    BuildArgs, CompileArgs, DevArgs, InvokeArgs, NewArgs, RunArgs, Setup, TestArgs, Threads,
};
pub use diff::DiffArgs;
pub use dlq::{DlqAction, DlqArgs};
pub use send::{PartitionArgs, SendArgs};

/// Run Redis Streams consumers as sandboxed WebAssembly handlers.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    // Not `///`: clap would show the variants' docs and switch `--help` to its long form.
    // Text for people; coloured on a terminal.
    Pretty,
    // One JSON object a line.
    Json,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the pipelines of a config file until SIGTERM/SIGINT; SIGHUP reloads the file.
    Run(RunArgs),
    /// Call the live plugin and a candidate on the same recorded entries (a pipeline's
    /// input or dead letters, or any stream, read with XRANGE: no consumer group is
    /// touched, nothing is written) and report where their outputs, failures or state
    /// writes differ. Exit status (as diff(1)): 0 the same, 1 some differ, 2 trouble.
    ///
    /// Example: `sluice diff --pipeline payments payments-v2.wasm --count 10000`
    Diff(DiffArgs),
    /// Inspect and act on a pipeline's dead letters: list, replay, purge.
    Dlq(DlqArgs),
    /// Call a plugin's handler once on one message, with no Redis, and print its outputs
    /// or its failure. Exit status: 0 outputs, 2 the handler failed, 1 an error.
    ///
    /// Example: `sluice invoke target/plugins/payments.wasm orderId=1 orderAmount=9.5 userId=u`
    Invoke(InvokeArgs),
    /// Run a plugin's fixture cases (entries and what each must give) with no Redis and
    /// no daemon, and say which failed and how. Exit status: 0 all passed, 1 otherwise.
    ///
    /// Example: `sluice test my_plugin.wasm` (cases in `fixtures.toml` beside it)
    Test(TestArgs),
    /// Develop a plugin: `run` with every plugin file watched and hot-reloaded, on a
    /// private redis-server unless a URL is given.
    Dev(DevArgs),
    /// Precompile every pipeline's plugin into the compiled-code cache (at deploy time,
    /// so that the daemon's first start loads them in milliseconds instead of compiling
    /// for seconds), checking each against the handler world.
    Compile(CompileArgs),
    /// Build a plugin project from its manifest (`plugin.toml`: name, language, entry,
    /// state prefixes, outbound hosts), in any language; check the component's imports
    /// and exports against the manifest; print the `[[pipeline]]` lines that grant what it
    /// uses. Up-to-date components are not rebuilt.
    ///
    /// Example: `sluice build my-plugin` (writes my-plugin/my_plugin.wasm)
    Build(BuildArgs),
    /// Start a new plugin: a project with its manifest (`plugin.toml`) that `sluice build`
    /// builds into NAME.wasm, with '-' in NAME written '_' (`my-audit` builds
    /// `my-audit/my_audit.wasm`), and that passes `sluice invoke` and `sluice test` as it is.
    ///
    /// Example: `sluice new order-audit --lang python` (then `sluice build order-audit`).
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
    if redis.deployment()?.is_none()
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
    let deployment = redis.deployment()?.with_context(|| {
        format!(
            "{what} needs the Redis the pipelines use: set [redis] url (or sentinels, or cluster nodes), pass --redis, or start `sluice dev -c {}` first (its private server is found)",
            path.display()
        )
    })?;
    crate::broker::Broker::connect(&deployment, CancellationToken::new()).await
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
