//! A pipeline's `retry_backoff` and `limits` tables: how failed entries wait, and what
//! one handler instance may use.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{defaults, duration, duration_text, size_text};

/// `retry_backoff = { initial = "200ms", max = "30s" }`: exponential with equal jitter (`pipeline::outcome::backoff`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// The delay after the first failure.
    #[serde(
        default = "defaults::backoff_initial",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub initial: Duration,
    /// The delay never grows past this.
    #[serde(
        default = "defaults::backoff_max",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: defaults::backoff_initial(),
            max: defaults::backoff_max(),
        }
    }
}

/// `limits = { memory = "64MiB", timeout = "1s" }`: what one handler instance may use.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Bytes of all linear memories of one instance together.
    #[serde(default = "defaults::memory", serialize_with = "size_text")]
    pub memory: ByteSize,
    /// Wall time of one `handle` call, waits on the network included (30s by default
    /// on a pipeline that grants `allowed_outbound_hosts`).
    #[serde(
        default = "defaults::timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub timeout: Duration,
    /// Messages an instance handles before it is replaced by a fresh one.
    #[serde(default = "defaults::instance_reuse")]
    pub instance_reuse: u64,
    /// Fuel (about one unit per Wasm instruction) one call may burn; unset: unmetered.
    /// Turning it on for any pipeline costs every pipeline 10–80% per call.
    pub fuel: Option<u64>,
    /// Outputs one call may return.
    #[serde(default = "defaults::max_outputs")]
    pub max_outputs: usize,
    /// Bytes (field names and values) all outputs of one call may hold.
    #[serde(default = "defaults::max_output_bytes", serialize_with = "size_text")]
    pub max_output_bytes: ByteSize,
    /// Time a call may run Wasm (waits in host calls, such as an HTTP response, do not
    /// count) before it is throttled to `throttle_share`.
    #[serde(
        default = "defaults::throttle_after",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub throttle_after: Duration,
    /// The share of a core a throttled call may use, in (0, 1]; 1 turns throttling off.
    #[serde(default = "defaults::throttle_share")]
    pub throttle_share: f64,
}

impl LimitsConfig {
    /// The limits as the `wasm` module enforces them.
    pub fn to_limits(&self) -> crate::wasm::Limits {
        crate::wasm::Limits {
            memory: usize::try_from(self.memory.as_u64()).unwrap_or(usize::MAX),
            timeout: self.timeout,
            fuel: self.fuel,
            max_outputs: self.max_outputs,
            max_output_bytes: usize::try_from(self.max_output_bytes.as_u64()).unwrap_or(usize::MAX),
            instance_reuse: self.instance_reuse,
            throttle_after: self.throttle_after,
            throttle_share: self.throttle_share,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory: defaults::memory(),
            timeout: defaults::timeout(),
            instance_reuse: defaults::instance_reuse(),
            fuel: None,
            max_outputs: defaults::max_outputs(),
            max_output_bytes: defaults::max_output_bytes(),
            throttle_after: defaults::throttle_after(),
            throttle_share: defaults::throttle_share(),
        }
    }
}
