//! Handler state against a real redis-server: what a handler reads and writes is
//! committed with its outputs and acknowledgement, all or nothing, and serialised among
//! concurrent writers; the order-status pipeline keeps exact records through `kill -9`s.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use redis::aio::MultiplexedConnection;
use sluice_testkit::*;

/// The test handler `plugins/stateful` on `IN` (group `G`) → `OUT`, granted `k:`.
fn stateful(name: &str) -> PipelineBuilder {
    echo(name).plugin("{plugin:stateful}").state(&["k:"])
}

/// The tutorial's two pipelines: payments, then order-status with its state.
fn orders_pipelines(settings: impl Fn(PipelineBuilder) -> PipelineBuilder) -> String {
    ConfigBuilder::new()
        .drain_timeout(Duration::from_secs(5))
        .pipeline(settings(payments("payments")))
        .pipeline(settings(
            echo("order-status")
                .plugin("{plugin:order-status}")
                .reading("PAYMENTS_STREAM", "PAYMENTS_CON_GROUP")
                .writing(&["ORDER_STATUS_STREAM"])
                .state(&["order:", "user-total:"]),
        ))
        .to_string()
}

/// Two daemons (consumers `a` and `b`) running the pipelines of `text`.
async fn two_daemons(redis: &RedisServer, text: &str) -> (TestDaemon, TestDaemon) {
    let daemon = |name: &str| {
        let consumer = ConfigBuilder::new().redis("consumer", name).to_string();
        config(&format!("{consumer}{text}"))
    };
    (
        TestDaemon::start(redis, daemon("a")).await,
        TestDaemon::start(redis, daemon("b")).await,
    )
}

/// `n` orders `o0..` from 17 users with amounts in cents that differ, 250 at a time,
/// `pause` apart; returns each user's total.
async fn send_orders(
    mut con: MultiplexedConnection,
    n: usize,
    pause: Duration,
) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for start in (0..n).step_by(250) {
        tokio::time::sleep(pause).await;
        let mut pipe = redis::pipe();
        for i in start..(start + 250).min(n) {
            let user = format!("u{}", i % 17);
            let cents = 100 + (i as i64 * 37) % 9_000;
            *totals.entry(user.clone()).or_default() += cents;
            Order::new(i)
                .amount(format!("{}.{:02}", cents / 100, cents % 100))
                .user(user)
                .add_to(&mut pipe, ORDERS);
        }
        let () = pipe.query_async(&mut con).await.expect("XADD orders");
    }
    totals
}

/// Every order's record holds status 3 and its payment's ID, and every user's counter
/// the exact sum of its orders; fails with what differs.
async fn check_records(
    con: &mut MultiplexedConnection,
    orders: usize,
    totals: &BTreeMap<String, i64>,
) {
    let payments = entries(con, "PAYMENTS_STREAM").await;
    let payment_of: std::collections::HashMap<String, String> = payments
        .iter()
        .filter_map(|(_, f)| {
            Some((
                field(f, "orderId")?.to_owned(),
                field(f, "paymentId")?.to_owned(),
            ))
        })
        .collect();
    let mut pipe = redis::pipe();
    for i in 0..orders {
        pipe.hgetall(format!("order:o{i}"));
    }
    let records: Vec<BTreeMap<String, String>> = pipe.query_async(con).await.expect("HGETALL");
    for (i, record) in records.iter().enumerate() {
        let order = format!("o{i}");
        assert_eq!(
            (
                record.get("orderStatusCode").map(String::as_str),
                record.get("paymentId")
            ),
            (Some("3"), payment_of.get(&order)),
            "order:{order}"
        );
    }
    for (user, want) in totals {
        let got: Option<i64> = redis::cmd("GET")
            .arg(format!("user-total:{user}"))
            .query_async(con)
            .await
            .expect("GET");
        assert_eq!(
            got,
            Some(*want),
            "user-total:{user}: no increment lost, none twice"
        );
    }
}

