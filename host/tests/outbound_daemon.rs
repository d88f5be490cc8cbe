//! Outbound HTTP in the daemon: a plugin that imports wasi:http is refused where no host
//! is granted (start, `sluice compile`, reload), requests carry the idempotency key,
//! calls that wait run side by side up to the in-flight limit, the series are there
//! from the start, and under `kill -9` loops every order is paid exactly once while
//! every key the provider saw belongs to an order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_testkit::*;
use toml::Value;

fn list(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// The payments-http pipeline, charging at `server`'s `/pay`.
fn paying(server: &HttpServer) -> PipelineBuilder {
    PipelineBuilder::new(
        "payments",
        &plugin_wasm("payments-http").display().to_string(),
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
    )
    .writing(&["PAYMENTS_STREAM"])
    .plugin_config("provider_url", server.url("/pay"))
    .set("allowed_outbound_hosts", list(&[server.origin()]))
    .set("idempotency_key_header", "Idempotency-Key")
}

/// The key an entry `id` of `stream` has in `group`, computed here from its definition.
fn key_of(group: &str, stream: &str, id: &str) -> String {
    let mut hash = Sha256::new();
    for part in [group, stream, id] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())[..32].to_owned()
}

fn sluice(args: &[&str]) -> std::process::Output {
    std::process::Command::new(sluice_binary())
        .args(args)
        .output()
        .expect("sluice runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_calls_out_is_refused_without_a_grant_at_start_compile_and_reload() {
    let TestContext { redis, .. } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ungranted = ConfigBuilder::new()
        .plugins("cache_dir", "cache")
        .pipeline(echo("calls").plugin(plugin_wasm("fetch").display()))
        .write(dir.path());
    let path = ungranted.to_str().expect("utf-8");
    for args in [
        vec!["compile", "-c", path],
        vec!["run", "-c", path, "--redis", &redis.url()],
    ] {
        let out = sluice(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(
            stderr.contains("wasi:http/outgoing-handler")
                && stderr.contains("allowed_outbound_hosts"),
            "{args:?}: {stderr}"
        );
    }

    // A running pipeline whose plugin file becomes one that calls out keeps its version.
    let plugin = dir.path().join("handler.wasm");
    std::fs::copy(plugin_wasm("echo"), &plugin).expect("copy");
    let running = ConfigBuilder::new()
        .plugins("watch", true)
        .pipeline(echo("calls").plugin(plugin.display()))
        .write(dir.path());
    let log = dir.path().join("daemon.log");
    let args = [
        "run",
        "-c",
        running.to_str().expect("utf-8"),
        "--redis",
        &redis.url(),
    ];
    let mut daemon = DaemonProcess::start(&args, &log);
    // The watch starts after the pipeline: a swap before it would go unseen.
    eventually("the watch on the plugin", Duration::from_secs(20), || {
        let watching = daemon.log().contains("watching the plugin for changes");
        async move { watching.then_some(()) }
    })
    .await;
    // Swapped in whole, as a deploy does (a copy in place can be seen half-written).
    let staged = dir.path().join("handler.wasm.new");
    std::fs::copy(plugin_wasm("fetch"), &staged).expect("stage");
    std::fs::rename(&staged, &plugin).expect("swap");
    let line = eventually("the refusal", Duration::from_secs(30), || {
        let log = daemon.log();
        async move {
            log.lines()
                .find(|l| l.contains("allowed_outbound_hosts") && l.contains("WARN"))
                .map(str::to_owned)
        }
    })
    .await;
    assert!(line.contains("calls"), "names the pipeline: {line}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_calls_run_side_by_side_up_to_the_in_flight_limit() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let server = HttpServer::start();
    let grant = list(&[server.origin()]);
    let url = server.url("/delay/300");
    // 16 entries, 8 instances, at most 3 requests in flight.
    let config = ConfigBuilder::new().pipeline(
        echo("calls")
            .plugin(plugin_wasm("fetch").display())
            .set("allowed_outbound_hosts", grant.clone())
            .concurrency(8)
            .limit("timeout", "20s")
            .set("http", Value::Table(toml::toml! { max_in_flight = 3 })),
    );
    let daemon = TestDaemon::start(&redis, config.config()).await;
    for _ in 0..16 {
        add(&mut con, "IN", &[("url", url.as_str())]).await;
    }
    wait_len(&con, "OUT", 16).await;
    daemon.stop().await;
    assert_eq!(
        server.most_busy(),
        3,
        "the in-flight limit holds and is reached"
    );

    // Unset, a grant gives 32 instances: 16 waiting calls all at once.
    let server = HttpServer::start();
    let url = server.url("/delay/300");
    let config = ConfigBuilder::new().pipeline(
        echo("calls2")
            .plugin(plugin_wasm("fetch").display())
            .reading("IN2", "G2")
            .writing(&["OUT"])
            .set("allowed_outbound_hosts", list(&[server.origin()])),
    );
    let daemon = TestDaemon::start(&redis, config.config()).await;
    let started = std::time::Instant::now();
    for _ in 0..16 {
        add(&mut con, "IN2", &[("url", url.as_str())]).await;
    }
    wait_len(&con, "OUT", 32).await;
    let took = started.elapsed();
    daemon.stop().await;
    assert!(
        server.most_busy() >= 8,
        "calls ran side by side: {}",
        server.most_busy()
    );
    assert!(
        took < Duration::from_secs(4),
        "16 calls of 300 ms took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_key_and_are_counted_from_the_start() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let server = HttpServer::start();
    let config = ConfigBuilder::new()
        .admin()
        .pipeline(paying(&server).concurrency(1));
    let daemon = TestDaemon::start(&redis, config.config()).await;
    let metrics = || async {
        let url = format!("http://{}/metrics", daemon.admin());
        reqwest::get(url)
            .await
            .expect("GET")
            .text()
            .await
            .expect("text")
    };
    let host = format!("host=\"{}\"", server.origin());
    let before = metrics().await;
    for series in [
        "sluice_http_requests_total",
        "sluice_http_request_errors_total",
        "sluice_http_requests_denied_total",
    ] {
        assert!(
            before
                .lines()
                .any(|l| l.starts_with(series) && l.ends_with(" 0")),
            "{series} at 0:\n{before}"
        );
    }
    assert!(before.contains(&host), "{before}");
    add_orders(&mut con, 5, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 5).await;
    let after = metrics().await;
    let requests = after
        .lines()
        .find(|l| l.starts_with("sluice_http_requests_total") && l.contains(&host))
        .expect("the series");
    assert!(requests.ends_with(" 5"), "{requests}");
    assert!(
        after.contains("sluice_http_request_duration_seconds_count"),
        "{after}"
    );
    daemon.stop().await;

    let ids: Vec<String> = entries(&mut con, "ORDERS_STREAM")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let keys: BTreeSet<String> = ids
        .iter()
        .map(|id| key_of("ORDERS_CON_GROUP", "ORDERS_STREAM", id))
        .collect();
    let sent: BTreeSet<String> = server
        .seen()
        .iter()
        .filter_map(|s| s.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(sent, keys);
    for payment in entries(&mut con, "PAYMENTS_STREAM").await {
        assert!(
            field(&payment.1, "paymentId")
                .unwrap_or_default()
                .starts_with("pay_")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loops_pay_each_order_once_with_its_own_key() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let server = HttpServer::start();
    server.set_pay_delay(Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new()
        .pipeline(
            paying(&server)
                .batch(20)
                .concurrency(8)
                .claim_idle(Duration::from_secs(1)),
        )
        .write(dir.path());
    let orders = 400;
    add_orders(&mut con, orders, 0).await;
    for round in 0..4 {
        let mut daemon = DaemonProcess::spawn(&config, &redis, "payer");
        let goal = (round + 1) * 60;
        eventually("some payments", Duration::from_secs(30), || {
            let mut con = con.clone();
            async move { (len(&mut con, "PAYMENTS_STREAM").await >= goal).then_some(()) }
        })
        .await;
        daemon.kill9();
    }
    let mut daemon = DaemonProcess::spawn(&config, &redis, "payer");
    wait_payments_once(&con, Duration::from_secs(60)).await;
    daemon.signal(libc::SIGTERM);
    daemon.wait(Duration::from_secs(20));

    let ids: Vec<String> = entries(&mut con, "ORDERS_STREAM")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let keys: BTreeSet<String> = ids
        .iter()
        .map(|id| key_of("ORDERS_CON_GROUP", "ORDERS_STREAM", id))
        .collect();
    let seen = server.seen();
    let sent: Vec<String> = seen
        .iter()
        .filter_map(|s| s.header("idempotency-key").map(str::to_owned))
        .collect();
    let distinct: BTreeSet<String> = sent.iter().cloned().collect();
    println!(
        "{} requests for {orders} orders ({} repeated)",
        sent.len(),
        sent.len() - distinct.len()
    );
    assert_eq!(
        distinct, keys,
        "every order's key reached the provider; no other key did"
    );
    // One payment ID per order: a repeated call got the provider's answer for its key.
    let mut by_order = BTreeMap::new();
    for (_, payment) in entries(&mut con, "PAYMENTS_STREAM").await {
        let order = field(&payment, "orderId").unwrap_or_default().to_owned();
        let id = field(&payment, "paymentId").unwrap_or_default().to_owned();
        assert!(by_order.insert(order, id).is_none());
    }
    let payment_ids: BTreeSet<&String> = by_order.values().collect();
    assert_eq!(payment_ids.len(), orders);
}

/// A handler that leaves a request waiting, or a response unread, holds nothing past its
/// call: with one place in flight, the next entry's request goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_leaves_requests_behind_holds_nothing_after_it() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let server = HttpServer::start();
    let config = ConfigBuilder::new().pipeline(
        echo("leaky")
            .plugin(plugin_wasm("fetch").display())
            .set("allowed_outbound_hosts", list(&[server.origin()]))
            .concurrency(1)
            .limit("timeout", "5s")
            .set(
                "http",
                Value::Table(toml::toml! {
                    max_in_flight = 1
                    first_byte_timeout = "60s"
                    between_bytes_timeout = "60s"
                }),
            ),
    );
    let daemon = TestDaemon::start(&redis, config.config()).await;
    let (unread, waiting) = (server.url("/slow/100/200"), server.url("/delay/20000"));
    for (leave, url) in [("unread", &unread), ("waiting", &waiting)] {
        let n = len(&mut con, "OUT").await;
        add(&mut con, "IN", &[("leave", leave), ("url", url.as_str())]).await;
        wait_len(&con, "OUT", n + 1).await;
        let started = std::time::Instant::now();
        add(&mut con, "IN", &[("url", server.url("/echo").as_str())]).await;
        wait_len(&con, "OUT", n + 2).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "after {leave}: the next request waited {took:?}"
        );
        let out = entries(&mut con, "OUT").await;
        assert_eq!(
            field(&out[n + 1].1, "status"),
            Some("200"),
            "{:?}",
            out[n + 1]
        );
    }
    daemon.stop().await;
}

/// A request to an origin not granted fails in the handler and is logged with the
/// pipeline and the origin; the server never hears of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_logged_with_the_pipeline_and_the_origin() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (granted, other) = (HttpServer::start(), HttpServer::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new()
        .pipeline(
            echo("caller")
                .plugin(plugin_wasm("fetch").display())
                .set("allowed_outbound_hosts", list(&[granted.origin()])),
        )
        .write(dir.path());
    let mut daemon = DaemonProcess::spawn(&config, &redis, "refusing");
    add(&mut con, "IN", &[("url", other.url("/echo").as_str())]).await;
    wait_len(&con, "OUT", 1).await;
    let out = entries(&mut con, "OUT").await;
    assert_eq!(field(&out[0].1, "error"), Some("denied"));
    let line = eventually("the refusal line", Duration::from_secs(10), || {
        let log = daemon.log();
        async move {
            log.lines()
                .find(|l| l.contains("outbound request refused"))
                .map(str::to_owned)
        }
    })
    .await;
    assert!(
        line.contains("pipeline=caller") && line.contains(&format!("127.0.0.1:{}", other.port)),
        "{line}"
    );
    assert!(other.seen().is_empty());
    daemon.signal(libc::SIGTERM);
    daemon.wait(Duration::from_secs(20));
}
