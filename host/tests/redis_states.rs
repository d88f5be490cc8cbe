//! Sluice against every state a real Redis can be in: a consumer group lost at runtime,
//! an ACL user missing a permission, a failover that demotes the node Sluice is on, a
//! network path that stops moving bytes, a consumer deleted by an operator, a value the
//! server refuses. Real redis-servers, a TCP proxy of the harness for network faults, the
//! daemon in-process with its admin API, a real HTTP client. In each, nothing may be
//! dead-lettered for the environment's fault, nothing lost, nothing wedged.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use sluice::admin::PipelineView;
use sluice_testkit::*;

/// An echo pipeline named `name` on `IN`/`G` → `OUT`, with the admin API on.
fn echo_config(
    name: &str,
    settings: impl FnOnce(PipelineBuilder) -> PipelineBuilder,
) -> sluice::config::Config {
    settings(echo(name)).with_admin().config()
}

async fn add_n(con: &mut MultiplexedConnection, n: usize, tag: &str) {
    for i in 0..n {
        add(con, "IN", &[("n", &format!("{tag}{i}"))]).await;
    }
}

async fn view(base: &str, name: &str) -> PipelineView {
    reqwest::get(format!("{base}/v1/pipelines/{name}"))
        .await
        .expect("GET pipeline")
        .json()
        .await
        .expect("pipeline JSON")
}

/// Polls pipeline `name`'s status until `ok` holds (failing after `timeout` with `what`).
async fn status_until(
    base: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&PipelineView) -> bool,
) -> PipelineView {
    let ok = &ok;
    eventually_ok(what, timeout, || async move {
        let v = view(base, name).await;
        if ok(&v) {
            Ok(v)
        } else {
            Err(format!("status {v:?}"))
        }
    })
    .await
}

/// The last error of a pipeline holding an entry it can neither commit nor dead-letter.
async fn held_entry_error(base: &str, name: &str) -> String {
    let held = |v: &PipelineView| {
        v.status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot be committed"))
    };
    let v = status_until(
        base,
        name,
        "the held entry to be reported",
        Duration::from_secs(30),
        held,
    )
    .await;
    v.status.last_error.unwrap_or_default()
}

async fn ready(base: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("/readyz answers within 3 s");
    let status = response.status().as_u16();
    (status, response.json().await.expect("readyz JSON"))
}

async fn raw(con: &mut MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(con)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Creates ACL user `sluice` (password `pw`) that may run every command on keys `IN` and
/// `IN:dead` but not `OUT`; returns its URL.
async fn user_without_out(redis: &RedisServer, con: &mut MultiplexedConnection) -> String {
    raw(
        con,
        &[
            "ACL",
            "SETUSER",
            "sluice",
            "on",
            ">pw",
            "~IN",
            "~IN:dead",
            "~IN:consumer*",
            "+@all",
        ],
    )
    .await;
    format!("redis://sluice:pw@127.0.0.1:{}", redis.port())
}

/// Stays `n` for a while (no late duplicates).
async fn stays_at(con: &mut MultiplexedConnection, stream: &str, n: usize) {
    let what = format!("{stream} holds {n} entries after settling");
    stays(&what, Duration::from_millis(800), || {
        let mut con = con.clone();
        async move { len(&mut con, stream).await == n }
    })
    .await;
}

/// Case 1: `FLUSHALL` and `XGROUP DESTROY` at runtime. The group is created again after
/// the last entry known delivered, new entries are handled (and old ones not again), the
/// status shows the incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_consumer_group_is_created_again() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(&redis, echo_config("regroup", |p| p)).await;
    let base = format!("http://{}", host.admin.expect("admin"));
    add_n(&mut con, 5, "a").await;
    wait_len(&con, "OUT", 5).await;

    raw(&mut con, &["FLUSHALL"]).await;
    add_n(&mut con, 5, "b").await;
    wait_len(&con, "OUT", 5).await;

    // Lost again, and noticed while the stream is empty: entries added afterwards are
    // all new, whatever their IDs (here explicit ones far below the old stream's).
    raw(&mut con, &["FLUSHALL"]).await;
    eventually(
        "the group to be created again",
        Duration::from_secs(10),
        || {
            let mut con = con.clone();
            async move {
                let groups: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg("IN")
                    .query_async(&mut con)
                    .await;
                groups
                    .ok()
                    .filter(|g| matches!(g, redis::Value::Array(a) if !a.is_empty()))
            }
        },
    )
    .await;
    for i in 1..=5 {
        raw(
            &mut con,
            &["XADD", "IN", &format!("5-{i}"), "n", &format!("b{i}")],
        )
        .await;
    }
    wait_len(&con, "OUT", 5).await;
    eventually(
        "nothing pending after FLUSHALL",
        Duration::from_secs(10),
        || {
            let mut con = con.clone();
            async move { (pending(&mut con, "IN", "G").await == 0).then_some(()) }
        },
    )
    .await;

    raw(&mut con, &["XGROUP", "DESTROY", "IN", "G"]).await;
    add_n(&mut con, 5, "c").await;
    wait_len(&con, "OUT", 10).await;
    stays_at(&mut con, "OUT", 10).await;
    let out = entries(&mut con, "OUT").await;
    let tags: Vec<&str> = out.iter().filter_map(|(_, f)| field(f, "n")).collect();
    assert!(
        tags[5..].iter().all(|t| t.starts_with('c')),
        "only the new entries after the destroy: {tags:?}"
    );
    assert_eq!(len(&mut con, "IN:dead").await, 0);

    let status = view(&base, "regroup").await;
    assert_eq!(status.status.state, "running");
    let nogroup: Vec<_> = status
        .status
        .incidents
        .iter()
        .filter(|i| i.message.contains("NOGROUP") && i.message.contains("at ID"))
        .collect();
    assert!(
        nogroup.len() >= 2,
        "both losses are incidents: {:?}",
        status.status.incidents
    );
    host.stop().await;
}

