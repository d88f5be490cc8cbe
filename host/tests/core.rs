//! The core data path against a real redis-server and real plugins: read → handle →
//! guarded commit, retries, dead letters, chaining, binary values.

use std::time::Duration;

use redis::AsyncCommands;
use sluice_testkit::*;

const WAIT: Duration = Duration::from_secs(20);

fn payments_config() -> String {
    payments("payments").batch(50).to_string()
}

fn echo_config(settings: impl FnOnce(PipelineBuilder) -> PipelineBuilder) -> String {
    settings(echo("echo")).to_string()
}

/// N seed-shaped orders in give N payments out, field for field, and nothing pending.
#[tokio::test]
async fn orders_become_payments() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(&redis, config(&payments_config())).await;
    let n = 300;
    for i in 0..n {
        let order = Order::new(i)
            .id(format!("order-{i}"))
            .amount(format!("{}.{:02}", 10 + i, i % 100))
            .user(format!("USR_{i}"));
        add(&mut con, ORDERS, &order.fields()).await;
    }
    wait_len(&con, "PAYMENTS_STREAM", n).await;
    let payments = entries(&mut con, "PAYMENTS_STREAM").await;
    for (i, (_, fields)) in payments.iter().enumerate() {
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "orderId",
                "paymentId",
                "orderAmount",
                "paidAmount",
                "orderStatusCode",
                "userId"
            ]
        );
        let amount = format!("{}.{:02}", 10 + i, i % 100);
        assert_eq!(
            field(fields, "orderId"),
            Some(format!("order-{i}").as_str()),
            "in order"
        );
        assert_eq!(field(fields, "orderAmount"), Some(amount.as_str()));
        assert_eq!(field(fields, "paidAmount"), Some(amount.as_str()));
        assert_eq!(field(fields, "orderStatusCode"), Some("3"));
        assert_eq!(field(fields, "userId"), Some(format!("USR_{i}").as_str()));
        assert_eq!(field(fields, "paymentId").map(str::len), Some(24));
    }
    assert_eq!(
        pending(&mut con, "ORDERS_STREAM", "ORDERS_CON_GROUP").await,
        0
    );
    assert_eq!(len(&mut con, "ORDERS_STREAM:dead").await, 0);
    host.stop().await;
}

/// Non-UTF-8 bytes, empty values and a 1 MiB value reach the handler and come back
/// unchanged, with field order and repeated names kept.
#[tokio::test]
async fn binary_values_round_trip() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(&redis, config(&echo_config(|p| p))).await;
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let fields: Vec<(String, Vec<u8>)> = vec![
        ("raw".into(), vec![0, 0xff, 0xfe, 0x80, b'\n', 0]),
        ("empty".into(), Vec::new()),
        ("big".into(), big),
        ("raw".into(), b"repeated name".to_vec()),
    ];
    let _: String = con.xadd("IN", "*", &fields).await.expect("XADD");
    wait_len(&con, "OUT", 1).await;
    let out = entries(&mut con, "OUT").await;
    assert_eq!(out[0].1, fields);
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// Field names that are not UTF-8 (`\xff`, `\xfe`): the handler would see both as one
/// name (WIT names are strings), so the entry goes to the dead-letter stream at once with
/// the reason, every byte of its names and values kept; a replay writes the very same
/// bytes back to the input.
#[tokio::test]
async fn names_that_are_not_utf8_are_dead_lettered_byte_for_byte() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(&redis, config(&echo_config(|p| p.max_attempts(2)))).await;
    let original: Vec<Vec<u8>> = vec![
        vec![0xff],
        b"a".to_vec(),
        vec![0xfe],
        b"b".to_vec(),
        b"n".to_vec(),
        b"1".to_vec(),
    ];
    let mut cmd = redis::cmd("XADD");
    cmd.arg("IN").arg("*").arg(&original);
    let _: String = cmd.query_async(&mut con).await.expect("XADD");
    wait_len(&con, "IN:dead", 1).await;
    assert_eq!(len(&mut con, "OUT").await, 0, "never handed to the handler");
    let raw = |con: &mut redis::aio::MultiplexedConnection, stream: &'static str| {
        let mut con = con.clone();
        async move {
            let reply: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .query_async(&mut con)
                .await
                .expect("XRANGE");
            reply
        }
    };
    let dead = raw(&mut con, "IN:dead").await;
    let letter = &dead[0].1;
    assert_eq!(
        &letter[12..],
        &original[..],
        "names and values byte for byte"
    );
    let reason = String::from_utf8_lossy(&letter[1]).into_owned();
    assert!(
        reason.contains("not UTF-8") && reason.contains("ff"),
        "{reason}"
    );
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
    // A replay puts the same bytes back on the input.
    let broker = broker(&redis).await;
    let replayed = broker
        .replay_all("IN:dead", "IN", sluice::message::dead_letter_fields::COUNT)
        .await
        .expect("replay");
    assert_eq!(replayed.replayed, 1);
    let input = raw(&mut con, "IN").await;
    assert_eq!(input.last().expect("replayed entry").1, original);
}

