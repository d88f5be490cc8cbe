//! Scaling out on Redis Cluster: the partitioned payments pipeline (16 partitions,
//! `ordering = "none"`) on clusters of 1, 2 and 3 primaries, with as many `sluice run`
//! daemon processes, interleaved over several rounds.
//!
//! Per run: N seed-shaped orders from 500 users, each in its user's partition
//! (`crc32(user) % 16`), preloaded; then the daemons start and drain them. Rate = payments
//! over the span of their stream IDs (start-up not counted). CPU per message: every
//! daemon's and every primary's user + system time over the drain (from /proc).
//!
//! Run: `cargo bench -p sluice --bench cluster -- [--orders N] [--rounds R] [--ordering per-key]`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redis::AsyncCommands;
use sluice_testkit::{Order, RedisCluster, build_plugins, workspace};

const PARTITIONS: u32 = 16;

struct Run {
    rate: f64,
    daemon_us: f64,
    redis_us: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut orders = 60_000usize;
    let mut rounds = 3usize;
    let mut ordering = "none".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--orders" => orders = args.next().context("--orders N")?.parse()?,
            "--rounds" => rounds = args.next().context("--rounds R")?.parse()?,
            "--ordering" => ordering = args.next().context("--ordering none|per-key")?,
            "--bench" => {}
            other => bail!("unknown argument {other:?}"),
        }
    }
    let root = plugins_built();
    let plugin = root.join("target/plugins/payments.wasm");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "cluster: {orders} orders, {PARTITIONS} partitions, ordering {ordering}, batch 100, {rounds} rounds, {} cores, load {}",
        std::thread::available_parallelism()?,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<6} {:>7} {:>12} {:>16} {:>16}",
        "round", "shards", "payments/s", "daemon cpu/msg", "redis cpu/msg"
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 3];
    // Compiled once, by the first daemon: start-up is not what is measured.
    let cache = tempfile::tempdir()?;
    for round in 1..=rounds {
        for shards in 1..=3usize {
            let run = drain(&plugin, cache.path(), shards, orders, &ordering).await?;
            println!(
                "{round:<6} {shards:>7} {:>12.0} {:>13.1} µs {:>13.1} µs",
                run.rate, run.daemon_us, run.redis_us
            );
            rates[shards - 1].push(run.rate);
        }
    }
    let medians: Vec<f64> = rates
        .iter_mut()
        .map(|r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        })
        .collect();
    for (i, r) in rates.iter().enumerate() {
        println!(
            "{} shard(s), {} daemon(s): median {:.0}/s (min {:.0}, max {:.0}); {:.2}x one shard",
            i + 1,
            i + 1,
            medians[i],
            r[0],
            r[r.len() - 1],
            medians[i] / medians[0]
        );
    }
    Ok(())
}

async fn drain(
    plugin: &std::path::Path,
    cache: &std::path::Path,
    shards: usize,
    orders: usize,
    ordering: &str,
) -> Result<Run> {
    let cluster = tokio::task::spawn_blocking(move || RedisCluster::start(shards, 0)).await??;
    let mut con = redis::cluster::ClusterClient::new(cluster.urls())?
        .get_async_connection()
        .await?;
    // Preload, a pipeline of XADDs per partition.
    let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); PARTITIONS as usize];
    for i in 0..orders {
        let user = format!("USR_{}", i % 500);
        by_partition[sluice::partition::of(user.as_bytes(), PARTITIONS) as usize].push(i);
    }
    for (p, ids) in by_partition.iter().enumerate() {
        for chunk in ids.chunks(1_000) {
            let mut pipe = redis::pipe();
            for &i in chunk {
                Order::seed(i)
                    .user(format!("USR_{}", i % 500))
                    .add_to(&mut pipe, &format!("ORDERS:{{{p}}}"));
            }
            let () = pipe.query_async(&mut con).await?;
        }
    }
    let dir = tempfile::tempdir()?;
    let urls = cluster.urls();
    let text = format!(
        "[redis]\ncluster = true\nurl = {:?}\nnodes = {:?}\n[plugins]\ncache_dir = {:?}\n[[pipeline]]\nname = \"payments\"\nplugin = {:?}\ninput = \"ORDERS\"\ngroup = \"G\"\noutputs = [\"PAYMENTS\"]\nbatch = 100\npartitions = {PARTITIONS}\nordering = {ordering:?}\nconfig = {{ payments_stream = \"PAYMENTS\" }}\n",
        urls[0],
        &urls[1..],
        cache.display().to_string(),
        plugin.display().to_string()
    );
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text)?;
    let redis_pids: Vec<u32> = cluster.nodes.iter().filter_map(|n| n.pid()).collect();
    let redis_before: f64 = redis_pids
        .iter()
        .map(|&p| process_cpu(p).unwrap_or(0.0))
        .sum();
    let mut daemons: Vec<Child> = (0..shards)
        .map(|d| {
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["run", "-c"])
                .arg(&path)
                .args(["--consumer", &format!("d{d}")])
                .env("SLUICE_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start sluice run")
        })
        .collect::<Result<_>>()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut done = 0usize;
        for p in 0..PARTITIONS {
            let n: usize = con.xlen(format!("PAYMENTS:{{{p}}}")).await?;
            done += n;
        }
        if done >= orders {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {orders} payments after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let daemon_cpu: f64 = daemons
        .iter()
        .map(|c| process_cpu(c.id()).unwrap_or(0.0))
        .sum();
    let redis_cpu: f64 = redis_pids
        .iter()
        .map(|&p| process_cpu(p).unwrap_or(0.0))
        .sum::<f64>()
        - redis_before;
    let (mut first, mut last) = (u64::MAX, 0u64);
    for p in 0..PARTITIONS {
        let stream = format!("PAYMENTS:{{{p}}}");
        let head: redis::streams::StreamRangeReply = con.xrange_count(&stream, "-", "+", 1).await?;
        let tail: redis::streams::StreamRangeReply =
            con.xrevrange_count(&stream, "+", "-", 1).await?;
        let ms = |r: &redis::streams::StreamRangeReply| -> Option<u64> {
            r.ids.first()?.id.split('-').next()?.parse().ok()
        };
        if let (Some(a), Some(b)) = (ms(&head), ms(&tail)) {
            first = first.min(a);
            last = last.max(b);
        }
    }
    for d in &mut daemons {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(d.id() as i32, libc::SIGTERM);
        }
    }
    for d in &mut daemons {
        let _ = d.wait();
    }
    let span = (last.saturating_sub(first)).max(1) as f64 / 1e3;
    Ok(Run {
        rate: orders as f64 / span,
        // Start-up is in it too (a few ms per daemon: the plugin comes from the cache).
        daemon_us: daemon_cpu * 1e6 / orders as f64,
        redis_us: redis_cpu * 1e6 / orders as f64,
    })
}

/// A process's user + system CPU time from /proc/PID/stat, in seconds.
fn process_cpu(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// Builds every plugin (into `target/plugins`) and returns the workspace root.
fn plugins_built() -> std::path::PathBuf {
    build_plugins();
    workspace()
}
