//! Throughput and latency benchmark: the same orders → payments work done by
//!
//! - **native**: a hand-written Rust consumer with the same batching (XREADGROUP COUNT b,
//!   build the payment, XADD + XACK per batch in one MULTI) — the ceiling for any wrapper;
//! - **sluice-rust**: the `sluice` daemon (a child process) with `plugins/payments`
//!   (epoch interruption and the memory limiter on, as shipped);
//! - **seed-node**: the tutorial's node-redis v4 consumer, installed from npm here;
//!
//! each on a fresh redis-server (persistence off), side by side in one run.
//!
//! 1. **Saturation**: N seed-shaped orders preloaded, then drained. Rate = outputs over
//!    the span of their stream IDs (first to last payment: start-up is not counted); CPU
//!    seconds per 100k messages of the consumer and of redis-server over that span (from
//!    /proc); the consumer's peak RSS; ratio to native.
//! 2. **Latency at a fixed rate**: an open-loop producer sends orders on a schedule (10,000
//!    msg/s, then 50% of the contender's saturation rate); a sink reads the payments and
//!    records, per message, the time from its *scheduled* send to its output being read
//!    (so a stalled consumer cannot hide its backlog: no coordinated omission) in an
//!    HdrHistogram. The first second is warm-up and discarded.
//! 3. **Handler cost**: calls into a reused instance, on the `wasm` module alone.
//!
//! Run: `cargo bench -p sluice --bench throughput -- [--orders N] [--batch B]
//! [--rate R] [--seconds S] [--only NAME] [--no-latency]`

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use redis::AsyncCommands;
use sluice::redis_server::RedisServer;

const ORDERS: &str = "ORDERS_STREAM";
const PAYMENTS: &str = "PAYMENTS_STREAM";
const GROUP: &str = "ORDERS_CON_GROUP";

