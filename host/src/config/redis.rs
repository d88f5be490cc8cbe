//! The `[redis]` table: where Redis is, how to log in, TLS and durability; and the
//! [`Deployment`] the broker connects to, with the password read from where it is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{defaults, duration, duration_text};
use crate::broker::{Deployment, Nodes, Replication, Secret, Tls};

/// The longest one `WAIT` may block (`wait_timeout`).
pub const MAX_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The environment variable that holds the Redis password, so that it stays out of
/// config files; it wins over `password_file` and the URL's password.
pub const PASSWORD_ENV: &str = "SLUICE_REDIS_PASSWORD";

/// The `[redis]` table: where Redis is (one server, Sentinels or a cluster) and how to
/// log in. (`Debug` shows the URL without its password.)
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// A `redis://` or `rediss://` (TLS) URL. Without it, and without `sentinels`, Sluice
    /// starts a private `redis-server`.
    pub url: Option<String>,
    /// `url` (and `nodes`) are seed nodes of a Redis Cluster: commands go to the primary
    /// of their keys' hash slot, and `MOVED`/`ASK` redirections are followed.
    #[serde(default)]
    pub cluster: bool,
    /// More seed nodes of the cluster (`redis://host:port` URLs), beside `url`; with
    /// `cluster = true` only.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Sentinels (`"host:port"`) to ask for the primary, instead of `url`.
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// The name the Sentinels know the primary by; required with `sentinels`.
    pub master: Option<String>,
    /// The ACL user; overrides the URL's.
    pub username: Option<String>,
    /// A file holding the password (one line; a trailing newline is ignored). Relative
    /// to the config file.
    pub password_file: Option<PathBuf>,
    /// TLS: certificates and the server name.
    pub tls: Option<TlsConfig>,
    /// Replicas that must have each commit (`WAIT`) before the next batch is read; 0
    /// (the default) waits for none.
    #[serde(default)]
    pub wait_replicas: u32,
    /// How long one `WAIT` blocks before it is asked again.
    #[serde(
        default = "defaults::wait_timeout",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub wait_timeout: Duration,
    /// The consumer name inside each group; defaults to `sluice-<hostname>`. It must be
    /// stable across restarts of one daemon for its pending entries to be re-read first,
    /// and unique per daemon in a group.
    pub consumer: Option<String>,
    /// Consumers of a group idle longer than this with no pending entries are removed
    /// (`XGROUP DELCONSUMER`) by whichever daemon notices, unless a live daemon holds
    /// the name; `"0s"` keeps them. Default 1 hour; at least 1 minute otherwise.
    #[serde(
        default = "defaults::idle_consumers",
        deserialize_with = "duration",
        serialize_with = "duration_text"
    )]
    pub remove_idle_consumers_after: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(crate::broker::redact_url))
            .field("cluster", &self.cluster)
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|n| crate::broker::redact_url(n))
                    .collect::<Vec<_>>(),
            )
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("consumer", &self.consumer)
            .field(
                "remove_idle_consumers_after",
                &self.remove_idle_consumers_after,
            )
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            cluster: false,
            nodes: Vec::new(),
            sentinels: Vec::new(),
            master: None,
            username: None,
            password_file: None,
            tls: None,
            wait_replicas: 0,
            wait_timeout: defaults::wait_timeout(),
            consumer: None,
            remove_idle_consumers_after: defaults::idle_consumers(),
        }
    }
}

/// The `[redis.tls]` table; files are PEM, relative to the config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates that sign the server's certificate; the system's roots if unset.
    pub ca_file: Option<PathBuf>,
    /// The client certificate, for servers that require one (`tls-auth-clients yes`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// The name to check the server's certificate against, when it is not the host.
    pub server_name: Option<String>,
}

impl RedisConfig {
    /// Makes file paths absolute, relative to the config file's directory `base`.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        let absolute = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        if let Some(path) = &mut self.password_file {
            absolute(path);
        }
        if let Some(tls) = &mut self.tls {
            for path in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .flatten()
            {
                absolute(path);
            }
        }
    }

    /// Points at the server at `url` instead (a command-line `--redis`), dropping any
    /// Sentinels. With `cluster = true`, `url` becomes the one seed node: the
    /// pipelines' keys still live in a cluster, which a plain connection could not use.
    pub fn point_at(&mut self, url: String) {
        self.url = Some(url);
        self.nodes.clear();
        self.sentinels.clear();
        self.master = None;
    }

    /// Whether Sluice is told where Redis is (else it starts a private server).
    pub fn is_external(&self) -> bool {
        self.url.is_some() || !self.sentinels.is_empty() || !self.nodes.is_empty()
    }

    /// Where Redis is and how to log in; `None` for the private server. Reads the
    /// password from `SLUICE_REDIS_PASSWORD` or `password_file`.
    pub fn deployment(&self) -> Result<Option<Deployment>> {
        let nodes = match (&self.url, &self.master) {
            _ if self.cluster => {
                Nodes::Cluster(self.url.iter().chain(&self.nodes).cloned().collect())
            }
            (Some(url), _) => Nodes::Url(url.clone()),
            (None, Some(master)) if !self.sentinels.is_empty() => Nodes::Sentinel {
                sentinels: self.sentinels.clone(),
                master: master.clone(),
            },
            _ => return Ok(None),
        };
        let (password, password_source) = match (std::env::var(PASSWORD_ENV), &self.password_file) {
            (Ok(password), _) if !password.is_empty() => {
                (Some(Secret::new(password)), Some(PASSWORD_ENV.to_owned()))
            }
            (_, Some(path)) => (
                Some(Secret::from_file(path)?),
                Some(format!("[redis] password_file {}", path.display())),
            ),
            _ => (None, None),
        };
        Ok(Some(Deployment {
            nodes,
            username: self.username.clone(),
            password,
            password_source,
            password_file: match std::env::var(PASSWORD_ENV) {
                Ok(password) if !password.is_empty() => None,
                _ => self.password_file.clone(),
            },
            tls: self.tls.as_ref().map(|tls| Tls {
                ca_file: tls.ca_file.clone(),
                cert_file: tls.cert_file.clone(),
                key_file: tls.key_file.clone(),
                server_name: tls.server_name.clone(),
            }),
            replication: (self.wait_replicas > 0).then_some(Replication {
                replicas: self.wait_replicas,
                timeout: self.wait_timeout,
            }),
        }))
    }
}

/// Checks a consumer name (`[redis] consumer`, `--consumer`): not empty, not only white
/// space, no control characters; returns it.
pub fn consumer_name(name: &str) -> Result<String> {
    if name.trim().is_empty() {
        bail!(
            "the consumer name is empty: give each daemon of a group a name of its own (such as the pod's name), or leave it out for sluice-<hostname>"
        );
    }
    if name.chars().any(char::is_control) {
        bail!(
            "the consumer name {name:?} holds a control character: use letters, digits, '-', '_' or '.'"
        );
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_urls_password() {
        let config = RedisConfig {
            url: Some("redis://sluice:hunter2@host:6379".into()),
            ..RedisConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            shown.contains("sluice:***@host") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn a_command_line_url_keeps_cluster_mode() {
        let mut config = RedisConfig {
            cluster: true,
            url: Some("redis://a:7000".into()),
            nodes: vec!["redis://b:7000".into()],
            ..RedisConfig::default()
        };
        config.point_at("redis://c:7000".into());
        assert!(config.cluster, "--redis on a cluster config is a seed node");
        assert_eq!(config.url.as_deref(), Some("redis://c:7000"));
        assert!(config.nodes.is_empty());
    }
}
