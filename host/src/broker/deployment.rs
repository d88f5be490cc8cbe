//! A Redis deployment: where the primary is and how to reach it (one URL, a set of
//! Sentinels that name it, or a cluster's seeds); credentials; TLS.
//! [`Endpoint`](super::endpoint::Endpoint) turns a [`Deployment`] into connections.
//!
//! Secrets are [`Secret`]s: their `Debug` and `Display` print `***`, so no log line,
//! error or status page can show one by accident.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A password or other secret. Printing it, in any format, prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it (`AUTH`).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first line of the file at `path` (`[redis] password_file`), without its line
    /// end.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read [redis] password_file {}: create it with the password on one line, readable by this user",
                path.display()
            )
        })?;
        let password = text.lines().next().unwrap_or("");
        if password.is_empty() {
            anyhow::bail!(
                "[redis] password_file {}: its first line is empty: write the password on the first line (the rest of the file is not read)",
                path.display()
            );
        }
        Ok(Self(password.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which servers to ask for the primary. `Debug` hides a URL's password.
#[derive(Clone)]
pub enum Nodes {
    /// A `redis://` or `rediss://` URL (user, password and database number included).
    Url(String),
    /// Sentinels (`host:port`) watching the primary called `master`. The primary's address
    /// is asked of them at every (re)connection, and a `+switch-master` they announce
    /// drops every connection so that the next call goes to the new primary.
    Sentinel {
        /// `host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The name the Sentinels know the primary by (`sentinel monitor <name> ...`).
        master: String,
    },
    /// Seed nodes of a Redis Cluster (`redis://` or `rediss://` URLs): any one that
    /// answers tells the cluster's layout, and each command goes to the primary of its
    /// key's hash slot.
    Cluster(Vec<String>),
}

impl fmt::Debug for Nodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nodes::Url(url) => f.debug_tuple("Url").field(&redact_url(url)).finish(),
            Nodes::Sentinel { sentinels, master } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("master", master)
                .finish(),
            Nodes::Cluster(seeds) => f
                .debug_tuple("Cluster")
                .field(&seeds.iter().map(|s| redact_url(s)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// TLS settings (`[redis.tls]`): files are PEM.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// The CA certificates that sign the server's certificate; the system's roots when
    /// unset.
    pub ca_file: Option<PathBuf>,
    /// The client certificate chain, for servers that require one (`tls-auth-clients`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate is checked against, when it differs from the
    /// host Sluice connects to (an IP address, a load balancer).
    pub server_name: Option<String>,
}

/// Durability: after each commit, `WAIT` until this many replicas have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replicas that must acknowledge a commit before the next batch is read.
    pub replicas: u32,
    /// How long one `WAIT` blocks before it is asked again.
    pub timeout: Duration,
}

/// A Redis deployment: everything needed to open connections to its primary (a URL,
/// Sentinels or a cluster's seeds, credentials, TLS).
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Where the primary is.
    pub nodes: Nodes,
    /// The ACL user; overrides the URL's.
    pub username: Option<String>,
    /// The password; overrides the URL's.
    pub password: Option<Secret>,
    /// Where `password` came from, for messages (`SLUICE_REDIS_PASSWORD`).
    pub password_source: Option<String>,
    /// The file `password` was read from: read again for each new connection, so that
    /// a rotated password is picked up without a restart.
    pub password_file: Option<PathBuf>,
    /// TLS, for `rediss://` URLs and for Sentinel set-ups whose nodes speak TLS.
    pub tls: Option<Tls>,
    /// `WAIT` after each commit, if set.
    pub replication: Option<Replication>,
}

impl Deployment {
    /// Whether the nodes are a Redis Cluster (keys of one script must then share a hash
    /// slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.nodes, Nodes::Cluster(_))
    }
}

impl Deployment {
    /// A plain URL with nothing else set.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            nodes: Nodes::Url(url.into()),
            username: None,
            password: None,
            password_source: None,
            password_file: None,
            tls: None,
            replication: None,
        }
    }

    /// Where the password in use came from, for messages.
    pub fn password_from(&self) -> String {
        match (&self.password, &self.password_source, &self.nodes) {
            (Some(_), Some(source), _) => format!("from {source}"),
            (Some(_), None, _) => "given by the embedding program".to_owned(),
            (None, _, Nodes::Url(url)) if url_password(url) => "from the URL".to_owned(),
            (None, _, Nodes::Cluster(seeds)) if seeds.iter().any(|s| url_password(s)) => {
                "from the URL".to_owned()
            }
            (None, _, _) => "none given".to_owned(),
        }
    }

    /// Where the primary is, for messages: the URL without its password, or the
    /// Sentinels and the master's name.
    pub fn shown(&self) -> String {
        match &self.nodes {
            Nodes::Url(url) => redact_url(url),
            Nodes::Sentinel { sentinels, master } => {
                format!("master {master:?} of sentinels {}", sentinels.join(","))
            }
            Nodes::Cluster(seeds) => format!(
                "cluster {}",
                seeds
                    .iter()
                    .map(|s| redact_url(s))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// Whether `url` carries a password, in any form redis-rs reads (`user:pass@`, or a
/// `pass=` query parameter of a `unix://` URL).
pub fn url_password(url: &str) -> bool {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .is_ok_and(|info| info.redis_settings().password().is_some())
}

/// `url` with its password (if any) replaced by `***`, for messages: the one in the
/// user info (`redis://user:***@host`) and `pass`/`password` query parameters
/// (`unix:///run/redis.sock?pass=***`). The user name is kept.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _))
                    if name.eq_ignore_ascii_case("pass")
                        || name.eq_ignore_ascii_case("password") =>
                {
                    format!("{name}=***")
                }
                _ => param.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("redis://sluice:secret@host:6379/0"),
            "redis://sluice:***@host:6379/0"
        );
        assert_eq!(redact_url("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("redis://sluice@host"), "redis://sluice@host");
        assert_eq!(
            redact_url("unix:///run/r.sock?db=1&pass=secret"),
            "unix:///run/r.sock?db=1&pass=***"
        );
        assert!(url_password("unix:///run/r.sock?pass=secret"));
        assert!(url_password("redis://u:secret@host"));
        assert!(!url_password("redis://u@host"));
        let secret = Secret::new("hunter2");
        assert_eq!(
            format!("{secret} {secret:?} {:?}", Some(&secret)),
            "*** *** Some(***)"
        );
        let mut deployment = Deployment::url("rediss://u:hunter2@h:1");
        deployment.password = Some(secret);
        assert!(!format!("{deployment:?} {}", deployment.shown()).contains("hunter2"));
    }
}
