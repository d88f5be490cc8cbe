//! Certificates for TLS tests, made fresh by each test: a CA, server and client
//! certificates, and a stranger's from a CA the server does not trust.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sluice::redis_server::{RedisServer, free_port};

/// A test PKI: a CA, a server certificate for `names`, a client certificate, and a second
/// CA that signed nothing here.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// The directory that holds the PKI's files (a config beside them names them relatively).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn new(names: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, ca_issuer) = ca("Sluice test CA");
        write_file(dir.path(), "ca.pem", &ca_pem);
        let (other_ca, other_issuer) = ca("Some other CA");
        write_file(dir.path(), "other-ca.pem", &other_ca);
        let (cert, key) = leaf(
            vec!["sluice".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            &other_issuer,
        );
        write_file(dir.path(), "stranger.pem", &cert);
        write_file(dir.path(), "stranger.key", &key);
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let (cert, key) = leaf(names, ExtendedKeyUsagePurpose::ServerAuth, &ca_issuer);
        write_file(dir.path(), "server.pem", &cert);
        write_file(dir.path(), "server.key", &key);
        let (cert, key) = leaf(
            vec!["sluice".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca_issuer,
        );
        write_file(dir.path(), "client.pem", &cert);
        write_file(dir.path(), "client.key", &key);
        Pki { dir }
    }

    /// A file of the PKI: `ca.pem`, `other-ca.pem`, `server.pem`, `server.key`,
    /// `client.pem`, `client.key`, `stranger.pem`, `stranger.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A redis-server with a plain port (for the test's own connection) and a TLS port
    /// that asks for client certificates if `clients`.
    pub fn server(&self, clients: bool) -> (RedisServer, u16) {
        // A free port can be taken before the server binds it: another, a few times.
        for _ in 1..5 {
            match self.try_server(clients) {
                Err(e) if e.to_string().contains("Address already in use") => continue,
                started => return started.expect("redis-server with TLS starts"),
            }
        }
        self.try_server(clients)
            .expect("redis-server with TLS starts")
    }

    fn try_server(&self, clients: bool) -> anyhow::Result<(RedisServer, u16)> {
        let tls_port = free_port()?;
        let options = [
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            self.path("server.pem").display().to_string(),
            "--tls-key-file".to_owned(),
            self.path("server.key").display().to_string(),
            "--tls-ca-cert-file".to_owned(),
            self.path("ca.pem").display().to_string(),
            "--tls-auth-clients".to_owned(),
            if clients { "yes" } else { "no" }.to_owned(),
        ];
        Ok((RedisServer::start_with(&options)?, tls_port))
    }
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(names).expect("params");
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// Writes `text` into the file `name` of `dir`.
pub fn write_file(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}
