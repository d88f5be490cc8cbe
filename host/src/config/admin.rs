//! The `[admin]` table: where the admin HTTP API listens and what it accepts.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer, Serialize};

use super::{defaults, duration, duration_text, size_text};

/// The `[admin]` table: the HTTP API for plugins and status.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; loopback by default. Calls that change something or read
    /// data need the bearer token from `SLUICE_ADMIN_TOKEN` and are refused when it is
    /// not set.
    #[serde(default = "defaults::admin_listen")]
    pub listen: std::net::SocketAddr,
    /// Largest request body (a plugin upload).
    #[serde(default = "defaults::max_body", serialize_with = "size_text")]
    pub max_body: ByteSize,
    /// More names the API answers to in the `Host` header (`sluice.internal`), without
    /// a port. Besides these it answers only to loopback names (`localhost`) and IP
    /// addresses (only loopback ones while it listens on a loopback address), so that a
    /// web page cannot reach it through DNS rebinding: any other DNS name gets 421.
    #[serde(default, deserialize_with = "host_names")]
    pub allowed_hosts: Vec<String>,
    /// How long a client may take to send a request's headers (from connecting, or from
    /// the previous answer on a kept-alive connection: then the connection is closed),
    /// and the longest its body may stall (then it is answered 408 and closed).
    #[serde(
        default = "defaults::admin_request_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub request_timeout: Duration,
    /// How long a request's whole body may take to arrive, however steadily it comes
    /// (then it is answered 408 and closed): a body sent a byte at a time cannot hold
    /// an upload slot for ever.
    #[serde(
        default = "defaults::admin_body_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub body_timeout: Duration,
    /// Plugin uploads received or compiled at once; more are answered 429. Each may
    /// hold up to `max_body` in memory.
    #[serde(default = "defaults::max_uploads", deserialize_with = "uploads")]
    pub max_uploads: usize,
    /// Connections served at once (each may buffer up to 64 KiB of headers); more wait
    /// in the listen backlog, unanswered, until one closes.
    #[serde(
        default = "defaults::admin_max_connections",
        deserialize_with = "connections"
    )]
    pub max_connections: usize,
    /// The bearer token. Never read from the file: it comes from `SLUICE_ADMIN_TOKEN`
    /// (or is set by an embedding program).
    #[serde(skip)]
    pub token: Option<String>,
}

/// Host names as the `Host` header carries them: lower case, no port, no scheme.
fn host_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .into_iter()
        .map(|name| {
            let bad = name.is_empty()
                || name.contains(['/', ':', '@'])
                || name.chars().any(|c| c.is_whitespace() || c.is_control());
            if bad {
                return Err(serde::de::Error::custom(format!(
                    "{name:?} is not a host name: write the name alone, as in allowed_hosts = [\"sluice.internal\"] (no scheme, port or path)"
                )));
            }
            Ok(name.to_ascii_lowercase())
        })
        .collect()
}

fn uploads<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    at_least_one(
        d,
        "max_uploads = 0 would refuse every plugin upload; use 1 or more",
    )
}

fn connections<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    at_least_one(
        d,
        "max_connections = 0 would serve no request; use 1 or more",
    )
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D, refusal: &str) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(refusal));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_body_time_have_defaults_and_bounds() {
        let admin: AdminConfig = toml::from_str("").expect("defaults");
        assert_eq!(admin.max_connections, 256);
        assert_eq!(admin.body_timeout, Duration::from_secs(120));
        let admin: AdminConfig =
            toml::from_str("max_connections = 8\nbody_timeout = \"5m\"").expect("set");
        assert_eq!(
            (admin.max_connections, admin.body_timeout),
            (8, Duration::from_secs(300))
        );
        let refused = toml::from_str::<AdminConfig>("max_connections = 0").expect_err("0");
        assert!(
            refused
                .to_string()
                .contains("max_connections = 0 would serve no request"),
            "{refused}"
        );
    }
}
