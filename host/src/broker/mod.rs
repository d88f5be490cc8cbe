//! The broker: the only user of `redis` on the data path. Consumer groups, reads, and the
//! guarded commit.
//!
//! Each consumer has two connections ([`link::Link`]): a blocking `XREADGROUP` holds its
//! connection until data arrives, so reads get their own, while commits and bookkeeping
//! share the other. Every call has a response deadline; a call that misses it, or fails
//! in a way only a new connection cures (`READONLY`, `UNBLOCKED`, a broken socket), drops
//! its connection and the next call opens a new one. Every error is classified in one
//! place, [`fault`]; the pipeline decides from that what to do. The daemon-wide
//! [`Broker`] connection (admin API, tools) is a link of the same kind.

mod commit;
mod conn;
mod consumer;
mod consumer_id;
mod consumers;
mod cross_slot;
mod dead;
mod dead_page;
mod deployment;
mod endpoint;
pub mod fault;
mod lease;
mod link;
mod range;
mod reply;
mod server_settings;
pub mod slot;
mod state;

use anyhow::{Context, Result, bail};
use std::future::Future;
use std::sync::Arc;

use redis::{RedisResult, Value};
use tokio_util::sync::CancellationToken;

use endpoint::Endpoint;

pub use conn::Conn;

pub use commit::{Ack, Fence, KeyMap, MAX_FIELDS_PER_COMMIT, MAX_FIELDS_PER_OUTPUT};
pub use consumer::{Consumer, ConsumerId, Prefetcher, Recreated};
pub use consumers::GroupConsumer;
pub use dead::{
    DeadStream, IdsError, LetterIds, MAX_IDS, Purged, REPLAY_CHUNK, ReplayCut, Replayed,
};
pub use dead_page::{Page, PageEntry, PageLimits};
pub use deployment::{Deployment, Nodes, Replication, Secret, Tls, redact_url, url_password};
pub use fault::{Backoff, Blame, Fault, Remedy};
pub use lease::{EntryLeases, LeaseKeys};
pub use link::{BLOCK_MARGIN, CALL_DEADLINE};
pub use reply::{GroupInfo, PendingEntry};
pub use server_settings::{NO_EVICTION, ServerSettings, settings_unreadable};
pub use state::StateValue;

/// The oldest server Sluice runs against: Redis 6.2 brought `XPENDING ... IDLE` (the
/// retry and reclaim scans) and `XGROUP CREATE ... MKSTREAM` with `XAUTOCLAIM`-era
/// stream semantics; Valkey forked from Redis 7.2 and has all of it.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// A handle on one Redis server, shared by every pipeline of a daemon.
#[derive(Clone)]
pub struct Broker {
    endpoint: Arc<Endpoint>,
    commands: Arc<link::Link>,
    /// What the server said it is at connection (`redis 7.0.15`).
    server: String,
}

/// Parses a server version (`7.0.15`) into (major, minor).
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next().unwrap_or("0").trim().parse().ok()?;
    Some((major, minor))
}

/// Whether `server` (`redis`, `valkey`) at `version` has everything Sluice uses; the
/// reason if not.
pub fn check_server(server: &str, version: &str) -> Result<()> {
    let Some(found) = parse_version(version) else {
        bail!(
            "the server reports version {version:?}, which Sluice cannot read; it needs Redis {}.{} or later (or Valkey)",
            MIN_REDIS_VERSION.0,
            MIN_REDIS_VERSION.1
        );
    };
    // Valkey numbers its releases from 7.2 (its fork point) on; it has all Sluice uses.
    if server.eq_ignore_ascii_case("valkey") || found >= MIN_REDIS_VERSION {
        return Ok(());
    }
    bail!(
        "the server is {server} {version}, older than Redis {}.{}: Sluice needs XPENDING with IDLE (Redis 6.2); upgrade the server",
        MIN_REDIS_VERSION.0,
        MIN_REDIS_VERSION.1
    )
}

impl Broker {
    /// Connects to the server `deployment` names and checks that it is recent enough. With
    /// Sentinels, a task follows their `+switch-master` announcements until `stop`.
    /// A shutdown (`stop`) while it connects ends the attempt at once.
    pub async fn connect(deployment: &Deployment, stop: CancellationToken) -> Result<Self> {
        let endpoint = Arc::new(Endpoint::new(deployment)?);
        let shown = endpoint.shown().to_owned();
        tokio::select! {
            biased;
            () = stop.cancelled() => bail!("stopped while connecting to Redis at {shown}"),
            broker = Self::open(endpoint, deployment, stop.clone()) => broker,
        }
    }

