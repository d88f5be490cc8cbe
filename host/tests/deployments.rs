//! The Redis people run: TLS (with client certificates and a server name), ACL users
//! whose passwords stay secret, a primary with a replica behind `redis-sentinel`, and
//! `WAIT` for replicas. Real servers on free ports; certificates made by each test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use sluice::redis_server::free_port;
use sluice_testkit::*;

// ---------------------------------------------------------------------------------------
// TLS

/// The config `file` with the payments pipeline, written into `dir`.
fn payments_file(dir: &Path, file: ConfigBuilder) -> PathBuf {
    file.pipeline(payments("payments")).write(dir)
}

/// A config file in `dir` for the payments pipeline with this `[redis]` table, written
/// as an operator writes it (the table-driven cases of what a table may not say).
fn with_redis_table(dir: &Path, redis: &str) -> PathBuf {
    config_file(dir, &format!("{redis}\n{}", payments("payments")))
}

/// `[redis]` with `url` and `[redis.tls]` with `ca_file`.
fn tls(url: &str, ca_file: &str) -> ConfigBuilder {
    ConfigBuilder::new().redis_url(url).tls("ca_file", ca_file)
}

/// `[redis]` as the ACL user `sluice` on `redis`, its password in the file `pw`.
fn as_sluice(redis: &RedisServer, password_file: &str) -> ConfigBuilder {
    ConfigBuilder::new()
        .redis_url(format!("redis://sluice@127.0.0.1:{}", redis.port()))
        .redis("password_file", password_file)
}

/// `[redis]` through `sentinel`, for the primary named `master`.
fn through(sentinel: &Sentinel, master: &str) -> ConfigBuilder {
    ConfigBuilder::new()
        .redis("sentinels", vec![format!("127.0.0.1:{}", sentinel.port)])
        .redis("master", master)
}