/// Entries of any width settle (Lua's `unpack` stops near 4,000 fields, which must not
/// decide delivery): 3,900 fields rejected go to the dead-letter stream whole, with the
/// six metadata fields on top; 10,000 fields echoed reach `OUT` whole; 50,000 fields
/// dead-lettered replay back to the input whole. 120,000 fields echoed: the output is
/// wider than Sluice writes, so the entry is dead-lettered with the reason and, too wide
/// to copy, a pointer to the original; a replay keeps that letter. Nothing stays pending.
#[tokio::test]
async fn entries_of_any_width_settle() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(
        &redis,
        config(&echo_config(|p| {
            p.max_attempts(2).timeout(Duration::from_secs(60))
        })),
    )
    .await;
    let wide = |n: usize, action: Option<&str>| {
        let mut fields: Vec<(String, Vec<u8>)> = (0..n)
            .map(|i| (format!("f{i}"), format!("v{i}").into_bytes()))
            .collect();
        if let Some(action) = action {
            fields.push(("action".into(), action.as_bytes().to_vec()));
        }
        fields
    };
    let rejected = wide(3_900, Some("reject"));
    let echoed = wide(10_000, None);
    let huge = wide(50_000, Some("reject"));
    let wider = wide(120_000, None);
    let mut ids = Vec::new();
    for fields in [&rejected, &echoed, &huge, &wider] {
        let id: String = con.xadd("IN", "*", fields).await.expect("XADD");
        ids.push(id);
    }
    wait_len(&con, "OUT", 1).await;
    wait_len(&con, "IN:dead", 3).await;
    let out = entries(&mut con, "OUT").await;
    assert_eq!(out[0].1, echoed, "echoed field for field");
    let dead = entries(&mut con, "IN:dead").await;
    assert_eq!(
        &dead[0].1[6..],
        &rejected[..],
        "dead letter keeps every field"
    );
    assert_eq!(&dead[1].1[6..], &huge[..]);
    assert_eq!(dead[2].1.len(), 6, "metadata only");
    let reason = String::from_utf8_lossy(&dead[2].1[0].1).into_owned();
    assert!(
        reason.contains("has 120000 fields, more than 100000")
            && reason.contains(&format!("the original is entry {} of \"IN\"", ids[3])),
        "{reason}"
    );
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
    let broker = broker(&redis).await;
    let letters = [dead[1].0.clone(), dead[2].0.clone()];
    let replayed = broker
        .replay_ids(
            "IN:dead",
            "IN",
            sluice::message::dead_letter_fields::COUNT,
            &sluice::broker::LetterIds::parse(&letters).expect("IDs"),
        )
        .await
        .expect("replay");
    assert_eq!(replayed.replayed, 1);
    assert_eq!(
        replayed.kept,
        [dead[2].0.clone()],
        "the pointer letter is kept"
    );
    let input = entries(&mut con, "IN").await;
    assert_eq!(input.last().expect("replayed entry").1, huge);
    assert_eq!(len(&mut con, "IN:dead").await, 2);
}

/// A handler `retry` and a trap both leave their entry pending and unacked, owned by
/// the daemon's consumer, while the entries around them are served.
#[tokio::test]
async fn retry_and_trap_stay_pending() {
    let TestContext { redis, mut con } = TestContext::new().await;
    // A backoff of an hour: nothing is redelivered while the test looks.
    let cfg = echo_config(|p| {
        p.max_attempts(3)
            .retry_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
    });
    let host = TestDaemon::start(&redis, config(&cfg)).await;
    add(&mut con, "IN", &[("n", "1")]).await;
    let retry = add(&mut con, "IN", &[("action", "retry")]).await;
    add(&mut con, "IN", &[("n", "2")]).await;
    let trap = add(&mut con, "IN", &[("action", "trap")]).await;
    add(&mut con, "IN", &[("n", "3")]).await;
    wait_len(&con, "OUT", 3).await;
    let rows: Vec<(String, String, u64, u64)> = con
        .xpending_count("IN", "G", "-", "+", 10)
        .await
        .map(|r: redis::streams::StreamPendingCountReply| {
            r.ids
                .into_iter()
                .map(|p| {
                    (
                        p.id,
                        p.consumer,
                        p.last_delivered_ms as u64,
                        p.times_delivered as u64,
                    )
                })
                .collect()
        })
        .expect("XPENDING");
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, [retry.as_str(), trap.as_str()]);
    assert!(
        rows.iter().all(|r| r.3 == 1),
        "delivered once each: {rows:?}"
    );
    assert_eq!(len(&mut con, "IN:dead").await, 0);
    // After the trap the instance was replaced, and it still serves.
    add(&mut con, "IN", &[("n", "4")]).await;
    wait_len(&con, "OUT", 4).await;
    host.stop().await;
}