async fn wait_orders_done(con: &MultiplexedConnection, orders: usize, timeout: Duration) {
    eventually_ok("every order's status update", timeout, || {
        let mut c = con.clone();
        async move {
            let statuses = len(&mut c, "ORDER_STATUS_STREAM").await;
            let pending = pending_or_zero(&mut c, "ORDERS_STREAM", "ORDERS_CON_GROUP").await
                + pending_or_zero(&mut c, "PAYMENTS_STREAM", "PAYMENTS_CON_GROUP").await;
            assert!(statuses <= orders, "duplicate status updates: {statuses}");
            if statuses == orders && pending == 0 {
                Ok(())
            } else {
                Err(format!(
                    "{statuses} of {orders} status updates, {pending} pending"
                ))
            }
        }
    })
    .await
}

#[tokio::test]
async fn order_status_keeps_order_records_and_user_totals() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(&redis, config(&orders_pipelines(|p| p))).await;
    let totals = send_orders(con.clone(), 1_000, Duration::ZERO).await;
    wait_orders_done(&con, 1_000, Duration::from_secs(60)).await;
    check_records(&mut con, 1_000, &totals).await;
    host.stop().await;
}

#[tokio::test]
async fn an_entry_writes_all_its_state_or_none() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let config = stateful("s").max_attempts(1).config();
    let host = TestDaemon::start(&redis, config).await;
    let cases: [&[(&str, &str)]; 10] = [
        &[("n", "retry"), ("set", "k:retry 1"), ("fail", "retry")],
        &[("n", "reject"), ("incr", "k:reject 5"), ("fail", "reject")],
        &[("n", "trap"), ("hset", "k:trap f v"), ("fail", "trap")],
        // A key outside the prefixes fails the entry even if the handler goes on.
        &[
            ("n", "forbidden"),
            ("ignore-errors", "1"),
            ("set", "k:forbidden 1"),
            ("set", "other:x 1"),
        ],
        // A hash write to a string key: refused at the commit, the entry dead-lettered.
        &[
            ("n", "typed"),
            ("set", "k:typed-ok 1"),
            ("hset", "k:string f v"),
        ],
        &[("n", "good"), ("set", "k:good yes"), ("incr", "k:count 2")],
        // A blind add to a key that is not an integer at the commit: dead-lettered.
        &[
            ("n", "not-integer"),
            ("set", "k:typed-too 1"),
            ("add", "k:string 1"),
        ],
        // The same when the refused write is the entry's first.
        &[
            ("n", "first-refused"),
            ("hset", "k:string f v"),
            ("set", "k:after 1"),
        ],
        // A counter, then a record whose hash write is refused: the add is not
        // written either.
        &[
            ("n", "add-then-refused"),
            ("add", "k:counted 1"),
            ("hset", "k:string f v"),
        ],
        // A record, then a refused add: the record is not written.
        &[
            ("n", "refused-add-first"),
            ("hset", "k:record f v"),
            ("add", "k:string 1"),
        ],
    ];
    let () = redis::cmd("SET")
        .arg(&["k:string", "text"])
        .query_async(&mut con)
        .await
        .expect("SET");
    for fields in cases {
        add(&mut con, "IN", fields).await;
    }
    wait_len(&con, "OUT", 1).await;
    eventually(
        "the failures are dead-lettered",
        Duration::from_secs(20),
        || {
            let mut con = con.clone();
            async move { (len(&mut con, "IN:dead").await == 9).then_some(()) }
        },
    )
    .await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*:*")
        .query_async(&mut con)
        .await
        .expect("KEYS");
    let mut keys: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| !k.starts_with("IN"))
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["k:count", "k:good", "k:string"],
        "only the entry that succeeded wrote (the string key was there before)"
    );
    let dead = entries(&mut con, "IN:dead").await;
    let reason = |n: &str| {
        dead.iter()
            .find(|(_, f)| field(f, "n") == Some(n))
            .and_then(|(_, f)| field(f, "sluice.error").map(str::to_owned))
            .unwrap_or_default()
    };
    assert!(
        reason("forbidden")
            .contains("\"other:x\" starts with none of the pipeline's state prefixes"),
        "{}",
        reason("forbidden")
    );
    for n in [
        "typed",
        "not-integer",
        "first-refused",
        "add-then-refused",
        "refused-add-first",
    ] {
        assert!(
            reason(n).contains("state write was refused"),
            "{n}: {}",
            reason(n)
        );
    }
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

