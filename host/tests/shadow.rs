//! Shadow runs through the admin API, as an operator deploys a new handler version: a
//! candidate attached to a live pipeline under load changes no output, reports its
//! differences, and is promoted (and reverted) without losing or duplicating an entry.
//! A real daemon and redis-server, real components, reqwest.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use sluice_testkit::*;

const TOKEN: &str = "shadow-token";

/// A daemon with the payments pipeline on a copy of `plugins/payments` (a promotion
/// writes the plugin file) and its admin API; the copy's directory.
async fn daemon(redis: &RedisServer) -> (TestDaemon, tempfile::TempDir) {
    daemon_running(redis, "payments", payments("payments")).await
}

/// A daemon with `pipeline` (named `payments`, for the paths here) on a copy of
/// `plugins/NAME` and the admin API; the copy's directory.
async fn daemon_running(
    redis: &RedisServer,
    name: &str,
    pipeline: PipelineBuilder,
) -> (TestDaemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join(format!("{name}.wasm"));
    std::fs::copy(plugin_wasm(name), &plugin).expect("copy the plugin");
    let mut config = ConfigBuilder::new()
        .admin_set("listen", "127.0.0.1:0")
        .pipeline(pipeline.plugin(plugin.display()))
        .config();
    config.admin.as_mut().expect("[admin]").token = Some(TOKEN.to_owned());
    (TestDaemon::start(redis, config).await, dir)
}

fn url(host: &TestDaemon, path: &str) -> String {
    format!("http://{}/v1/pipelines/payments{path}", host.admin())
}

