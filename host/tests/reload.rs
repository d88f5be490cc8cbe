//! Hot reload and zero-downtime deploys: plugin files changing under load, broken
//! versions refused, deploys over the admin API, and the precompiled cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::registry::PluginStatus;
use sluice::wasm::Source;
use sluice_testkit::*;

const TOKEN: &str = "test-token-1234";

/// A config whose payments plugin is the file `plugin` (copied by the test), watched,
/// with the admin API on a free port and its own cache directory.
fn reload_config(
    plugin: &Path,
    cache: &Path,
    token: Option<&str>,
    max_body: &str,
) -> sluice::config::Config {
    let mut config = payments("payments")
        .plugin(plugin.display())
        .batch(20)
        .config_with(
            ConfigBuilder::new()
                .plugins("watch", true)
                .plugins("cache_dir", cache.display().to_string())
                .admin()
                .admin_set("max_body", max_body),
        );
    if let Some(admin) = &mut config.admin {
        admin.token = token.map(str::to_owned);
    }
    config
}

fn variant(tag: &str) -> PathBuf {
    plugin_wasm("payments"); // builds every plugin, the tagged variants too
    workspace().join(format!("target/plugins/payments_tag_{tag}.wasm"))
}

async fn plugins(admin: std::net::SocketAddr) -> Vec<PluginStatus> {
    reqwest::get(format!("http://{admin}/v1/plugins"))
        .await
        .expect("GET /v1/plugins")
        .json()
        .await
        .expect("JSON")
}

/// The tag of the newest payment, after sending one more order.
async fn serving_tag(con: &mut redis::aio::MultiplexedConnection, order: &str) -> String {
    let before = len(con, "PAYMENTS_STREAM").await;
    add(
        con,
        "ORDERS_STREAM",
        &[("orderId", order), ("orderAmount", "1.00"), ("userId", "u")],
    )
    .await;
    wait_len(con, "PAYMENTS_STREAM", before + 1).await;
    let all = entries(con, "PAYMENTS_STREAM").await;
    field(&all[all.len() - 1].1, "tag")
        .unwrap_or("none")
        .to_owned()
}

/// The payments plugin is replaced 20 times (two versions, alternating; some writes in
/// place, some by rename) while 20,000 orders flow: every order is paid exactly once,
/// both versions served, nothing is left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_are_exactly_once() {
    let TestContext { redis, con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("payments.wasm");
    std::fs::copy(variant("a"), &plugin).expect("copy");
    let daemon = TestDaemon::start(
        &redis,
        reload_config(&plugin, &dir.path().join("cache"), None, "64MiB"),
    )
    .await;
    let admin = daemon.admin();
    let producer = tokio::spawn(produce_orders(
        con.clone(),
        20_000,
        500,
        Duration::from_millis(60),
    ));
    for reload in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let source = variant(if reload % 2 == 0 { "b" } else { "a" });
        if reload % 4 < 2 {
            std::fs::copy(&source, &plugin).expect("overwrite in place");
        } else {
            let tmp = dir.path().join("payments.wasm.tmp");
            std::fs::copy(&source, &tmp).expect("copy");
            std::fs::rename(&tmp, &plugin).expect("rename over");
        }
    }
    producer.await.expect("producer");
    let tally = wait_exactly_once(
        &con,
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
        "PAYMENTS_STREAM",
        "orderId",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(tally.out, 20_000);
    let mut c = con.clone();
    let payments = entries(&mut c, "PAYMENTS_STREAM").await;
    let tagged = |t: &str| {
        payments
            .iter()
            .filter(|(_, f)| field(f, "tag") == Some(t))
            .count()
    };
    println!("payments by version: a={} b={}", tagged("a"), tagged("b"));
    assert!(tagged("a") > 0 && tagged("b") > 0);
    let status = plugins(admin).await;
    println!("{status:?}");
    assert!(
        status[0].reloads >= 10,
        "reloads seen: {}",
        status[0].reloads
    );
    assert_eq!(status[0].status, "ok");
    daemon.stop().await;
}