async fn start_error(config: &Path) -> String {
    let config = sluice::config::Config::load(config).expect("config loads");
    match sluice::start(config, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("the daemon started"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn tls_with_a_client_certificate_carries_every_order() {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let (redis, tls_port) = pki.server(true);
    let mut con = connect(&redis).await;
    let config = payments_file(
        pki.dir(),
        tls(&format!("rediss://localhost:{tls_port}"), "ca.pem")
            .tls("cert_file", "client.pem")
            .tls("key_file", "client.key"),
    );
    let host = TestDaemon::launch(sluice::config::Config::load(&config).expect("config")).await;
    add_orders(&mut con, 200, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 200).await;
    // Every connection of the daemon came in over TLS: none on the plain port but ours.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut con)
        .await
        .expect("CLIENT LIST");
    let plain = clients
        .lines()
        .filter(|l| l.contains(&format!("laddr=127.0.0.1:{}", redis.port())))
        .count();
    assert_eq!(
        plain, 1,
        "only the test's own connection uses the plain port:\n{clients}"
    );
    host.stop().await;
}

#[tokio::test]
async fn tls_checks_the_certificate_against_server_name() {
    // The certificate names a DNS name only; Sluice dials an IP address.
    let pki = Pki::new(&["redis.internal"]);
    let (redis, tls_port) = pki.server(false);
    let mut con = connect(&redis).await;
    let url = format!("rediss://127.0.0.1:{tls_port}");

    let without = payments_file(pki.dir(), tls(&url, "ca.pem"));
    let error = start_error(&without).await;
    assert!(
        error.contains("certificate") && error.contains("server_name"),
        "a name mismatch says so and names the setting: {error}"
    );

    let with = payments_file(
        pki.dir(),
        tls(&url, "ca.pem").tls("server_name", "redis.internal"),
    );
    let host = TestDaemon::launch(sluice::config::Config::load(&with).expect("config")).await;
    add_orders(&mut con, 50, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 50).await;
    host.stop().await;

    // A CA that did not sign the server's certificate is refused, with the fix.
    let untrusted = payments_file(
        pki.dir(),
        tls(&url, "other-ca.pem").tls("server_name", "redis.internal"),
    );
    let error = start_error(&untrusted).await;
    assert!(
        error.contains("certificate") && error.contains("ca_file"),
        "{error}"
    );
}

#[tokio::test]
async fn tls_file_problems_fail_start_up_naming_the_file() {
    let pki = Pki::new(&["localhost"]);
    let (_redis, tls_port) = pki.server(true);
    let dir = pki.dir();
    write_file(dir, "garbage.pem", "this is not a certificate\n");
    let url = format!("rediss://localhost:{tls_port}");
    let cases: [(&str, &[&str]); 6] = [
        (
            "ca_file = \"missing.pem\"",
            &["cannot read [redis.tls] ca_file", "missing.pem"],
        ),
        (
            "ca_file = \"garbage.pem\"",
            &["ca_file", "garbage.pem", "holds no certificate"],
        ),
        (
            "ca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"server.key\"",
            &[
                "server.key",
                "is not the key of the certificate",
                "client.pem",
            ],
        ),
        (
            "ca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"garbage.pem\"",
            &["key_file", "garbage.pem", "no private key"],
        ),
        // The server asks for a client certificate and none is given.
        ("ca_file = \"ca.pem\"", &["client certificate", "cert_file"]),
        // A client certificate from a CA the server does not trust.
        (
            "ca_file = \"ca.pem\"\ncert_file = \"stranger.pem\"\nkey_file = \"stranger.key\"",
            &["does not accept the client certificate", "cert_file"],
        ),
    ];
    for (tls, expected) in cases {
        let config = with_redis_table(
            dir,
            &format!("[redis]\nurl = \"{url}\"\n[redis.tls]\n{tls}\n"),
        );
        let error = start_error(&config).await;
        for part in expected {
            assert!(error.contains(part), "[redis.tls] {tls}: {error}");
        }
    }
    // A plain URL with a TLS table is a config error, before any connection.
    let config = payments_file(dir, tls(&format!("redis://localhost:{tls_port}"), "ca.pem"));
    let error = format!(
        "{:#}",
        sluice::config::Config::load(&config).expect_err("refused")
    );
    assert!(error.contains("rediss://"), "{error}");
}

// ---------------------------------------------------------------------------------------
// Credentials

const PASSWORD: &str = "pw-9d1f7c3a-secret";

async fn acl_user(con: &mut MultiplexedConnection) {
    acl_user_without(con, &[]).await;
}

/// The ACL user `sluice` with every permission but `denied` (`-wait`, `-type`).
async fn acl_user_without(con: &mut MultiplexedConnection, denied: &[&str]) {
    let password = format!(">{PASSWORD}");
    let mut rules = vec![
        "SETUSER",
        "sluice",
        "on",
        password.as_str(),
        "~*",
        "&*",
        "+@all",
    ];
    rules.extend_from_slice(denied);
    let () = redis::cmd("ACL")
        .arg(&rules)
        .query_async(con)
        .await
        .expect("ACL SETUSER");
}
#[tokio::test]
async fn the_password_comes_from_a_file_and_never_shows() {
    let TestContext { redis, mut con } = TestContext::new().await;
    acl_user(&mut con).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("redis-password"), format!("{PASSWORD}\n")).expect("write");
    let admin_port = free_port().expect("port");
    let config = payments_file(
        dir.path(),
        as_sluice(&redis, "redis-password").admin_set("listen", format!("127.0.0.1:{admin_port}")),
    );
    let log = dir.path().join("daemon.log");
    let daemon = DaemonProcess::start_env(
        &["run".as_ref(), "-c".as_ref(), config.as_os_str()],
        &log,
        &[("SLUICE_LOG", "debug")],
    );
    add_orders(&mut con, 100, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 100).await;
    // The daemon is logged in as the ACL user.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut con)
        .await
        .expect("CLIENT LIST");
    assert!(clients.contains("user=sluice"), "{clients}");
    let http = reqwest::Client::new();
    let mut shown = String::new();
    for path in ["/v1/pipelines", "/", "/metrics", "/v1/plugins"] {
        let page = http
            .get(format!("http://127.0.0.1:{admin_port}{path}"))
            .send()
            .await
            .expect("admin API answers");
        shown.push_str(&page.text().await.expect("body"));
    }
    assert!(
        shown.contains("payments"),
        "the pages were read: {shown:.300}"
    );
    assert!(
        !shown.contains(PASSWORD),
        "the admin API shows the password"
    );
    drop(daemon);
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(log.contains("connected to redis"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the log shows the password:\n{log}"
    );
}

#[tokio::test]
async fn the_password_comes_from_the_environment_and_a_wrong_one_is_named_not_shown() {
    let TestContext { redis, mut con } = TestContext::new().await;
    acl_user(&mut con).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The URL holds a (stale) password too: SLUICE_REDIS_PASSWORD wins over it.
    let config = payments_file(
        dir.path(),
        ConfigBuilder::new().redis_url(format!(
            "redis://sluice:stale-url-password@127.0.0.1:{}",
            redis.port()
        )),
    );
    let args = ["run".as_ref(), "-c".as_ref(), config.as_os_str()];
    let log = dir.path().join("good.log");
    let good = DaemonProcess::start_env(
        &args,
        &log,
        &[("SLUICE_REDIS_PASSWORD", PASSWORD), ("SLUICE_LOG", "debug")],
    );
    add_orders(&mut con, 20, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 20).await;
    drop(good);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains(PASSWORD) && !text.contains("stale-url-password"),
        "{text}"
    );

    let wrong = "wrong-pw-51c0e2";
    let log = dir.path().join("wrong.log");
    let mut bad = DaemonProcess::start_env(&args, &log, &[("SLUICE_REDIS_PASSWORD", wrong)]);
    let status = bad.wait(Duration::from_secs(30));
    assert!(!status.success(), "a wrong password fails start-up");
    let text = bad.log();
    assert!(
        text.contains("AuthenticationFailed")
            && text.contains(
                "the user \"sluice\" or its password (from SLUICE_REDIS_PASSWORD) is wrong"
            ),
        "the error names the user and the refusal: {text}"
    );
    assert!(
        !text.contains(wrong),
        "the error shows the password: {text}"
    );
}

#[tokio::test]
async fn password_settings_that_conflict_or_are_missing_are_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "url = \"redis://u:inline@127.0.0.1:1\"\npassword_file = \"pw\"",
            "keep one",
        ),
        (
            "url = \"redis://127.0.0.1:1\"\nsentinels = [\"127.0.0.1:2\"]\nmaster = \"m\"",
            "give one",
        ),
        ("sentinels = [\"127.0.0.1:2\"]", "without master"),
        ("master = \"m\"", "without sentinels"),
        ("wait_replicas = 1", "no replicas"),
        (
            "url = \"redis://127.0.0.1:1\"\nwait_replicas = 1\nwait_timeout = \"0s\"",
            "wait_timeout",
        ),
        (
            "url = \"redis://127.0.0.1:1\"\nwait_replicas = 1\nwait_timeout = \"18446744073709551615s\"",
            "at most 1h",
        ),
        // A unix socket URL's password is a query parameter.
        (
            "url = \"unix:///tmp/r.sock?pass=inline\"\npassword_file = \"pw\"",
            "keep one",
        ),
        ("username = \"sluice\"", "there is none"),
        ("password_file = \"pw\"", "there is none"),
        (
            "sentinels = [\"127.0.0.1\"]\nmaster = \"m\"",
            "not host:port",
        ),
        (
            "url = \"rediss://127.0.0.1:1\"\n[redis.tls]\nserver_name = \"not a name!\"",
            "server_name",
        ),
    ];
    for (redis, expected) in cases {
        let config = with_redis_table(dir.path(), &format!("[redis]\n{redis}\n"));
        let error = format!(
            "{:#}",
            sluice::config::Config::load(&config).expect_err("refused")
        );
        assert!(error.contains(expected), "[redis] {redis}: {error}");
        assert!(!error.contains("inline"), "{error}");
    }
    // A password file that cannot be read fails start-up, naming it.
    let config = payments_file(
        dir.path(),
        ConfigBuilder::new()
            .redis_url("redis://sluice@127.0.0.1:1")
            .redis("password_file", "no-such-file"),
    );
    let error = start_error(&config).await;
    assert!(
        error.contains("password_file") && error.contains("no-such-file"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------
// Replicas: WAIT and Sentinel

async fn pipeline_state(admin: std::net::SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{admin}/v1/pipelines/payments"))
        .await
        .expect("status")
        .json::<serde_json::Value>()
        .await
        .expect("json")
}

#[tokio::test]
async fn wait_replicas_holds_the_pipeline_until_a_replica_has_each_commit() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let replica = replica_of(&redis).await;
    let config = payments("payments").batch(10).config_with(
        ConfigBuilder::new()
            .admin()
            .redis_url(redis.url())
            .redis("wait_replicas", 1)
            .redis_duration("wait_timeout", Duration::from_millis(200)),
    );
    let host = TestDaemon::launch(config).await;
    add_orders(&mut con, 50, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 50).await;

    // The replica stops answering: the commit in flight stands, nothing after it.
    replica.signal(libc::SIGSTOP);
    produce_orders(con.clone(), 50, 50, Duration::ZERO).await;
    let admin = host.admin();
    eventually(
        "the pipeline stalls",
        Duration::from_secs(10),
        || async move { (pipeline_state(admin).await["state"] == "error").then_some(()) },
    )
    .await;
    let stalled = len(&mut con, "PAYMENTS_STREAM").await;
    stays(
        "nothing is committed while no replica acknowledges",
        Duration::from_secs(1),
        || {
            let mut con = con.clone();
            async move { len(&mut con, "PAYMENTS_STREAM").await == stalled }
        },
    )
    .await;
    assert!(
        stalled <= 60,
        "at most one batch past the replica: {stalled}"
    );
    let state = pipeline_state(host.admin()).await;
    assert_eq!(state["state"], "error", "{state}");
    assert!(
        state["error"]
            .as_str()
            .unwrap_or_default()
            .contains("wait_replicas"),
        "{state}"
    );

    // It answers again: everything is handled, once.
    replica.signal(libc::SIGCONT);
    let tally = wait_payments_once(&con, Duration::from_secs(30)).await;
    assert_eq!(tally.out, 100);
    eventually("the pipeline runs again", Duration::from_secs(10), || {
        let admin = host.admin();
        async move { (pipeline_state(admin).await["state"] == "running").then_some(()) }
    })
    .await;
    host.stop().await;
}

#[tokio::test]
async fn sentinel_failover_keeps_every_order_exactly_once() {
    const ORDERS: usize = 20_000;
    let mut primary = RedisServer::start().expect("primary starts");
    let replica = replica_of(&primary).await;
    let sentinel = Sentinel::start(&primary).await;
    let mut con = connect(&primary).await;
    // All orders are in before the crash, and on the replica: the test is about what
    // Sluice commits, not about orders the producer loses.
    produce_orders(con.clone(), ORDERS, 1_000, Duration::ZERO).await;
    let synced: u32 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query_async(&mut con)
        .await
        .expect("WAIT");
    assert_eq!(synced, 1);

    let config = payments("payments")
        .batch(20)
        .claim_idle(Duration::from_secs(5))
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(2))
        .config_with(through(&sentinel, "mymaster"));
    let host = TestDaemon::launch(config).await;
    eventually("payments flow", Duration::from_secs(60), || {
        let mut con = con.clone();
        async move { (len(&mut con, "PAYMENTS_STREAM").await >= 3_000).then_some(()) }
    })
    .await;
    // Replication is asynchronous: the replica loses its link (frozen, then cut: what
    // the kernel buffered still reaches it), the primary takes more commits, and
    // crashes. Those commits are lost with it, outputs and acknowledgements together.
    replica.signal(libc::SIGSTOP);
    let () = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "replica"])
        .query_async(&mut con)
        .await
        .map(|_: i64| ())
        .expect("CLIENT KILL TYPE replica");
    let cut = len(&mut con, "PAYMENTS_STREAM").await;
    eventually(
        "the primary takes commits its replica does not get",
        Duration::from_secs(20),
        || {
            let mut con = con.clone();
            async move { (len(&mut con, "PAYMENTS_STREAM").await >= cut + 100).then_some(()) }
        },
    )
    .await;
    let at_crash = len(&mut con, "PAYMENTS_STREAM").await;
    primary.kill();
    replica.signal(libc::SIGCONT);
    let crashed = Instant::now();

    // Sentinel promotes the replica, and closes its clients' connections as it does.
    eventually(
        "the replica is promoted",
        Duration::from_secs(60),
        || async {
            let mut con = connect(&replica).await;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut con).await.ok()?;
            (role.first() == Some(&redis::Value::BulkString(b"master".to_vec()))).then_some(())
        },
    )
    .await;
    let after = connect(&replica).await;
    let kept = len(&mut after.clone(), "PAYMENTS_STREAM").await;
    assert!(
        kept < at_crash,
        "the crash lost commits ({at_crash} payments on the old primary, {kept} on the new one)"
    );
    let tally = wait_payments_once(&after, Duration::from_secs(120)).await;
    println!(
        "sentinel failover: {at_crash} payments on the primary at the crash, {kept} of them on the promoted replica ({} lost, delivered again); all {} in {:.1?} after the crash; tally in={} out={} duplicates={} missing={} pending={}",
        at_crash - kept,
        tally.out,
        crashed.elapsed(),
        tally.input,
        tally.out,
        tally.duplicates,
        tally.missing,
        tally.pending
    );
    assert_eq!(tally.input, ORDERS);
    assert_eq!(tally.out, ORDERS);
    host.stop().await;
}

