//! Throughput benchmark: the same orders → payments work done by
//!
//! - **native**: a hand-written Rust consumer with the same batching (XREADGROUP COUNT b,
//!   build the payment, XADD + XACK per batch in one MULTI) — the ceiling for any wrapper;
//! - **sluice-rust**: the daemon with `plugins/payments` (epoch interruption and the
//!   memory limiter on, as shipped);
//! - **seed-node**: the tutorial's node-redis v4 consumer, installed from npm here;
//!
//! each on a fresh redis-server (persistence off) preloaded with N seed-shaped orders,
//! side by side in one run. Prints msg/s, CPU seconds per 100k messages (consumer and
//! redis-server, from /proc), and the ratio to native. Then the handler's own cost: calls
//! into a reused instance, measured on the `wasm` module alone.
//!
//! Run: `cargo bench -p sluice --bench throughput -- [--orders N] [--batch B]`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redis::AsyncCommands;
use sluice::config::Config;
use sluice::redis_server::RedisServer;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<()> {
    let (orders, batch) = options()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .to_owned();
    if !Command::new("bash")
        .arg(root.join("scripts/build-plugins.sh"))
        .status()?
        .success()
    {
        bail!("building the plugins failed");
    }
    let seed = root.join("host/benches/seed-node");
    if !seed.join("node_modules/redis").is_dir() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&seed)
            .status()?;
        if !ok.success() {
            bail!("npm ci in {} failed", seed.display());
        }
    }
    let redis_version = Command::new("redis-server").arg("--version").output()?;
    println!(
        "throughput: {orders} orders, batch {batch}, {} cores, {}",
        std::thread::available_parallelism()?,
        String::from_utf8_lossy(&redis_version.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("redis ?")
    );
    println!(
        "{:<12} {:>10} {:>14} {:>14} {:>9}",
        "contender", "msg/s", "cpu s/100k", "redis s/100k", "vs native"
    );
    let native = run("native", orders, |url| Box::pin(native(url, orders, batch))).await?;
    let row = |r: &Measured| {
        println!(
            "{:<12} {:>10.0} {:>14.3} {:>14.3} {:>9.2}",
            r.name,
            r.rate,
            r.cpu * 1e5 / orders as f64,
            r.redis_cpu * 1e5 / orders as f64,
            r.rate / native.rate
        )
    };
    row(&native);
    let root2 = root.clone();
    let sluice = run("sluice-rust", orders, move |url| {
        Box::pin(sluice_run(root2.clone(), url, orders, batch))
    })
    .await?;
    row(&sluice);
    let seed2 = seed.clone();
    let node = run("seed-node", orders, move |url| {
        Box::pin(seed_node(seed2.clone(), url, orders))
    })
    .await?;
    row(&node);
    println!(
        "sluice-rust / native = {:.2} (target >= 0.85); sluice-rust / seed-node = {:.1} (target >= 10)",
        sluice.rate / native.rate,
        sluice.rate / node.rate
    );
    handler_overhead(&root).await?;
    Ok(())
}

fn options() -> Result<(usize, usize)> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (mut orders, mut batch) = (200_000, 100);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--orders" => orders = value.parse()?,
            "--batch" => batch = value.parse()?,
            other => bail!("unknown option {other}; use --orders N --batch B"),
        }
    }
    Ok((orders, batch))
}

struct Measured {
    name: &'static str,
    rate: f64,
    /// CPU seconds of the consumer (this process, or the node child).
    cpu: f64,
    /// CPU seconds of redis-server.
    redis_cpu: f64,
}

/// A consumer under test: given the Redis URL, drains the orders and returns its CPU
/// seconds (NaN: measure this process).
type Consume = std::pin::Pin<Box<dyn std::future::Future<Output = Result<f64>>>>;

/// Preloads the orders, runs `consume` (which returns its own CPU seconds, or NaN to use
/// this process's), and measures.
async fn run(
    name: &'static str,
    orders: usize,
    consume: impl Fn(String) -> Consume,
) -> Result<Measured> {
    let redis = RedisServer::start()?;
    let mut con = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    for start in (0..orders).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 10_000).min(orders) {
            pipe.xadd(
                "ORDERS_STREAM",
                "*",
                &[
                    ("orderId", format!("01GTP3K2TZQQCQ0T2G{i:08}")),
                    ("orderAmount", format!("{}.{:02}", 100 + i % 900, i % 100)),
                    ("userId", format!("USR_4e7acc44-e91e-4c5c-9112-{i:012}")),
                ],
            )
            .ignore();
        }
        let () = pipe.query_async(&mut con).await?;
    }
    let redis_pid = redis_pid(&redis)?;
    let (own0, redis0) = (cpu_seconds("self")?, cpu_seconds(&redis_pid.to_string())?);
    let started = Instant::now();
    let child_cpu = consume(redis.url()).await?;
    let wall = started.elapsed().as_secs_f64();
    let done: usize = con.xlen("PAYMENTS_STREAM").await?;
    if done != orders {
        bail!("{name}: {done} payments for {orders} orders");
    }
    let cpu = if child_cpu.is_nan() {
        cpu_seconds("self")? - own0
    } else {
        child_cpu
    };
    Ok(Measured {
        name,
        rate: orders as f64 / wall,
        cpu,
        redis_cpu: cpu_seconds(&redis_pid.to_string())? - redis0,
    })
}

