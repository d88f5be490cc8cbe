//! A pipeline's outbound HTTP: what its handler may call (`allowed_outbound_hosts`), the
//! idempotency header, and the `[pipeline.http]` table of limits and TLS.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::{Config, PipelineConfig, defaults, duration, duration_text, size_text};
use crate::outbound::{AllowedHosts, Settings};

/// `http = { connect_timeout = "5s", max_response_bytes = "10MiB" }`: how a pipeline's
/// handler requests are made. A guest's own request options (wasi:http
/// `request-options`) are honoured up to these.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Refuse to connect to loopback, private (RFC 1918), link-local, unique-local and
    /// other non-public addresses. Checked on every address about to be dialled, after
    /// DNS (IPv4-mapped IPv6 included), so a granted name that resolves to one is
    /// refused too.
    #[serde(default)]
    pub block_private_networks: bool,
    /// Longest wait for the TCP connection and the TLS handshake.
    #[serde(
        default = "defaults::http_connect_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub connect_timeout: Duration,
    /// Longest wait from the request sent to the response head.
    #[serde(
        default = "defaults::http_first_byte_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub first_byte_timeout: Duration,
    /// Longest wait between two parts of the response body.
    #[serde(
        default = "defaults::http_between_bytes_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub between_bytes_timeout: Duration,
    /// Largest response body a handler may read; past it the body fails with
    /// `HTTP-response-body-size`.
    #[serde(
        default = "defaults::http_max_response_bytes",
        serialize_with = "size_text"
    )]
    pub max_response_bytes: ByteSize,
    /// Requests of the pipeline in flight at once (from the send to the end of the
    /// response body); more wait for a place, within the entry's `limits.timeout`.
    #[serde(default = "defaults::http_max_in_flight")]
    pub max_in_flight: usize,
    /// A PEM file of CA certificates trusted besides the platform's (for internal
    /// services), relative to the config file; read when the config is loaded and at
    /// each reload (a changed file restarts the pipeline).
    pub ca_file: Option<PathBuf>,
    /// The contents of `ca_file` as last read (part of the config, so that a reload sees
    /// a changed file).
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
}

impl HttpConfig {
    /// The outbound settings of a grant of `hosts` under this table, with the
    /// idempotency key sent in `header`; `None` when `hosts` grants nothing.
    pub fn settings(&self, hosts: &[String], header: Option<String>) -> Result<Option<Settings>> {
        let allowed = AllowedHosts::parse(hosts)?;
        if allowed.is_empty() {
            return Ok(None);
        }
        Ok(Some(Settings {
            allowed,
            block_private_networks: self.block_private_networks,
            connect_timeout: self.connect_timeout,
            first_byte_timeout: self.first_byte_timeout,
            between_bytes_timeout: self.between_bytes_timeout,
            max_response_bytes: self.max_response_bytes.as_u64(),
            max_in_flight: self.max_in_flight,
            ca: self.ca()?,
            idempotency_key_header: header,
        }))
    }

    /// The CA file and its contents: as read with the config, or read now.
    pub fn ca(&self) -> Result<Option<(PathBuf, Vec<u8>)>> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = match &self.ca_pem {
            Some(pem) => pem.clone(),
            None => crate::outbound::read_ca(path)?,
        };
        Ok(Some((path.clone(), pem)))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            block_private_networks: false,
            connect_timeout: defaults::http_connect_timeout(),
            first_byte_timeout: defaults::http_first_byte_timeout(),
            between_bytes_timeout: defaults::http_between_bytes_timeout(),
            max_response_bytes: defaults::http_max_response_bytes(),
            max_in_flight: defaults::http_max_in_flight(),
            ca_file: None,
            ca_pem: None,
        }
    }
}

/// Headers the idempotency key may not be sent in: those that frame or route the request
/// (RFC 9110 §7.2, RFC 9112 §6-§9), hop-by-hop ones, and the trace context.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "expect",
    "traceparent",
    "tracestate",
];

/// `limits.timeout` of a pipeline that grants hosts and does not set it: a call that
/// waits on the network needs more than the 1 s of a pure transformation.
pub const GRANTED_TIMEOUT: Duration = Duration::from_secs(30);