    async fn open(
        endpoint: Arc<Endpoint>,
        deployment: &Deployment,
        stop: CancellationToken,
    ) -> Result<Self> {
        let shown = endpoint.shown().to_owned();
        let commands = Arc::new(link::Link::new(
            Arc::clone(&endpoint),
            format!("redis at {shown}"),
        ));
        // A connection lost while opening (a killed client, a restarting server) is tried
        // again a few times (about 3 s) before start-up fails.
        let mut backoff = Backoff::redis();
        loop {
            match commands.connection().await {
                Ok(_) => break,
                Err(fault)
                    if fault.blame() == Blame::Environment
                        && !fault.is_permission()
                        && tls_refusal(&fault).is_none()
                        && backoff.failures() < 5 =>
                {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(fault) => return Err(connect_error(&fault, deployment, endpoint.user())),
            }
        }
        endpoint.watch(stop);
        let mut broker = Self {
            endpoint,
            commands,
            server: String::new(),
        };
        let (server, version) = broker
            .hello()
            .await
            .with_context(|| format!("cannot ask Redis at {shown} what it is"))?;
        check_server(&server, &version)
            .with_context(|| format!("Redis at {shown} cannot be used"))?;
        broker.server = format!("{server} {version}");
        if !broker.is_cluster() && broker.cluster_enabled().await {
            bail!(
                "Redis at {shown} is a node of a Redis Cluster, which serves only its own hash slots: set [redis] cluster = true (with this URL as a seed node) so that each command goes to the node that holds its key"
            );
        }
        if let Some(wait) = deployment.replication {
            broker.check_replication(wait).await?;
        }
        tracing::info!(url = %shown, server = %broker.server, "connected to redis");
        Ok(broker)
    }

    /// With `[redis] wait_replicas`: the user may run `WAIT` (or start-up fails), and
    /// the primary has that many replicas now (or a warning says it holds each batch
    /// until they come).
    async fn check_replication(&self, wait: Replication) -> Result<()> {
        let user = self.endpoint.user().to_owned();
        let probe = self
            .call("WAIT", |mut c| async move {
                redis::cmd("WAIT")
                    .arg(0)
                    .arg(1)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await;
        match probe {
            Err(fault) if fault.is_permission() => bail!(
                "{fault}: [redis] wait_replicas needs the WAIT command; grant it with ACL SETUSER {user} +wait"
            ),
            Err(fault) => return Err(fault.into()),
            Ok(_) => {}
        }
        let info: String = self
            .call("INFO replication", |mut c| async move {
                redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut c)
                    .await
            })
            .await
            .unwrap_or_default();
        let replicas = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse::<u32>().ok());
        if let Some(found) = replicas
            && found < wait.replicas
        {
            tracing::warn!(
                connected = found,
                wait_replicas = wait.replicas,
                "the primary has fewer replicas than [redis] wait_replicas: each pipeline holds after its first commit until enough replicas connect"
            );
        }
        Ok(())
    }

    /// Whether the server says it is a cluster node (`INFO cluster`); `false` if it
    /// does not answer (an ACL user without `INFO`).
    async fn cluster_enabled(&self) -> bool {
        let info: Result<String, Fault> = self
            .call("INFO cluster", |mut c| async move {
                redis::cmd("INFO").arg("cluster").query_async(&mut c).await
            })
            .await;
        info.is_ok_and(|info| info.lines().any(|l| l.trim() == "cluster_enabled:1"))
    }

    /// The server's name and version from `HELLO` (needs no ACL permission).
    async fn hello(&mut self) -> Result<(String, String)> {
        // A connection lost at start-up (a restart, a failover, a killed client) is tried
        // again a few times; an unknown command is a server older than Redis 6.0.
        let mut backoff = Backoff::redis();
        let reply: Value = loop {
            let hello = self
                .call("HELLO", |mut c| async move {
                    redis::cmd("HELLO").query_async(&mut c).await
                })
                .await;
            match hello {
                Ok(reply) => break reply,
                Err(fault) if fault.to_string().contains("unknown command") => bail!(
                    "{fault}: the server is older than Redis 6.0; Sluice needs Redis {}.{} or later (or Valkey)",
                    MIN_REDIS_VERSION.0,
                    MIN_REDIS_VERSION.1
                ),
                Err(fault) if fault.blame() == Blame::Environment && backoff.failures() < 5 => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(fault) => return Err(fault.into()),
            }
        };
        let pairs: Vec<(String, Value)> = match reply {
            Value::Array(items) => {
                let mut pairs = Vec::new();
                let mut items = items.into_iter();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    pairs.push((redis::from_redis_value::<String>(k).unwrap_or_default(), v));
                }
                pairs
            }
            Value::Map(items) => items
                .into_iter()
                .map(|(k, v)| (redis::from_redis_value::<String>(k).unwrap_or_default(), v))
                .collect(),
            other => bail!("unexpected HELLO reply: {other:?}"),
        };
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| redis::from_redis_value::<String>(v.clone()).ok())
                .unwrap_or_default()
        };
        Ok((get("server"), get("version")))
    }

    /// A consumer named `consumer` in `group` on `stream`, with its own read and
    /// command connections (opened on first use, by the runtime that uses them: a
    /// pipeline's own thread, so its data path never hands work to another thread).
    pub fn consumer(&self, stream: &str, group: &str, consumer: &str) -> Consumer {
        let label = format!("stream {stream:?} group {group:?}");
        let id = ConsumerId {
            stream: stream.to_owned(),
            group: group.to_owned(),
            name: consumer.to_owned(),
        };
        Consumer::new(
            id,
            self.endpoint.user().to_owned(),
            link::Link::new(Arc::clone(&self.endpoint), label.clone()),
            link::Link::new(Arc::clone(&self.endpoint), label),
        )
    }

    /// Where Redis is, as messages show it: the URL without its password, or the
    /// Sentinels.
    pub fn shown(&self) -> &str {
        self.endpoint.shown()
    }

    /// Whether the server is a Redis Cluster (`[redis] cluster = true`).
    pub fn is_cluster(&self) -> bool {
        self.endpoint.is_cluster()
    }

    /// Runs `call` on the daemon-wide connection, under the usual deadline; `what` names
    /// the command in errors. For commands off the data path (admin API, tools).
    pub async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, Fault>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.commands.call(what, None, call).await
    }
}

