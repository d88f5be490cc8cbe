//! The sandbox holds: each hostile plugin attack costs only its own message. A real
//! `sluice` process runs a healthy payments pipeline beside a pipeline fed the attack;
//! every test checks that the daemon stays up, that the attack ends where the delivery
//! semantics say (retried, then dead-lettered with the reason naming the limit), that a
//! second round of the attack does not grow the daemon's memory, and that payments keep
//! being committed throughout.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use sluice_testkit::*;

/// A healthy payments pipeline beside the `hostile` plugin (on `IN` → `OUT`) under
/// `limits.timeout` = `timeout`.
fn sandbox_config(timeout: &str) -> String {
    let hostile = echo("hostile")
        .plugin("{plugin:hostile}")
        .max_attempts(2)
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(100))
        .limit("memory", "128MiB")
        .limit("timeout", timeout)
        .limit("max_outputs", 1000)
        .limit("max_output_bytes", "16MiB");
    ConfigBuilder::new()
        .drain_timeout(Duration::from_secs(5))
        .pipeline(payments("payments"))
        .pipeline(hostile)
        .to_string()
}

/// Messages of the attack per round, and rounds: memory may grow in the first rounds
/// (allocator arenas warm up on each worker thread) but not after.
const PER_ROUND: usize = 3;
const ROUNDS: usize = 3;

/// The longest time without a payment committed between `since_ms` and now, from the
/// entry IDs' millisecond timestamps.
async fn longest_payment_gap(con: &mut MultiplexedConnection, since_ms: u64) -> Duration {
    // The window's ends count as marks, so a window with few payments still measures the
    // longest stretch without one.
    let mut marks = vec![since_ms];
    marks.extend(
        entries(con, "PAYMENTS_STREAM")
            .await
            .iter()
            .filter_map(|(id, _)| id.split('-').next()?.parse::<u64>().ok())
            .filter(|&ms| ms >= since_ms),
    );
    marks.push(now_ms());
    let gap = marks
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0);
    Duration::from_millis(gap)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Runs `attack` (with extra fields) in two rounds beside a steady flow of orders, and
/// returns the dead-letter reasons (or, for attacks that succeed, the outputs' outcomes).
async fn contain(attack: &str, extra: &[(&str, &str)], ends_in_dead_letters: bool) -> Vec<String> {
    contain_within(attack, extra, ends_in_dead_letters, "500ms").await
}

