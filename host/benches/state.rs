//! What handler state costs: the payments pipeline alone against the same pipeline whose
//! handler also records each order (`HSET order:<id>` twice) and adds to its user's total
//! (`INCRBY user-total:<user>`, a read checked at the commit), side by side in one run,
//! several rounds, each on a fresh redis-server.
//!
//! Per run: N seed-shaped orders from 500 users preloaded, then drained by an in-process
//! daemon. Rate = payments over the span of their stream IDs (start-up not counted);
//! daemon CPU = this process's user + system time over the drain, per message; redis
//! CPU the same for the redis-server (from /proc).
//!
//! Run: `cargo bench -p sluice --bench state -- [--orders N] [--rounds R]`

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redis::AsyncCommands;
use sluice::redis_server::RedisServer;
use sluice_testkit::measure::cpu_seconds;
use sluice_testkit::{ORDERS, Order, build_plugins, workspace};

struct Run {
    rate: f64,
    cpu_us: f64,
    redis_us: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut orders = 50_000usize;
    let mut rounds = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--orders" => orders = args.next().context("--orders N")?.parse()?,
            "--rounds" => rounds = args.next().context("--rounds R")?.parse()?,
            "--bench" => {}
            other => bail!("unknown argument {other:?}"),
        }
    }
    let root = plugins_built();
    let plugins = root.join("target/plugins");
    println!(
        "state: {orders} orders, batch 100, concurrency 1, {rounds} rounds, {} cores",
        std::thread::available_parallelism()?
    );
    println!(
        "{:<6} {:>14} {:>14} {:>8} {:>18} {:>18} {:>14}",
        "round",
        "stateless/s",
        "state/s",
        "ratio",
        "stateless cpu/msg",
        "state cpu/msg",
        "extra cpu/msg"
    );
    let (mut ratios, mut extras) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let plain = drain(&plugins.join("payments.wasm"), false, orders).await?;
        let stateful = drain(&plugins.join("payments_state.wasm"), true, orders).await?;
        let ratio = stateful.rate / plain.rate;
        let extra = stateful.cpu_us - plain.cpu_us;
        println!(
            "{round:<6} {:>12.0} {:>10.0} {:>7.2} {:>13.2} µs {:>9.2} µs {:>11.2} µs {:>8.2} µs ({:+.2})",
            plain.rate,
            stateful.rate,
            ratio,
            plain.cpu_us,
            stateful.cpu_us,
            extra,
            stateful.redis_us,
            stateful.redis_us - plain.redis_us
        );
        ratios.push(ratio);
        extras.push(extra);
    }
    ratios.sort_by(f64::total_cmp);
    extras.sort_by(f64::total_cmp);
    println!(
        "median: state / stateless = {:.2} (goal >= 0.75); extra daemon CPU = {:.2} µs per message (goal <= 3)",
        ratios[ratios.len() / 2],
        extras[extras.len() / 2]
    );
    Ok(())
}

async fn drain(plugin: &std::path::Path, state: bool, orders: usize) -> Result<Run> {
    let redis = tokio::task::spawn_blocking(RedisServer::start).await??;
    let mut con = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    for start in (0..orders).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 1_000).min(orders) {
            Order::seed(i)
                .user(format!("USR_{}", i % 500))
                .add_to(&mut pipe, ORDERS);
        }
        let () = pipe.query_async(&mut con).await?;
    }
    let text = format!(
        "[redis]\nurl = \"{}\"\n[plugins]\ncache = false\n[[pipeline]]\nname = \"payments\"\nplugin = \"{}\"\ninput = \"ORDERS_STREAM\"\ngroup = \"G\"\noutputs = [\"PAYMENTS_STREAM\"]\nbatch = 100\n{}",
        redis.url(),
        plugin.display(),
        if state {
            "state = [\"order:\", \"user-total:\"]\n"
        } else {
            ""
        }
    );
    let config = sluice::config::Config::parse(&text, std::path::Path::new("."))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let daemon = sluice::start(config, shutdown.clone()).await?;
    let cpu_before = cpu_seconds("self")?;
    let redis_pid = redis.pid().context("redis-server runs")?;
    let redis_before = cpu_seconds(&redis_pid.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: usize = con.xlen("PAYMENTS_STREAM").await?;
        if done >= orders {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {orders} payments after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_seconds("self")? - cpu_before;
    let redis_cpu = cpu_seconds(&redis_pid.to_string())? - redis_before;
    shutdown.cancel();
    daemon.wait().await.expect("the daemon stopped on its own");
    let first: redis::streams::StreamRangeReply =
        con.xrange_count("PAYMENTS_STREAM", "-", "+", 1).await?;
    let last: redis::streams::StreamRangeReply =
        con.xrevrange_count("PAYMENTS_STREAM", "+", "-", 1).await?;
    let ms = |r: &redis::streams::StreamRangeReply| -> Result<u64> {
        let id = &r.ids.first().context("no payments")?.id;
        Ok(id.split('-').next().unwrap_or("0").parse()?)
    };
    let span = (ms(&last)? - ms(&first)?).max(1) as f64 / 1e3;
    if state {
        let total: i64 = con.get("user-total:USR_7").await?;
        let want: i64 = (0..orders)
            .filter(|i| i % 500 == 7)
            .map(|i| ((5 + i % 400) * 100 + i % 100) as i64)
            .sum();
        if total != want {
            bail!("user-total:USR_7 is {total}, not {want}");
        }
    }
    Ok(Run {
        rate: orders as f64 / span,
        cpu_us: cpu * 1e6 / orders as f64,
        redis_us: redis_cpu * 1e6 / orders as f64,
    })
}

/// Builds every plugin (into `target/plugins`) and returns the workspace root.
fn plugins_built() -> std::path::PathBuf {
    build_plugins();
    workspace()
}
