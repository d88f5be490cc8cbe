//! Operating Sluice over HTTP and the CLI: metrics, readiness, pipeline status, pause and
//! resume, dead letters (list, replay, purge), against a running daemon and a real
//! redis-server, with a real HTTP client.

mod common;

use std::time::Duration;

use common::*;
use redis::AsyncCommands;
use sluice::admin::{DeadPage, PipelineView};

const TOKEN: &str = "ops-token";

/// A daemon with the admin API and one payments pipeline named `name` (metric labels are
/// per process, so each test uses its own name).
async fn daemon(redis: &RedisServer, name: &str) -> (Host, String) {
    let mut config = payments(name).config(ADMIN);
    if let Some(admin) = &mut config.admin {
        admin.token = Some(TOKEN.to_owned());
    }
    let host = Host::start(redis, config).await;
    let base = format!("http://{}", host.admin());
    (host, base)
}

/// `GET /v1/pipelines/{name}`, if it answers.
async fn pipeline_view(base: &str, name: &str) -> Option<PipelineView> {
    reqwest::get(format!("{base}/v1/pipelines/{name}"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The value of `metric{pipeline="name"...}` in Prometheus text.
fn metric(text: &str, metric: &str, pipeline: &str) -> f64 {
    text.lines()
        .find(|l| {
            l.starts_with(metric)
                && l.contains(&format!("pipeline=\"{pipeline}\""))
                && !l.starts_with('#')
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {metric} for {pipeline} in:\n{text}"))
}

/// `/metrics` is Prometheus text whose counters match what went through; `/readyz` and
/// `/healthz` answer; `/v1/pipelines` shows the pipeline.
#[tokio::test]
async fn metrics_and_status_match_the_traffic() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base) = daemon(&redis, "ops-metrics").await;
    add_orders(&mut con, 40, 3).await;
    wait_len(&con, "PAYMENTS_STREAM", 40).await;
    wait_len(&con, "ORDERS_STREAM:dead", 3).await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    assert_eq!(
        metric(&text, "sluice_messages_read_total", "ops-metrics"),
        43.0
    );
    assert_eq!(
        metric(&text, "sluice_messages_committed_total", "ops-metrics"),
        40.0
    );
    assert_eq!(
        metric(&text, "sluice_messages_dead_lettered_total", "ops-metrics"),
        3.0
    );
    assert_eq!(
        metric(&text, "sluice_handler_failures_total", "ops-metrics"),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "sluice_handler_duration_seconds_count",
            "ops-metrics"
        ),
        43.0
    );
    assert_eq!(
        metric(
            &text,
            "sluice_end_to_end_latency_seconds_count",
            "ops-metrics"
        ),
        40.0
    );
    assert!(
        text.contains("# TYPE sluice_handler_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .expect("GET")
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .expect("GET")
            .status(),
        200
    );
    let pipelines: Vec<PipelineView> = reqwest::get(format!("{base}/v1/pipelines"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(pipelines.len(), 1);
    let p = &pipelines[0];
    assert_eq!(
        (p.name.as_str(), p.status.state.as_str(), p.input.as_str()),
        ("ops-metrics", "running", "ORDERS_STREAM")
    );
    assert!(
        p.status.throughput > 0.0 && p.plugin.starts_with("sha256:"),
        "{p:?}"
    );
    assert!(
        p.status
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("negative"),
        "{p:?}"
    );
    host.stop().await;
}

/// Pause holds from the moment it answers: nothing added afterwards is handled (state
/// `pausing`, then `paused`), resume drains it; both need the token.
#[tokio::test]
async fn pause_stops_commits_and_resume_continues() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base) = daemon(&redis, "ops-pause").await;
    let client = reqwest::Client::new();
    // Running, and waiting in a blocking read for more.
    add_orders(&mut con, 5, 0).await;
    wait_len(&con, "PAYMENTS_STREAM", 5).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        client
            .post(format!("{base}/v1/pipelines/ops-pause/pause"))
            .send()
            .await
            .expect("POST")
            .status(),
        401
    );
    let paused: PipelineView = client
        .post(format!("{base}/v1/pipelines/ops-pause/pause"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert!(
        ["pausing", "paused"].contains(&paused.status.state.as_str()),
        "{:?}",
        paused.status
    );
    // Once pause has answered, nothing added afterwards is handled, not even what the
    // read in flight returns (it stays pending until resume).
    add_orders(&mut con, 200, 0).await;
    eventually("state paused", Duration::from_secs(5), || {
        let base = base.clone();
        async move {
            let v = pipeline_view(&base, "ops-pause").await?;
            (v.status.state == "paused").then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        len(&mut con, "PAYMENTS_STREAM").await,
        5,
        "paused: nothing added after the pause is committed"
    );
    client
        .post(format!("{base}/v1/pipelines/ops-pause/resume"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    wait_len(&con, "PAYMENTS_STREAM", 205).await;
    host.stop().await;
}

/// An echo pipeline named `name` (batch 50) with the admin API, paused in the middle of a
/// batch of 30 entries that each take 100 ms: returns the daemon, the admin base URL and
/// how many entries were handled before the pause held.
async fn paused_mid_batch(
    redis: &RedisServer,
    con: &mut redis::aio::MultiplexedConnection,
    name: &str,
) -> (Host, String, usize) {
    let mut config = echo(name).with("batch = 50").config(ADMIN);
    if let Some(admin) = &mut config.admin {
        admin.token = Some(TOKEN.to_owned());
    }
    let host = Host::start(redis, config).await;
    let base = format!("http://{}", host.admin.expect("admin API"));
    let client = reqwest::Client::new();
    // All 30 at once (MULTI): the blocking read returns them as one batch.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..30 {
        pipe.xadd(
            "IN",
            "*",
            &[("action", "sleep"), ("ms", "100"), ("n", &i.to_string())],
        )
        .ignore();
    }
    let () = pipe.query_async(con).await.expect("XADD");
    // A batch commits at its end: wait until all 30 are read and a few handled.
    eventually("the batch read", Duration::from_secs(10), || {
        let mut con = con.clone();
        async move { (pending(&mut con, "IN", "G").await == 30).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let answered: PipelineView = client
        .post(format!("{base}/v1/pipelines/{name}/pause"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answered.status.state, "pausing");
    let status = eventually("state paused", Duration::from_secs(5), || {
        let base = base.clone();
        async move {
            let v = pipeline_view(&base, name).await?;
            (v.status.state == "paused" && v.status.pending > 0).then_some(v.status)
        }
    })
    .await;
    // What was handled before the pause (the call in flight included) is committed;
    // the rest of the batch (3 s of calls) waits.
    let handled = len(con, "OUT").await;
    assert!(
        (1..20).contains(&handled),
        "{handled} of 30 handled: the batch ran on after the pause"
    );
    assert_eq!(status.pending, 30 - handled as u64, "{status:?}");
    (host, base, handled)
}

async fn resume(base: &str, name: &str) {
    let resumed = reqwest::Client::new()
        .post(format!("{base}/v1/pipelines/{name}/resume"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    assert_eq!(resumed.status(), 200);
}

/// A pause that comes mid-batch holds too: the call in flight finishes and no other
/// entry of the batch starts until resume; on resume each is handled once, as the same
/// delivery (attempt 1). While paused, the status shows the backlog.
#[tokio::test]
async fn a_pause_mid_batch_stops_between_entries() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base, handled) = paused_mid_batch(&redis, &mut con, "ops-midbatch").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        len(&mut con, "OUT").await,
        handled,
        "nothing more while paused"
    );
    resume(&base, "ops-midbatch").await;
    wait_len(&con, "OUT", 30).await;
    let out = entries(&mut con, "OUT").await;
    let mut seen: Vec<&str> = out.iter().map(|(_, f)| field(f, "n").expect("n")).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 30, "each entry once");
    for (_, fields) in &out {
        assert_eq!(field(fields, "seen-attempt"), Some("1"), "{fields:?}");
    }
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// Entries held through a pause that another consumer reclaimed meanwhile are its to
/// handle: on resume the paused daemon does not call its handler on them again (no
/// commit of it meets one owned by another).
#[tokio::test]
async fn entries_reclaimed_during_a_pause_are_not_handled_again() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let name = "ops-reclaimed";
    let (host, base, handled) = paused_mid_batch(&redis, &mut con, name).await;
    // Another consumer takes every pending entry, as its reclaim would.
    let rows: redis::streams::StreamPendingCountReply = con
        .xpending_count("IN", "G", "-", "+", 100)
        .await
        .expect("XPENDING");
    let ids: Vec<String> = rows.ids.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), 30 - handled);
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg("IN")
        .arg("G")
        .arg("other")
        .arg(0)
        .arg(&ids)
        .arg("JUSTID")
        .query_async(&mut con)
        .await
        .expect("XCLAIM");
    let calls = |text: &str| metric(text, "sluice_handler_duration_seconds_count", name);
    let before = calls(
        &reqwest::get(format!("{base}/metrics"))
            .await
            .expect("GET")
            .text()
            .await
            .expect("text"),
    );
    resume(&base, name).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    assert_eq!(calls(&text), before, "no handler call on reclaimed entries");
    assert_eq!(metric(&text, "sluice_commit_conflicts_total", name), 0.0);
    assert_eq!(len(&mut con, "OUT").await, handled);
    host.stop().await;
}

/// Dead letters: listed in pages with their reasons; replay (by id, then all) puts the
/// original fields back on the input exactly once and removes them; purge empties the
/// stream; every call needs the token.
#[tokio::test]
async fn dead_letters_list_replay_and_purge() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base) = daemon(&redis, "ops-dead").await;
    let client = reqwest::Client::new();
    add_orders(&mut con, 0, 3).await;
    wait_len(&con, "ORDERS_STREAM:dead", 3).await;
    let page: DeadPage = client
        .get(format!("{base}/v1/pipelines/ops-dead/dead?count=2"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(page.entries.len(), 2);
    assert!(page.entries[0].error.contains("negative"), "{page:?}");
    let rest: DeadPage = client
        .get(format!(
            "{base}/v1/pipelines/ops-dead/dead?count=2&after={}",
            page.next.clone().expect("next")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!((rest.entries.len(), rest.next), (1, None));

    // Pause, so that replayed entries wait on the input where the test can see them.
    client
        .post(format!("{base}/v1/pipelines/ops-dead/pause"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let replay = format!("{base}/v1/pipelines/ops-dead/dead/replay");
    assert_eq!(
        client.post(&replay).send().await.expect("POST").status(),
        401
    );
    let one = serde_json::json!({ "ids": [page.entries[0].id] });
    let answer: serde_json::Value = client
        .post(&replay)
        .bearer_auth(TOKEN)
        .json(&one)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["replayed"], 1);
    let again: serde_json::Value = client
        .post(&replay)
        .bearer_auth(TOKEN)
        .json(&one)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(again["replayed"], 0, "a dead letter is replayed once");
    let answer: serde_json::Value = client
        .post(&replay)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["replayed"], 2);
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 0);
    let input = entries(&mut con, "ORDERS_STREAM").await;
    assert_eq!(input.len(), 6, "3 originals + 3 replayed");
    for (_, fields) in &input[3..] {
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["orderId", "orderAmount", "userId"],
            "original fields, no metadata"
        );
    }
    // Resumed, they fail again (still invalid) and come back to the dead letters.
    client
        .post(format!("{base}/v1/pipelines/ops-dead/resume"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    wait_len(&con, "ORDERS_STREAM:dead", 3).await;
    let purge = format!("{base}/v1/pipelines/ops-dead/dead");
    assert_eq!(
        client.delete(&purge).send().await.expect("DELETE").status(),
        401
    );
    let purged: serde_json::Value = client
        .delete(&purge)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("DELETE")
        .json()
        .await
        .expect("JSON");
    assert_eq!(purged["purged"], 3);
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 0);
    host.stop().await;
}

/// `/readyz` turns 503 when Redis is gone.
#[tokio::test]
async fn readyz_reports_redis_down() {
    let mut redis = RedisServer::start().expect("redis");
    let (host, base) = daemon(&redis, "ops-ready").await;
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .expect("GET")
            .status(),
        200
    );
    redis.kill();
    let status = eventually("readyz to fail", Duration::from_secs(15), || {
        let url = format!("{base}/readyz");
        async move {
            let code = reqwest::get(url).await.ok()?.status();
            (code == 503).then_some(code)
        }
    })
    .await;
    assert_eq!(status, 503);
    host.shutdown.cancel();
}

/// `sluice dlq list|replay|purge` against the pipeline's dead-letter stream.
#[tokio::test]
async fn dlq_command_line() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, _) = daemon(&redis, "ops-cli").await;
    add_orders(&mut con, 0, 2).await;
    wait_len(&con, "ORDERS_STREAM:dead", 2).await;
    host.stop().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file(
        &dir,
        &format!(
            "[redis]\nurl = {:?}\n\n{}",
            redis.url(),
            payments("ops-cli")
        ),
    );
    let sluice = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("dlq")
            .args(args)
            .arg("-c")
            .arg(&path)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = sluice(&["list", "ops-cli"]);
    assert!(
        listed.contains("sluice.error = rejected: order b0 has a negative orderAmount"),
        "{listed}"
    );
    assert!(sluice(&["replay", "ops-cli"]).contains("replayed 2 dead letters to ORDERS_STREAM"));
    assert_eq!(len(&mut con, "ORDERS_STREAM").await, 4);
    let _: String = redis::AsyncCommands::xadd(
        &mut con,
        "ORDERS_STREAM:dead",
        "*",
        &[("sluice.error", "x")],
    )
    .await
    .expect("XADD");
    assert!(sluice(&["purge", "ops-cli"]).contains("purged 1 dead letters"));
}

/// `/v1/openapi.json` is generated from the code and documents every route.
#[tokio::test]
async fn openapi_document_lists_every_route() {
    let redis = RedisServer::start().expect("redis");
    let (host, base) = daemon(&redis, "ops-openapi").await;
    let doc: serde_json::Value = reqwest::get(format!("{base}/v1/openapi.json"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/metrics",
        "/readyz",
        "/v1/reload",
        "/v1/plugins",
        "/v1/plugins/{pipeline}",
        "/v1/pipelines",
        "/v1/pipelines/{name}",
        "/v1/pipelines/{name}/pause",
        "/v1/pipelines/{name}/resume",
        "/v1/pipelines/{name}/dead",
        "/v1/pipelines/{name}/dead/replay",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(
        doc["components"]["schemas"]["PipelineView"].is_object(),
        "{}",
        doc["components"]
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    host.stop().await;
}

/// The dashboard in real headless Chromium: it shows what the API says, its pause button
/// pauses the pipeline (commits stop), and a screenshot is kept in
/// `target/test-artifacts/dashboard.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base) = daemon(&redis, "ops-dashboard").await;
    add_orders(&mut con, 0, 2).await; // two dead letters to show
    let producer = tokio::spawn(produce_orders(
        con.clone(),
        2_000,
        20,
        Duration::from_millis(25),
    ));
    wait_len(&con, "ORDERS_STREAM:dead", 2).await;
    let browser = workspace().join("host/tests/browser");
    let artifacts = workspace().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("dashboard.png");
    // A screenshot left by an earlier run must not pass for this one.
    let _ = std::fs::remove_file(&screenshot);
    let output = tokio::process::Command::new("node")
        .current_dir(&browser)
        .arg("dashboard.mjs")
        .args([base.as_str(), TOKEN, "ops-dashboard"])
        .arg(&screenshot)
        .output()
        .await
        .expect("run node (scripts/setup.sh installs Chromium and playwright-core)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser check failed");
    assert!(screenshot.is_file());
    // Paused through the page: commits stop while orders keep arriving.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = len(&mut con, "PAYMENTS_STREAM").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        len(&mut con, "PAYMENTS_STREAM").await,
        before,
        "no commits while paused"
    );
    producer.abort();
    host.stop().await;
}

/// The value of the series `name{labels...}` (each of `labels` in the line) in
/// Prometheus text, if there is one.
fn series(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .find(|l| {
            l.starts_with(&format!("{name}{{")) && labels.iter().all(|label| l.contains(label))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| match v {
            "+Inf" => Some(f64::INFINITY),
            v => v.parse().ok(),
        })
}

/// `sluice_backlog` is lag plus pending, exact while Redis knows the lag and estimated
/// from the IDs (`lag="estimated"`) once a deletion in the unread part makes it answer
/// nil; `sluice_drain_seconds` is infinite while nothing moves and 0 once drained.
#[tokio::test]
async fn backlog_and_drain_time_are_the_scaling_signal() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base) = daemon(&redis, "ops-backlog").await;
    let client = reqwest::Client::new();
    let post = |action: &str| {
        client
            .post(format!("{base}/v1/pipelines/ops-backlog/{action}"))
            .bearer_auth(TOKEN)
            .send()
    };
    post("pause").await.expect("POST pause");
    eventually("state paused", Duration::from_secs(5), || {
        let base = base.clone();
        async move {
            let v = pipeline_view(&base, "ops-backlog").await?;
            (v.status.state == "paused").then_some(())
        }
    })
    .await;
    add_orders(&mut con, 300, 0).await;
    let scrape = || async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .expect("GET")
            .text()
            .await
            .expect("text")
    };
    let pipeline = "pipeline=\"ops-backlog\"";
    eventually(
        "an exact backlog of 300",
        Duration::from_secs(10),
        || async {
            let text = scrape().await;
            let exact = series(&text, "sluice_backlog", &[pipeline, "lag=\"exact\""])?;
            let drain = series(&text, "sluice_drain_seconds", &[pipeline])?;
            (exact == 300.0 && drain.is_infinite()).then_some(())
        },
    )
    .await;
    // Delete an unread entry: Redis can no longer count the lag.
    let ids: redis::streams::StreamRangeReply = con
        .xrange_count("ORDERS_STREAM", "-", "+", 150)
        .await
        .expect("XRANGE");
    let _: i64 = con
        .xdel("ORDERS_STREAM", &[&ids.ids[149].id])
        .await
        .expect("XDEL");
    eventually("an estimated backlog", Duration::from_secs(10), || async {
        let text = scrape().await;
        let estimated = series(&text, "sluice_backlog", &[pipeline, "lag=\"estimated\""])?;
        let exact = series(&text, "sluice_backlog", &[pipeline, "lag=\"exact\""])?;
        (estimated == 299.0 && exact == 0.0).then_some(())
    })
    .await;
    post("resume").await.expect("POST resume");
    wait_len(&con, "PAYMENTS_STREAM", 299).await;
    eventually("a drained backlog", Duration::from_secs(10), || async {
        let text = scrape().await;
        let exact = series(&text, "sluice_backlog", &[pipeline, "lag=\"exact\""])?;
        let estimated = series(&text, "sluice_backlog", &[pipeline, "lag=\"estimated\""])?;
        let drain = series(&text, "sluice_drain_seconds", &[pipeline])?;
        (exact + estimated == 0.0 && drain == 0.0).then_some(())
    })
    .await;
    host.stop().await;
}

/// Every metric the Grafana dashboard (`deploy/grafana/`) and the KEDA example
/// (`deploy/keda/`) query is one the daemon exports.
#[tokio::test]
async fn the_dashboards_query_only_exported_metrics() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base) = daemon(&redis, "ops-dashboards").await;
    add_orders(&mut con, 20, 2).await;
    wait_len(&con, "PAYMENTS_STREAM", 20).await;
    wait_len(&con, "ORDERS_STREAM:dead", 2).await;
    let text = eventually("the backlog gauges", Duration::from_secs(10), || async {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("sluice_drain_seconds{").then_some(text)
    })
    .await;
    let exported: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let deploy = workspace().join("deploy");
    let mut checked = 0;
    for file in ["grafana/sluice.json", "keda/scaledobject.yaml"] {
        let body = std::fs::read_to_string(deploy.join(file)).expect("deploy file");
        let mut rest = body.as_str();
        while let Some(at) = rest.find("sluice_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            checked += 1;
            assert!(
                exported.contains(name.as_str()),
                "{file} queries {name}, which the daemon does not export; it exports {exported:?}"
            );
        }
    }
    assert!(checked > 10, "only {checked} metric references found");
    host.stop().await;
}