/// [`contain`] with another `limits.timeout`, for attacks that do real work before the
/// limit they test stops them (a 50 MiB output takes a while on a loaded machine).
async fn contain_within(
    attack: &str,
    extra: &[(&str, &str)],
    ends_in_dead_letters: bool,
    timeout: &str,
) -> Vec<String> {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon =
        DaemonProcess::spawn(&config_file(&dir, &sandbox_config(timeout)), &redis, "c1");
    let pid = daemon.pid();

    // A steady flow of orders: 20 every 25 ms for as long as the test runs.
    let flow = {
        let mut con = con.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let mut pipe = redis::pipe();
                for j in 0..20 {
                    Order::new(0)
                        .id(format!("o{i}-{j}"))
                        .amount("1.00")
                        .add_to(&mut pipe, ORDERS);
                }
                let () = pipe.query_async(&mut con).await.expect("orders");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    wait_len_at_least(&con, "PAYMENTS_STREAM", 100).await;
    let started_ms = now_ms();
    let rss_start = rss_kib(pid);
    let out_stream = if ends_in_dead_letters {
        "IN:dead"
    } else {
        "OUT"
    };
    let mut rss_after_round = Vec::new();
    for round in 1..=ROUNDS {
        for _ in 0..PER_ROUND {
            let mut fields = vec![("attack", attack)];
            fields.extend_from_slice(extra);
            add(&mut con, "IN", &fields).await;
        }
        wait_len_at_least(&con, out_stream, round * PER_ROUND).await;
        assert!(
            daemon.is_running(),
            "the daemon died; log:\n{}",
            daemon.log()
        );
        rss_after_round.push(rss_kib(pid));
    }
    let gap = longest_payment_gap(&mut con, started_ms).await;
    flow.abort();
    let last = rss_after_round[ROUNDS - 1];
    let before_last = rss_after_round[..ROUNDS - 1]
        .iter()
        .copied()
        .max()
        .unwrap_or(rss_start);
    println!(
        "{attack}: RSS {rss_start} KiB at start, after each round {rss_after_round:?} KiB; longest gap between payments {gap:?}"
    );
    // One instance's worth of linear memory may be resident on top (a trapped instance's
    // memory is unmapped while its replacement already runs: seen once as +51 MiB in
    // the last round of "big"); a leak of the attack's outputs grows by PER_ROUND times
    // their size (150 MiB for "big") every round.
    assert!(
        last <= before_last + 64 * 1024,
        "{attack}: memory still growing in round {ROUNDS}: {rss_after_round:?} KiB"
    );
    assert!(
        gap < Duration::from_secs(1),
        "{attack}: payments stalled for {gap:?}"
    );
    assert_eq!(len(&mut con, "NOT_DECLARED").await, 0);
    let results: Vec<String> = entries(&mut con, out_stream)
        .await
        .iter()
        .map(|(_, f)| {
            field(
                f,
                if ends_in_dead_letters {
                    "sluice.error"
                } else {
                    "outcome"
                },
            )
            .unwrap_or_default()
            .to_owned()
        })
        .collect();
    assert_eq!(
        pending(&mut con, "IN", "G").await,
        0,
        "{attack}: entries left pending"
    );
    daemon.signal(libc::SIGTERM);
    assert!(
        daemon.wait(Duration::from_secs(15)).success(),
        "{attack}: unclean exit; log:\n{}",
        daemon.log()
    );
    results
}

/// Asserts every reason contains `expected`, after `max_attempts` (2) deliveries when
/// the failure is retryable.
fn assert_reasons(reasons: &[String], expected: &str, retried: bool) {
    assert_eq!(reasons.len(), ROUNDS * PER_ROUND, "{reasons:?}");
    for reason in reasons {
        assert!(
            reason.contains(expected),
            "expected {expected:?} in {reason:?}"
        );
        assert_eq!(
            reason.contains("gave up after 2 attempts"),
            retried,
            "{reason}"
        );
    }
}

/// An infinite loop is stopped at `limits.timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_contained() {
    let reasons = contain("loop", &[], true).await;
    assert_reasons(&reasons, "limits.timeout (500ms) exceeded", true);
}

/// Unbounded memory growth is stopped at `limits.memory`, which the reason names. Filling
/// 128 MiB is real work (twice, when a reused instance breaches and the call is given a
/// fresh one), so the timeout is wide: it must not be what stops it on a busy machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_growth_is_contained() {
    let reasons = contain_within("grow", &[], true, "10s").await;
    assert_reasons(&reasons, "limits.memory (128.0 MiB) exceeded", true);
}

/// Unbounded recursion overflows the Wasm stack: a trap, not a crash of the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_overflow_is_contained() {
    let reasons = contain("recurse", &[], true).await;
    assert_reasons(&reasons, "stack overflow", true);
}

/// A panic traps the instance, which is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_contained() {
    let reasons = contain("panic", &[], true).await;
    assert_reasons(&reasons, "trapped", true);
}

/// A guest asleep in a WASI call (where no epoch tick reaches it) is stopped at the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_past_the_timeout_is_contained() {
    let reasons = contain("sleep", &[], true).await;
    assert_reasons(&reasons, "limits.timeout (500ms) exceeded", true);
}

/// 100,000 outputs for one input break `limits.max_outputs`; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_flood_is_contained() {
    let reasons = contain("flood", &[], true).await;
    assert_reasons(
        &reasons,
        "limits.max_outputs (1000) exceeded: the handler returned 100000 outputs",
        true,
    );
}

/// One 50 MiB output breaks `limits.max_output_bytes`; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_is_contained() {
    let reasons = contain_within("big", &[], true, "10s").await;
    assert_reasons(
        &reasons,
        "limits.max_output_bytes (16.0 MiB) exceeded: the outputs hold 50.0 MiB",
        true,
    );
}

/// An output to an undeclared stream is dead-lettered at once, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeclared_output_is_contained() {
    let reasons = contain("undeclared", &[], true).await;
    assert_reasons(&reasons, "undeclared stream \"NOT_DECLARED\"", false);
}