/// Case 2: an ACL user without the output key. Nothing is dead-lettered; the pipeline
/// shows an error naming the permission and the key, readiness reports it; once granted,
/// every entry goes to `OUT` exactly once. A user that cannot read the input fails
/// start-up as a permission problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_holds_entries_until_granted() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let url = user_without_out(&redis, &mut con).await;
    raw(&mut con, &["XGROUP", "CREATE", "IN", "G", "0", "MKSTREAM"]).await;
    // A backlog of full batches: while the first commit is held, later batches are
    // read ahead; none may be handled twice once the permission comes.
    add_n(&mut con, 1_000, "x").await;
    let host = TestDaemon::start_at(&url, echo_config("noperm", |p| p)).await;
    let base = format!("http://{}", host.admin.expect("admin"));

    let status = status_until(
        &base,
        "noperm",
        "the pipeline to show the permission error",
        Duration::from_secs(10),
        |v| v.status.state == "error",
    )
    .await;
    let error = status.status.error.expect("an error in state error");
    assert!(
        error.contains("NOPERM")
            && error.contains("\"OUT\"")
            && error.contains("ACL SETUSER sluice ~OUT"),
        "{error}"
    );
    let (code, body) = ready(&base).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["pipelines"]["noperm"]
            .as_str()
            .is_some_and(|r| r.contains("NOPERM")),
        "{body}"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sluice_pipeline_up{pipeline=\"noperm\"} 0")),
        "pipeline_up is 0"
    );
    assert_eq!(len(&mut con, "IN:dead").await, 0, "nothing dead-lettered");
    assert!(
        pending(&mut con, "IN", "G").await >= 100,
        "entries stay pending"
    );
    assert_eq!(len(&mut con, "OUT").await, 0);

    // Held a while (read-ahead batches wait, idle, as long).
    tokio::time::sleep(Duration::from_secs(3)).await;
    raw(&mut con, &["ACL", "SETUSER", "sluice", "~OUT"]).await;
    wait_len_at_least(&con, "OUT", 1_000).await;
    stays_at(&mut con, "OUT", 1_000).await;
    let out = entries(&mut con, "OUT").await;
    let tags: std::collections::HashSet<&str> =
        out.iter().filter_map(|(_, f)| field(f, "n")).collect();
    assert_eq!(tags.len(), 1_000, "every entry once");
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    assert_eq!(len(&mut con, "IN:dead").await, 0);
    let ok = eventually("readiness back", Duration::from_secs(5), || {
        let base = base.clone();
        async move { (ready(&base).await.0 == 200).then_some(()) }
    });
    ok.await;
    assert_eq!(view(&base, "noperm").await.status.state, "running");

    // The user goes away at runtime (a restart without the ACL file): its password is
    // reported as not accepted, not as a key permission; back once the user is.
    raw(&mut con, &["ACL", "DELUSER", "sluice"]).await;
    add_n(&mut con, 1, "y").await;
    let status = status_until(
        &base,
        "noperm",
        "the pipeline to show the login error",
        Duration::from_secs(15),
        |v| {
            v.status.state == "error"
                && v.status
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("password is not accepted"))
        },
    )
    .await;
    let error = status.status.error.unwrap_or_default();
    assert!(
        error.contains("password is not accepted") && !error.contains("~IN"),
        "{error}"
    );
    raw(
        &mut con,
        &[
            "ACL",
            "SETUSER",
            "sluice",
            "on",
            ">pw",
            "~IN",
            "~IN:dead",
            "~IN:consumer*",
            "~OUT",
            "+@all",
        ],
    )
    .await;
    wait_len(&con, "OUT", 1_001).await;
    host.stop().await;

    // A user that may not read the input: start-up fails, naming the permission. (It
    // may hold its consumer name: that is checked first, and has its own message.)
    raw(
        &mut con,
        &[
            "ACL",
            "SETUSER",
            "blind",
            "on",
            ">pw",
            "~OTHER",
            "~IN:consumer*",
            "+@all",
        ],
    )
    .await;
    let mut cfg = echo_config("blind", |p| p);
    cfg.redis.url = Some(format!("redis://blind:pw@127.0.0.1:{}", redis.port()));
    let error = match sluice::start(cfg, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("start-up succeeds without permission on the input"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("NOPERM") && error.contains("\"IN\"") && !error.contains("unavailable"),
        "{error}"
    );
    assert!(!error.contains(":pw@"), "no password in errors: {error}");
}

