//! Sluice: Redis Streams consumer groups feeding sandboxed WebAssembly handlers.
//!
//! Every entry read from a pipeline's input stream is handed to the pipeline's handler
//! component; its outputs are appended to their streams and the entry acknowledged in one
//! guarded, atomic commit, or the entry is retried or dead-lettered.
//!
//! # Layout
//!
//! Dependencies point down; `broker` (Redis) and `wasm` (wasmtime) never import each
//! other: they share only the types of `message`, and the modules above them
//! (`pipeline`, `supervisor`, `admin`, `cli`) use both.
//!
//! - [`config`]: the TOML file, parsed strictly and validated.
//! - [`message`]: domain types shared by broker and sandbox.
//! - [`trace_context`]: W3C Trace Context in entries (`traceparent`, `tracestate`),
//!   a domain type like `message`'s.
//! - [`broker`]: the only user of `redis` on the data path (config validation parses a
//!   URL with it; `redis_server` checks its child with it): groups, reads, the guarded
//!   commit; the one classifier of Redis errors ([`broker::fault`]) and connections
//!   that heal.
//! - [`wasm`]: the only user of `wasmtime`: engine, plugins, instances under limits.
//! - [`pipeline`]: one consumer loop per pipeline.
//! - [`registry`]: the live plugins behind `ArcSwap`; a swap is atomic.
//! - [`watch`]: the only user of `notify`: watches plugin files, reloads them.
//! - [`control`]: the control plane: config reload requests, their reports, and the
//!   plan of a reload (a pure diff). `supervisor`, `admin` and `shutdown` depend on it,
//!   never on each other's internals.
//! - [`admin`]: the only user of `axum` (and of `hyper` under it):
//!   health, metrics, pipelines, dead letters, plugin status and deploys, behind its
//!   token and `Host` rules; it starts itself from its config.
//! - [`scaffold`]: `sluice new`: plugin projects for each guest language.
//! - [`redis_server`]: a private `redis-server` child (embedded default, tests).
//! - [`shutdown`]: signals to a cancellation token.
//! - [`supervisor`]: starts pipelines (each on a thread of its own), carries out reload
//!   plans, drains at shutdown.
//! - [`telemetry`]: Prometheus metrics, and OpenTelemetry traces exported over OTLP
//!   (the only user of `opentelemetry`).
//! - [`status`]: each pipeline's live status board (state, backlog, rates, last error),
//!   and the daemon-wide warnings shown with every pipeline.
//!
//! - [`cli`]: the `sluice` subcommands (`main.rs` only parses and dispatches).
//!
//! [`start`] runs a config, callable from tests. Public are the modules the binary,
//! the tests, the benches and the example use; the rest are the daemon's own.

pub mod admin;
pub mod broker;
pub mod cli;
pub mod config;
mod control;
pub mod invoke;
mod lock;
pub mod message;
pub mod partition;
mod pipeline;
pub mod redis_server;
pub mod registry;
mod scaffold;
mod shutdown;
pub mod state;
mod status;
mod supervisor;
mod telemetry;
pub mod trace_context;
pub mod wasm;
mod watch;

pub use control::{ConfigLoader, ReloadHandle, ReloadReport};
pub use supervisor::{Daemon, DaemonFailed, start};