#[tokio::main]
async fn main() -> Result<()> {
    let options = Options::parse()?;
    let root = support::build_plugins()?;
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
    let mut contenders = vec![
        Contender::Native,
        Contender::Sluice {
            name: "sluice-rust",
            plugin: root.join("target/plugins/payments.wasm"),
        },
    ];
    for (name, file) in [
        ("sluice-js", "payments_js.wasm"),
        ("sluice-python", "payments_python.wasm"),
        ("sluice-c", "payments_c.wasm"),
    ] {
        let plugin = root.join("target/plugins").join(file);
        if plugin.is_file() {
            contenders.push(Contender::Sluice { name, plugin });
        }
    }
    contenders.push(Contender::SeedNode(seed));
    contenders.retain(|c| options.only.as_deref().is_none_or(|only| c.name() == only));

    let redis_version = Command::new("redis-server").arg("--version").output()?;
    println!(
        "throughput: {} orders, batch {}, concurrency 1, {} cores, redis {}, limits on (epoch interruption, 64 MiB memory limiter)",
        options.orders,
        options.batch,
        std::thread::available_parallelism()?,
        String::from_utf8_lossy(&redis_version.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("?")
            .trim_start_matches("v=")
    );
    println!(
        "{:<14} {:>10} {:>12} {:>14} {:>10} {:>10}",
        "contender", "msg/s", "cpu s/100k", "redis s/100k", "peak RSS", "vs native"
    );
    let mut saturation = Vec::new();
    for contender in &contenders {
        let measured = saturate(contender, &options).await?;
        let native = saturation
            .first()
            .map_or(measured.rate, |(_, m): &(&Contender, Measured)| m.rate);
        println!(
            "{:<14} {:>10.0} {:>12.3} {:>14.3} {:>7.1} MB {:>10.2}",
            contender.name(),
            measured.rate,
            measured.cpu * 1e5 / options.orders as f64,
            measured.redis_cpu * 1e5 / options.orders as f64,
            measured.peak_rss as f64 / 1e6,
            measured.rate / native
        );
        saturation.push((contender, measured));
    }
    let rate_of = |name: &str| {
        saturation
            .iter()
            .find(|(c, _)| c.name() == name)
            .map(|(_, m)| m.rate)
    };
    if let (Some(native), Some(sluice), Some(node)) = (
        rate_of("native"),
        rate_of("sluice-rust"),
        rate_of("seed-node"),
    ) {
        println!(
            "sluice-rust / native = {:.2} (target >= 0.85); sluice-rust / seed-node = {:.1} (target >= 10)",
            sluice / native,
            sluice / node
        );
    }

    if options.latency {
        println!(
            "\nlatency: open-loop producer, scheduled send → payment read, {} s per run, first 1 s discarded",
            options.seconds
        );
        println!(
            "{:<14} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "contender", "msg/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for (contender, measured) in &saturation {
            let half = (measured.rate / 2.0).round() as u64;
            let mut rates = vec![options.rate];
            if half != options.rate {
                rates.push(half);
            }
            for rate in rates {
                let h = latency(contender, &options, rate).await?;
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                println!(
                    "{:<14} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    contender.name(),
                    rate,
                    ms(0.5),
                    ms(0.99),
                    ms(0.999),
                    h.max() as f64 / 1000.0
                );
            }
        }
    }
    if options.only.is_none() || options.only.as_deref() == Some("handler") {
        handler_overhead(&root).await?;
    }
    Ok(())
}

struct Options {
    orders: usize,
    batch: usize,
    rate: u64,
    seconds: u64,
    only: Option<String>,
    latency: bool,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut o = Options {
            orders: 200_000,
            batch: 100,
            rate: 10_000,
            seconds: 5,
            only: None,
            latency: true,
        };
        let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
        while let Some(flag) = it.next() {
            if flag == "--no-latency" {
                o.latency = false;
                continue;
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--orders" => o.orders = value.parse()?,
                "--batch" => o.batch = value.parse()?,
                "--rate" => o.rate = value.parse()?,
                "--seconds" => o.seconds = value.parse()?,
                "--only" => o.only = Some(value),
                other => bail!(
                    "unknown option {other}; use --orders N --batch B --rate R --seconds S --only NAME --no-latency"
                ),
            }
        }
        if o.seconds < 2 {
            bail!("--seconds must be at least 2 (the first second is warm-up)");
        }
        Ok(o)
    }
}

enum Contender {
    Native,
    Sluice { name: &'static str, plugin: PathBuf },
    SeedNode(PathBuf),
}

impl Contender {
    fn name(&self) -> &'static str {
        match self {
            Contender::Native => "native",
            Contender::Sluice { name, .. } => name,
            Contender::SeedNode(_) => "seed-node",
        }
    }

    /// Starts consuming until `orders` payments exist.
    async fn start(&self, url: &str, orders: usize, batch: usize) -> Result<Running> {
        Ok(match self {
            Contender::Native => {
                let url = url.to_owned();
                Running::Task(tokio::spawn(native(url, orders, batch)))
            }
            Contender::Sluice { plugin, .. } => {
                let dir = tempfile::tempdir()?;
                let config = dir.path().join("sluice.toml");
                std::fs::write(
                    &config,
                    format!(
                        "[plugins]\ncache = false\nwatch = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[pipeline]]\nname = \"payments\"\nplugin = {plugin:?}\ninput = \"{ORDERS}\"\ngroup = \"{GROUP}\"\noutputs = [\"{PAYMENTS}\"]\nbatch = {batch}\n"
                    ),
                )?;
                let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                    .arg("run")
                    .arg("-c")
                    .arg(&config)
                    .arg("--redis")
                    .arg(url)
                    .env(
                        "SLUICE_LOG",
                        std::env::var("BENCH_SLUICE_LOG").unwrap_or_else(|_| "warn".into()),
                    )
                    .env("SLUICE_ADMIN_TOKEN", "bench")
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting sluice")?;
                Running::Daemon(child, dir)
            }
            Contender::SeedNode(dir) => {
                let child = tokio::process::Command::new("node")
                    .arg("payments.mjs")
                    .arg(url)
                    .arg(orders.to_string())
                    .current_dir(dir)
                    .kill_on_drop(true)
                    .spawn()?;
                Running::Child(child)
            }
        })
    }
}

enum Running {
    Task(tokio::task::JoinHandle<Result<()>>),
    /// The daemon, and the directory of its config.
    Daemon(tokio::process::Child, tempfile::TempDir),
    /// A consumer that exits by itself once done.
    Child(tokio::process::Child),
}

impl Running {
    fn pid(&self) -> String {
        match self {
            Running::Task(_) => "self".to_owned(),
            Running::Daemon(child, _) | Running::Child(child) => {
                child.id().map_or("self".to_owned(), |p| p.to_string())
            }
        }
    }

    /// Waits for the consumer to end (a daemon is asked to stop).
    async fn finish(self) -> Result<()> {
        match self {
            Running::Task(task) => task.await?,
            Running::Daemon(mut child, _dir) => {
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) on our own child's pid.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                let status = child.wait().await?;
                if !status.success() {
                    bail!("sluice exited with {status}");
                }
                Ok(())
            }
            Running::Child(mut child) => {
                let status = child.wait().await?;
                if !status.success() {
                    bail!("the consumer exited with {status}");
                }
                Ok(())
            }
        }
    }
}

