//! Throughput and latency benchmark: the same orders → payments work done by
//!
//! - **native** and **native-1000**: a hand-written Rust consumer (redis-rs), a process of
//!   its own like every contender (this binary run again), reading COUNT 100 (the
//!   daemon's batch) or COUNT 1000, building the payment, XADD + XACK per batch in one
//!   MULTI — the ceiling for any wrapper;
//! - **sluice-rust**, **sluice-c**, **sluice-js**, **sluice-python**: the `sluice` daemon
//!   (a child process) with the payments plugin of each language, on the pipeline's
//!   defaults (limits on as shipped; concurrency 1 for compiled plugins, one instance
//!   per core for interpreted ones) and a warm compiled-code cache;
//! - **seed-node**: the tutorial's node-redis v4 consumer, installed from npm here;
//!
//! each on a fresh redis-server (persistence off), in `--rounds` interleaved rounds (every
//! contender once per round, so that the shared machine's load falls on all alike); each
//! run is printed, then the median, the range, and the ratios of the medians.
//!
//! 1. **Saturation**: N seed-shaped orders preloaded (with `--note`, each also carries a
//!    `note` field of that many bytes; several sizes are measured in the same rounds),
//!    then drained. Rate = outputs over the span of their stream IDs (first to last
//!    payment: start-up is not counted); CPU per message of the consumer and of
//!    redis-server over that span (from /proc); where redis-server's time went, by
//!    command (`INFO commandstats`); the consumer's peak RSS; each round's ratio to
//!    native's run of the same round; the date and the load average as the rounds went.
//!    **sluice-rust-state** is the Rust plugin that also records each order in handler
//!    state (`plugins/payments`, variant `with-state`).
//! 2. **Latency at a fixed rate**: an open-loop producer sends orders on a schedule (10,000
//!    msg/s where the contender sustains it, then 50% of its saturation rate); a sink
//!    reads the payments and records, per message, the time from its *scheduled* send to
//!    its output being read (so a stalled consumer cannot hide its backlog: no
//!    coordinated omission) in an HdrHistogram. The first second is warm-up and
//!    discarded.
//! 3. **Handler cost**: calls into a reused instance, on the `wasm` module alone.
//!
//! Run: `cargo bench -p sluice --bench throughput -- [--orders N] [--note BYTES,...]
//! [--batch B] [--rate R] [--seconds S] [--rounds R] [--only NAME,...] [--no-latency]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use redis::AsyncCommands;
use sluice::redis_server::RedisServer;
use sluice_testkit::measure::{cpu_seconds, median, open_loop};
use sluice_testkit::{Order, build_plugins, workspace};

const ORDERS: &str = "ORDERS_STREAM";
const PAYMENTS: &str = "PAYMENTS_STREAM";
const GROUP: &str = "ORDERS_CON_GROUP";