#[tokio::test]
async fn a_sentinel_switchover_is_followed_at_once() {
    let primary = RedisServer::start().expect("primary starts");
    let replica = replica_of(&primary).await;
    let sentinel = Sentinel::start(&primary).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = payments_file(dir.path(), through(&sentinel, "mymaster"));
    let daemon = DaemonProcess::start(
        &["run".as_ref(), "-c".as_ref(), config.as_os_str()],
        &dir.path().join("daemon.log"),
    );
    let mut con = connect(&primary).await;
    add_orders(&mut con, 100, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 100).await;

    // A planned switch: both nodes stay up, the replica becomes the primary.
    let mut sentinel_con = sentinel.connect().await;
    let () = redis::cmd("SENTINEL")
        .arg(&["FAILOVER", "mymaster"])
        .query_async(&mut sentinel_con)
        .await
        .expect("SENTINEL FAILOVER");
    eventually(
        "the daemon hears +switch-master",
        Duration::from_secs(30),
        || async {
            daemon
                .log()
                .contains("sentinel: the primary changed")
                .then_some(())
        },
    )
    .await;
    eventually(
        "the old primary is a replica",
        Duration::from_secs(30),
        || async {
            let mut con = connect(&primary).await;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut con).await.ok()?;
            (role.first() == Some(&redis::Value::BulkString(b"slave".to_vec()))).then_some(())
        },
    )
    .await;
    let con = connect(&replica).await;
    produce_orders(con.clone(), 100, 100, Duration::ZERO).await;
    let tally = wait_payments_once(&con, Duration::from_secs(60)).await;
    assert_eq!(tally.out, 200, "{}", daemon.log());
}