/// A truncated component, a file that is not Wasm, and a component of another world,
/// each written over the live plugin: the running version keeps serving and the error
/// shows in `GET /v1/plugins`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_leave_the_old_one_serving() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("payments.wasm");
    std::fs::copy(variant("a"), &plugin).expect("copy");
    let daemon = TestDaemon::start(
        &redis,
        reload_config(&plugin, &dir.path().join("cache"), None, "64MiB"),
    )
    .await;
    let admin = daemon.admin();
    assert_eq!(serving_tag(&mut con, "first").await, "a");
    let good = std::fs::read(variant("b")).expect("read");
    let broken: [(&str, Vec<u8>, &str); 3] = [
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "not a valid WebAssembly component",
        ),
        (
            "not wasm",
            b"#!/bin/sh\necho hello\n".to_vec(),
            "not a WebAssembly file",
        ),
        (
            "other world",
            std::fs::read(plugin_wasm("other-world")).expect("read"),
            "does not implement the `sluice:plugin/handler` world",
        ),
    ];
    for (what, bytes, reason) in broken {
        std::fs::write(&plugin, &bytes).expect("write");
        let status = eventually(
            &format!("the {what} file to be refused"),
            Duration::from_secs(10),
            || async move {
                let s = plugins(admin).await.remove(0);
                (s.status == "error").then_some(s)
            },
        )
        .await;
        let error = status.last_error.unwrap_or_default();
        println!("{what}: {error}");
        assert!(error.contains(reason), "{what}: {error}");
        assert_eq!(
            serving_tag(&mut con, what).await,
            "a",
            "{what}: the old version serves"
        );
        // Put the good one back so that the next broken write is a change again.
        std::fs::copy(variant("a"), &plugin).expect("restore");
        eventually(
            "the status to clear",
            Duration::from_secs(10),
            || async move { (plugins(admin).await[0].status == "ok").then_some(()) },
        )
        .await;
    }
    daemon.stop().await;
}

/// Deploys over HTTP: refused without the token, with a wrong one, when no token is
/// configured, for a body over `max_body` and for garbage (the running version
/// untouched each time); accepted with the token, and the new version serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_over_http() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("payments.wasm");
    std::fs::copy(variant("a"), &plugin).expect("copy");
    let daemon = TestDaemon::start(
        &redis,
        reload_config(&plugin, &dir.path().join("cache"), Some(TOKEN), "1MiB"),
    )
    .await;
    let admin = daemon.admin();
    let url = format!("http://{admin}/v1/plugins/payments");
    // No kept-alive connections: after refusing an oversized body unread (413) the server
    // closes the connection, and a request sent on it meanwhile would fail.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let new = std::fs::read(variant("b")).expect("read");

    let put = |token: Option<&str>, body: Vec<u8>| {
        let mut request = client.put(&url).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    // Metrics are per process, and other tests here run pipelines named `payments` too:
    // compare before and after.
    let counter = |name: &'static str| {
        let client = client.clone();
        async move {
            let text = client
                .get(format!("http://{admin}/metrics"))
                .send()
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("text");
            text.lines()
                .find(|l| l.starts_with(&format!("{name}{{pipeline=\"payments\"}}")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        }
    };
    let failures_before = counter("sluice_plugin_load_failures_total").await;
    let reloads_before = counter("sluice_plugin_reloads_total").await;
    assert_eq!(put(None, new.clone()).await.expect("PUT").status(), 401);
    assert_eq!(
        put(Some("wrong"), new.clone()).await.expect("PUT").status(),
        401
    );
    assert_eq!(
        put(Some(TOKEN), vec![0; 2 << 20])
            .await
            .expect("PUT")
            .status(),
        413
    );
    let garbage = put(Some(TOKEN), b"garbage".to_vec()).await.expect("PUT");
    assert_eq!(garbage.status(), 422);
    let reason: serde_json::Value = garbage.json().await.expect("JSON");
    assert!(
        reason["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not a WebAssembly file"),
        "{reason}"
    );
    let missing = client
        .put(format!("http://{admin}/v1/plugins/nope"))
        .bearer_auth(TOKEN)
        .body(new.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        serving_tag(&mut con, "o1").await,
        "a",
        "untouched by refused deploys"
    );

    let ok = put(Some(TOKEN), new.clone()).await.expect("PUT");
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.expect("JSON");
    println!("deployed: {body}");
    assert_eq!(body["changed"], true);
    assert!(counter("sluice_plugin_load_failures_total").await > failures_before);
    assert!(counter("sluice_plugin_reloads_total").await > reloads_before);
    assert_eq!(
        serving_tag(&mut con, "o2").await,
        "b",
        "the new version serves"
    );
    assert_eq!(
        std::fs::read(&plugin).expect("read"),
        new,
        "stored over the plugin file for restarts"
    );
    daemon.stop().await;

    // Without a configured token, mutating calls are refused outright.
    let daemon = TestDaemon::start(
        &redis,
        reload_config(&plugin, &dir.path().join("cache"), None, "1MiB"),
    )
    .await;
    let admin = daemon.admin();
    let refused = client
        .put(format!("http://{admin}/v1/plugins/payments"))
        .bearer_auth(TOKEN)
        .body(new)
        .send()
        .await
        .expect("PUT");
    assert_eq!(refused.status(), 403);
    daemon.stop().await;
}

/// A restart with a warm cache does not compile; a corrupted cache entry is ignored,
/// rebuilt, and good again for the next start.
#[tokio::test]
async fn warm_cache_skips_compilation_and_corruption_is_rebuilt() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let plugin = dir.path().join("payments.wasm");
    std::fs::copy(variant("a"), &plugin).expect("copy");
    let source = |config: sluice::config::Config| {
        let redis = &redis;
        async move {
            let daemon = TestDaemon::start(redis, config).await;
            let slot_source = source(&daemon);
            daemon.stop().await;
            slot_source
        }
    };
    assert_eq!(
        source(reload_config(&plugin, &cache, None, "1MiB")).await,
        Source::Compiled,
        "cold"
    );
    assert_eq!(
        source(reload_config(&plugin, &cache, None, "1MiB")).await,
        Source::Cached,
        "warm"
    );
    let entry = std::fs::read_dir(&cache)
        .expect("cache dir")
        .next()
        .expect("an entry")
        .expect("entry")
        .path();
    let mut bytes = std::fs::read(&entry).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).expect("corrupt");
    assert_eq!(
        source(reload_config(&plugin, &cache, None, "1MiB")).await,
        Source::Compiled,
        "corrupt entry rebuilt"
    );
    assert_eq!(
        source(reload_config(&plugin, &cache, None, "1MiB")).await,
        Source::Cached,
        "and good again"
    );
    std::fs::write(&entry, b"short").expect("truncate");
    assert_eq!(
        source(reload_config(&plugin, &cache, None, "1MiB")).await,
        Source::Compiled,
        "truncated entry rebuilt"
    );
}

