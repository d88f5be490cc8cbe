//! One consumer name, one daemon: a name held by a live daemon is refused (or, for the
//! default name, passed over), and a daemon that lost its name can never commit in it.
//! Real `sluice` processes on a real redis-server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_testkit::*;

/// The echo pipeline's config file, with a handler timeout that fits `action=sleep`.
fn echo_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    config_file(
        dir,
        &echo("echo")
            .timeout(Duration::from_secs(20))
            .concurrency(8)
            .to_string(),
    )
}

/// Waits until the daemon logs that its pipeline started.
async fn started(daemon: &DaemonProcess) {
    eventually("the pipeline to start", Duration::from_secs(30), || {
        let up = daemon.log().contains("pipeline started");
        async move { up.then_some(()) }
    })
    .await;
}

/// How many times each input entry (field `n`) appears in `OUT`.
async fn copies(con: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for (_, fields) in entries(con, "OUT").await {
        *seen
            .entry(field(&fields, "n").unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    seen
}

/// Freezes `first` (SIGSTOP) and starts daemons under its name `shared` until one stays
/// up: each is refused until `first`'s lease lapses, then one takes the name.
async fn freeze_and_take_over(
    first: &DaemonProcess,
    config: &std::path::Path,
    redis: &RedisServer,
) -> DaemonProcess {
    first.signal(libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut second = DaemonProcess::spawn(config, redis, "shared");
        let started = eventually(
            "the second daemon starts or gives up",
            Duration::from_secs(30),
            || {
                let started = second.log().contains("pipeline started");
                let exited = !second.is_running();
                async move { (started || exited).then_some(started) }
            },
        )
        .await;
        if started && second.is_running() {
            return second;
        }
        assert!(Instant::now() < deadline, "the name never passed on");
    }
}

/// A copied config (one configured consumer name) on two daemons: the second refuses to
/// start, naming the name, the group, who holds it and the fix; 400 entries give 400
/// outputs, none twice.
#[tokio::test]
async fn a_configured_name_held_by_a_live_daemon_is_refused() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = echo_file(&dir);
    let first = DaemonProcess::spawn(&config, &redis, "shared");
    started(&first).await;
    let mut second = DaemonProcess::spawn(&config, &redis, "shared");
    let status = second.wait(Duration::from_secs(30));
    let log = second.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(r#"consumer name "shared" is held in group "G" of stream "IN""#),
        "{log}"
    );
    assert!(log.contains(&format!("pid {}", first.pid())), "{log}");
    assert!(log.contains("--consumer"), "the fix: {log}");
    for n in 0..400 {
        add(&mut con, "IN", &[("n", &n.to_string())]).await;
    }
    wait_len(&con, "OUT", 400).await;
    let seen = copies(&mut con).await;
    assert_eq!(seen.len(), 400);
    assert!(seen.values().all(|&c| c == 1), "duplicates: {seen:?}");
}

/// Two daemons on one host with the default name: the second takes
/// `sluice-<host>-2` and says so; both consume, and 400 entries give 400 outputs.
#[tokio::test]
async fn the_default_name_passes_over_to_the_next_free_one() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = echo_file(&dir);
    let url = redis.url();
    let run = |log: &str| {
        let args = [
            "run".as_ref(),
            "-c".as_ref(),
            config.as_os_str(),
            "--redis".as_ref(),
            std::ffi::OsStr::new(&url),
        ];
        DaemonProcess::start(&args, &dir.path().join(log))
    };
    let first = run("first.log");
    started(&first).await;
    let second = run("second.log");
    started(&second).await;
    let log = second.log();
    assert!(log.contains("is held by another live daemon"), "{log}");
    assert!(log.contains("-2"), "{log}");
    for n in 0..400 {
        add(&mut con, "IN", &[("n", &n.to_string())]).await;
    }
    wait_len(&con, "OUT", 400).await;
    stays("no late duplicates", Duration::from_secs(1), || {
        let mut con = con.clone();
        async move { copies(&mut con).await.values().all(|&c| c == 1) }
    })
    .await;
    let seen = copies(&mut con).await;
    assert_eq!(seen.len(), 400);
    assert!(seen.values().all(|&c| c == 1), "duplicates: {seen:?}");
}