struct Measured {
    rate: f64,
    /// CPU seconds of the consumer over the measured span.
    cpu: f64,
    /// CPU seconds of redis-server over the measured span.
    redis_cpu: f64,
    /// Peak resident set of the consumer, bytes.
    peak_rss: u64,
}

/// Preloads the orders, then drains them through the contender.
async fn saturate(contender: &Contender, options: &Options) -> Result<Measured> {
    let orders = options.orders;
    let redis = RedisServer::start()?;
    let mut con = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    for start in (0..orders).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 10_000).min(orders) {
            pipe.xadd(ORDERS, "*", &order(i)).ignore();
        }
        let () = pipe.query_async(&mut con).await?;
    }
    let redis_pid = redis_pid(&redis)?.to_string();
    // Peak RSS of this process (the native contender) counts from here.
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
    let running = contender.start(&redis.url(), orders, options.batch).await?;
    let pid = running.pid();
    // Sample CPU from the first payment to the last.
    let mut first = None;
    let mut peak_rss = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: usize = con.xlen(PAYMENTS).await?;
        peak_rss = peak_rss.max(peak_rss_of(&pid).unwrap_or(0));
        if first.is_none() && done > 0 {
            first = Some((cpu_seconds(&pid)?, cpu_seconds(&redis_pid)?));
        }
        if done >= orders {
            break;
        }
        if Instant::now() > deadline {
            bail!("{}: only {done} of {orders} payments", contender.name());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (cpu, redis_cpu) = (cpu_seconds(&pid)?, cpu_seconds(&redis_pid)?);
    peak_rss = peak_rss.max(peak_rss_of(&pid).unwrap_or(0));
    running.finish().await?;
    let (cpu0, redis0) = first.context("no payments")?;
    let span = |id: &str| -> Result<f64> {
        let ms = id.split_once('-').context("stream id")?.0;
        Ok(ms.parse::<f64>()? / 1000.0)
    };
    let firsts: redis::streams::StreamRangeReply = con.xrange_count(PAYMENTS, "-", "+", 1).await?;
    let lasts: redis::streams::StreamRangeReply =
        con.xrevrange_count(PAYMENTS, "+", "-", 1).await?;
    let seconds = span(&lasts.ids[0].id)? - span(&firsts.ids[0].id)?;
    Ok(Measured {
        rate: (orders - 1) as f64 / seconds.max(0.001),
        cpu: cpu - cpu0,
        redis_cpu: redis_cpu - redis0,
        peak_rss,
    })
}

