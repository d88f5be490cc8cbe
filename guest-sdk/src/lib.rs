//! Write Sluice stream handlers in Rust (the repository's README, "Writing a plugin
//! (Rust)", walks through one).
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
mod output;

/// The raw bindings generated from the `sluice:plugin` WIT package.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "sluice_sdk::bindings",
    });
}

pub use bindings::sluice::plugin::types::{Failure, Field, Message, Output};
pub use bindings::{Guest, export};

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

/// Reads `key` from the pipeline's `[config]` table.
pub fn config(key: &str) -> Option<String> {
    bindings::sluice::plugin::host::config(key)
}

/// Reads `key` from the pipeline's `[config]` table, or `default` when it is absent.
pub fn config_or(key: &str, default: &str) -> String {
    config(key).unwrap_or_else(|| default.to_owned())
}
