//! Delivery guarantees under real faults: `kill -9` of daemons, a Redis restart, poison
//! entries, drains, entries deleted while pending. Each test is bounded in time, stops by
//! itself, and prints its tally (`in`, `out`, `duplicates`, `missing`, `pending`, `dead`).

use std::time::{Duration, Instant};

use rand::Rng;
use redis::aio::MultiplexedConnection;
use sluice_testkit::*;

/// The payments pipeline with `batch` entries per read, reclaiming after 1 s.
fn payments_config(batch: i64) -> String {
    ConfigBuilder::new()
        .drain_timeout(Duration::from_secs(5))
        .pipeline(
            payments("payments")
                .batch(batch)
                .claim_idle(Duration::from_secs(1)),
        )
        .to_string()
}

/// Crash loop: 20,000 orders arrive while the daemon is `kill -9`ed at random moments
/// and restarted, until twelve kills have hit it holding entries it had read but not
/// committed; every order ends with exactly one payment and nothing stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_is_exactly_once() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(&dir, &payments_config(50));
    let producer = tokio::spawn(produce_orders(
        con.clone(),
        20_000,
        250,
        Duration::from_millis(100),
    ));
    let mut daemon = DaemonProcess::spawn(&config, &redis, "c1");
    let mut rng = rand::rng();
    let mut kills_mid_batch = 0;
    let mut kill = 0;
    while kills_mid_batch < 12 && kill < 40 {
        kill += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
        // Then the first moment the daemon holds uncommitted entries (2 s at most).
        let deadline = Instant::now() + Duration::from_secs(2);
        while pending_of(&mut con, "c1").await == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        daemon.kill9();
        let held = pending_of(&mut con, "c1").await;
        kills_mid_batch += usize::from(held > 0);
        let tally = Tally::take(
            &mut con,
            "ORDERS_STREAM",
            "ORDERS_CON_GROUP",
            "PAYMENTS_STREAM",
            "orderId",
        )
        .await;
        println!("kill {kill}: holding {held} entries; {tally}");
        daemon = DaemonProcess::spawn(&config, &redis, "c1");
    }
    producer.await.expect("producer");
    let tally = wait_exactly_once(
        &con,
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
        "PAYMENTS_STREAM",
        "orderId",
        Duration::from_secs(90),
    )
    .await;
    assert_eq!((tally.input, tally.out), (20_000, 20_000));
    assert!(
        kills_mid_batch >= 10,
        "only {kills_mid_batch} kills hit the daemon with work in flight"
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(15)).success());
}

/// Two daemons share a group; one is `kill -9`ed while it holds entries; the survivor
/// reclaims them after `claim_idle` and the run ends exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_reclaims_a_killed_daemons_entries() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(&dir, &payments_config(20));
    let producer = tokio::spawn(produce_orders(
        con.clone(),
        6_000,
        200,
        Duration::from_millis(50),
    ));
    let mut b = DaemonProcess::spawn(&config, &redis, "b");
    // Kill a while it holds entries (read, not yet committed). A kill can land just after
    // a commit; then a is started again (same consumer) and killed again.
    let mut held = 0;
    for _ in 0..10 {
        let mut a = DaemonProcess::spawn(&config, &redis, "a");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if pending_of(&mut con, "a").await > 0 {
                a.kill9();
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        a.kill9();
        held = pending_of(&mut con, "a").await;
        if held > 0 {
            break;
        }
    }
    assert!(held > 0, "a was never killed while it held entries");
    println!("killed a holding {held} entries");
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
    assert_eq!(tally.out, 6_000);
    let consumers: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("ORDERS_STREAM")
        .arg("ORDERS_CON_GROUP")
        .query_async(&mut con)
        .await
        .expect("XINFO");
    println!("consumers: {consumers:?}");
    let log = b.log();
    assert!(
        log.contains("reclaimed idle entries"),
        "survivor log:\n{log}"
    );
    b.signal(libc::SIGTERM);
    assert!(b.wait(Duration::from_secs(15)).success());
}