#[tokio::test]
async fn a_wrong_password_names_where_it_came_from() {
    let TestContext { redis, mut con } = TestContext::new().await;
    acl_user(&mut con).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pw"), "not-the-password\n").expect("write");
    let config = payments_file(dir.path(), as_sluice(&redis, "pw"));
    let error = start_error(&config).await;
    assert!(
        error.contains("password_file") && !error.contains("not-the-password"),
        "{error}"
    );
}

#[tokio::test]
async fn sigterm_ends_a_start_up_that_waits_for_redis() {
    let TestContext { redis, .. } = TestContext::new().await;
    // A server that accepts connections and never answers.
    redis.signal(libc::SIGSTOP);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = payments_file(dir.path(), ConfigBuilder::new().redis_url(redis.url()));
    let mut daemon = DaemonProcess::start(
        &["run".as_ref(), "-c".as_ref(), config.as_os_str()],
        &dir.path().join("daemon.log"),
    );
    eventually(
        "the daemon waits on its connection to Redis",
        Duration::from_secs(10),
        || {
            let connected = daemon.is_connected_to(redis.port());
            async move { connected.then_some(()) }
        },
    )
    .await;
    let asked = Instant::now();
    daemon.signal(libc::SIGTERM);
    daemon.wait(Duration::from_secs(5));
    println!("exited {:?} after SIGTERM", asked.elapsed());
    redis.signal(libc::SIGCONT);
}

