//! What a shadow run costs the live pipeline: the `sluice` daemon (a child process) with
//! the Rust payments plugin under an open-loop load at a fixed rate, alone, with a
//! candidate of the same cost attached (`payments_rounding.wasm`, which differs on 99%
//! of entries), and with a costly one (`payments_js.wasm`, ~20x the time per entry,
//! sampled down), in interleaved rounds, each on a fresh redis-server.
//!
//! Per run: end-to-end latency (scheduled send → payment read, no coordinated omission,
//! the first second discarded) p50, p99, p99.9 and max; the daemon's CPU per entry; and
//! a check that every payment is the live plugin's (paidAmount as ordered, each order
//! once): a shadow must change no output.
//!
//! Run: `cargo bench -p sluice --bench shadow -- [--rate R] [--seconds S] [--rounds N]`

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use redis::AsyncCommands;
use sluice::redis_server::RedisServer;
use sluice_testkit::measure::{cpu_seconds, median, open_loop, range};
use sluice_testkit::{Order, build_plugins, workspace};

const TOKEN: &str = "bench";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Alone,
    Same,
    Costly,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Alone => "no shadow",
            Mode::Same => "shadow, same cost",
            Mode::Costly => "shadow, 20x cost",
        }
    }

    fn candidate(self) -> Option<&'static str> {
        match self {
            Mode::Alone => None,
            Mode::Same => Some("payments_rounding.wasm"),
            Mode::Costly => Some("payments_js.wasm"),
        }
    }
}

struct Run {
    histogram: Histogram<u64>,
    cpu_us: f64,
    shadow: serde_json::Value,
}

#[tokio::main]
async fn main() -> Result<()> {
    let (mut rate, mut seconds, mut rounds) = (5_000u64, 8u64, 3usize);
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rate" => rate = value.parse()?,
            "--seconds" => seconds = value.parse()?,
            "--rounds" => rounds = value.parse()?,
            other => bail!("unknown option {other}; use --rate R --seconds S --rounds N"),
        }
    }
    sluice_testkit::tls_provider();
    build_plugins();
    let plugins = workspace().join("target/plugins");
    println!(
        "shadow: payments (Rust) at {rate} orders/s for {seconds} s, {rounds} rounds interleaved, {} cores",
        std::thread::available_parallelism()?
    );
    println!(
        "{:<6} {:<20} {:>8} {:>8} {:>9} {:>8} {:>11} {:>9} {:>9} {:>8}",
        "round",
        "run",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "cpu µs/msg",
        "compared",
        "differed",
        "skipped"
    );
    let modes = [Mode::Alone, Mode::Same, Mode::Costly];
    let mut results: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (mode, runs) in modes.iter().zip(&mut results) {
            let run = run(*mode, &plugins, rate, seconds).await?;
            let ms = |q: f64| run.histogram.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "{:<6} {:<20} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>11.2} {:>9} {:>9} {:>8}",
                round,
                mode.name(),
                ms(0.5),
                ms(0.99),
                ms(0.999),
                run.histogram.max() as f64 / 1000.0,
                run.cpu_us,
                run.shadow["compared"],
                run.shadow["differed"],
                run.shadow["skipped"],
            );
            runs.push(run);
        }
    }
    println!("\nmedian of {rounds} rounds (range):");
    for (mode, runs) in modes.iter().zip(&results) {
        let stat = |f: &dyn Fn(&Run) -> f64| {
            let v: Vec<f64> = runs.iter().map(f).collect();
            let (low, high) = range(&v);
            format!("{:.2} ({low:.2}–{high:.2})", median(&v))
        };
        let q = |q: f64| move |r: &Run| r.histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:<20} p50 {}  p99 {}  p99.9 {}  cpu µs/msg {}",
            mode.name(),
            stat(&q(0.5)),
            stat(&q(0.99)),
            stat(&q(0.999)),
            stat(&|r: &Run| r.cpu_us)
        );
    }
    Ok(())
}

/// One run: the daemon on a fresh redis-server, the candidate attached (if any) before
/// the load starts, then `rate` orders a second for `seconds`.
async fn run(mode: Mode, plugins: &std::path::Path, rate: u64, seconds: u64) -> Result<Run> {
    let redis = RedisServer::start()?;
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("payments.wasm");
    std::fs::copy(plugins.join("payments.wasm"), &plugin)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\nwatch = false\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\n[[pipeline]]\nname = \"payments\"\nplugin = {plugin:?}\ninput = \"ORDERS_STREAM\"\ngroup = \"G\"\noutputs = [\"PAYMENTS_STREAM\"]\n"
        ),
    )?;
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "-c"])
        .arg(&config)
        .args(["--redis", &redis.url()])
        .env("SLUICE_LOG", "warn")
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .kill_on_drop(true)
        .spawn()?;
    let pid = daemon.id().context("the daemon runs")?.to_string();
    let base = format!("http://127.0.0.1:{port}/v1/pipelines/payments/shadow");
    let client = reqwest::Client::new();
    let ready = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_err()
    {
        if Instant::now() > ready {
            bail!("the daemon's admin API did not answer");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(candidate) = mode.candidate() {
        let bytes = std::fs::read(plugins.join(candidate))?;
        let answer = client
            .put(&base)
            .bearer_auth(TOKEN)
            .body(bytes)
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!("attaching {candidate}: {}", answer.text().await?);
        }
    }
    let cpu0 = cpu_seconds(&pid)?;
    let add = |pipe: &mut redis::Pipeline, i: usize| Order::seed(i).add_to(pipe, "ORDERS_STREAM");
    let histogram = open_loop(&redis.url(), rate, seconds, "PAYMENTS_STREAM", add).await?;
    let orders = (rate * seconds) as f64;
    let cpu_us = (cpu_seconds(&pid)? - cpu0) * 1e6 / orders;
    let shadow = match mode.candidate() {
        Some(_) => {
            client
                .get(&base)
                .bearer_auth(TOKEN)
                .send()
                .await?
                .json()
                .await?
        }
        None => serde_json::json!({"compared": "-", "differed": "-", "skipped": "-"}),
    };
    check_outputs(&redis.url(), (rate * seconds) as usize).await?;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid.parse()?, libc::SIGTERM) };
    daemon.wait().await?;
    Ok(Run {
        histogram,
        cpu_us,
        shadow,
    })
}

/// Every payment is the live plugin's: paidAmount as ordered, each order once.
async fn check_outputs(url: &str, orders: usize) -> Result<()> {
    let mut con = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let payments: redis::streams::StreamRangeReply =
        con.xrange("PAYMENTS_STREAM", "-", "+").await?;
    if payments.ids.len() != orders {
        bail!("{} payments for {orders} orders", payments.ids.len());
    }
    for entry in &payments.ids {
        let id: String = entry.get("orderId").context("orderId")?;
        let paid: String = entry.get("paidAmount").context("paidAmount")?;
        let i: usize = id[id.len() - 8..].parse()?;
        if paid != format!("{}.{:02}", 100 + i % 900, i % 100) {
            bail!("order {id} paid {paid}: not the live plugin's output");
        }
    }
    Ok(())
}