/// A `reject` and an output to an undeclared stream each give exactly one dead letter
/// with the reason and the original fields, and are acknowledged; nothing else is written.
#[tokio::test]
async fn reject_and_undeclared_output_are_dead_lettered() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(&redis, config(&echo_config(|p| p))).await;
    let rejected = add(&mut con, "IN", &[("action", "reject"), ("k", "v1")]).await;
    let undeclared = add(&mut con, "IN", &[("action", "undeclared"), ("k", "v2")]).await;
    wait_len(&con, "IN:dead", 2).await;
    let dead = entries(&mut con, "IN:dead").await;
    let first = &dead[0].1;
    assert_eq!(field(first, "sluice.id"), Some(rejected.as_str()));
    assert_eq!(field(first, "sluice.source"), Some("IN"));
    assert_eq!(field(first, "sluice.pipeline"), Some("echo"));
    assert_eq!(field(first, "sluice.attempts"), Some("1"));
    assert!(
        field(first, "sluice.error")
            .unwrap_or_default()
            .contains("asked to reject"),
        "{first:?}"
    );
    assert!(
        field(first, "sluice.plugin")
            .unwrap_or_default()
            .starts_with("sha256:")
    );
    assert_eq!(
        &first[6..],
        &[
            ("action".to_owned(), b"reject".to_vec()),
            ("k".to_owned(), b"v1".to_vec())
        ]
    );
    let second = &dead[1].1;
    assert_eq!(field(second, "sluice.id"), Some(undeclared.as_str()));
    let reason = field(second, "sluice.error").unwrap_or_default();
    assert!(
        reason.contains("undeclared stream \"NOT_DECLARED\""),
        "{reason}"
    );
    assert_eq!(len(&mut con, "NOT_DECLARED").await, 0);
    assert_eq!(len(&mut con, "OUT").await, 0);
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// A retried entry comes back after its backoff with a growing `attempt`, and succeeds.
#[tokio::test]
async fn retries_are_redelivered_with_attempt_numbers() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg =
        echo_config(|p| p.retry_backoff(Duration::from_millis(50), Duration::from_millis(200)));
    let host = TestDaemon::start(&redis, config(&cfg)).await;
    add(
        &mut con,
        "IN",
        &[("action", "succeed-on"), ("attempt", "3")],
    )
    .await;
    wait_len(&con, "OUT", 1).await;
    let out = entries(&mut con, "OUT").await;
    assert_eq!(field(&out[0].1, "seen-attempt"), Some("3"));
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// An entry that fails on every delivery is dead-lettered after `max_attempts`, with the
/// attempts and the last error, and does not block the entries behind it.
#[tokio::test]
async fn exhausted_retries_are_dead_lettered() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg = echo_config(|p| {
        p.max_attempts(3)
            .retry_backoff(Duration::from_millis(20), Duration::from_millis(50))
    });
    let host = TestDaemon::start(&redis, config(&cfg)).await;
    add(&mut con, "IN", &[("action", "trap")]).await;
    add(&mut con, "IN", &[("n", "after")]).await;
    wait_len(&con, "IN:dead", 1).await;
    let dead = entries(&mut con, "IN:dead").await;
    assert_eq!(field(&dead[0].1, "sluice.attempts"), Some("3"));
    let reason = field(&dead[0].1, "sluice.error").unwrap_or_default();
    assert!(
        reason.contains("gave up after 3 attempts") && reason.contains("trapped"),
        "{reason}"
    );
    assert_eq!(len(&mut con, "OUT").await, 1);
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// A handler that spins past `limits.timeout` is stopped, and the daemon keeps serving.
#[tokio::test]
async fn spinning_handler_times_out() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg = echo_config(|p| p.max_attempts(1).timeout(Duration::from_millis(100)));
    let host = TestDaemon::start(&redis, config(&cfg)).await;
    add(&mut con, "IN", &[("action", "spin")]).await;
    add(&mut con, "IN", &[("n", "after")]).await;
    wait_len(&con, "IN:dead", 1).await;
    let dead = entries(&mut con, "IN:dead").await;
    let reason = field(&dead[0].1, "sluice.error").unwrap_or_default();
    assert!(reason.contains("limits.timeout"), "{reason}");
    wait_len(&con, "OUT", 1).await;
    host.stop().await;
}