#[tokio::test]
async fn wait_replicas_needs_the_wait_command_and_a_wait_refused_later_duplicates_nothing() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let _replica = replica_of(&redis).await;
    acl_user_without(&mut con, &["-wait"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pw"), PASSWORD).expect("write");
    let config = payments_file(
        dir.path(),
        as_sluice(&redis, "pw")
            .redis("wait_replicas", 1)
            .redis_duration("wait_timeout", Duration::from_millis(200)),
    );
    let error = start_error(&config).await;
    assert!(error.contains("ACL SETUSER sluice +wait"), "{error}");

    // Granted at start, refused later: commits that went through are not sent again.
    let admin_con = con.clone();
    let grant = |rule: &'static str| {
        let mut con = admin_con.clone();
        async move {
            let () = redis::cmd("ACL")
                .arg(&["SETUSER", "sluice", rule])
                .query_async(&mut con)
                .await
                .expect("ACL SETUSER");
        }
    };
    grant("+wait").await;
    let host = TestDaemon::launch(sluice::config::Config::load(&config).expect("config")).await;
    add_orders(&mut con, 10, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 10).await;
    grant("-wait").await;
    produce_orders(con.clone(), 30, 10, Duration::from_millis(100)).await;
    stays(
        "no duplicate, and nothing more is handled while WAIT is refused",
        Duration::from_secs(2),
        || {
            let mut con = con.clone();
            async move {
                let tally = Tally::take(
                    &mut con,
                    "ORDERS_STREAM",
                    "ORDERS_CON_GROUP",
                    "PAYMENTS_STREAM",
                    "orderId",
                )
                .await;
                println!("while WAIT is refused: {tally}");
                tally.duplicates == 0 && tally.out < 40
            }
        },
    )
    .await;
    grant("+wait").await;
    let tally = wait_payments_once(&con, Duration::from_secs(30)).await;
    assert_eq!(tally.out, 40);
    host.stop().await;
}

