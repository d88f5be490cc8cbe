//! A Redis that can drop data on its own: a `maxmemory-policy` other than `noeviction`
//! (a WARN at start-up naming it, a warning with every pipeline in the admin API while
//! readiness stays 200, a gauge), an ACL user that may not read the settings (said once),
//! no persistence (an INFO line, none for the private server). Real redis-servers, the
//! daemon in-process with a real HTTP client, and the real binary for its log.

use std::time::Duration;

use sluice_testkit::*;

/// Two echo pipelines with the admin API on.
fn two_pipelines() -> sluice::config::Config {
    ConfigBuilder::new()
        .admin()
        .pipeline(echo("settings-a"))
        .pipeline(echo("settings-b").reading("IN2", "G2").writing(&["OUT2"]))
        .config()
}

async fn get_json(base: &str, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{base}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Each pipeline's `warnings` in `GET /v1/pipelines` (failing if a view has none).
async fn warnings(base: &str) -> Vec<Vec<String>> {
    let (status, views) = get_json(base, "/v1/pipelines").await;
    assert_eq!(status, 200, "{views}");
    let views = views.as_array().expect("a list").clone();
    assert!(!views.is_empty(), "no pipelines");
    views
        .iter()
        .map(|v| {
            let list = v["warnings"].as_array();
            let list = list.unwrap_or_else(|| panic!("a view without warnings: {v}"));
            list.iter()
                .map(|w| w.as_str().expect("text").to_owned())
                .collect()
        })
        .collect()
}

/// `metric{redis="...:port"}` in `/metrics`, if it is there.
async fn redis_gauge(base: &str, metric: &str, port: u16) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&format!(":{port}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// How many lines of `log` contain every one of `words`.
fn lines_with(log: &str, words: &[&str]) -> usize {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// The real binary against `url`, with `config`; its log once every pipeline started.
fn run_until_started(dir: &tempfile::TempDir, config: &str, url: Option<&str>) -> String {
    let path = config_file(dir, config);
    let mut args: Vec<std::ffi::OsString> = vec!["run".into(), "-c".into(), path.into()];
    if let Some(url) = url {
        args.extend(["--redis".into(), url.into()]);
    }
    let mut daemon = DaemonProcess::start(&args, &dir.path().join("sluice.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !daemon.log().contains("entries go to") {
        assert!(daemon.is_running(), "the daemon ended: {}", daemon.log());
        assert!(
            std::time::Instant::now() < deadline,
            "no pipeline started in 20 s: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait(Duration::from_secs(15));
    let log = daemon.log();
    assert!(status.success(), "{log}");
    log
}

/// `allkeys-lru`: every pipeline's view carries a warning naming `maxmemory-policy`, its
/// value and `noeviction`; `/readyz` stays 200; the gauge is 0. Against a `noeviction`
/// server the field is there and empty, and the gauge is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_redis_is_a_warning_with_every_pipeline() {
    tls_provider();
    let lru = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]).expect("redis");
    let host = TestDaemon::start(&lru, two_pipelines()).await;
    let base = format!("http://{}", host.admin());
    let all = warnings(&base).await;
    assert_eq!(all.len(), 2, "{all:?}");
    for list in &all {
        assert!(
            list.iter()
                .any(|w| w.contains("maxmemory-policy allkeys-lru") && w.contains("noeviction")),
            "{all:?}"
        );
    }
    let (ready, body) = get_json(&base, "/readyz").await;
    assert_eq!(
        ready, 200,
        "a warning does not make the daemon unready: {body}"
    );
    let gauge = redis_gauge(&base, "sluice_redis_eviction_policy_safe", lru.port()).await;
    assert_eq!(gauge, Some(0.0));
    host.stop().await;

    let safe = RedisServer::start().expect("redis");
    let host = TestDaemon::start(&safe, two_pipelines()).await;
    let base = format!("http://{}", host.admin());
    assert_eq!(warnings(&base).await, [Vec::<String>::new(), Vec::new()]);
    let gauge = redis_gauge(&base, "sluice_redis_eviction_policy_safe", safe.port()).await;
    assert_eq!(gauge, Some(1.0));
    host.stop().await;
}

/// The WARN at start-up names the policy, its value and `noeviction`, once; the INFO of
/// a server with no persistence (the test servers keep nothing), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_redis_is_logged_at_start_up() {
    let lru = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]).expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = run_until_started(&dir, &echo("logged").to_string(), Some(&lru.url()));
    let warned = lines_with(
        &log,
        &["WARN", "maxmemory-policy allkeys-lru", "not noeviction"],
    );
    assert_eq!(warned, 1, "{log}");
    assert_eq!(
        lines_with(&log, &["INFO", "keeps nothing on disk"]),
        1,
        "{log}"
    );
}

/// The private server of a config without `[redis] url` keeps nothing by design: no
/// INFO line of it (its start-up line says its data is gone at exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_server_is_not_said_to_keep_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = run_until_started(&dir, &echo("private").to_string(), None);
    assert!(log.contains("started a private server"), "{log}");
    assert_eq!(lines_with(&log, &["keeps nothing on disk"]), 0, "{log}");
    assert_eq!(lines_with(&log, &["maxmemory-policy"]), 0, "{log}");
}

/// An ACL user without `+config|get`: the daemon runs, says once that the policy could
/// not be checked, shows no warning, and the gauge is -1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_config_get_is_told_once_it_cannot_be_checked() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "sluice",
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            "-config|get",
        ])
        .query_async(&mut con)
        .await
        .expect("ACL SETUSER");
    let url = format!("redis://sluice:pw@127.0.0.1:{}", redis.port());

    let host = TestDaemon::start_at(&url, two_pipelines()).await;
    let base = format!("http://{}", host.admin());
    assert_eq!(warnings(&base).await, [Vec::<String>::new(), Vec::new()]);
    let gauge = redis_gauge(&base, "sluice_redis_eviction_policy_safe", redis.port()).await;
    assert_eq!(gauge, Some(-1.0));
    host.stop().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let log = run_until_started(&dir, &echo("unchecked").to_string(), Some(&url));
    let told = lines_with(&log, &["WARN", "maxmemory-policy could not be checked"]);
    assert_eq!(told, 1, "{log}");
    assert!(log.contains("+config|get"), "{log}");
}

/// The dashboard, in real headless Chromium, shows the warning the API gives, once, on
/// top; a screenshot goes to `target/test-artifacts/dashboard-warning.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_warning() {
    tls_provider();
    let lru = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]).expect("redis");
    let host = TestDaemon::start(&lru, two_pipelines()).await;
    let base = format!("http://{}", host.admin());
    let artifacts = workspace().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("dashboard-warning.png");
    let _ = std::fs::remove_file(&screenshot);
    let _turn = browser_turn().await;
    let output = browser("dashboard-warning.mjs")
        .args([&base, "maxmemory-policy allkeys-lru"])
        .arg(&screenshot)
        .output()
        .await
        .expect("run node (scripts/setup.sh installs Chromium and playwright-core)");
    println!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the browser check failed");
    assert!(screenshot.is_file());
    host.stop().await;
}
