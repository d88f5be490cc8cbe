//! `sluice diff`: the live plugin and a candidate over recorded entries, as an operator
//! runs it — a real redis-server, real components built from `plugins/`, the binary.

use std::process::{Command, Output};

use redis::AsyncCommands;
use sluice_testkit::*;

/// Runs `sluice diff` with `args`.
fn diff(args: &[&str]) -> Output {
    Command::new(sluice_binary())
        .arg("diff")
        .args(args)
        .env("SLUICE_LOG", "warn")
        .output()
        .expect("run sluice diff")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Preloads `n` seed orders into `ORDERS_STREAM`.
async fn orders(con: &mut redis::aio::MultiplexedConnection, n: usize) {
    for start in (0..n).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 1000).min(n) {
            Order::seed(i).add_to(&mut pipe, "ORDERS_STREAM");
        }
        let () = pipe.query_async(con).await.expect("XADD orders");
    }
}

/// What Redis holds, to show that a diff writes nothing: every key with its type and
/// length, and the input's consumer groups.
async fn footprint(con: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = con.keys("*").await.expect("KEYS");
    keys.sort();
    let mut seen = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(con)
            .await
            .expect("TYPE");
        seen.push(format!("{key} {kind}"));
    }
    let groups: redis::Value = redis::cmd("XINFO")
        .arg(&["GROUPS", "ORDERS_STREAM"])
        .query_async(con)
        .await
        .unwrap_or(redis::Value::Nil);
    seen.push(format!("groups {groups:?}"));
    seen
}