#[tokio::main]
async fn main() -> Result<()> {
    // The native contenders run as processes of their own, like the others: this
    // binary, called again.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--native-consumer") {
        let arg = |k: usize| {
            args.get(i + k)
                .context("--native-consumer URL ORDERS BATCH")
        };
        return native(arg(1)?.clone(), arg(2)?.parse()?, arg(3)?.parse()?).await;
    }
    let mut options = Options::parse()?;
    let root = plugins_built();
    let seed = sluice_testkit::measure::seed_node()?;
    let mut contenders = vec![
        Contender::Native {
            name: "native",
            batch: options.batch,
        },
        Contender::Native {
            name: "native-1000",
            batch: 1000,
        },
        Contender::Sluice {
            name: "sluice-rust",
            plugin: root.join("target/plugins/payments.wasm"),
            state: false,
        },
        // The same handler recording each order and its user's total in handler state
        // (`HSET order:<id>` of two fields and `INCRBY user-total:<user>` per entry).
        Contender::Sluice {
            name: "sluice-rust-state",
            plugin: root.join("target/plugins/payments_state.wasm"),
            state: true,
        },
    ];
    for (name, file) in [
        ("sluice-c", "payments_c.wasm"),
        ("sluice-js", "payments_js.wasm"),
        ("sluice-python", "payments_python.wasm"),
    ] {
        let plugin = root.join("target/plugins").join(file);
        if plugin.is_file() {
            contenders.push(Contender::Sluice {
                name,
                plugin,
                state: false,
            });
        }
    }
    contenders.push(Contender::SeedNode(seed));
    contenders.retain(|c| options.only.is_empty() || options.only.iter().any(|o| o == c.name()));
    // Plugins come from a warm compiled-code cache (as after `sluice compile` at deploy
    // time): a run measures handling, not compiling a 12-18 MB component.
    let cache = tempfile::tempdir()?;
    options.cache = cache.path().to_owned();
    for contender in &contenders {
        if let Contender::Sluice { plugin, state, .. } = contender {
            let config = cache.path().join("compile.toml");
            std::fs::write(&config, sluice_config(plugin, *state, &options))?;
            let ok = Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["compile", "-c"])
                .arg(&config)
                .env("SLUICE_LOG", "warn")
                .status()?;
            if !ok.success() {
                bail!("sluice compile {} failed", plugin.display());
            }
        }
    }

    let redis_version = Command::new("redis-server").arg("--version").output()?;
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()?;
    println!(
        "throughput: {} orders, batch {}, {} rounds interleaved, pipeline defaults (concurrency: 1 compiled, 1 per core interpreted), {} cores, redis {}, limits on; {}; load average {}",
        options.orders,
        options.batch,
        options.rounds,
        std::thread::available_parallelism()?,
        String::from_utf8_lossy(&redis_version.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("?")
            .trim_start_matches("v="),
        String::from_utf8_lossy(&date.stdout).trim(),
        load_average()
    );
    println!(
        "{:<6} {:>7} {:<18} {:>10} {:>13} {:>14} {:>10}",
        "round", "note", "contender", "msg/s", "cpu µs/msg", "redis µs/msg", "peak RSS"
    );
    // runs[size][contender]: one Measured per round.
    let mut runs: Vec<Vec<Vec<Measured>>> = options
        .sizes
        .iter()
        .map(|_| contenders.iter().map(|_| Vec::new()).collect::<Vec<_>>())
        .collect();
    let mut loads = vec![load_average()];
    for round in 1..=options.rounds {
        for (size, runs) in options.sizes.iter().zip(&mut runs) {
            for (contender, runs) in contenders.iter().zip(runs.iter_mut()) {
                let measured = saturate(contender, &options, *size).await?;
                println!(
                    "{:<6} {:>7} {:<18} {:>10.0} {:>13.2} {:>14.2} {:>7.1} MB",
                    round,
                    size_label(*size),
                    contender.name(),
                    measured.rate,
                    measured.cpu * 1e6 / options.orders as f64,
                    measured.redis_cpu * 1e6 / options.orders as f64,
                    measured.peak_rss as f64 / 1e6,
                );
                runs.push(measured);
            }
        }
        loads.push(load_average());
    }
    println!(
        "\nmedian of {} rounds (range); load average over the rounds: {}",
        options.rounds,
        loads.join(" → ")
    );
    for (size, runs) in options.sizes.iter().zip(&runs) {
        report(&contenders, runs, *size, &options);
    }

    if options.latency {
        println!(
            "\nlatency: open-loop producer, scheduled send → payment read, {} s per run, first 1 s discarded, {} note",
            options.seconds,
            size_label(options.sizes[0])
        );
        println!(
            "{:<14} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "contender", "msg/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for (contender, runs) in contenders.iter().zip(&runs[0]) {
            let saturation = median(&runs.iter().map(|m| m.rate).collect::<Vec<_>>());
            let half = (saturation / 2.0).round() as u64;
            let mut rates = Vec::new();
            // A fixed rate the contender cannot keep up with only measures its backlog.
            if (options.rate as f64) < saturation * 0.8 {
                rates.push(options.rate);
            }
            if half != options.rate {
                rates.push(half);
            }
            for rate in rates {
                let h = latency(contender, &options, rate, options.sizes[0]).await?;
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
    if options.only.is_empty() || options.only.iter().any(|o| o == "handler") {
        handler_overhead(&root).await?;
    }
    Ok(())
}

/// "64 B"-style label of a note's size ("-" for none).
fn size_label(size: usize) -> String {
    match size {
        0 => "-".into(),
        s if s % 1024 == 0 => format!("{} KiB", s / 1024),
        s => format!("{s} B"),
    }
}

/// One entry size's summary: each contender's median and range, its ratios to native and
/// to the tutorial's loop, then where redis-server's time per entry went.
fn report(contenders: &[Contender], runs: &[Vec<Measured>], size: usize, options: &Options) {
    let rate_of = |name: &str| {
        contenders
            .iter()
            .zip(runs)
            .find(|(c, _)| c.name() == name)
            .map(|(_, r)| median(&r.iter().map(|m| m.rate).collect::<Vec<_>>()))
    };
    println!(
        "\norders with a note of {} ({} orders):",
        size_label(size),
        options.orders
    );
    println!(
        "{:<18} {:>10} {:>19} {:>11} {:>13} {:>9} {:>10} {:>16} {:>10}",
        "contender",
        "msg/s",
        "range",
        "cpu µs/msg",
        "redis µs/msg",
        "peak RSS",
        "vs native",
        "each round",
        "vs seed"
    );
    let native = runs
        .iter()
        .zip(contenders)
        .find(|(_, c)| c.name() == "native")
        .map(|(r, _)| r);
    for (contender, runs) in contenders.iter().zip(runs) {
        let rate = median(&runs.iter().map(|m| m.rate).collect::<Vec<_>>());
        let (low, high) = runs.iter().fold((f64::MAX, 0.0f64), |(lo, hi), m| {
            (lo.min(m.rate), hi.max(m.rate))
        });
        let per_msg = |f: fn(&Measured) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()) * 1e6 / options.orders as f64
        };
        let ratio =
            |other: Option<f64>| other.map_or("-".to_owned(), |o| format!("{:.2}", rate / o));
        // Against native's run of the same round: the worst round shows.
        let rounds = native.map_or("-".to_owned(), |native| {
            let each: Vec<String> = runs
                .iter()
                .zip(native)
                .map(|(m, n)| format!("{:.2}", m.rate / n.rate))
                .collect();
            each.join(" ")
        });
        println!(
            "{:<18} {:>10.0} {:>19} {:>11.2} {:>13.2} {:>6.0} MB {:>10} {:>16} {:>10}",
            contender.name(),
            rate,
            format!("{low:.0}–{high:.0}"),
            per_msg(|m| m.cpu),
            per_msg(|m| m.redis_cpu),
            runs.iter().map(|m| m.peak_rss).max().unwrap_or(0) as f64 / 1e6,
            ratio(rate_of("native")),
            rounds,
            ratio(rate_of("seed-node")),
        );
    }
    if let Some(node) = rate_of("seed-node") {
        for (name, goal) in [("sluice-js", 1.0), ("sluice-python", 2.0)] {
            if let Some(rate) = rate_of(name) {
                println!(
                    "{name} / seed-node = {:.2} (goal >= {goal:.1})",
                    rate / node
                );
            }
        }
    }
    if let (Some(plain), Some(state)) = (rate_of("sluice-rust"), rate_of("sluice-rust-state")) {
        println!(
            "sluice-rust-state / sluice-rust = {:.2} (goal >= 0.75)",
            state / plain
        );
    }
    println!(
        "\nredis-server µs per entry by command (INFO commandstats, median of rounds; a script's or EXEC's own time excludes the commands it ran; 'other' is the process's CPU outside commands: the event loop, reading and parsing requests, writing replies):"
    );
    for (contender, runs) in contenders.iter().zip(runs) {
        let line = breakdown(runs, options.orders);
        println!("{:<18} {line}", contender.name());
    }
}

/// Where redis-server's CPU per entry went, by command, as one line (median of rounds).
fn breakdown(runs: &[Measured], orders: usize) -> String {
    let mut names: Vec<&String> = runs.iter().flat_map(|m| m.commands.keys()).collect();
    names.sort();
    names.dedup();
    let per_entry = |f: &dyn Fn(&Measured) -> f64| {
        median(&runs.iter().map(f).collect::<Vec<_>>()) * 1e6 / orders as f64
    };
    let mut parts: Vec<(String, f64)> = names
        .into_iter()
        .map(|name| {
            let us = per_entry(&|m: &Measured| m.own_usec(name) / 1e6);
            (name.clone(), us)
        })
        .filter(|(_, us)| *us >= 0.01)
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let other = per_entry(&|m: &Measured| m.redis_cpu - m.commands_usec() / 1e6);
    let mut line: Vec<String> = parts
        .iter()
        .map(|(name, us)| format!("{name} {us:.2}"))
        .collect();
    line.push(format!("other {other:.2}"));
    line.join(", ")
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The daemon's config for one contender: the pipeline's defaults but the batch (and
/// the state prefixes of `payments_state.wasm`).
fn sluice_config(plugin: &Path, state: bool, options: &Options) -> String {
    let state = if state {
        "state = [\"order:\", \"user-total:\"]\n"
    } else {
        ""
    };
    format!(
        "[plugins]\ncache = true\ncache_dir = {:?}\nwatch = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[pipeline]]\nname = \"payments\"\nplugin = {plugin:?}\ninput = \"{ORDERS}\"\ngroup = \"{GROUP}\"\noutputs = [\"{PAYMENTS}\"]\nbatch = {}\n{state}",
        options.cache, options.batch
    )
}

struct Options {
    orders: usize,
    /// Sizes of the `note` field every order carries (0: none), each measured in turn.
    sizes: Vec<usize>,
    batch: usize,
    rate: u64,
    seconds: u64,
    rounds: usize,
    /// The contenders to run (and `handler`); all when empty.
    only: Vec<String>,
    latency: bool,
    /// The compiled-code cache the daemons share (warmed before the first round).
    cache: PathBuf,
}

impl Options {
    fn parse() -> Result<Self> {
        let mut o = Options {
            orders: 200_000,
            sizes: vec![0],
            batch: 100,
            rate: 10_000,
            seconds: 5,
            rounds: 3,
            only: Vec::new(),
            latency: true,
            cache: PathBuf::new(),
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
                "--note" => {
                    o.sizes = value
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .context("--note takes byte counts, e.g. 0,4096")?;
                }
                "--batch" => o.batch = value.parse()?,
                "--rate" => o.rate = value.parse()?,
                "--seconds" => o.seconds = value.parse()?,
                "--rounds" => o.rounds = value.parse()?,
                "--only" => o.only = value.split(',').map(str::to_owned).collect(),
                other => bail!(
                    "unknown option {other}; use --orders N --note BYTES[,BYTES] --batch B --rate R --seconds S --rounds R --only NAME[,NAME] --no-latency"
                ),
            }
        }
        if o.seconds < 2 {
            bail!("--seconds must be at least 2 (the first second is warm-up)");
        }
        if o.rounds < 1 {
            bail!("--rounds must be at least 1");
        }
        Ok(o)
    }
}

enum Contender {
    /// The hand-written consumer, a process of its own, reading `batch` at a time.
    Native {
        name: &'static str,
        batch: usize,
    },
    Sluice {
        name: &'static str,
        plugin: PathBuf,
        /// Whether the pipeline grants the plugin's handler state prefixes.
        state: bool,
    },
    SeedNode(PathBuf),
}

impl Contender {
    fn name(&self) -> &'static str {
        match self {
            Contender::Native { name, .. } | Contender::Sluice { name, .. } => name,
            Contender::SeedNode(_) => "seed-node",
        }
    }

    /// Starts consuming until `orders` payments exist.
    async fn start(&self, url: &str, orders: usize, options: &Options) -> Result<Running> {
        Ok(match self {
            Contender::Native { batch, .. } => {
                let child = tokio::process::Command::new(std::env::current_exe()?)
                    .arg("--native-consumer")
                    .arg(url)
                    .arg(orders.to_string())
                    .arg(batch.to_string())
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting the native consumer")?;
                Running::Child(child)
            }
            Contender::Sluice { plugin, state, .. } => {
                let dir = tempfile::tempdir()?;
                let config = dir.path().join("sluice.toml");
                std::fs::write(&config, sluice_config(plugin, *state, options))?;
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
    /// The daemon, and the directory of its config.
    Daemon(tokio::process::Child, tempfile::TempDir),
    /// A consumer that exits by itself once done.
    Child(tokio::process::Child),
}

impl Running {
    fn pid(&self) -> Result<String> {
        match self {
            Running::Daemon(child, _) | Running::Child(child) => child
                .id()
                .map(|p| p.to_string())
                .context("the consumer exited at once"),
        }
    }

    /// Waits for the consumer to end (a daemon is asked to stop).
    async fn finish(self) -> Result<()> {
        match self {
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
    /// redis-server's `INFO commandstats` over the drain, by command.
    commands: BTreeMap<String, CommandStat>,
}

/// One command's line of `INFO commandstats`.
struct CommandStat {
    usec: f64,
}

/// Commands that run inside another (a script, or `MULTI`/`EXEC`): their time is in
/// their wrapper's too.
const WRAPPERS: [&str; 3] = ["exec", "evalsha", "eval"];
const NESTED: [&str; 13] = [
    "xadd",
    "xack",
    "xpending",
    "get",
    "type",
    "hset",
    "hget",
    "hgetall",
    "hlen",
    "incrby",
    "set",
    "del",
    "xinfo|groups",
];

impl Measured {
    /// The time of the commands that ran inside a wrapper, µs (none without one).
    fn nested_usec(&self) -> f64 {
        if !WRAPPERS.iter().any(|w| self.commands.contains_key(*w)) {
            return 0.0;
        }
        NESTED
            .iter()
            .filter_map(|n| self.commands.get(*n))
            .map(|c| c.usec)
            .sum()
    }

    /// `name`'s own time, µs: a wrapper's without the commands it ran.
    fn own_usec(&self, name: &str) -> f64 {
        let usec = self.commands.get(name).map_or(0.0, |c| c.usec);
        if WRAPPERS.contains(&name) {
            usec - self.nested_usec()
        } else {
            usec
        }
    }

    /// The time of every top-level command, µs.
    fn commands_usec(&self) -> f64 {
        self.commands.values().map(|c| c.usec).sum::<f64>() - self.nested_usec()
    }
}

/// `INFO commandstats` by command name (`cmdstat_xadd:calls=3,usec=12,...`).
async fn command_stats(
    con: &mut redis::aio::MultiplexedConnection,
) -> Result<BTreeMap<String, CommandStat>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await?;
    let mut stats = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let usec = rest
            .split(',')
            .find_map(|kv| kv.strip_prefix("usec="))
            .context("commandstats without usec")?
            .parse()?;
        stats.insert(name.to_owned(), CommandStat { usec });
    }
    Ok(stats)
}

/// Queues order `i` on `pipe`, with a `note` field of `size` bytes unless 0.
fn add_order(pipe: &mut redis::Pipeline, i: usize, size: usize) {
    let order = Order::seed(i);
    let note = "n".repeat(size);
    let mut fields = order.fields().to_vec();
    if size > 0 {
        fields.push(("note", &note));
    }
    pipe.xadd(ORDERS, "*", &fields).ignore();
}

/// Preloads the orders (each with a note of `size` bytes), then drains them through the
/// contender.
async fn saturate(contender: &Contender, options: &Options, size: usize) -> Result<Measured> {
    let orders = options.orders;
    let redis = RedisServer::start()?;
    let mut con = redis::Client::open(redis.url())?
        .get_multiplexed_async_connection()
        .await?;
    for start in (0..orders).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 10_000).min(orders) {
            add_order(&mut pipe, i, size);
        }
        let () = pipe.query_async(&mut con).await?;
    }
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut con)
        .await?;
    let redis_pid = redis.pid().context("redis-server runs")?.to_string();
    let running = contender.start(&redis.url(), orders, options).await?;
    let pid = running.pid()?;
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
    let commands = command_stats(&mut con).await?;
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
        commands,
    })
}

/// Runs the contender under an open-loop load of `rate` orders per second and returns
/// the end-to-end latencies (µs) after the first second.
async fn latency(
    contender: &Contender,
    options: &Options,
    rate: u64,
    size: usize,
) -> Result<Histogram<u64>> {
    let orders = (rate * options.seconds) as usize;
    let redis = RedisServer::start()?;
    let running = contender.start(&redis.url(), orders, options).await?;
    // Let the consumer create its group and start reading before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let add = move |pipe: &mut redis::Pipeline, i: usize| add_order(pipe, i, size);
    let histogram = open_loop(&redis.url(), rate, options.seconds, PAYMENTS, add).await?;
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
    let mut entry = Order::seed(0).entry();
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

/// Builds every plugin (into `target/plugins`) and returns the workspace root.
fn plugins_built() -> std::path::PathBuf {
    build_plugins();
    workspace()
}