/// Two pipelines in one daemon, chained: orders → payments → order status; both drain,
/// and invalid orders end in the dead-letter stream.
#[tokio::test]
async fn chained_pipelines_drain() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg = payments_config()
        + &echo("order-status")
            .plugin("{plugin:order-status}")
            .reading("PAYMENTS_STREAM", "PAYMENTS_CON_GROUP")
            .writing(&["ORDER_STATUS_STREAM"])
            .state(&["order:", "user-total:"])
            .to_string();
    let host = TestDaemon::start(&redis, config(&cfg)).await;
    for i in 0..100 {
        add(&mut con, ORDERS, &Order::new(i).amount("12.50").fields()).await;
    }
    add(
        &mut con,
        "ORDERS_STREAM",
        &[("orderId", "bad1"), ("orderAmount", "-1"), ("userId", "u")],
    )
    .await;
    add(
        &mut con,
        "ORDERS_STREAM",
        &[("orderId", "bad2"), ("orderAmount", "ten"), ("userId", "u")],
    )
    .await;
    add(
        &mut con,
        "ORDERS_STREAM",
        &[("orderId", "bad3"), ("userId", "u")],
    )
    .await;
    wait_len(&con, "ORDER_STATUS_STREAM", 100).await;
    // The invalid orders came last; the 100 statuses do not mean their batch committed.
    wait_len(&con, "ORDERS_STREAM:dead", 3).await;
    let statuses = entries(&mut con, "ORDER_STATUS_STREAM").await;
    let payments = entries(&mut con, "PAYMENTS_STREAM").await;
    for ((_, status), (_, payment)) in statuses.iter().zip(&payments) {
        let names: Vec<&str> = status.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["orderId", "paymentId", "orderStatusCode"]);
        assert_eq!(field(status, "paymentId"), field(payment, "paymentId"));
        assert_eq!(field(status, "orderStatusCode"), Some("3"));
    }
    let dead = entries(&mut con, "ORDERS_STREAM:dead").await;
    let reasons: Vec<&str> = dead
        .iter()
        .map(|(_, f)| field(f, "sluice.error").unwrap_or_default())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("negative"), "{reasons:?}");
    assert!(reasons[1].contains("not a number"), "{reasons:?}");
    assert!(reasons[2].contains("no orderAmount"), "{reasons:?}");
    assert_eq!(
        pending(&mut con, "ORDERS_STREAM", "ORDERS_CON_GROUP").await,
        0
    );
    assert_eq!(
        pending(&mut con, "PAYMENTS_STREAM", "PAYMENTS_CON_GROUP").await,
        0
    );
    host.stop().await;
}

/// On start-up a consumer first handles the entries it left pending in an earlier run.
#[tokio::test]
async fn own_pending_entries_are_read_first_after_restart() {
    let TestContext { redis, mut con } = TestContext::new().await;
    // Simulate a crash: consumer "c1" read two entries and died before committing.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("IN")
        .arg("G")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await
        .expect("group");
    add(&mut con, "IN", &[("n", "1")]).await;
    add(&mut con, "IN", &[("n", "2")]).await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("G")
        .arg("c1")
        .arg("STREAMS")
        .arg("IN")
        .arg(">")
        .query_async(&mut con)
        .await
        .expect("read");
    let cfg = echo("echo")
        .retry_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .config_with(ConfigBuilder::new().redis("consumer", "c1"));
    let host = TestDaemon::start(&redis, cfg).await;
    wait_len(&con, "OUT", 2).await;
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// An output key that is not a stream makes Redis refuse the commit: that entry is
/// dead-lettered with Redis's reason, the rest of its batch commits, nothing stays stuck.
#[tokio::test]
async fn commit_refused_by_redis_dead_letters_only_that_entry() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let _: () = redis::cmd("SET")
        .arg("OUT")
        .arg("not a stream")
        .query_async(&mut con)
        .await
        .expect("SET");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("IN")
        .arg("G")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await
        .expect("group");
    add(&mut con, "IN", &[("action", "none")]).await;
    let bad = add(&mut con, "IN", &[("k", "v")]).await;
    add(&mut con, "IN", &[("action", "none")]).await;
    let host = TestDaemon::start(&redis, config(&echo_config(|p| p))).await;
    wait_len(&con, "IN:dead", 1).await;
    let dead = entries(&mut con, "IN:dead").await;
    assert_eq!(field(&dead[0].1, "sluice.id"), Some(bad.as_str()));
    let reason = field(&dead[0].1, "sluice.error").unwrap_or_default();
    assert!(
        reason.contains("WRONGTYPE") && reason.contains("OUT"),
        "{reason}"
    );
    eventually("nothing pending", WAIT, || {
        let mut con = con.clone();
        async move { (pending(&mut con, "IN", "G").await == 0).then_some(()) }
    })
    .await;
    host.stop().await;
}