/// The hand-written consumer: the same batching as Sluice, no sandbox, no guard.
async fn native(url: String, orders: usize, batch: usize) -> Result<f64> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let _: redis::RedisResult<()> = con
        .xgroup_create_mkstream("ORDERS_STREAM", "ORDERS_CON_GROUP", "0")
        .await;
    let opts = redis::streams::StreamReadOptions::default()
        .group("ORDERS_CON_GROUP", "native")
        .count(batch)
        .block(1000);
    let mut done = 0;
    while done < orders {
        let reply: redis::streams::StreamReadReply =
            con.xread_options(&["ORDERS_STREAM"], &[">"], &opts).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut ids = Vec::new();
        for key in reply.keys {
            for entry in key.ids {
                let field = |k: &str| entry.get::<String>(k).unwrap_or_default();
                let amount = field("orderAmount");
                let payment_id = format!("{:0>24}", entry.id.replace('-', ""));
                pipe.xadd(
                    "PAYMENTS_STREAM",
                    "*",
                    &[
                        ("orderId", field("orderId")),
                        ("paymentId", payment_id),
                        ("orderAmount", amount.clone()),
                        ("paidAmount", amount),
                        ("orderStatusCode", "3".to_owned()),
                        ("userId", field("userId")),
                    ],
                )
                .ignore();
                ids.push(entry.id);
            }
        }
        if ids.is_empty() {
            continue;
        }
        pipe.xack("ORDERS_STREAM", "ORDERS_CON_GROUP", &ids)
            .ignore();
        let () = pipe.query_async(&mut con).await?;
        done += ids.len();
    }
    Ok(f64::NAN)
}

async fn sluice_run(
    root: std::path::PathBuf,
    url: String,
    orders: usize,
    batch: usize,
) -> Result<f64> {
    let text = format!(
        "[plugins]\ncache = false\n\n[[pipeline]]\nname = \"payments\"\nplugin = \"target/plugins/payments.wasm\"\ninput = \"ORDERS_STREAM\"\ngroup = \"ORDERS_CON_GROUP\"\noutputs = [\"PAYMENTS_STREAM\"]\nbatch = {batch}\n"
    );
    let mut config = Config::parse(&text, &root)?;
    config.redis.url = Some(url.clone());
    let shutdown = CancellationToken::new();
    let daemon = sluice::start(config, shutdown.clone()).await?;
    let mut con = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    while con.xlen::<_, usize>("PAYMENTS_STREAM").await? < orders {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    shutdown.cancel();
    daemon.wait().await;
    Ok(f64::NAN)
}

async fn seed_node(dir: std::path::PathBuf, url: String, orders: usize) -> Result<f64> {
    let child = tokio::process::Command::new("node")
        .arg("payments.mjs")
        .arg(&url)
        .arg(orders.to_string())
        .current_dir(dir)
        .spawn()?;
    let pid = child.id().context("node pid")?;
    let cpu = std::sync::Arc::new(std::sync::Mutex::new(0.0));
    let watcher = {
        let cpu = cpu.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(c) = cpu_seconds(&pid.to_string()) {
                    *cpu.lock().unwrap_or_else(|p| p.into_inner()) = c;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let status = child.wait_with_output().await?.status;
    watcher.abort();
    if !status.success() {
        bail!("the node consumer failed: {status}");
    }
    let measured = *cpu.lock().unwrap_or_else(|p| p.into_inner());
    Ok(measured)
}

/// Calls into a reused instance of the payments plugin, on the `wasm` module alone.
async fn handler_overhead(root: &Path) -> Result<()> {
    {
        let runtime = sluice::wasm::Runtime::new(false, None)?;
        let plugin =
            sluice::wasm::Plugin::load(&runtime, &root.join("target/plugins/payments.wasm"))?;
        let cell: sluice::wasm::PluginCell =
            std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(plugin));
        let limits = sluice::wasm::Limits {
            memory: 64 << 20,
            timeout: Duration::from_secs(1),
            fuel: None,
            max_outputs: 1000,
            max_output_bytes: 16 << 20,
            instance_reuse: u64::MAX,
        };
        let mut instance = sluice::wasm::Instance::new(cell, "bench", Default::default(), limits);
        let mut entry = sluice::message::Entry {
            id: "1700000000000-0".into(),
            fields: vec![
                ("orderId".into(), b"01GTP3K2TZQQCQ0T2G43DSSMTD".to_vec()),
                ("orderAmount".into(), b"228.85".to_vec()),
                (
                    "userId".into(),
                    b"USR_4e7acc44-e91e-4c5c-9112-bdd99d799dd3".to_vec(),
                ),
            ],
            attempt: 1,
        };
        for _ in 0..10_000 {
            instance
                .handle("ORDERS_STREAM", &mut entry)
                .await
                .map_err(anyhow::Error::from)?;
        }
        let calls = 200_000;
        let started = Instant::now();
        for _ in 0..calls {
            instance
                .handle("ORDERS_STREAM", &mut entry)
                .await
                .map_err(anyhow::Error::from)?;
        }
        let per_call = started.elapsed() / calls;
        println!(
            "handler overhead (payments plugin, reused instance, epoch + memory limiter on): {:.2} µs per message (target <= 5 µs)",
            per_call.as_secs_f64() * 1e6
        );
        Ok(())
    }
}

fn redis_pid(redis: &RedisServer) -> Result<u32> {
    // The server listens on its port; find it among our children by its command line.
    let port = redis.port().to_string();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with("redis-server") && cmdline.contains(&port) {
            return Ok(pid);
        }
    }
    bail!("cannot find the redis-server process")
}

/// CPU seconds (user + system) of `/proc/<pid>` (`self` for this process).
fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}