#[tokio::test]
async fn later_entries_of_a_batch_see_earlier_ones() {
    let TestContext { redis, mut con } = TestContext::new().await;
    // The entries are in Redis before the daemon starts: one batch reads them all.
    for _ in 0..5 {
        add(
            &mut con,
            "IN",
            &[("incr", "k:c 1"), ("hset", "k:h f x"), ("add", "k:blind 2")],
        )
        .await;
    }
    add(
        &mut con,
        "IN",
        &[("get", "k:c"), ("hgetall", "k:h"), ("get", "k:blind")],
    )
    .await;
    let host = TestDaemon::start(&redis, stateful("s").config()).await;
    wait_len(&con, "OUT", 6).await;
    let out = entries(&mut con, "OUT").await;
    let sums: Vec<&str> = out
        .iter()
        .filter_map(|(_, f)| field(f, "incr:k:c"))
        .collect();
    assert_eq!(sums, ["1", "2", "3", "4", "5"]);
    assert_eq!(field(&out[5].1, "get:k:c"), Some("5"));
    assert_eq!(field(&out[5].1, "hgetall:k:h"), Some("f=x"));
    assert_eq!(
        field(&out[5].1, "get:k:blind"),
        Some("10"),
        "blind adds are seen too"
    );
    host.stop().await;
}

/// Writers of one counter side by side — four instances of one daemon and a second
/// daemon — each read it and write the sum: conflicts are handled again and the final
/// count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_key_are_serialised() {
    const N: usize = 600;
    let TestContext { redis, mut con } = TestContext::new().await;
    let text = stateful("s").concurrency(4).batch(20).to_string();
    let (a, b) = two_daemons(&redis, &text).await;
    for start in (0..N).step_by(100) {
        let mut pipe = redis::pipe();
        for i in start..start + 100 {
            pipe.xadd(
                "IN",
                "*",
                &[("n", i.to_string().as_str()), ("incr", "k:hot 1")],
            )
            .ignore();
        }
        let () = pipe.query_async(&mut con).await.expect("XADD");
    }
    wait_len(&con, "OUT", N).await;
    stays("no late output", Duration::from_millis(500), || {
        let mut con = con.clone();
        async move { len(&mut con, "OUT").await == N }
    })
    .await;
    let total: i64 = redis::cmd("GET")
        .arg("k:hot")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(total, N as i64, "no increment lost, none applied twice");
    assert_eq!(len(&mut con, "OUT").await, N);
    // Every sum a handler saw was committed once: the outputs hold 1..=N exactly.
    let mut sums: Vec<i64> = entries(&mut con, "OUT")
        .await
        .iter()
        .filter_map(|(_, f)| field(f, "incr:k:hot")?.parse().ok())
        .collect();
    sums.sort_unstable();
    assert_eq!(sums, (1..=N as i64).collect::<Vec<_>>());
    a.stop().await;
    b.stop().await;
}