async fn call(
    method: reqwest::Method,
    host: &TestDaemon,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url(host, path))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.expect("the admin API answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `n` orders numbered from `from`, sent in one round trip.
async fn orders(con: &mut redis::aio::MultiplexedConnection, from: usize, n: usize) {
    let orders: Vec<Order> = (from..from + n).map(Order::seed).collect();
    sluice_testkit::orders::send(con, "ORDERS_STREAM", &orders).await;
}

/// The payments written: paidAmount by orderId, each order once.
async fn payments_paid(con: &mut redis::aio::MultiplexedConnection) -> Vec<(String, String)> {
    entries(con, "PAYMENTS_STREAM")
        .await
        .into_iter()
        .map(|(_, f)| {
            let get = |n: &str| field(&f, n).unwrap_or_default().to_owned();
            (get("orderId"), get("paidAmount"))
        })
        .collect()
}

#[tokio::test]
async fn a_shadow_reports_differences_changes_nothing_and_is_promoted_exactly_once() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, dir) = daemon(&redis).await;
    let original = std::fs::read(dir.path().join("payments.wasm")).expect("plugin");
    orders(&mut con, 0, 200).await;
    wait_len(&con, "PAYMENTS_STREAM", 200).await;

    let candidate = std::fs::read(plugin_wasm("payments_rounding")).expect("candidate");
    let (status, attached) = call(reqwest::Method::PUT, &host, "/shadow", Some(candidate)).await;
    assert_eq!(status, 200, "{attached}");
    // Under load: orders keep coming while the candidate shadows the live plugin.
    for round in 0..10 {
        orders(&mut con, 200 + round * 100, 100).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_len(&con, "PAYMENTS_STREAM", 1_200).await;
    let shadow = eventually(
        "the candidate compares entries",
        Duration::from_secs(20),
        || async {
            let (_, shadow) = call(reqwest::Method::GET, &host, "/shadow", None).await;
            (shadow["compared"].as_u64()? > 0).then_some(shadow)
        },
    )
    .await;
    assert_eq!(shadow["candidate"], attached["candidate"]);
    let compared = shadow["compared"].as_u64().expect("compared");
    let differed = shadow["differed"].as_u64().expect("differed");
    assert_eq!(shadow["agreed"].as_u64(), Some(compared - differed));
    assert!(
        differed > 0 && shadow["by_kind"]["fields"].as_u64() == Some(differed),
        "{shadow}"
    );
    let last = &shadow["last_differences"][0];
    assert!(
        last["id"].as_str().is_some_and(|id| id.contains('-')),
        "{shadow}"
    );
    let lines: Vec<&str> = last["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("+ output 0 paidAmount:") && l.ends_with(".00\"")),
        "{lines:?}"
    );
    // The shadow changed no output: every payment so far pays the amount ordered.
    for (id, paid) in payments_paid(&mut con).await {
        let i: usize = id[id.len() - 8..].parse().expect("seed order number");
        assert_eq!(
            paid,
            format!("{}.{:02}", 100 + i % 900, i % 100),
            "order {id}"
        );
    }

    // Promote while orders flow: each order is paid once, the later ones rounded.
    orders(&mut con, 1_200, 300).await;
    let (status, promoted) = call(reqwest::Method::POST, &host, "/shadow/promote", None).await;
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(promoted["digest"], attached["candidate"]);
    orders(&mut con, 1_500, 300).await;
    wait_len(&con, "PAYMENTS_STREAM", 1_800).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paid = payments_paid(&mut con).await;
    let ids: HashSet<&str> = paid.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        (paid.len(), ids.len()),
        (1_800, 1_800),
        "each order paid exactly once"
    );
    assert_eq!(
        pending(&mut con, "ORDERS_STREAM", "ORDERS_CON_GROUP").await,
        0
    );
    let last = &paid[paid.len() - 1];
    assert!(
        last.1.ends_with(".00"),
        "the promoted version pays: {last:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("payments.wasm")).expect("plugin"),
        std::fs::read(plugin_wasm("payments_rounding")).expect("candidate"),
        "the promoted version is stored over the plugin file"
    );
    let (status, _) = call(reqwest::Method::GET, &host, "/shadow", None).await;
    assert_eq!(status, 404, "a promotion detaches the shadow");

    // One call back: the replaced version serves (and is the file) again; once only.
    let (status, reverted) = call(reqwest::Method::POST, &host, "/shadow/revert", None).await;
    assert_eq!(
        (status, &reverted["replaced"]),
        (200, &attached["candidate"]),
        "{reverted}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("payments.wasm")).expect("plugin"),
        original
    );
    let (status, again) = call(reqwest::Method::POST, &host, "/shadow/revert", None).await;
    assert_eq!(status, 409, "{again}");

    // A revert never undoes a later deploy: promote again, deploy another version, and
    // the revert is refused with the running plugin untouched.
    let candidate = std::fs::read(plugin_wasm("payments_rounding")).expect("candidate");
    let (status, _) = call(reqwest::Method::PUT, &host, "/shadow", Some(candidate)).await;
    assert_eq!(status, 200);
    let (status, _) = call(reqwest::Method::POST, &host, "/shadow/promote", None).await;
    assert_eq!(status, 200);
    let later = std::fs::read(plugin_wasm("payments_tag_a")).expect("another version");
    let deployed = reqwest::Client::new()
        .put(format!("http://{}/v1/plugins/payments", host.admin()))
        .bearer_auth(TOKEN)
        .body(later.clone())
        .send()
        .await
        .expect("deploy");
    assert_eq!(deployed.status(), 200);
    let (status, refused) = call(reqwest::Method::POST, &host, "/shadow/revert", None).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused.to_string().contains("a later deploy replaced it"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("payments.wasm")).expect("plugin"),
        later
    );

    // Both changes are incidents, with the counts.
    let (_, pipeline) = call(reqwest::Method::GET, &host, "", None).await;
    let incidents = pipeline.to_string();
    for said in [
        "shadow attached",
        "shadow promoted",
        "agreed",
        "promotion reverted",
    ] {
        assert!(incidents.contains(said), "{said}: {incidents}");
    }
    host.stop().await;
}