/// redis-server (AOF, fsync always) is killed and restarted on the same port mid-run;
/// the daemon recovers by itself and the run ends exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_survives_a_redis_restart() {
    let mut redis = RedisServer::start_persistent().expect("redis");
    let con = connect(&redis).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(&dir, &payments_config(10));
    produce_orders(con.clone(), 20_000, 2_000, Duration::ZERO).await;
    let mut daemon = DaemonProcess::spawn(&config, &redis, "c1");
    let mut c = con.clone();
    eventually("processing to start", Duration::from_secs(20), || {
        let mut c = c.clone();
        async move { (len(&mut c, "PAYMENTS_STREAM").await > 500).then_some(()) }
    })
    .await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    redis.restart().expect("redis restarts");
    let con = connect(&redis).await;
    c = con.clone();
    let before = Tally::take(
        &mut c,
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
        "PAYMENTS_STREAM",
        "orderId",
    )
    .await;
    println!("after restart: {before}");
    let tally = wait_exactly_once(
        &con,
        "ORDERS_STREAM",
        "ORDERS_CON_GROUP",
        "PAYMENTS_STREAM",
        "orderId",
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(tally.out, 20_000);
    let log = daemon.log();
    assert!(
        log.contains("redis unusable; retrying"),
        "the outage shows in the log:\n{log}"
    );
    daemon.signal(libc::SIGTERM);
    assert!(
        daemon.wait(Duration::from_secs(15)).success(),
        "{}",
        daemon.log()
    );
}

/// One entry that always traps among 1,000 good ones: the good ones commit, the bad one
/// is dead-lettered after exactly `max_attempts`, with the backoff between deliveries.
#[tokio::test]
async fn poison_entry_is_dead_lettered_after_backing_off() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg = echo("echo")
        .max_attempts(4)
        .retry_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .config();
    let host = TestDaemon::start(&redis, cfg).await;
    let mut pipe = redis::pipe();
    for i in 0..1_000 {
        if i == 500 {
            pipe.xadd("IN", "*", &[("action", "trap"), ("n", "poison")])
                .ignore();
        }
        pipe.xadd("IN", "*", &[("n", i.to_string())]).ignore();
    }
    let () = pipe.query_async(&mut con).await.expect("produce");
    // Watch the poison entry's delivery count and note when each delivery happens.
    let mut deliveries: Vec<(u64, Instant)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while len(&mut con, "IN:dead").await == 0 {
        assert!(
            Instant::now() < deadline,
            "no dead letter; deliveries seen: {deliveries:?}"
        );
        let rows: redis::streams::StreamPendingCountReply =
            redis::AsyncCommands::xpending_count(&mut con, "IN", "G", "-", "+", 10)
                .await
                .expect("XPENDING");
        if let Some(row) = rows.ids.first() {
            let count = row.times_delivered as u64;
            if deliveries.last().map(|d| d.0) != Some(count) {
                deliveries.push((count, Instant::now()));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(deliveries.len() >= 3, "saw deliveries {deliveries:?}");
    let dead = entries(&mut con, "IN:dead").await;
    assert_eq!(field(&dead[0].1, "sluice.attempts"), Some("4"));
    assert_eq!(field(&dead[0].1, "n"), Some("poison"));
    // Deliveries 2, 3, 4 came no sooner than half their nominal backoff (equal jitter).
    for pair in deliveries.windows(2) {
        let ((n, t0), (m, t1)) = (pair[0], pair[1]);
        assert_eq!(m, n + 1, "{deliveries:?}");
        let nominal = Duration::from_millis(100) * 2u32.pow(n as u32 - 1);
        let gap = t1 - t0;
        println!("delivery {m}: {gap:?} after delivery {n} (nominal backoff {nominal:?})");
        assert!(
            gap >= nominal / 2,
            "delivery {m} came {gap:?} after {n}; backoff is at least {:?}",
            nominal / 2
        );
    }
    wait_len(&con, "OUT", 1_000).await;
    let tally = Tally::take(&mut con, "IN", "G", "OUT", "n").await;
    println!("tally: {tally}");
    assert!(tally.is_exactly_once(), "{tally}");
    host.stop().await;
}

/// SIGTERM during a burst of ~100 ms handlers read 50 at a time: exit 0 as soon as the
/// call in flight has committed (no new call starts), and
/// every input either committed (with its output) or still pending, never acked without
/// its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new()
        .drain_timeout(Duration::from_secs(10))
        .pipeline(echo("echo").batch(50).timeout(Duration::from_secs(2)))
        .write(dir.path());
    let mut daemon = DaemonProcess::spawn(&config, &redis, "c1");
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.xadd(
            "IN",
            "*",
            &[("action", "sleep"), ("ms", "100"), ("n", &i.to_string())],
        )
        .ignore();
    }
    let () = pipe.query_async(&mut con).await.expect("produce");
    wait_len_at_least(&con, "OUT", 3).await;
    let signalled = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait(Duration::from_secs(15));
    let took = signalled.elapsed();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        daemon.log()
    );
    // Only the call in flight is waited for, not the rest of its batch of 50 (5 s).
    assert!(took < Duration::from_secs(2), "drained in {took:?}");
    let tally = Tally::take(&mut con, "IN", "G", "OUT", "n").await;
    println!("after SIGTERM ({took:?}): {tally}");
    assert_eq!(tally.duplicates, 0);
    // Acknowledged ⇔ has its output: inputs without output are pending or never read.
    let outputs: std::collections::HashSet<String> = entries(&mut con, "OUT")
        .await
        .iter()
        .map(|(_, f)| field(f, "n").unwrap_or_default().to_owned())
        .collect();
    let info: redis::streams::StreamInfoGroupsReply =
        redis::AsyncCommands::xinfo_groups(&mut con, "IN")
            .await
            .expect("XINFO GROUPS");
    let last_delivered = info.groups[0].last_delivered_id.clone();
    let pending_ids: std::collections::HashSet<String> = {
        let rows: redis::streams::StreamPendingCountReply =
            redis::AsyncCommands::xpending_count(&mut con, "IN", "G", "-", "+", 1_000)
                .await
                .expect("XPENDING");
        rows.ids.into_iter().map(|p| p.id).collect()
    };
    for (id, fields) in entries(&mut con, "IN").await {
        let n = field(&fields, "n").unwrap_or_default();
        let delivered = id_le(&id, &last_delivered);
        let acked = delivered && !pending_ids.contains(&id);
        assert_eq!(
            acked,
            outputs.contains(n),
            "entry {id} (n={n}): acked={acked} but output present={}",
            outputs.contains(n)
        );
    }
    assert!(tally.out < 100, "the drain stopped reading: {tally}");
}

