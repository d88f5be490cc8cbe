//! The PEM files of `[redis.tls]`, read and checked when the endpoint is built: a missing
//! file, a file without a certificate or a key that does not belong to its certificate
//! fails start-up with the file's name.

use std::path::Path;

use anyhow::{Context, Result, bail};
use redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::broker::deployment::Tls;

/// Reads and checks the PEM files of `[redis.tls]`.
pub(super) fn certificates(tls: &Tls) -> Result<TlsCertificates> {
    let root_cert = match &tls.ca_file {
        Some(path) => Some(trust_anchors(path)?),
        None => None,
    };
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert_path), Some(key_path)) => Some(client_identity(cert_path, key_path)?),
        (None, None) => None,
        (Some(_), None) => bail!("[redis.tls] cert_file is set without key_file: give both"),
        (None, Some(_)) => bail!("[redis.tls] key_file is set without cert_file: give both"),
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// `ca_file`: PEM certificates that can each be a trust anchor.
fn trust_anchors(path: &Path) -> Result<Vec<u8>> {
    let pem = read(path, "ca_file")?;
    let mut store = rustls::RootCertStore::empty();
    for cert in certs(&pem, path, "ca_file")? {
        store.add(cert).map_err(|e| {
            anyhow::anyhow!(
                "[redis.tls] ca_file {}: a certificate in it cannot be a trust anchor ({e})",
                path.display()
            )
        })?;
    }
    Ok(pem)
}

/// `cert_file` and `key_file`: a client certificate chain and the key it was made for.
fn client_identity(cert_path: &Path, key_path: &Path) -> Result<ClientTlsConfig> {
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
    // Only a mismatch is an error here: a certificate webpki cannot parse (an X.509 v1
    // one) may still be one the server accepts.
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        rustls::sign::CertifiedKey::new(chain, signing).keys_match()
    {
        bail!(
            "[redis.tls] key_file {} is not the key of the certificate in cert_file {}: give the key the certificate was made for",
            key_path.display(),
            cert_path.display()
        );
    }
    Ok(ClientTlsConfig {
        client_cert: cert_pem,
        client_key: key_pem,
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
