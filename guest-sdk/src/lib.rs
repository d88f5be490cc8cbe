//! Write Sluice stream handlers in Rust (the book's "Writing a plugin in Rust",
//! `docs/src/guide/plugins-rust.md` in the repository, walks through one).
//!
//! A handler receives one stream entry ([`Message`]) and returns the entries to append
//! downstream ([`Output`]) or a [`Failure`]. Sluice appends the outputs and acknowledges
//! the input in one atomic commit.
//!
//! ```ignore
//! use sluice_sdk::{Failure, Guest, Message, Output};
//!
//! struct Upper;
//!
//! impl Guest for Upper {
//!     fn handle(msg: Message) -> Result<Vec<Output>, Failure> {
//!         let name = msg.text("name")?;
//!         Ok(vec![Output::to("NAMES").field("name", name.to_uppercase())])
//!     }
//! }
//!
//! sluice_sdk::export!(Upper);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the plugin.
#![deny(missing_docs)]

mod fields;
pub mod http;
mod output;

/// The raw bindings generated from the `sluice:plugin` WIT package.
#[allow(missing_docs)]
pub mod bindings {
    // Every import a handler may use: `state` (pipelines with state prefixes) and
    // `wasi:http/outgoing-handler` (pipelines that grant hosts). A component imports only
    // what its code calls, so a handler that never sends a request has no wasi:http
    // import and runs on any pipeline.
    wit_bindgen::generate!({
        inline: "package sluice:sdk;
            world sdk {
                include sluice:plugin/stateful-handler@0.1.4;
                import wasi:http/outgoing-handler@0.2.12;
            }",
        world: "sluice:sdk/sdk",
        path: "../wit",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "sluice_sdk::bindings",
    });
}

pub use bindings::sluice::plugin::types::{Failure, Field, Message, Output};
pub use bindings::{Guest, export};

impl Message {
    /// This entry's idempotency key: 32 hex digits, the same for every delivery of the
    /// entry to the pipeline's consumer group (a retry, a redelivery after a crash, a
    /// reclaim), different for every other entry. Send it with a side effect so that the
    /// receiver does it once (a pipeline's `idempotency_key_header` sends it on every
    /// request already).
    pub fn idempotency_key(&self) -> String {
        bindings::sluice::plugin::host::idempotency_key(&self.id)
    }
}

/// What a handler returns.
pub type HandlerResult = Result<Vec<Output>, Failure>;

impl Failure {
    /// A transient failure: the entry is delivered again later.
    pub fn retry(reason: impl Into<String>) -> Self {
        Failure::Retry(reason.into())
    }

    /// A permanent failure: the entry goes to the dead-letter stream now.
    pub fn reject(reason: impl Into<String>) -> Self {
        Failure::Reject(reason.into())
    }
}

/// Writing to the host's log, attributed to the pipeline, plugin and message.
pub mod log {
    use crate::bindings::sluice::plugin::host::{self, Level};

    /// Logs at trace level.
    pub fn trace(message: &str) {
        host::log(Level::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        host::log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        host::log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        host::log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        host::log(Level::Error, message);
    }
}

/// Handler state: keys in Redis read and written with the entry's commit (WIT
/// `sluice:plugin/state`). Only pipelines that declare `state` prefixes run a handler
/// that calls these; a handler that never calls them does not import the interface.
///
/// Every function fails the entry on error, whatever the handler then returns: a key
/// outside the prefixes or of another type dead-letters it, an unreadable Redis retries
/// it. The `?` operator turns an error into the matching [`Failure`].
///
/// ```ignore
/// use sluice_sdk::state;
/// state::hset(&format!("order:{id}"), "orderStatusCode", b"3")?;
/// state::add(&format!("user-total:{user}"), cents)?;
/// ```
pub mod state {
    use crate::Failure;
    use crate::bindings::sluice::plugin::state as wit;
    pub use wit::StateError;

    impl From<StateError> for Failure {
        fn from(error: StateError) -> Self {
            match error {
                StateError::Unavailable(reason) => Failure::Retry(reason),
                StateError::Forbidden(reason) | StateError::WrongType(reason) => {
                    Failure::Reject(reason)
                }
            }
        }
    }

    /// The string value of `key` (`GET`); `None` when absent.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, StateError> {
        wit::get(key)
    }

    /// The value of `key` as UTF-8 text; `None` when absent.
    pub fn get_text(key: &str) -> Result<Option<String>, StateError> {
        Ok(wit::get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sets `key` to `value` (`SET`), applied with the entry's commit.
    pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), StateError> {
        wit::set(key, value.as_ref())
    }

    /// Removes `key` (`DEL`), applied with the entry's commit.
    pub fn delete(key: &str) -> Result<(), StateError> {
        wit::delete(key)
    }

    /// Adds `delta` to the integer in `key` (0 when absent) and returns the sum
    /// (`INCRBY`).
    pub fn incr(key: &str, delta: i64) -> Result<i64, StateError> {
        wit::incr(key, delta)
    }

    /// Adds `delta` to the integer in `key` at the commit (`INCRBY`), unread: no round
    /// trip to Redis and no conflicts. For counters that many entries bump.
    pub fn add(key: &str, delta: i64) -> Result<(), StateError> {
        wit::add(key, delta)
    }

    /// The value of `field` in the hash `key` (`HGET`); `None` when absent.
    pub fn hget(key: &str, field: &str) -> Result<Option<Vec<u8>>, StateError> {
        wit::hget(key, field)
    }

    /// Sets `field` of the hash `key` (`HSET`), applied with the entry's commit.
    pub fn hset(key: &str, field: &str, value: impl AsRef<[u8]>) -> Result<(), StateError> {
        wit::hset(key, field, value.as_ref())
    }

    /// Every field of the hash `key`, sorted by name (`HGETALL`).
    pub fn hgetall(key: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        wit::hgetall(key)
    }
}

/// Reads `key` from the pipeline's `[config]` table.
pub fn config(key: &str) -> Option<String> {
    bindings::sluice::plugin::host::config(key)
}

/// Reads `key` from the pipeline's `[config]` table, or `default` when it is absent.
pub fn config_or(key: &str, default: &str) -> String {
    config(key).unwrap_or_else(|| default.to_owned())
}