/// A connection error at start-up, with what to do about it; never the password.
/// What to do about a TLS handshake that failed for good (a certificate refused either
/// way, a plain port behind a `rediss://` URL): retrying cannot help.
fn tls_refusal(fault: &Fault) -> Option<&'static str> {
    let text = fault.to_string();
    let has = |s: &str| text.contains(s);
    if has("CertificateRequired") {
        Some("the server requires a client certificate: set [redis.tls] cert_file and key_file")
    } else if has("UnknownCA") || has("BadCertificate") || has("alert: DecryptError") {
        Some(
            "the server does not accept the client certificate in [redis.tls] cert_file: it must be signed by a CA in the server's tls-ca-cert-file",
        )
    } else if has("UnsupportedCertVersion") {
        Some(
            "a certificate is X.509 version 1, which rustls does not accept: re-issue it as version 3 (with openssl: `openssl x509 -req ... -extfile` with at least a subjectAltName)",
        )
    } else if has("Expired") || has("NotValidYet") {
        Some(
            "the server's certificate is expired or not yet valid: renew it on the server, or check this machine's clock",
        )
    } else if has("NotValidForName") {
        Some(
            "the server's certificate does not name the host in the URL: connect by a name it holds, or set [redis.tls] server_name to one",
        )
    } else if has("certificate") || has("Certificate") || has("UnknownIssuer") {
        Some(
            "the TLS handshake failed on the server's certificate: check [redis.tls] ca_file (the CA that signed it) and server_name (the name in it)",
        )
    } else if has("received corrupt message") || has("InvalidContentType") {
        Some(
            "the server does not speak TLS there: use its tls-port, or a redis:// URL for a plain port",
        )
    } else {
        None
    }
}

fn connect_error(fault: &Fault, deployment: &Deployment, user: &str) -> anyhow::Error {
    let shown = deployment.shown();
    let text = fault.to_string();
    let sentinels = matches!(deployment.nodes, Nodes::Sentinel { .. });
    let hint = if let Some(tls) = tls_refusal(fault) {
        format!(": {tls}")
    } else if text.contains("MasterNameNotFoundBySentinel") {
        ": the sentinels know no primary by that name: check [redis] master against `SENTINEL MASTERS` on a sentinel".to_owned()
    } else {
        match fault.code() {
            "WRONGPASS" => format!(
                ": the user {user:?} or its password ({}) is wrong; check the password, and the ACL user on the server",
                deployment.password_from()
            ),
            "NOPERM" => format!(": the ACL user {user:?} may not run the commands Sluice needs"),
            "IO" | "TIMEOUT" if sentinels => {
                ": are the sentinels up, and is each [redis] sentinels entry the host:port of one?".to_owned()
            }
            "IO" | "TIMEOUT" if deployment.tls.is_some() => {
                ": is redis-server running there, and are the URL's host and port right? (a TLS handshake sent to a plain port gets no answer: is it the server's tls-port?)".to_owned()
            }
            "IO" | "TIMEOUT" => {
                ": is redis-server running there, and are the URL's host and port right? (a TLS port needs a rediss:// URL)".to_owned()
            }
            _ => String::new(),
        }
    };
    anyhow::anyhow!("cannot connect to Redis at {shown}: {fault}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_floor_is_redis_6_2() {
        assert!(check_server("redis", "7.0.15").is_ok());
        assert!(check_server("redis", "6.2.0").is_ok());
        let old = check_server("redis", "6.0.16").expect_err("6.0 is refused");
        assert!(format!("{old}").contains("6.2"), "{old}");
        assert!(check_server("redis", "5.0.7").is_err());
        assert!(check_server("valkey", "8.1.1").is_ok());
        assert!(check_server("redis", "").is_err());
    }
}