/// Case 3: a failover demotes the node Sluice is connected to (through a proxy that then
/// sends new connections to the new primary). Sluice leaves the demoted node and carries
/// on with the new primary; nothing dead-lettered, nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_primary_is_left_for_the_new_one() {
    let a = RedisServer::start().expect("redis a");
    let b = RedisServer::start().expect("redis b");
    let mut con_a = connect(&a).await;
    let mut con_b = connect(&b).await;
    let port = |r: &RedisServer| r.port().to_string();
    raw(&mut con_b, &["REPLICAOF", "127.0.0.1", &port(&a)]).await;
    let proxy = Proxy::start(([127, 0, 0, 1], a.port()).into()).await;
    let host = TestDaemon::start_at(&proxy.url(None), echo_config("failover", |p| p)).await;
    add_n(&mut con_a, 10, "a").await;
    wait_len(&con_a, "OUT", 10).await;
    eventually("b to replicate", Duration::from_secs(10), || {
        let mut con = con_b.clone();
        async move { (len(&mut con, "OUT").await == 10).then_some(()) }
    })
    .await;

    // The failover: new connections reach b; b is promoted; a becomes its replica.
    proxy.redirect(([127, 0, 0, 1], b.port()).into());
    raw(&mut con_b, &["REPLICAOF", "NO", "ONE"]).await;
    raw(&mut con_a, &["REPLICAOF", "127.0.0.1", &port(&b)]).await;
    add_n(&mut con_b, 10, "b").await;
    wait_len(&con_b, "OUT", 20).await;
    stays_at(&mut con_b, "OUT", 20).await;
    assert_eq!(len(&mut con_b, "IN:dead").await, 0, "nothing dead-lettered");
    assert_eq!(pending(&mut con_b, "IN", "G").await, 0);
    host.stop().await;
}

/// Case 4: the network path stops moving bytes without closing. Every call has a
/// deadline: the stalled connections are dropped and opened again, entries added during
/// the stall are handled within seconds, and `/readyz` answers within its own deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_is_dropped_and_opened_again() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let host = TestDaemon::start_at(&proxy.url(None), echo_config("stall", |p| p)).await;
    let base = format!("http://{}", host.admin.expect("admin"));
    add_n(&mut con, 5, "a").await;
    wait_len(&con, "OUT", 5).await;
    assert_eq!(ready(&base).await.0, 200);

    proxy.freeze();
    let frozen_at = Instant::now();
    add_n(&mut con, 5, "b").await;
    let asked = Instant::now();
    let (code, body) = ready(&base).await;
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "readyz answered in {:?}",
        asked.elapsed()
    );
    assert_eq!(code, 503, "the stalled connection is not ready: {body}");
    wait_len(&con, "OUT", 10).await;
    let recovered = frozen_at.elapsed();
    println!("entries added during the stall handled after {recovered:?}");
    assert!(recovered < Duration::from_secs(15), "took {recovered:?}");
    stays_at(&mut con, "OUT", 10).await;
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    eventually("readiness back", Duration::from_secs(5), || {
        let base = base.clone();
        async move { (ready(&base).await.0 == 200).then_some(()) }
    })
    .await;
    host.stop().await;
}

