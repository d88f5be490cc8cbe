//! Opening connections to the primary a [`Target`] names: a fixed URL (TLS and ACL
//! credentials included), or the primary a set of Sentinels names at that moment.
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use redis::cluster::ClusterClientBuilder;
use redis::io::AsyncDNSResolver;
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, RedisConnectionInfo, RedisResult, TlsCertificates, TlsMode,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::fault::Backoff;
use super::link;
use super::target::{Nodes, Replication, Secret, Target, Tls};

/// Opens connections to the current primary of a [`Target`].
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
/// [`link::Link`] has its own deadline (a blocking read's is its `BLOCK` plus a margin),
/// which is what bounds it.
const CLUSTER_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Resolves every name to one host: how a connection made out to the certificate's
/// server name reaches the address the URL gives.
#[derive(Clone)]
struct Dial {
    host: String,
}

impl AsyncDNSResolver for Dial {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        _host: &'b str,
        port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), port))
                .await?
                .collect();
            Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

impl Endpoint {
    /// Checks `target` (URL, TLS files) and prepares to connect; opens nothing.
    pub fn new(target: &Target) -> Result<Self> {
        // rustls needs a process-wide crypto provider; ring is the one built in. A second
        // install (another endpoint) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shown = target.shown();
        let certificates = target.tls.as_ref().map(certificates).transpose()?;
        let mut password = target.password.clone();
        let (opener, user) = match &target.nodes {
            Nodes::Url(url) => {
                let info = url.as_str().into_connection_info().map_err(|e| {
                    anyhow::anyhow!(
                        "invalid Redis URL {shown:?}: {}",
                        e.to_string().replace(url, &shown)
                    )
                })?;
                let mut settings = info.redis_settings().clone();
                if let Some(user) = &target.username {
                    settings = settings.set_username(user);
                }
                if password.is_none() {
                    password = settings.password().map(Secret::new);
                }
                let user = settings.username().unwrap_or("default").to_owned();
                let settings = without_password(&settings);
                let mut dial = None;
                let addr = match (info.addr().clone(), &target.tls) {
                    (ConnectionAddr::TcpTls { host, port, .. }, Some(tls)) => {
                        let name = match &tls.server_name {
                            Some(name) => {
                                dial = Some(Dial { host });
                                name.clone()
                            }
                            None => host,
                        };
                        ConnectionAddr::TcpTls {
                            host: name,
                            port,
                            insecure: false,
                            tls_params: None,
                        }
                    }
                    (ConnectionAddr::Tcp(..), Some(_)) => bail!(
                        "[redis.tls] is set but the URL {shown:?} is not a rediss:// URL: write rediss:// to use TLS, or remove [redis.tls]"
                    ),
                    (addr, _) => addr,
                };
                let info = info
                    .set_addr(addr)
                    .set_redis_settings(settings)
                    .set_tcp_settings(link::tcp_settings());
                client(&info, password.as_ref(), certificates.as_ref())
                    .map_err(|e| anyhow::anyhow!("invalid Redis URL {shown:?}: {e}"))?;
                (
                    Opener::Direct {
                        info,
                        certificates,
                        dial,
                    },
                    user,
                )
            }
            Nodes::Sentinel { sentinels, master } => {
                let sentinels = sentinels
                    .iter()
                    .map(|s| sentinel_addr(s, target.tls.is_some()))
                    .collect::<Result<Vec<_>>>()?;
                let opener = Opener::Sentinel {
                    sentinels,
                    master: master.clone(),
                    username: target.username.clone(),
                    certificates,
                };
                (
                    opener,
                    target.username.clone().unwrap_or_else(|| "default".into()),
                )
            }
            Nodes::Cluster(urls) => {
                let mut seeds = Vec::new();
                let mut username = target.username.clone();
                let mut tls = false;
                for url in urls {
                    let shown = super::target::redact_url(url);
                    let info = url.as_str().into_connection_info().map_err(|e| {
                        anyhow::anyhow!(
                            "invalid Redis URL {shown:?}: {}",
                            e.to_string().replace(url, &shown)
                        )
                    })?;
                    let settings = info.redis_settings().clone();
                    if username.is_none() {
                        username = settings.username().map(str::to_owned);
                    }
                    if password.is_none() {
                        password = settings.password().map(Secret::new);
                    }
                    tls |= matches!(info.addr(), ConnectionAddr::TcpTls { .. });
                    let settings = without_password(&settings);
                    seeds.push(
                        info.set_redis_settings(settings)
                            .set_tcp_settings(link::tcp_settings()),
                    );
                }
                if target.tls.is_some() && !tls {
                    bail!(
                        "[redis.tls] is set but the cluster's URLs are not rediss:// URLs: write rediss:// to use TLS, or remove [redis.tls]"
                    );
                }
                let user = username.clone().unwrap_or_else(|| "default".into());
                let opener = Opener::Cluster {
                    seeds,
                    username,
                    tls,
                    certificates,
                };
                (opener, user)
            }
        };
        if user != "default" && password.is_none() {
            bail!(
                "the ACL user {user:?} has no password: give it with [redis] password_file, SLUICE_REDIS_PASSWORD or in the URL (redis://{user}:PASSWORD@host); without one, connections would run as the default user"
            );
        }
        Ok(Self {
            opener,
            user,
            shown,
            epoch: AtomicU64::new(0),
            replication: target.replication,
            password: std::sync::Mutex::new(password),
            password_file: target.password_file.clone(),
        })
    }

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
                    .connection_timeout(link::CONNECT_TIMEOUT)
                    .response_timeout(CLUSTER_RESPONSE_TIMEOUT)
                    .overall_response_timeout(None)
                    .tcp_settings(link::tcp_settings());
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
                .set_client_to_redis_tcp_settings(link::tcp_settings())
                .set_client_to_sentinel_tcp_settings(link::tcp_settings());
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

/// `settings` with no password (it is added at each connection).
fn without_password(settings: &RedisConnectionInfo) -> RedisConnectionInfo {
    let mut bare = RedisConnectionInfo::default()
        .set_db(settings.db())
        .set_protocol(settings.protocol());
    if let Some(user) = settings.username() {
        bare = bare.set_username(user);
    }
    bare
}

/// A client for `info` logging in with `password`.
fn client(
    info: &ConnectionInfo,
    password: Option<&Secret>,
    certificates: Option<&TlsCertificates>,
) -> RedisResult<Client> {
    let mut settings = info.redis_settings().clone();
    if let Some(password) = password {
        settings = settings.set_password(password.expose());
    }
    let info = info.clone().set_redis_settings(settings);
    match certificates {
        Some(certs) => Client::build_with_tls(info, certs.clone()),
        None => Client::open(info),
    }
}

/// A Sentinel's `host:port`.
fn sentinel_addr(text: &str, tls: bool) -> Result<ConnectionAddr> {
    let (host, port) = text
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .with_context(|| {
            format!(
                "[redis] sentinels: {text:?} is not host:port (write it like \"10.0.0.5:26379\")"
            )
        })?;
    Ok(if tls {
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    })
}

/// Reads and checks the PEM files of `[redis.tls]`.
fn certificates(tls: &Tls) -> Result<TlsCertificates> {
    let root_cert = match &tls.ca_file {
        Some(path) => {
            let pem = read(path, "ca_file")?;
            let certs = certs(&pem, path, "ca_file")?;
            let mut store = rustls::RootCertStore::empty();
            for cert in certs {
                store.add(cert).map_err(|e| {
                    anyhow::anyhow!(
                        "[redis.tls] ca_file {}: a certificate in it cannot be a trust anchor ({e})",
                        path.display()
                    )
                })?;
            }
            Some(pem)
        }
        None => None,
    };
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let cert_pem = read(cert_path, "cert_file")?;
            let chain = certs(&cert_pem, cert_path, "cert_file")?;
            let key_pem = read(key_path, "key_file")?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                anyhow::anyhow!(
                    "[redis.tls] key_file {} holds no private key in PEM ({e}): give the client certificate's key (PKCS#8, PKCS#1 or SEC1)",
                    key_path.display()
                )
            })?;
            let provider = rustls::crypto::ring::default_provider();
            let signing = provider.key_provider.load_private_key(key).map_err(|e| {
                anyhow::anyhow!(
                    "[redis.tls] key_file {}: the key cannot be used ({e})",
                    key_path.display()
                )
            })?;
            // Only a mismatch is an error here: a certificate webpki cannot parse (an
            // X.509 v1 one) may still be one the server accepts.
            if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
                rustls::sign::CertifiedKey::new(chain, signing).keys_match()
            {
                bail!(
                    "[redis.tls] key_file {} is not the key of the certificate in cert_file {}: give the key the certificate was made for",
                    key_path.display(),
                    cert_path.display()
                );
            }
            Some(ClientTlsConfig {
                client_cert: cert_pem,
                client_key: key_pem,
            })
        }
        (None, None) => None,
        (Some(_), None) => bail!("[redis.tls] cert_file is set without key_file: give both"),
        (None, Some(_)) => bail!("[redis.tls] key_file is set without cert_file: give both"),
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read [redis.tls] {key} {}", path.display()))
}

fn certs(pem: &[u8], path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "[redis.tls] {key} {} is not PEM ({e}): give the certificates as PEM (-----BEGIN CERTIFICATE-----)",
                path.display()
            )
        })?;
    if certs.is_empty() {
        bail!(
            "[redis.tls] {key} {} holds no certificate: give the certificates as PEM (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}
