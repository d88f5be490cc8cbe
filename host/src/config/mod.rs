//! The daemon's configuration: one TOML file, parsed strictly and validated as a whole.
//!
//! Every error names the file, the key and what to do about it. Relative plugin paths are
//! resolved against the directory of the config file, so a config works from any cwd.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use bytesize::ByteSize;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Redis is. Without it Sluice starts a private `redis-server`.
    #[serde(default)]
    pub redis: RedisConfig,
    /// The consumer pipelines, one consumer loop each.
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<PipelineConfig>,
    /// Plugin loading: the compiled-code cache and file watching.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The admin HTTP API; off without an `[admin]` table.
    pub admin: Option<AdminConfig>,
    /// How long shutdown waits for in-flight messages to finish and commit.
    #[serde(
        default = "defaults::drain_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub drain_timeout: Duration,
    /// Traces: which entries get one, and where spans are exported (OTLP).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// The `[telemetry]` table: OpenTelemetry traces of the entries handled.
///
/// Spans are exported over OTLP/HTTP (protobuf) when `otlp_endpoint` is set, or the
/// standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/// variables are (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>); nothing
/// is exported otherwise, nor with `OTEL_SDK_DISABLED=true`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Which entries are traced (each pipeline may say otherwise with its own `traces`).
    /// Default: `"always"` when spans are exported, `"when-present"` when not.
    pub traces: Option<TraceMode>,
    /// The collector's OTLP/HTTP base URL, e.g. `http://otel-collector:4318`; spans go
    /// to `{otlp_endpoint}/v1/traces`. The `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` variables win over it.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the spans; default `sluice`. `OTEL_SERVICE_NAME` wins over it.
    pub service_name: Option<String>,
    /// The share of new traces (entries without a `traceparent`, with `traces =
    /// "always"`) that are sampled, in [0, 1]; default 1. A child span follows its
    /// parent's `sampled` flag.
    #[serde(default = "defaults::sample_ratio")]
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            traces: None,
            otlp_endpoint: None,
            service_name: None,
            sample_ratio: defaults::sample_ratio(),
        }
    }
}

/// Which entries a pipeline traces.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TraceMode {
    /// None: no spans, and outputs get no trace context.
    Off,
    /// Those with a valid `traceparent` field: each is handled in a child span of it, and
    /// its outputs carry that span as their `traceparent`.
    WhenPresent,
    /// Every entry: one without a `traceparent` starts a new trace.
    Always,
}

/// The `[plugins]` table.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Keep compiled plugins on disk so that restarts and reloads of a known version
    /// skip compilation.
    #[serde(default = "defaults::yes")]
    pub cache: bool,
    /// Where; defaults to `$XDG_CACHE_HOME/sluice` (or `~/.cache/sluice`).
    pub cache_dir: Option<PathBuf>,
    /// Reload a pipeline's plugin when its file changes (always on in `sluice dev`).
    #[serde(default)]
    pub watch: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            cache: true,
            cache_dir: None,
            watch: false,
        }
    }
}

impl PluginsConfig {
    /// The cache directory in use, if caching is on.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if !self.cache {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("sluice"))
    }
}

/// One `[[pipeline]]`: a consumer group on an input stream feeding one plugin.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// A unique name, used in logs, metrics and dead-letter entries.
    pub name: Name,
    /// Path to the handler component (`.wasm`), relative to the config file.
    pub plugin: PathBuf,
    /// The stream to consume.
    pub input: Name,
    /// The consumer group; created at the start of the stream if missing.
    pub group: Name,
    /// The output streams the handler may write to. An output to any other stream fails
    /// the entry (it is dead-lettered).
    #[serde(default)]
    pub outputs: Vec<Name>,
    /// Key prefixes the handler may read and write through `sluice:plugin/state`
    /// (`["order:", "user-total:"]`); empty: no handler state.
    #[serde(default)]
    pub state: Vec<String>,
    /// Where rejected and exhausted entries go; defaults to `<input>:dead`.
    pub dead_letter: Option<Name>,
    /// How many entries one read (and one commit) takes at most (with a grant, unset: 4
    /// per instance, at least 100).
    #[serde(default = "defaults::batch")]
    pub batch: usize,
    /// How many handler instances run the entries of a batch side by side. Unset: 1,
    /// or for a plugin that embeds an interpreter (JavaScript, Python) one per core, up to
    /// 4 (see [`PipelineConfig::resolve_concurrency`]).
    pub concurrency: Option<usize>,
    /// Deliveries after which a failing entry is dead-lettered.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Delay before a failed entry is delivered again.
    #[serde(default)]
    pub retry_backoff: BackoffConfig,
    /// Entries idle this long in another consumer's pending list are taken over.
    #[serde(
        default = "defaults::claim_idle",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub claim_idle: Duration,
    /// Resource limits on the handler.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// When set, every output gets one more field of this name holding the digest of
    /// the plugin version that produced it (dead letters always carry it).
    pub version_field: Option<String>,
    /// Values the handler reads with `host.config(key)`: text, or a secret read from
    /// the environment (`{ env = "NAME" }`) or a file (`{ file = "PATH" }`) at each load.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// `config` with its secrets read (when the file is loaded): what the handler sees.
    #[serde(skip)]
    pub plugin_config: PluginConfig,
    /// Split the pipeline into this many partitions: streams `NAME:{0}` .. `NAME:{N-1}`
    /// for its input, outputs and dead letters, and state keys tagged alike (see
    /// `partition`); unset: one stream each, as named.
    pub partitions: Option<u32>,
    /// `"none"` (every daemon reads every partition through the group) or `"per-key"`
    /// (each partition is handled by one daemon at a time, in stream order); per-key
    /// needs `partitions`.
    #[serde(default)]
    pub ordering: Ordering,
    /// With `ordering = "per-key"`: how long a daemon's lease on a partition lasts
    /// without renewal (it renews every third of it); a dead daemon's partitions are
    /// taken over after this.
    #[serde(
        default = "defaults::lease_ttl",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub lease_ttl: Duration,
    /// In a Redis Cluster, allow outputs in other hash slots than the input: they are
    /// written first, once per input entry (a marker in their slot), then the guarded
    /// commit acknowledges the input. Not with `state` (state reads are checked by the
    /// guarded commit, after such outputs were written).
    #[serde(default)]
    pub cross_slot: bool,
    /// With `cross_slot`: how long an entry's marker lasts in each other slot. A commit
    /// repeated later than this (the entry handled again after all its consumers were
    /// down this long) writes those outputs again. Longer than `claim_idle`.
    #[serde(
        default = "defaults::cross_slot_marker_ttl",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub cross_slot_marker_ttl: Duration,
    /// Which entries this pipeline traces; default: the `[telemetry]` table's `traces`.
    pub traces: Option<TraceMode>,
    /// Origins the handler may send HTTP requests to through `wasi:http`, in Spin's
    /// grammar (`outbound::grant`): `["https://api.example.com", "http://127.0.0.1:8080",
    /// "https://*.example.com"]`. Empty: none, and a plugin that imports
    /// `wasi:http/outgoing-handler` is refused. A grant makes `limits.timeout` default to
    /// 30s, `concurrency` to 32 and `batch` to 4 per instance.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// The header in which every outgoing request carries its entry's idempotency key
    /// (`"Idempotency-Key"`, draft-ietf-httpapi-idempotency-key-header); unset: none.
    pub idempotency_key_header: Option<String>,
    /// Timeouts, limits and TLS of outgoing requests.
    #[serde(default)]
    pub http: HttpConfig,
}

