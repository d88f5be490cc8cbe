//! Operating Sluice over HTTP and the CLI: metrics, readiness, pipeline status, pause and
//! resume, dead letters (list, replay, purge), against a running daemon and a real
//! redis-server, with a real HTTP client.

use std::time::Duration;

use redis::AsyncCommands;
use sluice::admin::{DeadPage, PipelineView};
use sluice_testkit::*;

const TOKEN: &str = "ops-token";

/// A daemon with the admin API and one payments pipeline named `name` (metric labels are
/// per process, so each test uses its own name).
async fn daemon(redis: &RedisServer, name: &str) -> (TestDaemon, String) {
    let mut config = payments(name).with_admin().config();
    if let Some(admin) = &mut config.admin {
        admin.token = Some(TOKEN.to_owned());
    }
    let host = TestDaemon::start(redis, config).await;
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
/// Waits until the pipeline `name` says it is paused.
async fn wait_paused(base: &str, name: &str) {
    eventually(
        "the pipeline paused",
        Duration::from_secs(10),
        || async move {
            let view = pipeline_view(base, name).await?;
            (view.status.state == "paused").then_some(())
        },
    )
    .await;
}

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
    // Every kind is exported (at 0 until it happens): the rejects are the three.
    let rejects = text
        .lines()
        .find(|l| {
            l.starts_with("sluice_handler_failures_total{")
                && l.contains("pipeline=\"ops-metrics\"")
                && l.contains("kind=\"reject\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(rejects, Some(3.0), "{text}");
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
    eventually(
        "the pipeline waits in a blocking read",
        Duration::from_secs(5),
        || {
            let mut con = con.clone();
            async move {
                let clients: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query_async(&mut con)
                    .await
                    .expect("CLIENT LIST");
                clients.contains("cmd=xreadgroup").then_some(())
            }
        },
    )
    .await;
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
    stays(
        "paused: nothing added after the pause is committed",
        Duration::from_secs(1),
        || {
            let mut con = con.clone();
            async move { len(&mut con, "PAYMENTS_STREAM").await == 5 }
        },
    )
    .await;
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
) -> (TestDaemon, String, usize) {
    let mut config = echo(name).batch(50).with_admin().config();
    if let Some(admin) = &mut config.admin {
        admin.token = Some(TOKEN.to_owned());
    }
    let host = TestDaemon::start(redis, config).await;
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
    eventually("a few handled", Duration::from_secs(10), || {
        let base = base.clone();
        async move {
            let text = reqwest::get(format!("{base}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (metric(&text, "sluice_handler_duration_seconds_count", name) >= 3.0).then_some(())
        }
    })
    .await;
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
    stays("nothing more while paused", Duration::from_secs(1), || {
        let mut con = con.clone();
        async move { len(&mut con, "OUT").await == handled }
    })
    .await;
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
    stays(
        "no handler call on reclaimed entries",
        Duration::from_millis(1_500),
        || {
            let base = base.clone();
            async move {
                let text = reqwest::get(format!("{base}/metrics"))
                    .await
                    .expect("GET")
                    .text()
                    .await
                    .expect("text");
                calls(&text) == before
            }
        },
    )
    .await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    assert_eq!(calls(&text), before, "no handler call on reclaimed entries");
    assert_eq!(metric(&text, "sluice_entries_unowned_total", name), 0.0);
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
    wait_paused(&base, "ops-dead").await;
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

/// `POST /v1/pipelines/{name}/dead/replay` with the token and `body` (none: no body):
/// the status and the JSON answer. Gives up after 15 s (a replay that does not end).
async fn replay_call(
    base: &str,
    name: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let url = format!("{base}/v1/pipelines/{name}/dead/replay");
    dead_call(reqwest::Method::POST, &url, body).await
}

/// `DELETE /v1/pipelines/{name}/dead` with the token and `body`: status and answer.
async fn purge_call(
    base: &str,
    name: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let url = format!("{base}/v1/pipelines/{name}/dead");
    dead_call(reqwest::Method::DELETE, &url, body).await
}

async fn dead_call(
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let mut request = client.request(method, url).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an answer within 15 s");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Adds dead letters to `ORDERS_STREAM:dead` with the IDs given: each `(id, Some(order))`
/// holds the metadata and a valid order's fields (replayed, it is paid), each `(id,
/// None)` the metadata only, like the letter of an entry too wide to copy.
async fn add_letters(
    con: &mut redis::aio::MultiplexedConnection,
    letters: &[(&str, Option<&str>)],
) {
    add_letters_to(con, "ORDERS_STREAM:dead", letters).await;
}

/// [`add_letters`] to the dead-letter stream `dead`, in one round trip.
async fn add_letters_to(
    con: &mut redis::aio::MultiplexedConnection,
    dead: &str,
    letters: &[(&str, Option<&str>)],
) {
    let mut pipe = redis::pipe();
    for (id, order) in letters {
        pipe.xadd(dead, id, &letter(*order)).ignore();
    }
    let () = pipe.query_async(con).await.expect("XADD letters");
}

/// A dead letter's fields: the metadata, then a valid order's fields if `order` is given.
fn letter(order: Option<&str>) -> Vec<(&str, &str)> {
    let mut fields = vec![
        ("sluice.error", "rejected: test"),
        ("sluice.source", "ORDERS_STREAM"),
        ("sluice.id", "1-0"),
        ("sluice.pipeline", "test"),
        ("sluice.plugin", "sha256:0"),
        ("sluice.attempts", "1"),
    ];
    if let Some(order) = order {
        fields.extend([("orderId", order), ("orderAmount", "5.00"), ("userId", "u")]);
    }
    fields
}

/// Issue 28.2: a replay of all replays the letters there when it began. Fifty entries
/// the handler rejects every time; a worker daemon handles them, and a second daemon,
/// paused, 50 ms away from Redis, is asked to replay all: the replayed entries fail
/// again (in the worker) between its script calls, and their new letters are not
/// replayed too; the answer counts what was written. (The replay used to go on until a
/// call found no letter after the last one: here, for ever.)
#[tokio::test]
async fn dead_letters_replay_all_stops_at_the_letters_there_when_it_began() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let name = "ops-replay-all";
    let mut worker = payments(name).config();
    worker.redis.consumer = Some("worker".to_owned());
    let worker = TestDaemon::start(&redis, worker).await;
    let proxy = proxy::Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let mut admin = payments(name).with_admin().config();
    admin.redis.consumer = Some("admin".to_owned());
    if let Some(a) = &mut admin.admin {
        a.token = Some(TOKEN.to_owned());
    }
    let admin = TestDaemon::start_at(&proxy.url(None), admin).await;
    let base = format!("http://{}", admin.admin());
    reqwest::Client::new()
        .post(format!("{base}/v1/pipelines/{name}/pause"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    eventually(
        "the admin's pipeline paused",
        Duration::from_secs(10),
        || async {
            pipeline_view(&base, name)
                .await
                .filter(|v| v.status.state == "paused")
        },
    )
    .await;
    add_orders(&mut con, 0, 50).await;
    wait_len(&con, "ORDERS_STREAM:dead", 50).await;
    proxy.delay_requests(Duration::from_millis(50));
    let (status, answer) = replay_call(&base, name, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["replayed"], 50, "{answer}");
    // Each replayed entry fails once more: 50 letters again, 100 entries on the input.
    wait_len(&con, "ORDERS_STREAM:dead", 50).await;
    eventually("nothing pending", Duration::from_secs(20), || {
        let mut con = con.clone();
        async move {
            (pending(&mut con, "ORDERS_STREAM", "ORDERS_CON_GROUP").await == 0).then_some(())
        }
    })
    .await;
    assert_eq!(
        len(&mut con, "ORDERS_STREAM").await,
        100,
        "50 originals + 50 replayed once"
    );
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 50);
    admin.stop().await;
    worker.stop().await;
}

/// Issue 28.3: the IDs of a replay or purge are checked before anything is done (a 400
/// names the first that is not one; at most 10,000), taken in the forms Redis takes
/// (`ms-seq` with leading zeros, `ms` for `ms-0`), each once however often it is given;
/// the answer lists the letters kept and the IDs not found. A non-canonical ID of a
/// letter that is kept used to make the replay call the script forever.
#[tokio::test]
async fn dead_letters_replay_and_purge_by_id_check_every_id_first() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base) = daemon(&redis, "ops-replay-ids").await;
    let name = "ops-replay-ids";
    add_letters(
        &mut con,
        &[
            ("1796527819466-0", Some("a")),
            ("1796527819467-5", Some("b")),
            ("1796527819468-0", None),
            ("1796527819469-0", Some("c")),
        ],
    )
    .await;
    for bad in [
        "notanid",
        "-",
        "+",
        "",
        "1-2-3",
        " 1-0",
        "+1",
        "1796527819466-x",
        "1-",
    ] {
        let body = serde_json::json!({ "ids": ["1796527819466-0", bad] });
        let (status, answer) = replay_call(&base, name, Some(body.clone())).await;
        assert_eq!(status, 400, "{bad:?}: {answer}");
        let error = answer["error"].as_str().expect("error");
        assert!(
            error.contains(&format!("{bad:?} is not a stream entry ID")),
            "{error}"
        );
        let (status, answer) = purge_call(&base, name, Some(body)).await;
        assert_eq!(status, 400, "{bad:?}: {answer}");
    }
    let too_many: Vec<String> = (1..=10_001).map(|i| format!("{i}-0")).collect();
    let (status, answer) =
        replay_call(&base, name, Some(serde_json::json!({ "ids": too_many }))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().expect("error").contains("10000"),
        "{answer}"
    );
    let dashes = vec!["-"; 300_000];
    let (status, _) = replay_call(&base, name, Some(serde_json::json!({ "ids": dashes }))).await;
    assert_eq!(status, 400);
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 4, "nothing done");

    let mut ids = vec![
        "1796527819466",
        "01796527819467-05",
        "01796527819468-0",
        "999-0",
    ];
    ids.extend(vec!["1796527819467-5"; 20_000]);
    let (status, answer) = replay_call(&base, name, Some(serde_json::json!({ "ids": ids }))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({ "replayed": 2, "kept": ["1796527819468-0"], "not_found": ["999-0"] })
    );
    let input = entries(&mut con, "ORDERS_STREAM").await;
    let orders: Vec<_> = input.iter().map(|(_, f)| field(f, "orderId")).collect();
    assert_eq!(orders, [Some("a"), Some("b")], "in stream order, once each");
    let (_, again) = replay_call(
        &base,
        name,
        Some(serde_json::json!({ "ids": ["1796527819466-0"] })),
    )
    .await;
    assert_eq!(
        again,
        serde_json::json!({ "replayed": 0, "kept": [], "not_found": ["1796527819466-0"] })
    );

    // Nothing is taken for "every letter" but no body: not an empty list, not a
    // misspelt field, not a list sent without a Content-Type.
    let (status, answer) = purge_call(&base, name, Some(serde_json::json!({ "ids": [] }))).await;
    assert_eq!(status, 400, "an empty list purges nothing: {answer}");
    let (status, answer) = purge_call(&base, name, Some(serde_json::json!({ "id": ["5"] }))).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = replay_call(&base, name, Some(serde_json::json!({ "id": ["5"] }))).await;
    assert_eq!(status, 400, "{answer}");
    // Issue 28 (4): only a body of zero bytes means every letter. Whitespace (a newline
    // from `curl -d @file`), `{}` and an empty list are refused, saying how to ask for
    // all (no body) or for some (`"ids"`); whitespace used to purge everything.
    let purge_url = format!("{base}/v1/pipelines/{name}/dead");
    let replay_url = format!("{base}/v1/pipelines/{name}/dead/replay");
    let (delete, post) = (reqwest::Method::DELETE, reqwest::Method::POST);
    for (method, url, body) in [
        (&delete, &purge_url, " "),
        (&delete, &purge_url, "\n"),
        (&delete, &purge_url, " \r\n\t"),
        (&delete, &purge_url, "{}"),
        (&post, &replay_url, "\n"),
        (&post, &replay_url, "{}"),
        (&post, &replay_url, r#"{"ids": []}"#),
    ] {
        let response = reqwest::Client::new()
            .request(method.clone(), url.as_str())
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .expect("answer");
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await.expect("JSON");
        assert_eq!(status, 400, "{method} {body:?}: {answer}");
        let error = answer["error"].as_str().expect("error");
        assert!(
            error.contains("no body") && error.contains("\"ids\""),
            "{method} {body:?}: {error}"
        );
    }
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 2, "nothing done");
    let untyped = reqwest::Client::new()
        .delete(format!("{base}/v1/pipelines/{name}/dead"))
        .bearer_auth(TOKEN)
        .body(r#"{"ids": ["5"]}"#)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(untyped.status(), 200);
    let answer: serde_json::Value = untyped.json().await.expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({ "purged": 0, "not_found": ["5-0"] })
    );
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 2);
    let body = serde_json::json!({ "ids": ["01796527819468-0", "1796527819468-0", "5"] });
    let (status, answer) = purge_call(&base, name, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({ "purged": 1, "not_found": ["5-0"] })
    );
    let left = entries(&mut con, "ORDERS_STREAM:dead").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, "1796527819469-0");
    host.stop().await;
}

/// `GET {base}{path}` with the token: status and JSON answer.
async fn get_json(base: &str, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Issue 28 (2): a partitioned pipeline's dead letters are in one stream per partition,
/// and the API works on all of them: the view lists them, pages read them in partition
/// order with a cursor that names the stream (`INDEX/ID`), replay and purge (by ID: not
/// found means found in none) act on each. They used to read, replay and purge
/// `ORDERS_STREAM:dead`, a stream that never exists.
#[tokio::test]
async fn dead_letters_of_a_partitioned_pipeline() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let name = "ops-parts";
    let mut config = payments(name).partitions(4).with_admin().config();
    if let Some(admin) = &mut config.admin {
        admin.token = Some(TOKEN.to_owned());
    }
    let host = TestDaemon::start(&redis, config).await;
    let base = format!("http://{}", host.admin());
    let dead = |p: usize| format!("ORDERS_STREAM:dead:{{{p}}}");
    let (_, view) = get_json(&base, &format!("/v1/pipelines/{name}")).await;
    assert_eq!(
        view["dead_letters"],
        serde_json::json!((0..4).map(dead).collect::<Vec<_>>()),
        "{view}"
    );
    add_letters_to(
        &mut con,
        &dead(1),
        &[("1-0", Some("a")), ("5-0", Some("b"))],
    )
    .await;
    add_letters_to(&mut con, &dead(2), &[("2-0", Some("c"))]).await;
    add_letters_to(
        &mut con,
        &dead(3),
        &[("3-0", Some("d")), ("4-0", Some("e"))],
    )
    .await;

    // Pages of two, partition by partition; the cursor names the stream.
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    let mut path = format!("/v1/pipelines/{name}/dead?count=2");
    loop {
        let (status, page) = get_json(&base, &path).await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().expect("entries");
        assert!(entries.len() <= 2, "{page}");
        for e in entries {
            seen.push(format!(
                "{} {}",
                e["stream"].as_str().expect("stream"),
                e["id"].as_str().expect("id")
            ));
        }
        let Some(next) = page["next"].as_str() else {
            break;
        };
        cursors.push(next.to_owned());
        path = format!("/v1/pipelines/{name}/dead?count=2&after={next}");
        assert!(cursors.len() < 10, "paging does not end: {cursors:?}");
    }
    let expected: Vec<String> = [(1, "1-0"), (1, "5-0"), (2, "2-0"), (3, "3-0"), (3, "4-0")]
        .iter()
        .map(|(p, id)| format!("{} {id}", dead(*p)))
        .collect();
    assert_eq!(seen, expected, "cursors {cursors:?}");
    assert_eq!(cursors[0], "1/5-0");
    for bad in ["4/1-0", "x/1-0", "1/notanid", "notanid"] {
        let (status, answer) =
            get_json(&base, &format!("/v1/pipelines/{name}/dead?after={bad}")).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }

    // By ID, across partitions.
    let ids = serde_json::json!({ "ids": ["2-0", "999-0"] });
    let (status, answer) = replay_call(&base, name, Some(ids)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({ "replayed": 1, "kept": [], "not_found": ["999-0"] })
    );
    assert_eq!(
        len(&mut con, "ORDERS_STREAM:{2}").await,
        1,
        "back on its partition's input"
    );
    let (_, answer) = purge_call(
        &base,
        name,
        Some(serde_json::json!({ "ids": ["3-0", "2-0"] })),
    )
    .await;
    assert_eq!(
        answer,
        serde_json::json!({ "purged": 1, "not_found": ["2-0"] })
    );

    // All: every partition's letters, each back to its own partition.
    let (_, answer) = replay_call(&base, name, None).await;
    assert_eq!(answer["replayed"], 3, "{answer}");
    assert_eq!(len(&mut con, "ORDERS_STREAM:{1}").await, 2);
    assert_eq!(len(&mut con, "ORDERS_STREAM:{3}").await, 1);
    add_letters_to(&mut con, &dead(0), &[("7-0", None)]).await;
    add_letters_to(&mut con, &dead(3), &[("8-0", None)]).await;
    let (_, answer) = purge_call(&base, name, None).await;
    assert_eq!(answer, serde_json::json!({ "purged": 2, "not_found": [] }));
    for p in 0..4 {
        assert_eq!(len(&mut con, &dead(p)).await, 0, "{}", dead(p));
    }
    host.stop().await;
}

/// Issue 28 (3): `sluice dlq purge` deletes the letters it counted, not the ones that
/// arrived while it asked. One letter when it asks on a terminal (a pty here), five more
/// before the answer: it purges one and says so; the five stay. It used to ask about 1
/// and delete 6.
#[tokio::test]
async fn dlq_purge_deletes_only_the_letters_it_asked_about() {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    let TestContext { redis, mut con } = TestContext::new().await;
    add_letters(&mut con, &[("1-0", Some("a"))]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ConfigBuilder::new()
        .redis_url(redis.url())
        .pipeline(payments("ops-asked"))
        .write(dir.path());
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors into the integers given; each is then
    // owned by exactly one `File`.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty");
    let (mut terminal, tty) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["dlq", "purge", "ops-asked", "-c"])
        .arg(&path)
        .stdin(tty)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    let mut stderr = child.stderr.take().expect("stderr");
    let asked = tokio::task::spawn_blocking(move || {
        let mut shown = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&shown).contains("[y/N]") {
            if stderr.read(&mut byte).expect("read stderr") == 0 {
                break;
            }
            shown.push(byte[0]);
        }
        String::from_utf8_lossy(&shown).into_owned()
    })
    .await
    .expect("reader");
    assert!(
        asked.contains("purge 1 dead letter of pipeline \"ops-asked\"? [y/N]"),
        "{asked}"
    );
    for _ in 0..5 {
        add(&mut con, "ORDERS_STREAM:dead", &letter(None)).await;
    }
    terminal.write_all(b"y\n").expect("answer");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("exit"))
        .await
        .expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("purged 1 dead letter from ORDERS_STREAM:dead"),
        "{stdout}"
    );
    assert_eq!(
        len(&mut con, "ORDERS_STREAM:dead").await,
        5,
        "the later letters stay"
    );
}

