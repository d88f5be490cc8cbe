//! Secrets in a pipeline's `config`: a value from the environment or a file reaches the
//! handler, is read again on reload, and is shown nowhere: not in the daemon's log at
//! trace level, the admin API, the dashboard, the metrics or the dead letters.

use std::time::Duration;

use sluice::config::Config;
use sluice_testkit::*;
use toml::Value;

const TOKEN: &str = "secrets-test-token";

fn secret_table(kind: &str, value: &str) -> Value {
    let mut table = toml::Table::new();
    table.insert(kind.to_owned(), Value::String(value.to_owned()));
    Value::Table(table)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// What the handler saw for `key` (the echo plugin outputs it reversed).
async fn seen(con: &mut redis::aio::MultiplexedConnection, key: &str, n: usize) -> String {
    add(con, "IN", &[("action", "config"), ("key", key)]).await;
    wait_len(con, "OUT", n).await;
    let out = entries(con, "OUT").await;
    let reversed = field(&out[n - 1].1, "reversed")
        .expect("reversed")
        .to_owned();
    reversed.chars().rev().collect()
}

/// Everything the admin API shows without and with the token.
async fn admin_pages(port: u16) -> String {
    let http = reqwest::Client::new();
    let mut all = String::new();
    for path in [
        "/",
        "/v1/pipelines",
        "/v1/pipelines/secrets",
        "/metrics",
        "/v1/plugins",
        "/v1/pipelines/secrets/dead",
    ] {
        let text = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("admin answers")
            .text()
            .await
            .expect("text");
        all.push_str(&text);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_handler_is_read_again_on_reload_and_is_shown_nowhere() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let from_env = format!("env-secret-{}", std::process::id());
    let (from_file, rotated) = ("file-secret-one", "file-secret-two");
    std::fs::write(dir.path().join("api.key"), format!("{from_file}\n")).expect("secret file");
    let port = free_port();
    let config = ConfigBuilder::new()
        .admin_set("listen", format!("127.0.0.1:{port}"))
        .pipeline(
            echo("secrets")
                .plugin_config("env_key", secret_table("env", "SLUICE_TEST_SECRET"))
                .plugin_config("file_key", secret_table("file", "api.key")),
        );
    let path = config.write(dir.path());
    let args = [
        "run",
        "-c",
        path.to_str().expect("utf-8"),
        "--redis",
        &redis.url(),
    ];
    let log = dir.path().join("daemon.log");
    let mut daemon = DaemonProcess::start_env(
        &args,
        &log,
        &[
            ("SLUICE_TEST_SECRET", &from_env),
            ("SLUICE_LOG", "trace"),
            ("SLUICE_ADMIN_TOKEN", TOKEN),
        ],
    );
    eventually("the pipeline starts", Duration::from_secs(20), || {
        let started = daemon.log().contains("plugin loaded");
        async move { started.then_some(()) }
    })
    .await;
    assert_eq!(seen(&mut con, "env_key", 1).await, from_env);
    assert_eq!(seen(&mut con, "file_key", 2).await, from_file);
    add(&mut con, "IN", &[("action", "reject")]).await;
    wait_len(&con, "IN:dead", 1).await;
    let shown = admin_pages(port).await;
    // The secret file changes; a reload reads it again.
    std::fs::write(dir.path().join("api.key"), rotated).expect("rotate");
    daemon.signal(libc::SIGHUP);
    eventually(
        "the reloaded pipeline sees the rotated secret",
        Duration::from_secs(20),
        || {
            let mut con = con.clone();
            async move {
                let n = entries(&mut con, "OUT").await.len();
                (seen(&mut con, "file_key", n + 1).await == rotated).then_some(())
            }
        },
    )
    .await;
    daemon.signal(libc::SIGTERM);
    assert!(
        daemon.wait(Duration::from_secs(15)).success(),
        "{}",
        daemon.log()
    );
    let letters = entries(&mut con, "IN:dead").await;
    let text = format!("{shown}\n{letters:?}\n{}", daemon.log());
    for secret in [from_env.as_str(), from_file, rotated] {
        assert!(!text.contains(secret), "{secret:?} is shown:\n{text}");
    }
}

/// A secret that cannot be read refuses the config, naming the key and where it looked,
/// never a value.
#[test]
fn an_unreadable_secret_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with = |value: Value| {
        let text = ConfigBuilder::new()
            .pipeline(echo("p").plugin_config("api_key", value))
            .to_string();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, with_plugins(&text)).expect("write");
        format!("{:#}", Config::load(&path).expect_err("refused"))
    };
    let missing = with(secret_table("env", "SLUICE_TEST_NOT_SET_ANYWHERE"));
    assert!(
        missing.contains("config.api_key")
            && missing.contains("SLUICE_TEST_NOT_SET_ANYWHERE is not set"),
        "{missing}"
    );
    let no_file = with(secret_table("file", "no-such.key"));
    assert!(
        no_file.contains("config.api_key") && no_file.contains("no-such.key"),
        "{no_file}"
    );
    let mut both = toml::Table::new();
    both.insert("env".into(), Value::String("A".into()));
    both.insert("file".into(), Value::String("b".into()));
    let shape = with(Value::Table(both));
    assert!(shape.contains("exactly one key, env or file"), "{shape}");
    let number = with(Value::Integer(3));
    assert!(
        number.contains("an integer is not a config value"),
        "{number}"
    );
    let empty = with(secret_table("env", ""));
    assert!(empty.contains("env must be a non-empty string"), "{empty}");
}