/// Blind adds from two daemons with four instances each: no conflict, exact sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_adds_never_conflict_and_sum_exactly() {
    const N: usize = 600;
    let TestContext { redis, mut con } = TestContext::new().await;
    let text = stateful("s").concurrency(4).batch(20).to_string();
    let (a, b) = two_daemons(&redis, &text).await;
    let mut pipe = redis::pipe();
    for i in 0..N {
        pipe.xadd(
            "IN",
            "*",
            &[("n", i.to_string().as_str()), ("add", "k:sum 3")],
        )
        .ignore();
    }
    let () = pipe.query_async(&mut con).await.expect("XADD");
    wait_len(&con, "OUT", N).await;
    stays("no late output", Duration::from_millis(300), || {
        let mut con = con.clone();
        async move { len(&mut con, "OUT").await == N }
    })
    .await;
    let total: i64 = redis::cmd("GET")
        .arg("k:sum")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(total, 3 * N as i64);
    assert_eq!(len(&mut con, "OUT").await, N);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_component_that_imports_state_needs_state_prefixes() {
    let TestContext { redis, .. } = TestContext::new().await;
    let mut config = echo("s").plugin("{plugin:stateful}").config();
    config.redis.url = Some(redis.url());
    let error = match sluice::start(config, tokio_util::sync::CancellationToken::new()).await {
        Ok(_) => panic!("started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("imports sluice:plugin/state") && error.contains("state = ["),
        "{error}"
    );
}

#[tokio::test]
async fn a_component_built_against_0_1_0_runs_unchanged() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host =
        TestDaemon::start(&redis, echo("old").plugin("{plugin:legacy-0-1-0}").config()).await;
    add(&mut con, "IN", &[("n", "1")]).await;
    wait_len(&con, "OUT", 1).await;
    let out = entries(&mut con, "OUT").await;
    assert_eq!(field(&out[0].1, "built-against"), Some("0.1.0"));
    host.stop().await;
}

/// The order-status pipeline through a crash loop of `kill -9`s: every order's record
/// and every user's total come out exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_keeps_state_exact() {
    const ORDERS: usize = 8_000;
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        &dir,
        &orders_pipelines(|p| p.batch(50).claim_idle(Duration::from_secs(1))),
    );
    let producer = tokio::spawn(send_orders(con.clone(), ORDERS, Duration::from_millis(100)));
    let mut daemon = DaemonProcess::spawn(&config, &redis, "c1");
    let mut rng = rand::rng();
    let mut kills = 0;
    while kills < 12 && len(&mut con, "ORDER_STATUS_STREAM").await < ORDERS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        daemon.kill9();
        kills += 1;
        println!(
            "kill {kills}: {} status updates so far",
            len(&mut con, "ORDER_STATUS_STREAM").await
        );
        daemon = DaemonProcess::spawn(&config, &redis, "c1");
    }
    let totals = producer.await.expect("producer");
    wait_orders_done(&con, ORDERS, Duration::from_secs(120)).await;
    check_records(&mut con, ORDERS, &totals).await;
    println!(
        "state after {kills} kills: {ORDERS} order records and {} user totals exact",
        totals.len()
    );
    assert!(
        kills >= 6,
        "the run ended before the daemon was killed enough: {kills}"
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(15)).success());
}

/// Two daemons share the groups; one is `kill -9`ed while it works; the survivor
/// reclaims its entries and the records come out exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_state_work_is_taken_over_exactly() {
    const ORDERS: usize = 3_000;
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        &dir,
        &orders_pipelines(|p| p.batch(20).claim_idle(Duration::from_secs(1))),
    );
    let totals = send_orders(con.clone(), ORDERS, Duration::ZERO).await;
    let mut a = DaemonProcess::spawn(&config, &redis, "a");
    let b = DaemonProcess::spawn(&config, &redis, "b");
    eventually("a works", Duration::from_secs(30), || {
        let mut con = con.clone();
        async move { (len(&mut con, "ORDER_STATUS_STREAM").await >= 300).then_some(()) }
    })
    .await;
    a.kill9();
    wait_orders_done(&con, ORDERS, Duration::from_secs(120)).await;
    check_records(&mut con, ORDERS, &totals).await;
    drop(b);
}

#[tokio::test]
async fn invoke_prints_the_writes_a_commit_would_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    std::fs::write(
        &state,
        r#"{"user-total:u1": "250", "order:o1": {"note": "x"}}"#,
    )
    .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("invoke")
        .arg(plugin_wasm("order-status"))
        .args([
            "orderId=o1",
            "paymentId=p1",
            "orderStatusCode=3",
            "userId=u1",
            "paidAmount=9.99",
            "--output-json",
            "--state",
        ])
        .arg(&state)
        .output()
        .expect("sluice invoke");
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        json["state"],
        serde_json::json!([
            {"op": "hset", "key": "order:o1", "field": "orderStatusCode", "value": "3"},
            {"op": "hset", "key": "order:o1", "field": "paymentId", "value": "p1"},
            {"op": "incrby", "key": "user-total:u1", "delta": 999},
        ]),
        "{json}"
    );
}