/// How the entries of a partitioned pipeline are ordered among daemons.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Ordering {
    /// Entries of a partition are spread over every daemon's consumer (no order).
    #[default]
    None,
    /// Each partition is leased to one daemon, which handles its entries one after the
    /// other in stream order; a failing entry holds back the partition until it
    /// succeeds or is dead-lettered.
    PerKey,
}

mod admin;
mod defaults;
mod http;
mod limits;
mod redis;
mod redis_rules;
mod streams;
mod validate;
mod values;

pub use admin::AdminConfig;
pub use http::{GRANTED_CONCURRENCY, GRANTED_TIMEOUT, HttpConfig};
pub use limits::{BackoffConfig, LimitsConfig};
pub use redis::{PASSWORD_ENV, RedisConfig, TlsConfig, consumer_name};
pub use values::{ConfigValue, PluginConfig};

/// A stream, group or pipeline name: non-empty, no whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub struct Name(String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err("a name must not be empty".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{s:?} contains whitespace or control characters; use letters, digits, ':', '_', '-' or '.'"
            ));
        }
        Ok(Self(s))
    }
}

impl TryFrom<&str> for Name {
    type Error = String;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::try_from(s.to_owned())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}); write it like \"250ms\", \"5s\" or \"1m\""
        ))
    })
}

/// Writes a duration as the file reads it: `"30s"`, `"200ms"`, `"1h"`.
fn duration_text<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*value).to_string())
}

/// Writes a size as the file reads it, in the largest binary unit that divides it:
/// `"64MiB"`, `"512KiB"`, `"100B"`.
fn size_text<S: Serializer>(value: &ByteSize, s: S) -> Result<S::Ok, S::Error> {
    let bytes = value.as_u64();
    let text = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        .into_iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map_or_else(
            || format!("{bytes}B"),
            |(unit, name)| format!("{}{name}", bytes / unit),
        );
    s.serialize_str(&text)
}

impl PipelineConfig {
    /// The handler instances of this pipeline: `concurrency` as set; unset, one per core
    /// (up to 4) when the plugin embeds an interpreter (`interpreted`: JavaScript and
    /// Python run one call at a time per instance, 10-100x slower than compiled code, so
    /// a core each pays), else 1 (a compiled handler's call is microseconds: one instance
    /// keeps up with Redis and keeps outputs in input order).
    pub fn resolve_concurrency(&self, interpreted: bool) -> usize {
        self.concurrency.unwrap_or_else(|| {
            if !self.allowed_outbound_hosts.is_empty() {
                GRANTED_CONCURRENCY
            } else if interpreted {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .clamp(1, 4)
            } else {
                1
            }
        })
    }
}

impl Config {
    /// Reads, parses and validates a config file; plugin paths become absolute.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses and validates config text; relative plugin paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let mut config: Config = toml::from_str(text)?;
        let raw: toml::Table = toml::from_str(text)?;
        http::apply_defaults(&mut config, &raw, base)?;
        for pipeline in &mut config.pipelines {
            if pipeline.plugin.is_relative() {
                pipeline.plugin = base.join(&pipeline.plugin);
            }
        }
        config.redis.resolve_paths(base);
        for pipeline in &mut config.pipelines {
            pipeline.plugin_config = PluginConfig::read(&pipeline.config, base)
                .with_context(|| format!("in [[pipeline]] \"{}\"", pipeline.name))?;
        }
        if let Some(dir) = &mut config.plugins.cache_dir
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Whether some pipeline meters fuel (the engine then meters every store).
    pub fn meters_fuel(&self) -> bool {
        self.pipelines.iter().any(|p| p.limits.fuel.is_some())
    }
}
