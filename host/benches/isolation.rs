//! Isolation benchmark: a healthy pipeline's throughput alone, and beside a pipeline fed
//! only infinite-loop messages, measured side by side (alternating runs) in one process.
//!
//! Run: `cargo bench -p sluice --bench isolation` (builds the plugins first with
//! `scripts/build-plugins.sh`). Options: `-- --orders N --rounds R`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redis::AsyncCommands;
use sluice::config::Config;
use sluice::redis_server::RedisServer;
use sluice_testkit::measure::{cpu_seconds, median};
use sluice_testkit::{ORDERS, Order, build_plugins, workspace};
use tokio_util::sync::CancellationToken;

const HEALTHY: &str = r#"
[[pipeline]]
name = "payments"
plugin = "target/plugins/payments.wasm"
input = "ORDERS_STREAM"
group = "ORDERS_CON_GROUP"
outputs = ["PAYMENTS_STREAM"]
"#;

const HOSTILE: &str = r#"
[[pipeline]]
name = "hostile"
plugin = "target/plugins/hostile.wasm"
input = "LOOPS"
group = "G"
outputs = ["OUT"]
max_attempts = 1000
retry_backoff = { initial = "10ms", max = "10ms" }
limits = { timeout = "1s" }
"#;

#[tokio::main]
async fn main() -> Result<()> {
    let (orders, rounds) = options()?;
    let root = plugins_built();
    println!(
        "isolation: {orders} orders per run, {rounds} rounds, {} cores",
        std::thread::available_parallelism()?
    );
    let mut alone = Vec::new();
    let mut beside = Vec::new();
    for round in 1..=rounds {
        let a = drain(&root, orders, false).await?;
        let b = drain(&root, orders, true).await?;
        println!(
            "round {round}: alone {a:>8.0} msg/s   beside infinite loops {b:>8.0} msg/s   ratio {:.2}",
            b / a
        );
        alone.push(a);
        beside.push(b);
    }
    let (a, b) = (median(&alone), median(&beside));
    println!(
        "median: alone {a:.0} msg/s, beside infinite loops {b:.0} msg/s, ratio {:.2} (goal >= 0.90)",
        b / a
    );
    Ok(())
}

fn options() -> Result<(usize, usize)> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut orders = 50_000;
    let mut rounds = 3;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--orders" => orders = value.parse()?,
            "--rounds" => rounds = value.parse()?,
            other => bail!("unknown option {other}; use --orders N --rounds R"),
        }
    }
    Ok((orders, rounds))
}

/// Preloads `orders` orders (and, if `hostile`, a backlog of infinite-loop messages),
/// starts the daemon, and returns the payments pipeline's throughput in messages/s.
async fn drain(root: &Path, orders: usize, hostile: bool) -> Result<f64> {
    let redis = RedisServer::start()?;
    let mut con = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    for start in (0..orders).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 10_000).min(orders) {
            Order::seed(i).add_to(&mut pipe, ORDERS);
        }
        let () = pipe.query_async(&mut con).await?;
    }
    let mut text = HEALTHY.to_owned();
    if hostile {
        text += HOSTILE;
        let mut pipe = redis::pipe();
        for _ in 0..100 {
            pipe.xadd("LOOPS", "*", &[("attack", "loop")]).ignore();
        }
        let () = pipe.query_async(&mut con).await?;
    }
    let mut config = Config::parse(&text, root)?;
    config.redis.url = Some(redis.url());
    let shutdown = CancellationToken::new();
    let daemon = sluice::start(config, shutdown.clone()).await?;
    let started = Instant::now();
    let cpu_start = cpu_seconds("self")?;
    loop {
        let done: usize = con.xlen("PAYMENTS_STREAM").await?;
        if done >= orders {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("drain did not finish in 300 s ({done}/{orders})");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let rate = orders as f64 / wall;
    println!(
        "  {}: {:.2} s, the daemon used {:.2} cores",
        if hostile {
            "beside infinite loops"
        } else {
            "alone"
        },
        wall,
        (cpu_seconds("self")? - cpu_start) / wall
    );
    shutdown.cancel();
    daemon.wait().await.expect("the daemon stopped on its own");
    Ok(rate)
}

/// Builds every plugin (into `target/plugins`) and returns the workspace root.
fn plugins_built() -> std::path::PathBuf {
    build_plugins();
    workspace()
}