/// Reading a file, listing `/`, reading the environment and opening a socket all fail
/// inside the guest: nothing is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_denied_inside_the_guest() {
    for attack in ["read-file", "list-root", "env"] {
        let outcomes = contain(attack, &[], false).await;
        assert!(
            outcomes.iter().all(|o| o.starts_with("denied")),
            "{attack}: {outcomes:?}"
        );
        println!("{attack}: {}", outcomes[0]);
    }
    // A port with a listener on it: only the sandbox can refuse the connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port().to_string();
    let outcomes = contain("socket", &[("port", &port)], false).await;
    assert!(
        outcomes.iter().all(|o| o.starts_with("denied")),
        "socket: {outcomes:?}"
    );
    println!("socket: {}", outcomes[0]);
}

/// A component built for another world is refused at load time with a message naming
/// what is wrong; so is a component that imports what the host does not provide.
#[test]
fn component_for_another_world_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(
        &dir,
        &echo("other").plugin("{plugin:other-world}").to_string(),
    );
    let redis = RedisServer::start().expect("redis");
    let started = Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "-c"])
        .arg(&config)
        .args(["--redis", &redis.url()])
        .output()
        .expect("run sluice");
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("refused in {:?}: {stderr}", started.elapsed());
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not implement the `sluice:plugin/handler` world"),
        "{stderr}"
    );
    assert!(
        stderr.contains("handle"),
        "names the missing export: {stderr}"
    );
}

/// A component that imports an interface the host does not provide is refused at load
/// time, and the message names the import.
#[test]
fn component_with_unprovided_import_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A component whose only content is an import.
    let plugin = dir.path().join("vault.wasm");
    let binary = wat::parse_str(
        r#"(component (import "example:secret/vault" (instance (export "open" (func)))))"#,
    )
    .expect("valid text format");
    std::fs::write(&plugin, binary).expect("write");
    let config = config_file(&dir, &format!("{}", echo("vault").plugin(plugin.display())));
    let redis = RedisServer::start().expect("redis");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "-c"])
        .arg(&config)
        .args(["--redis", &redis.url()])
        .output()
        .expect("run sluice");
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("imports something the host does not provide"),
        "{stderr}"
    );
    assert!(
        stderr.contains("example:secret/vault"),
        "names the import: {stderr}"
    );
}

/// With `limits.fuel`, a loop is stopped when its fuel runs out (well before the
/// timeout), and the reason names the budget.
#[tokio::test]
async fn fuel_budget_stops_a_loop() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg = echo("hostile")
        .plugin("{plugin:hostile}")
        .max_attempts(1)
        .timeout(Duration::from_secs(60))
        .limit("fuel", 5000000i64)
        .config();
    let host = TestDaemon::start(&redis, cfg).await;
    let started = Instant::now();
    add(&mut con, "IN", &[("attack", "loop")]).await;
    wait_len_at_least(&con, "IN:dead", 1).await;
    let dead = entries(&mut con, "IN:dead").await;
    let reason = field(&dead[0].1, "sluice.error").unwrap_or_default();
    println!("stopped after {:?}: {reason}", started.elapsed());
    assert!(
        reason.contains("limits.fuel (5000000) exhausted"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped by fuel, not by the timeout"
    );
    host.stop().await;
}

/// A handler that leaks a little on every call (1 MiB kept per message) under a 16 MiB
/// `limits.memory`: each time the reused instance reaches the limit, the call is made once
/// more on a fresh instance, so no innocent message is charged with the leak — with
/// `max_attempts = 1`, any breach charged to a message would dead-letter it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_leak_never_dead_letters_innocent_messages() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg = echo("leaky")
        .plugin("{plugin:hostile}")
        .max_attempts(1)
        .limit("memory", "16MiB")
        .limit("instance_reuse", 100000i64)
        .config();
    let host = TestDaemon::start(&redis, cfg).await;
    for i in 0..60 {
        add(
            &mut con,
            "IN",
            &[("attack", "leak"), ("mb", "1"), ("n", &i.to_string())],
        )
        .await;
    }
    wait_len(&con, "OUT", 60).await;
    assert_eq!(
        len(&mut con, "IN:dead").await,
        0,
        "no message charged with the leak"
    );
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}