/// One seed-shaped order; its `orderId` ends in its sequence number.
fn order(i: usize) -> [(&'static str, String); 3] {
    [
        ("orderId", format!("01GTP3K2TZQQCQ0T2G{i:08}")),
        ("orderAmount", format!("{}.{:02}", 100 + i % 900, i % 100)),
        ("userId", format!("USR_4e7acc44-e91e-4c5c-9112-{i:012}")),
    ]
}

/// Runs the contender under an open-loop load of `rate` orders per second and returns
/// the end-to-end latencies (µs) after the first second.
async fn latency(contender: &Contender, options: &Options, rate: u64) -> Result<Histogram<u64>> {
    let orders = (rate * options.seconds) as usize;
    let warmup = rate as usize;
    let redis = RedisServer::start()?;
    let client = redis::Client::open(redis.url())?;
    let running = contender.start(&redis.url(), orders, options.batch).await?;
    // Let the consumer create its group and start reading before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let scheduled = move |i: usize| start + period.mul_f64(i as f64);
    let failed = Arc::new(AtomicBool::new(false));

    let producer = {
        let mut con = client.get_connection()?;
        let failed = failed.clone();
        std::thread::spawn(move || -> Result<()> {
            let mut next = 0;
            while next < orders && !failed.load(Ordering::Relaxed) {
                let now = Instant::now();
                let due = scheduled(next);
                if due > now {
                    std::thread::sleep(due - now);
                    continue;
                }
                // Everything due by now, in one round trip.
                let mut pipe = redis::pipe();
                while next < orders && scheduled(next) <= now {
                    pipe.xadd(ORDERS, "*", &order(next)).ignore();
                    next += 1;
                }
                let () = pipe.query(&mut con)?;
            }
            Ok(())
        })
    };
    let sink = {
        let mut con = client.get_connection()?;
        let failed = failed.clone();
        std::thread::spawn(move || -> Result<Histogram<u64>> {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut seen, mut last) = (0, "0".to_owned());
            let opts = redis::streams::StreamReadOptions::default()
                .count(1000)
                .block(10_000);
            while seen < orders {
                let reply: Option<redis::streams::StreamReadReply> =
                    redis::Commands::xread_options(&mut con, &[PAYMENTS], &[&last], &opts)?;
                let now = Instant::now();
                let Some(reply) = reply else {
                    failed.store(true, Ordering::Relaxed);
                    let (o, p): (usize, usize) =
                        redis::pipe().xlen(ORDERS).xlen(PAYMENTS).query(&mut con)?;
                    bail!(
                        "no payment for 10 s after {seen} of {orders} ({o} orders, {p} payments)"
                    );
                };
                for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                    let id: String = entry.get("orderId").context("payment without orderId")?;
                    let i: usize = id[id.len() - 8..].parse()?;
                    if i >= warmup {
                        let micros = now.saturating_duration_since(scheduled(i)).as_micros();
                        histogram.saturating_record(micros.max(1) as u64);
                    }
                    seen += 1;
                    last = entry.id;
                }
            }
            Ok(histogram)
        })
    };
    let histogram = tokio::task::spawn_blocking(move || {
        let produced = producer.join();
        let histogram = sink.join();
        match (produced, histogram) {
            (Ok(Ok(())), Ok(h)) => h,
            (Ok(Err(e)), _) => Err(e.context("producer")),
            _ => bail!("a load thread panicked"),
        }
    })
    .await??;
    running.finish().await?;
    Ok(histogram)
}

/// The hand-written consumer: the same batching as Sluice, no sandbox, no guard.
async fn native(url: String, orders: usize, batch: usize) -> Result<()> {
    let client = redis::Client::open(url)?;
    // A blocking read outlasts the default response timeout.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let _: redis::RedisResult<()> = con.xgroup_create_mkstream(ORDERS, GROUP, "0").await;
    let opts = redis::streams::StreamReadOptions::default()
        .group(GROUP, "native")
        .count(batch)
        .block(1000);
    let mut done = 0;
    while done < orders {
        let reply: Option<redis::streams::StreamReadReply> =
            con.xread_options(&[ORDERS], &[">"], &opts).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut ids = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let field = |k: &str| entry.get::<String>(k).unwrap_or_default();
            let amount = field("orderAmount");
            let payment_id = format!("{:0>24}", entry.id.replace('-', ""));
            pipe.xadd(
                PAYMENTS,
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
        if ids.is_empty() {
            continue;
        }
        pipe.xack(ORDERS, GROUP, &ids).ignore();
        let () = pipe.query_async(&mut con).await?;
        done += ids.len();
    }
    Ok(())
}

/// Calls into a reused instance of the payments plugin, on the `wasm` module alone.
async fn handler_overhead(root: &Path) -> Result<()> {
    let runtime = sluice::wasm::Runtime::new(false, None)?;
    let plugin = sluice::wasm::Plugin::load(&runtime, &root.join("target/plugins/payments.wasm"))?;
    let cell: sluice::wasm::PluginCell = Arc::new(arc_swap::ArcSwap::from_pointee(plugin));
    // The limits as shipped, on an instance that is never replaced.
    let limits = sluice::wasm::Limits {
        instance_reuse: u64::MAX,
        ..sluice::config::LimitsConfig::default().to_limits()
    };
    let mut instance = sluice::wasm::Instance::new(cell, Default::default(), limits);
    let mut entry = support::order_entry();
    for _ in 0..10_000 {
        instance
            .handle(ORDERS, &mut entry)
            .await
            .map_err(anyhow::Error::from)?;
    }
    let calls = 200_000;
    let started = Instant::now();
    for _ in 0..calls {
        instance
            .handle(ORDERS, &mut entry)
            .await
            .map_err(anyhow::Error::from)?;
    }
    let per_call = started.elapsed() / calls;
    println!(
        "\nhandler overhead (payments plugin, reused instance, epoch + memory limiter on): {:.2} µs per message (target <= 5 µs)",
        per_call.as_secs_f64() * 1e6
    );
    Ok(())
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

/// Peak resident set (VmHWM) of `/proc/<pid>`, bytes.
fn peak_rss_of(pid: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("VmHWM")?;
    Ok(kb * 1024)
}