/// A daemon frozen (SIGSTOP) with entries in hand past its name's lease: a second
/// daemon takes the name and handles those entries; the first, thawed, commits nothing
/// (its commits are fenced off), says it lost its name and exits 1. Every entry is
/// written once; nothing stays pending.
#[tokio::test]
async fn a_daemon_that_lost_its_name_commits_nothing() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = echo_file(&dir);
    let mut first = DaemonProcess::spawn(&config, &redis, "shared");
    started(&first).await;
    for n in 0..4 {
        let n = n.to_string();
        add(
            &mut con,
            "IN",
            &[("n", &n), ("action", "sleep"), ("ms", "3000")],
        )
        .await;
    }
    eventually("the first to hold entries", Duration::from_secs(10), || {
        let mut con = con.clone();
        async move { (pending(&mut con, "IN", "G").await >= 1).then_some(()) }
    })
    .await;
    let mut second = freeze_and_take_over(&first, &config, &redis).await;
    for n in 4..20 {
        add(&mut con, "IN", &[("n", &n.to_string())]).await;
    }
    wait_len(&con, "OUT", 20).await;
    first.signal(libc::SIGCONT);
    let status = first.wait(Duration::from_secs(30));
    let log = first.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("lost its consumer name \"shared\""), "{log}");
    stays("no late duplicates", Duration::from_secs(2), || {
        let mut con = con.clone();
        async move { copies(&mut con).await.values().all(|&c| c == 1) }
    })
    .await;
    let seen = copies(&mut con).await;
    assert_eq!(seen.len(), 20, "{seen:?}");
    assert!(seen.values().all(|&c| c == 1), "duplicates: {seen:?}");
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    assert!(second.is_running());
}

/// `kill -9`, then a restart under the same name on the same host: the dead holder is
/// proven gone (its pid no longer runs with its start time), so the name is taken at
/// once, not after the lease; the entries it held are handled.
#[tokio::test]
async fn a_restart_after_kill_9_takes_its_name_back_at_once() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = echo_file(&dir);
    let mut first = DaemonProcess::spawn(&config, &redis, "solo");
    started(&first).await;
    add(
        &mut con,
        "IN",
        &[("n", "0"), ("action", "sleep"), ("ms", "2000")],
    )
    .await;
    eventually("the entry in hand", Duration::from_secs(10), || {
        let mut con = con.clone();
        async move { (pending(&mut con, "IN", "G").await == 1).then_some(()) }
    })
    .await;
    first.kill9();
    let restarted = Instant::now();
    let again = DaemonProcess::spawn(&config, &redis, "solo");
    started(&again).await;
    assert!(
        restarted.elapsed() < Duration::from_secs(8),
        "took {:?}: {}",
        restarted.elapsed(),
        again.log()
    );
    assert!(
        again.log().contains("took the consumer name over"),
        "{}",
        again.log()
    );
    wait_len(&con, "OUT", 1).await;
}

/// The consumers of `IN`'s group `G`, by name.
async fn consumers(con: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("IN")
        .arg("G")
        .query_async(con)
        .await
        .expect("XINFO CONSUMERS");
    reply.consumers.into_iter().map(|c| c.name).collect()
}

/// Eight daemons, each under a name of its own (pods of a scaled Deployment), each
/// handles 10 entries and stops cleanly: each removes its own consumer from the group
/// (nothing is pending for it), so the group does not keep eight.
#[tokio::test]
async fn daemons_that_stop_cleanly_leave_their_groups() {
    let TestContext { redis, mut con } = TestContext::new().await;
    for i in 1..=8 {
        let mut config = echo("echo").config();
        config.redis.consumer = Some(format!("pod-{i}"));
        let host = TestDaemon::start(&redis, config).await;
        for n in 0..10 {
            add(&mut con, "IN", &[("n", &format!("{i}-{n}"))]).await;
        }
        wait_len(&con, "OUT", i * 10).await;
        host.stop().await;
    }
    assert_eq!(consumers(&mut con).await, Vec::<String>::new());
    let seen = copies(&mut con).await;
    assert_eq!(seen.len(), 80);
}

