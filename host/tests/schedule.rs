//! When entries are handled: a due retry is found whatever stands before it in the
//! pending entries list, and entries read ahead are handled once, on their first delivery.
//! Real redis-servers, the echo plugin, the daemon in-process.

use std::time::{Duration, Instant};

use sluice_testkit::*;

/// An echo pipeline whose consumer is named `worker`.
fn echo_worker(
    settings: impl FnOnce(PipelineBuilder) -> PipelineBuilder,
) -> sluice::config::Config {
    settings(echo("echo")).config_with(ConfigBuilder::new().redis("consumer", "worker"))
}

/// 1,000 failed entries of this consumer wait for long backoffs (delivered 7 times: the
/// next try is 6.4 s or more away) ahead of one whose first retry is due in a few hundred
/// milliseconds. The retry scan finds it at once: it keeps a cursor over the whole list
/// instead of looking at the first page of idle entries only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_retry_is_found_behind_a_thousand_that_are_not_due() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let host = TestDaemon::start(
        &redis,
        echo_worker(|p| {
            p.batch(10)
                .max_attempts(20)
                .retry_backoff(Duration::from_millis(200), Duration::from_secs(30))
        }),
    )
    .await;
    let mut pipe = redis::pipe();
    for i in 0..1_000 {
        pipe.cmd("XADD")
            .arg("IN")
            .arg("*")
            .arg("action")
            .arg("retry")
            .arg("n")
            .arg(i);
    }
    let ids: Vec<String> = pipe.query_async(&mut con).await.expect("XADD");
    // The daemon reads them at once as new entries; wait until every one failed once.
    eventually("the 1,000 to fail once", Duration::from_secs(30), || {
        let mut con = con.clone();
        async move { (pending(&mut con, "IN", "G").await == 1_000).then_some(()) }
    })
    .await;
    // Make them look delivered 7 times, just now: not due for 6.4 s at least.
    for chunk in ids.chunks(200) {
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg("IN").arg("G").arg("worker").arg(0).arg(chunk);
        cmd.arg("IDLE")
            .arg(0)
            .arg("RETRYCOUNT")
            .arg(7)
            .arg("JUSTID");
        let _: redis::Value = cmd.query_async(&mut con).await.expect("XCLAIM");
    }
    let added = Instant::now();
    add(
        &mut con,
        "IN",
        &[("action", "succeed-on"), ("attempt", "2"), ("n", "due")],
    )
    .await;
    let found = eventually("the due retry to succeed", Duration::from_secs(5), || {
        let mut con = con.clone();
        async move {
            let out = entries(&mut con, "OUT").await;
            out.iter()
                .any(|(_, f)| field(f, "n") == Some("due"))
                .then(|| added.elapsed())
        }
    })
    .await;
    println!("the due retry reached OUT {found:?} after it was added (its backoff: 100-200 ms)");
    host.stop().await;
}

/// A batch handled slowly while the next one waits, read ahead: the entries read ahead are
/// handled once each, on their first delivery (attempt 1), and no commit finds an entry
/// taken from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_read_ahead_are_handled_once() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("IN")
        .arg("G")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await
        .expect("XGROUP CREATE");
    for i in 0..10 {
        add(&mut con, "IN", &[("n", &format!("plain{i}"))]).await;
    }
    for i in 0..10 {
        add(
            &mut con,
            "IN",
            &[
                ("action", "sleep"),
                ("ms", "60"),
                ("n", &format!("slow{i}")),
            ],
        )
        .await;
    }
    for i in 0..10 {
        add(
            &mut con,
            "IN",
            &[
                ("action", "succeed-on"),
                ("attempt", "1"),
                ("n", &format!("last{i}")),
            ],
        )
        .await;
    }
    let host = TestDaemon::start(&redis, echo_worker(|p| p.batch(10))).await;
    wait_len(&con, "OUT", 30).await;
    stays("each entry once", Duration::from_millis(800), || {
        let mut con = con.clone();
        async move { len(&mut con, "OUT").await == 30 }
    })
    .await;
    let out = entries(&mut con, "OUT").await;
    assert_eq!(out.len(), 30, "each entry once");
    for (_, fields) in out
        .iter()
        .filter(|(_, f)| field(f, "n").is_some_and(|n| n.starts_with("last")))
    {
        assert_eq!(
            field(fields, "seen-attempt"),
            Some("1"),
            "handled on its first delivery: {fields:?}"
        );
    }
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
    host.stop().await;
}
