//! Opening connections to the primary a [`Deployment`](super::Deployment)
//! names: a fixed URL (TLS and ACL credentials included), or the primary a set of
//! Sentinels names at that moment.
//!
//! Every TLS file is read and checked when the endpoint is built, so a missing file, a
//! file without a certificate or a key that does not belong to its certificate fails
//! start-up with the file's name, not the first connection with a handshake error.
//!
//! With `[redis] cluster = true`, each connection is redis-rs's cluster connection,
//! built from the seed nodes: it learns the slot layout, sends each command to the
//! primary of its key's slot, and follows `MOVED` (a slot moved for good: it refreshes the
//! layout) and `ASK` (a slot being migrated) redirections.
//!
//! With Sentinels, each new connection asks them for the primary (redis-rs's
//! `SentinelClient`, which also checks that the node it names says `ROLE master`), and a
//! watcher subscribed to `+switch-master` moves the [`Endpoint::epoch`] on: links opened
//! in an older epoch drop their connection at their next call.

mod build;
#[cfg(test)]
mod tests;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use redis::cluster::ClusterClientBuilder;
use redis::io::tcp::{TcpSettings, socket2};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisResult, TlsCertificates, TlsMode,
};
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::deployment::{Replication, Secret};
use super::fault::Backoff;
use build::{Dial, client};

/// How long opening a connection (TCP, TLS, AUTH) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP settings for every connection: keepalive probes after 10 s idle, every 5 s, and
/// unacknowledged data failing the connection after 10 s (Linux `TCP_USER_TIMEOUT`).
pub fn tcp_settings() -> TcpSettings {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5));
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(Duration::from_secs(10));
    settings
}

/// Opens connections to the current primary of a [`Deployment`](super::Deployment).
pub struct Endpoint {
    opener: Opener,
    /// The ACL user connections log in as, for messages.
    user: String,
    /// Where, for messages (never a password).
    shown: String,
    /// Moves on when the primary changes; see the module docs.
    epoch: AtomicU64,
    replication: Option<Replication>,
    /// The password connections log in with; read again from `password_file` (if set)
    /// for each new connection, so that a rotated password is picked up.
    password: std::sync::Mutex<Option<Secret>>,
    password_file: Option<PathBuf>,
}

enum Opener {
    Direct {
        /// Where and how, without the password (added at each connection).
        info: ConnectionInfo,
        certificates: Option<TlsCertificates>,
        /// With `[redis.tls] server_name`: the host that is really dialled, while the
        /// connection's host (checked against the certificate) is the server name.
        dial: Option<Dial>,
    },
    Sentinel {
        sentinels: Vec<ConnectionAddr>,
        master: String,
        username: Option<String>,
        certificates: Option<TlsCertificates>,
    },
    Cluster {
        /// The seed nodes, without passwords.
        seeds: Vec<ConnectionInfo>,
        username: Option<String>,
        tls: bool,
        certificates: Option<TlsCertificates>,
    },
}

/// How long one cluster request may take inside redis-rs: long, because every call of a
/// link (`broker::link`) has its own deadline (a blocking read's is its `BLOCK` plus a margin),
/// which is what bounds it.
const CLUSTER_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

impl Endpoint {
    /// The password for a new connection: `password_file` read again if set (a file that
    /// cannot be read now keeps the last password, with a warning).
    fn password(&self) -> Option<Secret> {
        let mut password = crate::lock::lock(&self.password);
        if let Some(path) = &self.password_file {
            match Secret::from_file(path) {
                Ok(read) => {
                    if password.as_ref() != Some(&read) {
                        if password.is_some() {
                            tracing::info!(file = %path.display(), "the password in [redis] password_file changed; new connections use it");
                        }
                        *password = Some(read);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "keeping the last password read");
                }
            }
        }
        password.clone()
    }

    /// Where, for messages: the URL without its password, or the Sentinels.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The ACL user connections log in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The `WAIT` after each commit, if configured.
    pub fn replication(&self) -> Option<Replication> {
        self.replication
    }

    /// The current epoch; see the module docs.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether connections go to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.opener, Opener::Cluster { .. })
    }

    /// Opens a connection to the current primary (for a cluster: to the primaries that
    /// serve its slots).
    pub async fn open(&self, config: AsyncConnectionConfig) -> RedisResult<Conn> {
        match &self.opener {
            Opener::Direct {
                info,
                certificates,
                dial,
            } => {
                let config = match dial {
                    Some(dial) => config.set_dns_resolver(dial.clone()),
                    None => config,
                };
                client(info, self.password().as_ref(), certificates.as_ref())?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Node)
            }
            Opener::Sentinel { .. } => {
                let client = self.sentinel_client()?.async_get_client().await?;
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Node)
            }
            Opener::Cluster {
                seeds,
                username,
                tls,
                certificates,
            } => {
                let mut builder = ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(CLUSTER_RESPONSE_TIMEOUT)
                    .overall_response_timeout(None)
                    .tcp_settings(tcp_settings());
                if let Some(user) = username {
                    builder = builder.username(user);
                }
                if let Some(password) = self.password() {
                    builder = builder.password(password.expose());
                }
                if *tls {
                    builder = builder.tls(TlsMode::Secure);
                }
                if let Some(certs) = certificates {
                    builder = builder.certs(certs.clone());
                }
                builder
                    .build()?
                    .get_async_connection()
                    .await
                    .map(Conn::Cluster)
            }
        }
    }

    fn sentinel_client(&self) -> RedisResult<redis::sentinel::SentinelClient> {
        let Opener::Sentinel {
            sentinels,
            master,
            username,
            certificates,
        } = &self.opener
        else {
            unreachable!("called for Sentinel endpoints only");
        };
        let mut builder =
            SentinelClientBuilder::new(sentinels.clone(), master, SentinelServerType::Master)?
                .set_client_to_redis_tcp_settings(tcp_settings())
                .set_client_to_sentinel_tcp_settings(tcp_settings());
        if let Some(user) = username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = self.password() {
            builder = builder.set_client_to_redis_password(password.expose());
        }
        if let Some(certs) = certificates {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_certificates(certs.clone());
        }
        builder.build()
    }

    /// For Sentinel endpoints: a task that listens for `+switch-master` on the Sentinels
    /// and moves the epoch on when it hears one, until `stop`. Nothing for URLs.
    pub fn watch(self: &Arc<Self>, stop: CancellationToken) {
        let Opener::Sentinel { master, .. } = &self.opener else {
            return;
        };
        let master = master.clone();
        let endpoint = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Backoff::redis();
            while !stop.is_cancelled() {
                let heard = tokio::select! {
                    () = stop.cancelled() => return,
                    heard = endpoint.listen(&master) => heard,
                };
                if let Err(e) = heard {
                    tracing::debug!(error = %e, "lost the sentinels' +switch-master channel; subscribing again");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                } else {
                    backoff = Backoff::redis();
                }
            }
        });
    }

    /// Subscribes to `+switch-master` on a Sentinel and moves the epoch on at each one
    /// for `master`; returns when the subscription ends.
    async fn listen(&self, master: &str) -> RedisResult<()> {
        let client = self.sentinel_client()?.async_get_sentinel_client().await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe("+switch-master").await?;
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            // "<master name> <old ip> <old port> <new ip> <new port>"
            let text: String = message.get_payload().unwrap_or_default();
            if text.split(' ').next() == Some(master) {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(switch = %text, "sentinel: the primary changed; reconnecting to the new one");
            }
        }
        Ok(())
    }
}