/// Consumers idle past `remove_idle_consumers_after` with nothing pending are removed by
/// a live daemon; one with a pending entry is not removed until that entry is reclaimed
/// and handled (once).
#[tokio::test]
async fn idle_consumers_are_removed_but_never_with_pending_entries() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let raw = |args: &[&str]| {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd
    };
    let _: () = raw(&["XGROUP", "CREATE", "IN", "G", "$", "MKSTREAM"])
        .query_async(&mut con)
        .await
        .expect("XGROUP CREATE");
    add(&mut con, "IN", &[("n", "held")]).await;
    let _: redis::Value = raw(&[
        "XREADGROUP",
        "GROUP",
        "G",
        "ghost-holding",
        "COUNT",
        "1",
        "STREAMS",
        "IN",
        ">",
    ])
    .query_async(&mut con)
    .await
    .expect("XREADGROUP");
    for ghost in ["ghost-1", "ghost-2"] {
        let _: i64 = raw(&["XGROUP", "CREATECONSUMER", "IN", "G", ghost])
            .query_async(&mut con)
            .await
            .expect("CREATECONSUMER");
    }
    let mut config = echo("echo")
        .claim_idle(Duration::from_secs(70))
        .config_with(
            ConfigBuilder::new()
                .redis_duration("remove_idle_consumers_after", Duration::from_secs(60)),
        );
    config.redis.consumer = Some("live".into());
    let host = TestDaemon::start(&redis, config).await;
    add(&mut con, "IN", &[("n", "new")]).await;
    // Past a minute the two idle ghosts go; the one holding an entry stays until that
    // entry is reclaimed (after claim_idle, 70 s) and handled.
    eventually("the idle ghosts to go", Duration::from_secs(120), || {
        let mut con = con.clone();
        async move {
            let now = consumers(&mut con).await;
            (!now.iter().any(|c| c == "ghost-1" || c == "ghost-2")).then_some(now)
        }
    })
    .await;
    let now = consumers(&mut con).await;
    if now.iter().any(|c| c == "ghost-holding") {
        assert_eq!(
            len(&mut con, "OUT").await,
            1,
            "the held entry is not handled yet"
        );
    }
    eventually(
        "the holding ghost to go once its entry is handled",
        Duration::from_secs(120),
        || {
            let mut con = con.clone();
            async move { (consumers(&mut con).await == ["live"]).then_some(()) }
        },
    )
    .await;
    let seen = copies(&mut con).await;
    assert_eq!(seen.get("held"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("new"), Some(&1), "{seen:?}");
    host.stop().await;
}

/// The new holder of a name stops cleanly (its lease key and its consumer are gone)
/// before the old one thaws: the old one must not put the name back and write what it
/// had in hand — the name's token counter shows someone held it meanwhile. It says it
/// lost its name and exits 1; every entry is written once.
#[tokio::test]
async fn a_name_taken_and_given_back_meanwhile_stays_lost() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        &dir,
        &echo("echo")
            .timeout(Duration::from_secs(20))
            .concurrency(8)
            .claim_idle(Duration::from_secs(120))
            .to_string(),
    );
    let mut first = DaemonProcess::spawn(&config, &redis, "shared");
    started(&first).await;
    for n in 0..10 {
        let n = n.to_string();
        add(
            &mut con,
            "IN",
            &[("n", &n), ("action", "sleep"), ("ms", "500")],
        )
        .await;
    }
    eventually("the first to hold entries", Duration::from_secs(10), || {
        let mut con = con.clone();
        async move { (pending(&mut con, "IN", "G").await >= 1).then_some(()) }
    })
    .await;
    let mut second = freeze_and_take_over(&first, &config, &redis).await;
    eventually(
        "the second to handle every entry",
        Duration::from_secs(60),
        || {
            let mut con = con.clone();
            async move {
                let done =
                    len(&mut con, "OUT").await >= 10 && pending(&mut con, "IN", "G").await == 0;
                done.then_some(())
            }
        },
    )
    .await;
    second.signal(libc::SIGTERM);
    assert!(
        second.wait(Duration::from_secs(30)).success(),
        "{}",
        second.log()
    );
    first.signal(libc::SIGCONT);
    let status = first.wait(Duration::from_secs(30));
    let log = first.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("lost its consumer name \"shared\""), "{log}");
    let seen = copies(&mut con).await;
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert!(seen.values().all(|&c| c == 1), "duplicates: {seen:?}");
}
