//! New connections: DNS resolved here, each address about to be dialled checked
//! (`block_private_networks`), then TCP and, for https, rustls with the server's name
//! checked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::Error;

use super::Refusals;
use super::grant::{Origin, Scheme};
use super::net::private_kind;

pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Makes the pipeline's connections (see the module doc).
#[derive(Clone)]
pub struct Connector {
    pub tls: Arc<rustls::ClientConfig>,
    pub block_private_networks: bool,
    pub refusals: Arc<Refusals>,
}

/// A connection: TCP, or TLS over TCP.
pub type Conn = Box<dyn Stream>;

impl Connector {
    /// A new connection to `origin` (its TLS handshake done for https).
    pub async fn dial(&self, origin: &Origin) -> Result<Conn, Error> {
        let tcp = self.tcp(origin).await?;
        Ok(match origin.scheme {
            Scheme::Http => Box::new(tcp),
            Scheme::Https => Box::new(self.tls(origin, tcp).await?),
        })
    }

    /// Resolves the origin's host and connects to the first address that may be dialled
    /// and answers.
    async fn tcp(&self, origin: &Origin) -> Result<TcpStream, Error> {
        let addresses: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
            Err(_) => tokio::net::lookup_host((origin.host.as_str(), origin.port))
                .await
                .map_err(|e| Error::DnsError {
                    rcode: Some(e.to_string()),
                    info_code: None,
                })?
                .collect(),
        };
        let mut last = Error::DestinationNotFound;
        for address in addresses {
            if self.block_private_networks
                && let Some(kind) = private_kind(address.ip())
            {
                let why = format!(
                    "{origin} resolves to {} ({kind}) and block_private_networks is on",
                    address.ip()
                );
                self.refusals.refused(&origin.to_string(), &why);
                last = Error::DestinationIpProhibited;
                continue;
            }
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Error::Connect(e),
            }
        }
        Err(last)
    }

    async fn tls(
        &self,
        origin: &Origin,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
        use rustls::pki_types::ServerName;
        let name = match origin.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(origin.host.clone())
                .map_err(|_| Error::HttpRequestUriInvalid)?,
        };
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(
                |e| match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
                    _ => Error::Tls(e),
                },
            )
    }
}
