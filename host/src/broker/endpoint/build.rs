//! Building an [`Endpoint`] from a Redis deployment: the URL, Sentinels or cluster seeds
//! checked and turned into an [`Opener`], with the ACL user and the password.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use redis::io::AsyncDNSResolver;
use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisResult,
    TlsCertificates,
};

use super::tls::certificates;
use super::{Endpoint, Opener, tcp_settings};
use crate::broker::deployment::{Deployment, Nodes, Secret, redact_url};

/// What one kind of deployment opens with: the opener and the ACL user.
type Built = (Opener, String);

impl Endpoint {
    /// Checks `target` (URL, TLS files) and prepares to connect; opens nothing.
    pub fn new(deployment: &Deployment) -> Result<Self> {
        // rustls needs a process-wide crypto provider; ring is the one built in. A second
        // install (another endpoint) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shown = deployment.shown();
        let certificates = deployment.tls.as_ref().map(certificates).transpose()?;
        let mut password = deployment.password.clone();
        let (opener, user) = match &deployment.nodes {
            Nodes::Url(url) => direct(deployment, url, &shown, certificates, &mut password)?,
            Nodes::Sentinel { sentinels, master } => {
                let sentinels = sentinels
                    .iter()
                    .map(|s| sentinel_addr(s, deployment.tls.is_some()))
                    .collect::<Result<Vec<_>>>()?;
                let opener = Opener::Sentinel {
                    sentinels,
                    master: master.clone(),
                    username: deployment.username.clone(),
                    certificates,
                };
                (
                    opener,
                    deployment
                        .username
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                )
            }
            Nodes::Cluster(urls) => cluster(deployment, urls, certificates, &mut password)?,
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
            epoch: std::sync::atomic::AtomicU64::new(0),
            replication: deployment.replication,
            password: std::sync::Mutex::new(password),
            password_file: deployment.password_file.clone(),
        })
    }
}

/// `url` as connection info, its password hidden from any error.
fn parse_url(url: &str, shown: &str) -> Result<ConnectionInfo> {
    url.into_connection_info().map_err(|e| {
        anyhow::anyhow!(
            "invalid Redis URL {shown:?}: {}",
            e.to_string().replace(url, shown)
        )
    })
}

/// One fixed URL (TLS with an optional server name that differs from the host dialled).
fn direct(
    deployment: &Deployment,
    url: &str,
    shown: &str,
    certificates: Option<TlsCertificates>,
    password: &mut Option<Secret>,
) -> Result<Built> {
    let info = parse_url(url, shown)?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &deployment.username {
        settings = settings.set_username(user);
    }
    if password.is_none() {
        *password = settings.password().map(Secret::new);
    }
    let user = settings.username().unwrap_or("default").to_owned();
    let settings = without_password(&settings);
    let mut dial = None;
    let addr = match (info.addr().clone(), &deployment.tls) {
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
        .set_tcp_settings(tcp_settings());
    client(&info, password.as_ref(), certificates.as_ref())
        .map_err(|e| anyhow::anyhow!("invalid Redis URL {shown:?}: {e}"))?;
    let opener = Opener::Direct {
        info,
        certificates,
        dial,
    };
    Ok((opener, user))
}

/// A Redis Cluster's seed nodes: the user and password of the first URL that gives one.
fn cluster(
    deployment: &Deployment,
    urls: &[String],
    certificates: Option<TlsCertificates>,
    password: &mut Option<Secret>,
) -> Result<Built> {
    let mut seeds = Vec::new();
    let mut username = deployment.username.clone();
    let mut tls = false;
    for url in urls {
        let info = parse_url(url, &redact_url(url))?;
        let settings = info.redis_settings().clone();
        if username.is_none() {
            username = settings.username().map(str::to_owned);
        }
        if password.is_none() {
            *password = settings.password().map(Secret::new);
        }
        tls |= matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let settings = without_password(&settings);
        seeds.push(
            info.set_redis_settings(settings)
                .set_tcp_settings(tcp_settings()),
        );
    }
    if deployment.tls.is_some() && !tls {
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
    Ok((opener, user))
}

/// Resolves every name to one host: how a connection made out to the certificate's
/// server name reaches the address the URL gives.
#[derive(Clone)]
pub(super) struct Dial {
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

/// `settings` with no password (it is added at each connection).
pub(super) fn without_password(settings: &RedisConnectionInfo) -> RedisConnectionInfo {
    let mut bare = RedisConnectionInfo::default()
        .set_db(settings.db())
        .set_protocol(settings.protocol());
    if let Some(user) = settings.username() {
        bare = bare.set_username(user);
    }
    bare
}

/// A client for `info` logging in with `password`.
pub(super) fn client(
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
pub(super) fn sentinel_addr(text: &str, tls: bool) -> Result<ConnectionAddr> {
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