/// A candidate that costs more than its share of the handler time is sampled down and
/// says so; detaching it is a rollback, recorded.
#[tokio::test]
async fn a_costly_candidate_is_sampled_down_and_detached() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, _dir) = daemon(&redis).await;
    // The same handler in JavaScript: the same outputs, ~20x the time per entry.
    let candidate = std::fs::read(plugin_wasm("payments_js")).expect("candidate");
    for bad in ["abc", "0", "5"] {
        let path = format!("/shadow?share={bad}");
        let (status, said) =
            call(reqwest::Method::PUT, &host, &path, Some(candidate.clone())).await;
        assert_eq!(status, 400, "share={bad}: {said}");
        assert!(said.to_string().contains("share"), "{said}");
    }
    let (status, _) = call(
        reqwest::Method::PUT,
        &host,
        "/shadow?share=0.5",
        Some(candidate),
    )
    .await;
    assert_eq!(status, 200);
    for round in 0..20 {
        orders(&mut con, round * 200, 200).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_len(&con, "PAYMENTS_STREAM", 4_000).await;
    let shadow = eventually(
        "the candidate is sampled down",
        Duration::from_secs(30),
        || async {
            let (_, shadow) = call(reqwest::Method::GET, &host, "/shadow", None).await;
            (shadow["compared"].as_u64()? > 0 && shadow["sampled"] == true).then_some(shadow)
        },
    )
    .await;
    assert!(shadow["skipped"].as_u64() > Some(0), "{shadow}");
    assert_eq!(
        shadow["differed"], 0,
        "the same handler in another language: {shadow}"
    );
    let (status, detached) = call(reqwest::Method::DELETE, &host, "/shadow", None).await;
    assert_eq!(status, 200, "{detached}");
    let (status, _) = call(reqwest::Method::GET, &host, "/shadow", None).await;
    assert_eq!(status, 404);
    let (_, pipeline) = call(reqwest::Method::GET, &host, "", None).await;
    assert!(
        pipeline
            .to_string()
            .contains("shadow detached (rolled back)"),
        "{pipeline}"
    );
    host.stop().await;
}

/// Every shadow path needs the token; a bad candidate changes nothing and says why.
#[tokio::test]
async fn every_shadow_path_is_authenticated_and_bad_candidates_are_refused() {
    let TestContext { redis, .. } = TestContext::new().await;
    let (host, _dir) = daemon(&redis).await;
    let client = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::PUT, "/shadow"),
        (reqwest::Method::GET, "/shadow"),
        (reqwest::Method::DELETE, "/shadow"),
        (reqwest::Method::POST, "/shadow/promote"),
        (reqwest::Method::POST, "/shadow/revert"),
    ] {
        for token in [None, Some("wrong")] {
            let mut request = client.request(method.clone(), url(&host, path)).body("x");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let status = request.send().await.expect("answer").status().as_u16();
            assert!(
                status == 401 || status == 403,
                "{method} {path} with {token:?}: {status}"
            );
        }
    }
    let (status, body) = call(
        reqwest::Method::PUT,
        &host,
        "/shadow",
        Some(b"not wasm".to_vec()),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = call(reqwest::Method::PUT, &host, "/shadow", Some(Vec::new())).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(reqwest::Method::POST, &host, "/shadow/promote", None).await;
    assert_eq!(status, 404, "nothing attached: {body}");
    assert!(
        body.to_string().contains("no candidate is attached"),
        "{body}"
    );
    let other = format!("http://{}/v1/pipelines/nope/shadow", host.admin());
    let status = client
        .get(other)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status.as_u16(), 404);
    host.stop().await;
}

/// The dashboard in headless Chromium: the shadow panel only with the token, its counts
/// and a difference, and "promote" making the candidate the running plugin. Screenshot:
/// `target/test-artifacts/dashboard-shadow.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_shadow_and_promotes_it() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, _dir) = daemon(&redis).await;
    let candidate = std::fs::read(plugin_wasm("payments_rounding")).expect("candidate");
    let (status, attached) = call(reqwest::Method::PUT, &host, "/shadow", Some(candidate)).await;
    assert_eq!(status, 200);
    orders(&mut con, 0, 300).await;
    wait_len(&con, "PAYMENTS_STREAM", 300).await;
    let artifacts = workspace().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("dashboard-shadow.png");
    let base = format!("http://{}", host.admin());
    let _turn = browser_turn().await;
    let out = browser("dashboard-shadow.mjs")
        .args([base.as_str(), TOKEN, "payments"])
        .arg(&screenshot)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), out)
        .await
        .expect("the browser check ends within 90 s")
        .expect("run node (scripts/setup.sh installs Chromium and playwright-core)");
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser check failed");
    let plugins = format!("http://{}/v1/plugins/payments", host.admin());
    let running: Value = reqwest::get(plugins)
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        running["digest"], attached["candidate"],
        "promoted from the page"
    );
    host.shutdown.cancel();
}