/// With `concurrency = 4` a batch is spread over four instances: every order is paid
/// exactly once and nothing stays pending.
#[tokio::test]
async fn concurrent_instances_handle_each_entry_once() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let cfg = payments("payments").batch(50).concurrency(4).to_string();
    let host = TestDaemon::start(&redis, config(&cfg)).await;
    let n = 400;
    for i in 0..n {
        add(&mut con, ORDERS, &Order::new(i).amount("3.00").fields()).await;
    }
    wait_len(&con, "PAYMENTS_STREAM", n).await;
    let mut ids: Vec<String> = entries(&mut con, "PAYMENTS_STREAM")
        .await
        .iter()
        .map(|(_, f)| field(f, "orderId").unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "each order paid once");
    assert_eq!(
        pending(&mut con, "ORDERS_STREAM", "ORDERS_CON_GROUP").await,
        0
    );
    host.stop().await;
}

/// With `version_field`, each output names the plugin version that produced it.
#[tokio::test]
async fn outputs_can_carry_the_plugin_version() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(
        &redis,
        config(&echo_config(|p| p.set("version_field", "x-plugin"))),
    )
    .await;
    add(&mut con, "IN", &[("k", "v")]).await;
    wait_len(&con, "OUT", 1).await;
    let out = entries(&mut con, "OUT").await;
    assert_eq!(out[0].1[0], ("k".to_owned(), b"v".to_vec()));
    let digest = field(&out[0].1, "x-plugin").unwrap_or_default();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    host.stop().await;
}

/// A daemon dropped without a drain takes its pipelines with it: their threads do not
/// keep consuming behind the embedder's back.
#[tokio::test]
async fn dropped_daemon_stops_its_pipelines() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(&redis, config(&echo_config(|p| p))).await;
    add(&mut con, "IN", &[("n", "before")]).await;
    wait_len(&con, "OUT", 1).await;
    host.abandon().await;
    // Its blocked read goes away with its connection (else an entry added now could
    // still be delivered to it, and stay pending like after a crash).
    eventually(
        "the pipeline's connections to close",
        Duration::from_secs(5),
        || {
            let mut con = con.clone();
            async move {
                let clients: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query_async(&mut con)
                    .await
                    .expect("CLIENT LIST");
                (!clients.contains("cmd=xreadgroup")).then_some(())
            }
        },
    )
    .await;
    add(&mut con, "IN", &[("n", "after")]).await;
    stays(
        "nothing handled or read after the drop",
        Duration::from_millis(1500),
        || {
            let mut con = con.clone();
            async move { len(&mut con, "OUT").await == 1 && pending(&mut con, "IN", "G").await == 0 }
        },
    )
    .await;
    assert_eq!(
        len(&mut con, "OUT").await,
        1,
        "nothing handled after the drop"
    );
    assert_eq!(
        pending(&mut con, "IN", "G").await,
        0,
        "nothing read after the drop"
    );
}

/// A plugin with the packed batch export (world `packed-batch-handler`, here in
/// JavaScript) gets a batch in one call; an entry that traps fails that call, and the host
/// handles the batch's entries one at a time, so that only the poison entry fails
/// (retried, then dead-lettered) while a reject dead-letters its entry alone.
#[tokio::test]
async fn a_packed_batch_export_takes_a_batch_in_one_call_and_a_poison_entry_fails_alone() {
    batch_export_case("{plugin:echo-js}", "handle-packed").await;
}