#[tokio::test]
async fn an_unknown_master_name_says_to_check_master() {
    let primary = RedisServer::start().expect("primary starts");
    let _replica = replica_of(&primary).await;
    let sentinel = Sentinel::start(&primary).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = payments_file(dir.path(), through(&sentinel, "no-such-master"));
    let error = start_error(&config).await;
    assert!(error.contains("[redis] master"), "{error}");
}

#[tokio::test]
async fn a_user_without_a_password_is_refused_instead_of_running_as_default() {
    let TestContext { redis, mut con } = TestContext::new().await;
    acl_user(&mut con).await;
    let dir = tempfile::tempdir().expect("tempdir");
    for redis_table in [
        format!("url = \"redis://sluice@127.0.0.1:{}\"", redis.port()),
        format!(
            "url = \"redis://127.0.0.1:{}\"\nusername = \"sluice\"",
            redis.port()
        ),
    ] {
        let config = with_redis_table(dir.path(), &format!("[redis]\n{redis_table}\n"));
        let error = start_error(&config).await;
        assert!(
            error.contains("the ACL user \"sluice\" has no password"),
            "{redis_table}: {error}"
        );
    }
}

#[tokio::test]
async fn a_rotated_password_file_is_read_again_on_reconnection() {
    let TestContext { redis, mut con } = TestContext::new().await;
    acl_user(&mut con).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, PASSWORD).expect("write");
    let config = payments_file(dir.path(), as_sluice(&redis, "pw"));
    let host = TestDaemon::launch(sluice::config::Config::load(&config).expect("config")).await;
    add_orders(&mut con, 10, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 10).await;
    // The operator rotates the password: on the server, in the file, and the server
    // closes the user's connections.
    let rotated = "rotated-pw-0b1e";
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "sluice", "resetpass", &format!(">{rotated}")])
        .query_async(&mut con)
        .await
        .expect("ACL SETUSER");
    std::fs::write(&file, format!("{rotated}\n")).expect("write");
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "USER", "sluice"])
        .query_async(&mut con)
        .await
        .expect("CLIENT KILL");
    produce_orders(con.clone(), 10, 10, Duration::ZERO).await;
    let tally = wait_payments_once(&con, Duration::from_secs(30)).await;
    assert_eq!(tally.out, 20);
    host.stop().await;
}

#[tokio::test]
async fn a_command_a_script_may_not_run_is_a_permission_fault() {
    let TestContext { redis, mut con } = TestContext::new().await;
    acl_user_without(&mut con, &["-type"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = payments_file(
        dir.path(),
        ConfigBuilder::new().admin().redis_url(format!(
            "redis://sluice:{PASSWORD}@127.0.0.1:{}",
            redis.port()
        )),
    );
    let host = TestDaemon::launch(sluice::config::Config::load(&config).expect("config")).await;
    add_orders(&mut con, 5, 0).await;
    let admin = host.admin();
    let state = eventually(
        "the pipeline shows the fault",
        Duration::from_secs(20),
        || async move {
            let state = pipeline_state(admin).await;
            (state["state"] == "error").then_some(state)
        },
    )
    .await;
    let error = state["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("NOPERM"), "{error}");
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "sluice", "+type"])
        .query_async(&mut con)
        .await
        .expect("ACL SETUSER");
    let tally = wait_payments_once(&con, Duration::from_secs(30)).await;
    assert_eq!(tally.out, 5);
    host.stop().await;
}