/// A promotion puts back what ran, not what a file changed on disk holds; concurrent
/// promotions promote once; a stateful candidate that is the live plugin agrees with it
/// on every entry (it sees what the live call saw, not what its commit then wrote).
#[tokio::test]
async fn promotions_are_one_at_a_time_and_keep_what_ran() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, dir) = daemon(&redis).await;
    let file = dir.path().join("payments.wasm");
    let original = std::fs::read(&file).expect("plugin");
    let candidate = std::fs::read(plugin_wasm("payments_rounding")).expect("candidate");
    let (status, _) = call(
        reqwest::Method::PUT,
        &host,
        "/shadow",
        Some(candidate.clone()),
    )
    .await;
    assert_eq!(status, 200);
    // The file changed on disk (not reloaded): a promotion would keep the wrong version.
    std::fs::write(
        &file,
        std::fs::read(plugin_wasm("payments_tag_a")).expect("tag a"),
    )
    .expect("write");
    let (status, said) = call(reqwest::Method::POST, &host, "/shadow/promote", None).await;
    assert_eq!(status, 409, "{said}");
    assert!(
        said.to_string()
            .contains("no longer holds the running version"),
        "{said}"
    );
    std::fs::write(&file, &original).expect("write back");

    let promotes = (0..6).map(|_| call(reqwest::Method::POST, &host, "/shadow/promote", None));
    let answers = futures::future::join_all(promotes).await;
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == 200 || *status == 404),
        "{answers:?}"
    );
    let (status, reverted) = call(reqwest::Method::POST, &host, "/shadow/revert", None).await;
    assert_eq!(status, 200, "{reverted}");
    assert_eq!(
        std::fs::read(&file).expect("plugin"),
        original,
        "what ran is back"
    );
    orders(&mut con, 0, 20).await;
    wait_len(&con, "PAYMENTS_STREAM", 20).await;
    for (id, paid) in payments_paid(&mut con).await {
        assert!(
            !paid.ends_with(".00") || id.ends_with("00"),
            "{id} paid {paid}: the reverted version runs"
        );
    }
    host.stop().await;
}

#[tokio::test]
async fn a_stateful_candidate_sees_what_the_live_call_saw() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let stateful = echo("payments").state(&["k:"]);
    let (host, _dir) = daemon_running(&redis, "stateful", stateful).await;
    let candidate = std::fs::read(plugin_wasm("stateful")).expect("candidate");
    let (status, _) = call(
        reqwest::Method::PUT,
        &host,
        "/shadow?share=4",
        Some(candidate),
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..30 {
        add(&mut con, "IN", &[("incr", "k:a 1"), ("hset", "k:h f v")]).await;
    }
    wait_len(&con, "OUT", 30).await;
    let shadow = eventually(
        "the candidate compares entries",
        Duration::from_secs(20),
        || async {
            let (_, shadow) = call(reqwest::Method::GET, &host, "/shadow", None).await;
            (shadow["compared"].as_u64()? + shadow["skipped"].as_u64()? == 30).then_some(shadow)
        },
    )
    .await;
    assert!(shadow["compared"].as_u64() > Some(0), "{shadow}");
    assert_eq!(shadow["differed"], 0, "{shadow}");
    host.stop().await;
}

/// Writes `sluice.toml` in `dir`: the payments pipeline (batch `batch`) on a copy of
/// `plugins/payments` in `dir` (copied once), with the admin API; for a daemon that
/// reloads it (`TestDaemon::start_reloading_file`).
fn write_reloaded_config(dir: &std::path::Path, batch: i64) {
    let plugin = dir.join("payments.wasm");
    if !plugin.exists() {
        std::fs::copy(plugin_wasm("payments"), &plugin).expect("copy");
    }
    let pipeline = payments("payments").plugin(plugin.display()).batch(batch);
    let text = format!("{}{pipeline}", ConfigBuilder::new().admin());
    std::fs::write(dir.join("sluice.toml"), with_plugins(&text)).expect("write config");
}

