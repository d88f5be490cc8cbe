//! Handlers that wait on the network: entries/s of the payments handler that charges a
//! provider over HTTP (`payments_http.wasm`), against a local provider that answers each
//! request in 20 ms, at 1, 8, 32 and 128 requests in flight — beside the ideal (in flight
//! / 20 ms) and beside a Node consumer of the same stream (`seed-node/outbound.mjs`:
//! node-redis and `fetch`, the same number of requests in flight).
//!
//! Each round runs every level with both contenders, interleaved, on a fresh redis-server
//! with enough orders for about two seconds at the ideal rate; the rate counts from the
//! provider's first request of the run to the last payment. Prints each run, then per level the median and range of
//! the rounds, the median's share of the ideal (goal >= 0.8) and Sluice / Node.
//!
//! `cargo bench -p sluice --bench outbound [-- --rounds N --levels 1,8,32,128]`

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redis::AsyncCommands;
use sluice::redis_server::RedisServer;
use sluice_testkit::{HttpServer, Order, plugin_wasm};

const LATENCY: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, PartialEq)]
enum Contender {
    Sluice,
    Node,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Sluice => "sluice",
            Contender::Node => "node",
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let rounds: usize = value("--rounds").map_or(Ok(3), |v| v.parse())?;
    let levels: Vec<usize> = match value("--levels") {
        Some(v) => v.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 8, 32, 128],
    };
    let seed = sluice_testkit::measure::seed_node()?;
    let plugin = plugin_wasm("payments-http");
    let provider = HttpServer::start();
    provider.set_pay_delay(LATENCY);
    let mut runs: Vec<(usize, Contender, f64)> = Vec::new();
    for round in 1..=rounds {
        for &level in &levels {
            for contender in [Contender::Sluice, Contender::Node] {
                let rate = measure(contender, level, &plugin, &seed, &provider).await?;
                println!(
                    "round {round}: {:>6} in flight {level:>3}: {rate:>8.0} entries/s",
                    contender.name()
                );
                runs.push((level, contender, rate));
            }
        }
    }
    report(&levels, &runs, rounds);
    Ok(())
}

/// Entries/s of one run: `contender` with `level` requests in flight.
async fn measure(
    contender: Contender,
    level: usize,
    plugin: &Path,
    seed: &Path,
    provider: &HttpServer,
) -> Result<f64> {
    let ideal = level as f64 / LATENCY.as_secs_f64();
    let orders = ((ideal * 2.0) as usize).max(100);
    let redis = RedisServer::start()?;
    let mut con = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    let mut pipe = redis::pipe();
    for i in 0..orders {
        Order::seed(i).add_to(&mut pipe, "ORDERS_STREAM");
    }
    let () = pipe.query_async(&mut con).await?;
    let dir = tempfile::tempdir()?;
    let pay = provider.url("/pay");
    let mut child = match contender {
        Contender::Sluice => sluice(&redis.url(), plugin, level, provider, dir.path())?,
        Contender::Node => tokio::process::Command::new("node")
            .args([
                "outbound.mjs",
                &redis.url(),
                &orders.to_string(),
                &pay,
                &level.to_string(),
            ])
            .current_dir(seed)
            .kill_on_drop(true)
            .spawn()?,
    };
    // The clock starts at the provider's first request of the run: a consumer's start-up
    // is not counted, and neither is waiting for a first commit.
    let seen_before = provider.seen_count();
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    let rate = loop {
        let done: usize = con.xlen("PAYMENTS_STREAM").await?;
        if first.is_none() && provider.seen_count() > seen_before {
            first = Some(Instant::now());
        }
        if done >= orders {
            let at = first.context("no request reached the provider")?;
            break done as f64 / at.elapsed().as_secs_f64().max(1e-3);
        }
        if Instant::now() > deadline {
            bail!("{}: only {done} of {orders} payments", contender.name());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    if contender == Contender::Sluice && std::env::var("BENCH_METRICS").is_ok() {
        print_metrics().await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(rate)
}

fn sluice(
    url: &str,
    plugin: &Path,
    level: usize,
    provider: &HttpServer,
    dir: &Path,
) -> Result<tokio::process::Child> {
    let config = dir.join("sluice.toml");
    let text = format!(
        r#"[[pipeline]]
name = "payments"
plugin = "{plugin}"
input = "ORDERS_STREAM"
group = "ORDERS_CON_GROUP"
outputs = ["PAYMENTS_STREAM"]
batch = {batch}
concurrency = {level}
allowed_outbound_hosts = ["{origin}"]
config = {{ provider_url = "{pay}" }}
"#,
        plugin = plugin.display(),
        batch = (level * batch_factor()).max(100),
        origin = provider.origin(),
        pay = provider.url("/pay"),
    );
    let text = if std::env::var("BENCH_METRICS").is_ok() {
        format!("[admin]\nlisten = \"127.0.0.1:19999\"\n\n{text}")
    } else {
        text
    };
    std::fs::write(&config, text)?;
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "-c"])
        .arg(&config)
        .args(["--redis", url])
        .env("SLUICE_LOG", "warn")
        .env("SLUICE_ADMIN_TOKEN", "bench")
        .kill_on_drop(true)
        .spawn()
        .context("starting sluice")
}

/// With `BENCH_METRICS`: where the time of the run went, from the daemon's `/metrics`.
async fn print_metrics() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Ok(response) = reqwest::get("http://127.0.0.1:19999/metrics").await else {
        return;
    };
    let text = response.text().await.unwrap_or_default();
    for line in text.lines() {
        if (line.contains("_sum") || line.contains("_count")) && line.contains("seconds") {
            println!("    {line}");
        }
    }
}

/// Entries per instance in one batch (`BENCH_BATCH_FACTOR`, default 4: what a pipeline
/// with a grant gets unless it sets `batch`).
fn batch_factor() -> usize {
    std::env::var("BENCH_BATCH_FACTOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

fn report(levels: &[usize], runs: &[(usize, Contender, f64)], rounds: usize) {
    let stats = |level: usize, who: Contender| {
        let mut rates: Vec<f64> = runs
            .iter()
            .filter(|(l, c, _)| *l == level && *c == who)
            .map(|(_, _, r)| *r)
            .collect();
        rates.sort_by(f64::total_cmp);
        let median = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
        (
            median,
            rates.first().copied().unwrap_or(0.0),
            rates.last().copied().unwrap_or(0.0),
        )
    };
    println!("\nmedian of {rounds} rounds (range), provider latency {LATENCY:?}");
    println!("| in flight | ideal | sluice | sluice / ideal | node | sluice / node |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &level in levels {
        let ideal = level as f64 / LATENCY.as_secs_f64();
        let (s, s_lo, s_hi) = stats(level, Contender::Sluice);
        let (n, n_lo, n_hi) = stats(level, Contender::Node);
        println!(
            "| {level} | {ideal:.0} | {s:.0} ({s_lo:.0}–{s_hi:.0}) | {:.2} | {n:.0} ({n_lo:.0}–{n_hi:.0}) | {:.2} |",
            s / ideal,
            s / n.max(1e-9)
        );
    }
}
