//! Reload latency: time from a new plugin file being complete (renamed into place) to
//! the first message handled by the new version, over 20 reloads, cold (compiled) and
//! warm (from the precompiled cache), while orders flow at ~1,000/s.
//!
//! Run: `cargo bench -p sluice --bench reload` (builds the plugins first).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use redis::AsyncCommands;
use sluice::config::Config;
use sluice::redis_server::RedisServer;
use sluice_testkit::{ORDERS, Order, build_plugins, workspace};
use tokio_util::sync::CancellationToken;

const RELOADS: usize = 20;

#[tokio::main]
async fn main() -> Result<()> {
    let root = plugins_built();
    let variants = [
        root.join("target/plugins/payments_tag_a.wasm"),
        root.join("target/plugins/payments_tag_b.wasm"),
    ];
    for (label, cached) in [("cold (compile)", false), ("warm (cache)", true)] {
        let mut times = measure(&variants, cached).await?;
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "reload {label:<15} p50 {:>7.1} ms   max {:>7.1} ms   ({RELOADS} reloads)",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}

async fn measure(variants: &[PathBuf; 2], cached: bool) -> Result<Vec<Duration>> {
    let redis = RedisServer::start()?;
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("payments.wasm");
    std::fs::copy(&variants[0], &plugin)?;
    let cache = dir.path().join("cache");
    let text = format!(
        "[plugins]\nwatch = true\ncache = {cached}\ncache_dir = \"{}\"\n\n[[pipeline]]\nname = \"payments\"\nplugin = \"{}\"\ninput = \"ORDERS_STREAM\"\ngroup = \"G\"\noutputs = [\"PAYMENTS_STREAM\"]\n",
        cache.display(),
        plugin.display()
    );
    let mut config = Config::parse(&text, dir.path())?;
    config.redis.url = Some(redis.url());
    if cached {
        // Warm the cache with both versions.
        let runtime = sluice::wasm::Runtime::new(false, Some(sluice::wasm::Cache::open(&cache)?))?;
        for v in variants {
            sluice::wasm::Plugin::load(&runtime, v)?;
        }
    }
    let shutdown = CancellationToken::new();
    let daemon = sluice::start(config, shutdown.clone()).await?;
    let mut con = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let producer = {
        let mut con = con.clone();
        tokio::spawn(async move {
            for i in 0usize.. {
                let order = Order::seed(i);
                let _: redis::RedisResult<String> = con.xadd(ORDERS, "*", &order.fields()).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut times = Vec::with_capacity(RELOADS);
    for reload in 1..=RELOADS {
        let (source, tag) = if reload % 2 == 1 {
            (&variants[1], "b")
        } else {
            (&variants[0], "a")
        };
        let tmp = dir.path().join("payments.wasm.tmp");
        std::fs::copy(source, &tmp)?;
        std::fs::rename(&tmp, &plugin)?;
        let complete = Instant::now();
        loop {
            let last: redis::streams::StreamRangeReply =
                con.xrevrange_count("PAYMENTS_STREAM", "+", "-", 1).await?;
            if last
                .ids
                .first()
                .and_then(|e| e.get::<String>("tag"))
                .as_deref()
                == Some(tag)
            {
                break;
            }
            if complete.elapsed() > Duration::from_secs(60) {
                bail!("reload {reload} did not take effect in 60 s");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        times.push(complete.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producer.abort();
    shutdown.cancel();
    daemon.wait().await.expect("the daemon stopped on its own");
    Ok(times)
}

/// Builds every plugin (into `target/plugins`) and returns the workspace root.
fn plugins_built() -> std::path::PathBuf {
    build_plugins();
    workspace()
}