/// A promotion and a config reload that restarts the pipeline, asked for at the same
/// moment, end with the promoted version running (they take turns), every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_beside_a_reload_ends_with_the_promoted_version_running() {
    let TestContext { redis, .. } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |batch: i64| write_reloaded_config(dir.path(), batch);
    write(10);
    let host =
        TestDaemon::start_reloading_file(&dir.path().join("sluice.toml"), redis.url(), TOKEN).await;
    let candidate = std::fs::read(plugin_wasm("payments_rounding")).expect("candidate");
    let reload_url = format!("http://{}/v1/reload", host.admin());
    let running = format!("http://{}/v1/plugins/payments", host.admin());
    for round in 0..4 {
        // The last round's promotion taken back (none to take back in round 0).
        let (status, _) = call(reqwest::Method::POST, &host, "/shadow/revert", None).await;
        assert!(
            status == 200 || status == 409,
            "round {round}: revert {status}"
        );
        let (status, attached) = call(
            reqwest::Method::PUT,
            &host,
            "/shadow",
            Some(candidate.clone()),
        )
        .await;
        assert_eq!(status, 200, "round {round}: {attached}");
        write(11 + round);
        let reload = reqwest::Client::new()
            .post(&reload_url)
            .bearer_auth(TOKEN)
            .send();
        let promote = call(reqwest::Method::POST, &host, "/shadow/promote", None);
        let (reloaded, (promoted, said)) = tokio::join!(reload, promote);
        assert_eq!(reloaded.expect("reload").status(), 200, "round {round}");
        // The reload may restart the pipeline first (detaching the candidate: 404).
        if promoted == 404 {
            continue;
        }
        assert_eq!(promoted, 200, "round {round}: {said}");
        let now: Value = reqwest::Client::new()
            .get(&running)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            now["digest"], attached["candidate"],
            "round {round}: the promoted version runs"
        );
    }
    host.stop().await;
}

/// A config reload that restarts the pipeline detaches its candidate (checked against
/// the old config), and says so in the pipeline's incidents with the counts; the
/// incidents from before the restart are kept. A reload that leaves the pipeline as it
/// was leaves the candidate attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_by_a_config_reload_detaches_the_candidate_and_says_so() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |batch: i64| write_reloaded_config(dir.path(), batch);
    write(10);
    let host =
        TestDaemon::start_reloading_file(&dir.path().join("sluice.toml"), redis.url(), TOKEN).await;
    let candidate = std::fs::read(plugin_wasm("payments_rounding")).expect("candidate");
    let (status, _) = call(reqwest::Method::PUT, &host, "/shadow", Some(candidate)).await;
    assert_eq!(status, 200);
    orders(&mut con, 0, 50).await;
    wait_len(&con, "PAYMENTS_STREAM", 50).await;
    let reload = || async {
        let url = format!("http://{}/v1/reload", host.admin());
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("reload");
        assert_eq!(response.status(), 200);
    };
    reload().await;
    let (status, _) = call(reqwest::Method::GET, &host, "/shadow", None).await;
    assert_eq!(status, 200, "an unchanged pipeline keeps its candidate");
    write(20);
    reload().await;
    let (status, _) = call(reqwest::Method::GET, &host, "/shadow", None).await;
    assert_eq!(status, 404, "a restarted pipeline has no candidate");
    let (_, pipeline) = call(reqwest::Method::GET, &host, "", None).await;
    let incidents: Vec<&str> = pipeline["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .filter_map(|i| i["message"].as_str())
        .collect();
    let attached = incidents
        .iter()
        .position(|m| m.starts_with("shadow attached"));
    let detached = incidents
        .iter()
        .position(|m| m.starts_with("shadow detached (the pipeline restarted"));
    assert!(
        attached.is_some() && attached < detached,
        "kept from before the restart, then the detachment: {incidents:?}"
    );
    let detached = incidents[detached.expect("detached")];
    assert!(detached.contains("compared"), "with its counts: {detached}");
    orders(&mut con, 50, 50).await;
    wait_payments_once(&con, Duration::from_secs(30)).await;
    host.stop().await;
}