/// `concurrency` of a pipeline that grants hosts and does not set it: calls that wait on
/// the network leave the core free, so many run at once (instances are cheap).
pub const GRANTED_CONCURRENCY: usize = 32;

impl PipelineConfig {
    /// The outbound settings of a pipeline that grants hosts; `None` when it grants none.
    pub fn outbound(&self) -> Option<Settings> {
        let header = self.idempotency_key_header.clone();
        (self
            .http
            .settings(&self.allowed_outbound_hosts, header)
            .ok())
        .flatten()
    }

    /// The grant, the header name and the table within their bounds.
    pub(super) fn validate_http(&self) -> Result<()> {
        let allowed = AllowedHosts::parse(&self.allowed_outbound_hosts)?;
        if let Some(name) = &self.idempotency_key_header {
            let header = http::HeaderName::try_from(name.as_str()).with_context(|| {
                format!("idempotency_key_header {name:?} is not a valid HTTP header name (e.g. \"Idempotency-Key\")")
            })?;
            anyhow::ensure!(
                !RESERVED_HEADERS.contains(&header.as_str()),
                "idempotency_key_header {name:?} is a header HTTP itself or tracing sets: pick one of your own (e.g. \"Idempotency-Key\")"
            );
            anyhow::ensure!(
                !allowed.is_empty(),
                "idempotency_key_header is set but allowed_outbound_hosts grants nothing to send it to"
            );
        }
        let http = &self.http;
        for (key, value) in [
            ("http.connect_timeout", http.connect_timeout),
            ("http.first_byte_timeout", http.first_byte_timeout),
            ("http.between_bytes_timeout", http.between_bytes_timeout),
        ] {
            anyhow::ensure!(!value.is_zero(), "`{key}` must be longer than zero");
        }
        anyhow::ensure!(
            http.max_in_flight > 0,
            "`http.max_in_flight` must be at least 1"
        );
        if let Some((path, pem)) = http.ca()? {
            crate::outbound::tls_config(Some((&path, &pem)))?;
        }
        Ok(())
    }
}

/// Entries each instance handles per batch, by default, in a pipeline that grants hosts:
/// a batch is done when its last call is, so a batch of a few calls per instance keeps
/// them all busy (measured: 0.67 of the ideal rate with 100 entries over 32 instances,
/// 0.84 with 128; docs/src/benchmarks.md).
pub const GRANTED_ENTRIES_PER_INSTANCE: usize = 4;