/// Wide entries on a slow link: a batch's reply takes longer to arrive than a read's
/// deadline (the proxy passes replies at 400 kB/s; 50 entries of 2,000 fields are
/// ~2.6 MB). Reads and claims ask for fewer entries after each missed deadline, so every
/// entry is handled once and nothing stays pending, instead of every read and every claim
/// of the whole batch missing its deadline for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_too_large_to_arrive_in_time_are_asked_in_smaller_parts() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let host = TestDaemon::start_at(
        &proxy.url(None),
        echo_config("slow-link", |p| {
            p.batch(50)
                .retry_backoff(Duration::from_millis(200), Duration::from_secs(1))
                .timeout(Duration::from_secs(30))
        }),
    )
    .await;
    proxy.limit_replies(400_000);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..50 {
        let mut fields: Vec<(String, String)> = (0..2_000)
            .map(|f| (format!("f{f}"), format!("v{f}")))
            .collect();
        fields.push(("n".into(), i.to_string()));
        pipe.xadd("IN", "*", &fields).ignore();
    }
    let () = pipe.query_async(&mut con).await.expect("XADD");
    let started = Instant::now();
    eventually("all 50 handled", Duration::from_secs(60), || {
        let mut con = con.clone();
        async move { (len(&mut con, "OUT").await >= 50).then_some(()) }
    })
    .await;
    println!("50 wide entries handled in {:?}", started.elapsed());
    stays_at(&mut con, "OUT", 50).await;
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    let out = entries(&mut con, "OUT").await;
    let mut seen: Vec<&str> = out.iter().map(|(_, f)| field(f, "n").expect("n")).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 50, "each once");
    host.stop().await;
}

/// Case 5: an operator deletes the consumer (`XGROUP DELCONSUMER`) while its handler
/// runs. The entries it held were pending for nobody: their outputs are written once
/// (adopted), the status shows it, nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_a_deleted_consumer_are_not_lost() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let mut cfg = echo_config("delconsumer", |p| p.timeout(Duration::from_secs(5)));
    cfg.redis.consumer = Some("worker".into());
    raw(&mut con, &["XGROUP", "CREATE", "IN", "G", "0", "MKSTREAM"]).await;
    for i in 0..3 {
        add(
            &mut con,
            "IN",
            &[("action", "sleep"), ("ms", "600"), ("n", &i.to_string())],
        )
        .await;
    }
    let host = TestDaemon::start(&redis, cfg).await;
    let base = format!("http://{}", host.admin.expect("admin"));
    eventually(
        "the entries to be delivered",
        Duration::from_secs(5),
        || {
            let mut con = con.clone();
            async move { (pending(&mut con, "IN", "G").await == 3).then_some(()) }
        },
    )
    .await;
    raw(&mut con, &["XGROUP", "DELCONSUMER", "IN", "G", "worker"]).await;
    wait_len(&con, "OUT", 3).await;
    stays_at(&mut con, "OUT", 3).await;
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    assert_eq!(len(&mut con, "IN:dead").await, 0);
    let status = view(&base, "delconsumer").await;
    assert!(
        status
            .status
            .incidents
            .iter()
            .any(|i| i.message.contains("removed from the pending entries list")),
        "{:?}",
        status.status.incidents
    );
    host.stop().await;
}

/// Case 6: a value the server now refuses (`proto-max-bulk-len` lowered below an entry's
/// size): Redis closes the connection on every commit that carries it. The commit is
/// split until that entry is alone; the others go through; that one is held pending with
/// a clear error (its dead letter is refused the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_server_refuses_is_isolated() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let big = "x".repeat(2 << 20);
    let big_id = add(&mut con, "IN", &[("big", &big)]).await;
    raw(&mut con, &["CONFIG", "SET", "proto-max-bulk-len", "1mb"]).await;
    add_n(&mut con, 20, "s").await;
    let host = TestDaemon::start(&redis, echo_config("toobig", |p| p)).await;
    let base = format!("http://{}", host.admin.expect("admin"));
    wait_len(&con, "OUT", 20).await;
    let error = held_entry_error(&base, "toobig").await;
    assert!(
        error.contains(&big_id) && error.contains("proto-max-bulk-len"),
        "{error}"
    );
    assert_eq!(
        len(&mut con, "OUT").await,
        20,
        "the small entries, once each"
    );
    let pending_ids: redis::Value = raw(&mut con, &["XPENDING", "IN", "G", "-", "+", "10"]).await;
    assert!(
        format!("{pending_ids:?}").contains(&big_id),
        "the big entry stays pending: {pending_ids:?}"
    );
    assert_eq!(pending(&mut con, "IN", "G").await, 1);
    host.stop().await;
}

