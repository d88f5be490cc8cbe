//! Sluice's integration tests, in one test binary: each module is one area (the book's
//! "Testing" page lists them). One binary instead of one per file: each would link all of
//! Sluice and wasmtime again (~100 MB and seconds of linking each), and build the plugins
//! again. Run one module with `cargo test -p sluice --test suite core::`, one test with
//! `cargo test -p sluice --test suite core::orders_become_payments`.
//!
//! Tests run real servers (redis-server, Valkey, Sentinel, a cluster, HTTP servers) on
//! free ports and real components built from `plugins/`; see `testkit/`.

mod admin;
mod build;
mod cli;
mod cluster;
mod commit;
mod config;
mod conformance;
mod conformance_http;
mod core;
mod deployments;
mod dev;
mod diff;
mod faults;
mod names;
mod operate;
mod outbound;
mod outbound_daemon;
mod protocol;
mod redis_settings;
mod redis_states;
mod reference;
mod reload;
mod sandbox;
mod schedule;
mod secrets;
mod shadow;
mod state;
mod throttle;
mod traces;