/// The case: a changed rounding rule over 10,000 recorded orders is found, on
/// exactly the entries it changes, shown field by field, with nothing written and no
/// consumer group touched; the same plugin against itself finds nothing.
#[tokio::test]
async fn a_changed_rounding_rule_is_found_on_exactly_the_entries_it_changes() {
    let TestContext { redis, mut con } = TestContext::new().await;
    orders(&mut con, 10_000).await;
    let before = footprint(&mut con).await;
    let live = plugin_wasm("payments");
    let candidate = plugin_wasm("payments_rounding");
    let url = redis.url();
    let common = [
        "--redis",
        url.as_str(),
        "--stream",
        "ORDERS_STREAM",
        "--live",
        live.to_str().expect("path"),
    ];
    let out = diff(
        &[
            &common[..],
            &[candidate.to_str().expect("path"), "--show", "2"],
        ]
        .concat(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    // Amounts are `100 + i % 900` and `i % 100` cents: whole amounts (1 in 100) round
    // to themselves.
    assert!(
        stdout.starts_with("10000 entries: 100 the same, 9900 different"),
        "{stdout}"
    );
    assert!(
        stdout.contains("differences by kind: fields 9900"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  - output 0 paidAmount: \"101.01\"\n  + output 0 paidAmount: \"101.00\""),
        "the first differing entry, field by field: {stdout}"
    );
    assert!(stdout.contains("... and 9898 more"), "{stdout}");
    assert_eq!(footprint(&mut con).await, before, "a diff writes nothing");

    // JSON for CI: the counts, and each shown entry with both outcomes.
    let out = diff(
        &[
            &common[..],
            &[candidate.to_str().expect("path"), "--json", "--show", "1"],
        ]
        .concat(),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["entries"], 10_000);
    assert_eq!(report["different"], 9_900);
    assert_eq!(report["by_kind"]["fields"], 9_900);
    assert_eq!(report["shown"], 1);
    let first = &report["differences"][0];
    assert_eq!(first["kinds"], serde_json::json!(["fields"]));
    let paid = |side: &str| {
        first[side]["outputs"][0]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f[0] == "paidAmount")
            .map(|f| f[1].clone())
    };
    assert_eq!(paid("live"), Some(serde_json::json!("101.01")));
    assert_eq!(paid("candidate"), Some(serde_json::json!("101.00")));

    // The same plugin twice: nothing differs, exit 0; a range reads only its entries.
    let ids: Vec<redis::streams::StreamId> = {
        let r: redis::streams::StreamRangeReply = con
            .xrange_count("ORDERS_STREAM", "-", "+", 20)
            .await
            .expect("XRANGE");
        r.ids
    };
    let out = diff(
        &[
            &common[..],
            &[
                live.to_str().expect("path"),
                "--from",
                ids[10].id.as_str(),
                "--to",
                ids[19].id.as_str(),
            ],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("10 entries: 10 the same, 0 different"));
}

/// With `--pipeline`, the live plugin, its config and its dead letters come from the
/// config file: a letter is handled as the entry it was (its original fields and ID),
/// and a rejection that becomes an acceptance is a difference of result.
#[tokio::test]
async fn dead_letters_are_compared_as_the_entries_they_were() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new()
        .redis_url(redis.url())
        .pipeline(payments("payments"))
        .write(dir.path());
    // Two letters as the daemon writes them: metadata first, then the original fields.
    for (id, amount) in [("5-0", "-1.50"), ("6-0", "12.34")] {
        let letter = [
            ("sluice.error", "handler rejected the message: ..."),
            ("sluice.source", "ORDERS_STREAM"),
            ("sluice.id", id),
            ("sluice.pipeline", "payments"),
            ("sluice.plugin", "sha256:0"),
            ("sluice.attempts", "1"),
            ("orderId", "o-1"),
            ("orderAmount", amount),
            ("userId", "u-1"),
        ];
        let _: String = con
            .xadd("ORDERS_STREAM:dead", "*", &letter)
            .await
            .expect("XADD");
    }
    let candidate = plugin_wasm("payments_rounding");
    let out = diff(&[
        "-c",
        config.to_str().expect("path"),
        "--pipeline",
        "payments",
        "--dead-letters",
        candidate.to_str().expect("path"),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("2 entries: 1 the same, 1 different"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(entry 6-0)"),
        "the letter's original ID: {stdout}"
    );
    assert!(
        stdout.contains("+ output 0 paidAmount: \"12.00\""),
        "{stdout}"
    );

    // A candidate writing to a stream the pipeline does not declare fails each entry
    // as the pipeline would (a difference of result, not of outputs).
    let echo = plugin_wasm("echo");
    let out = diff(&[
        "-c",
        config.to_str().expect("path"),
        "--pipeline",
        "payments",
        "--dead-letters",
        echo.to_str().expect("path"),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("differences by kind: reason 1, result 1"),
        "{stdout}"
    );
    assert!(stdout.contains("output to undeclared stream"), "{stdout}");
}

/// Bad input is refused, naming what to do, with diff(1)'s status for trouble (2):
/// among it, a range with no entries (a misspelt stream must not pass a CI gate) and a
/// candidate the pipeline could not run.
#[tokio::test]
async fn bad_input_names_the_fix() {
    let TestContext { redis, mut con } = TestContext::new().await;
    orders(&mut con, 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigBuilder::new()
        .redis_url(redis.url())
        .pipeline(payments("payments"))
        .write(dir.path());
    let url = redis.url();
    let live = plugin_wasm("payments");
    let live = live.to_str().expect("path");
    let stateful = plugin_wasm("payments_state");
    let rounding = plugin_wasm("payments_rounding");
    let config = config.to_str().expect("path");
    let cases: [(&[&str], &str); 7] = [
        (
            &["--redis", &url, "--stream", "S", "c.wasm"],
            "name the live plugin: --pipeline NAME (its plugin) or --live PLUGIN.wasm",
        ),
        (
            &["--redis", &url, "--live", live, "c.wasm"],
            "name the entries: --pipeline NAME",
        ),
        (
            &[
                "--redis",
                &url,
                "--stream",
                "S",
                "--live",
                live,
                "missing.wasm",
            ],
            "candidate plugin missing.wasm",
        ),
        (
            &[
                "-c",
                "/nonexistent/sluice.toml",
                "--pipeline",
                "p",
                "c.wasm",
            ],
            "/nonexistent/sluice.toml",
        ),
        (
            &[
                "--redis",
                &url,
                "--stream",
                "ORDER_STREAM",
                "--live",
                live,
                rounding.to_str().expect("path"),
            ],
            "no entries in ORDER_STREAM from - to +: nothing was compared",
        ),
        (
            &[
                "--redis",
                &url,
                "--stream",
                "ORDERS_STREAM",
                "--live",
                live,
                "--count",
                "0",
                "c.wasm",
            ],
            "--count",
        ),
        (
            &[
                "-c",
                config,
                "--pipeline",
                "payments",
                stateful.to_str().expect("path"),
            ],
            "cannot run on pipeline \"payments\" as configured",
        ),
    ];
    for (args, expected) in cases {
        let out = diff(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// A stateful plugin against itself agrees on every entry: each call starts from the
/// same state (neither sees the other's writes, nor an earlier entry's). And a value of
/// a megabyte that differs is shown cut, with its size: a report stays small.
#[tokio::test]
async fn each_call_starts_from_the_same_state_and_big_values_are_cut() {
    let TestContext { redis, mut con } = TestContext::new().await;
    for _ in 0..3 {
        let _: String = con
            .xadd("ST", "*", &[("incr", "k:a 1"), ("hset", "k:h f v")])
            .await
            .expect("XADD");
    }
    let url = redis.url();
    let stateful = plugin_wasm("stateful");
    let stateful = stateful.to_str().expect("path");
    let args = [
        "--redis",
        &url,
        "--stream",
        "ST",
        "--state-prefix",
        "k:",
        "--live",
        stateful,
        stateful,
    ];
    let out = diff(&args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("3 entries: 3 the same, 0 different"),
        "{stdout}"
    );

    // payments against echo over an order whose userId is 1 MiB: echo's output carries
    // the whole field, payments' a copy too, and the two differ in their other fields.
    let big = "x".repeat(1 << 20);
    let _: String = con
        .xadd(
            "BIG",
            "*",
            &[
                ("orderId", "o1"),
                ("orderAmount", "1.50"),
                ("userId", big.as_str()),
            ],
        )
        .await
        .expect("XADD");
    let live = plugin_wasm("payments");
    let echo = plugin_wasm("echo");
    let args = [
        "--redis",
        &url,
        "--stream",
        "BIG",
        "--live",
        live.to_str().expect("path"),
        echo.to_str().expect("path"),
        "--json",
    ];
    let out = diff(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        out.stdout.len() < 64 << 10,
        "a report of {} bytes",
        out.stdout.len()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let said = report["differences"][0].to_string();
    assert!(said.contains(&format!("({} bytes)", 1 << 20)), "{said}");
}
