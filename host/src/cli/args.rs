//! The arguments of the subcommands that run or build something: `run`, `dev`,
//! `compile`, `new`, `invoke`, `test`, `build` (and the config-and-Redis pair the tools share).

use std::path::PathBuf;

/// The config file and the Redis it runs against: shared by `run`, `dev`, `dlq`.
#[derive(clap::Args, Clone)]
pub struct Setup {
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
    pub setup: Setup,
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
    pub setup: Setup,
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

/// `sluice test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// The plugin (a `.wasm` component), or its project directory (the component its
    /// plugin.toml names).
    pub plugin: PathBuf,
    /// The fixture file; default: `fixtures.toml` beside the plugin.
    #[arg(long, value_name = "FILE.toml")]
    pub fixtures: Option<PathBuf>,
    /// Also write a JUnit XML report to this file (for CI).
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
}

/// `sluice build`.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// The plugin project: the directory holding its `plugin.toml`.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Build the manifest's `[variants.NAME]` (its features and capabilities added).
    #[arg(long)]
    pub variant: Option<String>,
    /// Where to write the component; default: NAME.wasm in the project ('_' for '-').
    #[arg(short, long, value_name = "FILE.wasm")]
    pub out: Option<PathBuf>,
    /// Build even when nothing changed since the last build.
    #[arg(long)]
    pub force: bool,
    /// Rust: the cargo profile.
    #[arg(long, default_value = "release")]
    pub profile: String,
    /// The Sluice checkout (its wit/ and guest-sdk/); default: the manifest's `sdk`, else
    /// the one holding the project, else the one this binary was built from.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `sluice new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and '-'.
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: crate::scaffold::Language,
    /// A handler that calls an HTTP service for each entry (wasi:http: its pipeline
    /// must grant the service's origin in `allowed_outbound_hosts`).
    #[arg(long)]
    pub http: bool,
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
    /// The input stream the entry comes from (the handler sees it as `source`).
    #[arg(long, visible_alias = "source", default_value = "INPUT")]
    pub stream: String,
    /// The message's ID.
    #[arg(long, default_value = "0-1")]
    pub id: String,
    /// The delivery attempt the handler sees.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// Wall-time limit of the call [default: 5s; 30s with --allow-outbound].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Handler state before the call, as a JSON object: `{"key": "value", "hash":
    /// {"field": "value"}}`. The writes the call's commit would apply are printed.
    #[arg(long, value_name = "FILE.json")]
    pub state: Option<PathBuf>,
    /// The key prefixes the handler may use, as a pipeline's `state`; repeat for more.
    /// Without any: the `state` of the plugin.toml beside the plugin, else every key.
    #[arg(long = "state-prefix", value_name = "PREFIX")]
    pub state_prefixes: Vec<String>,
    /// An origin the handler may send HTTP requests to, as a pipeline's
    /// `allowed_outbound_hosts` entry (`http://127.0.0.1:8080`, `https://*.example.com`);
    /// repeat for more. Without any, every request is refused.
    #[arg(long = "allow-outbound", value_name = "URL")]
    pub allow_outbound: Vec<String>,
    /// The consumer group the entry's idempotency key is derived from.
    #[arg(long, default_value = "invoke")]
    pub group: String,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub output_json: bool,
}