/// A daemon (echo pipeline, 20 s call timeout, `drain_timeout` as given) in the middle of
/// a 10 s call; also returns its Redis, a connection and the config's directory.
async fn daemon_in_a_slow_call(
    drain_timeout: Duration,
) -> (
    RedisServer,
    MultiplexedConnection,
    DaemonProcess,
    tempfile::TempDir,
) {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new()
        .drain_timeout(drain_timeout)
        .pipeline(echo("echo").timeout(Duration::from_secs(20)))
        .write(dir.path());
    let daemon = DaemonProcess::spawn(&config, &redis, "c1");
    add(
        &mut con,
        "IN",
        &[("action", "sleep"), ("ms", "10000"), ("n", "slow")],
    )
    .await;
    eventually("the slow entry to be read", Duration::from_secs(10), || {
        let mut c = con.clone();
        async move { (pending_or_zero(&mut c, "IN", "G").await == 1).then_some(()) }
    })
    .await;
    (redis, con, daemon, dir)
}

/// A second signal exits at once; uncommitted entries stay pending, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_signal_exits_at_once() {
    let (_redis, mut con, mut daemon, _dir) = daemon_in_a_slow_call(Duration::from_secs(30)).await;
    daemon.signal(libc::SIGTERM);
    eventually("the drain to start", Duration::from_secs(5), || {
        let draining = daemon.log().contains("shutting down: finishing in-flight");
        async move { draining.then_some(()) }
    })
    .await;
    let signalled = Instant::now();
    daemon.signal(libc::SIGINT);
    let status = daemon.wait(Duration::from_secs(5));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "exited in {:?}",
        signalled.elapsed()
    );
    assert!(
        !status.success(),
        "a forced exit is not a success: {status}"
    );
    assert_eq!(
        pending(&mut con, "IN", "G").await,
        1,
        "the entry stays pending for a later delivery"
    );
    assert_eq!(len(&mut con, "OUT").await, 0);
}