/// Case 6, the other way a server refuses a value: it closes the connection without a
/// reply (here the harness's proxy hangs up on any request over 1 MiB). A commit that
/// keeps losing its connection while Redis answers a `PING` is split until the entry
/// carrying the value is alone; the rest go through, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_always_loses_its_connection_is_split() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    proxy.cut_requests_over(1 << 20);
    add_n(&mut con, 5, "s").await;
    let big_id = add(&mut con, "IN", &[("big", &"y".repeat(3 << 19))]).await;
    add_n(&mut con, 15, "t").await;
    let host = TestDaemon::start_at(&proxy.url(None), echo_config("hangup", |p| p)).await;
    let base = format!("http://{}", host.admin.expect("admin"));
    wait_len(&con, "OUT", 20).await;
    let error = held_entry_error(&base, "hangup").await;
    assert!(
        error.contains(&big_id) && error.contains("closed the connection"),
        "{error}"
    );
    stays_at(&mut con, "OUT", 20).await;
    let out = entries(&mut con, "OUT").await;
    let mut tags: Vec<&str> = out.iter().filter_map(|(_, f)| field(f, "n")).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), 20, "each small entry once");
    assert_eq!(
        pending(&mut con, "IN", "G").await,
        1,
        "only the big entry stays pending"
    );
    assert_eq!(len(&mut con, "IN:dead").await, 0);
    host.stop().await;
}

/// Redis unreachable for a moment while a commit is in flight: its connection drops,
/// and the next connections are refused, then all is well again. A dropped connection
/// counts against the entry only while Redis answers a `PING` right after; failures to
/// connect never do. The entry is committed once, not dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_moment_never_gets_an_entry_dead_lettered() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    let host = TestDaemon::start_at(
        &proxy.url(None),
        echo_config("unreachable", |p| p.timeout(Duration::from_secs(5))),
    )
    .await;
    add(
        &mut con,
        "IN",
        &[("action", "sleep"), ("ms", "700"), ("n", "1")],
    )
    .await;
    eventually("the call in flight", Duration::from_secs(10), || {
        let mut con = con.clone();
        async move { (pending(&mut con, "IN", "G").await == 1).then_some(()) }
    })
    .await;
    proxy.refuse_next(2);
    proxy.cut();
    wait_len(&con, "OUT", 1).await;
    stays_at(&mut con, "OUT", 1).await;
    assert_eq!(len(&mut con, "IN:dead").await, 0, "nothing dead-lettered");
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// The dashboard, in real headless Chromium, shows a pipeline that cannot use Redis in
/// state `error`, marked red, with the reason the API gives (the missing permission and
/// the command that grants it); a screenshot goes to
/// `target/test-artifacts/dashboard-error.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_pipeline_in_error() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let url = user_without_out(&redis, &mut con).await;
    let host = TestDaemon::start_at(&url, echo_config("dash-error", |p| p)).await;
    let base = format!("http://{}", host.admin.expect("admin"));
    add_n(&mut con, 3, "x").await;
    let artifacts = workspace().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("dashboard-error.png");
    let _ = std::fs::remove_file(&screenshot);
    let _turn = browser_turn().await;
    let output = browser("dashboard-error.mjs")
        .args([&base, "dash-error", "ACL SETUSER sluice ~OUT"])
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

/// Dropped connections at start-up and under the admin API: start-up tries again (the
/// first two connections are closed at once), and `/readyz` replaces a connection it
/// finds closed instead of reporting Redis down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_replaced_at_start_up_and_for_readiness() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port()).into()).await;
    proxy.refuse_next(2);
    let host = TestDaemon::start_at(&proxy.url(None), echo_config("reconnects", |p| p)).await;
    let base = format!("http://{}", host.admin.expect("admin"));
    add_n(&mut con, 3, "a").await;
    wait_len(&con, "OUT", 3).await;
    assert_eq!(ready(&base).await.0, 200);
    // Every other client's connection is closed (this one is skipped: SKIPME yes).
    raw(&mut con, &["CLIENT", "KILL", "TYPE", "normal"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, body) = ready(&base).await;
    assert_eq!(
        body["redis"], true,
        "a closed connection is replaced: {body}"
    );
    eventually("ready again", Duration::from_secs(2), || {
        let base = base.clone();
        async move { (ready(&base).await.0 == 200).then_some(()) }
    })
    .await;
    add_n(&mut con, 3, "b").await;
    wait_len(&con, "OUT", 6).await;
    host.stop().await;
}