/// The same with the batch export of lists of records (world `batch-handler`).
#[tokio::test]
async fn a_batch_export_takes_a_batch_in_one_call_and_a_poison_entry_fails_alone() {
    batch_export_case("{plugin:echo-lists-js}", "handle-batch").await;
}

/// A packed batch call that returns bytes outside the encoding fails as a whole: its
/// entries are handled by `handle`, each once, and nothing is lost.
#[tokio::test]
async fn a_malformed_packed_result_falls_back_to_handle_per_entry() {
    let TestContext { redis, mut con } = TestContext::new().await;
    add_in_one_multi(&mut con, 0..5, |i| if i == 2 { "garble" } else { "echo" }).await;
    let pipeline = echo("garbled")
        .plugin("{plugin:echo-js}")
        .batch(50)
        .concurrency(1);
    let host = TestDaemon::start(&redis, pipeline.config()).await;
    wait_len(&con, "OUT", 5).await;
    for (_, fields) in entries(&mut con, "OUT").await {
        assert_eq!(field(&fields, "via"), Some("handle"), "{fields:?}");
    }
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}

/// Appends entries `n` = i, `action` = `action(i)` to `IN` in one MULTI, so that one read
/// takes them all.
async fn add_in_one_multi(
    con: &mut redis::aio::MultiplexedConnection,
    ns: std::ops::Range<u32>,
    action: impl Fn(u32) -> &'static str,
) {
    let mut add_all = redis::pipe();
    add_all.atomic();
    for i in ns {
        add_all
            .cmd("XADD")
            .arg("IN")
            .arg("*")
            .arg("n")
            .arg(i)
            .arg("action")
            .arg(action(i))
            .ignore();
    }
    let () = add_all.query_async(con).await.expect("XADD");
}

async fn batch_export_case(plugin: &str, via: &str) {
    let TestContext { redis, mut con } = TestContext::new().await;
    for i in 0..10 {
        add(&mut con, "IN", &[("n", &i.to_string())]).await;
    }
    let pipeline = echo("batched")
        .plugin(plugin)
        .batch(50)
        .concurrency(1)
        .max_attempts(2)
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(50))
        .timeout(Duration::from_secs(1));
    let host = TestDaemon::start(&redis, pipeline.config()).await;
    wait_len(&con, "OUT", 10).await;
    for (i, (_, fields)) in entries(&mut con, "OUT").await.iter().enumerate() {
        assert_eq!(field(fields, "via"), Some(via), "{fields:?}");
        // Each value the handler got is bytes of its own: not a view whose `.buffer` is
        // the whole batch (and keeps it alive).
        assert_eq!(field(fields, "own"), Some("true"), "{fields:?}");
        // The values come back byte for byte (the SDK once JSON-encoded byte lists).
        assert_eq!(
            field(fields, "n"),
            Some(i.to_string().as_str()),
            "{fields:?}"
        );
    }
    // Ten more in one MULTI (so that one read takes them all): the second spins (the
    // batch call times out), the fourth traps, the seventh is rejected.
    add_in_one_multi(&mut con, 10..20, |i| match i {
        11 => "spin",
        13 => "trap",
        16 => "reject",
        _ => "echo",
    })
    .await;
    // A spinning entry holds the batch call for two timeouts at most (not ten), then
    // fails alone.
    let started = std::time::Instant::now();
    wait_len(&con, "OUT", 17).await;
    wait_len(&con, "IN:dead", 3).await;
    // Two timeouts for the batch call, one for the spinning entry alone and one for its
    // retry, and fresh instances: ~6 s here; with the timeout times the ten entries it
    // would be 14 s or more.
    let took = started.elapsed();
    eprintln!("the poison entries settled in {took:?}");
    assert!(
        took < Duration::from_secs(11),
        "the poison entries took {took:?}"
    );
    let outs = entries(&mut con, "OUT").await;
    let ns: Vec<&str> = outs.iter().filter_map(|(_, f)| field(f, "n")).collect();
    let expected: Vec<String> = (0..20)
        .filter(|n| ![11, 13, 16].contains(n))
        .map(|n| n.to_string())
        .collect();
    let mut sorted: Vec<&str> = ns.clone();
    sorted.sort_by_key(|n| n.parse::<u32>().unwrap_or(u32::MAX));
    assert_eq!(
        sorted, expected,
        "every other entry once, the poison ones not at all"
    );
    let dead = entries(&mut con, "IN:dead").await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, f)| field(f, "sluice.error").unwrap_or_default().to_owned())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("rejected entry")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("trap")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("timeout")), "{reasons:?}");
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}