#[tokio::test]
async fn the_admin_api_reads_a_declared_key_with_the_token() {
    const TOKEN: &str = "state-test-token";
    let TestContext { redis, mut con } = TestContext::new().await;
    let mut config = stateful("admin").with_admin().config();
    if let Some(admin) = &mut config.admin {
        admin.token = Some(TOKEN.to_owned());
    }
    let host = TestDaemon::start(&redis, config).await;
    add(&mut con, "IN", &[("hset", "k:h f v"), ("incr", "k:n 3")]).await;
    wait_len(&con, "OUT", 1).await;
    let base = format!("http://{}/v1/pipelines/admin/state", host.admin());
    let http = reqwest::Client::new();
    let get = |key: &str, token: Option<&str>| {
        let mut request = http.get(format!("{base}/{key}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(get("k:h", None).await.expect("answers").status(), 401);
    let hash: serde_json::Value = get("k:h", Some(TOKEN))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        hash,
        serde_json::json!({"key": "k:h", "type": "hash", "value": {"f": "v"}})
    );
    let counter: serde_json::Value = get("k:n", Some(TOKEN))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(counter["value"], "3");
    assert_eq!(
        get("other:x", Some(TOKEN)).await.expect("answers").status(),
        403
    );
    let metrics = reqwest::get(format!("http://{}/metrics", host.admin()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("pipeline=\"admin\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(value("sluice_state_writes_total"), Some(2.0), "{metrics}");
    assert_eq!(value("sluice_state_reads_total"), Some(1.0), "{metrics}");
    host.stop().await;
}

/// Adds Redis itself would refuse (a value it does not read as an integer, a sum past 64
/// bits, across several adds of one entry) write nothing of the entry; a sum that comes
/// back into range is taken.
#[tokio::test]
async fn adds_redis_would_refuse_write_nothing_of_the_entry() {
    let TestContext { redis, mut con } = TestContext::new().await;
    for (key, value) in [
        ("k:zero-led", "007"),
        ("k:minus-zero", "-0"),
        ("k:big", "4000000000000000000"),
        ("k:back", "5000000000000000000"),
    ] {
        let () = redis::cmd("SET")
            .arg(&[key, value])
            .query_async(&mut con)
            .await
            .expect("SET");
    }
    let cases: [&[(&str, &str)]; 5] = [
        &[
            ("n", "zero-led"),
            ("add", "k:a1 1"),
            ("add", "k:zero-led 1"),
        ],
        &[
            ("n", "minus-zero"),
            ("add", "k:a2 1"),
            ("add", "k:minus-zero 1"),
        ],
        &[
            ("n", "plus"),
            ("add", "k:a3 1"),
            ("set", "k:p +5"),
            ("add", "k:p 1"),
        ],
        &[
            ("n", "overflow"),
            ("add", "k:a4 1"),
            ("add", "k:big 3000000000000000000"),
            ("add", "k:big 3000000000000000000"),
        ],
        &[("n", "back"), ("add", "k:back -5000000000000000000")],
    ];
    for fields in cases {
        add(&mut con, "IN", fields).await;
    }
    let host = TestDaemon::start(&redis, stateful("s").config()).await;
    wait_len(&con, "OUT", 1).await;
    eventually(
        "the refused entries are dead-lettered",
        Duration::from_secs(20),
        || {
            let mut con = con.clone();
            async move { (len(&mut con, "IN:dead").await == 4).then_some(()) }
        },
    )
    .await;
    let get = |key: &'static str| {
        let mut con = con.clone();
        async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<String>>(&mut con)
                .await
                .expect("GET")
        }
    };
    stays(
        "nothing of a refused entry is written",
        Duration::from_millis(300),
        || async {
            for key in ["k:a1", "k:a2", "k:a3", "k:a4", "k:p"] {
                if get(key).await.is_some() {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for key in ["k:a1", "k:a2", "k:a3", "k:a4", "k:p"] {
        assert_eq!(
            get(key).await,
            None,
            "{key}: nothing of a refused entry is written"
        );
    }
    assert_eq!(get("k:big").await.as_deref(), Some("4000000000000000000"));
    assert_eq!(get("k:back").await.as_deref(), Some("0"));
    assert_eq!(len(&mut con, "OUT").await, 1, "each output written once");
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// A hash whose field name is not UTF-8 cannot be read by a handler (names are strings):
/// the entry is dead-lettered, not handled again for ever.
#[tokio::test]
async fn a_hash_field_name_that_is_not_utf8_is_refused() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let () = redis::cmd("HSET")
        .arg("k:h")
        .arg(&b"\xff\xfe"[..])
        .arg("v")
        .query_async(&mut con)
        .await
        .expect("HSET");
    add(&mut con, "IN", &[("n", "1"), ("hgetall", "k:h")]).await;
    let host = TestDaemon::start(&redis, stateful("s").config()).await;
    eventually(
        "the entry is dead-lettered",
        Duration::from_secs(10),
        || {
            let mut con = con.clone();
            async move { (len(&mut con, "IN:dead").await == 1).then_some(()) }
        },
    )
    .await;
    let dead = entries(&mut con, "IN:dead").await;
    assert!(
        field(&dead[0].1, "sluice.error").is_some_and(|e| e.contains("not UTF-8")),
        "{dead:?}"
    );
    host.stop().await;
}

/// What the batch's earlier entries wrote decides nothing a later entry relies on
/// unless it is committed: an earlier entry refused at the commit leaves later ones
/// handled on what Redis really holds.
#[tokio::test]
async fn a_later_entry_does_not_rely_on_an_earlier_entrys_uncommitted_writes() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let () = redis::pipe()
        .cmd("HSET")
        .arg(&["k:h", "g", "1"])
        .ignore()
        .cmd("SET")
        .arg(&["k:bad", "str"])
        .ignore()
        .cmd("HSET")
        .arg(&["k:h2", "a", "1"])
        .ignore()
        .query_async(&mut con)
        .await
        .expect("set up");
    // A: deletes k:h and makes k:h2 a string, then is refused at the commit.
    add(
        &mut con,
        "IN",
        &[
            ("n", "A"),
            ("delete", "k:h"),
            ("set", "k:h2 x"),
            ("hset", "k:bad f v"),
        ],
    )
    .await;
    add(
        &mut con,
        "IN",
        &[("n", "B"), ("hset", "k:h f 2"), ("hgetall", "k:h")],
    )
    .await;
    add(&mut con, "IN", &[("n", "C"), ("hset", "k:h2 b 2")]).await;
    // C meets A's uncommitted string at k:h2: a state conflict, counted, not a failure.
    let host = TestDaemon::start(&redis, stateful("later").with_admin().config()).await;
    wait_len(&con, "OUT", 2).await;
    let out = entries(&mut con, "OUT").await;
    let b = out
        .iter()
        .find(|(_, f)| field(f, "n") == Some("B"))
        .expect("B committed");
    assert_eq!(
        field(&b.1, "hgetall:k:h"),
        Some("f=2,g=1"),
        "B saw what Redis holds"
    );
    assert!(
        out.iter().any(|(_, f)| field(f, "n") == Some("C")),
        "C committed"
    );
    let h2: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg("k:h2")
        .query_async(&mut con)
        .await
        .expect("HGETALL");
    assert_eq!(h2.len(), 2, "{h2:?}");
    assert_eq!(len(&mut con, "IN:dead").await, 1, "only A is dead-lettered");
    let metrics = reqwest::get(format!("http://{}/metrics", host.admin()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("pipeline=\"later\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(
        series("sluice_state_conflicts_total") == Some(2.0),
        "two state conflicts: B's at its commit (it read what A deleted), C's in the batch (it met A's uncommitted string): {metrics}"
    );
    assert!(
        !metrics.contains("kind=\"conflict\""),
        "a state conflict is not a handler failure: {metrics}"
    );
    host.stop().await;
}

/// `sluice invoke` says what the commit would refuse, and `sluice compile` refuses what
/// the daemon would: the tools agree with the daemon.
#[tokio::test]
async fn the_tools_refuse_what_the_daemon_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    std::fs::write(&state, r#"{"order:o9": "plain"}"#).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("invoke")
        .arg(plugin_wasm("order-status"))
        .args([
            "orderId=o9",
            "paymentId=p",
            "orderStatusCode=3",
            "userId=u",
            "paidAmount=1.00",
            "--state",
        ])
        .arg(&state)
        .output()
        .expect("sluice invoke");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("would be refused at the commit") && stdout.contains("order:o9"),
        "{stdout}"
    );

    let config = config_file(&dir, &echo("s").plugin("{plugin:stateful}").to_string());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["compile", "-c"])
        .arg(&config)
        .env("XDG_CACHE_HOME", dir.path())
        .output()
        .expect("sluice compile");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("declares no state prefixes"), "{stderr}");
}