/// Adds `n` dead letters (valid orders) to `ORDERS_STREAM:dead`, a thousand to a round
/// trip.
async fn add_many_letters(con: &mut redis::aio::MultiplexedConnection, n: usize) {
    for start in (0..n).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in start..n.min(start + 1_000) {
            pipe.xadd("ORDERS_STREAM:dead", "*", &letter(Some(&format!("o{i}"))))
                .ignore();
        }
        let () = pipe.query_async(con).await.expect("XADD letters");
    }
}

/// The number in `text` just before `marker` (`"at least 3000 dead letters"`).
fn count_before(text: &str, marker: &str) -> usize {
    let head = &text[..text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {text}"))];
    let digits: String = head
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no count before {marker:?} in {text}"))
}

/// Issue 28 (5): a replay cut short by a Redis failure says how many letters it had
/// replayed and to run it again, over HTTP (the 503 answer) and from the shell. 20,000
/// letters, replayed through a proxy that slows each call down; the connection is cut
/// once some chunks have moved. The answer used to say only "redis unavailable".
#[tokio::test]
async fn a_replay_cut_short_says_how_many_were_replayed() {
    const LETTERS: usize = 20_000;
    let TestContext { redis, mut con } = TestContext::new().await;
    let name = "ops-cut";
    let proxy = proxy::Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let mut config = payments(name).with_admin().config();
    if let Some(admin) = &mut config.admin {
        admin.token = Some(TOKEN.to_owned());
    }
    let host = TestDaemon::start_at(&proxy.url(None), config).await;
    let base = format!("http://{}", host.admin());
    // Paused: the replayed orders wait on the input, where they are counted.
    reqwest::Client::new()
        .post(format!("{base}/v1/pipelines/{name}/pause"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    eventually("paused", Duration::from_secs(10), || async {
        pipeline_view(&base, name)
            .await
            .filter(|v| v.status.state == "paused")
    })
    .await;
    let cut_when_some_moved = |con: &redis::aio::MultiplexedConnection| {
        let con = con.clone();
        async move {
            eventually("a chunk replayed", Duration::from_secs(30), || {
                let mut con = con.clone();
                async move {
                    (len(&mut con, "ORDERS_STREAM:dead").await <= LETTERS - 2_000).then_some(())
                }
            })
            .await;
        }
    };

    add_many_letters(&mut con, LETTERS).await;
    proxy.delay_requests(Duration::from_millis(100));
    let call = tokio::spawn({
        let base = base.clone();
        async move { replay_call(&base, name, None).await }
    });
    cut_when_some_moved(&con).await;
    proxy.refuse_next(usize::MAX);
    proxy.cut();
    let (status, answer) = call.await.expect("call");
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().expect("error");
    assert!(error.contains("call again to replay the rest"), "{error}");
    let replayed = count_before(error, "dead letters were replayed");
    let moved = len(&mut con, "ORDERS_STREAM").await;
    assert!(
        replayed >= 2_000 && replayed <= moved,
        "{replayed} said, {moved} moved: {error}"
    );
    assert_eq!(moved + len(&mut con, "ORDERS_STREAM:dead").await, LETTERS);
    host.abandon().await;

    // From the shell.
    let () = redis::pipe()
        .del("ORDERS_STREAM")
        .del("ORDERS_STREAM:dead")
        .query_async(&mut con)
        .await
        .expect("DEL");
    add_many_letters(&mut con, LETTERS).await;
    proxy.refuse_next(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config_file(&dir, &payments(name).to_string());
    let url = proxy.url(None);
    let shell = tokio::task::spawn_blocking(move || dlq(&path, &["replay", name, "--redis", &url]));
    cut_when_some_moved(&con).await;
    proxy.refuse_next(usize::MAX);
    proxy.cut();
    let (code, out, err) = shell.await.expect("sluice dlq");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("run it again to replay the rest"), "{err}");
    let replayed = count_before(&err, "dead letters were replayed");
    let moved = len(&mut con, "ORDERS_STREAM").await;
    assert!(
        replayed >= 2_000 && replayed <= moved,
        "{replayed} said, {moved} moved: {err}"
    );
}

/// Issue 28 (6): `--count` is bounded by the command line (1 to 100,000), before Redis
/// is asked; a count past Redis's range used to print Redis's raw error.
#[tokio::test]
async fn dlq_list_count_is_bounded() {
    let TestContext { redis, .. } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ConfigBuilder::new()
        .redis_url(redis.url())
        .pipeline(payments("ops-count"))
        .write(dir.path());
    for count in ["9223372036854775808", "0", "100001"] {
        let (code, out, err) = dlq(&path, &["list", "ops-count", "--count", count]);
        assert_eq!(code, 2, "{count}: {out}{err}");
        assert!(
            err.contains("--count") && err.contains("1..=100000"),
            "{count}: {err}"
        );
        assert!(!err.contains("ERR"), "{count}: {err}");
    }
    let (code, out, err) = dlq(&path, &["list", "ops-count", "--count", "100000"]);
    assert_eq!(code, 0, "{out}{err}");
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
    let path = ConfigBuilder::new()
        .redis_url(redis.url())
        .pipeline(payments("ops-cli"))
        .write(dir.path());
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
    assert!(sluice(&["purge", "ops-cli", "--yes"]).contains("purged 1 dead letter from"));
}

/// `sluice dlq ARGS -c path`: exit code, stdout, stderr (stdin is not a terminal).
fn dlq(path: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dlq")
        .args(args)
        .arg("-c")
        .arg(path)
        .output()
        .expect("run");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Issue 28.3 from the shell: an ID that is not one is named before Redis is asked (no
/// Lua error); each ID given is reported (replayed, purged, not found), and when none is
/// found the exit status is 1; `purge --id` deletes only those; `purge` of everything
/// asks first, so without a terminal it needs `--yes`.
#[tokio::test]
async fn dlq_command_line_reports_every_id() {
    let TestContext { redis, mut con } = TestContext::new().await;
    add_letters(
        &mut con,
        &[
            ("1796527819466-0", Some("a")),
            ("1796527819467-5", Some("b")),
            ("1796527819468-0", Some("c")),
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ConfigBuilder::new()
        .redis_url(redis.url())
        .pipeline(payments("ops-ids"))
        .write(dir.path());

    let (code, out, err) = dlq(&path, &["replay", "ops-ids", "--id", "notanid"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("dead-letter ID \"notanid\" is not a stream entry ID"),
        "{err}"
    );
    assert_eq!(err.matches("is not a stream entry ID").count(), 1, "{err}");
    assert!(!err.contains("ERR") && !err.contains("script"), "{err}");

    let (code, out, err) = dlq(&path, &["replay", "ops-ids", "--id", "999-0"]);
    assert_eq!(code, 1, "nothing matched: {out}{err}");
    assert!(out.contains("not found 999-0"), "{out}");

    let (code, out, err) = dlq(
        &path,
        &[
            "replay",
            "ops-ids",
            "--id",
            "01796527819466-0",
            "--id",
            "999",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("replayed 1796527819466-0 (ORDERS_STREAM:dead to ORDERS_STREAM)"),
        "{out}"
    );
    assert!(out.contains("not found 999-0"), "{out}");
    assert_eq!(len(&mut con, "ORDERS_STREAM").await, 1);

    let (code, out, err) = dlq(&path, &["purge", "ops-ids"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(
        len(&mut con, "ORDERS_STREAM:dead").await,
        2,
        "nothing purged"
    );

    let (code, out, err) = dlq(
        &path,
        &[
            "purge",
            "ops-ids",
            "--id",
            "1796527819467-05",
            "--id",
            "5-0",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("purged 1796527819467-5 (ORDERS_STREAM:dead)"),
        "{out}"
    );
    assert!(out.contains("not found 5-0"), "{out}");
    let (code, out, _) = dlq(&path, &["purge", "ops-ids", "--id", "5-0"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 1);

    let (code, out, err) = dlq(&path, &["purge", "ops-ids", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("purged 1 dead letter from ORDERS_STREAM:dead"),
        "{out}"
    );
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 0);
}

/// The README's `sluice dlq` lines show `--id` and `--yes` for exactly the subcommands
/// that take them.
#[test]
fn dlq_usage_in_the_readme_matches_the_command() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README");
    let mut seen = std::collections::BTreeSet::new();
    for line in readme.lines() {
        let Some(start) = line.find("sluice dlq ") else {
            continue;
        };
        let usage = line[start..].split(['`', '#']).next().unwrap_or_default();
        let Some(subcommands) = usage.split_whitespace().nth(2) else {
            continue;
        };
        for sub in subcommands.split('|') {
            let help = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["dlq", sub, "--help"])
                .output()
                .expect("run");
            assert!(
                help.status.success(),
                "sluice dlq {sub} --help (README: {usage})"
            );
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in ["--id", "--yes", "--count"] {
                assert_eq!(
                    usage.contains(flag),
                    help.contains(flag),
                    "README {usage:?} and `sluice dlq {sub} --help` disagree on {flag}:\n{help}"
                );
            }
            seen.insert(sub.to_owned());
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["list", "purge", "replay"]
    );
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
    let artifacts = workspace().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("dashboard.png");
    // A screenshot left by an earlier run must not pass for this one.
    let _ = std::fs::remove_file(&screenshot);
    let _turn = browser_turn().await;
    let output = browser("dashboard.mjs")
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
    wait_paused(&base, "ops-dashboard").await;
    let before = len(&mut con, "PAYMENTS_STREAM").await;
    stays("no commits while paused", Duration::from_secs(1), || {
        let mut con = con.clone();
        async move { len(&mut con, "PAYMENTS_STREAM").await == before }
    })
    .await;
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

/// Every per-pipeline series is in `/metrics` from the pipeline's start, at 0 (a
/// dashboard panel or alert on `sluice_handler_failures_total` sees it before the first
/// failure); and `promtool check metrics` accepts the page once traffic, failures and
/// dead letters went through.
#[tokio::test]
async fn every_series_exists_from_the_start_and_promtool_accepts_them() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let (host, base) = daemon(&redis, "from-start").await;
    let page = || async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text")
    };
    let text = page().await;
    for name in [
        "sluice_messages_read_total",
        "sluice_messages_committed_total",
        "sluice_messages_retried_total",
        "sluice_messages_dead_lettered_total",
        "sluice_entries_unowned_total",
        "sluice_handler_throttled_total",
        "sluice_batch_fallbacks_total",
        "sluice_plugin_reloads_total",
        "sluice_plugin_load_failures_total",
        "sluice_pipeline_restarts_total",
        "sluice_entries_adopted_total",
        "sluice_consumer_group_recreated_total",
        "sluice_state_reads_total",
        "sluice_state_writes_total",
        "sluice_state_conflicts_total",
    ] {
        assert_eq!(metric(&text, name, "from-start"), 0.0, "{name}");
    }
    for histogram in [
        "sluice_handler_duration_seconds",
        "sluice_end_to_end_latency_seconds",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(histogram) && l.contains("pipeline=\"from-start\"")),
            "no {histogram} in:\n{text}"
        );
    }
    for kind in ["retry", "reject", "trap", "timeout", "limit", "instantiate"] {
        let line =
            format!("sluice_handler_failures_total{{kind=\"{kind}\",pipeline=\"from-start\"}} 0");
        let alt =
            format!("sluice_handler_failures_total{{pipeline=\"from-start\",kind=\"{kind}\"}} 0");
        assert!(
            text.lines().any(|l| l == line || l == alt),
            "no {line} in:\n{text}"
        );
    }
    add_orders(&mut con, 20, 5).await;
    wait_len(&con, "ORDERS_STREAM:dead", 5).await;
    wait_len(&con, "PAYMENTS_STREAM", 20).await;
    let text = page().await;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    use std::io::Write;
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    host.stop().await;
}