/// Past `drain_timeout`, a pipeline whose handler is still in a call is dropped where it
/// is: the daemon exits soon after, and the entry stays pending for a later delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_stops_a_pipeline_in_a_call() {
    let (_redis, mut con, mut daemon, _dir) =
        daemon_in_a_slow_call(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait(Duration::from_secs(8));
    let log = daemon.log();
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "exited {:?} after the signal; log:\n{log}",
        signalled.elapsed()
    );
    assert!(status.success(), "{status}; log:\n{log}");
    assert!(log.contains("drain timeout"), "{log}");
    assert!(!log.contains("did not end"), "{log}");
    assert_eq!(
        pending(&mut con, "IN", "G").await,
        1,
        "the entry stays pending for a later delivery"
    );
    assert_eq!(len(&mut con, "OUT").await, 0);
}

/// An entry deleted from the stream while pending is dropped from the pending list, not
/// retried forever.
#[tokio::test]
async fn entry_deleted_while_pending_does_not_loop() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg = echo("echo")
        .max_attempts(1000)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(50))
        .config();
    let host = TestDaemon::start(&redis, cfg).await;
    let id = add(&mut con, "IN", &[("action", "retry")]).await;
    eventually("the entry to be retried", Duration::from_secs(10), || {
        let mut c = con.clone();
        async move {
            let rows: redis::streams::StreamPendingCountReply =
                redis::AsyncCommands::xpending_count(&mut c, "IN", "G", "-", "+", 10)
                    .await
                    .ok()?;
            rows.ids
                .first()
                .filter(|p| p.times_delivered >= 2)
                .map(drop)
        }
    })
    .await;
    let _: usize = redis::AsyncCommands::xdel(&mut con, "IN", &[&id])
        .await
        .expect("XDEL");
    eventually("the pending list to empty", Duration::from_secs(10), || {
        let mut c = con.clone();
        async move { (pending(&mut c, "IN", "G").await == 0).then_some(()) }
    })
    .await;
    add(&mut con, "IN", &[("n", "after")]).await;
    wait_len(&con, "OUT", 1).await;
    host.stop().await;
}

/// A handler slower than `claim_idle` keeps its entry: the owner renews its lease, so a
/// second daemon does not take the entry over and do it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_keeps_its_lease() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        &dir,
        &echo("echo")
            .claim_idle(Duration::from_millis(300))
            .timeout(Duration::from_secs(10))
            .to_string(),
    );
    let a = DaemonProcess::spawn(&config, &redis, "a");
    add(
        &mut con,
        "IN",
        &[("action", "sleep"), ("ms", "2000"), ("n", "slow")],
    )
    .await;
    eventually("a to take the slow entry", Duration::from_secs(10), || {
        let mut c = con.clone();
        async move { (pending_or_zero(&mut c, "IN", "G").await == 1).then_some(()) }
    })
    .await;
    let b = DaemonProcess::spawn(&config, &redis, "b");
    // b runs, and scans for idle entries, while a's 2 s call is still going on.
    eventually("b to run", Duration::from_secs(10), || {
        let started = b.log().contains("pipeline started");
        async move { started.then_some(()) }
    })
    .await;
    assert_eq!(
        len(&mut con, "OUT").await,
        0,
        "b ran before the slow call ended"
    );
    let tally = wait_exactly_once(&con, "IN", "G", "OUT", "n", Duration::from_secs(20)).await;
    assert!(tally.is_exactly_once(), "{tally}");
    stays("b reclaims nothing", Duration::from_millis(500), || {
        let reclaimed = b.log().contains("reclaimed idle entries");
        async move { !reclaimed }
    })
    .await;
    assert!(
        !b.log().contains("reclaimed idle entries"),
        "b stole live work:\n{}",
        b.log()
    );
    a.signal(libc::SIGTERM);
    b.signal(libc::SIGTERM);
}

/// How many entries of the orders group consumer `name` holds (0 before the group exists).
async fn pending_of(con: &mut MultiplexedConnection, name: &str) -> usize {
    let rows: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg("ORDERS_STREAM")
        .arg("ORDERS_CON_GROUP")
        .arg("-")
        .arg("+")
        .arg(1_000)
        .arg(name)
        .query_async(con)
        .await;
    match rows {
        Ok(redis::Value::Array(rows)) => rows.len(),
        _ => 0, // no group yet
    }
}

/// Whether stream ID `a` ≤ `b`.
fn id_le(a: &str, b: &str) -> bool {
    let parts = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    parts(a) <= parts(b)
}