/// Where the running payments version came from (compiled, or the cache).
fn source(host: &TestDaemon) -> Source {
    host.registry
        .get("payments")
        .expect("slot")
        .current()
        .source()
}

/// Config reload through `POST /v1/reload`: an added pipeline starts, a changed one
/// restarts (orders keep flowing exactly once across it), a removed one drains and
/// stops, and an invalid config is refused with its error while the old one keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_adds_restarts_and_removes_pipelines() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sluice.toml");
    let payments = |batch: i64| payments("payments").batch(batch).to_string();
    let status = echo("order-status")
        .plugin("{plugin:order-status}")
        .reading("PAYMENTS_STREAM", "PAYMENTS_CON_GROUP")
        .writing(&["ORDER_STATUS_STREAM"])
        .state(&["order:", "user-total:"])
        .to_string();
    let admin = ConfigBuilder::new().admin().to_string();
    let write = |text: String| std::fs::write(&path, with_plugins(&text)).expect("write config");
    write(format!("{admin}{}", payments(10)));

    let daemon = TestDaemon::start_reloading_file(&path, redis.url(), TOKEN).await;
    let addr = daemon.admin();
    let reload = || async move {
        let response = reqwest::Client::new()
            .post(format!("http://{addr}/v1/reload"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("POST");
        let code = response.status().as_u16();
        (
            code,
            response.json::<serde_json::Value>().await.expect("JSON"),
        )
    };
    let producer = tokio::spawn(produce_orders(
        con.clone(),
        3_000,
        100,
        Duration::from_millis(50),
    ));

    write(format!("{admin}{}{status}", payments(10)));
    let (code, report) = reload().await;
    assert_eq!(
        (code, &report["added"]),
        (200, &serde_json::json!(["order-status"])),
        "{report}"
    );

    write(format!("{admin}{}{status}", payments(25)));
    let (code, report) = reload().await;
    assert_eq!(
        (code, &report["restarted"]),
        (200, &serde_json::json!(["payments"])),
        "{report}"
    );

    write(format!("{admin}{}{status}", payments(25)).replace("batch = 25", "bacth = 25"));
    let (code, report) = reload().await;
    println!("invalid config: {report}");
    assert_eq!(code, 422);
    assert!(
        report["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field `bacth`"),
        "{report}"
    );

    producer.await.expect("producer");
    let tally = wait_exactly_once(
        &con,
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
        "PAYMENTS_STREAM",
        "orderId",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(tally.out, 3_000);
    wait_len(&con, "ORDER_STATUS_STREAM", 3_000).await;

    write(format!("{admin}{}", payments(25)));
    let (code, report) = reload().await;
    assert_eq!(
        (code, &report["removed"]),
        (200, &serde_json::json!(["order-status"])),
        "{report}"
    );
    let names: Vec<String> = plugins(addr)
        .await
        .into_iter()
        .map(|p| p.pipeline)
        .collect();
    assert_eq!(names, ["payments"]);
    add(
        &mut con,
        "ORDERS_STREAM",
        &[
            ("orderId", "after"),
            ("orderAmount", "1.00"),
            ("userId", "u"),
        ],
    )
    .await;
    wait_len(&con, "PAYMENTS_STREAM", 3_001).await;
    stays(
        "the removed pipeline stopped",
        Duration::from_millis(300),
        || {
            let mut con = con.clone();
            async move { len(&mut con, "ORDER_STATUS_STREAM").await == 3_000 }
        },
    )
    .await;
    daemon.stop().await;
}

/// `sluice run` reloads its config file on SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let one = payments("payments").to_string();
    let two = format!(
        "{one}{}",
        echo("order-status")
            .plugin("{plugin:order-status}")
            .reading("PAYMENTS_STREAM", "PAYMENTS_CON_GROUP")
            .writing(&["ORDER_STATUS_STREAM"])
            .state(&["order:", "user-total:"])
    );
    let path = config_file(&dir, &one);
    let mut daemon = DaemonProcess::spawn(&path, &redis, "c1");
    add(
        &mut con,
        "ORDERS_STREAM",
        &[("orderId", "1"), ("orderAmount", "1.00"), ("userId", "u")],
    )
    .await;
    wait_len(&con, "PAYMENTS_STREAM", 1).await;
    config_file(&dir, &two);
    daemon.signal(libc::SIGHUP);
    wait_len(&con, "ORDER_STATUS_STREAM", 1).await;
    assert!(daemon.log().contains("config reloaded"), "{}", daemon.log());
    daemon.signal(libc::SIGTERM);
    assert!(
        daemon.wait(Duration::from_secs(15)).success(),
        "{}",
        daemon.log()
    );
}

/// A plugin mounted the way Kubernetes mounts a ConfigMap: `payments.wasm ->
/// ..data/payments.wasm`, `..data -> ..v1`. An update writes `..v2`, re-points `..data` by
/// renaming a new link over it, and removes `..v1`. Each of two such swaps in a row is
/// reloaded (the watches follow the links), and the new version serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_swap_is_reloaded_every_time() {
    use std::os::unix::fs::symlink;
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let version = |n: u32| dir.path().join(format!("..v{n}"));
    std::fs::create_dir(version(1)).expect("..v1");
    std::fs::copy(variant("a"), version(1).join("payments.wasm")).expect("copy a");
    symlink("..v1", dir.path().join("..data")).expect("..data");
    let plugin = dir.path().join("payments.wasm");
    symlink("..data/payments.wasm", &plugin).expect("payments.wasm link");
    let daemon = TestDaemon::start(
        &redis,
        reload_config(&plugin, &dir.path().join("cache"), None, "64MiB"),
    )
    .await;
    let admin = daemon.admin();
    assert_eq!(serving_tag(&mut con, "o0").await, "a");
    for (n, tag) in [(2, "b"), (3, "a")] {
        let before = plugins(admin).await[0].digest.clone();
        std::fs::create_dir(version(n)).expect("new version dir");
        std::fs::copy(variant(tag), version(n).join("payments.wasm")).expect("copy");
        let tmp = dir.path().join("..data_tmp");
        symlink(format!("..v{n}"), &tmp).expect("new link");
        std::fs::rename(&tmp, dir.path().join("..data")).expect("re-point ..data");
        std::fs::remove_dir_all(version(n - 1)).expect("remove the old version");
        eventually(
            "the swap to be reloaded",
            Duration::from_secs(10),
            || async { (plugins(admin).await[0].digest != before).then_some(()) },
        )
        .await;
        assert_eq!(serving_tag(&mut con, &format!("o{n}")).await, tag);
    }
    daemon.stop().await;
}
