//! Sluice: Redis Streams consumer groups feeding sandboxed WebAssembly handlers.
//!
//! Every entry read from a pipeline's input stream is handed to the pipeline's handler
//! component; its outputs are appended to their streams and the entry acknowledged in one
//! guarded, atomic commit, or the entry is retried or dead-lettered.
//!
//! # Glossary
//!
//! Each word means one thing, in the code, the docs and the logs. Redis terms are Redis's
//! (<https://redis.io/docs/latest/develop/data-types/streams/>), Wasm terms the component
//! model's, tracing terms OpenTelemetry's.
//!
//! - **entry**: one stream entry, an ID and its fields. [`message::Entry`] is one as read.
//!   A **message** is only the WIT record a handler receives (`message` in
//!   `wit/handler.wit`): an entry as the handler sees it.
//! - **input stream**, **output stream**, **dead-letter stream**: what a pipeline reads,
//!   what its handler's outputs go to, where entries that will never succeed go. Never
//!   "source" or "target" — except where a published contract already spells them:
//!   the WIT record fields `message.source` and `output.target` (`sluice:plugin@0.1.x`),
//!   the dead-letter field `sluice.source`, and `sluice invoke --json`'s `"target"`.
//! - **consumer group**, **consumer**, **pending entries list** (PEL), **lag**: Redis's.
//!   A **delivery** is one time an entry is handed to a consumer (XREADGROUP or a claim);
//!   its **attempt** counts them.
//! - **pipeline**: one `[[pipeline]]` of the config: an input stream, its group, a plugin.
//!   A **partition** is one of a partitioned pipeline's input streams.
//! - **plugin**: a `.wasm` file; its **version** is its SHA-256 digest. A **component**
//!   is what the plugin holds; an **instance** a live instantiation of it, reused across
//!   entries. The **world** is the WIT world it implements.
//! - **handler**: the component's exported function(s). A **call** is one host call of a
//!   handler export on an instance ([`wasm::Instance`]). "Invoke" is only `sluice invoke`
//!   ([`invoke`]), which calls a plugin offline.
//! - **handled**: the record of one entry after its call: outputs or a failure, and its
//!   state changes.
//! - **failure kinds**: `retry` and `reject` (the handler's), `timeout`, `limit`, `trap`,
//!   `instantiate` (the sandbox's) — [`message::HandlerError`]; a state conflict is not
//!   a failure (below).
//! - **commit**: the guarded atomic script that writes an entry's outputs and state
//!   writes and acknowledges it (XACK) — only if the entry is still pending for this
//!   consumer, or pending for no consumer while its entry lease held (then it is
//!   **adopted**: outputs written, nothing to acknowledge). Its outcome is a **commit
//!   status** ([`message::CommitStatus`]).
//! - **unowned**: an entry a commit writes nothing for because it is not this
//!   consumer's: pending for another (**not owned**), for none (**gone**), never
//!   delivered as far as the server knows after a failover (**undelivered**), or under a
//!   lease that moved (fenced off).
//! - **settle**: decide and apply an entry's fate after its call: commit it, leave it
//!   pending for a **retry** at a time the **retry backoff** picks, or **dead-letter**
//!   it. The **fault backoff** is the other backoff: how long a pipeline waits before it
//!   tries Redis again after a fault of the environment.
//! - **conflict**: a state conflict only: what an entry's handler read or wrote in its
//!   handler state clashes with writes not yet committed (the batch's earlier entries')
//!   or changed before its commit (another writer's). Nothing is written; the entry is
//!   handled again without counting an attempt. An unowned entry is never a conflict.
//! - **lease**, always qualified: an **entry lease** (a consumer keeps the entries it has
//!   in hand from being reclaimed by resetting their idle time, `XCLAIM ... JUSTID`,
//!   while a slow handler runs; in every ordering), a **partition lease** (one daemon
//!   consumes a partition; `lease_ttl` configures it), a **name lease** (one daemon uses
//!   a consumer name). A lease a commit checks is its **fence**. `broker::lease` is the
//!   one mechanism behind all three: inside it, and only there, "lease" is unqualified.
//! - **invocation**: a Redis script call with its keys and arguments (redis-rs's
//!   `ScriptInvocation`), never a handler call.
//! - **grant**: the origins a pipeline's handler may send HTTP requests to
//!   (`allowed_outbound_hosts`, Spin's grammar); **outbound** is everything about those
//!   requests (`outbound`). An **origin** is a scheme, host and port.
//! - **idempotency key**: an entry's key for its side effects, the same for every
//!   delivery of the entry to its consumer group (`host.idempotency-key`).
//! - **reclaim**: taking over entries left pending by a consumer that stopped (XAUTOCLAIM).
//! - **Redis deployment**: what the broker connects to: a URL, Sentinel or Cluster.
//! - **host**: the daemon's side of the sandbox (host functions, host state); `host/` is
//!   also the crate's folder.
//! - **span**, **trace context**: OpenTelemetry's and W3C Trace Context's.
//!
//! # Layout
//!
//! Dependencies point down; `broker` (Redis) and `wasm` (wasmtime) never import each
//! other: they share only the types of `message`, and the modules above them
//! (`pipeline`, `supervisor`, `admin`, `cli`) use both.
//!
//! - [`config`]: the TOML file, parsed strictly and validated.
//! - [`state`]: handler state: its model, the batch's overlay, one entry's reads and
//!   writes, the checks Redis makes (written once), the in-memory store.
//! - [`partition`]: the partition function (`crc32(key) mod N`).
//! - [`message`]: domain types shared by broker and sandbox.
//! - [`trace_context`]: W3C Trace Context in entries (`traceparent`, `tracestate`),
//!   a domain type like `message`'s.
//! - [`broker`]: the only user of `redis` on the data path (config validation parses a
//!   URL with it; `redis_server` checks its child with it): groups, reads, the guarded
//!   commit; the one classifier of Redis errors ([`broker::fault`]) and connections
//!   that heal.
//! - [`wasm`]: the only user of `wasmtime`: engine, plugins, instances under limits.
//! - [`pipeline`]: one consumer loop per pipeline, as stages (reader, handler stage,
//!   committer, redelivery, health), one file each: start at `pipeline/mod.rs`.
//! - [`registry`]: the live plugins behind `ArcSwap`; a swap is atomic.
//! - [`diff`]: two plugins called on the same entries, their outcomes compared
//!   (`sluice diff`, and shadow runs).
//! - [`shadow`]: a candidate plugin attached beside a live one: every handled batch
//!   offered to it on a thread of its own, compared, never written.
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
//! - `files`: reading a file the config names (regular, bounded, never blocking).
//! - [`invoke`]: one handler call without Redis (`sluice invoke`); `lock`: the
//!   poison-tolerant lock helper.
//!
//! [`start`] runs a config, callable from tests. Public are the modules the binary,
//! the tests, the benches and the example use; the rest are the daemon's own.

pub mod admin;
pub mod broker;
pub mod build;
pub mod cli;
pub mod config;
mod control;
pub mod diff;
mod files;
pub mod fixture;
pub mod invoke;
mod lock;
pub mod message;
pub mod outbound;
pub mod partition;
mod pipeline;
pub mod redis_server;
pub mod registry;
mod scaffold;
pub mod shadow;
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
