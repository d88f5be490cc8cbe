//! Building an endpoint: what is checked before any connection, and what it shows.

use std::path::PathBuf;

use super::build::{sentinel_addr, without_password};
use super::*;
use crate::broker::deployment::{Deployment, Nodes, Tls};

fn refused(deployment: &Deployment) -> String {
    match Endpoint::new(deployment) {
        Ok(_) => panic!("{deployment:?} was accepted"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_url_gives_the_user_and_shows_no_password() {
    let endpoint =
        Endpoint::new(&Deployment::url("redis://app:hunter2@localhost:6379/2")).expect("endpoint");
    assert_eq!(endpoint.user(), "app");
    assert!(
        !endpoint.shown().contains("hunter2"),
        "{}",
        endpoint.shown()
    );
    assert!(!endpoint.is_cluster());
    assert_eq!(endpoint.epoch(), 0);
    let plain = Endpoint::new(&Deployment::url("redis://localhost")).expect("endpoint");
    assert_eq!(plain.user(), "default");
}

#[test]
fn an_acl_user_without_a_password_is_refused() {
    let mut deployment = Deployment::url("redis://localhost");
    deployment.username = Some("app".into());
    assert!(refused(&deployment).contains("has no password"));
}

#[test]
fn tls_needs_a_rediss_url() {
    let mut deployment = Deployment::url("redis://localhost");
    deployment.tls = Some(Tls::default());
    assert!(refused(&deployment).contains("not a rediss:// URL"));
    let mut cluster = Deployment::url("redis://localhost");
    cluster.nodes = Nodes::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()]);
    cluster.tls = Some(Tls::default());
    assert!(refused(&cluster).contains("not rediss:// URLs"));
}

#[test]
fn an_invalid_url_is_refused_without_its_password() {
    let error = refused(&Deployment::url("redis://app:hunter2@host:notaport"));
    assert!(error.contains("invalid Redis URL"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn a_cluster_takes_user_and_password_from_its_seeds() {
    let mut deployment = Deployment::url("redis://localhost");
    deployment.nodes = Nodes::Cluster(vec!["redis://a:1".into(), "redis://app:pw@b:2".into()]);
    let endpoint = Endpoint::new(&deployment).expect("endpoint");
    assert!(endpoint.is_cluster());
    assert_eq!(endpoint.user(), "app");
    assert_eq!(
        endpoint.password().map(|p| p.expose().to_owned()),
        Some("pw".into())
    );
}

#[test]
fn sentinels_are_host_and_port() {
    assert_eq!(
        sentinel_addr("10.0.0.5:26379", false).expect("addr"),
        ConnectionAddr::Tcp("10.0.0.5".into(), 26379)
    );
    assert!(matches!(
        sentinel_addr("[::1]:26379", true).expect("addr"),
        ConnectionAddr::TcpTls { host, port: 26379, .. } if host == "::1"
    ));
    let error = sentinel_addr("10.0.0.5", false).expect_err("no port");
    assert!(format!("{error:#}").contains("is not host:port"));
}

#[test]
fn connection_settings_keep_the_user_and_database_but_not_the_password() {
    let settings = redis::RedisConnectionInfo::default()
        .set_db(3)
        .set_username("app")
        .set_password("pw");
    let bare = without_password(&settings);
    assert_eq!(bare.db(), 3);
    assert_eq!(bare.username(), Some("app"));
    assert_eq!(bare.password(), None);
}

#[test]
fn tls_files_are_checked_when_the_endpoint_is_built() {
    let missing = PathBuf::from("/nonexistent/ca.pem");
    let mut deployment = Deployment::url("rediss://localhost");
    deployment.tls = Some(Tls {
        ca_file: Some(missing.clone()),
        ..Tls::default()
    });
    let error = refused(&deployment);
    assert!(
        error.contains("ca_file") && error.contains("/nonexistent/ca.pem"),
        "{error}"
    );
    deployment.tls = Some(Tls {
        cert_file: Some(missing),
        ..Tls::default()
    });
    assert!(refused(&deployment).contains("cert_file is set without key_file"));
}
