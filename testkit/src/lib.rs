//! Sluice's test kit (as redis-rs keeps `redis-test`): what the integration tests and
//! benches of `sluice` start from, so that they read as one vocabulary.
//!
//! # Layout
//!
//! - [`context`]: a Redis server of a test's own and a connection ([`TestContext`]).
//! - [`daemon`]: the daemon run in-process ([`TestDaemon`], the library's `Daemon`).
//! - [`process`]: the real binary run as a child process ([`DaemonProcess`]).
//! - [`config`]: typed config builders ([`ConfigBuilder`], [`PipelineBuilder`]).
//! - [`orders`]: the seed orders ([`Order`]) and their producers.
//! - [`streams`]: reading streams and pending lists, waits on their lengths.
//! - [`tally`]: where a run stands ([`Tally`]) and the exactly-once wait.
//! - [`wait`]: [`eventually`] (it happens) and [`stays`] (it does not, within a window).
//! - [`cluster`]: a local Redis Cluster ([`RedisCluster`]) with resharding.
//! - [`sentinel`]: a replica in sync and a `redis-sentinel` ([`Sentinel`]).
//! - [`certs`]: a test PKI for TLS ([`Pki`]).
//! - [`http`]: an HTTP(S) server for handlers that call out ([`HttpServer`]).
//! - [`proxy`]: a TCP proxy that injects network faults ([`Proxy`]).
//! - [`plugins`]: the real plugins, built from `plugins/`.

pub mod browser;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod context;
pub mod daemon;
pub mod http;
pub mod measure;
pub mod orders;
pub mod plugins;
pub mod process;
pub mod proxy;
pub mod sentinel;
pub mod streams;
pub mod tally;
pub mod wait;

pub use browser::{browser, browser_turn};
pub use certs::{Pki, write_file};
pub use cluster::RedisCluster;
pub use config::{ConfigBuilder, PipelineBuilder, config, config_file, echo, payments};
pub use context::{RedisServer, TestContext, broker, connect, tls_provider};
pub use daemon::TestDaemon;
pub use http::{HttpServer, Seen};
pub use orders::{ORDERS, Order, add_orders, produce_orders};
pub use plugins::{build_plugins, invoke, plugin_wasm, with_plugins, workspace};
pub use process::{DaemonProcess, children_of, rss_kib, sluice_binary};
pub use proxy::Proxy;
pub use sentinel::{Sentinel, replica_of};
pub use streams::{
    add, entries, field, len, pending, pending_or_zero, wait_len, wait_len_at_least,
};
pub use tally::{Tally, wait_exactly_once, wait_payments_once};
pub use wait::{eventually, eventually_ok, stays};