/// Gives pipelines that grant hosts the defaults that fit network calls, where the file
/// (`raw`) leaves them out: `limits.timeout` [`GRANTED_TIMEOUT`], and `batch`
/// [`GRANTED_ENTRIES_PER_INSTANCE`] per instance (at least the usual 100). Paths become
/// absolute.
pub(super) fn apply_defaults(
    config: &mut Config,
    raw: &toml::Table,
    base: &std::path::Path,
) -> Result<()> {
    let raw_pipelines = raw.get("pipeline").and_then(|p| p.as_array());
    for (index, pipeline) in config.pipelines.iter_mut().enumerate() {
        if let Some(ca) = &mut pipeline.http.ca_file {
            if ca.is_relative() {
                *ca = base.join(&*ca);
            }
            let pem = crate::outbound::read_ca(ca)
                .with_context(|| format!("in [[pipeline]] \"{}\"", pipeline.name))?;
            pipeline.http.ca_pem = Some(pem);
        }
        if pipeline.allowed_outbound_hosts.is_empty() {
            continue;
        }
        let raw = raw_pipelines.and_then(|p| p.get(index));
        let sets_timeout = raw
            .and_then(|p| p.get("limits"))
            .and_then(|l| l.get("timeout"))
            .is_some();
        if !sets_timeout {
            pipeline.limits.timeout = GRANTED_TIMEOUT;
        }
        if raw.and_then(|p| p.get("batch")).is_none() {
            let instances = pipeline.concurrency.unwrap_or(GRANTED_CONCURRENCY);
            let batch = instances.saturating_mul(GRANTED_ENTRIES_PER_INSTANCE);
            pipeline.batch = batch.max(pipeline.batch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pipeline: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("p.wasm"), b"\0asm").expect("plugin");
        let text = format!(
            "[[pipeline]]\nname = \"p\"\nplugin = \"p.wasm\"\ninput = \"IN\"\ngroup = \"G\"\n{pipeline}"
        );
        Config::parse(&text, dir.path())
    }

    #[test]
    fn a_grant_brings_network_defaults_unless_set() {
        let plain = parse("").expect("valid");
        assert_eq!(plain.pipelines[0].limits.timeout, Duration::from_secs(1));
        assert_eq!(plain.pipelines[0].resolve_concurrency(false), 1);
        let granted =
            parse("allowed_outbound_hosts = [\"https://api.example.com\"]\n").expect("valid");
        assert_eq!(granted.pipelines[0].limits.timeout, GRANTED_TIMEOUT);
        assert_eq!(granted.pipelines[0].batch, 128);
        assert_eq!(
            granted.pipelines[0].resolve_concurrency(false),
            GRANTED_CONCURRENCY
        );
        let set = parse(
            "allowed_outbound_hosts = [\"https://api.example.com\"]\nconcurrency = 4\nlimits = { timeout = \"3s\" }\n",
        )
        .expect("valid");
        assert_eq!(set.pipelines[0].limits.timeout, Duration::from_secs(3));
        assert_eq!(set.pipelines[0].resolve_concurrency(false), 4);
        assert_eq!(
            set.pipelines[0].batch, 100,
            "4 instances x 4 is under the usual 100"
        );
        let batch =
            parse("allowed_outbound_hosts = [\"https://a.example\"]\nbatch = 10\n").expect("valid");
        assert_eq!(batch.pipelines[0].batch, 10);
    }

    #[test]
    fn a_changed_ca_file_is_a_changed_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("p.wasm"), b"\0asm").expect("plugin");
        let text = "[[pipeline]]\nname = \"p\"\nplugin = \"p.wasm\"\ninput = \"IN\"\ngroup = \"G\"\nallowed_outbound_hosts = [\"https://x.example\"]\nhttp = { ca_file = \"ca.pem\" }\n";
        let load = |name: &str| {
            let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("cert");
            std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).expect("ca");
            Config::parse(text, dir.path()).expect("valid")
        };
        let (first, again) = (load("one.example"), load("two.example"));
        assert!(first.pipelines[0].http.ca_pem.is_some());
        assert_ne!(
            first.pipelines[0], again.pipelines[0],
            "a reload sees the new file"
        );
    }

    #[test]
    fn bad_grants_headers_and_limits_are_refused_with_the_key() {
        for (pipeline, says) in [
            (
                "allowed_outbound_hosts = [\"ftp://x.example\"]\n",
                "ftp://x.example",
            ),
            (
                "allowed_outbound_hosts = [\"https://x.example/path\"]\n",
                "without a path",
            ),
            (
                "idempotency_key_header = \"Idempotency-Key\"\n",
                "grants nothing",
            ),
            (
                "allowed_outbound_hosts = [\"https://x.example\"]\nidempotency_key_header = \"bad header\"\n",
                "not a valid HTTP header name",
            ),
            (
                "allowed_outbound_hosts = [\"https://x.example\"]\nhttp = { max_in_flight = 0 }\n",
                "http.max_in_flight",
            ),
            (
                "allowed_outbound_hosts = [\"https://x.example\"]\nhttp = { ca_file = \"missing.pem\" }\n",
                "http.ca_file",
            ),
            ("http = { connect_timout = \"1s\" }\n", "unknown field"),
            (
                "allowed_outbound_hosts = [\"https://x.example\"]\nidempotency_key_header = \"Host\"\n",
                "pick one of your own",
            ),
            (
                "allowed_outbound_hosts = [\"https://x.example\"]\nidempotency_key_header = \"transfer-encoding\"\n",
                "pick one of your own",
            ),
        ] {
            let error = parse(pipeline).expect_err(pipeline);
            let text = format!("{error:#}");
            assert!(text.contains(says), "{pipeline}: {text}");
        }
    }
}
